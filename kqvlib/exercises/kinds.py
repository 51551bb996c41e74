"""Two kinds of wrong answer :func:`kqvlib.exercises.describe.describe` looks for first: the wrong kind of
number (integers where fractions belong, log-probabilities where probabilities belong) and part of the answer
(a slice of the right one along one axis).
"""
from __future__ import annotations

import torch

from kqvlib.checks import _as_tensor, close


def _name(axes, d: int, ndim: int) -> str:
    d %= ndim
    back = ndim - 1 - d
    return f"the {axes[-1 - back]} axis (axis {d})" if axes and back < len(axes) and axes[-1 - back] else f"axis {d}"


def _close(a, b) -> bool:
    a, b = _as_tensor(a), _as_tensor(b)
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.double(), b.double(), atol=1e-5, rtol=1e-4))


def _kind_slips(got, expected):
    """Integer outputs where floats belong, and log-probabilities where probabilities belong."""
    g, e = _as_tensor(got), _as_tensor(expected)
    if not (isinstance(g, torch.Tensor) and isinstance(e, torch.Tensor)) or g.shape != e.shape:
        return None
    if not g.is_floating_point() and g.dtype != torch.bool and e.is_floating_point():
        return "integer output", (f"your output has an integer dtype ({g.dtype}) where the answer has fractions: a "
                                  f"tensor was created from integers (torch.arange(T), torch.zeros(..., dtype=long)) "
                                  f"and every value written into it was truncated. Use a float dtype.")
    if g.is_floating_point() and bool((g <= 1e-12).all()) and bool((e >= 0).all()):
        if _close(torch.exp(g.double()), e):
            return "log-probabilities", ("your output is the log of the right one (log_softmax, or log of the "
                                         "probabilities): return the probabilities themselves.")
    return None


def _part_of(g, e, axes):
    """``got`` is a slice of ``expected`` along one axis: part of the answer."""
    diff = [d for d in range(e.dim()) if g.shape[d] != e.shape[d]] if g.dim() == e.dim() else []
    if len(diff) == 1 and g.shape[diff[0]] < e.shape[diff[0]]:
        d, k = diff[0], g.shape[diff[0]]
        for j in range(e.shape[d] - k + 1):
            if close(g, e.narrow(d, j, k)):
                return "part of the answer", (f"your output is entries {j} … {j + k - 1} of the {e.shape[d]} along "
                                              f"{_name(axes, d, e.dim())} of the right one: only part of the answer "
                                              f"(one head, one row, a slice that stops early).")
    if g.dim() == e.dim() - 1:
        for d in range(e.dim()):
            for j in range(e.shape[d]):
                if e.select(d, j).shape == g.shape and close(g, e.select(d, j)):
                    return "part of the answer", (f"your output is entry {j} along {_name(axes, d, e.dim())} of the "
                                                  f"right one, without that axis: only part of the answer.")
    return None

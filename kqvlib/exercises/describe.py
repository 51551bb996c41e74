"""What a wrong answer *is*, measured against the reference: :func:`describe` (used by
:func:`kqvlib.exercises.diagnose.checked` when no listed slip and no chapter property named it).
"""
from __future__ import annotations

import itertools
import math

import torch

from kqvlib.checks import CheckResult, _as_tensor, check, close
from kqvlib.exercises.kinds import _kind_slips, _part_of

_ORD = ["first", "second", "third", "fourth", "fifth"]
_GENERIC = {"wrong shape", "wrong values", "nan", "exception"}


def _name(axes, d: int, ndim: int) -> str:
    d %= ndim
    back = ndim - 1 - d
    if axes and back < len(axes) and axes[-1 - back]:
        return f"the {axes[-1 - back]} axis (axis {d})"
    return f"axis {d}"


def _t(x):
    x = _as_tensor(x)
    if isinstance(x, torch.Tensor) and not x.is_complex():
        return x.detach().double() if x.dtype != torch.bool else x.double()
    return None


def _const(c: float, shape) -> str:
    """A readable name for a fitted constant: 2, ½, √n or 1/√n for a size n of the input."""
    for n in sorted({int(s) for s in shape if s > 1} | {2}):
        for v, s in ((n, f"{n}"), (1 / n, f"1/{n}"), (math.sqrt(n), f"√{n}"), (1 / math.sqrt(n), f"1/√{n}")):
            if abs(c - v) < 1e-6 * max(1, abs(v)):
                return f"{c:.4g} (= {s})"
    return f"{c:.4g}"


def _tuple(got, expected, axes, depth=0):
    n = len(expected)
    for i, e in enumerate(expected):
        if _close(got, e):
            return "returned part", (f"you returned only the {_ORD[i]} of the {n} results. Return all of "
                                     f"them, in order, as one tuple: return a, b.")
    if not isinstance(got, (tuple, list)):
        return "returned one result", (f"you returned one {type(got).__name__}, but the answer is {n} results: "
                                       f"return them all as one tuple (return a, b).")
    if len(got) != n:
        return "wrong number of results", f"you returned {len(got)} values, expected {n} (a tuple, in order)."
    if n > 1 and _close(list(got)[::-1], list(expected)):
        return "results swapped", ("your results are right but in the wrong order (swapped): check the order "
                                   "of the names in `return` and in every tuple unpacking `a, b = …`.")
    for i, (g, e) in enumerate(zip(got, expected)):
        if not _close(g, e):
            inner = isinstance(e, (tuple, list)) and isinstance(g, (tuple, list)) and len(g) == len(e)
            found = _tuple(g, e, axes, depth + 1) if inner else describe(g, e, axes)
            where = f"the {_ORD[i] if i < len(_ORD) else f'#{i + 1}'} of your results: " if depth == 0 else f"its entry {i}: "
            return (found[0], where + found[1]) if found else None
    return None


def _close(a, b) -> bool:
    a, b = _as_tensor(a), _as_tensor(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    a, b = _t(a), _t(b)
    return a is not None and b is not None and a.shape == b.shape and bool(
        torch.allclose(a, b, atol=1e-5, rtol=1e-4, equal_nan=True))


def _shape_slips(g, e, axes):
    if g.squeeze().shape == e.squeeze().shape and close(g.squeeze(), e.squeeze()):
        return "axis of size 1", (f"right values, but shape {tuple(g.shape)} instead of {tuple(e.shape)}: an "
                                  f"axis of size 1 is missing or extra (keepdim, unsqueeze, squeeze, [:, None]).")
    if g.numel() == e.numel() and g.numel() > 1:
        for p in itertools.permutations(range(e.dim())):
            if list(p) != list(range(e.dim())) and e.permute(p).shape == g.shape and close(g, e.permute(p)):
                if e.dim() >= 2 and list(p) == list(range(e.dim() - 2)) + [e.dim() - 1, e.dim() - 2]:
                    return "transposed", ("your output is the right one with its last two axes swapped "
                                          f"(shape {tuple(g.shape)}, expected {tuple(e.shape)}): a transpose "
                                          "too many, or one missing.")
                return "axes permuted", (f"your output holds the right numbers with its axes in the order "
                                         f"{list(p)} (shape {tuple(g.shape)}, expected {tuple(e.shape)}): a "
                                         f"transpose or permute moved the wrong axes.")
        if close(g.flatten(), e.flatten()):
            return "reshaped", (f"your output holds the right numbers in memory order but has shape "
                                f"{tuple(g.shape)}, expected {tuple(e.shape)}: reshape to the expected shape.")
        if close(g.flatten().sort().values, e.flatten().sort().values):
            return "rearranged", (f"your output holds the right numbers, arranged as {tuple(g.shape)} instead of "
                                  f"{tuple(e.shape)}: a view or reshape without the transpose it needed.")
    if g.dim() == e.dim():
        diff = [d for d in range(e.dim()) if g.shape[d] != e.shape[d]]
        steps = {g.shape[d] - e.shape[d] for d in diff}
        if len(diff) > 1 and steps in ({1}, {-1}):
            small, big = (g, e) if steps == {-1} else (e, g)
            for lo in (0, 1):
                cut = big
                for d in diff:
                    cut = cut.narrow(d, lo, small.shape[d])
                if close(small, cut):
                    return "off by one", (f"your output has shape {tuple(g.shape)}, expected {tuple(e.shape)}: one "
                                          f"{'too many' if steps == {1} else 'too few'} along every sized axis, the "
                                          f"right values otherwise. A size off by one (arange(T + 1), range(T - 1)).")
        for d in diff:
            if e.shape[d] == 1 and len(diff) == 1:
                for j in range(g.shape[d]):
                    if close(g.narrow(d, j, 1), e):
                        return "extra axis varies", (
                            f"your output has {g.shape[d]} entries along {_name(axes, d, e.dim())}, where the answer "
                            f"has 1 (shape {tuple(e.shape)}): entry {j} is right, the others vary along that axis. "
                            f"Something that depends on that position (a causal triangle, a per-query term) does "
                            f"not belong here.")
        if len(diff) == 1 and g.shape[diff[0]] == 1:
            return "one for the whole batch", (
                f"your output has size 1 along {_name(axes, diff[0], e.dim())} where {e.shape[diff[0]]} entries are "
                f"expected: something was computed once for all of them (a max, a sum or a length of the whole "
                f"batch) instead of once per entry.")
        if len(diff) == 1:
            d = diff[0]
            k, n, where = g.shape[d], e.shape[d], _name(axes, diff[0], e.dim())
            if abs(k - n) == 1:
                small, big = (g, e) if k < n else (e, g)
                for lo in (0, 1):
                    if close(small, big.narrow(d, lo, small.shape[d])):
                        end = "last" if lo == 0 else "first"
                        what = "missing" if k < n else "extra"
                        return "off by one", (f"along {where} you have {k} entries, expected {n}: the {end} one "
                                              f"is {what}. An off-by-one in a slice or range (Python's end is "
                                              f"exclusive: a[s : s + n] has n entries).")
    if g.dim() == e.dim() - 1:
        for d in range(e.dim()):
            for red, word in ((e.sum(d), "summed"), (e.mean(d), "averaged")):
                if red.shape == g.shape and close(g, red):
                    return "reduced an axis", (f"you {word} over {_name(axes, d, e.dim())}, which should stay: "
                                               f"shape {tuple(g.shape)}, expected {tuple(e.shape)}.")
        if g.shape == e.shape[1:] and close(g, e[0]):
            return "first entry only", "you returned the answer for the first batch entry only: keep the batch axis."
    return None


def _value_slips(g, e, axes):
    nd = e.dim()
    if g.numel() > 1 and close(g, g.flatten()[:1].expand_as(g)) and close(e, e.flatten()[:1].expand_as(e)):
        return "wrong constant", (f"your output is {float(g.flatten()[0]):.4g} everywhere here, where it should be "
                                  f"{float(e.flatten()[0]):.4g}: the value this case returns is the wrong one.")
    if g.numel() > 2 and close(g, g.flatten()[:1].expand_as(g)) and not close(e, e.flatten()[:1].expand_as(e)):
        return "constant", (f"your output is the same number everywhere ({float(g.flatten()[0]):.4g}), where the right "
                            f"one varies: a term that should change is lost (a misplaced parenthesis, a clamp or "
                            f"condition that is always true, an argument ignored).")
    if close(g, -e):
        return "sign flipped", "your output is the right one with its sign flipped: a minus sign too many or missing."
    ee = float((e * e).sum())
    if ee > 0:
        c = float((g * e).sum()) / ee
        if abs(c - 1) > 1e-3 and close(g, c * e):
            return "times constant", (f"your output is the right one times {_const(c, e.shape)}: a constant in "
                                      f"the formula is off (a scale, a factor, a division by the wrong size).")
    c = float((g - e).mean())
    if abs(c) > 1e-9 and close(g, e + c):
        return "offset", (f"your output is the right one plus {c:.4g} everywhere: an offset in the formula "
                          f"(a + 1, an added constant, a start that is off).")
    ec = e - e.mean()
    if float((ec * ec).sum()) > 0:
        a = float((ec * (g - g.mean())).sum() / (ec * ec).sum())
        b = float(g.mean() - a * e.mean())
        if abs(a - 1) > 1e-3 and abs(b) > 1e-9 and close(g, a * e + b):
            return "affine", (f"your output is {a:.4g} × (the right one) {'+' if b > 0 else '−'} {abs(b):.4g}: a scale and an offset in the "
                              f"formula are off (e.g. lr instead of lr − min_lr, a start value added twice, or operator "
                              f"precedence: a * b + c / d is (a·b) + (c/d)).")
    if bool((e > 0).all()) and bool((g > 0).all()) and bool((e.log().abs() > 1e-6).any()):
        le, lg = e.log(), g.log()
        p = float((le * lg).sum() / (le * le).sum())
        if abs(p - 1) > 1e-3 and close(g, e ** p):
            return "power", (f"your output is the right one to the power {p:.4g}: a constant in an exponent is "
                             f"off (the base of a power, or a factor on the exponent).")
    for p in itertools.permutations(range(nd)):
        if list(p) != list(range(nd)) and close(g.flatten(), e.permute(p).flatten()):
            return "reshaped, not transposed", (f"your output holds the right values, laid out as the right one with "
                                                f"its axes in the order {list(p)} and then reshaped: a reshape or view "
                                                f"where a transpose (or a [:, None]) was needed.")
    for d in range(nd):
        n = e.shape[d]
        if n < 3:
            continue
        where = _name(axes, d, nd)
        for lo, word in ((1, "late"), (-1, "early")):
            a, b = (g.narrow(d, 1, n - 1), e.narrow(d, 0, n - 1)) if lo == 1 else (g.narrow(d, 0, n - 1), e.narrow(d, 1, n - 1))
            if close(a, b):
                return "shifted by one", (f"your output is the right one shifted by one along {where}: your entry "
                                          f"i holds the right entry i {'−' if lo == 1 else '+'} 1 (one step {word}). "
                                          f"An off-by-one in an index, slice or range.")
        diff = (~torch.isclose(g, e, atol=1e-5, rtol=1e-4)).movedim(d, 0).reshape(n, -1).any(1)
        j = int(diff.float().argmax()) if bool(diff.any()) else 0
        if 0 < j < n - 2:
            for k, word in ((1, "late"), (-1, "early")):
                a, b = (g.narrow(d, j + 1, n - j - 1), e.narrow(d, j, n - j - 1)) if k == 1 else \
                    (g.narrow(d, j, n - j - 1), e.narrow(d, j + 1, n - j - 1))
                if close(a, b):
                    return "shifted by one", (f"right up to entry {j - 1} along {where}, then shifted by one: from "
                                              f"entry {j} on your values are the right ones one step {word} (a "
                                              f"slice or index off by one, e.g. [1:] against [:-1]).")
        if close(g, e.flip(d)):
            return "reversed", f"your output is the right one reversed along {where}: check the order of a sort or loop."
        if close(g.sort(dim=d).values, e.sort(dim=d).values):
            return "permuted", (f"each slice along {where} holds the right numbers in the wrong places: did a sort, "
                                f"index or gather move them?")
    if bool((e >= 0).all()) and nd >= 1:
        for d in range(nd):
            s = e.sum(d)
            if not close(s, torch.ones_like(s)):
                continue
            gs = g.sum(d, keepdim=True)
            if bool((gs.abs() > 1e-12).all()) and close(g / gs, e):
                return "not normalised", (f"the proportions along {_name(axes, d, nd)} are right but they sum to "
                                          f"{float(gs.min()):.3g} … {float(gs.max()):.3g}, not 1: divide by the "
                                          f"sum after the last change (normalise last).")
            for d2 in range(nd):
                if d2 != d and close(g.sum(d2), torch.ones_like(g.sum(d2))):
                    return "normalised elsewhere", (f"your output sums to 1 along {_name(axes, d2, nd)}, but it "
                                                    f"should along {_name(axes, d, nd)}: normalise along that axis.")
    return _which_entries(g, e, axes)


def _which_entries(g, e, axes):
    """Right for some entries along an axis and wrong for others: say which."""
    bad = ~torch.isclose(g, e, atol=1e-5, rtol=1e-4)
    nd = e.dim()
    if nd == 0 or not bool(bad.any()):
        return None
    for d in range(nd):
        wrong = bad.movedim(d, 0).reshape(e.shape[d], -1).any(1)
        n = wrong.numel()
        if n < 2 or bool(wrong.all()):
            continue
        idx = [i for i in range(n) if bool(wrong[i])]
        ok = [i for i in range(n) if not bool(wrong[i])]
        where = _name(axes, d, nd)
        if d == 0 and nd >= 2:
            return "some rows wrong", (f"right for entries {ok} along {where} and wrong for {idx}: something is "
                                       f"shared across {where} that each entry needs its own of (one threshold, max, "
                                       f"length or index for the whole batch, or x[0] instead of x[b]).")
        if idx == list(range(n - len(idx), n)) or idx == list(range(len(idx))):
            side = "last" if idx[-1] == n - 1 else "first"
            return "edge wrong", (f"right except the {side} {len(idx)} of {n} entries along {where} ({idx}): an "
                                  f"off-by-one at the {'end' if side == 'last' else 'start'} of a range, slice or "
                                  f"condition (< against ≤).")
        return "some entries wrong", f"right for entries {ok} along {where}, wrong for {idx}."
    return None


def describe(got, expected, axes=None) -> tuple[str, str] | None:
    """(key, hint) naming how ``got`` differs from ``expected``, or None."""
    try:
        found = _kind_slips(got, expected)
        if found is not None:
            return found
        if isinstance(got, (tuple, list)) and isinstance(_as_tensor(expected), torch.Tensor) and got:
            rows = [_t(r) for r in got]
            if all(r is not None for r in rows) and len({r.shape for r in rows}) == 1 \
                    and _close(torch.stack(rows), expected):
                return "list of rows", ("you returned a Python list of tensors: the values are right, but the answer "
                                        "is one tensor. Stack them: torch.stack(rows).")
        if isinstance(expected, (tuple, list)):
            return _tuple(got, expected, axes)
        g, e = _t(got), _t(expected)
        if g is None or e is None:
            return None
        if g.shape != e.shape:
            return _shape_slips(g, e, axes) or _part_of(g, e, axes)
        if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(e).all())):
            return None
        return _value_slips(g, e, axes)
    except Exception:  # a diagnosis must never be what breaks
        return None


__all__ = ["describe"]

"""Checkers for chapter 2, *Softmax: from scores to weights*.

    check_softmax(fn)               fn(x, dim) -> softmax of x along dim, stable on huge scores
    check_temperature_softmax(fn)   fn(scores, T) -> softmax(scores / T) along the last axis

Every input is float64. Each checker prints one line (✓ or a hint) and returns a CheckResult.
"""
from __future__ import annotations

import torch

from kqvlib.attention import softmax as _softmax
from kqvlib.checks import CheckResult, Mistake, Trial, check

__all__ = ["check_softmax", "check_temperature_softmax"]


# --- stable_softmax(x, dim) --------------------------------------------------------------------

def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _ordinary(g: torch.Generator):
    """x: (4, 6), dim=-1: a batch of 4 score rows. Not square, so a missing keepdim cannot broadcast."""
    return (2.0 * _randn(g, 4, 6), -1)


def _middle_dim(g: torch.Generator):
    """x: (3, 4, 5), dim=1: normalise along a dimension that is not the last one."""
    return (2.0 * _randn(g, 3, 4, 5), 1)


def _large_same(g: torch.Generator):
    """x: (4, 6), every row near +1000: exp(1000) overflows float64 (limit ≈ 709.8)."""
    return (1000.0 + 3.0 * _randn(g, 4, 6), -1)


def _large_apart(g: torch.Generator):
    """x: (5, 6), rows centred at -1000, -500, 0, 500, 1000: one max for the whole tensor is not enough."""
    centres = torch.linspace(-1000.0, 1000.0, 5, dtype=torch.float64)[:, None]  # (5, 1)
    return (centres + 3.0 * _randn(g, 5, 6), -1)


def _exp_over_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(x - max) without dividing by the sum; exp(x) / max(exp(x)) is the same thing."""
    return torch.exp(x - x.amax(dim=dim, keepdim=True))


_SOFTMAX_MISTAKES = [
    Mistake(
        "wrong axis",
        lambda x, dim: _softmax(x, dim=0),
        "you normalised along dim 0. Each slice along the `dim` you are given should sum to 1: "
        "pass `dim` to every max and sum.",
    ),
    Mistake(
        "ignored dim",
        lambda x, dim: _softmax(x, dim=-1),
        "you normalised along the last axis, but this test asked for dim=1. Use the `dim` argument "
        "in the max and in the sum instead of -1.",
    ),
    Mistake(
        "divided by max",
        _exp_over_max,
        "your largest weight is exactly 1 and the weights do not sum to 1. Divide the exponentials by "
        "their *sum* along `dim` (dividing by their max, or not dividing at all after subtracting the "
        "max, gives this).",
    ),
    Mistake(
        "not normalised",
        lambda x, dim: torch.exp(x),
        "you returned exp(x). Divide by the sum of the exponentials along `dim` so each slice sums to 1.",
    ),
]

_SOFTMAX_TRIALS = [
    Trial(_ordinary, "ordinary"),
    Trial(_middle_dim, "middle dim"),
    Trial(
        _large_same,
        "no max subtraction",
        "right on ordinary scores, but NaN or inf on scores near 1000: exp overflows. "
        "Subtract the max before exp: exp(x - max) / sum(exp(x - max)) is the same function, and safe.",
    ),
    Trial(
        _large_apart,
        "global max",
        "right when all rows are near each other, but NaN on rows centred far apart (-1000 … 1000). "
        "Subtract each slice's own max, `x.amax(dim=dim, keepdim=True)`, not one max over the whole tensor.",
    ),
]


def _explain_exception(name: str, result: CheckResult) -> CheckResult:
    """Turn the exceptions that common softmax slips raise into specific hints."""
    if result.key != "exception":
        return result
    msg = result.message
    if "must match the size of tensor" in msg or "broadcast" in msg:
        return CheckResult(
            False,
            "keepdim",
            f"✗ {name}: shapes did not broadcast ({msg.split(': ', 2)[-1]}). A max or sum over `dim` "
            f"drops that dimension unless you pass keepdim=True; keep it so it lines up with x.",
            result.details,
        )
    if "return_types" in msg:
        return CheckResult(
            False,
            "max returns a pair",
            f"✗ {name}: `x.max(dim)` returns a pair (values, indices), not a tensor. "
            f"Use `x.amax(dim=dim, keepdim=True)` or `x.max(dim=dim, keepdim=True).values`.",
            result.details,
        )
    return result


def check_softmax(fn, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(x, dim)``: x float64 of shape (...), returns the same shape, softmax along ``dim``.

    Tries ordinary scores (dim=-1), a middle dim (dim=1), scores near 1000, and rows centred far apart.
    """
    result = check(
        "stable_softmax",
        fn,
        reference=lambda x, dim: _softmax(x, dim=dim),
        trials=_SOFTMAX_TRIALS,
        mistakes=_SOFTMAX_MISTAKES,
        nan_hint="Subtract the max along `dim` before exp.",
        seed=seed,
        quiet=True,
    )
    result = _explain_exception("stable_softmax", result)
    if not quiet:
        print(result.message)
    return result


# --- temperature_softmax(scores, T) -------------------------------------------------------------

def _temp_ordinary(g: torch.Generator):
    """scores: (4, 6); T a float in [0.3, 3], never exactly 1."""
    T = 0.3 + 2.7 * float(torch.rand((), generator=g, dtype=torch.float64))
    if abs(T - 1.0) < 0.1:
        T += 0.5
    return (2.0 * _randn(g, 4, 6), T)


def _temp_cold(g: torch.Generator):
    """scores: (4, 6) and a tiny T = 0.002, so scores / T reach the thousands."""
    return (2.0 * _randn(g, 4, 6), 0.002)


_TEMPERATURE_MISTAKES = [
    Mistake(
        "multiplied by T",
        lambda s, T: _softmax(s * T, dim=-1),
        "you multiplied the scores by T. Divide them: softmax(scores / T), so a large T flattens the "
        "weights and a small T sharpens them.",
    ),
    Mistake(
        "ignored T",
        lambda s, T: _softmax(s, dim=-1),
        "your weights do not depend on T. Divide the scores by T before the softmax.",
    ),
    Mistake(
        "T after softmax",
        lambda s, T: _softmax(s, dim=-1) / T,
        "you divided the weights by T after the softmax, so they no longer sum to 1. "
        "Divide the scores by T *before* the softmax.",
    ),
    Mistake(
        "wrong axis",
        lambda s, T: _softmax(s / T, dim=0),
        "you normalised along dim 0. Each row of scores (the last axis) should give weights summing to 1.",
    ),
]

_TEMPERATURE_TRIALS = [
    Trial(_temp_ordinary, "ordinary"),
    Trial(
        _temp_cold,
        "cold",
        "right for ordinary T, but NaN or inf for T = 0.002: scores / T is in the thousands and exp "
        "overflows. Use a stable softmax (your stable_softmax, or kqvlib.softmax) on scores / T.",
    ),
]


def check_temperature_softmax(fn, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(scores, T)``: scores float64 (..., n), T > 0 a float; returns softmax(scores / T)
    along the last axis, shape (..., n)."""
    return check(
        "temperature_softmax",
        fn,
        reference=lambda s, T: _softmax(s / T, dim=-1),
        trials=_TEMPERATURE_TRIALS,
        mistakes=_TEMPERATURE_MISTAKES,
        nan_hint="Use a stable softmax on scores / T.",
        seed=seed,
        quiet=quiet,
    )

"""Checkers for chapter 2, *Softmax: from scores to weights*.

    check_softmax(fn)               fn(x, dim) -> softmax of x along dim, stable on huge scores
    check_temperature_softmax(fn)   fn(scores, T) -> softmax(scores / T) along the last axis

Every input is float64. Each checker prints one line (✓ or a hint) and returns a CheckResult. The softmax
slips are the shared ones of :mod:`kqvlib.exercises.common`; the overflow trials, which later chapters may
reuse, are :func:`stability_trials` here.
"""
from __future__ import annotations

from typing import Callable

import torch

from kqvlib.attention import softmax as _softmax
from kqvlib.checks import CheckResult, Mistake, Trial, check
from kqvlib.exercises.common import explain_error, weight_slips, weights_property

__all__ = ["check_softmax", "check_temperature_softmax", "stability_trials"]


# --- overflow: rows on which only subtracting each row's own max is safe ------------------------------------

def _rows(g, centre, spread=3.0, n=4):  # n rows of 6 scores
    return centre + spread * torch.randn(n, 6, generator=g, dtype=torch.float64)


def _apart(g):  # rows centred at -1000, -500, 0, 500, 1000: one max for all rows is not enough
    return torch.linspace(-1000.0, 1000.0, 5, dtype=torch.float64)[:, None] + _rows(g, 0.0, n=5)


def _one_far_below(g):  # rows like [0, 2, -800]: x - min overflows, x - mean does not
    x = _rows(g, 600 * (float(torch.rand((), generator=g)) - 0.5))
    low = x.amax(-1) - 760 - 200 * torch.rand(4, generator=g, dtype=torch.float64)
    return x.scatter(1, torch.randint(0, 6, (4, 1), generator=g), low[:, None])


def _far_both_ways(g):  # rows like [0, 1000, -1000]: x - mean overflows too
    where = torch.rand(4, 6, generator=g).argsort(dim=-1)[:, :2]  # two different places per row
    jumps = torch.tensor([[1000.0, -1000.0]], dtype=torch.float64).expand(4, 2)
    return _rows(g, 0.0).scatter_add(1, where, jumps)


def stability_trials(wrap: Callable) -> list[Trial]:
    """Rows on which a softmax that does not subtract each row's own max overflows; ``wrap(x, g)`` turns
    score rows x (r, 6) into the checked function's inputs. Each trial is failed first by the slip it names
    (a softmax with no shift at all fails earlier, on rows near 1000)."""
    return [
        Trial(lambda g: wrap(_apart(g), g), "global max",
              "right when all rows are near each other, but NaN on rows centred far apart (−1000 … 1000). "
              "Subtract each row's own max, `amax` along the softmax axis with keepdim=True, not one value "
              "for the whole tensor."),
        Trial(lambda g: wrap(_one_far_below(g), g), "min subtraction",
              "NaN or inf on a row with one score far below the rest (like [0, 2, −800]). You seem to subtract "
              "the minimum: then x − min reaches 800 and exp overflows. Subtract the max, so every shifted "
              "score is ≤ 0 and no exp exceeds 1."),
        Trial(lambda g: wrap(_far_both_ways(g), g), "mean subtraction",
              "NaN or inf on a row whose scores are far apart in both directions (like [0, 1000, −1000]). You "
              "seem to subtract the mean (or another middle value): x − mean still reaches 1000 and exp "
              "overflows. Only the max makes every shifted score ≤ 0."),
    ]


# --- stable_softmax(x, dim) ----------------------------------------------------------------------------------

def _ordinary(g):  # x: (4, 6), dim=-1. Not square, so a missing keepdim cannot broadcast.
    return (_rows(g, 0.0, 2.0), -1)


def _middle_dim(g):  # x: (3, 4, 5), dim=1: normalise along a dimension that is not the last one
    return (2.0 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64), 1)


def _large_same(g):  # x: (4, 6), every row near +1000: exp(1000) overflows float64 (limit ≈ 709.8)
    return (_rows(g, 1000.0), -1)


def _normalise(e, dim):
    return e / e.sum(dim=dim, keepdim=True)


_SOFTMAX_MISTAKES = [
    Mistake("wrong axis", lambda x, dim: _softmax(x, dim=0),
            "you normalised along dim 0. Each slice along the `dim` you are given should sum to 1: pass `dim` "
            "to every max and sum."),
    Mistake("ignored dim", lambda x, dim: _softmax(x, dim=-1),
            "you normalised along the last axis, but this test asked for dim=1. Use the `dim` argument in the "
            "max and in the sum instead of -1."),
    *[Mistake("max along another axis",
              lambda x, dim, a=a: _normalise(torch.exp(x - x.amax(dim=a, keepdim=True)), dim),
              "you subtract a max taken along another axis than `dim`, so the entries of one slice are shifted "
              "by different amounts and their ratios change. Take the max along `dim`, like the sum.")
      for a in (-1, 0)],
] + weight_slips("each slice along `dim`")

_SOFTMAX_TRIALS = [
    Trial(_ordinary, "ordinary"),
    Trial(_middle_dim, "middle dim"),
    Trial(_large_same, "no max subtraction",
          "right on ordinary scores, but NaN or inf on scores near 1000: exp overflows. Subtract the max "
          "before exp: exp(x - max) / sum(exp(x - max)) is the same function, and safe."),
] + stability_trials(lambda x, g: (x, -1))


def check_softmax(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(x, dim)``: x float64 of shape (...), returns the same shape, softmax along ``dim``.

    Tries ordinary scores (dim=-1), a middle dim (dim=1), scores near 1000, rows centred far apart, rows
    with one score far below the rest, and rows far apart in both directions."""
    return check(
        "stable_softmax", fn, reference=lambda x, dim: _softmax(x, dim=dim),
        trials=_SOFTMAX_TRIALS, mistakes=_SOFTMAX_MISTAKES,
        properties=[weights_property(lambda x, dim: (x, dim), "each slice along `dim`")],
        explain=explain_error, nan_hint="Subtract the max along `dim` before exp.", seed=seed, quiet=quiet,
    )


# --- temperature_softmax(scores, T) --------------------------------------------------------------------------

def _temp_ordinary(g):  # scores: (4, 6); T a float in [0.3, 3], never near 1
    T = 0.3 + 2.7 * float(torch.rand((), generator=g, dtype=torch.float64))
    return (_rows(g, 0.0, 2.0), T + 0.5 if abs(T - 1.0) < 0.1 else T)


def _temp_cold(g):  # scores near 2 and T = 0.002: scores / T is near 1000
    return (_rows(g, 2.0, 0.006), 0.002)


def _times_random_T(x, g):  # scores x·T at a random T in [0.3, 3], so that scores / T = x
    T = 0.3 + 2.7 * float(torch.rand((), generator=g, dtype=torch.float64))
    return (x * T, T)


_TEMPERATURE_MISTAKES = [
    Mistake("multiplied by T", lambda s, T: _softmax(s * T, dim=-1),
            "you multiplied the scores by T. Divide them: softmax(scores / T), so a large T flattens the "
            "weights and a small T sharpens them."),
    Mistake("ignored T", lambda s, T: _softmax(s, dim=-1),
            "your weights do not depend on T. Divide the scores by T before the softmax."),
    Mistake("T after softmax", lambda s, T: _softmax(s, dim=-1) / T,
            "you divided the weights by T after the softmax, so they no longer sum to 1. Divide the scores "
            "by T *before* the softmax."),
    Mistake("wrong axis", lambda s, T: _softmax(s / T, dim=0),
            "you normalised along dim 0. Each row of scores (the last axis) should give weights summing to 1."),
] + [Mistake(m.key, lambda s, T, f=m.fn: f(s / T, -1), m.hint) for m in weight_slips("each row")]

_TEMPERATURE_TRIALS = [
    Trial(_temp_ordinary, "ordinary"),
    Trial(_temp_cold, "cold",
          "right for ordinary T, but NaN or inf for T = 0.002: scores / T is near 1000 and exp overflows. "
          "Use a stable softmax (your stable_softmax, or kqvlib.softmax) on scores / T."),
] + stability_trials(_times_random_T)


def _temperature_hint(c: float, args) -> str:
    T = args[1]
    return (f"your weights are softmax(scores / {T / c:.3g}), but T is {T:.3g}: divide the scores by T, "
            f"once, and by nothing else.")


def check_temperature_softmax(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(scores, T)``: scores float64 (..., n), T > 0 a float; returns softmax(scores / T) along the
    last axis, shape (..., n). Tries ordinary T, T = 0.002, and the overflow rows of check_softmax."""
    return check(
        "temperature_softmax", fn, reference=lambda s, T: _softmax(s / T, dim=-1),
        trials=_TEMPERATURE_TRIALS, mistakes=_TEMPERATURE_MISTAKES,
        properties=[weights_property(lambda s, T: (s / T, -1), "each row", _temperature_hint)],
        explain=explain_error, nan_hint="Use a stable softmax on scores / T.", seed=seed, quiet=quiet,
    )

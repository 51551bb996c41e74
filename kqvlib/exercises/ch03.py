"""Checkers for chapter 3: scaled dot-product attention. Learners write PyTorch code here.

Shapes: Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v). The first kind of test input is (B, T, ·) with
B, T, S, d_k, d_v all different, so that a product in the wrong order fails loudly; the second adds a head
axis, (B, H, T, ·), so code that hard-codes axis 1 or 2 shows up; the third has scores in the thousands.
S < d_v, so the weights behind a wrong output can be read back from it (see ``common.attention_property``).

When the learner's code raises on the non-square inputs (the usual sign of K transposed the wrong way),
``check(diagnose=…)`` runs it once more on *square* inputs, where every order of the products fits, and
compares with the likely wrong orders to say which transpose went wrong.

The slips are the shared ones of :mod:`kqvlib.exercises.common`; the underscored names below are kept
for the chapters that import them.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from kqvlib.attention import softmax
from kqvlib.checks import CheckResult, Mistake, Property, Trial, check, constant_factor, constant_offset, \
    permuted, transposed
from kqvlib.exercises.common import _SCALE, Parts, attention_mistakes, attention_property, explain_error, \
    large_scores_trial, order_mistakes

__all__ = ["check_scaled_scores", "check_attention", "SHAPES"]

SHAPES = "Q is (..., T, d_k), K is (..., S, d_k), V is (..., S, d_v)"


# --- inputs --------------------------------------------------------------------------------------------------

def _qkv(g: torch.Generator, batch: tuple[int, ...], T: int, S: int, d_k: int, d_v: int, scale: float = 1.0):
    f64 = torch.float64
    return (scale * torch.randn(*batch, T, d_k, generator=g, dtype=f64),
            scale * torch.randn(*batch, S, d_k, generator=g, dtype=f64),
            torch.randn(*batch, S, d_v, generator=g, dtype=f64))


def _inputs_3d(g):  # B=2, T=3, S=5, d_k=7, d_v=6: every size different (and d_k/2 ≠ √d_k, unlike d_k=4)
    return _qkv(g, (2,), T=3, S=5, d_k=7, d_v=6)


def _inputs_4d(g):  # a head axis too: (B, H, T, d) with B=2, H=3
    return _qkv(g, (2, 3), T=3, S=5, d_k=7, d_v=6)


def _inputs_large(g):  # scores in the thousands: exp overflows without each row's max subtracted
    return _qkv(g, (2,), T=3, S=5, d_k=7, d_v=6, scale=20.0)


def _inputs_square(g):  # every size 4: each order of the products fits, so we can see which one was used
    return _qkv(g, (4,), T=4, S=4, d_k=4, d_v=4)


def _qk(inputs: Callable) -> Callable:
    return lambda g: inputs(g)[:2]


# --- references and mistakes ---------------------------------------------------------------------------------

def _scores(Q, K):  # (..., T, S)
    return Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])


def _attention(Q, K, V):  # (..., T, d_v)
    return softmax(_scores(Q, K), dim=-1) @ V


def _parts(Q, K, V=None):
    return Parts(Q, K, V, 1 / math.sqrt(Q.shape[-1]))


_EXTRA_AXES_HINT = (
    "right for (B, T, d) inputs, but not with an extra head axis (B, H, T, d). Count axes from the end so any "
    "number of batch axes works: K.transpose(-2, -1) (or K.mT), softmax(..., dim=-1), Q.shape[-1]."
)

_TRANSPOSE_HINT = (
    f"a matrix product did not fit. {SHAPES}, and T ≠ S here. The scores are Q @ K.transpose(-2, -1) → "
    "(..., T, S), one row per query; then weights (..., T, S) @ V (..., S, d_v) → (..., T, d_v)."
)

_SCORE_TRANSPOSE_MISTAKES = [
    Mistake("K @ Qᵀ", lambda Q, K: K @ Q.transpose(-2, -1) / math.sqrt(Q.shape[-1]),
            "you computed K @ Qᵀ, shape (..., S, T): one row per key. Transpose K instead: "
            "Q @ K.transpose(-2, -1) gives (..., T, S), one row per query."),
    Mistake("no transpose", lambda Q, K: Q @ K / math.sqrt(Q.shape[-1]),
            "Q @ K multiplies (T, d_k) by (S, d_k), which only fits when S = d_k. The dot products of queries "
            "with keys are Q @ K.transpose(-2, -1): transpose the last two axes of K."),
    Mistake("K.T", lambda Q, K: Q @ K.permute(*range(K.dim() - 1, -1, -1)) / math.sqrt(Q.shape[-1]),
            "K.T on a tensor with a batch axis reverses *all* its axes, batch included. Transpose only the "
            "last two: K.transpose(-2, -1) or K.mT."),
    Mistake("Kᵀ @ Q", lambda Q, K: K.transpose(-2, -1) @ Q / math.sqrt(Q.shape[-1]),
            "you computed Kᵀ @ Q. Queries go on the left: Q @ K.transpose(-2, -1) → (..., T, S)."),
    Mistake("transpose(0, 1)", lambda Q, K: Q @ K.transpose(0, 1) / math.sqrt(Q.shape[-1]),
            "K.transpose(0, 1) swaps the batch axis with the keys axis. Swap the last two axes: "
            "K.transpose(-2, -1) (or K.mT)."),
]


def _attn_from_scores(score_fn):
    """Turn a wrong (Q, K) → scores function into the whole (wrong) attention."""
    return lambda Q, K, V: softmax(score_fn(Q, K), dim=-1) @ V


def _scale_mistakes(wrap) -> list[Mistake]:
    """Wrong scalings of the scores (the shared list); ``wrap`` turns a (Q, K) → scores function into the
    checked function."""
    return [Mistake(k, wrap(lambda Q, K, f=f: Q @ K.transpose(-2, -1) * f(_parts(Q, K))), h)
            for k, f, h in _SCALE if k not in ("√d_v", "√d_model")]


_ATTENTION_MISTAKES = [m for m in attention_mistakes(_parts) if m.key != "√d_model"]  # no X in this chapter
_ATTENTION_TRANSPOSE_MISTAKES = order_mistakes(_parts) + [m for m in _ATTENTION_MISTAKES if m.key == "keepdim"]


def _scores_property(to_parts: Callable) -> Property:
    """Scores that should be Q Kᵀ / √d_k: a transpose, a constant factor, an offset, a reordering."""
    def test(args, got, expected):
        d_k = args[0].shape[-1]
        if transposed(got, expected):
            return "transposed scores", ("your scores are transposed, one row per key. Q @ K.mT gives one row "
                                         "per query.")
        c = constant_factor(got, expected)
        if c is not None:
            return "wrong scale", (f"your scores are Q Kᵀ / {math.sqrt(d_k) / c:.3g}, but the scale is √d_k = "
                                   f"√{d_k} = {math.sqrt(d_k):.3g} (d_k = Q.shape[-1]).")
        c = constant_offset(got, expected)
        if c is not None:
            return "offset", (f"your scores are the right ones plus {c:.3g} everywhere. Softmax would not "
                              f"notice, but the scores themselves are Q Kᵀ / √d_k, nothing added.")
        if permuted(got, expected, dim=-1) or permuted(got, expected, dim=-2):
            return "permuted", ("your scores hold the right numbers in the wrong places: entry (i, j) is "
                                "query i · key j / √d_k.")
        return None
    return Property("scores", test)


# --- the checkers --------------------------------------------------------------------------------------------

def _explain(e: BaseException):
    named = explain_error(e)
    if named is None and isinstance(e, (RuntimeError, ValueError)) and any(
            w in str(e) for w in ("size", "shape", "dimension", "match")):
        return "wrong transpose", _TRANSPOSE_HINT
    return named


def _check_with_diagnosis(name: str, fn: Callable, reference: Callable, trials: Sequence[Trial],
                          mistakes: Sequence[Mistake], square_inputs: Callable,
                          transpose_mistakes: Sequence[Mistake], quiet: bool, seed: int | None,
                          properties: Sequence[Property] = ()) -> CheckResult:
    """check() with the square-input diagnosis of an error, this chapter's error hints and properties."""
    return check(name, fn, reference, trials, mistakes, quiet=quiet, seed=seed, properties=properties,
                 diagnose=Trial(square_inputs), diagnose_mistakes=transpose_mistakes, explain=_explain)


def check_scaled_scores(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(Q: (..., T, d_k), K: (..., S, d_k)) → scores (..., T, S) = Q Kᵀ / √d_k."""
    return _check_with_diagnosis(
        "scaled_scores", fn, _scores,
        trials=[Trial(_qk(_inputs_3d)), Trial(_qk(_inputs_4d), "extra batch axes", _EXTRA_AXES_HINT)],
        mistakes=_scale_mistakes(lambda s: s) + _SCORE_TRANSPOSE_MISTAKES,
        square_inputs=_qk(_inputs_square), transpose_mistakes=_SCORE_TRANSPOSE_MISTAKES,
        quiet=quiet, seed=seed, properties=[_scores_property(_parts)],
    )


def check_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(Q: (..., T, d_k), K: (..., S, d_k), V: (..., S, d_v)) → (..., T, d_v) = softmax(Q Kᵀ / √d_k) V."""
    return _check_with_diagnosis(
        "attention", fn, _attention,
        trials=[Trial(_inputs_3d), Trial(_inputs_4d, "extra batch axes", _EXTRA_AXES_HINT),
                large_scores_trial(_inputs_large)],
        mistakes=_ATTENTION_MISTAKES, square_inputs=_inputs_square,
        transpose_mistakes=_ATTENTION_TRANSPOSE_MISTAKES,
        quiet=quiet, seed=seed, properties=[attention_property(_parts)],
    )

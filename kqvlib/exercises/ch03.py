"""Checkers for chapter 3: scaled dot-product attention. Learners write PyTorch code here.

Shapes: Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v). The first kind of test input is
(B, T, ·) with B, T, S, d_k, d_v all different, so that a product in the wrong order fails loudly;
the second adds a head axis, (B, H, T, ·), so code that hard-codes axis 1 or 2 shows up.

When the learner's code raises on those non-square inputs (the usual sign of K transposed the wrong
way), ``check(diagnose=…)`` runs it once more on *square* inputs, where every order of the products
fits, and compares with the likely wrong orders to say which transpose went wrong.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from kqvlib.attention import softmax
from kqvlib.checks import CheckResult, Mistake, Trial, check

SHAPES = "Q is (..., T, d_k), K is (..., S, d_k), V is (..., S, d_v)"


# --- inputs ------------------------------------------------------------------------------------

def _qkv(g: torch.Generator, batch: tuple[int, ...], T: int, S: int, d_k: int, d_v: int):
    f64 = torch.float64
    return (torch.randn(*batch, T, d_k, generator=g, dtype=f64),
            torch.randn(*batch, S, d_k, generator=g, dtype=f64),
            torch.randn(*batch, S, d_v, generator=g, dtype=f64))


def _inputs_3d(g):  # B=2, T=3, S=5, d_k=4, d_v=6: every size different
    return _qkv(g, (2,), T=3, S=5, d_k=4, d_v=6)


def _inputs_4d(g):  # a head axis too: (B, H, T, d) with B=2, H=3
    return _qkv(g, (2, 3), T=3, S=5, d_k=4, d_v=6)


def _inputs_square(g):  # every size 4: each order of the products fits, so we can see which one was used
    return _qkv(g, (4,), T=4, S=4, d_k=4, d_v=4)


def _qk(inputs: Callable) -> Callable:
    return lambda g: inputs(g)[:2]


# --- references and mistakes -------------------------------------------------------------------

def _scores(Q, K):  # (..., T, S)
    return Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])


def _attention(Q, K, V):  # (..., T, d_v)
    return softmax(_scores(Q, K), dim=-1) @ V


_EXTRA_AXES_HINT = (
    "right for (B, T, d) inputs, but not with an extra head axis (B, H, T, d). Count axes from the end "
    "so any number of batch axes works: K.transpose(-2, -1) (or K.mT), softmax(..., dim=-1), Q.shape[-1]."
)

_TRANSPOSE_HINT = (
    f"a matrix product did not fit ({{err}}). {SHAPES}, and T ≠ S here. The scores are "
    "Q @ K.transpose(-2, -1) → (..., T, S), one row per query; then weights (..., T, S) @ V → (..., T, d_v)."
)

_SCORE_TRANSPOSE_MISTAKES = [
    Mistake("K @ Qᵀ", lambda Q, K: K @ Q.transpose(-2, -1) / math.sqrt(Q.shape[-1]),
            "you computed K @ Qᵀ, shape (..., S, T): one row per key. Transpose K instead: "
            "Q @ K.transpose(-2, -1) gives (..., T, S), one row per query."),
    Mistake("no transpose", lambda Q, K: Q @ K / math.sqrt(Q.shape[-1]),
            "Q @ K multiplies (T, d_k) by (S, d_k), which only fits when S = d_k. The dot products of "
            "queries with keys are Q @ K.transpose(-2, -1): transpose the last two axes of K."),
    Mistake("K.T", lambda Q, K: Q @ K.permute(*range(K.dim() - 1, -1, -1)) / math.sqrt(Q.shape[-1]),
            "K.T on a tensor with a batch axis reverses *all* its axes, batch included. Transpose only the "
            "last two: K.transpose(-2, -1) or K.mT."),
    Mistake("Kᵀ @ Q", lambda Q, K: K.transpose(-2, -1) @ Q / math.sqrt(Q.shape[-1]),
            "you computed Kᵀ @ Q. Queries go on the left: Q @ K.transpose(-2, -1) → (..., T, S)."),
]


def _attn_from_scores(score_fn):
    """Turn a wrong (Q, K) → scores function into the whole (wrong) attention."""
    return lambda Q, K, V: softmax(score_fn(Q, K), dim=-1) @ V


_ATTENTION_TRANSPOSE_MISTAKES = [
    Mistake(m.key, _attn_from_scores(m.fn), m.hint) for m in _SCORE_TRANSPOSE_MISTAKES
] + [
    Mistake("V @ weights", lambda Q, K, V: V @ softmax(_scores(Q, K), dim=-1),
            "you multiplied V @ weights. The weights come first: weights (..., T, S) @ V (..., S, d_v) → "
            "(..., T, d_v), each output row a weighted sum of value rows."),
    Mistake("weightsᵀ @ V", lambda Q, K, V: softmax(_scores(Q, K), dim=-1).transpose(-2, -1) @ V,
            "you transposed the weights before multiplying by V. They are already (..., T, S), "
            "which is what V (..., S, d_v) needs on its left."),
]


def _scale_mistakes(wrap) -> list[Mistake]:
    """Wrong scalings of the scores; ``wrap`` turns a (Q, K) → scores function into the checked function."""
    return [
        Mistake("not scaled", wrap(lambda Q, K: Q @ K.transpose(-2, -1)),
                "the scores are not scaled. Divide Q Kᵀ by √d_k (math.sqrt(Q.shape[-1])) so they keep "
                "variance ≈ 1 whatever d_k is."),
        Mistake("divided by d_k", wrap(lambda Q, K: Q @ K.transpose(-2, -1) / Q.shape[-1]),
                "you divided by d_k. Divide by its square root, √d_k: the standard deviation of q·k "
                "grows like √d_k, not d_k."),
        Mistake("multiplied by √d_k", wrap(lambda Q, K: Q @ K.transpose(-2, -1) * math.sqrt(Q.shape[-1])),
                "you multiplied by √d_k. Divide by it instead."),
        Mistake("√T", wrap(lambda Q, K: Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-2])),
                "you scaled by √T, the number of queries (Q.shape[1] of a (B, T, d_k) tensor). "
                "d_k is the *last* axis: math.sqrt(Q.shape[-1])."),
        Mistake("√S", wrap(lambda Q, K: Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-2])),
                "you scaled by √S, the number of keys. d_k is the *last* axis: math.sqrt(Q.shape[-1])."),
    ]


_ATTENTION_MISTAKES = _scale_mistakes(_attn_from_scores) + [
    Mistake("softmax over queries", lambda Q, K, V: softmax(_scores(Q, K), dim=-2) @ V,
            "your softmax runs over the queries axis (dim=-2): each *column* sums to 1. Each query needs "
            "a distribution over the keys: softmax(scores, dim=-1), so each row sums to 1."),
    Mistake("softmax over batch", lambda Q, K, V: softmax(_scores(Q, K), dim=0) @ V,
            "your softmax runs over dim=0, the batch axis, mixing different examples. Use dim=-1 (the keys)."),
    Mistake("no softmax", lambda Q, K, V: _scores(Q, K) @ V,
            "you used the raw scores as weights. Turn each row into a distribution first: "
            "softmax(scores, dim=-1) @ V."),
    Mistake("not normalised", lambda Q, K, V: torch.exp(_scores(Q, K)) @ V,
            "your weights exp(scores) do not sum to 1: divide each row by its sum (that is softmax)."),
    Mistake("returned weights", lambda Q, K, V: softmax(_scores(Q, K), dim=-1),
            "you returned the weights (..., T, S). Return their product with the values: weights @ V."),
]


# --- the checker with the transpose diagnosis --------------------------------------------------

def _check_with_diagnosis(
    name: str,
    fn: Callable,
    reference: Callable,
    trials: Sequence[Trial],
    mistakes: Sequence[Mistake],
    square_inputs: Callable,
    transpose_mistakes: Sequence[Mistake],
    quiet: bool,
    seed: int | None,
) -> CheckResult:
    first_error_ndim: list[int] = []  # the rank of the inputs on which fn first raised

    def learner(*args):
        try:
            return fn(*args)
        except NotImplementedError:
            raise
        except Exception:
            first_error_ndim.append(args[0].dim())
            raise

    # When fn raises, check() re-runs it on square inputs, where every order of the products fits,
    # to name the transpose that went wrong.
    result = check(name, learner, reference, trials, mistakes, quiet=True, seed=seed,
                   diagnose=Trial(square_inputs), diagnose_mistakes=transpose_mistakes)
    if result.key == "exception":  # raised, and no wrong order of products explains it
        err = result.details["exc"]
        err_text = f"{type(err).__name__}: {str(err).rstrip('.')}"
        if first_error_ndim[0] > 3:  # right on (B, T, d), broken by a head axis
            result = CheckResult(False, "extra batch axes", f"✗ {name}: {_EXTRA_AXES_HINT} (Your code raised {err_text}.)")
        elif isinstance(err, (RuntimeError, ValueError)) and any(
            w in str(err) for w in ("size", "shape", "dimension", "match")
        ):
            result = CheckResult(False, "wrong transpose", f"✗ {name}: " + _TRANSPOSE_HINT.format(err=err_text))
    if not quiet:
        print(result.message)
    return result


def check_scaled_scores(fn, quiet: bool = False, seed: int | None = None) -> CheckResult:
    """fn(Q: (..., T, d_k), K: (..., S, d_k)) → scores (..., T, S) = Q Kᵀ / √d_k."""
    return _check_with_diagnosis(
        "scaled_scores", fn, _scores,
        trials=[Trial(_qk(_inputs_3d)), Trial(_qk(_inputs_4d), "extra batch axes", _EXTRA_AXES_HINT)],
        mistakes=_scale_mistakes(lambda s: s) + _SCORE_TRANSPOSE_MISTAKES,
        square_inputs=_qk(_inputs_square),
        transpose_mistakes=_SCORE_TRANSPOSE_MISTAKES,
        quiet=quiet, seed=seed,
    )


def check_attention(fn, quiet: bool = False, seed: int | None = None) -> CheckResult:
    """fn(Q: (..., T, d_k), K: (..., S, d_k), V: (..., S, d_v)) → (..., T, d_v) = softmax(Q Kᵀ / √d_k) V."""
    return _check_with_diagnosis(
        "attention", fn, _attention,
        trials=[Trial(_inputs_3d), Trial(_inputs_4d, "extra batch axes", _EXTRA_AXES_HINT)],
        mistakes=_ATTENTION_MISTAKES,
        square_inputs=_inputs_square,
        transpose_mistakes=_ATTENTION_TRANSPOSE_MISTAKES,
        quiet=quiet, seed=seed,
    )

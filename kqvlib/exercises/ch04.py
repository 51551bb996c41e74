"""Checkers for chapter 4: queries, keys and values are learned.

``check_self_attention(fn)`` checks ``self_attention(X, W_q, W_k, W_v)``:

    X: (n, d_model)   W_q, W_k: (d_model, d_k)   W_v: (d_model, d_v)   →   (n, d_v)

The test shapes are deliberately all different (n=5, d_model=6, d_k=4, d_v=3) so that using ``X``
where ``X @ W_v`` belongs changes the output's shape, and a transposed weight fails loudly.
"""
from __future__ import annotations

import math

import torch

from kqvlib.attention import softmax
from kqvlib.checks import CheckResult, Mistake, Trial, check

N, D_MODEL, D_K, D_V = 5, 6, 4, 3  # the shapes of the ordinary test (all different on purpose)
N_SQ = 6  # the diagnostic test: n = d_model = d_k = d_v = 6, so transposing runs instead of failing

_SHAPES = (
    f"Here X is (n, d_model) = ({N}, {D_MODEL}), W_q and W_k are (d_model, d_k) = ({D_MODEL}, {D_K}) "
    f"and W_v is (d_model, d_v) = ({D_MODEL}, {D_V})."
)


def _reference(X, W_q, W_k, W_v):
    """X: (n, d_model), W_q/W_k: (d_model, d_k), W_v: (d_model, d_v) → (n, d_v)."""
    Q, K, V = X @ W_q, X @ W_k, X @ W_v  # (n, d_k), (n, d_k), (n, d_v)
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=-1) @ V


def _swapped_qk(X, W_q, W_k, W_v):
    Q, K = X @ W_k, X @ W_q  # the roles exchanged
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=-1) @ (X @ W_v)


def _values_not_projected(X, W_q, W_k, W_v):
    Q, K = X @ W_q, X @ W_k
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=-1) @ X  # (n, d_model), not (n, d_v)


def _no_scaling(X, W_q, W_k, W_v):
    Q, K = X @ W_q, X @ W_k
    return softmax(Q @ K.T, dim=-1) @ (X @ W_v)


def _wrong_axis(X, W_q, W_k, W_v):
    Q, K = X @ W_q, X @ W_k
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=0) @ (X @ W_v)


def _weights_transposed(X, W_q, W_k, W_v):
    Q, K, V = X @ W_q.T, X @ W_k.T, X @ W_v.T  # only runs when every W is square
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=-1) @ V


def _k_not_transposed(X, W_q, W_k, W_v):
    Q, K = X @ W_q, X @ W_k
    return softmax(Q @ K / math.sqrt(W_q.shape[1]), dim=-1) @ (X @ W_v)  # only runs when n == d_k


def _make(n, d_model, d_k, d_v):
    def make_inputs(g):
        X = torch.randn(n, d_model, generator=g, dtype=torch.float64)
        # Scaled so the scores are O(1): neither uniform nor one-hot weights, so every mistake shows.
        W_q = torch.randn(d_model, d_k, generator=g, dtype=torch.float64) / math.sqrt(d_model) * 1.5
        W_k = torch.randn(d_model, d_k, generator=g, dtype=torch.float64) / math.sqrt(d_model) * 1.5
        W_v = torch.randn(d_model, d_v, generator=g, dtype=torch.float64)
        return X, W_q, W_k, W_v

    return make_inputs


_MISTAKES = [
    Mistake(
        "swapped q and k",
        _swapped_qk,
        "your scores are K Qᵀ instead of Q Kᵀ: the queries come from X @ W_q and the keys from X @ W_k. "
        "Swapping them transposes the score matrix, so row i would describe who looks at token i, "
        "not whom token i looks at.",
    ),
    Mistake(
        "values not projected",
        _values_not_projected,
        f"your output has shape (n, d_model) = ({N}, {D_MODEL}): you averaged the rows of X itself. "
        f"The values are V = X @ W_v, shape (n, d_v) = ({N}, {D_V}); average those.",
    ),
    Mistake(
        "no scaling",
        _no_scaling,
        "you forgot to divide the scores by √d_k (d_k = W_q.shape[1], the width of the queries and keys, "
        "not d_model).",
    ),
    Mistake(
        "wrong axis",
        _wrong_axis,
        "each row of the weights must sum to 1 (one distribution per query): take the softmax over the "
        "last axis, dim=-1, not dim=0.",
    ),
]

_DIAGNOSTIC_MISTAKES = [
    Mistake(
        "weight transposed",
        _weights_transposed,
        "it looks like you multiplied by a transposed weight (X @ W.T). " + _SHAPES + " The projections "
        "are plain X @ W_q, X @ W_k, X @ W_v, giving (n, d_k), (n, d_k), (n, d_v). (nn.Linear stores its "
        "weight the other way round, as (d_out, d_in); these W's are already (d_in, d_out).)",
    ),
    Mistake(
        "K not transposed",
        _k_not_transposed,
        "the scores are Q @ K.T: Q is (n, d_k) and K is (n, d_k), so K must be transposed to (d_k, n) "
        "to give an (n, n) score matrix. " + _SHAPES,
    ),
]


def check_self_attention(fn, quiet: bool = False, seed: int | None = None) -> CheckResult:
    """Check ``fn(X, W_q, W_k, W_v)`` → softmax((X W_q)(X W_k)ᵀ / √d_k) (X W_v), shape (n, d_v).

    When ``fn`` raises (typically a shape error), it is run once more on square inputs, where a
    transposed weight or an untransposed K runs without error, to name the mistake.
    """
    name = "self_attention"
    result = check(
        name, fn, _reference, [Trial(_make(N, D_MODEL, D_K, D_V))], mistakes=_MISTAKES, seed=seed, quiet=True,
        diagnose=Trial(_make(N_SQ, N_SQ, N_SQ, N_SQ)), diagnose_mistakes=_DIAGNOSTIC_MISTAKES,
    )
    if result.key == "exception":  # raised, and no known mistake explains it
        result = CheckResult(
            False, "exception", f"✗ {name}: your function raised {result.details['error']}. Check each shape. " + _SHAPES
        )
    if not quiet:
        print(result.message)
    return result

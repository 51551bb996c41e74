"""Checkers for chapter 4: queries, keys and values are learned.

``check_self_attention(fn)`` checks ``self_attention(X, W_q, W_k, W_v)``:

    X: (n, d_model)   W_q, W_k: (d_model, d_k)   W_v: (d_model, d_v)   →   (n, d_v)

The test shapes are all different (n=4, d_model=7, d_k=3, d_v=5) so that using ``X`` where ``X @ W_v``
belongs changes the output's shape and a transposed weight fails loudly; n < d_v, so the weights behind a
wrong output can be read back from it. The slips are chapter 4's own (roles swapped, values not projected,
a transposed weight) followed by the shared attention slips of :mod:`kqvlib.exercises.common`, so this
checker names every slip chapters 1–3 name.
"""
from __future__ import annotations

import math

import torch

from kqvlib.attention import softmax
from kqvlib.checks import CheckResult, Mistake, Trial, check
from kqvlib.exercises.common import Parts, attention_mistakes, attention_property, explain_error, \
    large_scores_trial, order_mistakes

__all__ = ["check_self_attention"]

N, D_MODEL, D_K, D_V = 4, 7, 3, 5  # the shapes of the ordinary test (all different on purpose)
N_SQ = 6  # the diagnostic test: n = d_model = d_k = d_v = 6, so transposing runs instead of failing

_SHAPES = (
    f"Here X is (n, d_model) = ({N}, {D_MODEL}), W_q and W_k are (d_model, d_k) = ({D_MODEL}, {D_K}) "
    f"and W_v is (d_model, d_v) = ({D_MODEL}, {D_V})."
)


def _parts(X, W_q, W_k, W_v):
    return Parts(X @ W_q, X @ W_k, X @ W_v, 1 / math.sqrt(W_q.shape[1]), d_model=X.shape[-1])


def _reference(X, W_q, W_k, W_v):
    """X: (n, d_model), W_q/W_k: (d_model, d_k), W_v: (d_model, d_v) → (n, d_v)."""
    Q, K, V = X @ W_q, X @ W_k, X @ W_v  # (n, d_k), (n, d_k), (n, d_v)
    return softmax(Q @ K.T / math.sqrt(W_q.shape[1]), dim=-1) @ V


def _make(n, d_model, d_k, d_v, scale=1.0):
    def make_inputs(g):
        X = torch.randn(n, d_model, generator=g, dtype=torch.float64)
        # Scaled so the scores are O(1): neither uniform nor one-hot weights, so every mistake shows.
        W_q = torch.randn(d_model, d_k, generator=g, dtype=torch.float64) / math.sqrt(d_model) * 1.5 * scale
        W_k = torch.randn(d_model, d_k, generator=g, dtype=torch.float64) / math.sqrt(d_model) * 1.5 * scale
        W_v = torch.randn(d_model, d_v, generator=g, dtype=torch.float64)
        return X, W_q, W_k, W_v

    return make_inputs


def _projected(f):  # a slip written on (Q, K, V, X): the checked function of (X, W_q, W_k, W_v)
    return lambda X, W_q, W_k, W_v: f(X @ W_q, X @ W_k, X @ W_v, X, math.sqrt(W_q.shape[1]))


_MISTAKES = [
    Mistake("swapped q and k", _projected(lambda Q, K, V, X, r: softmax(K @ Q.T / r, dim=-1) @ V),
            "your scores are K Qᵀ instead of Q Kᵀ: the queries come from X @ W_q and the keys from X @ W_k. "
            "Swapping them transposes the score matrix, so row i would describe who looks at token i, not "
            "whom token i looks at."),
    Mistake("values not projected", _projected(lambda Q, K, V, X, r: softmax(Q @ K.T / r, dim=-1) @ X),
            f"your output has shape (n, d_model) = ({N}, {D_MODEL}): you averaged the rows of X itself. The "
            f"values are V = X @ W_v, shape (n, d_v) = ({N}, {D_V}); average those."),
    Mistake("no projections",
            _projected(lambda Q, K, V, X, r: softmax(X @ X.T / math.sqrt(X.shape[-1]), dim=-1) @ X),
            "you used X itself as queries, keys and values. Project it first: Q = X @ W_q, K = X @ W_k, "
            "V = X @ W_v."),
] + attention_mistakes(_parts)

_DIAGNOSTIC_MISTAKES = [
    Mistake("weight transposed",
            (lambda X, W_q, W_k, W_v: softmax((X @ W_q.T) @ (X @ W_k.T).T / math.sqrt(W_q.shape[1]), dim=-1)
             @ (X @ W_v.T)),
            "it looks like you multiplied by a transposed weight (X @ W.T). " + _SHAPES + " The projections "
            "are plain X @ W_q, X @ W_k, X @ W_v, giving (n, d_k), (n, d_k), (n, d_v). (nn.Linear stores its "
            "weight the other way round, as (d_out, d_in); these W's are already (d_in, d_out).)"),
    Mistake("K not transposed", _projected(lambda Q, K, V, X, r: softmax(Q @ K / r, dim=-1) @ V),
            "the scores are Q @ K.T: Q is (n, d_k) and K is (n, d_k), so K must be transposed to (d_k, n) to "
            "give an (n, n) score matrix. " + _SHAPES),
    Mistake("W @ X", lambda X, W_q, W_k, W_v: softmax((W_q @ X) @ (W_k @ X).T / math.sqrt(W_q.shape[1]), dim=-1)
            @ (W_v @ X),
            "it looks like you multiplied W @ X. The tokens are the rows of X, so X comes first: X @ W_q, "
            "X @ W_k, X @ W_v. " + _SHAPES),
    Mistake("W_v as values",
            (lambda X, W_q, W_k, W_v: softmax((X @ W_q) @ (X @ W_k).T / math.sqrt(W_q.shape[1]), dim=-1) @ W_v),
            "you multiplied the weights by W_v itself. The values are the projected tokens, V = X @ W_v: "
            "weights @ (X @ W_v). " + _SHAPES),
] + order_mistakes(_parts)


def _explain(e: BaseException):
    named = explain_error(e)
    if named is None and any(w in str(e) for w in ("size", "shape", "dimension", "multiplied")):
        return "shape error", "a shape did not fit. Check each shape. " + _SHAPES
    return named


def check_self_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(X, W_q, W_k, W_v)`` → softmax((X W_q)(X W_k)ᵀ / √d_k) (X W_v), shape (n, d_v).

    Tries ordinary inputs, then scores in the thousands. When ``fn`` raises (typically a shape error), it
    runs once more on square inputs, where a transposed weight or an untransposed K runs, to name the slip."""
    return check(
        "self_attention", fn, _reference,
        [Trial(_make(N, D_MODEL, D_K, D_V)), large_scores_trial(_make(N, D_MODEL, D_K, D_V, scale=30.0))],
        mistakes=_MISTAKES, properties=[attention_property(_parts)],
        diagnose=Trial(_make(N_SQ, N_SQ, N_SQ, N_SQ)), diagnose_mistakes=_DIAGNOSTIC_MISTAKES,
        explain=_explain, seed=seed, quiet=quiet,
    )

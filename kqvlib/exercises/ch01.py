"""Checkers for chapter 1: vectors, dot products and soft lookup. Learners write NumPy code here.

    check_cosine_similarity(fn)   fn(a, b) -> the cosine of the angle between a and b
    check_soft_lookup(fn)         fn(query (d,), keys (n, d), values (n, d_v)) -> (d_v,)
    check_soft_lookup_batch(fn)   fn(queries (m, d), keys (n, d), values (n, d_v)) -> (m, d_v)

The soft-lookup slips are the shared attention slips of :mod:`kqvlib.exercises.common` (with no 1/√d
scaling: chapter 1 uses the plain dot products), so later chapters name every slip named here.
"""
from __future__ import annotations

import torch

from kqvlib.attention import soft_lookup
from kqvlib.checks import CheckResult, Mistake, Trial, check
from kqvlib.exercises.common import Parts, attention_mistakes, attention_property, explain_error, order_mistakes

__all__ = ["check_cosine_similarity", "check_soft_lookup", "check_soft_lookup_batch"]


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _vectors(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    d = int(torch.randint(3, 9, (1,), generator=g))
    return _randn(g, d), 3 * _randn(g, d)


def _cosine(a, b):
    return (a @ b) / (a.norm() * b.norm())


def check_cosine_similarity(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(a: (d,), b: (d,)) → float, the cosine of the angle between a and b."""
    return check(
        "cosine_similarity", fn, _cosine, _vectors, numpy=True,
        mistakes=[
            Mistake("no normalisation", lambda a, b: a @ b,
                    "that is the plain dot product. Divide by the two lengths ‖a‖·‖b‖."),
            Mistake("squared norms", lambda a, b: (a @ b) / ((a @ a) * (b @ b)),
                    "divide by the lengths ‖a‖ = √(a·a), not by the squared lengths a·a."),
            Mistake("one norm", lambda a, b: (a @ b) / a.norm(),
                    "you divided by ‖a‖ only — divide by ‖b‖ as well."),
            Mistake("one norm", lambda a, b: (a @ b) / b.norm(),
                    "you divided by ‖b‖ only — divide by ‖a‖ as well."),
            Mistake("elementwise", lambda a, b: a * b / (a.norm() * b.norm()),
                    "you returned a vector of products; sum them (a dot product is one number)."),
            Mistake("angle", lambda a, b: torch.arccos(_cosine(a, b)),
                    "you returned the angle θ itself (arccos). The exercise asks for cos θ."),
            Mistake("sum of norms", lambda a, b: (a @ b) / (a.norm() + b.norm()),
                    "divide by the *product* of the lengths, ‖a‖·‖b‖, not their sum."),
        ],
        explain=explain_error, seed=seed, quiet=quiet,
    )


def _lookup_inputs(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n in 3..5 keys, d_v > n (so the weights behind a wrong answer can be read back), d in 3..7."""
    n, d = int(torch.randint(3, 6, (1,), generator=g)), int(torch.randint(3, 8, (1,), generator=g))
    return _randn(g, d), _randn(g, n, d), _randn(g, n, n + 2)


def _single(q, K, V):
    return Parts(q[None], K, V, 1.0)


def check_soft_lookup(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(query: (d,), keys: (n, d), values: (n, d_v)) → (d_v,)."""
    return check(
        "soft_lookup", fn, soft_lookup, _lookup_inputs, numpy=True,
        mistakes=attention_mistakes(_single, scaled=False, out=lambda y: y.squeeze(-2)),
        properties=[attention_property(_single)], explain=explain_error, seed=seed, quiet=quiet,
    )


# --- many queries at once --------------------------------------------------------------------------------

M, N, D, D_V = 3, 5, 4, 6  # queries, keys, width of queries and keys, width of values: all different


def _batch_inputs(m, n, d, d_v):
    return lambda g: (_randn(g, m, d), _randn(g, n, d), _randn(g, n, d_v))


def _batch_reference(Q, K, V):
    return torch.softmax(Q @ K.T, dim=-1) @ V


def _batch(Q, K, V):
    return Parts(Q, K, V, 1.0)


_SHAPES = (f"queries (m, d) = ({M}, {D}) @ keys.T (d, n) = ({D}, {N}) gives scores (m, n) = ({M}, {N}); "
           f"weights (m, n) @ values (n, d_v) = ({N}, {D_V}) gives (m, d_v) = ({M}, {D_V}).")

_BATCH_MISTAKES = [
    Mistake("one query", lambda Q, K, V: soft_lookup(Q[0], K, V),
            f"you returned one answer, shape (d_v,). Return one row per query: shape (m, d_v) = ({M}, {D_V})."),
    Mistake("one query", lambda Q, K, V: soft_lookup(Q[-1], K, V),
            f"you returned one answer, shape (d_v,). Return one row per query: shape (m, d_v) = ({M}, {D_V})."),
] + attention_mistakes(_batch, scaled=False)


def _explain_batch(e: BaseException):
    named = explain_error(e)
    if named is None and any(w in str(e) for w in ("mismatch", "shape", "size", "align")):
        return "wrong transpose", "a matrix product did not fit. " + _SHAPES
    return named


def check_soft_lookup_batch(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(queries: (m, d), keys: (n, d), values: (n, d_v)) → (m, d_v): one soft lookup per query.

    When ``fn`` raises, it runs once more on square inputs, where a product in the wrong order fits."""
    return check(
        "soft_lookup_batch", fn, _batch_reference, _batch_inputs(M, N, D, D_V), numpy=True,
        mistakes=_BATCH_MISTAKES, properties=[attention_property(_batch)],
        diagnose=Trial(_batch_inputs(4, 4, 4, 4)),
        diagnose_mistakes=order_mistakes(_batch) + [m for m in _BATCH_MISTAKES if m.key == "keepdim"],
        explain=_explain_batch, seed=seed, quiet=quiet,
    )

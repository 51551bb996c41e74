"""Checkers for chapter 1: vectors, dot products and soft lookup. Learners write NumPy code here."""
from __future__ import annotations

import torch

from kqvlib.attention import soft_lookup, softmax
from kqvlib.checks import CheckResult, Mistake, check


def _vectors(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    d = int(torch.randint(3, 9, (1,), generator=g))
    return torch.randn(d, generator=g, dtype=torch.float64), 3 * torch.randn(d, generator=g, dtype=torch.float64)


def check_cosine_similarity(fn) -> CheckResult:
    """fn(a: (d,), b: (d,)) → float, the cosine of the angle between a and b."""
    ref = lambda a, b: (a @ b) / (a.norm() * b.norm())
    return check(
        "cosine_similarity", fn, ref, _vectors, numpy=True,
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
        ],
    )


def _lookup_inputs(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, d, d_v = (int(x) for x in torch.randint(3, 8, (3,), generator=g))
    if d_v == n:  # keep n and d_v different so a wrong axis shows up in the shape
        d_v = n + 1
    return (torch.randn(d, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, d_v, generator=g, dtype=torch.float64))


def check_soft_lookup(fn) -> CheckResult:
    """fn(query: (d,), keys: (n, d), values: (n, d_v)) → (d_v,)."""
    return check(
        "soft_lookup", fn, soft_lookup, _lookup_inputs, numpy=True,
        mistakes=[
            Mistake("weights returned", lambda q, K, V: softmax(K @ q, dim=0),
                    "you returned the n weights. The answer is their weighted sum of the values: weights @ values."),
            Mistake("no exp", lambda q, K, V: ((K @ q) / (K @ q).sum()) @ V,
                    "you divided the scores by their sum without exponentiating them first — "
                    "negative scores then give negative weights. Use exp(scores) / exp(scores).sum()."),
            Mistake("not normalised", lambda q, K, V: torch.exp(K @ q) @ V,
                    "the weights must sum to 1: divide exp(scores) by its sum."),
            Mistake("hard lookup", lambda q, K, V: V[(K @ q).argmax()],
                    "that is a hard lookup (only the best key's value). Blend every value, weighted by softmax(scores)."),
            Mistake("plain average", lambda q, K, V: V.mean(dim=0),
                    "you averaged the values equally; weight each by softmax of its key's score with the query."),
        ],
    )

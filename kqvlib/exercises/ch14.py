"""Checkers for chapter 14, *Looking inside the trained GPT*.

    check_previous_token_score(fn)   fn(weights (B, H, T, T)) → (H,): for each head, the mean over the
                                     batch and the queries t = 1 … T − 1 of weights[b, h, t, t − 1]

The inputs are causal attention weights (every row a distribution over keys 0 … t) in float64, with
B = 3, H = 4 and T = 7 all different, so an average over the wrong axis shows up as a wrong shape.
Every Mistake below is a slip a learner is likely to make, with its own hint.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, check, constant_factor

__all__ = ["check_previous_token_score"]

B, H, T = 3, 4, 7


def _causal_weights(g: torch.Generator) -> tuple[torch.Tensor]:
    scores = 2.0 * torch.randn(B, H, T, T, generator=g, dtype=torch.float64)  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    return (torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1),)


def _diag(w: torch.Tensor, offset: int = -1) -> torch.Tensor:
    """(B, H, T, T) → (B, H, T − |offset|): weights[b, h, t, t + offset]."""
    return w.diagonal(offset=offset, dim1=-2, dim2=-1)


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """The reference: (B, H, T, T) → (H,), the mean weight on the previous position."""
    return _diag(weights).mean(dim=(0, -1))  # (B, H, T − 1) → (H,)


def _argmax_hits(w: torch.Tensor) -> torch.Tensor:  # how often t − 1 gets the LARGEST weight
    prev = torch.arange(w.shape[-1]) - 1  # (T,)
    return (w.argmax(-1) == prev)[..., 1:].double().mean(dim=(0, -1))  # (H,)


_SLIPS = [
    Mistake("main diagonal", lambda w: _diag(w, 0).mean(dim=(0, -1)),
            "you read the main diagonal, weights[..., t, t]: how much each position attends to ITSELF. The "
            "previous token is one below it: weights.diagonal(offset=-1, dim1=-2, dim2=-1)."),
    Mistake("diagonal above", lambda w: _diag(w, 1).mean(dim=(0, -1)),
            "your scores are all 0: you read weights[..., t, t + 1] (or weights[..., t − 1, t]), which a "
            "causal head never attends to. Row t is the query, column t − 1 the key: offset=-1."),
    Mistake("position 0 included", lambda w: _diag(w).sum(dim=-1).mean(dim=0) / T,
            "your scores are (T − 1)/T of the right ones: you averaged over all T queries, but query 0 has "
            "no previous token. Average over the T − 1 queries t = 1 … T − 1 only."),
    Mistake("not normalised", lambda w: _diag(w).sum(dim=(0, -1)),
            "you summed the weights on the previous token instead of averaging them, so a score can exceed "
            "1. Take the mean over the batch and the T − 1 queries (.mean(dim=(0, -1)))."),
    Mistake("summed over the batch", lambda w: _diag(w).mean(dim=-1).sum(dim=0),
            "your scores are B times too large: you averaged over the queries but summed over the batch. "
            "Average over both."),
    Mistake("summed over queries", lambda w: _diag(w).sum(dim=-1).mean(dim=0),
            "your scores are T − 1 times too large: you averaged over the batch but summed over the queries. "
            "Average over both."),
    Mistake("averaged over heads", lambda w: _diag(w).mean(dim=(1, -1)),
            "your result has one number per sequence in the batch (shape (B,)): you averaged over the heads "
            "axis (dim 1). Keep the heads and average over the batch (dim 0) and the queries (dim -1)."),
    Mistake("averaged over everything", lambda w: _diag(w).mean(),
            "you returned one number for all heads together. Keep one score per head: average over the "
            "batch and the queries only, .mean(dim=(0, -1)) → (H,)."),
    Mistake("batch kept", lambda w: _diag(w).mean(dim=-1),
            "your result is (B, H): one score per sequence and head. Average over the batch too → (H,)."),
    Mistake("queries kept", lambda w: _diag(w).mean(dim=0),
            "your result is (H, T − 1): one number per query. Average over the queries too → (H,)."),
    Mistake("argmax", _argmax_hits,
            "you counted how often t − 1 gets the LARGEST weight. The score is the mean of the weight "
            "itself, weights[b, h, t, t − 1], so a head that splits its weight half and half scores 0.5."),
]


def _properties() -> list[Property]:
    def range01(args, got, exp):
        if got.shape == exp.shape and bool(((got < -1e-12) | (got > 1 + 1e-12)).any()):
            return ("outside [0, 1]", "some scores lie outside [0, 1], but a mean of attention weights "
                    "(each in [0, 1]) cannot: check what you summed and what you divided by.")
        return None

    def factor(args, got, exp):
        c = constant_factor(got, exp)
        if c is not None:
            return ("constant factor", f"your scores are the right ones times {c:.3g}: the entries you read "
                    "are right, the number you divide by is not. Divide by B · (T − 1).")
        return None

    def other_key(args, got, exp):
        w = args[0]
        for off in range(-T + 1, 1):
            if off != -1 and got.shape == exp.shape and bool(torch.allclose(got, _diag(w, off).mean((0, -1)))):
                return ("wrong diagonal", f"you read weights[..., t, t {off:+d}]: the key {-off} positions "
                        "back. The previous token is one back: offset=-1.")
        return None

    return [Property("wrong diagonal", other_key), Property("constant factor", factor),
            Property("outside [0, 1]", range01)]


def check_previous_token_score(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(weights (B, H, T, T)) → (H,): each head's mean weight on the previous position."""
    return check("previous_token_score", fn, reference=previous_token_score,
                 trials=[Trial(_causal_weights)], mistakes=_SLIPS, properties=_properties(),
                 seed=seed, quiet=quiet)

"""Checkers for chapter 15, *Induction heads and in-context learning*.

    check_prefix_matching_score(fn)  fn(weights (B, H, T, T), tokens (B, T)) → (H,): each head's weight on
                                     the keys s (1 ≤ s ≤ t) whose previous token equals token t, averaged
                                     over the queries that have such a key, and over the batch
    check_induction_excess(fn)       fn(weights (B, H, T, T), period) → (H,): the induction score minus
                                     a uniform causal head's score on the same queries

Inputs are causal attention weights in float64 with B, H and T all different, so an average over the
wrong axis shows up as a wrong shape. A wrong answer that matches no listed slip is characterised by
property (a constant factor or offset, axes swapped, …).
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, constant_factor
from kqvlib.exercises.ch14 import B, H, _causal  # random causal weights (B, H, T, T), as chapter 14's
from kqvlib.exercises.diagnose import checked

__all__ = ["check_prefix_matching_score", "check_induction_excess"]


def _score(weights, targets, all_queries=False):
    on = (weights * targets[:, None].to(weights.dtype)).sum(-1)  # (B, H, T)
    has = torch.ones_like(targets[..., 0]) if all_queries else targets.any(-1)  # (B, T)
    return (on * has[:, None]).sum(dim=(0, 2)) / has.sum()  # (H,)


# --- prefix matching ----------------------------------------------------------------------------------------------

def _prefix_targets(tokens: torch.Tensor, shift: int = 1, strict: bool = False) -> torch.Tensor:
    """(B, T) → (B, T, T): key s is a target of query t when tokens[s − shift] == tokens[t], s − shift ≥ 0, s ≤ t."""
    B, T = tokens.shape
    prev = torch.full_like(tokens, -1)  # (B, T): the token `shift` before each key, −1 where there is none
    if shift > 0:
        prev[:, shift:] = tokens[:, :-shift]
    elif shift < 0:
        prev[:, :shift] = tokens[:, -shift:]
    else:
        prev = tokens
    same = tokens[:, :, None] == prev[:, None, :]  # (B, T, T): query t's token equals the one before key s
    return same & torch.ones(T, T, dtype=torch.bool).tril(-1 if strict else 0)


def prefix_matching_score(weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The reference: (B, H, T, T), (B, T) → (H,)."""
    return _score(weights, _prefix_targets(tokens))


def _tokens(g: torch.Generator, T: int = 10, V: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, V, (B, T), generator=g)  # few symbols: most tokens occurred before
    tokens[:, 0] = V  # a symbol that never comes back
    tokens[0, 1] = V + 1
    tokens[1, 4] = tokens[1, 3]  # a token right after itself: key t is then a target of query t
    return _causal(g, T), tokens


_PREFIX_SLIPS = [
    Mistake("duplicate token", lambda w, x: _score(w, _prefix_targets(x, shift=0, strict=True)),
            "you scored the earlier occurrences of token t itself (a duplicate-token head). An induction head "
            "looks one further: at the key s whose PREVIOUS token, tokens[s − 1], equals token t."),
    Mistake("next token", lambda w, x: _score(w, _prefix_targets(x, shift=-1)),
            "you compared token t with tokens[s + 1], the token AFTER key s. Compare it with the token before: "
            "tokens[s − 1] == tokens[t]."),
    Mistake("all queries", lambda w, x: _score(w, _prefix_targets(x), all_queries=True),
            "you averaged over every query, also those with no target (their weight on targets is 0 by "
            "definition). Average only over the queries that have at least one target."),
    Mistake("key t left out", lambda w, x: _score(w, _prefix_targets(x, strict=True)),
            "you left out key s = t. When token t − 1 equals token t, key t itself is a target (its previous "
            "token matches): keep s ≤ t, not s < t."),
    Mistake("wrapped first key", lambda w, x: _score(w, _prefix_targets(x) | (
        (x[:, :, None] == x[:, -1][:, None, None]) & (torch.arange(x.shape[1]) == 0)[None, None, :])),
            "key 0 has no previous token, but your comparison counted it (tokens[−1] is the LAST token, "
            "PyTorch wraps negative indices). Start the keys at s = 1."),
    Mistake("one row of tokens", lambda w, x: _score(w, _prefix_targets(x[:1].expand_as(x))),
            "you built the targets from one sequence's tokens and used them for the whole batch. Each "
            "sequence b needs its own targets (B, T, T)."),
    Mistake("mean over heads", lambda w, x: prefix_matching_score(w, x).mean().expand(H),
            "every head got the same number: you averaged over the heads too. Keep one score per head."),
]


def _factor_property(divide_by: str) -> Property:
    def factor(args, got, exp):
        c = constant_factor(got, exp)
        if c is not None:
            return ("constant factor", f"your scores are the right ones times {c:.3g}: you counted the right "
                    f"weights but divided by the wrong number. Divide by {divide_by}.")
        return None
    return Property("constant factor", factor)


def _explain(e: BaseException):
    if isinstance(e, IndexError) and "out of bounds" in str(e):
        return ("index", "an index ran past the end of the sequence: check the ranges you built with "
                "torch.arange (keys run from 0 to t, queries from 0 to T − 1).")
    return None


def check_prefix_matching_score(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(weights (B, H, T, T), tokens (B, T)) → (H,): each head's weight on keys whose previous token is token t."""
    return checked("prefix_matching_score", fn, prefix_matching_score, [Trial(_tokens)], _PREFIX_SLIPS,
                   properties=[_factor_property("the number of queries that have a target, summed over the batch")],
                   axes=("batch", "head", "query", "key"), explain=_explain, seed=seed, quiet=quiet)


# --- induction score with a control -------------------------------------------------------------------------------

def _ind(w, period, first=None):
    T = w.shape[-1]
    t = torch.arange(period if first is None else first, T)
    return w[..., t, t - period + 1].mean(dim=(0, -1))


def _uniform(T, period, denom_shift=1, first=None):
    t = torch.arange(period if first is None else first, T, dtype=torch.float64)
    return (1.0 / (t + denom_shift)).mean()


def induction_excess(weights: torch.Tensor, period: int) -> torch.Tensor:
    """The reference: (B, H, T, T), period → (H,)."""
    return _ind(weights, period) - _uniform(weights.shape[-1], period)


def _repeated(period, T):
    return lambda g: (_causal(g, T), period)


_EXCESS_SLIPS = [
    Mistake("no control", lambda w, p: _ind(w, p),
            "you returned the induction score itself. Subtract the control: the mean of 1/(t + 1) over the "
            "same queries t = period … T − 1, what a head spreading evenly over keys 0 … t scores."),
    Mistake("1/t", lambda w, p: _ind(w, p) - _uniform(w.shape[-1], p, denom_shift=0),
            "your control uses 1/t. Query t sees the keys 0 … t, which are t + 1 keys: 1/(t + 1)."),
    Mistake("control over all queries", lambda w, p: _ind(w, p) - _uniform(w.shape[-1], p, first=0),
            "your control averages 1/(t + 1) over every query from t = 0. Average it over the same queries "
            "as the score, t = period … T − 1, or the uniform head does not score 0."),
    Mistake("control 1/T", lambda w, p: _ind(w, p) - 1.0 / w.shape[-1],
            "your control is 1/T, a head spreading over all T keys. Under the causal mask query t spreads "
            "over t + 1 keys: use the mean of 1/(t + 1)."),
    Mistake("previous occurrence", lambda w, p: _ind(w, p + 1, first=p) - _uniform(w.shape[-1], p),
            "you read key t − period, the previous occurrence of token t. The induction head's key is the one "
            "after it, t − period + 1."),
    Mistake("ratio", lambda w, p: _ind(w, p) / _uniform(w.shape[-1], p),
            "you divided by the control. The excess is the difference (score − control), which is 0 for "
            "a uniform head; a ratio would be 1."),
    Mistake("batch kept", lambda w, p: w[..., torch.arange(p, w.shape[-1]), torch.arange(1, w.shape[-1] - p + 1)]
            .mean(dim=-1) - _uniform(w.shape[-1], p),
            "your result is (B, H): average over the batch (axis 0) too → (H,)."),
]


def check_induction_excess(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(weights (B, H, T, T), period) → (H,): the induction score minus a uniform head's."""
    trials = [Trial(_repeated(5, 11)), Trial(_repeated(3, 10), key="another period",
                                             hint="with period 3 and T = 10 your answer is wrong: use the "
                                                  "period you are given for both the score and the control.")]
    return checked("induction_excess", fn, induction_excess, trials, _EXCESS_SLIPS,
                   properties=[_factor_property("B · (T − period) for the score")],
                   axes=("batch", "head", "query", "key"), explain=_explain, seed=seed, quiet=quiet)

"""Checkers for chapter 14, *Looking inside the trained GPT*.

    check_induction_score(fn)    fn(weights (B, H, T, T), period) → (H,): for a sequence whose token t
                                 equals token t − period, each head's mean weight on key t − period + 1,
                                 over the batch and the queries t = period … T − 1
    check_duplicate_score(fn)    fn(weights (B, H, T, T), tokens (B, T)) → (H,): each head's weight on
                                 the earlier occurrences s < t of token t, averaged over the queries that
                                 have one (and over the batch)

Inputs are causal attention weights in float64 (every row a distribution over keys 0 … t) with B, H, T
and the period all different, so an average over the wrong axis shows up as a wrong shape. A wrong
answer that matches no listed slip is characterised by property: which key it reads (fitted offset),
which queries it averages over (fitted first query), by what constant it is off.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, constant_factor
from kqvlib.exercises.diagnose import checked

__all__ = ["check_induction_score", "check_duplicate_score"]

B, H = 3, 4


def _causal(g: torch.Generator, T: int) -> torch.Tensor:
    scores = 2.0 * torch.randn(B, H, T, T, generator=g, dtype=torch.float64)  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)


# --- induction score --------------------------------------------------------------------------------------------

def induction_score(weights: torch.Tensor, period: int) -> torch.Tensor:
    """The reference: (B, H, T, T) → (H,)."""
    T = weights.shape[-1]
    t = torch.arange(period, T)  # (T − period,) the queries of the repeats
    return weights[..., t, t - period + 1].mean(dim=(0, -1))


def _key_at(w, period, k, first):  # mean weight on key t − period + k over queries t = first … T − 1
    T = w.shape[-1]
    t = torch.arange(max(first, 0), T)
    s = t - period + k
    ok = (s >= 0) & (s <= t)
    if not bool(ok.all()):
        return None
    return w[..., t, s].mean(dim=(0, -1))


def _repeated(period, T):
    return lambda g: (_causal(g, T), period)


_IND_SLIPS = [
    Mistake("previous occurrence", lambda w, p: _key_at(w, p, 0, p),
            "you read key t − period: the previous occurrence of the current token itself. An induction head "
            "looks one further, at the token that FOLLOWED it, key t − period + 1 — the one it will predict."),
    Mistake("one too far", lambda w, p: _key_at(w, p, 2, p),
            "you read key t − period + 2, one past the token that followed the previous occurrence. "
            "The induction key is t − period + 1."),
    Mistake("first copy included", lambda w, p: w[..., torch.arange(p - 1, w.shape[-1]),
                                                   torch.arange(0, w.shape[-1] - p + 1)].mean(dim=(0, -1)),
            "you also averaged query t = period − 1, whose token has not occurred before (its key t − period + 1 "
            "= 0 is just the first token). Start the queries at t = period."),
    Mistake("first copy wrapped", lambda w, p: w[..., torch.arange(w.shape[-1]),
                                                  (torch.arange(w.shape[-1]) - p + 1) % w.shape[-1]].mean(dim=(0, -1)),
            "you averaged over every query from t = 0. For t < period − 1 the key t − period + 1 is negative, "
            "which PyTorch reads from the END of the row (a future key, weight 0). Start the queries at "
            "t = period: only there has the token occurred before."),
    Mistake("batch kept", lambda w, p: w[..., torch.arange(p, w.shape[-1]), torch.arange(1, w.shape[-1] - p + 1)].mean(dim=-1),
            "your result is (B, H): one score per sequence and head. Average over the batch (axis 0) too → (H,)."),
    Mistake("half of T", lambda w, p: induction_score(w, w.shape[-1] // 2),
            "you used T // 2 as the period. Here the sequence repeats with the period you are given, which "
            "need not be half of T (a block can repeat more than once): use the argument."),
    Mistake("summed over queries", lambda w, p: induction_score(w, p) * (w.shape[-1] - p),
            "your scores are (T − period) times too large: you summed over the queries instead of averaging, "
            "so a score can exceed 1."),
    Mistake("summed over batch", lambda w, p: induction_score(w, p) * w.shape[0],
            "your scores are B times too large: you summed over the batch. Average over it."),
    Mistake("argmax", lambda w, p: (w.argmax(-1)[..., p:] == torch.arange(1, w.shape[-1] - p + 1)).double()
            .mean(dim=(0, -1)),
            "you counted how often key t − period + 1 gets the LARGEST weight. The score is the mean of the "
            "weight itself, so a head that splits its weight half and half scores 0.5."),
]


def _ind_properties() -> list[Property]:
    def which_key(args, got, exp):
        w, p = args
        if got.shape != exp.shape:
            return None
        for first in range(0, w.shape[-1]):
            for k in range(-p, p + 1):
                e = _key_at(w, p, k, first)
                if e is not None and bool(torch.allclose(got, e, atol=1e-9)) and (k, first) != (1, p):
                    key = "right key" if k == 1 else f"key t − period {k - 1:+d}" if k != 0 else "key t − period"
                    if k == 1:
                        return ("queries", f"you read the right key, t − period + 1, but averaged over the queries "
                                f"t = {first} … T − 1. Average over t = period … T − 1 = {p} … {w.shape[-1] - 1}: "
                                "the queries whose token occurred one period earlier.")
                    return ("wrong key", f"you read {key} (for queries t = {first} …). The induction head attends "
                            "to the token right after the previous occurrence: key t − period + 1.")
        return None

    def transposed(args, got, exp):
        w, p = args
        t = torch.arange(p, w.shape[-1])
        if got.shape == exp.shape and bool(torch.allclose(got, w[..., t - p + 1, t].mean(dim=(0, -1)))):
            return ("query and key swapped", "you read weights[..., t − period + 1, t]: row and column swapped. "
                    "Rows are queries and columns keys: weights[..., t, t − period + 1].")
        return None

    def factor(args, got, exp):
        c = constant_factor(got, exp)
        if c is not None:
            return ("constant factor", f"your scores are the right ones times {c:.3g}: you read the right weights "
                    "but divided by the wrong count. Divide by B · (T − period).")
        return None

    return [Property("query and key swapped", transposed), Property("wrong key", which_key),
            Property("constant factor", factor)]


def _explain(e: BaseException):
    text = str(e)
    if isinstance(e, IndexError) and "out of bounds" in text:
        return ("index", "an index ran past the end of the sequence: the keys t − period + 1 go up to "
                "T − period, the queries t to T − 1. Check the ranges you built with torch.arange.")
    return None


def check_induction_score(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(weights (B, H, T, T), period) → (H,): each head's mean weight on key t − period + 1."""
    trials = [Trial(_repeated(5, 10)), Trial(_repeated(4, 11), key="repeats more than once",
                                             hint="on a sequence of T = 11 whose block of 4 repeats more than "
                                                  "once, your answer is wrong: use the period you are given, "
                                                  "and every query t ≥ period.")]
    return checked("induction_score", fn, induction_score, trials, _IND_SLIPS, properties=_ind_properties(),
                   axes=("batch", "head", "query", "key"), explain=_explain, seed=seed, quiet=quiet)


# --- duplicate-token score --------------------------------------------------------------------------------------

def _targets(tokens: torch.Tensor, strict: bool = True) -> torch.Tensor:
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T): token s equals token t
    T = tokens.shape[-1]
    return same & torch.ones(T, T, dtype=torch.bool).tril(-1 if strict else 0)  # keys before t (or at t)


def _score(weights, targets, all_queries=False):
    on = (weights * targets[:, None].to(weights.dtype)).sum(-1)  # (B, H, T)
    has = targets.any(-1) if not all_queries else torch.ones_like(targets[..., 0])  # (B, T)
    return (on * has[:, None]).sum(dim=(0, 2)) / has.sum()  # (H,)


def duplicate_score(weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The reference: (B, H, T, T), (B, T) → (H,)."""
    return _score(weights, _targets(tokens))


def _tokens(g: torch.Generator, T: int = 9, V: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, V, (B, T), generator=g)  # few symbols: most tokens occur earlier
    tokens[:, 0] = V  # a symbol that never comes back, so query 0 … has none
    tokens[0, 1] = V + 1
    return _causal(g, T), tokens


def _latest_only(w, x):
    tg = _targets(x)
    idx = torch.arange(x.shape[-1])
    last = torch.where(tg, idx, -1).max(-1).values  # (B, T): latest earlier occurrence, −1 if none
    return _score(w, (idx == last[..., None]) & tg)


def _one_batch(w, x):  # the batch's first row of tokens used for every sequence
    return _score(w, _targets(x[:1].expand_as(x)))


_DUP_SLIPS = [
    Mistake("itself included", lambda w, x: _score(w, _targets(x, strict=False)),
            "your targets include key t itself (token t always equals itself). The earlier occurrences are "
            "the keys s < t: use tril(-1), not tril(), or compare s < t."),
    Mistake("all queries", lambda w, x: _score(w, _targets(x), all_queries=True),
            "you averaged over every query, also those whose token has not occurred before (their weight "
            "on targets is 0 by definition). Average only over the queries with at least one target."),
    Mistake("latest only", _latest_only,
            "you counted only the latest earlier occurrence. A duplicate-token head may spread over all of "
            "them: count the weight on every key s < t holding the same token."),
    Mistake("one row of tokens", _one_batch,
            "you built the targets from one sequence's tokens and used them for the whole batch. Each "
            "sequence b needs its own: compare tokens[:, :, None] with tokens[:, None, :] → (B, T, T)."),
    Mistake("mean over heads", lambda w, x: duplicate_score(w, x).mean().expand(H),
            "every head gets the same number: you averaged over the heads too. Keep one score per head."),
]


def _dup_properties() -> list[Property]:
    def factor(args, got, exp):
        c = constant_factor(got, exp)
        if c is not None:
            return ("constant factor", f"your scores are the right ones times {c:.3g}: you counted the right "
                    "weights but divided by the wrong number. Divide by the number of queries that have a "
                    "target, summed over the batch.")
        return None

    def other_ones(args, got, exp):
        w, x = args
        if got.shape == exp.shape and bool(torch.allclose(got, _score(w, ~_targets(x) & torch.ones(
                x.shape[-1], x.shape[-1], dtype=torch.bool).tril()[None] & _targets(x).any(-1)[..., None]))):
            return ("complement", "you scored the keys with a DIFFERENT token, the complement of the targets. "
                    "The targets are the earlier keys whose token EQUALS token t.")
        return None

    return [Property("constant factor", factor), Property("complement", other_ones)]


def check_duplicate_score(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(weights (B, H, T, T), tokens (B, T)) → (H,): each head's weight on earlier copies of token t."""
    return checked("duplicate_score", fn, duplicate_score, [Trial(_tokens)], _DUP_SLIPS,
                   properties=_dup_properties(), axes=("batch", "head", "query", "key"), seed=seed, quiet=quiet)

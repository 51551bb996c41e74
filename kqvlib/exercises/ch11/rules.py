"""Chapter 11 checkers for two sampling rules the chapter does not show: min-p (``check_min_p_probs``) and
a repetition penalty (``check_repetition_penalty``). The chapter's docstring is in
:mod:`kqvlib.exercises.ch11`.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.ch11.sampling import B, NEG, V, _logits, _renorm, support_property
from kqvlib.exercises.diagnose import checked as check

F64 = torch.float64


# --- min-p ---------------------------------------------------------------------------------------------------

def _min_p(logits, p_base, strict=False, base=None, fill=NEG, renorm=True):
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    top = probs.amax(dim=-1, keepdim=True) if base is None else base(probs)  # (B, 1)
    keep = probs > p_base * top if strict else probs >= p_base * top
    if not renorm:
        return probs * keep
    return torch.softmax(logits.masked_fill(~keep, fill), dim=-1)


def min_p_probs(logits: torch.Tensor, p_base: float) -> torch.Tensor:
    """The reference: keep the tokens with probability ≥ p_base · (the row's largest probability), renormalise."""
    return _min_p(logits, p_base)


def _min_p_logits(logits, p_base):  # the threshold taken on the logits themselves
    keep = logits >= p_base * logits.amax(dim=-1, keepdim=True)
    return torch.softmax(logits.masked_fill(~keep, NEG), dim=-1)


_MIN_P_MISTAKES = [
    Mistake("one max for the batch", lambda x, p: _min_p(x, p, base=lambda pr: pr.max()),
            "you compared with the largest probability of the whole batch, probs.max(): each row needs its own, "
            "probs.amax(dim=-1, keepdim=True) (or probs.max(dim=-1, keepdim=True).values)."),
    Mistake("absolute threshold", lambda x, p: _min_p(x, p, base=lambda pr: torch.ones_like(pr[:, :1])),
            "you kept the tokens with probability ≥ p_base: min-p scales the threshold by each row's largest "
            "probability, p_base · max_prob, so a confident row cuts more than a flat one."),
    Mistake("threshold on logits", _min_p_logits,
            "you compared the logits with p_base times the largest logit. The rule is on probabilities: "
            "softmax first, then keep probs ≥ p_base · probs.max(-1)."),
    Mistake("softmax over the batch", lambda x, p: _min_p(torch.log_softmax(x, dim=0), p),
            "your probabilities come from a softmax over dim=0, the rows of the batch. Each row is one "
            "distribution over the vocabulary: softmax(logits, dim=-1)."),
    Mistake("not renormalised", lambda x, p: _min_p(x, p, renorm=False),
            "the rows do not sum to 1: you zeroed the dropped tokens but did not divide by what is left."),
    Mistake("masked with 0", lambda x, p: _min_p(x, p, fill=0.0),
            "the dropped tokens still have probability > 0: you set their logits to 0 (exp(0) = 1). Use -inf."),
]


def _min_p_inputs(p_base):
    def make(g):
        x = _logits(g)
        x[0] = x[0] * 0.3  # a flat row beside confident ones: one threshold for the batch shows
        return x, p_base
    return make


def check_min_p_probs(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(logits (B, V), p_base) → (B, V): probabilities of each row's tokens with prob ≥ p_base · max, renormalised."""
    trials = [Trial(_min_p_inputs(0.1)),
              Trial(_min_p_inputs(1.0), "p_base = 1", "wrong for p_base = 1: then only each row's most likely "
                    "token (and its ties) is kept.")]
    return check("min_p_probs", fn, min_p_probs, trials, _MIN_P_MISTAKES, properties=[support_property()],
                 axes=("row", "token"), seed=seed, quiet=quiet)


# --- repetition penalty --------------------------------------------------------------------------------------

def _seen(prev, union=False):  # (B, V) bool: token v occurs in row b's history (any row's, with union)
    seen = torch.zeros(prev.shape[0], V, dtype=torch.bool).scatter(1, prev, True)
    return seen.any(0, keepdim=True).expand_as(seen) if union else seen


def _penalise(logits, prev, penalty, rule="ctrl", union=False, per_occurrence=False):
    seen = _seen(prev, union)
    if rule == "ctrl":
        new = torch.where(logits > 0, logits / penalty, logits * penalty)
    elif rule == "divide":
        new = logits / penalty
    elif rule == "multiply":
        new = logits * penalty
    else:  # "inverted": positive multiplied, negative divided
        new = torch.where(logits > 0, logits * penalty, logits / penalty)
    if per_occurrence:
        count = torch.zeros(prev.shape[0], V, dtype=F64).scatter_add(1, prev, torch.ones_like(prev, dtype=F64))
        p = penalty ** count
        new = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, new, logits)


def repetition_penalty(logits, prev, penalty):
    """The reference: (B, V) logits with row b's seen tokens pushed down once: / penalty if > 0, else × penalty."""
    return _penalise(logits, prev, penalty)


_REP_MISTAKES = [
    Mistake("divided every seen logit", lambda x, h, r: _penalise(x, h, r, "divide"),
            "you divided every seen token's logit by the penalty. A negative logit divided by penalty > 1 moves "
            "*up* towards 0, making the repeat more likely: multiply negative logits by the penalty, divide "
            "positive ones."),
    Mistake("multiplied every seen logit", lambda x, h, r: _penalise(x, h, r, "multiply"),
            "you multiplied every seen logit by the penalty, which makes a positive logit larger (more likely): "
            "divide positive logits, multiply negative ones."),
    Mistake("signs the wrong way", lambda x, h, r: _penalise(x, h, r, "inverted"),
            "the two cases are swapped: divide a positive logit by the penalty and multiply a negative one, so "
            "both move down."),
    Mistake("once per occurrence", lambda x, h, r: _penalise(x, h, r, per_occurrence=True),
            "a token that occurs twice in the history was penalised twice: penalise each seen token once (build "
            "a set of seen ids, or a boolean mask with scatter, not a loop over the history)."),
    Mistake("history of every row", lambda x, h, r: _penalise(x, h, r, union=True),
            "one row's history penalised the other rows too: row b's logits are penalised only for the tokens in "
            "prev[b] (scatter along dim=1, or loop over the rows)."),
    Mistake("unseen tokens penalised", lambda x, h, r: torch.where(_seen(h), x, _penalise(x, torch.arange(V).expand(
        x.shape[0], V), r)), "you penalised the tokens that were *not* in the history; penalise the seen ones."),
]


def _rep_inputs(g: torch.Generator):
    x = _logits(g)  # (B, V), positive and negative logits
    prev = torch.randint(V, (B, 6), generator=g)
    prev[:, 1] = prev[:, 0]  # every row repeats a token, so penalising per occurrence shows
    return x, prev, 1.3 + float(torch.rand(1, generator=g))


def _changed(args, got, expected):
    x, prev, r = args
    if got.shape != expected.shape:
        return None
    seen = _seen(prev)
    for r_ in range(prev.shape[0]):
        one = prev[r_].expand_as(prev)
        if not close(one, prev) and close(got, _penalise(x, one, r)):
            return "one row's history", (f"you penalised every row with row {r_}'s history: row b is penalised only "
                                         f"for its own tokens prev[b] (loop over the rows, or scatter along dim=1).")
    if bool((~torch.isclose(got, x))[~seen].any()):
        return "unseen tokens changed", ("you changed logits of tokens that are not in that row's history: only "
                                         "row b's tokens prev[b] are penalised, the others stay as they are.")
    if bool((~torch.isclose(got, expected))[seen].any()) and close(torch.where(seen, got, x), x):
        return "nothing penalised", "the seen tokens' logits did not change: write the penalised values back."
    return None


def check_repetition_penalty(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(logits (B, V), prev (B, n) long, penalty > 1) → (B, V) logits, each token of prev[b] penalised once."""
    return check("repetition_penalty", fn, repetition_penalty, [Trial(_rep_inputs)], _REP_MISTAKES,
                 properties=[Property("changed", _changed)], axes=("row", "token"), seed=seed, quiet=quiet)


__all__ = ["check_min_p_probs", "check_repetition_penalty", "min_p_probs", "repetition_penalty"]

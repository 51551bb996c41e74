"""Chapter 11 checkers for top-k and top-p (``check_top_k_probs``, ``check_top_p_probs``) and the support
diagnosis every sampling rule of the chapter shares. The chapter's docstring is in
:mod:`kqvlib.exercises.ch11`.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.diagnose import checked as check

__all__ = ["check_top_k_probs", "check_top_p_probs"]

B, V = 3, 11
NEG = float("-inf")


def _logits(g: torch.Generator) -> torch.Tensor:
    return 2.0 * torch.randn(B, V, generator=g, dtype=torch.float64)  # (B, V), no ties


def _renorm(probs: torch.Tensor) -> torch.Tensor:
    return probs / probs.sum(-1, keepdim=True)


def support_property(temperature=lambda *a: 1.0) -> Property:
    """Compare a wrong (B, V) distribution with the right one token by token: the kept set (probability > 0)
    per row, and the proportions among the kept tokens (which should be softmax(logits / temperature))."""
    def test(args, got, expected):
        logits = args[0]
        if got.shape != expected.shape:
            return None
        if bool((got < -1e-12).any()):
            return "negative", "some of your probabilities are negative: return probabilities, not logits or log-probabilities."
        kg, ke = got > 1e-12, expected > 1e-12
        if not bool((kg == ke).all()):
            probs = torch.softmax(logits, dim=-1)
            for v, what in ((logits, "logit"), (probs, "probability")):
                tau = v[kg].min() if bool(kg.any()) else None
                if tau is not None and bool((kg == (v >= tau)).all()) and kg.sum(-1).unique().numel() > 1:
                    return "one cut-off for the batch", (
                        f"you kept every token whose {what} is at least one value for the whole batch ({float(tau):.3g}): "
                        f"each row needs its own cut-off (topk, sort, max and cumsum along dim=-1, kept per row with "
                        f"keepdim=True).")
            if bool((kg.sum(-1) == ke.sum(-1)).all()):
                return "kept set not unsorted", (
                    "each row keeps the right *number* of tokens, but not the right ones: a mask computed on the "
                    "sorted probabilities must be put back in vocabulary order (keep.scatter(-1, order, keep)), or "
                    "an index went the wrong way (gather against scatter).")
            rows = [b for b in range(got.shape[0]) if not bool((kg[b] == ke[b]).all())]
            if len(rows) < got.shape[0]:
                return "some rows wrong", (
                    f"rows {[b for b in range(got.shape[0]) if b not in rows]} keep the right tokens but rows {rows} "
                    f"do not: each row needs its own cut-off (its own max, sort or cumulative sum, along dim=-1), "
                    f"not one value for the whole batch.")
            extra, missing = (kg & ~ke).sum(-1), (ke & ~kg).sum(-1)
            top = torch.zeros_like(ke).scatter(-1, logits.argmax(-1, keepdim=True), True)
            if bool((ke & ~kg == top).all()):
                return "most likely dropped", ("each row lost its most likely token: a shifted mask wrapped around "
                                               "(roll) or an index is off by one. Shift with torch.cat([False column, "
                                               "mask[:, :-1]]) or use cumsum − probs < p; the top token is always kept.")
            if bool((missing == 0).all()):
                return "kept too many", (f"you kept {int(extra.min())}–{int(extra.max())} token(s) per row that "
                                         f"should be dropped: the cut-off keeps too much (≤ against <, the wrong "
                                         f"threshold, or compared on logits instead of probabilities).")
            if bool((extra == 0).all()):
                return "kept too few", (f"you dropped {int(missing.min())}–{int(missing.max())} token(s) per row "
                                        f"that should be kept: the cut-off is too strict (< against ≤, or the "
                                        f"wrong threshold).")
            return "wrong tokens kept", ("the tokens you keep are not the right ones in any row: check which side of "
                                         "the cut-off you keep, that it is measured on probabilities, and that "
                                         "every softmax, max and sum runs along the tokens, dim=-1.")
        sums = got.sum(-1)
        twice = torch.softmax(torch.softmax(logits / temperature(*args), -1).masked_fill(~ke, NEG), -1)
        if close(got, twice):
            return "softmax twice", ("you took a softmax of probabilities (a second softmax after the first): the "
                                     "kept tokens' probabilities come from one softmax of the masked *logits*.")
        sums = got.sum(-1)
        if abs(float(got.sum()) - 1) < 1e-6 and got.shape[0] > 1:
            return "normalised over the batch", ("you divided by the sum of the whole batch: each row is its own "
                                                 "distribution, divide by probs.sum(dim=-1, keepdim=True).")
        if not close(sums, torch.ones_like(sums)):
            return "not renormalised", (f"you keep the right tokens but each row sums to {float(sums.min()):.3g} … "
                                        f"{float(sums.max()):.3g}: divide by what is left (renormalise last).")
        return "kept proportions wrong", ("the right tokens are kept and each row sums to 1, but their proportions "
                                          "are off: the kept tokens' probabilities must be proportional to "
                                          "softmax(logits / temperature), in vocabulary order.")
    return Property("support", test)


# --- top-k -------------------------------------------------------------------------------------------------

def _keep_top(logits, k, largest=True, fill=NEG):
    """Keep the k largest (or smallest) logits per row, fill the others, softmax."""
    idx = torch.topk(logits, k, dim=-1, largest=largest).indices  # (B, k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)  # (B, V)
    return torch.softmax(logits.masked_fill(~keep, fill), dim=-1)


def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The reference: (B, V) logits → (B, V) probabilities, zero outside each row's k most likely tokens."""
    return _keep_top(logits, k)


def _top_k_unnormalised(logits, k):  # the full softmax, then zero the others: rows no longer sum to 1
    probs = torch.softmax(logits, dim=-1)
    return probs * (_keep_top(logits, k) > 0)


def _top_k_mistakes() -> list[Mistake]:
    return [
        Mistake("k + 1", lambda x, k: _keep_top(x, k + 1),
                "you kept k + 1 tokens. Keep exactly k: the k-th largest value itself stays in, everything "
                "smaller goes (compare with `< kth`, not `<= kth`, or take torch.topk(logits, k))."),
        Mistake("k - 1", lambda x, k: _keep_top(x, k - 1) if k > 1 else _keep_top(x, k, fill=0.0),
                "you kept k − 1 tokens: the k-th largest was dropped. Mask the values strictly below the "
                "k-th largest (`logits < kth`), where kth = torch.topk(logits, k).values[:, -1:]."),
        Mistake("smallest k", lambda x, k: _keep_top(x, k, largest=False),
                "you kept the k LEAST likely tokens. Sort descending (torch.topk's default, or "
                "sort(descending=True)): the first k are the most likely."),
        Mistake("masked with 0", lambda x, k: _keep_top(x, k, fill=0.0),
                "the tokens outside the top k still have probability > 0: you set their logits to 0, "
                "which softmax turns into exp(0) = 1 before normalising. Set them to -inf (exp(-inf) = 0)."),
        Mistake("not renormalised", _top_k_unnormalised,
                "the rows do not sum to 1: you zeroed the probabilities outside the top k but did not "
                "divide by what is left. Renormalise (or mask the logits with -inf and softmax after)."),
    ]


def check_top_k_probs(fn, *, seed=None, quiet=False) -> CheckResult:
    """fn(logits (B, V), k) → (B, V) probabilities over each row's k most likely tokens."""
    trials = [Trial(lambda g: (_logits(g), 4)),
              Trial(lambda g: (_logits(g), 1), key="k = 1",
                    hint="wrong for k = 1 only: then only the single most likely token keeps probability 1.")]
    return check("top_k_probs", fn, reference=top_k_probs, trials=trials, mistakes=_top_k_mistakes(),
                 properties=[support_property()], axes=("row", "token"), nan_hint=_NAN_HINT_K, seed=seed, quiet=quiet)


# --- top-p (nucleus) ---------------------------------------------------------------------------------------

def _nucleus(logits, p, *, descending=True, crossing=True, fill=NEG, renorm=True, unsort=True):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=descending)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    cum = probs.cumsum(-1)  # (B, V)
    keep = (cum - probs < p) if crossing else (cum <= p)  # with the crossing token, or without it
    if unsort:
        keep = keep.scatter(-1, order, keep)  # back in vocabulary order
        base = logits
    else:
        base = sorted_logits
    if not renorm:
        return torch.softmax(base, dim=-1) * keep
    return torch.softmax(base.masked_fill(~keep, fill), dim=-1)


def top_p_probs(logits: torch.Tensor, p: float, temperature: float = 1.0) -> torch.Tensor:
    """The reference: divide by the temperature, then keep the nucleus and renormalise. (B, V) → (B, V)."""
    return _nucleus(logits / temperature, p)


def _temperature_after(logits, p, t):  # the nucleus chosen on the raw logits, the temperature applied after
    keep = _nucleus(logits, p) > 0
    return torch.softmax((logits / t).masked_fill(~keep, NEG), dim=-1)


def _top_p_mistakes() -> list[Mistake]:
    def unsorted(x, p, t):  # cumulative mass in vocabulary order
        pr = torch.softmax(x / t, dim=-1)
        return torch.softmax((x / t).masked_fill(~(pr.cumsum(-1) - pr < p), NEG), dim=-1)

    def over_batch(x, p, t):  # cumsum down the batch
        s, o = torch.sort(x / t, dim=-1, descending=True)
        pr = torch.softmax(s, dim=-1)
        keep = (pr.cumsum(0) - pr < p).scatter(-1, o, pr.cumsum(0) - pr < p)
        return torch.softmax((x / t).masked_fill(~keep, NEG), dim=-1)
    return [
        Mistake("never sorted", unsorted,
                "your nucleus is the first tokens by id whose mass reaches p: sort each row by probability first "
                "(descending), take the cumulative sum there, and map the kept set back to vocabulary order."),
        Mistake("cumsum over the batch", over_batch,
                "your cumulative sum runs down the batch (dim=0): the mass before each token is summed along its own "
                "row of sorted probabilities, cumsum(dim=-1)."),
        Mistake("crossing token dropped", lambda x, p, t: _nucleus(x / t, p, crossing=False),
                "you dropped the token that crosses p: keeping only tokens with cumulative probability "
                "<= p can leave less than p (or nothing at all). Keep a token when the mass BEFORE it is "
                "< p: `cumsum - probs < p`, so the one that crosses p is included."),
        Mistake("ascending sort", lambda x, p, t: _nucleus(x / t, p, descending=False),
                "you accumulated from the least likely token: sort descending "
                "(torch.sort(..., descending=True)) so the nucleus is made of the most likely tokens."),
        Mistake("not renormalised", lambda x, p, t: _nucleus(x / t, p, renorm=False),
                "the rows sum to less than 1: you zeroed the tokens outside the nucleus but did not divide "
                "by the mass that is left. Renormalise (or mask the logits with -inf and softmax after)."),
        Mistake("masked with 0", lambda x, p, t: _nucleus(x / t, p, fill=0.0),
                "tokens outside the nucleus still have probability > 0: you set their logits to 0, and "
                "exp(0) = 1. Set them to -inf, which softmax turns into exactly 0."),
        Mistake("not unsorted", lambda x, p, t: _nucleus(x / t, p, unsort=False),
                "your probabilities are in sorted order, not in vocabulary order: token ids got lost. "
                "Scatter the mask back with the sort's indices (mask.scatter(-1, order, mask)) before "
                "applying it to the original logits."),
        Mistake("temperature after", _temperature_after,
                "this exercise divides by the temperature FIRST and then picks the nucleus (temperature "
                "changes which tokens make up p of the mass); you chose the nucleus on the raw logits."),
        Mistake("temperature ignored", lambda x, p, t: _nucleus(x, p),
                "you ignored the temperature: divide the logits by it before anything else."),
        Mistake("temperature multiplied", lambda x, p, t: _nucleus(x * t, p),
                "you multiplied by the temperature: divide by it (a low temperature sharpens, "
                "logits / 0.5 doubles the gaps)."),
    ]


def check_top_p_probs(fn, *, seed=None, quiet=False) -> CheckResult:
    """fn(logits (B, V), p, temperature) → (B, V) probabilities over each row's nucleus."""
    trials = [Trial(lambda g: (_logits(g), 0.7, 1.5)),
              Trial(lambda g: (_logits(g), 0.05, 1.5), key="tiny p",
                    hint="wrong when p is smaller than the most likely token's probability: the nucleus "
                         "is then that one token (the crossing token is always kept)."),
              Trial(lambda g: (_logits(g), 1.0, 1.0), key="p = 1",
                    hint="wrong for p = 1: then every token is kept and the result is the plain softmax.")]
    return check("top_p_probs", fn, reference=top_p_probs, trials=trials, mistakes=_top_p_mistakes(),
                 properties=[support_property(lambda x, p, t: t)], axes=("row", "token"), nan_hint=_NAN_HINT, seed=seed, quiet=quiet)


_NAN_HINT = ("A row with every token masked gives softmax(all -inf) = NaN: the nucleus must never be empty. "
             "Did you drop the token that crosses p? Keep a token when the mass before it is < p. (Or the "
             "softmax ran over the batch axis, dim=0, where a column can be all -inf: use dim=-1.)")
_NAN_HINT_K = ("softmax(all -inf) = NaN: a softmax over the batch axis (dim=0) meets columns that are -inf in "
               "every row. Each row is one distribution over the vocabulary: softmax along dim=-1.")

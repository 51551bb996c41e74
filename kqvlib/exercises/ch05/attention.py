"""Chapter 5 checker for ``masked_attention(Q, K, V, mask)``: softmax of the masked scaled scores times V,
zeros for a fully masked row. The chapter's docstring is in :mod:`kqvlib.exercises.ch05`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kqvlib.attention import scaled_dot_product_attention, softmax
from kqvlib.checks import CheckResult, Mistake, Property, Trial, close, constant_factor, transposed
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.ch05.masks import CONVENTION, NEG_INF
from kqvlib.exercises.common import Parts, attention_mistakes, explain_error, order_mistakes


# --- masked_attention(Q, K, V, mask) --------------------------------------------------------------

@dataclass
class _MaskedParts(Parts):
    """Parts whose scores are masked: blocked scores -inf before every softmax."""

    mask: torch.Tensor | None = None

    @property
    def scores(self) -> torch.Tensor:
        return (self.Q @ self.K.mT * self.scale).masked_fill(~self.mask, NEG_INF)

    def attend(self, scores: torch.Tensor) -> torch.Tensor:
        return softmax(scores.masked_fill(~self.mask, NEG_INF), dim=-1) @ self.V


def _parts(Q, K, V, mask) -> _MaskedParts:
    return _MaskedParts(Q, K, V, 1 / math.sqrt(Q.shape[-1]), mask=mask)


def _scores(Q, K):  # (..., T, S)
    return Q @ K.mT / math.sqrt(Q.shape[-1])


def _masked_attention(Q, K, V, mask):
    return scaled_dot_product_attention(Q, K, V, mask)


def _random_mask(g, shape, full_row: bool = False) -> torch.Tensor:
    """A bool mask (..., T, S) where every row and every column has a True and a False (so neither an
    inverted mask nor a softmax over the wrong axis meets an all-blocked row), and, when square, no row
    equals its column (so a transposed mask shows); with ``full_row`` one row of each (T, S) slice is
    then blocked entirely."""
    while True:
        m = torch.rand(shape, generator=g) < 0.5
        if not all(bool(m.any(d).all()) and bool((~m).any(d).all()) for d in (-1, -2)):
            continue
        if shape[-1] != shape[-2] or bool((m != m.mT).any(-1).all()):
            break
    if full_row:
        m = m.clone()
        rows = torch.randint(shape[-2], shape[:-2] or (1,), generator=g)
        m.view(-1, *shape[-2:])[torch.arange(rows.numel()), rows.flatten()] = False
    return m


def _qkv(g, batch, T, S, d_k, d_v):
    f64 = torch.float64
    return (torch.randn(*batch, T, d_k, generator=g, dtype=f64), torch.randn(*batch, S, d_k, generator=g, dtype=f64),
            torch.randn(*batch, S, d_v, generator=g, dtype=f64))


def _ordinary(g):  # B=2, T=3, S=5, d_k=4, d_v=6, a (T, S) mask shared by the batch
    return (*_qkv(g, (2,), 3, 5, 4, 6), _random_mask(g, (3, 5)))


def _blocked_row(g):  # the same, but one query's keys are all blocked
    return (*_qkv(g, (2,), 3, 5, 4, 6), _random_mask(g, (3, 5), full_row=True))


def _heads(g):  # (B, H, T, d) with B=2, H=3 and a (B, 1, T, S) mask
    return (*_qkv(g, (2, 3), 3, 5, 4, 6), _random_mask(g, (2, 1, 3, 5)))


def _square(g):  # every size 4: a mask or product the wrong way round runs, so we can tell which
    return (*_qkv(g, (4,), 4, 4, 4, 4), _random_mask(g, (4, 4)))


_FULLY_MASKED_HINT = (
    "right while every query has a key to look at, but not on a row whose keys are ALL blocked (it "
    "happens with padding: an empty sequence, or left padding under a causal mask). Such a query has "
    "nothing to read, and its output must be zeros. With -inf and a plain softmax the row is 0/0 = NaN, "
    "which then spreads through every later layer (renormalising weights·mask after the softmax gives "
    "the same NaN). Give such rows zero weights: kqvlib.softmax does, or "
    "torch.where(mask.any(-1, keepdim=True), weights, 0).")

_EXTRA_AXES_HINT = (
    "right for (B, T, d) inputs, but not with a head axis, (B, H, T, d) with a (B, 1, T, S) mask. Count "
    "axes from the end: K.transpose(-2, -1), softmax(..., dim=-1), Q.shape[-1], and let masked_fill "
    "broadcast the mask.")

_MASK_MISTAKES = [
    Mistake("visible key on the wrong axis", lambda Q, K, V, m: torch.where(
        m.any(dim=-2, keepdim=True), softmax(_scores(Q, K).masked_fill(~m, NEG_INF), dim=-1), 0.0) @ V,
            "you tested for a visible key along the queries, mask.any(dim=-2): a query row is fully blocked when "
            "*its own* keys are all False, mask.any(dim=-1, keepdim=True) (shape (..., T, 1)), zeroing that row."),
    Mistake("mask ignored", lambda Q, K, V, m: softmax(_scores(Q, K), dim=-1) @ V,
            "your output is attention with no mask at all. Did you write scores.masked_fill(...) without "
            "keeping the result? masked_fill returns a new tensor: scores = scores.masked_fill(~mask, "
            "float('-inf')) (or masked_fill_ with an underscore, which works in place)."),
    Mistake("inverted mask", lambda Q, K, V, m: softmax(_scores(Q, K).masked_fill(m, NEG_INF), dim=-1) @ V,
            f"you blocked the keys where the mask is True. Here {CONVENTION}: fill where the mask is False, "
            "scores.masked_fill(~mask, float('-inf')) (or mask == 0, mask.logical_not())."),
    Mistake("masked after softmax", lambda Q, K, V, m: (softmax(_scores(Q, K), dim=-1) * m) @ V,
            "you zeroed the blocked weights *after* the softmax, so each row's remaining weights no longer "
            "sum to 1 (the blocked keys' share is simply lost). Mask the *scores* with -inf before the "
            "softmax: the visible keys then share the whole weight."),
    Mistake("filled with 0", lambda Q, K, V, m: softmax(_scores(Q, K).masked_fill(~m, 0.0), dim=-1) @ V,
            "you set the blocked scores to 0 (or multiplied the scores by the mask). A score of 0 is an "
            "ordinary score: exp(0) = 1, so the blocked keys still get weight. Use -inf, whose exp is 0: "
            "scores.masked_fill(~mask, float('-inf'))."),
    Mistake("bool mask added", lambda Q, K, V, m: softmax(_scores(Q, K) + m, dim=-1) @ V,
            "you added the boolean mask to the scores, which adds 1 to each allowed score and blocks "
            "nothing. Only a float mask (0 / -inf) is added; a bool mask is applied with "
            "scores.masked_fill(~mask, float('-inf')), or convert it with kqvlib.as_additive(mask) first."),
    Mistake("finite fill on blocked row",
            lambda Q, K, V, m: softmax(_scores(Q, K).masked_fill(~m, -1e9), dim=-1) @ V,
            "a large finite fill value (-1e9, finfo.min) is fine while a row has a key to look at, but on a "
            "row whose keys are all blocked every score is the same -1e9, so the softmax spreads the weight "
            "evenly over the blocked keys: that query reads exactly what it must not. Give such rows zero "
            "weights (kqvlib.softmax does; or torch.where(mask.any(-1, keepdim=True), weights, 0)), or "
            "fill with -inf and handle the 0/0."),
    Mistake("finite fill on blocked row",
            lambda Q, K, V, m: softmax(_scores(Q, K) - 1e9 * (~m), dim=-1) @ V,
            "adding a large negative number (-1e9) to the blocked scores is fine while a row has a key to "
            "look at, but on a row whose keys are all blocked every score drops by the same amount, which "
            "the softmax ignores: that query attends as if there were no mask at all. Give such rows zero "
            "weights (kqvlib.softmax with -inf does; or torch.where(mask.any(-1, keepdim=True), weights, 0))."),
]

_MASK_TRANSPOSED = Mistake(
    "mask transposed", lambda Q, K, V, m: softmax(_scores(Q, K).masked_fill(~m.mT, NEG_INF), dim=-1) @ V,
    "your mask is used the wrong way round: the scores are (..., T, S), one row per query and one column "
    "per key, and so is the mask (T, S). Use it as it is, without .T or .transpose(-2, -1); with T ≠ S "
    "the transposed one does not even fit.")


def _weights_property() -> Property:
    """Reads the weights behind a wrong output (output @ pinv(V), possible when S ≤ d_v) and says whether
    blocked keys got weight, or whether the visible weights fail to sum to 1."""
    def test(args, got, expected):
        Q, K, V, mask = args
        if transposed(got, expected):
            return "transposed output", ("your output is the right one transposed. Each query's answer is a "
                                         "row: weights (..., T, S) @ V (..., S, d_v) → (..., T, d_v).")
        if got.shape != expected.shape or V.shape[-2] > V.shape[-1]:
            return None
        c = constant_factor(got, expected)
        if c is not None:
            return "output times constant", (f"your output is the right one times {c:.3g}: look for an extra "
                                             f"factor after the softmax (or on V).")
        A = got @ torch.linalg.pinv(V)  # (..., T, S): the weights that produce got
        if not close(A @ V, got, atol=1e-7):
            return None
        m = mask.expand(A.shape)
        if bool((A.abs() > 1e-6)[~m].any()):
            return "blocked keys get weight", (
                f"judging by the weights behind your output, some keys the mask blocks still get weight. "
                f"{CONVENTION}: set their scores to -inf *before* the softmax, masked_fill(~mask, -inf).")
        visible = m.any(-1)
        sums = A.sum(-1)[visible]
        if not close(sums, torch.ones_like(sums)):
            return "rows do not sum to 1", (
                f"the blocked keys get no weight, but each query's visible weights sum to "
                f"{sums.min().item():.3g} … {sums.max().item():.3g}, not 1. Take the softmax of the masked "
                f"scores, over the keys (dim=-1).")
        return None
    return Property("masked weights", test)


def _explain(e: BaseException) -> tuple[str, str] | None:
    msg = str(e)
    if "with a bool tensor is not supported" in msg or "bool tensor" in msg and "subtract" in msg.lower():
        return "1 - mask", ("the mask is a bool tensor, and `1 - mask` is not defined for bools. Flip it "
                            "with ~mask (or mask.logical_not(), or mask == 0).")
    if "shape of the mask" in msg and "indexed tensor" in msg:
        return "boolean indexing", ("scores[~mask] = ... needs a mask of the scores' full shape, but the "
                                    "mask only broadcasts to it. Use scores.masked_fill(~mask, float('-inf')) "
                                    "(or torch.where), which broadcasts.")
    if "masked_fill" in msg and "bool" in msg:
        return "mask dtype", "masked_fill wants a bool mask: pass ~mask (not 1 - mask or mask.float())."
    return explain_error(e)


def check_masked_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v), mask bool (..., T, S))`` → (..., T, d_v),
    softmax(Q Kᵀ / √d_k with blocked scores at -inf) V, and zeros for a query whose keys are all blocked."""
    to_parts = _parts
    return check(
        "masked_attention", fn, _masked_attention,
        trials=[Trial(_ordinary), Trial(_blocked_row, "fully masked row", _FULLY_MASKED_HINT),
                Trial(_heads, "extra batch axes", _EXTRA_AXES_HINT)],
        mistakes=_MASK_MISTAKES + attention_mistakes(to_parts),
        properties=[_weights_property()],
        nan_hint=("No row here has all its keys blocked, so the NaN comes from the -inf itself: it must go "
                  "through the softmax (exp(-inf) = 0) before anything multiplies it, and 0 · (-inf) is "
                  "NaN, so build the masked scores with masked_fill or torch.where, not scores * mask + …"),
        diagnose=Trial(_square), diagnose_mistakes=[_MASK_TRANSPOSED] + order_mistakes(to_parts),
        explain=_explain, seed=seed, quiet=quiet,
    )

"""Chapter 12 checker for one head of cross-attention with a source padding mask
(``check_cross_attention``). The chapter's docstring is in :mod:`kqvlib.exercises.ch12`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from kqvlib.checks import CheckResult, Mistake, Trial
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.common import Parts, attention_mistakes, attention_property, explain_error, order_mistakes

__all__ = ["check_cross_attention"]

F64 = torch.float64
B, T, S, C, DK, DV = 2, 4, 7, 6, 5, 8


@dataclass
class _Masked(Parts):
    """Parts whose softmax blocks the padded keys: mask (B, 1, S), True = attend."""

    mask: torch.Tensor | None = None

    def attend(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax(scores.masked_fill(~self.mask, float("-inf")), dim=-1) @ self.V


def _parts(x, memory, mask, Wq, Wk, Wv, *, q_from=None, k_from=None, v_from=None, keep=None) -> _Masked:
    """The right Q, K, V (or those taken from the wrong sequence) and the mask as (B, 1, S)."""
    m = mask[:, None, :] if keep is None else keep  # (B, S) → (B, 1, S): one entry per key
    q_in = x if q_from is None else q_from
    k_in = memory if k_from is None else k_from
    v_in = memory if v_from is None else v_from
    return _Masked(q_in @ Wq, k_in @ Wk, v_in @ Wv, 1 / math.sqrt(Wq.shape[-1]), x.shape[-1], m)


def _attn(p: _Masked, extra=None) -> torch.Tensor:
    """softmax(Q Kᵀ · scale) V with the padding mask, and an extra boolean mask (..., T, S) if given."""
    scores = p.Q @ p.K.mT * p.scale  # (B, T, S)
    keep = p.mask if extra is None else p.mask & extra
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1) @ p.V


def _reference(x, memory, mask, Wq, Wk, Wv):
    return _attn(_parts(x, memory, mask, Wq, Wk, Wv))


def _causal(x, memory, mask, Wq, Wk, Wv):  # query t may see keys 0..t only: nonsense across sequences
    p = _parts(x, memory, mask, Wq, Wk, Wv)
    return _attn(p, torch.ones(x.shape[1], memory.shape[1], dtype=torch.bool).tril())


_CAUSAL = ("you applied a causal mask to cross-attention. The causal mask is for self-attention in the "
           "decoder, where position t must not see later *targets*; the source is all known before decoding "
           "starts, so every query may read every real source token. Its only mask is the padding one, "
           "shape (B, 1, S) — not a (T, T) triangle.")

def _pad_slip(x, m, k, Wq, Wk, Wv, fill=None, after=False, v_w=None):
    s = (x @ Wq) @ (m @ Wk).mT / math.sqrt(Wq.shape[-1])  # (B, T, S)
    keep = k[:, None, :]  # (B, 1, S)
    v = m @ (Wv if v_w is None else v_w)
    if after:
        return torch.softmax(s, -1) * keep @ v
    return torch.softmax(s.masked_fill(~keep, float("-inf") if fill is None else fill), -1) @ v


_STRUCTURE = [
    ("values from Wk", lambda x, m, k, Wq, Wk, Wv: _pad_slip(x, m, k, Wq, Wk, Wv, v_w=Wk),
     "your values are memory @ Wk (their width is d_k, not d_v): the values come from Wv, v = memory @ Wv."),
    ("filled with 0", lambda x, m, k, Wq, Wk, Wv: _pad_slip(x, m, k, Wq, Wk, Wv, fill=0.0),
     "you set the padded keys' scores to 0: exp(0) = 1, so padding still gets weight. Fill with -inf."),
    ("masked after softmax", lambda x, m, k, Wq, Wk, Wv: _pad_slip(x, m, k, Wq, Wk, Wv, after=True),
     "you zeroed the padded keys' weights after the softmax, so each row no longer sums to 1. Mask the scores "
     "with -inf before the softmax."),
    ("keys and values from the decoder",
     lambda x, m, k, Wq, Wk, Wv: torch.softmax((x @ Wq) @ (x @ Wk).mT / math.sqrt(Wq.shape[-1]), -1) @ (x @ Wv),
     "your keys and values come from x, the decoder: that is self-attention. In cross-attention only the "
     "queries come from the decoder (x @ Wq); the keys and values come from the encoder's output "
     "(memory @ Wk, memory @ Wv), so the weights are (T, S)."),
    ("queries from the encoder", lambda *a: _attn(_parts(*a, q_from=a[1])),
     "your queries come from memory, so you get one answer per *source* position, (B, S, d_v). The queries "
     "come from the decoder (x @ Wq): one answer per target position, (B, T, d_v)."),
    ("projections swapped", lambda x, m, k, Wq, Wk, Wv: _attn(_parts(x, m, k, Wk, Wq, Wv)),
     "you swapped Wq and Wk: queries are x @ Wq, keys are memory @ Wk."),
    ("causal", _causal, _CAUSAL),
    ("padding ignored", lambda x, m, k, *W: _attn(_parts(x, m, torch.ones_like(k), *W)),
     "padded source positions get weight: the memory_mask is not applied. Fill the scores of blocked keys "
     "with −∞ before the softmax: scores.masked_fill(~memory_mask[:, None, :], float('-inf'))."),
    ("mask inverted", lambda x, m, k, *W: _attn(_parts(x, m, ~k, *W)),
     "your mask is the wrong way round: you attend only to padding. Here True marks a real source token "
     "(attend) and False a padded one (block), so fill where the mask is False: masked_fill(~mask, -inf). "
     "(nn.MultiheadAttention's key_padding_mask uses the opposite convention, True = padding.)"),
    ("equal weights", lambda x, m, k, Wq, Wk, Wv: (m @ Wv).mean(dim=-2, keepdim=True).expand(-1, x.shape[1], -1),
     "every query gave every source token the same weight, 1/S: all the scores became one number. A mask "
     "the wrong way round does that when nothing is padded (filling every real key with −1e9); so does "
     "ignoring the scores. Here True in memory_mask marks a real token: fill where it is False, "
     "masked_fill(~mask, -inf), and keep the scores Q Kᵀ/√d_k everywhere else."),
]

_KEYS = ("your keys come from x, the decoder, and your values from memory: the weights (T, T) then do not "
         "fit the values (S, d_v). Both keys and values come from the encoder: memory @ Wk and memory @ Wv.")
_ROWS = ("your mask has shape (B, S, 1): it blocks *queries* (rows), and fits the (T, S) scores only when "
         "T = S. The padding belongs to the keys, the columns: memory_mask[:, None, :] of shape (B, 1, S).")

_DIAGNOSE = [  # slips that raise when T ≠ S: the diagnosis reruns them with T = S
    ("keys from the decoder", lambda x, m, k, *W: _attn(_parts(x, m, k, *W, k_from=x)), _KEYS),
    ("keys from the decoder", lambda x, m, k, *W: _attn(_parts(x, m, torch.ones_like(k), *W, k_from=x)), _KEYS),
    ("values from the decoder", lambda x, m, k, *W: _attn(_parts(x, m, k, *W, v_from=x)),
     "your values come from x, the decoder: the weights (T, S) then do not fit them. Keys and values both "
     "come from the encoder: memory @ Wk and memory @ Wv."),
    ("causal", _causal, _CAUSAL),
    ("mask along the queries", lambda x, m, k, *W: _attn(_parts(x, m, k, *W, keep=k[:, :, None])), _ROWS),
]


def _inputs(T_: int, S_: int, padded: bool):
    def make(g):
        x = torch.randn(B, T_, C, generator=g, dtype=F64)  # (B, T, C)
        memory = torch.randn(B, S_, C, generator=g, dtype=F64)  # (B, S, C)
        W = [torch.randn(C, d, generator=g, dtype=F64) for d in (DK, DK, DV)]
        lengths = torch.randint(2, S_, (B,), generator=g) if padded else torch.full((B,), S_)
        mask = torch.arange(S_)[None, :] < lengths[:, None]  # (B, S), True = real
        return (x, memory, mask, *W)
    return make


def _explain(e: BaseException):
    msg = str(e)
    sizes = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at "
                      r"non-singleton dimension (\d)", msg)
    if sizes and {int(sizes[1]), int(sizes[2])} == {T, S} and sizes[3] == "1":
        return "mask along the queries", _ROWS  # a (B, S, 1) mask met the (B, T, S) scores
    if sizes and {int(sizes[1]), int(sizes[2])} == {B, T} and sizes[3] == "1":
        return "mask without its query axis", (
            "your (B, S) mask was broadcast against the (B, T, S) scores as if B were T. Give it an axis for "
            "the queries first: memory_mask[:, None, :], shape (B, 1, S).")
    if "must match the size" in msg or "expanded size" in msg or "broadcast" in msg:
        return ("mask shape", "shapes did not fit: the scores are (B, T, S), so the padding mask must be "
                "(B, 1, S) — memory_mask[:, None, :] — one entry per source key, the same for every query "
                "(a (T, T) mask, or one built from the target, cannot fit when T ≠ S).")
    return explain_error(e)


def check_cross_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x (B, T, C), memory (B, S, C), memory_mask (B, S), Wq, Wk (C, d_k), Wv (C, d_v)) → (B, T, d_v)."""
    parts = lambda *a: _parts(*a)  # noqa: E731
    mistakes = [Mistake(k, f, h) for k, f, h in _STRUCTURE] + attention_mistakes(parts) + [
        Mistake("one row's mask", lambda x, m, mask, Wq, Wk, Wv, r=r: _attn(_parts(x, m, mask, Wq, Wk, Wv,
                                                                             keep=mask[r][None, None, :])),
                f"you used the mask of sequence {r} for every sequence: each sequence has its own padding, "
                f"memory_mask[:, None, :] (B, 1, S), one row per sequence.") for r in range(B)]
    diagnose = [Mistake(k, f, h) for k, f, h in _DIAGNOSE] + order_mistakes(parts)
    return check(
        "cross_attention", fn, _reference,
        [Trial(_inputs(T, S, padded=False)),
         Trial(_inputs(T, S, padded=True), "padding",
               "right when every source token is real, wrong when the source is padded: block the padded "
               "keys, scores.masked_fill(~memory_mask[:, None, :], float('-inf')), before the softmax.")],
        mistakes, properties=[attention_property(parts)], diagnose=Trial(_inputs(6, 6, padded=True)),
        diagnose_mistakes=diagnose, explain=_explain, seed=seed, quiet=quiet,
        nan_hint="Some query had every key blocked, so its softmax was 0/0. Here True in memory_mask marks a "
                 "real source token (attend) and False a padded one: block where it is False, "
                 "masked_fill(~mask, -inf). (nn.MultiheadAttention's key_padding_mask is the opposite, "
                 "True = padding.)")

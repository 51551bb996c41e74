"""kqvlib's public API under bad input: every call either returns what a reference returns (PyTorch's
own where there is one) or raises ValueError/TypeError whose message names the argument at fault.

Two kinds of calls:

* hand-written cases (``CASES``): NaN and inf, empty tensors, mismatched shapes, dtypes and devices,
  sampling arguments on every path, negative offsets, out-of-range ids, ...;
* a rule-based sweep (``SPECS``): each public function or class with one good call, then every argument
  replaced in turn by values of the wrong kind for it (a negative or fractional size, a string, NaN, an
  integer tensor where floats go, a float tensor where ids go, a tensor on the meta device, ...).

Each outcome is one of
    fine     returned, equal to the reference
    clear    ValueError/TypeError naming the argument
    unclear  any other exception (a raw torch, Python or OS error), or one that does not name the argument
    silent   returned something the reference does not (a wrong result that looks right)

Run ``python tests/test_api_sweep.py`` to print the table and every call that is not fine or clear
(``… elsewhere`` sweeps the rest of the top level: precision, train, pretrained, seed).

Measured when the sweep was written (December 2026): kqvlib as it was, 1392 calls: 253 silent, 686 unclear,
328 clear, 125 fine; with every argument checked at the boundary, 1444 calls (part V's names included):
0 silent, 0 unclear, 1290 clear, 154 fine.
"""
from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


attention, block, data, efficient, encdec, explorer, generate, interpret, model, multihead, positions, tokenizers = (
    importlib.import_module(f"kqvlib.{m}") for m in  # kqvlib.generate the module, not the function
    "attention block data efficient encdec explorer generate interpret model multihead positions tokenizers".split())

META = "meta"


# --- expectations and outcomes -----------------------------------------------------------------------

@dataclass
class Err:
    """The call must raise ValueError/TypeError whose message names one of ``names``."""
    names: tuple[str, ...]

    def __init__(self, *names: str):
        self.names = names


@dataclass
class Ref:
    """The call must return what ``ref()`` returns (tensors: same shape, dtype, device and values, NaN
    where the reference has NaN). ``pred``: a check of the result instead of a reference."""
    ref: Callable[[], Any] | None = None
    pred: Callable[[Any], bool] | None = None


@dataclass
class Case:
    label: str
    call: Callable[[], Any]
    expect: Err | Ref


def _names(msg: str, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg) for n in names)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
            return False
        if a.device.type == META or a.numel() == 0:
            return True
        if a.dtype == torch.bool or not a.is_floating_point():
            return torch.equal(a, b)
        tol = 1e-2 if torch.finfo(a.dtype).bits <= 16 else 1e-5
        return torch.allclose(a, b, rtol=tol, atol=tol / 10, equal_nan=True)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def judge(case: Case) -> tuple[str, str]:
    """→ (outcome, detail)."""
    try:
        got = case.call()
    except (ValueError, TypeError) as e:
        names = case.expect.names if isinstance(case.expect, Err) else ()
        if isinstance(case.expect, Err) and not _names(str(e), names):
            return "unclear", f"{type(e).__name__} not naming {names}: {str(e)[:160]}"
        if isinstance(case.expect, Ref):
            # a refusal where a result was expected is acceptable only with a message that explains
            return ("clear" if re.match(r"^\w[\w.]*: ", str(e)) else "unclear"), f"{type(e).__name__}: {str(e)[:160]}"
        return "clear", f"{type(e).__name__}: {str(e)[:160]}"
    except Exception as e:  # noqa: BLE001 - any other exception is unclear by definition
        return "unclear", f"{type(e).__name__}: {str(e)[:160]}"
    if isinstance(case.expect, Err):
        return "silent", f"returned {_short(got)}, expected an error naming {case.expect.names}"
    if case.expect.pred is not None:
        ok = bool(case.expect.pred(got))
        return ("fine", "") if ok else ("silent", f"returned {_short(got)}, which fails the check")
    want = case.expect.ref()
    return ("fine", "") if same(got, want) else ("silent", f"returned {_short(got)}, expected {_short(want)}")


def _short(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype} {x.device}" + (
            f" {x.flatten()[:4].tolist()}" if x.device.type != META and x.numel() else "")
    return repr(x)[:80]


# --- small models and tokenizers (built once) -------------------------------------------------------

torch.manual_seed(0)
V, BLK, C, H = 11, 8, 8, 2
GPT_CFG = model.GPTConfig(vocab_size=V, block_size=BLK, n_layer=1, n_head=H, n_embd=C)
GPT_M = model.GPT(GPT_CFG).eval()
GPT_ROPE = model.GPT(model.GPTConfig(vocab_size=V, block_size=BLK, n_layer=1, n_head=H, n_embd=C,
                                     pos_emb="rope")).eval()
ED_CFG = encdec.EncDecConfig(d_model=8, n_heads=2, n_enc_layers=1, n_dec_layers=1, max_len=16)
ED = encdec.EncoderDecoder(ED_CFG).eval()
MHA = multihead.MultiHeadAttention(C, H).eval()
MHA_CAUSAL = multihead.MultiHeadAttention(C, H, causal=True, impl="scratch").eval()
BLOCK = block.Block(C, H).eval()
LN = block.LayerNorm(C)
MLP_ = block.MLP(C).eval()
SIN = positions.SinusoidalPositions(BLK, C)
LEARNED = positions.LearnedPositions(BLK, C)
ROT = positions.RotaryEmbedding(4, BLK)
CHAR = tokenizers.CharTokenizer("abc\n")
BPE = tokenizers.BPETokenizer.train("the cat sat on the mat, the cat sat. " * 4, 270)
DEC_BLOCK = encdec.DecoderBlock(8, 2).eval()

g = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 5, generator=g)  # a float tensor
Q, K, Vv = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 6, generator=g)
XC = torch.randn(2, 3, C, generator=g)  # (B, T, C)
IDS = torch.randint(0, V, (2, 4), generator=g)
LOGITS = torch.randn(2, V, generator=g)
NAN = float("nan")
INF = float("inf")


def gen():
    return torch.Generator().manual_seed(1)


def meta(t: torch.Tensor) -> torch.Tensor:
    return t.to(META)


def nan_at(t: torch.Tensor, *index) -> torch.Tensor:
    t = t.clone()
    t[index] = NAN
    return t


def sdpa_ref(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# --- hand-written cases ------------------------------------------------------------------------------

def _hand_cases() -> list[Case]:
    sm = attention.softmax
    cs: list[Case] = []
    add = lambda label, call, expect: cs.append(Case(label, call, expect))  # noqa: E731

    # softmax: empty, NaN, inf, dtypes, dims, meta
    for shape in [(2, 0), (0, 3), (0,), (2, 0, 3), ()]:
        x = torch.randn(shape)
        add(f"softmax empty/0-d {shape}", lambda x=x: sm(x), Ref(lambda x=x: torch.softmax(x, -1)))
    add("softmax (2,0,3) dim=1", lambda: sm(torch.randn(2, 0, 3), dim=1), Ref(lambda: torch.softmax(torch.randn(2, 0, 3), 1)))
    for x in [nan_at(X, 0, 1, 2), torch.tensor([[1.0, INF, 2.0]]), torch.tensor([[NAN, NAN]]),
              torch.tensor([[-INF, 1.0], [INF, -INF]]), torch.tensor([[1e38, 3e38]]), torch.tensor([[INF, INF]])]:
        add(f"softmax NaN/inf {x.flatten()[:3].tolist()}", lambda x=x: sm(x), Ref(lambda x=x: torch.softmax(x, -1)))
    add("softmax all -inf row → zeros", lambda: sm(torch.tensor([[-INF, -INF], [0.0, 0.0]])),
        Ref(lambda: torch.tensor([[0.0, 0.0], [0.5, 0.5]])))
    add("softmax float64", lambda: sm(X.double(), 1), Ref(lambda: torch.softmax(X.double(), 1)))
    add("softmax bfloat16", lambda: sm(X.bfloat16()), Ref(lambda: torch.softmax(X.bfloat16(), -1)))
    add("softmax meta", lambda: sm(meta(X)), Ref(lambda: torch.softmax(meta(X), -1)))
    add("softmax int", lambda: sm(torch.arange(6).view(2, 3)), Err("x"))
    add("softmax bool", lambda: sm(torch.ones(2, dtype=torch.bool)), Err("x"))
    add("softmax list", lambda: sm([1.0, 2.0]), Err("x"))
    add("softmax dim=3", lambda: sm(X, dim=3), Err("dim"))
    add("softmax dim=-4", lambda: sm(X, dim=-4), Err("dim"))
    add("softmax dim=1.0", lambda: sm(X, dim=1.0), Err("dim"))
    add("softmax dim='x'", lambda: sm(X, dim="x"), Err("dim"))

    # soft_lookup
    q1, k1, v1 = torch.randn(4), torch.randn(5, 4), torch.randn(5, 3)
    ref_lookup = lambda q, k, v: torch.softmax(k @ q, 0) @ v  # noqa: E731
    add("soft_lookup NaN query", lambda: attention.soft_lookup(nan_at(q1, 0), k1, v1),
        Ref(lambda: ref_lookup(nan_at(q1, 0), k1, v1)))
    add("soft_lookup NaN key", lambda: attention.soft_lookup(q1, nan_at(k1, 2, 1), v1),
        Ref(lambda: ref_lookup(q1, nan_at(k1, 2, 1), v1)))
    add("soft_lookup inf key", lambda: attention.soft_lookup(q1, k1 * INF, v1),
        Ref(lambda: ref_lookup(q1, k1 * INF, v1)))
    add("soft_lookup n=0", lambda: attention.soft_lookup(q1, torch.randn(0, 4), torch.randn(0, 3)),
        Ref(lambda: ref_lookup(q1, torch.randn(0, 4), torch.randn(0, 3))))
    add("soft_lookup int query", lambda: attention.soft_lookup(torch.arange(4), k1, v1), Err("query"))
    add("soft_lookup int values", lambda: attention.soft_lookup(q1, k1, torch.ones(5, 3, dtype=torch.long)), Err("values"))
    add("soft_lookup float64 keys", lambda: attention.soft_lookup(q1, k1.double(), v1), Err("keys", "query"))
    add("soft_lookup keys (4, 5)", lambda: attention.soft_lookup(q1, k1.T, v1), Err("keys"))
    add("soft_lookup values (4, 3)", lambda: attention.soft_lookup(q1, k1, v1[:4]), Err("values"))
    add("soft_lookup meta keys", lambda: attention.soft_lookup(q1, meta(k1), v1), Err("keys"))

    # scaled_dot_product_attention
    sdpa = attention.scaled_dot_product_attention
    add("sdpa plain", lambda: sdpa(Q, K, Vv), Ref(lambda: sdpa_ref(Q, K, Vv)))
    add("sdpa NaN q", lambda: sdpa(nan_at(Q, 0, 1, 0), K, Vv), Ref(lambda: sdpa_ref(nan_at(Q, 0, 1, 0), K, Vv)))
    add("sdpa NaN v", lambda: sdpa(Q, K, nan_at(Vv, 1, 2, 3)), Ref(lambda: sdpa_ref(Q, K, nan_at(Vv, 1, 2, 3))))
    add("sdpa NaN in float mask", lambda: sdpa(Q, K, Vv, nan_at(torch.zeros(3, 5), 1, 1)),
        Ref(lambda: sdpa_ref(Q, K, Vv, nan_at(torch.zeros(3, 5), 1, 1))))
    add("sdpa weights of NaN q", lambda: sdpa(nan_at(Q, 0, 1, 0), K, Vv, return_weights=True)[1],
        Ref(lambda: torch.softmax(nan_at(Q, 0, 1, 0) @ K.mT / 2, -1)))
    add("sdpa T=0", lambda: sdpa(Q[:, :0], K, Vv), Ref(lambda: sdpa_ref(Q[:, :0], K, Vv)))
    add("sdpa B=0", lambda: sdpa(Q[:0], K[:0], Vv[:0]), Ref(lambda: sdpa_ref(Q[:0], K[:0], Vv[:0])))
    add("sdpa S=0 → zeros", lambda: sdpa(Q, K[:, :0], Vv[:, :0]), Ref(lambda: torch.zeros(2, 3, 6)))
    add("sdpa int q", lambda: sdpa(Q.long(), K, Vv), Err("q"))
    add("sdpa float64 k", lambda: sdpa(Q, K.double(), Vv), Err("k", "q"))
    add("sdpa d_k mismatch", lambda: sdpa(Q, K[..., :3], Vv), Err("k", "q"))
    add("sdpa S mismatch", lambda: sdpa(Q, K, Vv[:, :4]), Err("v", "k"))
    add("sdpa batch mismatch", lambda: sdpa(Q, K[:1].expand(3, 5, 4), Vv[:1].expand(3, 5, 6)), Err("q", "k"))
    add("sdpa 1-D q", lambda: sdpa(Q[0, 0], K, Vv), Err("q"))
    add("sdpa d_k=0", lambda: sdpa(Q[..., :0], K[..., :0], Vv), Err("q", "d_k"))
    add("sdpa int mask", lambda: sdpa(Q, K, Vv, torch.ones(3, 5, dtype=torch.long)), Err("mask"))
    add("sdpa mask (5,3)", lambda: sdpa(Q, K, Vv, torch.ones(5, 3, dtype=torch.bool)), Err("mask"))
    add("sdpa float64 mask", lambda: sdpa(Q, K, Vv, torch.zeros(3, 5, dtype=torch.float64)), Err("mask"))
    add("sdpa meta mask", lambda: sdpa(Q, K, Vv, meta(torch.ones(3, 5, dtype=torch.bool))), Err("mask"))
    add("sdpa list mask", lambda: sdpa(Q, K, Vv, [[True] * 5] * 3), Err("mask"))
    add("sdpa meta q", lambda: sdpa(meta(Q), K, Vv), Err("q", "k"))
    add("sdpa all meta", lambda: sdpa(meta(Q), meta(K), meta(Vv)), Ref(lambda: meta(torch.empty(2, 3, 6))))

    # masks
    add("causal_mask 0", lambda: attention.causal_mask(0), Ref(lambda: torch.ones(0, 0, dtype=torch.bool)))
    add("causal_mask -1", lambda: attention.causal_mask(-1), Err("T"))
    add("causal_mask 2.0", lambda: attention.causal_mask(2.0), Err("T"))
    add("causal_mask device 'nope'", lambda: attention.causal_mask(3, device="nope"), Err("device"))
    add("padding_mask [] → (0,1,1,S)", lambda: attention.padding_mask([], 4), Ref(lambda: torch.zeros(0, 1, 1, 4, dtype=torch.bool)))
    add("padding_mask S=0", lambda: attention.padding_mask([0, 0], 0), Ref(lambda: torch.zeros(2, 1, 1, 0, dtype=torch.bool)))
    add("padding_mask [5] S=4", lambda: attention.padding_mask([5], 4), Err("lengths"))
    add("padding_mask [-1]", lambda: attention.padding_mask([-1], 4), Err("lengths"))
    add("padding_mask [1.5]", lambda: attention.padding_mask([1.5], 4), Err("lengths"))
    add("padding_mask 'ab'", lambda: attention.padding_mask("ab", 4), Err("lengths"))
    add("padding_mask meta", lambda: attention.padding_mask(meta(torch.tensor([1])), 4), Err("lengths"))
    add("padding_mask S=-1", lambda: attention.padding_mask([1], -1), Err("S"))
    add("as_additive int", lambda: attention.as_additive(torch.ones(2, dtype=torch.long)), Err("mask"))
    add("as_additive dtype str", lambda: attention.as_additive(torch.ones(2, dtype=torch.bool), "float32"), Err("dtype"))
    add("as_additive dtype long", lambda: attention.as_additive(torch.ones(2, dtype=torch.bool), torch.long), Err("dtype"))
    add("as_additive empty", lambda: attention.as_additive(torch.ones(0, dtype=torch.bool)), Ref(lambda: torch.zeros(0)))
    add("combine_masks list", lambda: attention.combine_masks([True], torch.ones(2, dtype=torch.bool)), Err("a"))
    add("combine_masks int b", lambda: attention.combine_masks(torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.long)), Err("b"))
    add("combine_masks shapes", lambda: attention.combine_masks(torch.ones(2, 3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)), Err("a", "b"))
    add("combine_masks bool+float", lambda: attention.combine_masks(torch.tensor([True, False]), torch.zeros(2)),
        Ref(lambda: torch.tensor([0.0, -INF])))

    # multihead
    add("split_heads n_heads=0", lambda: multihead.split_heads(XC, 0), Err("n_heads"))
    add("split_heads n_heads=3", lambda: multihead.split_heads(XC, 3), Err("n_heads", "x"))
    add("split_heads list", lambda: multihead.split_heads([[1.0]], 1), Err("x"))
    add("merge_heads 3-D", lambda: multihead.merge_heads(XC), Err("x"))
    add("MHA n_heads=0", lambda: multihead.MultiHeadAttention(8, 0), Err("n_heads"))
    add("MHA d_model=-8", lambda: multihead.MultiHeadAttention(-8, 2), Err("d_model"))
    add("MHA dropout=1.5", lambda: multihead.MultiHeadAttention(8, 2, dropout=1.5), Err("dropout"))
    add("MHA rotary of another head size", lambda: multihead.MultiHeadAttention(8, 2, rotary=positions.RotaryEmbedding(2, 8)), Err("rotary"))
    add("MHA int x", lambda: MHA(XC.long()), Err("x"))
    add("MHA float64 x", lambda: MHA(XC.double()), Err("x"))
    add("MHA context batch 1", lambda: MHA(XC, context=XC[:1]), Err("context"))
    add("MHA context float64", lambda: MHA(XC, context=XC.double()), Err("context"))
    add("MHA mask (3,3) int", lambda: MHA(XC, mask=torch.ones(3, 3, dtype=torch.long)), Err("mask"))
    add("MHA mask wrong shape", lambda: MHA(XC, mask=torch.ones(4, 3, dtype=torch.bool)), Err("mask"))
    add("MHA meta x", lambda: MHA(meta(XC)), Err("x"))
    add("MHA cache not a KVCache", lambda: MHA_CAUSAL(XC, cache=[]), Err("cache"))
    add("MHA empty T", lambda: MHA(XC[:, :0]), Ref(pred=lambda y: y.shape == (2, 0, C)))
    add("MHA empty B", lambda: MHA(XC[:0]), Ref(pred=lambda y: y.shape == (0, 3, C)))
    add("MHA NaN x propagates", lambda: MHA_CAUSAL(nan_at(XC, 0, 0, 0))[0, :, 0].isnan().all().item(), Ref(lambda: True))
    kk = torch.randn(1, 2, 3, 4)
    add("KVCache k/v lengths differ", lambda: multihead.KVCache().append(kk, kk[:, :, :2]), Err("v", "k"))
    add("KVCache k/v lengths differ (max_len)", lambda: multihead.KVCache(8).append(kk, kk[:, :, :2]), Err("v", "k"))
    add("KVCache max_len=0", lambda: multihead.KVCache(0), Err("max_len"))
    add("KVCache max_len=-1", lambda: multihead.KVCache(-1), Err("max_len"))
    add("KVCache max_len=2.5", lambda: multihead.KVCache(2.5), Err("max_len"))
    add("KVCache list k", lambda: multihead.KVCache().append([1.0], kk), Err("k"))

    def second_append(a, b, max_len=None):
        c = multihead.KVCache(max_len)
        c.append(kk, kk)
        return c.append(a, b)
    add("KVCache second append other B", lambda: second_append(kk.expand(2, 2, 3, 4), kk.expand(2, 2, 3, 4)), Err("k"))
    add("KVCache second append other hs (max_len)", lambda: second_append(kk[..., :2], kk[..., :2], 8), Err("k"))
    add("KVCache second append float64", lambda: second_append(kk.double(), kk.double()), Err("k"))
    add("KVCache v of other width", lambda: multihead.KVCache(8).append(kk, torch.ones(1, 2, 3, 6))[1],
        Ref(lambda: torch.ones(1, 2, 3, 6)))

    # positions
    add("sinusoidal T=-1", lambda: positions.sinusoidal_encoding(-1, 4), Err("T"))
    add("sinusoidal T=0", lambda: positions.sinusoidal_encoding(0, 4), Ref(lambda: torch.zeros(0, 4)))
    add("sinusoidal d_model=3", lambda: positions.sinusoidal_encoding(4, 3), Err("d_model"))
    add("sinusoidal d_model=-2", lambda: positions.sinusoidal_encoding(4, -2), Err("d_model"))
    add("sinusoidal base=-1", lambda: positions.sinusoidal_encoding(4, 4, base=-1.0), Err("base"))
    add("sinusoidal base=nan", lambda: positions.sinusoidal_encoding(4, 4, base=NAN), Err("base"))
    add("sinusoidal dtype long", lambda: positions.sinusoidal_encoding(4, 4, dtype=torch.long), Err("dtype"))
    for name, pos in (("Sinusoidal", SIN), ("Learned", LEARNED)):
        add(f"{name} offset=-1", lambda pos=pos: pos(2, offset=-1), Err("offset"))
        add(f"{name} T=-1", lambda pos=pos: pos(-1), Err("T"))
        add(f"{name} T=9", lambda pos=pos: pos(9), Err("T", "offset", "max_positions"))
        add(f"{name} T=2.0", lambda pos=pos: pos(2.0), Err("T"))
        add(f"{name} T=0", lambda pos=pos: pos(0).shape, Ref(lambda: torch.Size([0, C])))
        add(f"{name} offset=1.5", lambda pos=pos: pos(2, offset=1.5), Err("offset"))
    add("SinusoidalPositions d_model=3", lambda: positions.SinusoidalPositions(4, 3), Err("d_model"))
    add("SinusoidalPositions max_positions=-1", lambda: positions.SinusoidalPositions(-1, 4), Err("max_positions"))
    add("LearnedPositions max_positions=0", lambda: positions.LearnedPositions(0, 4), Err("max_positions"))
    add("LearnedPositions d_model=-1", lambda: positions.LearnedPositions(4, -1), Err("d_model"))
    xr = torch.randn(1, 2, 3, 4)
    add("Rotary offset=-1", lambda: ROT(xr, offset=-1), Err("offset"))
    add("Rotary int x", lambda: ROT(xr.long()), Err("x"))
    add("Rotary x of other head size", lambda: ROT(torch.randn(1, 2, 3, 6)), Err("x"))
    add("Rotary 1-D x", lambda: ROT(torch.randn(4)), Err("x"))
    add("Rotary too long", lambda: ROT(torch.randn(1, 2, 9, 4)), Err("x", "offset", "max_positions"))
    add("Rotary NaN propagates", lambda: ROT(nan_at(xr, 0, 0, 1, 0)).isnan().sum().item(), Ref(lambda: 2))
    add("Rotary T=0", lambda: ROT(xr[:, :, :0]), Ref(lambda: xr[:, :, :0]))
    add("RotaryEmbedding head_size=3", lambda: positions.RotaryEmbedding(3, 8), Err("head_size"))
    add("RotaryEmbedding head_size=0", lambda: positions.RotaryEmbedding(0, 8), Err("head_size"))
    add("RotaryEmbedding max_positions=-1", lambda: positions.RotaryEmbedding(4, -1), Err("max_positions"))
    add("RotaryEmbedding base=0", lambda: positions.RotaryEmbedding(4, 8, base=0.0), Err("base"))

    # block
    add("LayerNorm d_model=0", lambda: block.LayerNorm(0), Err("d_model"))
    add("LayerNorm eps=-1", lambda: block.LayerNorm(4, eps=-1.0), Err("eps"))
    add("LayerNorm eps=nan", lambda: block.LayerNorm(4, eps=NAN), Err("eps"))
    add("LayerNorm int x", lambda: LN(torch.ones(2, C, dtype=torch.long)), Err("x"))
    add("LayerNorm wrong C", lambda: LN(torch.ones(2, 3)), Err("x"))
    add("LayerNorm empty", lambda: LN(torch.ones(0, C)), Ref(lambda: nn.LayerNorm(C)(torch.ones(0, C)).detach()))
    add("LayerNorm NaN", lambda: LN(nan_at(XC, 0, 0, 0)).detach(), Ref(lambda: nn.LayerNorm(C)(nan_at(XC, 0, 0, 0)).detach()))
    add("make_norm kind", lambda: block.make_norm("batchnorm", 4), Err("kind"))
    add("make_norm d_model=0", lambda: block.make_norm("layernorm", 0), Err("d_model"))
    add("MLP d_model=-1", lambda: block.MLP(-1), Err("d_model"))
    add("MLP dropout=2", lambda: block.MLP(4, dropout=2.0), Err("dropout"))
    add("MLP int x", lambda: MLP_(torch.ones(2, C, dtype=torch.long)), Err("x"))
    add("MLP wrong C", lambda: MLP_(torch.ones(2, 3)), Err("x"))
    add("Block norm", lambda: block.Block(8, 2, norm="batch"), Err("norm"))
    add("Block n_heads=0", lambda: block.Block(8, 0), Err("n_heads"))
    add("Block int x", lambda: BLOCK(XC.long()), Err("x"))
    add("Block mask wrong shape", lambda: BLOCK(XC, mask=torch.ones(5, 5, dtype=torch.bool)), Err("mask"))
    add("Block cache list", lambda: BLOCK(XC, cache=[]), Err("cache"))
    add("Block meta x", lambda: BLOCK(meta(XC)), Err("x"))

    # tokenizers
    add("token_str(-1)", lambda: BPE.token_str(-1), Err("i"))
    add("token_str(vocab_size)", lambda: BPE.token_str(BPE.vocab_size), Err("i"))
    add("token_str(1.0)", lambda: BPE.token_str(1.0), Err("i"))
    add("token_str(tensor(104))", lambda: BPE.token_str(torch.tensor(104)), Ref(lambda: "h"))
    add("BPE decode floats", lambda: BPE.decode([104.0, 105.0]), Err("ids"))
    add("BPE decode float tensor", lambda: BPE.decode(torch.tensor([104.0])), Err("ids"))
    add("BPE decode 2-D", lambda: BPE.decode(torch.tensor([[104]])), Err("ids"))
    add("BPE decode meta", lambda: BPE.decode(meta(torch.tensor([104]))), Err("ids"))
    add("BPE decode errors='bogus'", lambda: BPE.decode([104], errors="bogus"), Err("errors"))
    add("BPE decode empty", lambda: BPE.decode([]), Ref(lambda: ""))
    add("BPE decode bool list", lambda: BPE.decode([True]), Err("ids"))
    add("BPE encode bytes", lambda: BPE.encode(b"abc"), Err("s"))
    add("BPE encode None", lambda: BPE.encode(None), Err("s"))
    add("BPE train vocab 300.5", lambda: tokenizers.BPETokenizer.train("aaab", 300.5), Err("vocab_size"))
    add("BPE train vocab 255", lambda: tokenizers.BPETokenizer.train("aaab", 255), Err("vocab_size"))
    add("BPE train text bytes", lambda: tokenizers.BPETokenizer.train(b"aaab", 260), Err("text"))
    add("BPE train bad pattern", lambda: tokenizers.BPETokenizer.train("aaab", 260, pattern="("), Err("pattern"))
    add("BPETokenizer bad pattern", lambda: tokenizers.BPETokenizer([], pattern="("), Err("pattern"))
    add("BPETokenizer merges of ints", lambda: tokenizers.BPETokenizer([1, 2]), Err("merges"))
    add("BPETokenizer merges triple", lambda: tokenizers.BPETokenizer([(1, 2, 3)]), Err("merges"))
    add("BPETokenizer merges future id", lambda: tokenizers.BPETokenizer([(300, 1)]), Err("merges"))
    add("BPETokenizer merges float", lambda: tokenizers.BPETokenizer([(1.0, 2)]), Err("merges"))
    add("BPETokenizer merges None", lambda: tokenizers.BPETokenizer(None), Err("merges"))
    add("Char decode -1", lambda: CHAR.decode([-1]), Err("ids"))
    add("Char decode float", lambda: CHAR.decode([1.0]), Err("ids"))
    add("Char decode float tensor", lambda: CHAR.decode(torch.tensor([1.0])), Err("ids"))
    add("Char decode 2-D", lambda: CHAR.decode(torch.tensor([[1]])), Err("ids"))
    add("Char decode meta", lambda: CHAR.decode(meta(torch.tensor([1]))), Err("ids"))
    add("Char decode int tensor", lambda: CHAR.decode(torch.tensor([0, 1], dtype=torch.int32)), Ref(lambda: "\na"))
    add("Char encode bytes", lambda: CHAR.encode(b"ab"), Err("s"))
    add("Char encode list", lambda: CHAR.encode(["a", "b"]), Err("s"))
    add("CharTokenizer(list)", lambda: tokenizers.CharTokenizer(["ab", "c"]), Err("text"))
    add("CharTokenizer(None)", lambda: tokenizers.CharTokenizer(None), Err("text"))
    add("merge pair of 3", lambda: tokenizers.merge([1, 2, 3], (1, 2, 3), 9), Err("pair"))
    add("merge pair int", lambda: tokenizers.merge([1, 2, 3], 1, 9), Err("pair"))
    add("merge new_id str", lambda: tokenizers.merge([1, 2, 3], (1, 2), "9"), Err("new_id"))
    add("merge ids None", lambda: tokenizers.merge(None, (1, 2), 9), Err("ids"))
    add("merge ids tensor", lambda: tokenizers.merge(torch.tensor([1, 2, 3]), (1, 2), 9), Ref(lambda: [9, 3]))
    add("get_pair_counts None", lambda: tokenizers.get_pair_counts(None), Err("ids"))
    add("get_pair_counts weight str", lambda: tokenizers.get_pair_counts([1, 2], weight="2"), Err("weight"))
    add("get_pair_counts counts list", lambda: tokenizers.get_pair_counts([1, 2], counts=[]), Err("counts"))
    add("get_pair_counts empty", lambda: tokenizers.get_pair_counts([]), Ref(lambda: Counter()))

    # data
    d = torch.arange(50)
    add("get_batch batch 0", lambda: data.get_batch(d, 0, 4), Ref(lambda: (torch.zeros(0, 4, dtype=torch.long),) * 2))
    add("get_batch batch -1", lambda: data.get_batch(d, -1, 4), Err("batch_size"))
    add("get_batch block 0", lambda: data.get_batch(d, 2, 0), Err("block_size"))
    add("get_batch block -1", lambda: data.get_batch(d, 2, -1), Err("block_size"))
    add("get_batch block 2.5", lambda: data.get_batch(d, 2, 2.5), Err("block_size"))
    add("get_batch float data", lambda: data.get_batch(d.float(), 2, 4), Err("data"))
    add("get_batch meta data", lambda: data.get_batch(meta(d), 2, 4), Err("data"))
    add("get_batch list data", lambda: data.get_batch(list(range(50)), 2, 4), Err("data"))
    add("get_batch generator str", lambda: data.get_batch(d, 2, 4, generator="g"), Err("generator"))
    add("get_batch device bad", lambda: data.get_batch(d, 2, 4, device="nope"), Err("device"))
    add("get_batch short data", lambda: data.get_batch(d[:4], 2, 4), Err("data", "block_size"))
    add("train_val_split 1.5", lambda: data.train_val_split(d, 1.5), Err("train_fraction"))
    add("train_val_split -0.1", lambda: data.train_val_split(d, -0.1), Err("train_fraction"))
    add("train_val_split nan", lambda: data.train_val_split(d, NAN), Err("train_fraction"))
    add("train_val_split 2-D", lambda: data.train_val_split(d.view(5, 10)), Err("data"))
    add("train_val_split list", lambda: data.train_val_split(list(range(5))), Err("data"))
    add("train_val_split empty", lambda: data.train_val_split(d[:0]), Ref(lambda: (d[:0], d[:0])))
    add("load_tinyshakespeare from the cache", lambda: _load_offline(), Ref(lambda: FAKE_TEXT))
    add("load_tinyshakespeare timeout 0", lambda: _load_offline(timeout=0), Err("timeout"))
    add("load_tinyshakespeare timeout -1", lambda: _load_offline(timeout=-1.0), Err("timeout"))
    add("load_tinyshakespeare timeout nan", lambda: _load_offline(timeout=NAN), Err("timeout"))
    add("load_tinyshakespeare sha256 short", lambda: _load_offline(sha256="abc"), Err("sha256"))
    add("load_tinyshakespeare url None", lambda: _load_offline(url=None), Err("url"))
    add("load_tinyshakespeare unreadable cache", _load_unreadable_cache, Err("KQV_CACHE_DIR"))

    # model
    add("GPT n_head=0", lambda: model.GPT(model.GPTConfig(n_head=0)), Err("n_head"))
    add("GPT n_embd=0", lambda: model.GPT(model.GPTConfig(n_embd=0)), Err("n_embd"))
    add("GPT vocab_size=0", lambda: model.GPT(model.GPTConfig(vocab_size=0)), Err("vocab_size"))
    add("GPT block_size=-1", lambda: model.GPT(model.GPTConfig(block_size=-1)), Err("block_size"))
    add("GPT n_layer=-1", lambda: model.GPT(model.GPTConfig(n_layer=-1)), Err("n_layer"))
    add("GPT dropout=1.5", lambda: model.GPT(model.GPTConfig(dropout=1.5)), Err("dropout"))
    add("GPT norm", lambda: model.GPT(model.GPTConfig(norm="batch")), Err("norm"))
    add("GPT attn_impl", lambda: model.GPT(model.GPTConfig(attn_impl="flash")), Err("attn_impl"))
    add("GPT rope odd head", lambda: model.GPT(model.GPTConfig(n_embd=6, n_head=2, pos_emb="rope")), Err("n_embd", "n_head", "pos_emb"))
    add("GPT cfg dict", lambda: model.GPT({"vocab_size": 3}), Err("cfg"))
    add("GPT float idx", lambda: GPT_M(IDS.float()), Err("idx"))
    add("GPT bool idx", lambda: GPT_M(IDS > 3), Err("idx"))
    add("GPT uint8 idx", lambda: GPT_M(IDS.to(torch.uint8)), Err("idx"))
    add("GPT meta idx", lambda: GPT_M(meta(IDS)), Err("idx"))
    add("GPT 1-D idx", lambda: GPT_M(IDS[0]), Err("idx"))
    add("GPT idx -1", lambda: GPT_M(torch.tensor([[1, -1]])), Err("idx"))
    add("GPT idx = V", lambda: GPT_M(torch.tensor([[1, V]])), Err("idx"))
    add("GPT rope idx = V", lambda: GPT_ROPE(torch.tensor([[V]])), Err("idx"))
    add("GPT too long", lambda: GPT_M(torch.zeros(1, BLK + 1, dtype=torch.long)), Err("idx", "block_size"))
    add("GPT targets float", lambda: GPT_M(IDS, IDS.float()), Err("targets"))
    add("GPT targets = V", lambda: GPT_M(IDS, torch.full_like(IDS, V)), Err("targets"))
    add("GPT targets -1", lambda: GPT_M(IDS, torch.full_like(IDS, -1)), Err("targets"))
    add("GPT targets shape", lambda: GPT_M(IDS, IDS[:, :2]), Err("targets"))
    add("GPT caches wrong count", lambda: GPT_M(IDS, caches=[]), Err("caches"))
    add("GPT caches of 2", lambda: GPT_M(IDS, caches=[multihead.KVCache(BLK)] * 2), Err("caches"))
    add("GPT caches not list", lambda: GPT_M(IDS, caches=multihead.KVCache(BLK)), Err("caches"))
    add("GPT T=0", lambda: GPT_M(IDS[:, :0])[0], Ref(pred=lambda y: y.shape == (2, 0, V)))
    add("GPT B=0", lambda: GPT_M(IDS[:0])[0], Ref(pred=lambda y: y.shape == (0, 4, V)))
    add("GPT targets -100 ignored", lambda: GPT_M(IDS, torch.full_like(IDS, -100))[1],
        Ref(lambda: F.cross_entropy(GPT_M(IDS)[0].flatten(0, 1), torch.full((8,), -100))))

    # generate: sampling arguments on every path
    sn = generate.sample_next
    for temp in (0.0, 1.0, 0.5):
        add(f"sample_next t={temp} top_k=0", lambda temp=temp: sn(LOGITS, temp, top_k=0), Err("top_k"))
        add(f"sample_next t={temp} top_k=-1", lambda temp=temp: sn(LOGITS, temp, top_k=-1), Err("top_k"))
        add(f"sample_next t={temp} top_k=2.5", lambda temp=temp: sn(LOGITS, temp, top_k=2.5), Err("top_k"))
        add(f"sample_next t={temp} top_p=0", lambda temp=temp: sn(LOGITS, temp, top_p=0.0), Err("top_p"))
        add(f"sample_next t={temp} top_p=1.5", lambda temp=temp: sn(LOGITS, temp, top_p=1.5), Err("top_p"))
        add(f"sample_next t={temp} top_p=nan", lambda temp=temp: sn(LOGITS, temp, top_p=NAN), Err("top_p"))
        add(f"sample_next t={temp} NaN logits", lambda temp=temp: sn(nan_at(LOGITS, 1, 3), temp), Err("logits"))
        add(f"sample_next t={temp} int logits", lambda temp=temp: sn(LOGITS.long(), temp), Err("logits"))
        add(f"sample_next t={temp} 1-D logits", lambda temp=temp: sn(LOGITS[0], temp), Err("logits"))
        add(f"sample_next t={temp} generator str", lambda temp=temp: sn(LOGITS, temp, generator="g"), Err("generator"))
        add(f"sample_next t={temp} all -inf row", lambda temp=temp: sn(torch.full((1, 3), -INF), temp), Err("logits"))
        add(f"generate t={temp} top_k=0", lambda temp=temp: generate.generate(GPT_M, IDS, 2, temp, top_k=0), Err("top_k"))
        add(f"generate t={temp} top_p=1.5", lambda temp=temp: generate.generate(GPT_M, IDS, 2, temp, top_p=1.5), Err("top_p"))
        add(f"generate t={temp} top_p=0", lambda temp=temp: generate.generate(GPT_M, IDS, 2, temp, top_p=0.0), Err("top_p"))
    add("sample_next t=-1", lambda: sn(LOGITS, -1.0), Err("temperature"))
    add("sample_next t=nan", lambda: sn(LOGITS, NAN), Err("temperature"))
    add("sample_next t=inf", lambda: sn(LOGITS, INF), Err("temperature"))
    add("sample_next t='1'", lambda: sn(LOGITS, "1"), Err("temperature"))
    add("sample_next t=0 +inf logit is picked", lambda: sn(torch.tensor([[0.0, INF, 1.0]]), 0.0), Ref(lambda: torch.tensor([[1]])))
    add("sample_next B=0", lambda: sn(LOGITS[:0], 1.0), Ref(lambda: torch.zeros(0, 1, dtype=torch.long)))
    add("sample_next B=0 greedy", lambda: sn(LOGITS[:0], 0.0), Ref(lambda: torch.zeros(0, 1, dtype=torch.long)))
    add("sample_next V=0", lambda: sn(LOGITS[:, :0], 1.0), Err("logits"))
    add("sample_next greedy = argmax", lambda: sn(LOGITS, 0.0), Ref(lambda: LOGITS.argmax(-1, keepdim=True)))
    add("top_k_filter k=0", lambda: generate.top_k_filter(LOGITS, 0), Err("k"))
    add("top_k_filter k=1.5", lambda: generate.top_k_filter(LOGITS, 1.5), Err("k"))
    add("top_k_filter int logits", lambda: generate.top_k_filter(LOGITS.long(), 2), Err("logits"))
    add("top_k_filter 1-D", lambda: generate.top_k_filter(LOGITS[0], 2), Ref(lambda: generate.top_k_filter(LOGITS[:1], 2)[0]))
    add("top_k_filter k > V", lambda: generate.top_k_filter(LOGITS, 100), Ref(lambda: LOGITS))
    add("top_p_filter p=0", lambda: generate.top_p_filter(LOGITS, 0.0), Err("p"))
    add("top_p_filter p=1.5", lambda: generate.top_p_filter(LOGITS, 1.5), Err("p"))
    add("top_p_filter p=nan", lambda: generate.top_p_filter(LOGITS, NAN), Err("p"))
    add("top_p_filter p='a'", lambda: generate.top_p_filter(LOGITS, "a"), Err("p"))
    add("top_p_filter int logits", lambda: generate.top_p_filter(LOGITS.long(), 0.5), Err("logits"))
    add("generate max_new_tokens=-1", lambda: generate.generate(GPT_M, IDS, -1), Err("max_new_tokens"))
    add("generate max_new_tokens=1.5", lambda: generate.generate(GPT_M, IDS, 1.5), Err("max_new_tokens"))
    add("generate max_new_tokens=0", lambda: generate.generate(GPT_M, IDS, 0), Ref(lambda: IDS))
    add("generate float idx", lambda: generate.generate(GPT_M, IDS.float(), 2), Err("idx"))
    add("generate meta idx", lambda: generate.generate(GPT_M, meta(IDS), 2), Err("idx"))
    add("generate idx = V", lambda: generate.generate(GPT_M, torch.tensor([[V]]), 2), Err("idx"))
    add("generate idx = V, rope", lambda: generate.generate(GPT_ROPE, torch.tensor([[V]]), 2), Err("idx"))
    add("generate T=0", lambda: generate.generate(GPT_M, IDS[:, :0], 2), Err("idx"))
    add("generate model str", lambda: generate.generate("gpt", IDS, 2), Err("model"))
    add("generate temperature -1", lambda: generate.generate(GPT_M, IDS, 2, -1.0), Err("temperature"))
    add("generate generator str", lambda: generate.generate(GPT_M, IDS, 2, generator="g"), Err("generator"))
    add("generate cached = uncached", lambda: generate.generate(GPT_ROPE, IDS, 6, generator=gen()),
        Ref(lambda: generate.generate(GPT_ROPE, IDS, 6, generator=gen(), use_cache=False)))

    # encdec
    src, tgt_in, tgt_out = encdec.digit_batch(3, gen())
    add("EncoderDecoder OOV src", lambda: ED(src.clamp(max=12) + 1, tgt_in), Err("src"))
    add("EncoderDecoder OOV tgt_in", lambda: ED(src, tgt_in - 1), Err("tgt_in"))
    add("EncoderDecoder float src", lambda: ED(src.float(), tgt_in), Err("src"))
    add("EncoderDecoder meta src", lambda: ED(meta(src), tgt_in), Err("src"))
    add("EncoderDecoder batch mismatch", lambda: ED(src[:2], tgt_in), Err("src", "tgt_in"))
    add("EncoderDecoder too long", lambda: ED(torch.full((1, 17), 3), tgt_in[:1]), Err("src"))
    add("EncoderDecoder embed OOV", lambda: ED.embed(torch.tensor([[13]])), Err("idx"))
    add("EncoderDecoder decode memory wrong C", lambda: ED.decode(tgt_in, torch.randn(3, 5, 4), None), Err("memory"))
    add("EncoderDecoder decode mask shape", lambda: ED.decode(tgt_in, torch.randn(3, 5, 8), torch.ones(3, 1, 1, 4, dtype=torch.bool)), Err("mask"))
    add("EncDecConfig n_heads=0", lambda: encdec.EncoderDecoder(encdec.EncDecConfig(n_heads=0)), Err("n_heads"))
    add("EncDecConfig d_model=-1", lambda: encdec.EncoderDecoder(encdec.EncDecConfig(d_model=-4, n_heads=2)), Err("d_model"))
    add("EncDecConfig max_len=0", lambda: encdec.EncoderDecoder(encdec.EncDecConfig(max_len=0)), Err("max_len"))
    add("EncDecConfig pad_id=13", lambda: encdec.EncoderDecoder(encdec.EncDecConfig(pad_id=13)), Err("pad_id"))
    add("EncDecConfig vocab_size=2", lambda: encdec.EncoderDecoder(encdec.EncDecConfig(vocab_size=0)), Err("vocab_size"))
    add("EncoderDecoder cfg dict", lambda: encdec.EncoderDecoder({}), Err("cfg"))
    add("DecoderBlock int x", lambda: DEC_BLOCK(torch.ones(1, 2, 8, dtype=torch.long), torch.randn(1, 3, 8)), Err("x"))
    add("DecoderBlock memory float64", lambda: DEC_BLOCK(torch.randn(1, 2, 8), torch.randn(1, 3, 8).double()), Err("memory"))
    add("DecoderBlock memory_mask int", lambda: DEC_BLOCK(torch.randn(1, 2, 8), torch.randn(1, 3, 8), torch.ones(1, 1, 1, 3, dtype=torch.long)), Err("memory_mask"))
    add("DecoderBlock n_heads=3", lambda: encdec.DecoderBlock(8, 3), Err("n_heads", "d_model"))
    add("to_digits 13", lambda: encdec.to_digits(torch.tensor([3, 13])), Err("ids"))
    add("to_digits 10..12 are digits 7..9", lambda: encdec.to_digits(torch.tensor([10, 11, 12, 2])), Ref(lambda: "789"))
    add("to_digits -1", lambda: encdec.to_digits(torch.tensor([3, -1])), Err("ids"))
    add("to_digits 2-D", lambda: encdec.to_digits(torch.tensor([[3, 4]])), Err("ids"))
    add("to_digits float", lambda: encdec.to_digits(torch.tensor([3.0, 4.0])), Err("ids"))
    add("to_digits empty", lambda: encdec.to_digits(torch.tensor([], dtype=torch.long)), Ref(lambda: ""))
    add("exact_match empty batch", lambda: encdec.exact_match(ED, src[:0], tgt_out[:0]), Err("src", "tgt_out"))
    add("exact_match batch mismatch", lambda: encdec.exact_match(ED, src[:2], tgt_out), Err("src", "tgt_out"))
    add("exact_match float tgt_out", lambda: encdec.exact_match(ED, src, tgt_out.float()), Err("tgt_out"))
    add("greedy_decode steps=-1", lambda: encdec.greedy_decode(ED, src, -1), Err("steps"))
    add("greedy_decode steps=1.5", lambda: encdec.greedy_decode(ED, src, 1.5), Err("steps"))
    add("greedy_decode steps=0", lambda: encdec.greedy_decode(ED, src, 0), Ref(lambda: torch.zeros(3, 0, dtype=torch.long)))
    add("greedy_decode OOV src", lambda: encdec.greedy_decode(ED, src + 20, 2), Err("src"))
    add("greedy_decode 1-D src", lambda: encdec.greedy_decode(ED, src[0], 2), Err("src"))
    add("digit_batch 0", lambda: encdec.digit_batch(0, gen()), Err("batch_size"))
    add("digit_batch -1", lambda: encdec.digit_batch(-1, gen()), Err("batch_size"))
    add("digit_batch generator None (the global RNG)", lambda: encdec.digit_batch(2, None)[0].shape, Ref(lambda: (2, 11)))
    add("digit_batch generator str", lambda: encdec.digit_batch(2, "g"), Err("generator"))
    add("digit_batch task", lambda: encdec.digit_batch(2, gen(), task="copy"), Err("task"))
    add("digit_batch split", lambda: encdec.digit_batch(2, gen(), split="val"), Err("split"))
    add("digit_batch min_len 0", lambda: encdec.digit_batch(2, gen(), min_len=0), Err("min_len"))
    add("digit_batch max < min", lambda: encdec.digit_batch(2, gen(), min_len=5, max_len=4), Err("max_len", "min_len"))
    add("is_held_out float", lambda: encdec.is_held_out(torch.ones(2, 3)), Err("digits"))
    add("is_held_out 10", lambda: encdec.is_held_out(torch.tensor([[10, 0]])), Err("digits"))
    add("is_held_out 1-D", lambda: encdec.is_held_out(torch.tensor([1, 0])), Err("digits"))
    add("is_held_out empty", lambda: encdec.is_held_out(torch.zeros(0, 3, dtype=torch.long)), Ref(lambda: torch.zeros(0, dtype=torch.bool)))
    add("train_seq2seq steps -1", lambda: encdec.train_seq2seq(ED, -1), Err("steps"))
    add("train_seq2seq warmup 0", lambda: encdec.train_seq2seq(ED, 1, batch_size=2, warmup=0), Err("warmup"))
    add("train_seq2seq lr nan", lambda: encdec.train_seq2seq(ED, 1, batch_size=2, lr=NAN), Err("lr"))
    add("train_seq2seq task", lambda: encdec.train_seq2seq(ED, 1, batch_size=2, task="copy"), Err("task"))
    add("train_seq2seq steps 0", lambda: encdec.train_seq2seq(ED, 0), Ref(lambda: []))

    # efficient
    add("online_softmax NaN", lambda: efficient.online_softmax(nan_at(X, 0, 1, 2)), Ref(lambda: torch.softmax(nan_at(X, 0, 1, 2), -1)))
    add("online_softmax (2,0)", lambda: efficient.online_softmax(torch.randn(2, 0)), Ref(lambda: torch.randn(2, 0)))
    add("online_softmax int", lambda: efficient.online_softmax(torch.ones(2, 3, dtype=torch.long)), Err("x"))
    add("online_softmax dim 5", lambda: efficient.online_softmax(X, dim=5), Err("dim"))
    add("online_softmax block 0", lambda: efficient.online_softmax(X, block_size=0), Err("block_size"))
    add("online_softmax block 1.5", lambda: efficient.online_softmax(X, block_size=1.5), Err("block_size"))
    add("tiled NaN q", lambda: efficient.tiled_attention(nan_at(Q, 0, 1, 0), K, Vv, block_size=2),
        Ref(lambda: sdpa_ref(nan_at(Q, 0, 1, 0), K, Vv)))
    add("tiled block 0", lambda: efficient.tiled_attention(Q, K, Vv, block_size=0), Err("block_size"))
    add("tiled causal T≠S", lambda: efficient.tiled_attention(Q, K, Vv, causal=True), Err("causal", "q", "k"))
    add("tiled int k", lambda: efficient.tiled_attention(Q, K.long(), Vv), Err("k"))
    add("tiled batch mismatch", lambda: efficient.tiled_attention(Q, K[:1].expand(3, 5, 4), Vv[:1].expand(3, 5, 6)), Err("q", "k"))
    add("tiled float64 v", lambda: efficient.tiled_attention(Q, K, Vv.double()), Err("v", "q"))
    add("draw_projection m=0", lambda: efficient.draw_projection(0, 4), Err("num_features"))
    add("draw_projection d=-1", lambda: efficient.draw_projection(4, -1), Err("d"))
    add("draw_projection dtype long", lambda: efficient.draw_projection(4, 4, dtype=torch.long), Err("dtype"))
    add("draw_projection m=2.5", lambda: efficient.draw_projection(2.5, 4), Err("num_features"))
    add("draw_projection generator str", lambda: efficient.draw_projection(4, 4, generator="g"), Err("generator"))
    w = efficient.draw_projection(8, 4, generator=gen())
    add("prf int x", lambda: efficient.positive_random_features(torch.ones(2, 4, dtype=torch.long), w), Err("x"))
    add("prf w 1-D", lambda: efficient.positive_random_features(Q, w[0]), Err("w"))
    add("prf w d mismatch", lambda: efficient.positive_random_features(Q, w[:, :3]), Err("w", "x"))
    add("performer w int", lambda: efficient.performer_attention(Q, K, Vv, w.long()), Err("w"))
    add("performer w d mismatch", lambda: efficient.performer_attention(Q, K, Vv, w[:, :3]), Err("w"))
    add("performer causal T≠S", lambda: efficient.performer_attention(Q, K, Vv, w, causal=True), Err("causal", "q", "k"))
    add("performer int q", lambda: efficient.performer_attention(Q.long(), K, Vv, w), Err("q"))
    add("peak_allocated_bytes not callable", lambda: efficient.peak_allocated_bytes(3), Err("fn"))
    add("sdpa_ops int q", lambda: efficient.sdpa_ops(Q.long(), K, Vv), Err("q"))

    # interpret
    add("attention_layers str", lambda: interpret.attention_layers("gpt"), Err("model"))
    add("attention_layers Linear", lambda: interpret.attention_layers(nn.Linear(2, 2)), Err("model"))
    add("capture_attention str", lambda: _enter(interpret.capture_attention("gpt")), Err("model"))
    add("ablate_heads (0, 5)", lambda: _enter(interpret.ablate_heads(GPT_M, {(0, 5)})), Err("heads"))
    add("ablate_heads (-1, 0)", lambda: _enter(interpret.ablate_heads(GPT_M, {(-1, 0)})), Err("heads"))
    add("ablate_heads int", lambda: _enter(interpret.ablate_heads(GPT_M, 3)), Err("heads"))
    add("ablate_heads [(0,)]", lambda: _enter(interpret.ablate_heads(GPT_M, [(0,)])), Err("heads"))
    add("ablate_heads [(0.0, 1)]", lambda: _enter(interpret.ablate_heads(GPT_M, [(0.0, 1)])), Err("heads"))
    wts = torch.softmax(torch.randn(2, 2, 4, 4), -1)
    add("head_score float targets", lambda: interpret.head_score(wts, torch.ones(4, 4)), Err("targets"))
    add("head_score int weights", lambda: interpret.head_score(wts.long(), torch.ones(4, 4, dtype=torch.bool)), Err("weights"))
    add("head_score targets shape", lambda: interpret.head_score(wts, torch.ones(3, 4, dtype=torch.bool)), Err("targets"))
    add("head_score no target", lambda: interpret.head_score(wts, torch.zeros(4, 4, dtype=torch.bool)), Err("targets"))
    add("head_score list", lambda: interpret.head_score(wts, [[True]]), Err("targets"))
    add("uniform_causal_weights B=-1", lambda: interpret.uniform_causal_weights(-1, 3), Err("B"))
    add("uniform_causal_weights T=-1", lambda: interpret.uniform_causal_weights(2, -1), Err("T"))
    add("uniform_causal_weights T=2.5", lambda: interpret.uniform_causal_weights(2, 2.5), Err("T"))
    add("uniform_causal_weights B=0", lambda: interpret.uniform_causal_weights(0, 3), Ref(lambda: torch.zeros(0, 1, 3, 3)))
    add("previous_token_targets -1", lambda: interpret.previous_token_targets(-1), Err("T"))
    add("previous_token_targets 0", lambda: interpret.previous_token_targets(0), Ref(lambda: torch.zeros(0, 0, dtype=torch.bool)))
    toks = torch.tensor([[0, 1, 2, 0, 1]])
    add("line_start_targets float", lambda: interpret.line_start_targets(toks.float(), 0), Err("tokens"))
    add("line_start_targets newline str", lambda: interpret.line_start_targets(toks, "\n"), Err("newline"))
    add("line_start_targets 1-D", lambda: interpret.line_start_targets(toks[0], 0), Err("tokens"))
    add("speaker_targets float", lambda: interpret.speaker_targets(toks.float(), 0, 1), Err("tokens"))
    add("speaker_targets colon str", lambda: interpret.speaker_targets(toks, 0, ":"), Err("colon"))
    add("speaker_targets T=0", lambda: interpret.speaker_targets(toks[:, :0], 0, 1), Ref(lambda: torch.zeros(1, 0, 0, dtype=torch.bool)))

    # explorer (chapter 14's figure)
    ids = torch.tensor(CHAR.encode("abca"))

    def ref_weights():
        twin = model.GPT(GPT_CFG).double().eval()
        twin.load_state_dict(GPT_M.state_dict())
        with torch.no_grad(), interpret.capture_attention(twin) as w:
            twin(ids[None])
        return torch.stack([a[0] for a in w])

    add("passage_attention fine", lambda: explorer.passage_attention(GPT_M, ids), Ref(ref_weights))
    add("passage_attention str model", lambda: explorer.passage_attention("gpt", ids), Err("model"))
    add("passage_attention Linear", lambda: explorer.passage_attention(nn.Linear(2, 2), ids), Err("model"))
    add("passage_attention float ids", lambda: explorer.passage_attention(GPT_M, ids.float()), Err("ids"))
    add("passage_attention 2-D ids", lambda: explorer.passage_attention(GPT_M, ids[None]), Err("ids"))
    add("passage_attention empty", lambda: explorer.passage_attention(GPT_M, ids[:0]), Err("ids"))
    add("passage_attention list", lambda: explorer.passage_attention(GPT_M, [0, 1]), Err("ids"))
    add("passage_attention too long", lambda: explorer.passage_attention(GPT_M, ids.repeat(3)), Err("ids"))
    add("attention_explorer fine", lambda: explorer.attention_explorer(GPT_M, CHAR, "abca").weights, Ref(ref_weights))
    add("attention_explorer str model", lambda: explorer.attention_explorer("gpt", CHAR, "ab"), Err("model"))
    add("attention_explorer int text", lambda: explorer.attention_explorer(GPT_M, CHAR, 3), Err("text"))
    add("attention_explorer 1 char", lambda: explorer.attention_explorer(GPT_M, CHAR, "a"), Err("text"))
    add("attention_explorer unknown char", lambda: explorer.attention_explorer(GPT_M, CHAR, "abz"), Err("text"))
    add("attention_explorer too long", lambda: explorer.attention_explorer(GPT_M, CHAR, "abc" * 3), Err("text"))
    add("attention_explorer BPE", lambda: explorer.attention_explorer(GPT_M, BPE, "the cat"), Err("tokenizer"))
    add("attention_explorer no encode", lambda: explorer.attention_explorer(GPT_M, object(), "ab"), Err("tokenizer"))
    add("attention_explorer query 5", lambda: explorer.attention_explorer(GPT_M, CHAR, "ab", query=5), Err("query"))
    add("attention_explorer query True", lambda: explorer.attention_explorer(GPT_M, CHAR, "ab", query=True), Err("query"))
    add("attention_explorer query 1.0", lambda: explorer.attention_explorer(GPT_M, CHAR, "ab", query=1.0), Err("query"))
    W4 = torch.full((1, 2, 3, 3), 1 / 3)
    add("AttentionExplorer fine", lambda: explorer.AttentionExplorer("abc", W4, 1).weights, Ref(lambda: W4))
    add("AttentionExplorer T mismatch", lambda: explorer.AttentionExplorer("ab", W4), Err("weights"))
    add("AttentionExplorer 3-D", lambda: explorer.AttentionExplorer("abc", W4[0]), Err("weights"))
    add("AttentionExplorer int weights", lambda: explorer.AttentionExplorer("abc", W4.long()), Err("weights"))
    add("AttentionExplorer start 3", lambda: explorer.AttentionExplorer("abc", W4, 3), Err("start"))
    add("AttentionExplorer text None", lambda: explorer.AttentionExplorer(None, W4), Err("text"))
    add("plotly_js", lambda: explorer.plotly_js(), Ref(lambda: explorer.PLOTLY_JS.read_text()))
    cs += _newer_cases()
    return cs


def _has(mod, *names) -> bool:
    return all(hasattr(mod, n) for n in names)


def _newer_cases() -> list[Case]:
    """Names added in part V (chapter 16's variants, a rolling cache, patching): swept where they exist."""
    cs: list[Case] = []
    add = lambda label, call, expect: cs.append(Case(label, call, expect))  # noqa: E731
    x4 = torch.randn(1, 2, 3, 4)
    if _has(multihead, "repeat_kv"):
        add("repeat_kv n_rep=0", lambda: multihead.repeat_kv(x4, 0), Err("n_rep"))
        add("repeat_kv n_rep=1.5", lambda: multihead.repeat_kv(x4, 1.5), Err("n_rep"))
        add("repeat_kv list", lambda: multihead.repeat_kv([[1.0]], 2), Err("x"))
        add("repeat_kv 3-D", lambda: multihead.repeat_kv(XC, 2), Err("x"))
        add("repeat_kv = repeat_interleave", lambda: multihead.repeat_kv(x4, 3), Ref(lambda: x4.repeat_interleave(3, dim=1)))
    if "n_kv_heads" in multihead.MultiHeadAttention.__init__.__code__.co_varnames:
        add("MHA n_kv_heads=3 of 4", lambda: multihead.MultiHeadAttention(8, 4, n_kv_heads=3), Err("n_kv_heads"))
        add("MHA n_kv_heads=0", lambda: multihead.MultiHeadAttention(8, 4, n_kv_heads=0), Err("n_kv_heads"))
        add("MHA n_kv_heads=2.0", lambda: multihead.MultiHeadAttention(8, 4, n_kv_heads=2.0), Err("n_kv_heads"))
        gqa = multihead.MultiHeadAttention(8, 4, n_kv_heads=2, causal=True).eval()
        add("MHA GQA int x", lambda: gqa(XC.long()), Err("x"))
        add("MHA GQA NaN propagates", lambda: gqa(nan_at(XC, 0, 0, 0))[0, :, 0].isnan().all().item(), Ref(lambda: True))
        add("MHA GQA scratch = sdpa", lambda: torch.allclose(gqa(XC), gqa(XC, return_weights=True)[0], atol=1e-6),
            Ref(lambda: True))
    if _has(block, "RMSNorm"):
        rms = block.RMSNorm(C)
        add("RMSNorm d_model=0", lambda: block.RMSNorm(0), Err("d_model"))
        add("RMSNorm eps=-1", lambda: block.RMSNorm(4, eps=-1.0), Err("eps"))
        add("RMSNorm int x", lambda: rms(torch.ones(2, C, dtype=torch.long)), Err("x"))
        add("RMSNorm wrong C", lambda: rms(torch.ones(2, 3)), Err("x"))
        add("RMSNorm = nn.RMSNorm", lambda: rms(XC).detach(), Ref(lambda: nn.RMSNorm(C, eps=rms.eps)(XC).detach()))
        add("RMSNorm NaN", lambda: rms(nan_at(XC, 0, 0, 0)).detach(), Ref(lambda: nn.RMSNorm(C, eps=rms.eps)(nan_at(XC, 0, 0, 0)).detach()))
    if _has(block, "SwiGLU"):
        sw = block.SwiGLU(C)
        add("SwiGLU d_model=0", lambda: block.SwiGLU(0), Err("d_model"))
        add("SwiGLU hidden=-1", lambda: block.SwiGLU(4, hidden=-1), Err("hidden"))
        add("SwiGLU dropout=1.5", lambda: block.SwiGLU(4, dropout=1.5), Err("dropout"))
        add("SwiGLU int x", lambda: sw(torch.ones(2, C, dtype=torch.long)), Err("x"))
        add("SwiGLU wrong C", lambda: sw(torch.ones(2, 3)), Err("x"))
    if _has(generate, "window_logits"):
        wl = generate.window_logits
        add("window_logits learned positions", lambda: wl(GPT_M, IDS), Err("model"))
        add("window_logits float idx", lambda: wl(GPT_ROPE, IDS.float()), Err("idx"))
        add("window_logits window=0", lambda: wl(GPT_ROPE, IDS, 0), Err("window"))
        add("window_logits window > block", lambda: wl(GPT_ROPE, IDS, BLK + 1), Err("window"))
        add("window_logits idx = V", lambda: wl(GPT_ROPE, torch.tensor([[V]])), Err("idx"))
        add("window_logits = forward inside the window", lambda: wl(GPT_ROPE, IDS), Ref(lambda: GPT_ROPE(IDS)[0][:, -1]))
        long = torch.randint(0, V, (2, 2 * BLK), generator=gen())
        add("generate rolls past the context: cached = uncached",
            lambda: generate.generate(GPT_ROPE, long, 4, generator=gen()),
            Ref(lambda: generate.generate(GPT_ROPE, long, 4, generator=gen(), use_cache=False)))
        add("generate long prompt with idx = V", lambda: generate.generate(GPT_ROPE, torch.cat([long, torch.tensor([[V]] * 2)], 1), 2),
            Err("idx"))
    if _has(generate, "generate_text"):
        gt = generate.generate_text
        char = tokenizers.CharTokenizer("abcdefghijk")
        add("generate_text prompt ''", lambda: gt(GPT_M, char, "", 2), Err("prompt"))
        add("generate_text prompt None", lambda: gt(GPT_M, char, None, 2), Err("prompt"))
        add("generate_text max_new_tokens -1", lambda: gt(GPT_M, char, "ab", -1), Err("max_new_tokens"))
        add("generate_text top_p 1.5", lambda: gt(GPT_M, char, "ab", 2, top_p=1.5), Err("top_p"))
        add("generate_text unknown char", lambda: gt(GPT_M, char, "az", 2), Err("s", "prompt"))
    if _has(efficient, "causal_linear_attention"):
        cla = efficient.causal_linear_attention
        fq, fk, vv = torch.rand(2, 5, 3), torch.rand(2, 5, 3), torch.randn(2, 5, 4)
        add("causal_linear_attention int v", lambda: cla(fq, fk, vv.long()), Err("v"))
        add("causal_linear_attention T mismatch", lambda: cla(fq, fk[:, :4], vv), Err("fk", "fq"))
        add("causal_linear_attention m mismatch", lambda: cla(fq, fk[..., :2], vv), Err("fk", "fq"))
        add("causal_linear_attention list fq", lambda: cla([[1.0]], fk, vv), Err("fq"))
        add("causal_linear_attention NaN", lambda: cla(nan_at(fq, 0, 2, 0), fk, vv)[0, 2].isnan().all().item(), Ref(lambda: True))
    if _has(efficient, "LinearAttentionRNN"):
        def second_step(fq, fk, v):
            r = efficient.LinearAttentionRNN()
            r.step(torch.rand(2, 3), torch.rand(2, 3), torch.randn(2, 4))
            return r.step(fq, fk, v)
        add("LinearAttentionRNN.step int fq", lambda: efficient.LinearAttentionRNN().step(torch.ones(3, dtype=torch.long), torch.rand(3), torch.rand(4)), Err("fq"))
        add("LinearAttentionRNN.step m mismatch", lambda: efficient.LinearAttentionRNN().step(torch.rand(3), torch.rand(2), torch.rand(4)), Err("fk", "fq"))
        add("LinearAttentionRNN.step other width later", lambda: second_step(torch.rand(2, 3), torch.rand(2, 3), torch.randn(2, 5)), Err("v"))
    if _has(interpret, "induction_score"):
        w4 = torch.softmax(torch.randn(2, 2, 6, 6), -1)
        add("induction_score period=0", lambda: interpret.induction_score(w4, 0), Err("period"))
        add("induction_score period=6", lambda: interpret.induction_score(w4, 6), Err("period"))
        add("induction_score int weights", lambda: interpret.induction_score(w4.long(), 2), Err("weights"))
        add("induction_score (6, 5)", lambda: interpret.induction_score(w4[..., :5], 2), Err("weights"))
    if _has(interpret, "attention_by_offset"):
        w4 = torch.softmax(torch.randn(2, 2, 6, 6), -1)
        add("attention_by_offset -1", lambda: interpret.attention_by_offset(w4, -1), Err("max_offset"))
        add("attention_by_offset 1.5", lambda: interpret.attention_by_offset(w4, 1.5), Err("max_offset"))
        add("attention_by_offset int weights", lambda: interpret.attention_by_offset(w4.long(), 1), Err("weights"))
    if _has(interpret, "capture_heads", "patch_heads"):
        add("capture_heads str", lambda: _enter(interpret.capture_heads("gpt")), Err("model"))
        add("patch_heads (0, 9)", lambda: _enter(interpret.patch_heads(GPT_M, [None], {(0, 9)})), Err("heads"))
        add("patch_heads (0.0, 1)", lambda: _enter(interpret.patch_heads(GPT_M, [None], {(0.0, 1)})), Err("heads"))
        def patched_run(source):
            with interpret.patch_heads(GPT_M, source, {(0, 1)}):
                return GPT_M(IDS)
        add("patch_heads source str", lambda: patched_run("x"), Err("source"))
        add("patch_heads source []", lambda: patched_run([]), Err("source"))
        add("patch_heads source of another shape", lambda: patched_run([torch.zeros(1, 2, 2, 4)]), Err("source"))
    return cs


def _enter(cm):
    with cm as got:
        return got


FAKE_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def _load_offline(**kwargs):
    """load_tinyshakespeare with a small text already in a fresh cache (its checksum passed as sha256), and
    an address nobody answers: no network is needed, the good call returns the text."""
    import hashlib
    import tempfile

    saved = {k: os.environ.pop(k, None) for k in (data.ENV_FILE, data.ENV_CACHE)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ[data.ENV_CACHE] = tmp
            (Path(tmp) / data.FILENAME).write_text(FAKE_TEXT)
            kwargs.setdefault("url", "http://127.0.0.1:9/tinyshakespeare.txt")
            kwargs.setdefault("sha256", hashlib.sha256(FAKE_TEXT.encode()).hexdigest())
            return data.load_tinyshakespeare(**kwargs)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def _load_unreadable_cache():
    """A cache folder this process may not read (simulated: the tests may run as root)."""
    real = Path.is_file

    def is_file(self):
        if data.FILENAME in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    Path.is_file = is_file
    try:
        return _load_offline()
    finally:
        Path.is_file = real


# --- the rule-based sweep -----------------------------------------------------------------------------

ZERO_D, MINUS1, MASK79 = torch.tensor(1.0), torch.full((2, 3), -1), torch.ones(7, 9, dtype=torch.bool)

# Values of the wrong kind, per kind of argument. Each replaces one argument of a good call in turn.
BAD = {
    "size": [-1, 2.5, "3", None, NAN, True],  # an int ≥ 1
    "count": [-1, 2.5, "3", None, NAN],  # an int ≥ 0
    "prob": [-0.1, 1.5, NAN, "0.1", None],  # a float in [0, 1)
    "pos": [0.0, -1.0, NAN, INF, "1", None],  # a float > 0
    "floats": ["x", 3, torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 3, 4, dtype=torch.bool),
               ZERO_D],  # a float tensor
    "ids": [torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), "x", torch.zeros(2, 3, dtype=torch.long, device=META),
            MINUS1, torch.zeros(3, dtype=torch.long)],  # an integer (B, T) tensor of ids
    "module": ["x", 3, None],
    "generator": ["g", 3],
    "str": [3, None, b"x"],
    "choice": ["nope", 3, None],
    "fdtype": ["float32", torch.long, None],
}


@dataclass
class Spec:
    name: str
    fn: Callable
    good: dict
    kinds: dict[str, str]
    skip: dict[str, list] = field(default_factory=dict)  # values of a kind this argument accepts


def _specs() -> list[Spec]:
    ids4 = torch.randint(0, V, (2, 4), generator=gen())
    src, tgt_in, tgt_out = encdec.digit_batch(2, gen())
    w = efficient.draw_projection(8, 4, generator=gen())
    x4 = torch.randn(1, 2, 3, 4)
    return [
        Spec("softmax", attention.softmax, dict(x=X, dim=-1), dict(x="floats", dim="dim"), skip={"x": [ZERO_D]}),
        Spec("soft_lookup", attention.soft_lookup, dict(query=torch.randn(4), keys=torch.randn(5, 4), values=torch.randn(5, 3)),
             dict(query="floats", keys="floats", values="floats")),
        Spec("scaled_dot_product_attention", attention.scaled_dot_product_attention, dict(q=Q, k=K, v=Vv),
             dict(q="floats", k="floats", v="floats")),
        Spec("causal_mask", attention.causal_mask, dict(T=3), dict(T="count")),
        Spec("padding_mask", attention.padding_mask, dict(lengths=[1, 2], S=3), dict(S="count", lengths="lengths")),
        Spec("as_additive", attention.as_additive, dict(mask=torch.ones(2, dtype=torch.bool), dtype=torch.float32),
             dict(mask="mask", dtype="fdtype"), skip={"mask": [MASK79]}),
        Spec("combine_masks", attention.combine_masks, dict(a=torch.ones(2, dtype=torch.bool), b=torch.ones(2, dtype=torch.bool)),
             dict(a="mask", b="mask")),
        Spec("split_heads", multihead.split_heads, dict(x=XC, n_heads=2), dict(x="tensor", n_heads="size")),
        Spec("merge_heads", multihead.merge_heads, dict(x=x4), dict(x="tensor")),
        Spec("KVCache", multihead.KVCache, dict(max_len=4), dict(max_len="size"), skip={"max_len": [None]}),
        Spec("KVCache.append", lambda k, v: multihead.KVCache(4).append(k, v), dict(k=x4, v=x4), dict(k="floats", v="floats")),
        Spec("MultiHeadAttention", multihead.MultiHeadAttention, dict(d_model=8, n_heads=2, dropout=0.1),
             dict(d_model="size", n_heads="size", dropout="prob", impl="choice", rotary="module"), skip={"rotary": [None]}),
        Spec("MultiHeadAttention.forward", MHA, dict(x=XC), dict(x="floats", context="floats", mask="mask", cache="cache"),
             skip={"context": [None]}),
        Spec("sinusoidal_encoding", positions.sinusoidal_encoding, dict(T=4, d_model=4),
             dict(T="count", d_model="count", base="pos", dtype="fdtype")),
        Spec("SinusoidalPositions", positions.SinusoidalPositions, dict(max_positions=4, d_model=4),
             dict(max_positions="size", d_model="size")),
        Spec("SinusoidalPositions.forward", SIN, dict(T=2, offset=1), dict(T="count", offset="count")),
        Spec("LearnedPositions", positions.LearnedPositions, dict(max_positions=4, d_model=4),
             dict(max_positions="size", d_model="size")),
        Spec("LearnedPositions.forward", LEARNED, dict(T=2, offset=1), dict(T="count", offset="count")),
        Spec("RotaryEmbedding", positions.RotaryEmbedding, dict(head_size=4, max_positions=8),
             dict(head_size="size", max_positions="size", base="pos")),
        Spec("RotaryEmbedding.forward", ROT, dict(x=x4, offset=1), dict(x="floats", offset="count")),
        Spec("LayerNorm", block.LayerNorm, dict(d_model=4), dict(d_model="size", eps="pos"), skip={"eps": [0.0]}),
        Spec("LayerNorm.forward", LN, dict(x=XC), dict(x="floats")),
        Spec("make_norm", block.make_norm, dict(kind="layernorm", d_model=4), dict(kind="choice", d_model="size")),
        Spec("MLP", block.MLP, dict(d_model=4), dict(d_model="size", dropout="prob")),
        Spec("MLP.forward", MLP_, dict(x=XC), dict(x="floats")),
        Spec("Block", block.Block, dict(d_model=8, n_heads=2), dict(d_model="size", n_heads="size", dropout="prob",
                                                                    norm="choice", impl="choice", rotary="module"),
             skip={"rotary": [None]}),
        Spec("Block.forward", BLOCK, dict(x=XC), dict(x="floats", mask="mask", cache="cache")),
        Spec("CharTokenizer", tokenizers.CharTokenizer, dict(text="abc"), dict(text="str")),
        Spec("CharTokenizer.encode", CHAR.encode, dict(s="ab"), dict(s="str")),
        Spec("CharTokenizer.decode", CHAR.decode, dict(ids=[0, 1]), dict(ids="idlist")),
        Spec("get_pair_counts", tokenizers.get_pair_counts, dict(ids=[1, 2, 3]), dict(ids="idlist", weight="size")),
        Spec("merge", tokenizers.merge, dict(ids=[1, 2, 3], pair=(1, 2), new_id=9), dict(ids="idlist", pair="pair", new_id="count")),
        Spec("BPETokenizer", tokenizers.BPETokenizer, dict(merges=[(104, 105)]), dict(merges="pairs", pattern="str"),
             skip={"pattern": [None]}),
        Spec("BPETokenizer.train", tokenizers.BPETokenizer.train, dict(text="aab aab", vocab_size=258),
             dict(text="str", vocab_size="size", pattern="str"), skip={"pattern": [None]}),
        Spec("BPETokenizer.encode", BPE.encode, dict(s="the"), dict(s="str")),
        Spec("BPETokenizer.decode", BPE.decode, dict(ids=[104]), dict(ids="idlist", errors="str")),
        Spec("BPETokenizer.token_str", BPE.token_str, dict(i=104), dict(i="count")),
        Spec("train_val_split", data.train_val_split, dict(data=torch.arange(10)), dict(data="ids1", train_fraction="prob")),
        Spec("get_batch", data.get_batch, dict(data=torch.arange(50), batch_size=2, block_size=4),
             dict(data="ids1", batch_size="count", block_size="size", generator="generator", device="device"),
             skip={"generator": [None]}),
        Spec("load_tinyshakespeare", _load_offline, dict(), dict(url="str", sha256="str", timeout="pos")),
        Spec("GPT", lambda **kw: model.GPT(model.GPTConfig(**{**dict(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4), **kw})),
             dict(), dict(vocab_size="size", block_size="size", n_layer="count", n_head="size", n_embd="size",
                          dropout="prob", attn_impl="choice", pos_emb="choice", norm="choice")),
        Spec("GPT.forward", GPT_M, dict(idx=ids4), dict(idx="ids", targets="ids", caches="caches"), skip={"targets": [None]}),
        Spec("top_k_filter", generate.top_k_filter, dict(logits=LOGITS, k=2), dict(logits="floats", k="size")),
        Spec("top_p_filter", generate.top_p_filter, dict(logits=LOGITS, p=0.5), dict(logits="floats", p="prob")),
        Spec("sample_next", generate.sample_next, dict(logits=LOGITS), dict(logits="floats", temperature="temp",
                                                                           top_k="size", top_p="prob", generator="generator"),
             skip={"top_k": [None], "top_p": [None], "generator": [None]}),
        Spec("generate", generate.generate, dict(model=GPT_M, idx=ids4, max_new_tokens=2),
             dict(model="module", idx="ids", max_new_tokens="count", temperature="temp", top_k="size", top_p="prob",
                  generator="generator"), skip={"top_k": [None], "top_p": [None], "generator": [None]}),
        Spec("EncoderDecoder", lambda **kw: encdec.EncoderDecoder(encdec.EncDecConfig(**{**dict(d_model=8, n_heads=2), **kw})),
             dict(), dict(vocab_size="size", d_model="size", n_heads="size", n_enc_layers="count", n_dec_layers="count",
                          max_len="size", pad_id="count")),
        Spec("EncoderDecoder.forward", ED, dict(src=src, tgt_in=tgt_in), dict(src="ids", tgt_in="ids")),
        Spec("DecoderBlock", encdec.DecoderBlock, dict(d_model=8, n_heads=2), dict(d_model="size", n_heads="size")),
        Spec("DecoderBlock.forward", DEC_BLOCK, dict(x=XC, memory=XC), dict(x="floats", memory="floats", memory_mask="mask")),
        Spec("is_held_out", encdec.is_held_out, dict(digits=torch.tensor([[1, 2, -1]])), dict(digits="ids"),
             skip={"digits": [MINUS1]}),
        Spec("digit_batch", encdec.digit_batch, dict(batch_size=2, generator=gen()),
             dict(batch_size="size", generator="generator", task="choice", split="choice", min_len="size", max_len="size")),
        Spec("to_digits", encdec.to_digits, dict(ids=torch.tensor([3, 4, 2])), dict(ids="ids1")),
        Spec("greedy_decode", encdec.greedy_decode, dict(model=ED, src=src, steps=2), dict(model="module", src="ids", steps="count")),
        Spec("exact_match", encdec.exact_match, dict(model=ED, src=src, tgt_out=tgt_out),
             dict(model="module", src="ids", tgt_out="ids")),
        Spec("train_seq2seq", encdec.train_seq2seq, dict(model=ED, steps=0),
             dict(model="module", steps="count", batch_size="size", lr="pos", seed="seed", task="choice", warmup="size")),
        Spec("online_softmax", efficient.online_softmax, dict(x=X), dict(x="floats", dim="dim", block_size="size")),
        Spec("tiled_attention", efficient.tiled_attention, dict(q=Q, k=K, v=Vv),
             dict(q="floats", k="floats", v="floats", block_size="size")),
        Spec("draw_projection", efficient.draw_projection, dict(num_features=4, d=4),
             dict(num_features="size", d="size", generator="generator", dtype="fdtype"), skip={"generator": [None]}),
        Spec("positive_random_features", efficient.positive_random_features, dict(x=Q, w=w), dict(x="floats", w="floats")),
        Spec("performer_attention", efficient.performer_attention, dict(q=Q, k=K, v=Vv, w=w),
             dict(q="floats", k="floats", v="floats", w="floats")),
        Spec("sdpa_ops", efficient.sdpa_ops, dict(q=Q, k=K, v=Vv), dict(q="floats", k="floats", v="floats")),
        Spec("attention_layers", interpret.attention_layers, dict(model=GPT_M), dict(model="module")),
        Spec("capture_attention", lambda **kw: _enter(interpret.capture_attention(**kw)), dict(model=GPT_M), dict(model="module")),
        Spec("ablate_heads", lambda **kw: _enter(interpret.ablate_heads(**kw)), dict(model=GPT_M, heads=[(0, 1)]),
             dict(model="module", heads="pairs")),
        Spec("head_score", interpret.head_score, dict(weights=torch.softmax(torch.randn(2, 2, 4, 4), -1),
                                                    targets=torch.ones(4, 4, dtype=torch.bool)),
             dict(weights="floats", targets="mask")),
        Spec("uniform_causal_weights", interpret.uniform_causal_weights, dict(B=2, T=3), dict(B="count", T="count")),
        Spec("previous_token_targets", interpret.previous_token_targets, dict(T=3), dict(T="count")),
        Spec("line_start_targets", interpret.line_start_targets, dict(tokens=ids4, newline=0),
             dict(tokens="ids", newline="count"), skip={"tokens": [MINUS1]}),
        Spec("speaker_targets", interpret.speaker_targets, dict(tokens=ids4, newline=0, colon=1),
             dict(tokens="ids", newline="count", colon="count"), skip={"tokens": [MINUS1]}),
    ]


# kinds that only this sweep uses
BAD.update({
    "dim": [5, -5, 1.0, "x", None],
    "temp": [-1.0, NAN, INF, "1", None],
    "seed": ["x", 1.5, None],
    "device": ["nope", 3],
    "cache": ["x", [], 3],
    "caches": ["x", [], 3],
    "mask": ["x", [[True]], torch.ones(2, 3, dtype=torch.long), MASK79],
    "lengths": ["ab", [1.5], [[1]], [-1], [4]],
    "ids1": ["x", torch.zeros(5), torch.zeros(5, dtype=torch.bool), torch.zeros(1, 5, dtype=torch.long),
             torch.zeros(5, dtype=torch.long, device=META)],
    "idlist": [None, 3, [1.5], ["a"], [-1], torch.zeros(2), torch.zeros(1, 2, dtype=torch.long)],
    "pair": [3, (1, 2, 3), (1.0, 2), None, "ab"],
    "pairs": [3, [1, 2], [(1, 2, 3)], [(1.0, 2)], None],
    "tensor": ["x", 3, [[1.0]], None],
})


def _sweep_cases() -> list[Case]:
    cases = []
    for spec in _specs():
        cases.append(Case(f"{spec.name} good call", lambda s=spec: s.fn(**s.good), Ref(pred=lambda r: True)))
        for arg, kind in spec.kinds.items():
            for bad in BAD[kind]:
                if any(bad is ok or (type(bad) is type(ok) and not isinstance(bad, torch.Tensor) and bad == ok)
                       for ok in spec.skip.get(arg, [])):
                    continue
                cases.append(Case(f"{spec.name}({arg}={_short(bad)})",
                                  lambda s=spec, a=arg, b=bad: s.fn(**{**s.good, a: b}), Err(arg)))
    return cases


def elsewhere_cases() -> list[Case]:
    """The rest of kqvlib's top level (precision, train, pretrained, seed): ``python tests/test_api_sweep.py
    elsewhere`` prints them, and :func:`test_the_rest_of_the_top_level_is_clear` asserts them."""
    import kqvlib
    precision, train_mod = importlib.import_module("kqvlib.precision"), importlib.import_module("kqvlib.train")

    d = torch.arange(200) % V
    cfg = train_mod.TrainConfig(max_steps=1, batch_size=2, eval_interval=1, eval_iters=1, progress=False)
    bad_cfg = lambda **kw: train_mod.TrainConfig(**{**cfg.__dict__, **kw})  # noqa: E731
    cs = [
        Case("pick_device", lambda: kqvlib.pick_device().type in ("cpu", "cuda", "mps"), Ref(lambda: True)),
        Case("autocast('cpu') str", lambda: _enter(kqvlib.autocast("cpu")), Ref(lambda: None)),
        Case("autocast(3)", lambda: _enter(kqvlib.autocast(3)), Err("device")),
        Case("plan('tpu')", lambda: kqvlib.plan("tpu"), Err("device_kind")),
        Case("plan(None)", lambda: kqvlib.plan(None), Err("device_kind")),
        Case("plan_here", lambda: isinstance(kqvlib.plan_here(), precision.Plan), Ref(lambda: True)),
        Case("seed_everything('x')", lambda: kqvlib.seed_everything("x"), Err("seed")),
        Case("seed_everything(-1)", lambda: kqvlib.seed_everything(-1), Err("seed")),
        Case("evaluate float data", lambda: kqvlib.evaluate(GPT_M, d.float()), Err("data")),
        Case("evaluate batch_size 0", lambda: kqvlib.evaluate(GPT_M, d, batch_size=0), Err("batch_size")),
        Case("evaluate data = V", lambda: kqvlib.evaluate(GPT_M, d + V), Err("data", "idx")),
        Case("evaluate 2-D data", lambda: kqvlib.evaluate(GPT_M, d.view(10, 20)), Err("data")),
        Case("train max_steps 0", lambda: kqvlib.train(GPT_M, d, d, bad_cfg(max_steps=0)), Err("max_steps")),
        Case("train eval_iters 0", lambda: kqvlib.train(GPT_M, d, d, bad_cfg(eval_iters=0)), Err("eval_iters")),
        Case("train lr nan", lambda: kqvlib.train(GPT_M, d, d, bad_cfg(lr=NAN)), Err("lr")),
        Case("train grad_clip -1", lambda: kqvlib.train(GPT_M, d, d, bad_cfg(grad_clip=-1.0)), Err("grad_clip")),
        Case("train optimizer", lambda: kqvlib.train(GPT_M, d, d, bad_cfg(optimizer="sgd")), Err("optimizer")),
        Case("train float data", lambda: kqvlib.train(GPT_M, d.float(), d, cfg), Err("train_data")),
        Case("train resume without a file", lambda: kqvlib.train(GPT_M, d, d, cfg, checkpoint_path="/nonexistent/x.pt",
                                                                 resume=True), Err("resume", "checkpoint_path")),
        Case("load_checkpoint missing", lambda: kqvlib.load_checkpoint("/nonexistent/x.pt", GPT_M), Err("path")),
        Case("save_checkpoint model str", lambda: kqvlib.save_checkpoint("/tmp/kqv_sweep.pt", "m", None, 0, {}), Err("model")),
        Case("pretrained_gpt missing", lambda: kqvlib.pretrained_gpt("/nonexistent/w.pt"), Err("weights")),
    ]
    return cs


def all_cases() -> list[Case]:
    return _hand_cases() + _sweep_cases()


def run_sweep() -> list[tuple[str, str, str]]:
    torch.manual_seed(0)
    return [(c.label, *judge(c)) for c in all_cases()]


@pytest.fixture(scope="module")
def sweep():
    return run_sweep()


def test_good_calls_run(sweep):
    bad = [(label, detail) for label, outcome, detail in sweep if label.endswith("good call") and outcome != "fine"]
    assert not bad, bad


def test_no_silent_wrong_results(sweep):
    silent = [(label, detail) for label, outcome, detail in sweep if outcome == "silent"]
    assert not silent, "\n".join(f"{label}: {detail}" for label, detail in silent)


def test_errors_name_the_argument(sweep):
    unclear = [(label, detail) for label, outcome, detail in sweep if outcome == "unclear"]
    assert len(unclear) <= 0.05 * len(sweep), "\n".join(f"{label}: {detail}" for label, detail in unclear)
    assert not unclear, "\n".join(f"{label}: {detail}" for label, detail in unclear)


def test_the_rest_of_the_top_level_is_clear():
    results = [(c.label, *judge(c)) for c in elsewhere_cases()]
    bad = [f"{label}: {outcome}: {detail}" for label, outcome, detail in results if outcome in ("silent", "unclear")]
    assert not bad, "\n".join(bad)


def test_the_sweep_covers_the_public_api():
    """Every public function and class of these modules (and kqvlib's top level from them) is called."""
    labels = " ".join(c.label for c in all_cases())
    mods = [attention, multihead, positions, block, tokenizers, data, model, generate, encdec, efficient, interpret,
            explorer]
    missing = []
    for mod in mods:
        names = getattr(mod, "__all__", None) or [n for n, o in vars(mod).items()
                                                  if not n.startswith("_") and getattr(o, "__module__", None) == mod.__name__]
        for n in names:
            obj = getattr(mod, n)
            if not callable(obj) or isinstance(obj, type) and issubclass(obj, Exception):
                continue
            if n in ("GPTConfig", "EncDecConfig", "cache_dir", "load_dataset"):  # plain dataclasses; no arguments
                continue
            if not re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", labels):
                missing.append(f"{mod.__name__}.{n}")
    assert not missing, f"not swept: {missing}"


if __name__ == "__main__":
    if sys.argv[1:] == ["elsewhere"]:
        for c in elsewhere_cases():
            outcome, detail = judge(c)
            print(f"[{outcome}] {c.label}: {detail}")
        sys.exit()
    results = run_sweep()
    counts = Counter(outcome for _, outcome, _ in results)
    print(f"{len(results)} calls: " + ", ".join(f"{counts[k]} {k}" for k in ("silent", "unclear", "clear", "fine")))
    show = set(sys.argv[1:]) or {"silent", "unclear"}
    for label, outcome, detail in results:
        if outcome in show:
            print(f"[{outcome}] {label}: {detail}")

"""Chapter 6 checker for ``multi_head_attention(x, W_q, W_k, W_v, W_o, n_heads)``, built on the split,
merge and sizes of :mod:`kqvlib.exercises.ch06.heads`. The chapter's docstring is in
:mod:`kqvlib.exercises.ch06`.
"""
from __future__ import annotations

import itertools
import math

import torch

from kqvlib.attention import causal_mask, softmax
from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.ch06.heads import F64, OTHER, SIZES, _explain, _merge, _split
from kqvlib.exercises.common import Parts, attention_mistakes, attention_property, order_mistakes

SQUARE = dict(B=2, T=3, H=3, hs=3)  # T = H = hs: a forgotten transpose still runs, so it can be named


def _sizes(x: torch.Tensor, H: int) -> str:
    B, T, C = x.shape
    return f"B={B}, T={T}, C={C}, H={H}, so hs = C // H = {C // H}"


# --- multi_head_attention(x, W_q, W_k, W_v, W_o, n_heads) ---------------------------------------------------

def _mha_inputs(size):
    def make(g):
        B, T, H, hs = size["B"], size["T"], size["H"], size["hs"]
        C = H * hs
        x = torch.randn(B, T, C, generator=g, dtype=F64)
        # 1.3/√C: each head's scores then have a spread of about one, neither uniform nor one-hot weights
        Ws = [torch.randn(C, C, generator=g, dtype=F64) * (1.3 / math.sqrt(C)) for _ in range(3)]
        W_o = torch.randn(C, C, generator=g, dtype=F64) / math.sqrt(C)
        return (x, *Ws, W_o, H)
    return make


def _heads(x, W_q, W_k, W_v, H):  # q, k, v: 3 × (B, H, T, hs)
    return _split(x @ W_q, H), _split(x @ W_k, H), _split(x @ W_v, H)


def _attend(q, k, v, dim=-1, mask=None):  # (B, H, T, hs)
    s = q @ k.mT / math.sqrt(q.shape[-1])  # (B, H, T, T)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return softmax(s, dim=dim) @ v


def _mha(x, W_q, W_k, W_v, W_o, H):
    return _merge(_attend(*_heads(x, W_q, W_k, W_v, H))) @ W_o  # (B, T, C)


def _to_parts(x, W_q, W_k, W_v, W_o, H):
    return Parts(*_heads(x, W_q, W_k, W_v, H), 1 / math.sqrt(x.shape[-1] // H), d_model=x.shape[-1])


def _no_transpose(x, W_q, W_k, W_v, W_o, H):  # split and merge by reshape alone
    B, T, C = x.shape
    q, k, v = ((x @ W).reshape(B, H, T, C // H) for W in (W_q, W_k, W_v))
    return _attend(q, k, v).reshape(B, T, C) @ W_o


def _split_no_transpose(x, W_q, W_k, W_v, W_o, H):
    B, T, C = x.shape
    q, k, v = ((x @ W).reshape(B, H, T, C // H) for W in (W_q, W_k, W_v))
    return _merge(_attend(q, k, v)) @ W_o


def _merge_no_transpose(x, W_q, W_k, W_v, W_o, H):
    B, T, C = x.shape
    return _attend(*_heads(x, W_q, W_k, W_v, H)).reshape(B, T, C) @ W_o


def _hs_h(x, W_q, W_k, W_v, W_o, H):  # C split as (hs, H) and merged back the same way
    B, T, C = x.shape
    q, k, v = ((x @ W).reshape(B, T, C // H, H).permute(0, 3, 1, 2) for W in (W_q, W_k, W_v))
    return _attend(q, k, v).permute(0, 2, 3, 1).reshape(B, T, C) @ W_o


def _heads_never_moved(x, W_q, W_k, W_v, W_o, H):  # q, k, v left as (B, T, H, hs): heads attend to heads
    B, T, C = x.shape
    q, k, v = ((x @ W).view(B, T, H, C // H) for W in (W_q, W_k, W_v))  # (B, T, H, hs)
    return _attend(q, k, v).reshape(B, T, C) @ W_o


def _one_head(x, W_q, W_k, W_v, W_o, H):
    return _attend(x @ W_q, x @ W_k, x @ W_v) @ W_o


def _causal(x, W_q, W_k, W_v, W_o, H):
    return _merge(_attend(*_heads(x, W_q, W_k, W_v, H), mask=causal_mask(x.shape[1]))) @ W_o


def _heads_reversed(x, W_q, W_k, W_v, W_o, H):
    return _merge(_attend(*_heads(x, W_q, W_k, W_v, H)).flip(1)) @ W_o


def _replace(i, f):  # _mha with one of (x, W_q, W_k, W_v, W_o) replaced by f(args)
    def wrong(*a):
        a = list(a)
        a[i] = f(*a)
        return _mha(*a)
    return wrong


_MHA_MISTAKES = [
    Mistake("no transpose", _no_transpose,
            "you reshaped (B, T, C) straight to (B, H, T, hs) (and back at the end). The shapes fit, but a "
            "reshape keeps the memory order, so each head got a run of whole positions instead of its slice "
            "of the features. Split with .view(B, T, H, hs).transpose(1, 2); merge with "
            ".transpose(1, 2).reshape(B, T, C)."),
    Mistake("split without transpose", _split_no_transpose,
            "your merge is right but your split is not: (B, T, C) → (B, H, T, hs) needs "
            ".view(B, T, H, hs).transpose(1, 2), not a reshape straight to (B, H, T, hs), which mixes positions."),
    Mistake("merge without transpose", _merge_no_transpose,
            "your split is right but your merge is not: (B, H, T, hs) → (B, T, C) needs .transpose(1, 2) "
            "before .reshape(B, T, C). Without it, each output row mixes positions."),
    Mistake("heads never moved", _heads_never_moved,
            "there is no transpose anywhere: your q, k and v stay (B, T, H, hs), so the last two axes are "
            "(H, hs) and each position's heads attend to each other (scores (B, T, H, H)) instead of positions "
            "to positions. Move the head axis in front of T after the split, .view(B, T, H, hs).transpose(1, "
            "2) → (B, H, T, hs), and back before merging, .transpose(1, 2).reshape(B, T, C)."),
    Mistake("split as (hs, H)", _hs_h,
            "you split C as (hs, H), so head h got every H-th feature. Each head owns a consecutive slice of "
            "the features: .view(B, T, H, hs), heads first, and merge back in the same order."),
    Mistake("no W_O", lambda x, W_q, W_k, W_v, W_o, H: _merge(_attend(*_heads(x, W_q, W_k, W_v, H))),
            "you returned the heads side by side without the output projection. Multiply by W_O last: "
            "merged (B, T, C) @ W_o."),
    Mistake("W_O transposed", _replace(4, lambda x, W_q, W_k, W_v, W_o, H: W_o.T),
            "you multiplied by W_o.T. These matrices act as x @ W (shape (C_in, C_out)); it is nn.Linear "
            "that stores its weight transposed. Use merged @ W_o."),
    Mistake("weights transposed",
            lambda x, W_q, W_k, W_v, W_o, H: _mha(x, W_q.T, W_k.T, W_v.T, W_o.T, H),
            "you multiplied by the transposed matrices (x @ W.T, nn.Linear's habit). Here every W is "
            "(C_in, C_out) and acts as x @ W."),
    Mistake("heads reversed", _heads_reversed,
            "you concatenated the heads in reverse order. Head h's output goes to features h·hs … "
            "(h+1)·hs − 1, head 0 first, where W_O's rows for it are."),
    Mistake("one big head", _one_head,
            "you ran a single head over all C features. Split q, k and v into H heads of hs = C // n_heads "
            "features each, attend in each head, then merge."),
    Mistake("keys from W_q", _replace(2, lambda x, W_q, W_k, W_v, W_o, H: W_q),
            "your keys are x @ W_q: the keys come from W_k."),
    Mistake("values from W_k", _replace(3, lambda x, W_q, W_k, W_v, W_o, H: W_k),
            "your values are x @ W_k: the values come from W_v."),
    Mistake("values not projected", lambda x, W_q, W_k, W_v, W_o, H: _merge(_attend(
                _split(x @ W_q, H), _split(x @ W_k, H), _split(x, H))) @ W_o,
            "your values are slices of x itself. Project them first: v = x @ W_v, then split into heads."),
    Mistake("causal mask", _causal,
            "you masked the future, but this exercise has no mask: every position attends to every position."),
    Mistake("softmax over heads", lambda x, W_q, W_k, W_v, W_o, H: _merge(_attend(
                *_heads(x, W_q, W_k, W_v, H), dim=1)) @ W_o,
            "your softmax runs over dim=1, the heads, mixing different heads' scores. Each query's weights "
            "are a distribution over the keys: dim=-1."),
]

_SCALE_HINT = ("you scaled the scores by √d_model = √C. Each head's dot products have only hs = C // n_heads "
               "terms, so divide by √hs: math.sqrt(q.shape[-1]) after the split.")


def _shared_mistakes() -> list[Mistake]:
    """The attention slips every chapter's checker names, applied inside every head, then merge and W_O."""
    out = []
    for m in attention_mistakes(_to_parts):
        hint = _SCALE_HINT if m.key == "√d_model" else "inside each head, " + m.hint
        out.append(Mistake(m.key, lambda *a, f=m.fn: _merge(f(*a)) @ a[4], hint))
    return out


def _k_not_moved(x, W_q, W_k, W_v, W_o, H):  # only runs when T = H
    B, T, C = x.shape
    q, _, v = _heads(x, W_q, W_k, W_v, H)
    return _merge(_attend(q, (x @ W_k).reshape(B, T, H, C // H), v)) @ W_o


def _v_not_moved(x, W_q, W_k, W_v, W_o, H):
    B, T, C = x.shape
    q, k, _ = _heads(x, W_q, W_k, W_v, H)
    return _merge(_attend(q, k, (x @ W_v).reshape(B, T, H, C // H))) @ W_o


def _q_not_moved(x, W_q, W_k, W_v, W_o, H):
    B, T, C = x.shape
    _, k, v = _heads(x, W_q, W_k, W_v, H)
    return _merge(_attend((x @ W_q).reshape(B, T, H, C // H), k, v)) @ W_o


def _not_moved_hint(name):
    return (f"{name} kept its head axis after T, (B, T, H, hs), while the others are (B, H, T, hs), so the "
            f"products did not line up. Apply the same split to q, k and v: .view(B, T, H, hs).transpose(1, 2).")


_DIAGNOSE_MISTAKES = [
    Mistake("k not moved", _k_not_moved, _not_moved_hint("k")),
    Mistake("v not moved", _v_not_moved, _not_moved_hint("v")),
    Mistake("q not moved", _q_not_moved, _not_moved_hint("q")),
] + [Mistake(m.key, lambda *a, f=m.fn: _merge(f(*a)) @ a[4], "inside each head, " + m.hint)
     for m in order_mistakes(_to_parts)]


def _through_w_o() -> Property:
    """Undo W_O and look at the heads: in another order, rearranged, or one head's attention wrong."""
    inner = attention_property(_to_parts)

    def test(args, got, expected):
        x, W_q, W_k, W_v, W_o, H = args
        if got.shape != expected.shape:
            return None
        B, T, C = x.shape
        W_inv = torch.linalg.inv(W_o)
        heads_got, heads_exp = _split(got @ W_inv, H), _split(expected @ W_inv, H)  # (B, H, T, hs)
        for p in itertools.permutations(range(H)):
            if list(p) != list(range(H)) and close(heads_got, heads_exp[:, list(p)]):
                return "heads permuted", (f"your heads are side by side in the order {list(p)}. Head h's output "
                                          f"goes to features h·hs … (h+1)·hs − 1: concatenate head 0 first.")
        merged = got @ W_inv  # (B, T, C): what your heads produced, side by side
        if close(merged.flatten().sort().values, (expected @ W_inv).flatten().sort().values):
            return "rearranged heads", ("the heads computed the right numbers, but your merge put them in the "
                                        "wrong places. Merge with .transpose(1, 2).reshape(B, T, C) before W_O.")
        found = inner.test(args, heads_got, heads_exp)
        if found and found[0] == "not a mix of values":
            return "heads not over positions", (
                "what your heads produced (your output times W_O⁻¹) is not a weighted mix of each head's value "
                "rows over the T positions: the attention ran over the wrong axes. Each head's q, k, v must be "
                "(B, H, T, hs), scores (B, H, T, T); check the transposes of the split and the merge.")
        if found:
            key, hint = found
            return key, "judging by what your heads produced (your output times W_O⁻¹): " + hint
        return None
    return Property("heads", test)


def check_multi_head_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x (B, T, C), W_q, W_k, W_v, W_o (C, C) each, n_heads) → (B, T, C):
    concat_h softmax(q_h k_hᵀ / √hs) v_h, then @ W_o, with q = x @ W_q split into heads (and k, v)."""
    shapes = f"Here {_sizes(torch.empty(SIZES['B'], SIZES['T'], SIZES['H'] * SIZES['hs']), SIZES['H'])}"
    return check(
        "multi_head_attention", fn, _mha,
        trials=[Trial(_mha_inputs(SIZES)),
                Trial(_mha_inputs(OTHER), "hard-coded size", "right for the first sizes, wrong for others "
                      f"(here n_heads={OTHER['H']}, C={OTHER['H'] * OTHER['hs']}): read B, T, C from x.shape and "
                      "use hs = C // n_heads, never a fixed number.")],
        mistakes=_MHA_MISTAKES + _shared_mistakes(), properties=[_through_w_o()],
        diagnose=Trial(_mha_inputs(SQUARE)), diagnose_mistakes=_DIAGNOSE_MISTAKES,
        explain=lambda e: _explain(e, shapes), seed=seed, quiet=quiet,
    )

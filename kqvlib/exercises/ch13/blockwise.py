"""Chapter 13's checker of blockwise attention: the values, the likely slips, and the method (no (T, S)
tensor may be made during the call)."""
from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode

from kqvlib.attention import scaled_dot_product_attention
from kqvlib.checks import CheckResult, Mistake, Property, Trial, check, close
from kqvlib.exercises.common import Parts, attention_property, explain_error

F64 = torch.float64


def _reference(q, k, v, block_size):
    return scaled_dot_product_attention(q, k, v)  # (..., T, d_v): what any block size must give


def _blocks(q, k, v, block_size, *, scale=None, rescale_acc=True, rescale_l=True, sign=1.0,
            divide_inside=False, divide_at_end=True, tail=True, overwrite=False, short=0):
    """The blockwise loop with one switch per slip (all defaults: the right answer). m starts at the first
    block's max, so that even a wrong-signed rescaling stays finite."""
    d, S = q.shape[-1], k.shape[-2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    stop = S if tail else S - S % block_size
    m = l = acc = None
    for j in range(0, stop, block_size):
        s = q @ k[..., j:j + block_size - short, :].mT * scale  # (..., T, b)
        m_new = s.amax(-1, keepdim=True) if m is None else torch.maximum(m, s.amax(-1, keepdim=True))
        a = torch.ones_like(m_new) if m is None else torch.exp(sign * (m - m_new))  # (..., T, 1)
        p = torch.exp(s - m_new)  # (..., T, b)
        pv = p @ v[..., j:j + block_size - short, :]  # (..., T, d_v)
        l = p.sum(-1, keepdim=True) if l is None else (a if rescale_l else 1.0) * l + p.sum(-1, keepdim=True)
        acc = pv if acc is None or overwrite else (a if rescale_acc else 1.0) * acc + pv
        if divide_inside:
            acc = acc / l
        m = m_new
    return acc / l if divide_at_end else acc


def _block_average(q, k, v, block_size):  # each block's own softmax, the blocks averaged
    outs = [scaled_dot_product_attention(q, k[..., j:j + block_size, :], v[..., j:j + block_size, :])
            for j in range(0, k.shape[-2], block_size)]
    return torch.stack(outs).mean(0)


def _last_block(q, k, v, block_size):  # only the last block's keys count
    j = (k.shape[-2] - 1) // block_size * block_size
    return scaled_dot_product_attention(q, k[..., j:, :], v[..., j:, :])


def _first_block(q, k, v, block_size):
    return scaled_dot_product_attention(q, k[..., :block_size, :], v[..., :block_size, :])


_COMBINE = ("When the running max grows from m to m_new, everything summed so far was computed with "
            "exp(s − m): multiply it by exp(m − m_new)")
_SLIPS = [
    ("acc not rescaled", lambda *a: _blocks(*a, rescale_acc=False),
     f"{_COMBINE} — you did that for the sum l but not for the output acc. Rescale both."),
    ("sum not rescaled", lambda *a: _blocks(*a, rescale_l=False),
     f"{_COMBINE} — you did that for the output acc but not for the sum l. Rescale both."),
    ("nothing rescaled", lambda *a: _blocks(*a, rescale_acc=False, rescale_l=False),
     f"{_COMBINE}, both the sum l and the output acc. You added each block's terms as they came, each "
     f"relative to a different max."),
    ("rescaled the wrong way", lambda *a: _blocks(*a, sign=-1.0),
     "you rescaled by exp(m_new − m). The old terms were exp(s − m); to express them relative to the new, "
     "larger max m_new multiply by exp(m − m_new) ≤ 1."),
    ("divided inside the loop", lambda *a: _blocks(*a, divide_inside=True, divide_at_end=False),
     "you divided acc by the running sum inside the loop, so the next block adds un-normalised terms to a "
     "normalised output. Keep acc un-normalised and divide by l once, after the last block."),
    ("divided twice", lambda *a: _blocks(*a, divide_inside=True, divide_at_end=True),
     "you divided by the running sum inside the loop and again at the end. Divide once, after the last block."),
    ("not divided", lambda *a: _blocks(*a, divide_at_end=False),
     "you returned acc = Σ exp(s − m) v without dividing by l = Σ exp(s − m): divide once, after the last "
     "block (acc / l), so each query's weights sum to 1."),
    ("blocks averaged", _block_average,
     "you took a softmax within each block and averaged the blocks, so a block of weak keys counts as much "
     "as a block of strong ones. Keep un-normalised running sums across blocks and divide once at the end."),
    ("only the last block", _last_block,
     "only the last block of keys counts: the earlier ones were wiped out. Did you forget m = m_new at the "
     "end of the loop (so m stays −inf and exp(m − m_new) = 0 every time), or reset l and acc inside it?"),
    ("acc overwritten", lambda *a: _blocks(*a, overwrite=True),
     "your acc holds only the last block's p @ v: you wrote acc = p @ v (or acc = alpha * acc, p @ v …). "
     "Each block must ADD to the rescaled acc: acc = alpha * acc + p @ v."),
    ("only the first block", _first_block,
     "only the first block of keys counts: the loop stopped after one block (a return inside the loop?)."),
    ("tail dropped", lambda *a: _blocks(*a, tail=False),
     "the keys after the last full block are missing: range(S // block_size) drops them. Loop with "
     "range(0, S, block_size) and slice k[..., j:j + block_size, :] (the last slice is just shorter)."),
    ("not scaled", lambda q, k, v, b: _blocks(q, k, v, b, scale=1.0),
     "the scores are not scaled. Multiply q @ kᵀ by 1/√d, d = q.shape[-1]."),
    ("block one short", lambda *a: _blocks(*a, short=1),
     "every block leaves out its last key: the slice j:j + block_size - 1 stops one early (Python's end is "
     "already exclusive). Slice k[..., j:j + block_size, :] and v the same way."),
    ("divided by d", lambda q, k, v, b: _blocks(q, k, v, b, scale=1 / q.shape[-1]),
     "you divided the scores by d. Divide by √d (math.sqrt(q.shape[-1]))."),
]

_NAN = ("your output holds NaN or inf on ordinary inputs. On the first block the running max is −inf: "
        "exp(s − m) with the OLD m, or exp(m_new − m) instead of exp(m − m_new), gives inf there (and "
        "inf · 0 = NaN). Use p = exp(s − m_new) and alpha = exp(m − m_new).")


def _inputs(*lead, T, S, d, d_v, block_size, scale=1.0):
    def make(g):
        q = torch.randn(*lead, T, d, generator=g, dtype=F64) * scale
        k = torch.randn(*lead, S, d, generator=g, dtype=F64) * scale
        v = torch.randn(*lead, S, d_v, generator=g, dtype=F64)
        return q, k, v, block_size
    return make


def _one_block_property(fn) -> Property:
    """Right with one block covering all keys, wrong with several: the blocks are combined wrongly."""
    def test(args, got, expected):
        q, k, v, _ = args
        one = fn(q.clone(), k.clone(), v.clone(), k.shape[-2])
        if isinstance(one, torch.Tensor) and close(one, expected):
            return ("blocks combined wrongly",
                    "with one block (block_size ≥ S) your function is right, with several it is not: the "
                    "error is in how blocks are combined. " + _COMBINE + " — both l and acc — and divide "
                    "acc by l only after the last block.")
        return None
    return Property("blocks combined wrongly", test)


def _scale_property() -> Property:
    """Fit the constant: which score scale c would make the right blockwise loop give this answer?"""
    def test(args, got, expected):
        q, k, v, b = args
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape or not torch.isfinite(got).all():
            return None
        d, d_v = q.shape[-1], v.shape[-1]
        err = lambda c: (_blocks(q, k, v, b, scale=c) - got).abs().max().item()  # noqa: E731
        lo = hi = min((math.exp(x / 10) for x in range(-60, 31)), key=err)
        lo, hi = lo / math.exp(0.1), hi * math.exp(0.1)
        for _ in range(60):  # the error is smooth in c near its minimum: ternary search
            m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            lo, hi = (lo, m2) if err(m1) < err(m2) else (m1, hi)
        c = (lo + hi) / 2
        if err(c) > 1e-6 or abs(c * math.sqrt(d) - 1) < 1e-4:
            return None
        known = {"1/√d_v (v's width)": 1 / math.sqrt(d_v), "1/d": 1 / d, "1 (no scaling)": 1.0,
                 "√d": math.sqrt(d), "1/d_v": 1 / d_v}
        name = next((n for n, val in known.items() if abs(c / val - 1) < 1e-3), None)
        return ("wrong scale", f"your scores are multiplied by {c:.4g}" + (f" = {name}" if name else "")
                + f"; multiply them by 1/√d = {1 / math.sqrt(d):.4g}, with d = q.shape[-1], the width of q "
                "and k (not of v).")
    return Property("wrong scale", test)


def _rows_property() -> Property:
    """Each query's output the right one times a factor: the weights of a query do not sum to 1."""
    def test(args, got, expected):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape or not torch.isfinite(got).all():
            return None
        ratio = (got * expected).sum(-1, keepdim=True) / (expected * expected).sum(-1, keepdim=True)
        spread = (ratio - ratio.flatten()[0]).abs().max()  # one factor for all: another property names it
        if (got - ratio * expected).abs().max() < 1e-6 and spread > 1e-6:
            return ("rows scaled", "each query's output points the right way but is scaled by its own factor: "
                    "its weights do not sum to 1. The running sum l needs one number per query — "
                    "p.sum(dim=-1, keepdim=True) over the keys only, shape (..., T, 1) — not a sum over the "
                    "queries too.")
        return None
    return Property("rows scaled", test)


def check_blockwise_attention(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(q: (..., T, d), k: (..., S, d), v: (..., S, d_v), block_size: int) → (..., T, d_v)."""
    parts = lambda q, k, v, b: Parts(q, k, v, 1 / math.sqrt(q.shape[-1]))  # noqa: E731
    trials = [
        Trial(_inputs(T=5, S=12, d=4, d_v=3, block_size=4)),
        Trial(_inputs(T=6, S=13, d=4, d_v=3, block_size=4), "ragged last block",
              "right when S is a multiple of block_size, wrong otherwise: the last block is shorter. Loop "
              "with range(0, S, block_size) and slice k[..., j:j + block_size, :]."),
        Trial(_inputs(2, 3, T=7, S=10, d=4, d_v=5, block_size=3), "extra axes",
              "right for q of shape (T, d), wrong with batch and head axes (B, H, T, d). Index from the end: "
              "k[..., j:j + b, :], k.transpose(-2, -1), sums and maxes over dim=-1 with keepdim=True."),
        Trial(_inputs(T=5, S=12, d=4, d_v=3, block_size=4, scale=40.0), "no max subtraction",
              "right on ordinary inputs, but NaN or inf when the scores reach the hundreds: exp overflows. "
              "Keep the running max m and exponentiate s − m_new, never s itself."),
    ]
    result = check("blockwise attention", fn, _reference, trials,
                   [Mistake(k, f, h) for k, f, h in _SLIPS], nan_hint=_NAN,
                   properties=[_one_block_property(fn), _scale_property(), _rows_property(),
                               attention_property(parts)], explain=explain_error,
                   seed=seed, quiet=True)
    if result.passed:  # right values: were they computed block by block?
        q, k, v, b = _inputs(2, T=5, S=12, d=4, d_v=3, block_size=4)(torch.Generator().manual_seed(0))
        if _builds_whole(fn, (q, k, v, b), q.shape[-2], k.shape[-2]):
            result = CheckResult(False, "whole score matrix", "✗ blockwise attention: right values, but not "
                                 "block by block: your function made a (T, S) tensor, all the scores of every "
                                 "query at once. Compute q @ k[..., j:j + block_size, :]ᵀ inside a loop over j "
                                 "and keep only m, l and acc between blocks.")
    if not quiet:
        print(result.message)
    return result


class _Watch(TorchFunctionMode):
    """Records whether any tensor made inside it has (T, S) or (S, T) as its last two axes."""

    def __init__(self, T: int, S: int):
        super().__init__()
        self.shapes, self.seen = {(T, S), (S, T)}, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and tuple(t.shape[-2:]) in self.shapes:
                self.seen = True
        return out


def _builds_whole(fn, args, T: int, S: int) -> bool:
    watch = _Watch(T, S)
    try:
        with watch:
            fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    except Exception:
        return False
    return watch.seen

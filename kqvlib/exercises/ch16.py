"""Checkers for chapter 16, *Attention in today's models*.

    check_repeat_kv(fn)            fn(k, n_rep): (B, G, S, hs) → (B, G·n_rep, S, hs), each key/value head
                                   repeated n_rep times in a row (query heads g·n_rep … share head g)
    check_sliding_window_mask(fn)  fn(T, window) → bool (T, T): query t sees keys t − window + 1 … t
    check_kv_bytes_per_token(fn)   fn(n_layers, n_heads, n_kv_heads, head_dim, bytes_per_number) → bytes
                                   the KV cache grows by per token

Each likely slip is listed with its own hint; an unlisted one is diagnosed by property (the right heads in
another order; a band that is shifted, widened or not causal; a count off by a factor the arguments explain).
"""
from __future__ import annotations

import torch

from kqvlib.checks import Mistake, Property, Trial, check, close
from kqvlib.exercises.common import explain_error
from kqvlib.modern import kv_bytes_per_token, sliding_window_mask
from kqvlib.multihead import repeat_kv

__all__ = ["check_repeat_kv", "check_sliding_window_mask", "check_kv_bytes_per_token"]

F64 = torch.float64


# --- repeat_kv ---------------------------------------------------------------------------------------------

def _kv(B, G, S, hs, n_rep):
    return lambda g: (torch.randn(B, G, S, hs, generator=g, dtype=F64), n_rep)


_REPEAT_SLIPS = [
    Mistake("tiled", lambda k, r: k.repeat(1, r, 1, 1),
            "your heads come in the order 0, 1, …, G−1, 0, 1, … (k.repeat tiles the whole set). Query heads "
            "g·n_rep … (g+1)·n_rep − 1 share key head g, so each head must be repeated in a row: 0, 0, 1, 1, … "
            "Use k.repeat_interleave(n_rep, dim=1), or add an axis after the heads and expand it."),
    Mistake("sequence axis", lambda k, r: k.repeat_interleave(r, dim=2),
            "you repeated along the sequence axis (dim 2), so each POSITION appears n_rep times. Repeat the "
            "heads: dim=1 of (B, G, S, hs)."),
    Mistake("feature axis", lambda k, r: k.repeat_interleave(r, dim=3),
            "you repeated along the feature axis (dim 3). Repeat the heads: dim=1 of (B, G, S, hs)."),
    Mistake("batch axis", lambda k, r: k.repeat_interleave(r, dim=0),
            "you repeated along the batch axis (dim 0). Repeat the heads: dim=1 of (B, G, S, hs)."),
    Mistake("expanded after S", lambda k, r: k[:, :, :, None].expand(-1, -1, -1, r, -1).reshape(
        k.shape[0], k.shape[1] * r, k.shape[2], k.shape[3]),
            "the new axis went after the sequence axis, so the reshape mixes positions into heads. Insert it "
            "right after the heads, k[:, :, None] (B, G, 1, S, hs), expand to (B, G, n_rep, S, hs), then reshape."),
]


def _heads_reordered(args, got, expected):
    if got.shape == expected.shape and close(got.sort(dim=1).values, expected.sort(dim=1).values):
        return ("heads reordered", "each output head holds one of the right key heads, but not in the right "
                "order: output head h must be key head h // n_rep.")
    return None


def check_repeat_kv(fn, *, seed=None, quiet=False):
    """``fn(k, n_rep)`` → k with each head repeated n_rep times in a row, (B, G·n_rep, S, hs)."""
    return check("repeat_kv", fn, reference=repeat_kv,
                 trials=[Trial(_kv(2, 3, 5, 4, 2)),
                         Trial(_kv(1, 2, 4, 6, 3), "three", "right for n_rep = 2, wrong for 3: use n_rep "
                               "everywhere instead of a fixed 2."),
                         Trial(_kv(2, 4, 3, 2, 1), "one", "n_rep = 1 must give k back unchanged (multi-head "
                               "attention): (B, G, S, hs).")],
                 mistakes=_REPEAT_SLIPS, properties=[Property("heads reordered", _heads_reordered)],
                 seed=seed, quiet=quiet, explain=explain_error)


# --- sliding_window_mask ----------------------------------------------------------------------------------

def _band(T, w, lo, hi):  # True where lo <= t − s <= hi
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t − s
    return (d >= lo) & (d <= hi)


_MASK_SLIPS = [
    Mistake("one too many", lambda T, w: _band(T, w, 0, w),
            "each query sees window + 1 keys: with t − s <= window you also keep the key `window` steps back. "
            "The window counts the query itself: keep 0 <= t − s < window."),
    Mistake("one too few", lambda T, w: _band(T, w, 0, w - 2),
            "each query sees window − 1 keys. The window counts the query itself and the window − 1 before "
            "it: keep 0 <= t − s < window (or t − s <= window − 1)."),
    Mistake("self excluded", lambda T, w: _band(T, w, 1, w),
            "the diagonal is False: a query must see itself (t − s = 0), or the first row has no key at all."),
    Mistake("not causal", lambda T, w: _band(T, w, -(w - 1), w - 1),
            "your band is symmetric: queries see up to window − 1 FUTURE keys as well. Keep only s <= t."),
    Mistake("future", lambda T, w: _band(T, w, -(w - 1), 0),
            "your band looks forward: query t sees keys t … t + window − 1. Rows are queries and columns are "
            "keys; keep s <= t and s > t − window."),
    Mistake("causal only", lambda T, w: _band(T, w, 0, T),
            "this is the plain causal mask: nothing is cut at the window. Also require s > t − window."),
    Mistake("window only", lambda T, w: _band(T, w, -T, w - 1),
            "the old keys are cut, but the future is not: also require s <= t."),
    Mistake("inverted", lambda T, w: ~sliding_window_mask(T, w),
            "your mask is True exactly where keys must be hidden. The convention is True = may attend: invert it."),
]


def _mask_property(args, got, expected):
    if got.shape != expected.shape:
        return None
    T, w = args
    counts = got.sum(-1)
    if close(got, got.tril()) and close(counts[-1:], torch.tensor([float(w)])) and not close(got, expected):
        return ("band shape", f"the last row is right ({w} keys), but earlier rows are not: row t keeps "
                f"keys max(0, t − {w} + 1) … t.")
    return None


def check_sliding_window_mask(fn, *, seed=None, quiet=False):
    """``fn(T, window)`` → a bool (T, T) mask, True where query t may attend to key s: t − window < s <= t."""
    ref = lambda T, w: sliding_window_mask(T, w)
    return check("sliding_window_mask", fn, reference=ref,
                 trials=[Trial(lambda g: (int(torch.randint(6, 12, (1,), generator=g)),
                                          int(torch.randint(2, 5, (1,), generator=g)))),
                         Trial(lambda g: (5, 1), "window 1", "with window = 1 each query sees only itself: "
                               "the mask is the identity."),
                         Trial(lambda g: (4, 9), "wide", "a window wider than T must give the causal mask "
                               "(nothing is left to cut).")],
                 mistakes=_MASK_SLIPS, properties=[Property("band shape", _mask_property)],
                 seed=seed, quiet=quiet, explain=explain_error)


# --- kv_bytes_per_token -----------------------------------------------------------------------------------

def _kv_ref(L, H, G, hs, b):
    return kv_bytes_per_token(L, G, hs, b)


_BYTES_SLIPS = [
    Mistake("n_heads", lambda L, H, G, hs, b: 2 * L * H * hs * b,
            "you counted n_heads key/value heads. Only n_kv_heads heads of keys and values are stored; the "
            "other query heads share them."),
    Mistake("keys only", lambda L, H, G, hs, b: L * G * hs * b,
            "half the right answer: you counted keys only (each position stores a key AND a value: factor 2), "
            "or used 2 bytes per number where bytes_per_number is 4."),
    Mistake("one layer", lambda L, H, G, hs, b: 2 * G * hs * b,
            "that is one layer's cache. Every layer keeps its own keys and values: multiply by n_layers."),
    Mistake("numbers", lambda L, H, G, hs, b: 2 * L * G * hs,
            "you counted numbers, not bytes: multiply by bytes_per_number."),
]


def _bytes_property(args, got, expected):
    L, H, G, hs, b = args
    ratio = float(got.sum() / expected.sum()) if float(expected.sum()) else 0.0
    for name, f in (("n_heads / n_kv_heads", H / G), ("head_dim", hs), ("bytes_per_number", b), ("n_layers", L)):
        if abs(ratio - f) < 1e-9 and f != 1:
            return ("extra factor", f"your count is {name} times too large: count it once.")
        if abs(ratio - 1 / f) < 1e-9 and f != 1:
            return ("missing factor", f"your count is {name} times too small: a factor {name} is missing.")
    return None


def check_kv_bytes_per_token(fn, *, seed=None, quiet=False):
    """``fn(n_layers, n_heads, n_kv_heads, head_dim, bytes_per_number)`` → bytes per token (an int)."""
    def config(g):
        G = int(torch.randint(1, 4, (1,), generator=g))
        return (int(torch.randint(2, 40, (1,), generator=g)), G * int(torch.randint(2, 5, (1,), generator=g)),
                G, 2 ** int(torch.randint(4, 8, (1,), generator=g)), 4)  # float32, as this book's models
    return check("kv_bytes_per_token", fn, reference=_kv_ref,
                 trials=[Trial(config),
                         Trial(lambda g: (12, 12, 12, 64, 2), "bfloat16", "wrong with 2 bytes per number: use "
                               "bytes_per_number rather than a fixed 4."),
                         Trial(lambda g: (32, 32, 8, 128, 2), "Llama", "right on small configurations, wrong on "
                               "Llama 3 8B's (32 layers, 32 heads, 8 key/value heads, head_dim 128).")],
                 mistakes=_BYTES_SLIPS, properties=[Property("factor", _bytes_property)],
                 seed=seed, quiet=quiet, explain=explain_error)

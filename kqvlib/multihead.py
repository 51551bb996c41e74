"""Multi-head attention (chapter 6) and the KV cache that makes generation cheap (chapter 11).

    x (B, T, C) ─ q_proj ─▶ queries, split into H heads (B, H, T, hs)
    context (B, S, C) ─ kv_proj ─▶ keys and values, split into H heads, each (B, H, S, hs)
    attention per head ─▶ (B, H, T, hs) ─ heads side by side ─▶ (B, T, C) ─ out_proj ─▶ (B, T, C)

C = d_model = H · hs. Without a ``context`` the keys and values come from x itself (self-attention);
with one they come from another sequence (cross-attention, chapter 12), which may have another length S.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import is_int, require, require_float, require_int, require_real, require_tensor
from kqvlib.attention import causal_mask, combine_masks, scaled_dot_product_attention


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) → (B, H, T, C/H): head h gets features h·hs … (h+1)·hs − 1. Built in chapter 6.

    Split the last axis into (H, hs), then swap the T and H axes. (A direct ``x.view(B, H, T, hs)``
    has the right shape but cuts the flattened sequence into H pieces, mixing positions.)
    """
    require_tensor("split_heads", "x", x)
    require_int("split_heads", "n_heads", n_heads, lo=1)
    require(x.dim() == 3 and x.shape[-1] % n_heads == 0, lambda: (
        f"split_heads: expected x of shape (B, T, C) with C divisible by n_heads={n_heads}, "
        f"got {tuple(x.shape)}"))
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)  # (B, T, H, hs) → (B, H, T, hs)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, S, hs) → (B, H_kv·n_rep, S, hs): each key (or value) head repeated n_rep times in a row,
    so query heads g·n_rep … (g+1)·n_rep − 1 share head g (grouped-query attention). Built in chapter 16."""
    require_tensor("repeat_kv", "x", x)
    require_int("repeat_kv", "n_rep", n_rep, lo=1)
    require(x.dim() == 4, lambda: f"repeat_kv: expected x of shape (B, H_kv, S, hs), got {tuple(x.shape)}")
    if n_rep == 1:
        return x
    B, G, S, hs = x.shape
    return x[:, :, None].expand(B, G, n_rep, S, hs).reshape(B, G * n_rep, S, hs)  # (B, G, r, S, hs) → (B, H, S, hs)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, hs) → (B, T, H·hs): the heads' outputs side by side again, head 0 first.
    Built in chapter 6.

    The inverse of :func:`split_heads`. After the transpose the tensor is no longer contiguous, so
    it takes ``reshape`` (which copies when it must), not ``view``.
    """
    require_tensor("merge_heads", "x", x)
    require(x.dim() == 4, lambda: f"merge_heads: expected x of shape (B, H, T, hs), got {tuple(x.shape)}")
    B, H, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, H * hs)  # (B, T, H, hs) → (B, T, C)


class KVCache:
    """The keys and values one attention layer has seen so far. Built in chapter 11.

    k, v: (B, H, S, hs), growing by T positions per call. With ``max_len`` the storage for max_len
    positions is allocated once and filled in place (no copying of the whole cache per token).
    """

    def __init__(self, max_len: int | None = None) -> None:
        require(max_len is None or is_int(max_len) and max_len >= 1,
                lambda: f"KVCache: max_len must be None or an int ≥ 1, got {max_len!r}")
        self.max_len = max_len
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (B, H, T, hs) new keys and values; return all of them, (B, H, S + T, hs)."""
        self._check(k, v)
        T = k.shape[-2]
        if self.max_len is None:  # grow by concatenation
            self._k = k if self._k is None else torch.cat([self._k, k], dim=-2)
            self._v = v if self._v is None else torch.cat([self._v, v], dim=-2)
        else:
            require(self._len + T <= self.max_len,
                    lambda: f"KVCache: {self._len} + {T} positions exceed max_len={self.max_len}")
            if self._k is None:
                shape = (*k.shape[:-2], self.max_len, k.shape[-1])  # (B, H, max_len, hs)
                self._k, self._v = k.new_empty(shape), v.new_empty((*shape[:-1], v.shape[-1]))
            self._k[..., self._len : self._len + T, :] = k
            self._v[..., self._len : self._len + T, :] = v
        self._len += T
        return self._k[..., : self._len, :], self._v[..., : self._len, :]


    def _check(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """k (B, H, T, hs) and v (B, H, T, hs_v) of one dtype and device, matching what is cached."""
        require_float("KVCache.append", "k", k, min_dim=2)
        require_float("KVCache.append", "v", v, min_dim=2)
        require(k.shape[:-1] == v.shape[:-1] and k.dtype == v.dtype and k.device == v.device, lambda: (
            f"KVCache.append: k {tuple(k.shape)} {k.dtype} and v {tuple(v.shape)} {v.dtype} must have the same "
            f"positions (all but the last axis), dtype and device"))
        old_k, old_v = self._k, self._v
        require(old_k is None or (k.shape[:-2] == old_k.shape[:-2] and k.shape[-1] == old_k.shape[-1]
                                  and v.shape[-1] == old_v.shape[-1] and k.dtype == old_k.dtype
                                  and k.device == old_k.device), lambda: (
            f"KVCache.append: k {tuple(k.shape)} {k.dtype} and v {tuple(v.shape)} do not continue the cached "
            f"k {tuple(old_k.shape)} {old_k.dtype} and v {tuple(old_v.shape)} (same batch, heads, widths, dtype)"))


class MultiHeadAttention(nn.Module):
    """H attention heads side by side, then W_O. Built in chapter 6.

    forward(x: (B, T, C), context: (B, S, C) or None) → (B, T, C), with C = d_model = n_heads · head_size.

    causal: each position attends only to itself and earlier ones (self-attention only).
    impl: ``"scratch"`` uses kqvlib's :func:`~kqvlib.attention.scaled_dot_product_attention`,
        ``"sdpa"`` PyTorch's fused ``F.scaled_dot_product_attention``: the same function (the tests check
        it); the fused one is faster and is used whenever the weights are not asked for.
    rotary: a module that rotates (B, H, T, hs) queries and keys by their positions,
        ``rotary(q, offset)`` (chapter 7's :class:`~kqvlib.positions.RotaryEmbedding`), or None.
    n_kv_heads: heads of keys and values (chapter 16), n_heads by default; fewer (a divisor of n_heads)
        is grouped-query attention, each key/value head shared by n_heads / n_kv_heads query heads, and 1
        is multi-query attention. The cache then holds n_kv_heads heads.
    qk_norm: a module ``qk_norm(q, k) → (q, k)`` that normalises queries and keys per head before the
        rotation (chapter 16), or None.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = False, bias: bool = True,
                 dropout: float = 0.0, impl: str = "sdpa", rotary: nn.Module | None = None,
                 n_kv_heads: int | None = None, qk_norm: nn.Module | None = None):
        super().__init__()
        require_int("MultiHeadAttention", "d_model", d_model, lo=1)
        require_int("MultiHeadAttention", "n_heads", n_heads, lo=1)
        require(d_model % n_heads == 0,
                f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        require_real("MultiHeadAttention", "dropout", dropout, lo=0, hi=1, hi_open=True)
        require(rotary is None or isinstance(rotary, nn.Module) and getattr(rotary, "head_size", d_model // n_heads)
                == d_model // n_heads, lambda: f"MultiHeadAttention: rotary must be None or a module that rotates "
                f"heads of size {d_model // n_heads} (d_model / n_heads), got {type(rotary).__name__} "
                f"{getattr(rotary, 'head_size', '')}")
        require(impl in ("scratch", "sdpa"), f"MultiHeadAttention: impl must be 'scratch' or 'sdpa', got {impl!r}")
        self.d_model, self.n_heads, self.causal, self.impl = d_model, n_heads, causal, impl
        self.head_size = d_model // n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        require(isinstance(self.n_kv_heads, int) and self.n_kv_heads >= 1 and n_heads % self.n_kv_heads == 0,
                lambda: f"MultiHeadAttention: n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q
        self.kv_proj = nn.Linear(d_model, 2 * self.n_kv_heads * self.head_size, bias=bias)  # W_K and W_V stacked
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.dropout = dropout
        self.rotary = rotary
        self.qk_norm = qk_norm

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, C) queries' inputs. context: (B, S, C) keys' and values' inputs, or None for x.
        mask: None or bool/float broadcastable to (B, H, T, S), combined with the causal mask.
        Returns (B, T, C), and the weights (B, H, T, S) too when ``return_weights``.

        cache: keys and values of earlier positions (self-attention during generation). An empty
        cache is filled with the T positions of x; after that x must be one new position, which
        attends to every cached one.
        """
        self._check(x, context, mask, cache)
        B, T, C = x.shape
        src = x if context is None else context
        if context is not None:
            require(context.dim() == 3 and context.shape[0] == B and context.shape[-1] == C,
                    lambda: f"MultiHeadAttention: context must have shape ({B}, S, {C}) like x "
                            f"{tuple(x.shape)}, got {tuple(context.shape)}")
            require(not self.causal and cache is None,
                    "MultiHeadAttention: cross-attention (a context) takes no causal mask and no cache")
        past = len(cache) if cache is not None else 0
        require(not past or (T == 1 and mask is None), lambda: (
            f"MultiHeadAttention: with {past} cached positions, x must be one new position, got {tuple(x.shape)}"))
        self._check_mask(x, context, mask)

        q = split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, hs)
        k, v = self.kv_proj(src).chunk(2, dim=-1)  # 2 × (B, S, H_kv·hs)
        k, v = split_heads(k, self.n_kv_heads), split_heads(v, self.n_kv_heads)  # 2 × (B, H_kv, S, hs)
        if self.qk_norm is not None:
            q, k = self.qk_norm(q, k)
        if self.rotary is not None:
            q, k = self.rotary(q, offset=past), self.rotary(k, offset=past)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H_kv, past + T, hs)
        causal = self.causal and past == 0  # one new position may see every cached one
        y, weights = self._attend(q, k, v, mask, causal, return_weights)  # (B, H, T, hs)
        y = self.out_proj(merge_heads(y))  # (B, T, C)
        return (y, weights) if return_weights else y

    def _check(self, x, context, mask, cache) -> None:
        """The arguments of forward: shapes, dtypes and devices, named when they are wrong."""
        w = self.q_proj.weight
        require_float("MultiHeadAttention", "x", x)
        require(x.dim() == 3 and x.shape[-1] == self.d_model,
                lambda: f"MultiHeadAttention: expected x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        require(x.device == w.device and (x.dtype == w.dtype or torch.is_autocast_enabled(x.device.type)), lambda: (
            f"MultiHeadAttention: x is {x.dtype} on {x.device}, the weights {w.dtype} on {w.device}"))
        if context is not None:
            require_float("MultiHeadAttention", "context", context)
            require(context.dtype == x.dtype and context.device == x.device, lambda: (
                f"MultiHeadAttention: context is {context.dtype} on {context.device}, x {x.dtype} on {x.device}"))
        require(cache is None or isinstance(cache, KVCache),
                lambda: f"MultiHeadAttention: cache must be None or a KVCache, got {type(cache).__name__}")

    def _check_mask(self, x, context, mask) -> None:
        """The mask: bool, or float of x's dtype, broadcastable to the scores (B, H, T, S)."""
        if mask is not None:
            require(isinstance(mask, torch.Tensor) and (mask.dtype == torch.bool or mask.dtype == x.dtype)
                    and mask.device == x.device, lambda: (
                        f"MultiHeadAttention: mask must be bool (True = attend) or a float mask of x's dtype "
                        f"{x.dtype}, on {x.device}; got " + (f"{mask.dtype} on {mask.device}" if isinstance(
                            mask, torch.Tensor) else type(mask).__name__)))
            B, T = x.shape[:2]
            S = context.shape[1] if context is not None and context.dim() == 3 else T
            want = (B, self.n_heads, T, S)
            require(mask.dim() <= 4 and all(m in (1, n) for m, n in zip(mask.shape[::-1], want[::-1])), lambda: (
                f"MultiHeadAttention: a mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"(B, H, T, S) = {want}"))

    def _attend(self, q, k, v, mask, causal, return_weights):
        """Attention of every head at once: (B, H, T, hs) queries, (B, H, S, hs) keys and values."""
        p = self.dropout if self.training else 0.0
        fused = self.impl == "sdpa" and not return_weights
        if k.shape[1] != q.shape[1]:  # grouped heads: each key/value head serves n_heads / n_kv_heads queries
            if fused:
                return self._grouped_sdpa(q, k, v, mask, causal, p), None
            k, v = repeat_kv(k, q.shape[1] // k.shape[1]), repeat_kv(v, q.shape[1] // k.shape[1])  # (B, H, S, hs)
        if fused and causal and mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True), None
        if causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], device=q.device))
        if fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
        y, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
        if p > 0:  # dropout on the weights, as the fused kernel does
            y = F.dropout(weights, p) @ v
        return y, weights

    @staticmethod
    def _grouped_sdpa(q, k, v, mask, causal, p):
        """PyTorch's fused attention with H_kv < H key/value heads (``enable_gqa``). Chapter 16."""
        if causal and mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, enable_gqa=True)
        if causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], device=q.device))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, enable_gqa=True)

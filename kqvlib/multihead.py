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

from kqvlib._common import require
from kqvlib.attention import causal_mask, combine_masks, scaled_dot_product_attention


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) → (B, H, T, C/H): head h gets features h·hs … (h+1)·hs − 1. Built in chapter 6.

    Split the last axis into (H, hs), then swap the T and H axes. (A direct ``x.view(B, H, T, hs)``
    has the right shape but cuts the flattened sequence into H pieces, mixing positions.)
    """
    require(x.dim() == 3 and x.shape[-1] % n_heads == 0, lambda: (
        f"split_heads: expected x of shape (B, T, C) with C divisible by n_heads={n_heads}, "
        f"got {tuple(x.shape)}"))
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)  # (B, T, H, hs) → (B, H, T, hs)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, hs) → (B, T, H·hs): the heads' outputs side by side again, head 0 first.
    Built in chapter 6.

    The inverse of :func:`split_heads`. After the transpose the tensor is no longer contiguous, so
    it takes ``reshape`` (which copies when it must), not ``view``.
    """
    require(x.dim() == 4, lambda: f"merge_heads: expected x of shape (B, H, T, hs), got {tuple(x.shape)}")
    B, H, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, H * hs)  # (B, T, H, hs) → (B, T, C)


class KVCache:
    """The keys and values one attention layer has seen so far. Built in chapter 11.

    k, v: (B, H, S, hs), growing by T positions per call. With ``max_len`` the storage for max_len
    positions is allocated once and filled in place (no copying of the whole cache per token).
    """

    def __init__(self, max_len: int | None = None) -> None:
        self.max_len = max_len
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (B, H, T, hs) new keys and values; return all of them, (B, H, S + T, hs)."""
        T = k.shape[-2]
        if self.max_len is None:  # grow by concatenation
            self._k = k if self._k is None else torch.cat([self._k, k], dim=-2)
            self._v = v if self._v is None else torch.cat([self._v, v], dim=-2)
        else:
            require(self._len + T <= self.max_len,
                    lambda: f"KVCache: {self._len} + {T} positions exceed max_len={self.max_len}")
            if self._k is None:
                shape = (*k.shape[:-2], self.max_len, k.shape[-1])  # (B, H, max_len, hs)
                self._k, self._v = k.new_empty(shape), v.new_empty(shape)
            self._k[..., self._len : self._len + T, :] = k
            self._v[..., self._len : self._len + T, :] = v
        self._len += T
        return self._k[..., : self._len, :], self._v[..., : self._len, :]


class MultiHeadAttention(nn.Module):
    """H attention heads side by side, then W_O. Built in chapter 6.

    forward(x: (B, T, C), context: (B, S, C) or None) → (B, T, C), with C = d_model = n_heads · head_size.

    causal: each position attends only to itself and earlier ones (self-attention only).
    impl: ``"scratch"`` uses kqvlib's :func:`~kqvlib.attention.scaled_dot_product_attention`,
        ``"sdpa"`` PyTorch's fused ``F.scaled_dot_product_attention``: the same function (the tests check
        it); the fused one is faster and is used whenever the weights are not asked for.
    rotary: a module that rotates (B, H, T, hs) queries and keys by their positions,
        ``rotary(q, offset)`` (chapter 7's :class:`~kqvlib.positions.RotaryEmbedding`), or None.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = False, bias: bool = True,
                 dropout: float = 0.0, impl: str = "sdpa", rotary: nn.Module | None = None):
        super().__init__()
        require(d_model % n_heads == 0,
                f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        require(impl in ("scratch", "sdpa"), f"MultiHeadAttention: impl must be 'scratch' or 'sdpa', got {impl!r}")
        self.d_model, self.n_heads, self.causal, self.impl = d_model, n_heads, causal, impl
        self.head_size = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=bias)  # W_K and W_V stacked
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.dropout = dropout
        self.rotary = rotary

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
        require(x.dim() == 3 and x.shape[-1] == self.d_model,
                lambda: f"MultiHeadAttention: expected x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
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

        q = split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, hs)
        k, v = self.kv_proj(src).chunk(2, dim=-1)  # 2 × (B, S, C)
        k, v = split_heads(k, self.n_heads), split_heads(v, self.n_heads)  # 2 × (B, H, S, hs)
        if self.rotary is not None:
            q, k = self.rotary(q, offset=past), self.rotary(k, offset=past)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, past + T, hs)
        causal = self.causal and past == 0  # one new position may see every cached one
        y, weights = self._attend(q, k, v, mask, causal, return_weights)  # (B, H, T, hs)
        y = self.out_proj(merge_heads(y))  # (B, T, C)
        return (y, weights) if return_weights else y

    def _attend(self, q, k, v, mask, causal, return_weights):
        """Attention of every head at once: (B, H, T, hs) queries, (B, H, S, hs) keys and values."""
        p = self.dropout if self.training else 0.0
        fused = self.impl == "sdpa" and not return_weights
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

"""Attention, built from scratch: softmax, scaled dot-product attention, masks, multi-head attention.

Shapes use these letters:
    B batch, H heads, T query positions, S key/value positions,
    d_k query/key width, d_v value width, C model width (d_model).

Mask convention (the same as ``torch.nn.functional.scaled_dot_product_attention``):
    * a **boolean** mask says which keys each query may look at: ``True`` = attend, ``False`` = blocked;
    * a **float** mask is *added* to the scores (use ``-inf`` to block).

A query row whose keys are *all* blocked has nothing to attend to. We define its weights to be all
zeros, so its output is the zero vector. (The naive formula would give 0/0 = NaN, which then spreads
silently through every later layer.)
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._validate import require, require_float
from kqvlib.rope import RotaryEmbedding


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``.

    x: any shape (...). Returns the same shape, non-negative, summing to 1 along ``dim``.

    Subtracting each row's maximum before ``exp`` changes nothing mathematically
    (the factor e^-max cancels) but keeps ``exp`` from overflowing. A row that is entirely
    ``-inf`` (every entry blocked) returns all zeros instead of NaN.
    """
    require_float("softmax", "x", x)
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row: shift by 0, not by -inf
    e = torch.exp(x - m)
    s = e.sum(dim=dim, keepdim=True)
    return torch.where(s > 0, e / s.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(e))


def soft_lookup(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A dictionary lookup made soft (chapter 1): score the query against every key by a dot
    product, turn the scores into weights with softmax, return the weighted sum of the values.

    query: (d,)   keys: (n, d)   values: (n, d_v)   →   (d_v,)

    It is attention for one query with no 1/√d scaling: ``scaled_dot_product_attention`` adds that.
    """
    for name, t in (("query", query), ("keys", keys), ("values", values)):
        require_float("soft_lookup", name, t)
    require(
        query.dim() == 1 and keys.dim() == 2 and values.dim() == 2
        and keys.shape[1] == query.shape[0] and values.shape[0] == keys.shape[0],
        f"soft_lookup: expected query (d,), keys (n, d), values (n, d_v); got query {tuple(query.shape)}, "
        f"keys {tuple(keys.shape)}, values {tuple(values.shape)}",
    )
    scores = keys @ query  # (n,): one similarity per key
    weights = softmax(scores, dim=0)  # (n,), sums to 1
    return weights @ values  # (d_v,)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (T, T) mask, ``True`` on and below the diagonal: position t may look at 0..t only."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"causal_mask: T must be a positive int, got {T!r}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> None:
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"scaled_dot_product_attention: mask of shape {tuple(mask.shape)} does not broadcast to the "
            f"scores' shape {tuple(scores_shape)} (..., T_q, T_k). A mask transposed by mistake has shape "
            f"(T_k, T_q)."
        ) from None


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d_k + mask) v, written out.

    q: (..., T, d_k)   k: (..., S, d_k)   v: (..., S, d_v)
    mask: None, or bool / float broadcastable to (..., T, S) — see the module docstring.
    Returns out (..., T, d_v), and the weights (..., T, S) too when ``return_weights``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_float("scaled_dot_product_attention", name, t)
        require(t.dim() >= 2, f"scaled_dot_product_attention: {name} must have shape (..., n, d), got {tuple(t.shape)}")
    require(
        q.dtype == k.dtype == v.dtype,
        f"scaled_dot_product_attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}",
    )
    require(
        q.shape[-1] == k.shape[-1],
        f"scaled_dot_product_attention: q has shape {tuple(q.shape)} and k has shape {tuple(k.shape)}; "
        f"their last dimensions (d_k) must match",
    )
    require(
        k.shape[-2] == v.shape[-2],
        f"scaled_dot_product_attention: k has shape {tuple(k.shape)} and v has shape {tuple(v.shape)}; "
        f"they must have the same number of positions S (dimension -2)",
    )
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, S)
    if mask is not None:
        _check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = softmax(scores, dim=-1)  # (..., T, S); a fully blocked row is all zeros
    out = weights @ v  # (..., T, d_v)
    return (out, weights) if return_weights else out


class KVCache:
    """The keys and values one attention layer has seen so far, so generation need not recompute them.

    k, v: (B, H, S, hs), growing by one position per generated token. With ``max_len`` the storage for
    max_len positions is allocated once and filled in place (no copying of the whole cache per token).
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
            if self._len + T > self.max_len:
                raise ValueError(f"KVCache: {self._len} + {T} positions exceed max_len={self.max_len}")
            if self._k is None:
                shape = (*k.shape[:-2], self.max_len, k.shape[-1])  # (B, H, max_len, hs)
                self._k, self._v = k.new_empty(shape), v.new_empty(shape)
            self._k[..., self._len : self._len + T, :] = k
            self._v[..., self._len : self._len + T, :] = v
        self._len += T
        return self._k[..., : self._len, :], self._v[..., : self._len, :]


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention.

    x: (B, T, C) → (B, T, C), with C = n_heads · head_size.

    ``impl="scratch"`` uses :func:`scaled_dot_product_attention` above; ``impl="sdpa"`` uses PyTorch's
    fused ``F.scaled_dot_product_attention``. Both compute the same function (the tests check it);
    the fused one is faster and is what the GPT uses when it does not need the weights.
    ``rope_positions=P`` rotates queries and keys by their positions (RoPE, up to P positions).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        impl: str = "sdpa",
        rope_positions: int | None = None,
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        if impl not in ("scratch", "sdpa"):
            raise ValueError(f"MultiHeadAttention: impl must be 'scratch' or 'sdpa', got {impl!r}")
        self.d_model, self.n_heads, self.causal, self.impl = d_model, n_heads, causal, impl
        self.head_size = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # W_Q, W_K, W_V side by side
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.dropout = dropout
        self.rope = RotaryEmbedding(self.head_size, rope_positions) if rope_positions else None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, C). mask: None or bool/float broadcastable to (B, H, T, T), combined with the
        causal mask when ``causal``. Returns (B, T, C), and the weights (B, H, T, S) when asked.

        cache: keys and values of earlier positions (generation). An empty cache is filled with the
        T positions of x; after that x must be one new position, which attends to all cached ones.
        """
        # (Checks on the hot path are plain `if`s: their messages are only formatted when they fail.)
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiHeadAttention: expected x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        B, T, C = x.shape
        past = len(cache) if cache is not None else 0
        if past and (T != 1 or mask is not None):
            raise ValueError(f"MultiHeadAttention: with {past} cached positions, x must be one new position, "
                             f"got {tuple(x.shape)}")
        q, k, v = self.qkv(x).split(C, dim=-1)  # 3 × (B, T, C)
        q = q.view(B, T, self.n_heads, self.head_size).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, self.n_heads, self.head_size).transpose(1, 2)  # (B, H, T, hs)
        v = v.view(B, T, self.n_heads, self.head_size).transpose(1, 2)  # (B, H, T, hs)
        if self.rope is not None:
            q, k = self.rope(q, offset=past), self.rope(k, offset=past)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, past + T, hs)
        p = self.dropout if self.training else 0.0
        causal = self.causal and past == 0  # one new position may see every cached one

        if self.impl == "sdpa" and not return_weights:
            if causal and mask is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=self._full_mask(mask, T, x, causal), dropout_p=p)
            weights = None
        else:
            y, weights = scaled_dot_product_attention(q, k, v, self._full_mask(mask, T, x, causal), return_weights=True)
            if p > 0:  # dropout on the weights, as the fused kernel does
                y = F.dropout(weights, p) @ v
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, H, T, hs) → (B, T, H·hs): heads side by side
        y = self.out_proj(y)
        return (y, weights) if return_weights else y

    @staticmethod
    def _full_mask(mask: torch.Tensor | None, T: int, x: torch.Tensor, causal: bool) -> torch.Tensor | None:
        """The user's mask combined with the causal one (as one bool or float mask)."""
        if not causal:
            return mask
        c = causal_mask(T, device=x.device)
        if mask is None:
            return c
        if mask.dtype == torch.bool:
            return mask & c
        return mask.masked_fill(~c, float("-inf"))

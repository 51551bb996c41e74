"""Attention in today's models (chapter 16): fewer key/value heads, a latent cache, a sliding window with
sinks, QK-norm, and a GPT assembled from such pieces.

    grouped-query attention   MultiHeadAttention(..., n_kv_heads=G)          (in multihead.py)
    RMSNorm, SwiGLU           block.RMSNorm, block.SwiGLU                    (in block.py)
    QKNorm                    RMSNorm on queries and keys, per head, before the rotation
    SlidingWindowAttention    each query sees its last ``window`` positions only
    RollingKVCache            a cache of fixed size: the first ``sinks`` positions and the newest ones
    LatentAttention           keys and values from a low-rank latent; the cache holds only the latent
    build_gpt                 a GPT whose blocks use the attention and MLP modules you pass

Shapes: B batch, T queries, S keys, H query heads, G key/value heads, hs head size, C = H·hs.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import eval_mode, require
from kqvlib.attention import combine_masks
from kqvlib.block import Block
from kqvlib.data import get_batch
from kqvlib.model import GPT, GPTConfig
from kqvlib.multihead import KVCache, MultiHeadAttention, merge_heads
from kqvlib.positions import RotaryEmbedding
from kqvlib.train import TrainConfig, lr_at, make_optimizers

# Published attention shapes (layers L, query heads H, key/value heads G, head size hs; MLA: latent d_c and
# decoupled rotary key d_R). Sources: GPT-2 small, Radford et al. 2019 and its released config; Llama 3 8B,
# Dubey et al. 2024, arXiv:2407.21783, Table 3; Mistral 7B, Jiang et al. 2023, arXiv:2310.06825, Table 1;
# DeepSeek-V3, DeepSeek-AI 2024, arXiv:2412.19437, section 4.2.
PUBLISHED = {
    "GPT-2 small": dict(n_layers=12, n_heads=12, n_kv_heads=12, head_dim=64),
    "Llama 3 8B": dict(n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128),
    "Mistral 7B": dict(n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128),
    "DeepSeek-V3": dict(n_layers=61, n_heads=128, n_kv_heads=128, head_dim=128, latent_dim=512, rope_dim=64),
}


def kv_bytes_per_token(n_layers: int, n_kv_heads: int, head_dim: int, bytes_per_number: int = 2) -> int:
    """Bytes the KV cache grows by per token: a key and a value of head_dim numbers for each key/value head
    of each layer, 2·L·G·hs numbers. Built in chapter 16."""
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_number


def latent_bytes_per_token(n_layers: int, latent_dim: int, rope_dim: int, bytes_per_number: int = 2) -> int:
    """Bytes per token of a multi-head latent attention cache: the latent and the shared rotary key,
    L·(d_c + d_R) numbers. Built in chapter 16."""
    return n_layers * (latent_dim + rope_dim) * bytes_per_number


class QKNorm(nn.Module):
    """RMSNorm over each head's queries and keys (hs features), before the rotation: the scores' size is
    then set by two learned gains, not by how large the projections grow. Built in chapter 16."""

    def __init__(self, head_size: int):
        super().__init__()
        self.q_norm, self.k_norm = nn.RMSNorm(head_size), nn.RMSNorm(head_size)  # RMSNorm, fused

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)  # (B, H, T, hs), (B, G, S, hs)


def sliding_window_mask(T: int, window: int, S: int | None = None, device=None) -> torch.Tensor:
    """Boolean (T, S) mask: the T queries are the last T of S positions, and query position t may look at
    keys t − window + 1 … t (itself and the window − 1 before it). S = T by default. Built in chapter 16."""
    S = T if S is None else S
    require(window >= 1 and 1 <= T <= S, lambda: f"sliding_window_mask: need window >= 1 and 1 <= T <= S, "
                                                  f"got T={T}, S={S}, window={window}")
    t = torch.arange(S - T, S, device=device)[:, None]  # (T, 1) the queries' positions
    s = torch.arange(S, device=device)[None, :]  # (1, S) the keys' positions
    return (s <= t) & (s > t - window)  # (T, S)


class SlidingWindowAttention(MultiHeadAttention):
    """Causal multi-head attention in which each position sees only its last ``window`` positions (Child
    et al. 2019; Mistral 7B). The keyword arguments are :class:`MultiHeadAttention`'s. Built in chapter 16."""

    def __init__(self, d_model: int, n_heads: int, window: int, **kwargs):
        require(window >= 1, lambda: f"SlidingWindowAttention: window must be >= 1, got {window}")
        super().__init__(d_model, n_heads, causal=True, **kwargs)
        self.window = window

    def _attend(self, q, k, v, mask, causal, return_weights):
        band = sliding_window_mask(q.shape[-2], self.window, k.shape[-2], device=q.device)  # (T, S), causal too
        return super()._attend(q, k, v, combine_masks(mask, band), False, return_weights)


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal sliding-window attention that computes only the band: queries in chunks of ``window``, each
    chunk against its own keys and the ``window`` before them, so about 2·T·window scores instead of T².
    q, k, v: (..., T, hs) → (..., T, hs). Built in chapter 16."""
    T, out = q.shape[-2], []
    for i in range(0, T, window):
        lo, hi = max(0, i - window), min(T, i + window)  # keys lo … hi − 1 for queries i … hi − 1
        band = sliding_window_mask(hi - i, window, hi - lo, device=q.device)  # (t, s)
        out.append(F.scaled_dot_product_attention(q[..., i:hi, :], k[..., lo:hi, :], v[..., lo:hi, :],
                                                  attn_mask=band))
    return torch.cat(out, dim=-2)  # (..., T, hs)


class RollingKVCache(KVCache):
    """A KV cache of fixed size: it keeps the first ``sinks`` positions and the newest ones, so that a new
    query sees at most ``size`` keys (itself included). Built in chapter 16.

    Positions are positions in the cache (as in StreamingLLM, Xiao et al. 2023, arXiv:2309.17453): after
    each step it holds ``size − 1`` positions at most, so the next token is rotated to position ≤ size − 1,
    and when old keys are dropped the kept ones move left, their rotation undone by as many positions (give
    the model's ``rotary``; without one nothing is re-rotated).
    """

    def __init__(self, size: int, sinks: int = 0, rotary: RotaryEmbedding | None = None):
        require(0 <= sinks < size - 1, lambda: f"RollingKVCache: need 0 <= sinks < size - 1, got {sinks}, {size}")
        super().__init__()
        self.size, self.sinks, self.rotary = size, sinks, rotary

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        require(k.shape[-2] <= self.size, lambda: f"RollingKVCache: {k.shape[-2]} new positions exceed size={self.size}")
        k_all, v_all = super().append(k, v)  # (B, G, S, hs): what this step attends to
        n, s = self._len - (self.size - 1), self.sinks  # n positions too many
        if n > 0:
            keep_k, keep_v = self._k[..., s + n:, :], self._v[..., s + n:, :]  # the newest
            if self.rotary is not None:  # moved n positions to the left: rotate back by n
                cos, sin = self.rotary.cos[n].to(k.dtype), self.rotary.sin[n].to(k.dtype)  # (hs,)
                x1, x2 = keep_k.chunk(2, dim=-1)
                keep_k = keep_k * cos - torch.cat([x2, x1], dim=-1) * sin  # the inverse of RotaryEmbedding
            self._k = torch.cat([self._k[..., :s, :], keep_k], dim=-2)  # (B, G, size − 1, hs)
            self._v = torch.cat([self._v[..., :s, :], keep_v], dim=-2)
            self._len = self.size - 1
        return k_all, v_all


class LatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434): keys and values are rebuilt from one
    small latent c = x W_DKV (d_latent numbers per token), plus one rotated key part of d_rope numbers
    shared by all heads; a cache holds only those. Built in chapter 16.

    forward(x (B, T, C), mask=None, cache=None) → (B, T, C). The cache is a :class:`KVCache` whose two
    tensors are the latents (B, S, d_latent) and the rotated keys (B, S, d_rope). A step of one new
    token uses the absorbed form (:meth:`attend_absorbed`), which never rebuilds the keys and values.
    """

    def __init__(self, d_model: int, n_heads: int, d_latent: int, d_rope: int, max_positions: int,
                 bias: bool = True):
        super().__init__()
        require(d_model % n_heads == 0, lambda: f"LatentAttention: d_model={d_model} not divisible by {n_heads}")
        self.d_model, self.n_heads, self.head_size, self.d_rope = d_model, n_heads, d_model // n_heads, d_rope
        hs = self.head_size
        self.q_proj = nn.Linear(d_model, n_heads * (hs + d_rope), bias=bias)  # each head: hs + d_rope
        self.kv_down = nn.Linear(d_model, d_latent, bias=bias)  # W_DKV
        self.k_up = nn.Linear(d_latent, d_model, bias=False)  # W_UK: latent → H keys
        self.v_up = nn.Linear(d_latent, d_model, bias=False)  # W_UV: latent → H values
        self.k_rope = nn.Linear(d_model, d_rope, bias=bias)  # the shared key part that gets rotated
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = RotaryEmbedding(d_rope, max_positions)
        self.scale = 1 / math.sqrt(hs + d_rope)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        require(x.dim() == 3 and x.shape[-1] == self.d_model and mask is None,
                lambda: f"LatentAttention: expected x of shape (B, T, {self.d_model}) and no mask, got {tuple(x.shape)}")
        B, T, _ = x.shape
        past = len(cache) if cache is not None else 0
        q = self.q_proj(x).view(B, T, self.n_heads, -1).transpose(1, 2)  # (B, H, T, hs + d_rope)
        q_c, q_r = q.split([self.head_size, self.d_rope], dim=-1)
        q_r = self.rotary(q_r, offset=past)  # (B, H, T, d_rope)
        c = self.kv_down(x)  # (B, T, d_latent)
        k_r = self.rotary(self.k_rope(x), offset=past)  # (B, T, d_rope)
        if cache is not None:
            c, k_r = cache.append(c, k_r)  # (B, S, d_latent), (B, S, d_rope)
        k_r = k_r[:, None]  # (B, 1, S, d_rope): one rotated key part for every head
        if past and T == 1:
            y = self.attend_absorbed(q_c, q_r, c, k_r)
        else:
            y = self.attend_plain(q_c, q_r, c, k_r, causal=past == 0)  # (B, H, T, hs)
        return self.out_proj(merge_heads(y))  # (B, T, C)

    def attend_plain(self, q_c, q_r, c, k_r, causal=False):
        """Rebuild every head's keys and values from the latents, then attend: (B, H, T, hs)."""
        B, S, _ = c.shape
        H, hs = self.n_heads, self.head_size
        k_c = self.k_up(c).view(B, S, H, hs).transpose(1, 2)  # (B, H, S, hs)
        v = self.v_up(c).view(B, S, H, hs).transpose(1, 2)  # (B, H, S, hs)
        k = torch.cat([k_c, k_r.expand(B, H, S, self.d_rope)], dim=-1)  # (B, H, S, hs + d_rope)
        q = torch.cat([q_c, q_r], dim=-1)  # (B, H, T, hs + d_rope)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=self.scale)

    def attend_absorbed(self, q_c, q_r, c, k_r):
        """The same attention without rebuilding keys or values (no causal mask: for the newest queries).
        q_c · (W_UK c) = (W_UKᵀ q_c) · c, so each query moves into latent space once; the weights average
        the latents, and W_UV is applied to that one average. (B, H, T, hs)."""
        H, hs = self.n_heads, self.head_size
        w_uk = self.k_up.weight.view(H, hs, -1)  # (H, hs, d_latent)
        w_uv = self.v_up.weight.view(H, hs, -1)  # (H, hs, d_latent)
        q_lat = torch.einsum("bhtd,hdc->bhtc", q_c, w_uk)  # (B, H, T, d_latent)
        scores = (q_lat @ c[:, None].mT + q_r @ k_r.mT) * self.scale  # (B, H, T, S)
        o_lat = scores.softmax(dim=-1) @ c[:, None]  # (B, H, T, d_latent): averaged latents
        return torch.einsum("bhtc,hdc->bhtd", o_lat, w_uv)  # (B, H, T, hs)


def build_gpt(cfg: GPTConfig, attention: Callable[[GPTConfig, nn.Module | None], nn.Module] | None = None,
              mlp: Callable[[GPTConfig], nn.Module] | None = None) -> GPT:
    """A :class:`~kqvlib.model.GPT` whose blocks use ``attention(cfg, rotary)`` and ``mlp(cfg)`` (each None:
    the chapter 10 modules), initialised as GPT initialises its own. Built in chapter 16."""
    model = GPT(cfg)
    rotary = model.blocks[0].attn.rotary
    model.blocks = nn.ModuleList(
        Block(cfg.n_embd, cfg.n_head, bias=cfg.bias, norm=cfg.norm, rotary=rotary,
              attn=attention(cfg, rotary) if attention is not None else None,
              mlp=mlp(cfg) if mlp is not None else None)
        for _ in range(cfg.n_layer))
    model.blocks.apply(GPT._init_weights)
    for name, p in model.blocks.named_parameters():  # the residual branches' last projections, as in GPT
        if name.endswith("attn.out_proj.weight") or name.endswith("mlp.proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
    return model


def train_steps(model: GPT, data: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int = 0,
                block_size: int | None = None, grad_clip: float = 1.0) -> list[float]:
    """Train for a fixed number of steps (AdamW, warmup then cosine, as chapter 10); the training losses.
    Built in chapter 16."""
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                      warmup_steps=max(1, steps // 10), grad_clip=grad_clip, progress=False)
    opts = make_optimizers(model, cfg, torch.device("cpu"))
    g, T, losses = torch.Generator().manual_seed(seed), block_size or model.config.block_size, []
    model.train()
    for step in range(steps):
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg) * group["peak_lr"] / cfg.lr
        x, y = get_batch(data, batch_size, T, g)  # (B, T) each
        _, loss = model(x, y)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def stream_losses(model: GPT, ids: torch.Tensor, caches: list[KVCache]) -> torch.Tensor:
    """Feed (B, N) token streams one token at a time through ``model`` with one cache per block; the
    loss of each next-token prediction, averaged over the batch: (N − 1,). Built in chapter 16."""
    out = []
    with eval_mode(model):
        for t in range(ids.shape[1] - 1):
            logits, _ = model(ids[:, t : t + 1], caches=caches)  # (B, 1, V)
            out.append(F.cross_entropy(logits[:, 0], ids[:, t + 1], reduction="none").mean())
    return torch.stack(out)

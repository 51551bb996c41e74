"""Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer", arXiv:2104.09864).

Instead of adding a position vector to each token, RoPE *rotates* each query and key: the pair of
features (x_i, x_{i+hs/2}) at position p is rotated by the angle p·θ_i, θ_i = base^(-2i/hs).
A dot product of a query rotated by p and a key rotated by p' then depends only on p − p': attention
sees relative positions, and nothing is added to the residual stream.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kqvlib._validate import require


class RotaryEmbedding(nn.Module):
    """Rotates queries or keys of shape (B, H, T, hs) by their positions offset, …, offset + T − 1."""

    def __init__(self, head_size: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        require(head_size % 2 == 0, f"RotaryEmbedding: head_size must be even, got {head_size}")
        self.max_positions = max_positions
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)  # (P, hs/2)
        # Full-width tables, so that rotating is x·cos + rotate_half(x)·sin (fewer operations per call):
        cos, sin = angles.cos(), angles.sin()  # (P, hs/2)
        self.register_buffer("cos", torch.cat([cos, cos], dim=-1).float(), persistent=False)  # (P, hs)
        self.register_buffer("sin", torch.cat([-sin, sin], dim=-1).float(), persistent=False)  # (P, hs)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.shape[-2]
        if offset + T > self.max_positions:
            raise ValueError(f"RotaryEmbedding: positions up to {offset + T - 1} asked, "
                             f"at most {self.max_positions - 1} prepared")
        cos, sin = self.cos[offset : offset + T], self.sin[offset : offset + T]  # (T, hs) each
        if cos.dtype != x.dtype:
            cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # 2 × (B, H, T, hs/2)
        # (x1, x2) ↦ (x1·cos − x2·sin, x2·cos + x1·sin): a rotation of each pair (x1_i, x2_i)
        return x * cos + torch.cat([x2, x1], dim=-1) * sin  # (B, H, T, hs)

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
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (P, hs/2)
        self.register_buffer("sin", angles.sin().float(), persistent=False)  # (P, hs/2)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.shape[-2]
        require(
            offset + T <= self.max_positions,
            f"RotaryEmbedding: positions up to {offset + T - 1} asked, at most {self.max_positions - 1} prepared",
        )
        cos = self.cos[offset : offset + T].to(x.dtype)  # (T, hs/2)
        sin = self.sin[offset : offset + T].to(x.dtype)  # (T, hs/2)
        x1, x2 = x.chunk(2, dim=-1)  # 2 × (B, H, T, hs/2)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, T, hs)

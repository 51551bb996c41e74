"""Where is each token? Three ways to tell attention (chapter 7).

Attention itself is blind to order: permute the tokens and its outputs are permuted the same way.
A model therefore gets positions from one of these pieces:

* :class:`SinusoidalPositions` — fixed vectors added to the token embeddings (Vaswani et al. 2017,
  "Attention Is All You Need", section 3.5): PE(p, 2i) = sin(p / 10000^(2i/C)), PE(p, 2i+1) = cos(…);
* :class:`LearnedPositions` — one trained vector per position, added (GPT-2);
* :class:`RotaryEmbedding` — nothing added: queries and keys are *rotated* by their positions
  (Su et al. 2021, "RoFormer", arXiv:2104.09864), so a query·key product depends only on how far
  apart the two positions are.

The first two are called as ``pos(T, offset)`` → (T, C) and added to (B, T, C) embeddings; the rotary
one is handed to :class:`~kqvlib.multihead.MultiHeadAttention` and called as ``rotary(q, offset)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kqvlib._common import is_int, require, require_dtype, require_float, require_int, require_real


def sinusoidal_encoding(T: int, d_model: int, base: float = 10000.0,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(T, d_model) table: row p is position p's vector. Built in chapter 7.

    Column 2i holds sin(p · ω_i) and column 2i+1 cos(p · ω_i), with ω_i = base^(-2i/d_model).
    Computed in float64, then rounded once to ``dtype``.
    """
    require_int("sinusoidal_encoding", "T", T, lo=0)
    require(is_int(d_model) and d_model >= 0 and d_model % 2 == 0,
            lambda: f"sinusoidal_encoding: d_model must be even, an int ≥ 0, got {d_model!r}")
    require_real("sinusoidal_encoding", "base", base, lo=0, lo_open=True)
    require_dtype("sinusoidal_encoding", "dtype", dtype)
    pos = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    omega = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (C/2,)
    pe = torch.empty(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * omega)  # (T, C/2)
    pe[:, 1::2] = torch.cos(pos * omega)  # (T, C/2)
    return pe.to(dtype)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors, ``pos(T, offset)`` → (T, C). Built in chapter 7."""

    def __init__(self, max_positions: int, d_model: int):
        super().__init__()
        require_int("SinusoidalPositions", "max_positions", max_positions, lo=1)
        require(is_int(d_model) and d_model >= 2 and d_model % 2 == 0,
                lambda: f"SinusoidalPositions: d_model must be even, an int ≥ 2, got {d_model!r}")
        self.max_positions, self.d_model = max_positions, d_model
        self.register_buffer("table", sinusoidal_encoding(max_positions, d_model), persistent=False)

    def _apply(self, fn, recurse=True):
        """After ``.double()``, ``.to(device)``, …: the table is rebuilt from float64, rounded once."""
        super()._apply(fn, recurse)
        t = self.table
        self.table = sinusoidal_encoding(self.max_positions, self.d_model, dtype=t.dtype).to(t.device)
        return self

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        _check_span("SinusoidalPositions", T, offset, self.max_positions)
        return self.table[offset : offset + T]  # (T, C)


class LearnedPositions(nn.Module):
    """One trained vector per position, ``pos(T, offset)`` → (T, C). Built in chapter 7."""

    def __init__(self, max_positions: int, d_model: int):
        super().__init__()
        require_int("LearnedPositions", "max_positions", max_positions, lo=1)
        require_int("LearnedPositions", "d_model", d_model, lo=1)
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        _check_span("LearnedPositions", T, offset, self.max_positions)
        return self.table(torch.arange(offset, offset + T, device=self.table.weight.device))  # (T, C)


class RotaryEmbedding(nn.Module):
    """Rotates queries or keys (B, H, T, hs) by their positions offset, …, offset + T − 1.
    Built in chapter 7.

    The pair of features (x_i, x_{i+hs/2}) at position p is rotated by the angle p·θ_i,
    θ_i = base^(-2i/hs). A query rotated by p and a key rotated by p' then have a dot product that
    depends only on p − p'. (The paper pairs neighbours, (x_2i, x_2i+1); pairing i with i + hs/2, as
    GPT-NeoX and Llama's Hugging Face code do, is the same up to a fixed reordering of the features,
    which the learned projections absorb.)
    """

    def __init__(self, head_size: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        require(is_int(head_size) and head_size >= 2 and head_size % 2 == 0,
                lambda: f"RotaryEmbedding: head_size must be even, an int ≥ 2, got {head_size!r}")
        require_int("RotaryEmbedding", "max_positions", max_positions, lo=1)
        require_real("RotaryEmbedding", "base", base, lo=0, lo_open=True)
        self.head_size, self.max_positions, self.base = head_size, max_positions, base
        cos, sin = self._tables(torch.float32, torch.device("cpu"))
        self.register_buffer("cos", cos, persistent=False)  # (P, hs)
        self.register_buffer("sin", sin, persistent=False)  # (P, hs)

    def _tables(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-width (P, hs) tables, so that rotating is x·cos + swap_halves(x)·sin (fewer operations per
        call). Computed in float64, then rounded once to ``dtype``."""
        hs = self.head_size
        inv_freq = self.base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
        angles = torch.outer(torch.arange(self.max_positions, dtype=torch.float64), inv_freq)  # (P, hs/2)
        cos, sin = angles.cos(), angles.sin()  # (P, hs/2)
        full = lambda a, b: torch.cat([a, b], dim=-1).to(dtype).to(device)  # (P, hs)
        return full(cos, cos), full(-sin, sin)

    def _apply(self, fn, recurse=True):
        """After ``.double()``, ``.to(device)``, …: the tables are rebuilt from float64, rounded once, so a
        float64 model rotates with float64 accuracy."""
        super()._apply(fn, recurse)
        self.cos, self.sin = self._tables(self.cos.dtype, self.cos.device)
        return self

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        require_float("RotaryEmbedding", "x", x, min_dim=2)
        require(x.shape[-1] == self.head_size, lambda: (
            f"RotaryEmbedding: x must have shape (..., T, head_size={self.head_size}), got {tuple(x.shape)}"))
        T = x.shape[-2]
        _check_span("RotaryEmbedding", T, offset, self.max_positions)
        cos, sin = self.cos[offset : offset + T], self.sin[offset : offset + T]  # (T, hs) each
        if cos.dtype != x.dtype:
            cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # 2 × (B, H, T, hs/2)
        # (x1, x2) ↦ (x1·cos − x2·sin, x2·cos + x1·sin): a rotation of each pair (x1_i, x2_i)
        return x * cos + torch.cat([x2, x1], dim=-1) * sin  # (B, H, T, hs)


def _check_span(func: str, T: int, offset: int, max_positions: int) -> None:
    """Positions offset … offset + T − 1 must lie in 0 … max_positions − 1 (a negative offset would
    silently wrap around to the end of the table)."""
    require(is_int(T) and T >= 0, lambda: f"{func}: T (the number of positions) must be an int ≥ 0, got {T!r}")
    require(is_int(offset) and offset >= 0, lambda: f"{func}: offset must be an int ≥ 0, got {offset!r}")
    require(offset + T <= max_positions, lambda: (
        f"{func}: positions up to {offset + T - 1} asked (offset {offset} + T {T}), at most "
        f"{max_positions - 1} prepared (max_positions {max_positions})"))

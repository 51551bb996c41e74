"""The transformer block (chapter 8): LayerNorm, the MLP, residual connections, dropout.

    Block(x) = x + MLP(LN₂(x'))   with   x' = x + MHA(LN₁(x))

Pre-LayerNorm (as in GPT-2): each half normalises its input, and its output is *added* to the
residual stream x, so a deep stack starts out close to the identity and gradients reach every layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import require, require_choice, require_float, require_int, require_real
from kqvlib.multihead import KVCache, MultiHeadAttention


class LayerNorm(nn.Module):
    """LayerNorm written out: (x − mean) / √(var + eps) · weight + bias over the last axis.
    Built in chapter 8.

    x: (..., C) → (..., C). The same function as ``nn.LayerNorm(C, eps, bias=bias)`` (the tests check it).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        require_int("LayerNorm", "d_model", d_model, lo=1)
        require_real("LayerNorm", "eps", eps, lo=0)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # (C,) the gain γ
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None  # (C,) the shift β

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_float("LayerNorm", "x", x)
        require(x.dim() >= 1 and x.shape[-1] == self.weight.shape[0], lambda: (
            f"LayerNorm: expected x of shape (..., {self.weight.shape[0]}), got {tuple(x.shape)}"))
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1): the biased variance, as nn.LayerNorm
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight  # (..., C)
        return y + self.bias if self.bias is not None else y


class RMSNorm(nn.Module):
    """RMSNorm written out: x / √(mean(x²) + eps) · weight over the last axis, no mean subtracted and
    no bias (Zhang & Sennrich 2019). Built in chapter 16.

    x: (..., C) → (..., C). The same function as ``nn.RMSNorm(C, eps)`` (the tests check it).
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        require_int("RMSNorm", "d_model", d_model, lo=1)
        require_real("RMSNorm", "eps", eps, lo=0)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # (C,) the gain γ

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_float("RMSNorm", "x", x)
        require(x.dim() >= 1 and x.shape[-1] == self.weight.shape[0], lambda: (
            f"RMSNorm: expected x of shape (..., {self.weight.shape[0]}), got {tuple(x.shape)}"))
        rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return x / rms * self.weight  # (..., C)


def make_norm(kind: str, d_model: int, bias: bool = True) -> nn.Module:
    """The normalisation a model asks for by name. Built in chapter 8.

    "layernorm": ``nn.LayerNorm``, the same function as :class:`LayerNorm` above in one fused kernel;
    "rmsnorm": ``nn.RMSNorm`` (divide by the root mean square; no mean subtracted, no bias).
    """
    require(kind in ("layernorm", "rmsnorm") if isinstance(kind, str) else False,
            lambda: f"make_norm: kind must be 'layernorm' or 'rmsnorm' (the norm), got {kind!r}")
    require_int("make_norm", "d_model", d_model, lo=1)
    if kind == "layernorm":
        return nn.LayerNorm(d_model, bias=bias)
    return nn.RMSNorm(d_model)


class MLP(nn.Module):
    """Position-wise feed-forward: (B, T, C) → (B, T, 4C) → GELU → (B, T, C). Built in chapter 8."""

    def __init__(self, d_model: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        require_int("MLP", "d_model", d_model, lo=1)
        require_real("MLP", "dropout", dropout, lo=0, hi=1, hi_open=True)
        self.d_model = d_model
        self.fc = nn.Linear(d_model, 4 * d_model, bias=bias)
        self.proj = nn.Linear(4 * d_model, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_float("MLP", "x", x, min_dim=1)
        require(x.shape[-1] == self.d_model,
                lambda: f"MLP: expected x of shape (..., {self.d_model}), got {tuple(x.shape)}")
        return self.drop(self.proj(F.gelu(self.fc(x))))


class SwiGLU(nn.Module):
    """The gated MLP of Llama (Shazeer 2020): proj(SiLU(gate(x)) ⊙ up(x)), (B, T, C) → (B, T, C).
    Built in chapter 16.

    ``hidden`` defaults to ⅔ · 4C (rounded to a multiple of 8), so its three matrices hold about as many
    weights as the plain MLP's two.
    """

    def __init__(self, d_model: int, hidden: int | None = None, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        require_int("SwiGLU", "d_model", d_model, lo=1)
        require_int("SwiGLU", "hidden", hidden, lo=1, none_ok=True)
        require_real("SwiGLU", "dropout", dropout, lo=0, hi=1, hi_open=True)
        self.d_model = d_model
        hidden = hidden or 8 * round(2 * 4 * d_model / 3 / 8)
        self.gate = nn.Linear(d_model, hidden, bias=bias)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.proj = nn.Linear(hidden, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_float("SwiGLU", "x", x, min_dim=1)
        require(x.shape[-1] == self.d_model,
                lambda: f"SwiGLU: expected x of shape (..., {self.d_model}), got {tuple(x.shape)}")
        return self.drop(self.proj(F.silu(self.gate(x)) * self.up(x)))  # (B, T, hidden) → (B, T, C)


class Block(nn.Module):
    """One pre-LN transformer block: multi-head attention, then the MLP, each with a residual.
    Built in chapter 8.

    x: (B, T, C) → (B, T, C). ``causal`` for a decoder (GPT), not for an encoder; ``rotary``, ``impl``
    and ``cache`` are passed to :class:`~kqvlib.multihead.MultiHeadAttention`.

    attn, mlp: modules to use instead of the MultiHeadAttention and MLP built from the other arguments
    (chapter 16's variants); ``attn(x, mask=, cache=)`` and ``mlp(x)`` map (B, T, C) to (B, T, C).
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, bias: bool = True,
                 dropout: float = 0.0, norm: str = "layernorm", impl: str = "sdpa",
                 rotary: nn.Module | None = None, attn: nn.Module | None = None,
                 mlp: nn.Module | None = None):
        super().__init__()
        require_choice("Block", "norm", norm, ("layernorm", "rmsnorm"))
        require(all(m is None or isinstance(m, nn.Module) for m in (attn, mlp)), lambda: (
            f"Block: attn and mlp must be None or modules, got {type(attn).__name__}, {type(mlp).__name__}"))
        self.d_model = d_model
        self.ln1 = make_norm(norm, d_model, bias)
        self.attn = attn if attn is not None else MultiHeadAttention(
            d_model, n_heads, causal=causal, bias=bias, dropout=dropout, impl=impl, rotary=rotary)
        self.resid_drop = nn.Dropout(dropout)
        self.ln2 = make_norm(norm, d_model, bias)
        self.mlp = mlp if mlp is not None else MLP(d_model, bias=bias, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        require_float("Block", "x", x)
        dev = next(self.parameters()).device  # any norm or attention module can be swapped in
        require(x.dim() == 3 and x.shape[-1] == self.d_model and x.device == dev,
                lambda: f"Block: expected x of shape (B, T, {self.d_model}), got {tuple(x.shape)}"
                        + ("" if x.device == dev else f" on {x.device}, the block's weights on {dev}"))
        x = x + self.resid_drop(self.attn(self.ln1(x), mask=mask, cache=cache))  # (B, T, C)
        x = x + self.mlp(self.ln2(x))  # (B, T, C)
        return x

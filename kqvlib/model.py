"""A decoder-only GPT, assembled from the pieces the book builds (chapter 10).

Shapes: B batch, T positions (≤ block_size), C = n_embd, V = vocab_size.

    idx (B, T) ─ token embedding (+ position vectors) ─▶ (B, T, C)
               ─ n_layer × Block (causal) ─▶ final norm ─▶ LM head ─▶ logits (B, T, V)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import lookup, require, require_choice, require_int, require_real
from kqvlib.block import Block, make_norm
from kqvlib.multihead import KVCache
from kqvlib.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions

POSITIONS = ("learned", "sinusoidal", "rope")


@dataclass
class GPTConfig:
    """The GPT's sizes and choices, plain values only (so checkpoints store them). Built in chapter 10."""

    vocab_size: int = 65  # Tiny Shakespeare has 65 distinct characters
    block_size: int = 64  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm
    tie_weights: bool = True  # the LM head reuses the token-embedding matrix
    attn_impl: str = "sdpa"  # "sdpa" (fused) or "scratch" (kqvlib's own) — same function
    pos_emb: str = "learned"  # "learned" or "sinusoidal" (vectors added), or "rope" (rotary, in attention)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"


class GPT(nn.Module):
    """Decoder-only transformer language model. ``forward(idx, targets)`` → (logits, loss).
    Built in chapter 10."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        _check_config(cfg)
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # Positions (chapter 7): vectors added to the embeddings, or a rotation inside every attention.
        self.pos: nn.Module | None = None
        if cfg.pos_emb == "learned":
            self.pos = LearnedPositions(cfg.block_size, cfg.n_embd)
        elif cfg.pos_emb == "sinusoidal":
            self.pos = SinusoidalPositions(cfg.block_size, cfg.n_embd)
        rotary = RotaryEmbedding(cfg.n_embd // cfg.n_head, cfg.block_size) if cfg.pos_emb == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.n_embd, cfg.n_head, causal=True, bias=cfg.bias, dropout=cfg.dropout, norm=cfg.norm,
                  impl=cfg.attn_impl, rotary=rotary)
            for _ in range(cfg.n_layer)
        )
        self.ln_f = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # (V, C), one matrix for both ends
        self.apply(self._init_weights)
        # Each residual branch ends in a projection; scale them so the residual stream's variance
        # does not grow with depth (as in GPT-2).
        for name, p in self.named_parameters():
            if name.endswith("attn.out_proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, counting the tied embedding once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, caches: list[KVCache] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids, T ≤ block_size. targets: (B, T) or None.
        caches: one KVCache per block (generation): idx then holds only the positions not yet cached.
        Returns logits (B, T, V) and the mean cross-entropy (or None without targets)."""
        require(isinstance(idx, torch.Tensor) and idx.dim() == 2 and idx.dtype in (torch.long, torch.int),
                lambda: f"GPT: idx must be integer token ids (int64 or int32) of shape (B, T), got "
                        + (f"{tuple(idx.shape)} {idx.dtype}" if isinstance(idx, torch.Tensor) else type(idx).__name__))
        require(idx.device == self.tok_emb.weight.device, lambda: (
            f"GPT: idx is on {idx.device}, the model on {self.tok_emb.weight.device}; move one to the other"))
        B, T = idx.shape
        require(caches is None or isinstance(caches, list) and len(caches) == len(self.blocks), lambda: (
            f"GPT: caches must be None or a list of one KVCache per block ({len(self.blocks)}), got "
            + (f"a list of {len(caches)}" if isinstance(caches, list) else type(caches).__name__)))
        past = len(caches[0]) if caches else 0
        require(past + T <= self.config.block_size,
                lambda: f"GPT: sequence length {past + T} exceeds block_size {self.config.block_size}")
        require(targets is None or isinstance(targets, torch.Tensor) and targets.shape == idx.shape
                and targets.dtype in (torch.long, torch.int) and targets.device == idx.device,
                lambda: f"GPT: targets have shape {tuple(targets.shape)} {targets.dtype} on {targets.device}, "
                        f"expected integer ids of shape {tuple(idx.shape)} like idx" if isinstance(targets, torch.Tensor)
                else f"GPT: targets must be a tensor of ids or None, got {type(targets).__name__}")
        x = lookup("GPT", "idx", self.tok_emb, idx)  # (B, T, C); an id outside the vocabulary is named
        if self.pos is not None:
            x = x + self.pos(T, offset=past)  # + (T, C)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=caches[i] if caches else None)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            try:
                loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))  # (B·T, V) vs (B·T,)
            except (IndexError, RuntimeError):  # raised for a target outside 0..V-1 (checked only then)
                V = self.config.vocab_size
                bad = targets[((targets < 0) & (targets != -100)) | (targets >= V)]
                if not len(bad):
                    raise
                raise ValueError(f"GPT: targets hold id {bad[0].item()}, outside the vocabulary (vocab_size {V}: "
                                 f"ids 0..{V - 1}, or -100 to ignore a position)") from None
        return logits, loss


def _check_config(cfg: GPTConfig) -> None:
    """Every field of a GPTConfig, checked before anything is built; the error names the field."""
    require(isinstance(cfg, GPTConfig), lambda: f"GPT: cfg must be a GPTConfig, got {type(cfg).__name__}")
    for name in ("vocab_size", "block_size", "n_head", "n_embd"):
        require_int("GPTConfig", name, getattr(cfg, name), lo=1)
    require_int("GPTConfig", "n_layer", cfg.n_layer, lo=0)
    require(cfg.n_embd % cfg.n_head == 0, f"GPTConfig: n_embd={cfg.n_embd} not divisible by n_head={cfg.n_head}")
    require_real("GPTConfig", "dropout", cfg.dropout, lo=0, hi=1, hi_open=True)
    require_choice("GPTConfig", "pos_emb", cfg.pos_emb, POSITIONS)
    require_choice("GPTConfig", "attn_impl", cfg.attn_impl, ("sdpa", "scratch"))
    require_choice("GPTConfig", "norm", cfg.norm, ("layernorm", "rmsnorm"))
    require(cfg.pos_emb != "rope" or (cfg.n_embd // cfg.n_head) % 2 == 0, lambda: (
        f"GPTConfig: pos_emb='rope' rotates pairs of features, so the head size n_embd / n_head must be even, "
        f"got n_embd={cfg.n_embd}, n_head={cfg.n_head}"))

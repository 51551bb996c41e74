"""A decoder-only GPT, assembled from the pieces the book builds.

Shapes: B batch, T positions (≤ block_size), C = n_embd, V = vocab_size.

    idx (B, T) ─ token embedding + position embedding ─▶ (B, T, C)
                ─ n_layer × Block ─▶ final LayerNorm ─▶ LM head ─▶ logits (B, T, V)

    Block(x) = x + MLP(LN(x + MHA(LN(x))))   — pre-LayerNorm, residual around each half
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._validate import require
from kqvlib.attention import MultiHeadAttention


@dataclass
class GPTConfig:
    vocab_size: int = 65  # Tiny Shakespeare has 65 distinct characters
    block_size: int = 64  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm
    tie_weights: bool = True  # the LM head reuses the token-embedding matrix
    attn_impl: str = "sdpa"  # "sdpa" (fused) or "scratch" (kqvlib's own) — same function


class MLP(nn.Module):
    """Position-wise feed-forward: (B, T, C) → (B, T, 4C) → GELU → (B, T, C)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One transformer block: masked multi-head attention, then the MLP, each pre-LN with a residual."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = MultiHeadAttention(
            cfg.n_embd, cfg.n_head, causal=True, bias=cfg.bias, dropout=cfg.dropout, impl=cfg.attn_impl
        )
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.resid_drop(self.attn(self.ln1(x)))  # (B, T, C)
        x = x + self.mlp(self.ln2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    """Decoder-only transformer language model. ``forward(idx, targets)`` → (logits, loss)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        require(cfg.n_embd % cfg.n_head == 0, f"GPTConfig: n_embd={cfg.n_embd} not divisible by n_head={cfg.n_head}")
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
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
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids, T ≤ block_size. targets: (B, T) or None.
        Returns logits (B, T, V) and the mean cross-entropy (or None without targets)."""
        require(
            idx.dim() == 2 and not idx.is_floating_point(),
            f"GPT: idx must be integer token ids of shape (B, T), got {tuple(idx.shape)} {idx.dtype}",
        )
        B, T = idx.shape
        require(T <= self.config.block_size, f"GPT: sequence length {T} exceeds block_size {self.config.block_size}")
        if targets is not None:
            require(
                targets.shape == idx.shape,
                f"GPT: targets have shape {tuple(targets.shape)}, expected {tuple(idx.shape)} like idx",
            )
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))  # (B·T, V) vs (B·T,)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by ``max_new_tokens`` sampled tokens → (B, T + max_new_tokens).

        temperature > 0 divides the logits (lower = more conservative); top_k keeps only the k most
        likely tokens. Reproducible under ``torch.manual_seed`` or a given ``generator``.
        """
        require(temperature > 0, f"generate: temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]  # (B, ≤ block_size)
            logits, _ = self(context)
            logits = logits[:, -1, :] / temperature  # (B, V): the next-token scores
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)  # (B, V)
            nxt = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
        self.train(was_training)
        return idx

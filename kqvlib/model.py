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
from kqvlib.attention import KVCache, MultiHeadAttention


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
    pos_emb: str = "learned"  # "learned" (a vector per position, added) or "rope" (rotary, in attention)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"


def make_norm(cfg: GPTConfig) -> nn.Module:
    """LayerNorm (subtract the mean, divide by the std) or RMSNorm (divide by the root mean square)."""
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd)
    raise ValueError(f"GPTConfig.norm must be 'layernorm' or 'rmsnorm', got {cfg.norm!r}")


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
        self.ln1 = make_norm(cfg)
        self.attn = MultiHeadAttention(
            cfg.n_embd, cfg.n_head, causal=True, bias=cfg.bias, dropout=cfg.dropout, impl=cfg.attn_impl,
            rope_positions=cfg.block_size if cfg.pos_emb == "rope" else None,
        )
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.resid_drop(self.attn(self.ln1(x), cache=cache))  # (B, T, C)
        x = x + self.mlp(self.ln2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    """Decoder-only transformer language model. ``forward(idx, targets)`` → (logits, loss)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        require(cfg.n_embd % cfg.n_head == 0, f"GPTConfig: n_embd={cfg.n_embd} not divisible by n_head={cfg.n_head}")
        require(cfg.pos_emb in ("learned", "rope"), f"GPTConfig.pos_emb must be 'learned' or 'rope', got {cfg.pos_emb!r}")
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_emb == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
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
        if idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"GPT: idx must be integer token ids of shape (B, T), got {tuple(idx.shape)} {idx.dtype}")
        B, T = idx.shape
        past = len(caches[0]) if caches else 0
        if past + T > self.config.block_size:
            raise ValueError(f"GPT: sequence length {past + T} exceeds block_size {self.config.block_size}")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"GPT: targets have shape {tuple(targets.shape)}, expected {tuple(idx.shape)} like idx")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))  # + (T, C)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=caches[i] if caches else None)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))  # (B·T, V) vs (B·T,)
        return logits, loss

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend idx (B, T) by ``max_new_tokens`` sampled tokens → (B, T + max_new_tokens).

        temperature > 0 divides the logits (lower = more conservative); top_k keeps only the k most
        likely tokens. Reproducible under ``torch.manual_seed`` or a given ``generator``.

        With ``use_cache`` each block keeps its keys and values (a KV cache), so a new token costs one
        position's work instead of the whole context's. The result is the same as without the cache:
        once the text outgrows block_size, the context is cropped to its last block_size tokens and
        recomputed, exactly as the uncached loop does.
        """
        require(temperature > 0, f"generate: temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        with torch.inference_mode():  # no autograd bookkeeping at all: faster than no_grad
            block = self.config.block_size
            caches = None
            for _ in range(max_new_tokens):
                if caches is not None and idx.size(1) <= block:
                    logits, _ = self(idx[:, -1:], caches=caches)  # only the newest token is new
                else:
                    caches = [KVCache(block) for _ in self.blocks] if use_cache else None
                    logits, _ = self(idx[:, -block:], caches=caches)  # (B, ≤ block_size) from scratch
                logits = logits[:, -1, :] / temperature  # (B, V): the next-token scores
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)  # (B, V)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
        self.train(was_training)
        return idx.clone()  # outside inference mode: an ordinary tensor, usable with autograd

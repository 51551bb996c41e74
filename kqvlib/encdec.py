"""The encoder–decoder (chapter 12): one MultiHeadAttention used three ways, and a digit task to train it.

    src (B, S) ─ embed + positions ─ encoder: n_enc × Block(causal=False) ─ LN ─▶ memory (B, S, C)
    tgt_in (B, T) ─ embed + positions ─ decoder: n_dec × DecoderBlock(x, memory) ─ LN ─ head ─▶ (B, T, V)

An encoder block attends *bidirectionally* (no mask but the source's padding, as in BERT); a decoder
block attends *causally* to the target so far (as in GPT), then *across* to the encoder's output
(queries from the decoder, keys and values from ``memory``, as in the original Transformer and T5).

The task: digit strings of length 5–10 turned into their reversal (or their sorted digits). Tokens are
PAD = 0, BOS = 1, EOS = 2 and the digits 0–9 as 3–12. Held-out sequences are those whose checksum
Σ (i+1)·dᵢ is divisible by 10: the training sampler never produces them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import (eval_mode, lookup, require, require_choice, require_float, require_generator, require_ids,
                            require_int, require_ints, require_module, require_real)
from kqvlib.block import MLP, Block
from kqvlib.multihead import MultiHeadAttention
from kqvlib.positions import SinusoidalPositions

__all__ = ["PAD", "BOS", "EOS", "EncDecConfig", "DecoderBlock", "EncoderDecoder", "is_held_out",
           "digit_batch", "to_digits", "greedy_decode", "exact_match", "train_seq2seq"]

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3  # digit d is token DIGIT0 + d


@dataclass
class EncDecConfig:
    """Sizes of an :class:`EncoderDecoder`. Built in chapter 12.

    max_len: the longest source or target sequence (tokens, EOS and BOS included) it can take."""

    vocab_size: int = 13  # PAD, BOS, EOS and ten digits
    d_model: int = 64
    n_heads: int = 4
    n_enc_layers: int = 2
    n_dec_layers: int = 2
    max_len: int = 16
    pad_id: int = PAD


class DecoderBlock(nn.Module):
    """Pre-LN decoder block: causal self-attention, cross-attention to the encoder, MLP; three residuals.
    Built in chapter 12.

    x: (B, T, C), memory: (B, S, C), memory_mask: None or bool (B, 1, 1, S), True = a real source
    token → (B, T, C), and the cross-attention weights (B, H, T, S) when ``return_weights``.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        require_ints("DecoderBlock", lo=1, d_model=d_model, n_heads=n_heads)
        self.d_model = d_model
        self.ln1 = nn.LayerNorm(d_model, bias=bias)
        self.self_attn = MultiHeadAttention(d_model, n_heads, causal=True, bias=bias)
        self.ln2 = nn.LayerNorm(d_model, bias=bias)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, causal=False, bias=bias)
        self.ln3 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = MLP(d_model, bias=bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                return_weights: bool = False):
        require_float("DecoderBlock", "x", x)
        require_float("DecoderBlock", "memory", memory)
        require(x.dim() == 3 and x.shape[-1] == self.d_model and memory.dim() == 3 and memory.shape[0] == x.shape[0]
                and memory.shape[-1] == self.d_model and memory.dtype == x.dtype and memory.device == x.device, lambda: (
                    f"DecoderBlock: expected x (B, T, {self.d_model}) and memory (B, S, {self.d_model}) of one dtype "
                    f"and device, got {tuple(x.shape)} {x.dtype} and {tuple(memory.shape)} {memory.dtype} on {memory.device}"))
        _check_memory_mask("DecoderBlock", "memory_mask", memory_mask, memory)
        x = x + self.self_attn(self.ln1(x))  # (B, T, C): the target so far, causally
        h = self.cross_attn(self.ln2(x), context=memory, mask=memory_mask,
                            return_weights=return_weights)  # queries (B, T, C), keys (B, S, C)
        h, weights = h if return_weights else (h, None)
        x = x + h  # (B, T, C)
        x = x + self.mlp(self.ln3(x))  # (B, T, C)
        return (x, weights) if return_weights else x


def _check_memory_mask(func: str, name: str, mask, memory: torch.Tensor) -> None:
    """None, or a bool mask (True = a real source token) that broadcasts to (B, 1, 1, S) like memory (B, S, C)."""
    want = (memory.shape[0], 1, 1, memory.shape[1])
    ok = mask is None or isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.device == memory.device \
        and mask.dim() == 4 and all(m in (1, w) for m, w in zip(mask.shape, want))  # broadcasts to (B, 1, 1, S)
    require(ok, lambda: f"{func}: {name} must be None or a bool mask of shape (B, 1, 1, S) = {want} like memory, got "
                        + (f"{mask.dtype} {tuple(mask.shape)} on {mask.device}" if isinstance(mask, torch.Tensor)
                           else type(mask).__name__))


class EncoderDecoder(nn.Module):
    """Encoder–decoder transformer, ``forward(src (B, S), tgt_in (B, T))`` → logits (B, T, V).
    Built in chapter 12.

    One token embedding (shared by both sides, they speak the same digits) plus sinusoidal positions;
    encoder blocks are chapter 8's :class:`~kqvlib.block.Block` with ``causal=False``; a final
    LayerNorm on each side, as in pre-LN stacks. With ``return_weights`` it also returns the
    cross-attention weights of every decoder block, a list of (B, H, T, S) tensors.
    """

    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        require(isinstance(cfg, EncDecConfig), lambda: f"EncoderDecoder: cfg must be an EncDecConfig, got {type(cfg).__name__}")
        for name in ("vocab_size", "d_model", "n_heads", "max_len", "n_enc_layers", "n_dec_layers"):
            require_int("EncDecConfig", name, getattr(cfg, name), lo=0 if name.endswith("layers") else 1)
        require_int("EncDecConfig", "pad_id", cfg.pad_id, lo=0, hi=cfg.vocab_size - 1)
        require(cfg.d_model % cfg.n_heads == 0 and cfg.d_model % 2 == 0,
                lambda: f"EncDecConfig: d_model={cfg.d_model} must be even and divisible by n_heads={cfg.n_heads}")
        self.config = cfg
        C = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, C)
        self.pos = SinusoidalPositions(cfg.max_len, C)
        self.encoder = nn.ModuleList([Block(C, cfg.n_heads, causal=False) for _ in range(cfg.n_enc_layers)])
        self.ln_enc = nn.LayerNorm(C)
        self.decoder = nn.ModuleList([DecoderBlock(C, cfg.n_heads) for _ in range(cfg.n_dec_layers)])
        self.ln_dec = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)

    def embed(self, idx: torch.Tensor, name: str = "idx") -> torch.Tensor:
        """(B, T) token ids → (B, T, C): token vectors plus position vectors."""
        require_ids("EncoderDecoder", name, idx, dim=2)
        require(idx.shape[1] <= self.config.max_len, lambda: (
            f"EncoderDecoder: expected {name} of shape (B, T ≤ {self.config.max_len}), got {tuple(idx.shape)}"))
        return lookup("EncoderDecoder", name, self.tok_emb, idx) + self.pos(idx.shape[1])  # (B, T, C) + (T, C)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) → memory (B, S, C) and the source's padding mask (B, 1, 1, S), True = real."""
        x = self.embed(src, "src")  # (B, S, C)
        mask = (src != self.config.pad_id)[:, None, None, :]  # (B, S) → (B, 1, 1, S)
        for block in self.encoder:
            x = block(x, mask=mask)  # bidirectional: every real token sees every real token
        return self.ln_enc(x), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None,
               return_weights: bool = False):
        """tgt_in (B, T), memory (B, S, C) → logits (B, T, V) [, list of (B, H, T, S) weights]."""
        require_float("EncoderDecoder.decode", "memory", memory)
        require(memory.dim() == 3 and memory.shape[-1] == self.config.d_model, lambda: (
            f"EncoderDecoder.decode: memory must be (B, S, {self.config.d_model}), got {tuple(memory.shape)}"))
        _check_memory_mask("EncoderDecoder.decode", "mask", mask, memory)
        x, weights = self.embed(tgt_in, "tgt_in"), []  # (B, T, C)
        for block in self.decoder:
            if return_weights:
                x, w = block(x, memory, mask, return_weights=True)
                weights.append(w)  # (B, H, T, S)
            else:
                x = block(x, memory, mask)
        logits = self.lm_head(self.ln_dec(x))  # (B, T, V)
        return (logits, weights) if return_weights else logits

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, return_weights: bool = False):
        require_ids("EncoderDecoder", "src", src, dim=2)
        require_ids("EncoderDecoder", "tgt_in", tgt_in, dim=2)
        require(src.shape[0] == tgt_in.shape[0], lambda: (
            f"EncoderDecoder: expected src (B, S) and tgt_in (B, T), got {tuple(src.shape)} "
            f"and {tuple(tgt_in.shape)}"))
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask, return_weights)


# --- the digit task ----------------------------------------------------------------------------------

def is_held_out(digits: torch.Tensor) -> torch.Tensor:
    """(B, L) digits 0–9, padded with −1 → (B,) bool: Σ (i+1)·dᵢ divisible by 10. Built in chapter 12."""
    require_ids("is_held_out", "digits", digits, dim=2)
    require(bool(((digits >= -1) & (digits <= 9)).all()), lambda: f"is_held_out: digits must be 0–9 (or −1 for "
            f"padding), got values {sorted(set(digits.flatten().tolist()))[:12]}")
    weights = torch.arange(1, digits.shape[1] + 1, device=digits.device)  # (L,)
    return (digits.clamp(min=0) * weights).sum(dim=1) % 10 == 0  # (B,)


def _targets(digits: torch.Tensor, lengths: torch.Tensor, task: str) -> torch.Tensor:
    """(B, L) digits padded with −1 → the (B, L) answer, padded the same way."""
    if task == "sort":  # padding (−1) sorts first: roll each row so the digits start at 0
        s = digits.sort(dim=1).values  # (B, L)
        return torch.stack([r.roll(-(len(r) - int(n))) for r, n in zip(s, lengths)])
    L = digits.shape[1]
    i = torch.arange(L)[None, :]  # (1, L)
    src_pos = (lengths[:, None] - 1 - i).clamp(min=0)  # (B, L): output i reads input n − 1 − i
    return torch.where(i < lengths[:, None], digits.gather(1, src_pos), -1)


def digit_batch(batch_size: int, generator: torch.Generator, task: str = "reverse", split: str = "train",
                min_len: int = 5, max_len: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of the digit task. Built in chapter 12.

    Returns src (B, max_len + 1) = digits, EOS, PAD…; tgt_in (B, max_len + 1) = BOS, answer, PAD…;
    tgt_out (B, max_len + 1) = answer, EOS, PAD… (the next token at every position of tgt_in).
    split "train" never gives a held-out sequence (:func:`is_held_out`), split "test" gives only them.
    """
    for name, v, lo in (("batch_size", batch_size, 1), ("min_len", min_len, 1), ("max_len", max_len, min_len)):
        require_int("digit_batch", name, v, lo=lo)
    require_generator("digit_batch", "generator", generator)
    require_choice("digit_batch", "task", task, ("reverse", "sort"))
    require_choice("digit_batch", "split", split, ("train", "test"))
    rows, lens, have = [], [], 0
    while have < batch_size:  # draw, then keep the rows of the wanted split (about 90% or 10%)
        n = torch.randint(min_len, max_len + 1, (4 * batch_size,), generator=generator)  # (4B,)
        d = torch.randint(0, 10, (4 * batch_size, max_len), generator=generator)  # (4B, L)
        d = torch.where(torch.arange(max_len)[None, :] < n[:, None], d, -1)
        keep = is_held_out(d) == (split == "test")
        rows.append(d[keep])
        lens.append(n[keep])
        have += int(keep.sum())
    digits, n = torch.cat(rows)[:batch_size], torch.cat(lens)[:batch_size]  # (B, L), (B,)
    answer = _targets(digits, n, task)  # (B, L)
    pad = torch.full((batch_size, 1), -1)
    as_tokens = lambda d: torch.where(d >= 0, d + DIGIT0, PAD)  # noqa: E731  −1 → PAD
    src = as_tokens(torch.cat([digits, pad], dim=1))  # (B, L + 1)
    out = as_tokens(torch.cat([answer, pad], dim=1))  # (B, L + 1)
    rows_ = torch.arange(batch_size)
    src[rows_, n] = EOS
    out[rows_, n] = EOS
    tgt_in = torch.cat([torch.full((batch_size, 1), BOS), out[:, :-1]], dim=1)  # (B, L + 1)
    tgt_in = torch.where(tgt_in == EOS, PAD, tgt_in)  # nothing is read after the last answer digit
    return src, tgt_in, out


def to_digits(ids: torch.Tensor) -> str:
    """(T,) token ids → "31415" (the digits up to the first EOS or PAD). Built in chapter 12."""
    require_ids("to_digits", "ids", ids, dim=1)
    require(bool(((ids >= 0) & (ids < DIGIT0 + 10)).all()), lambda: f"to_digits: ids must be tokens 0..{DIGIT0 + 9} "
            f"(PAD, BOS, EOS, digits 0–9 as {DIGIT0}–{DIGIT0 + 9}), got {[t for t in ids.tolist() if not 0 <= t < DIGIT0 + 10][:5]}")
    out = []
    for t in ids.tolist():
        if t in (EOS, PAD):
            break
        out.append("^" if t == BOS else str(t - DIGIT0))
    return "".join(out)


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, steps: int) -> torch.Tensor:
    """src (B, S) → (B, steps) tokens, each the most likely next one. Built in chapter 12.

    Works with any ``model(src, tgt_in)`` → (B, T, V). An :class:`EncoderDecoder` encodes the source
    once and reruns only its decoder on the whole prefix at every step; any other model is rerun whole
    (no cache: these sequences are a dozen tokens)."""
    require(callable(model), lambda: f"greedy_decode: model must be callable, model(src, tgt_in), got {type(model).__name__}")
    require_ids("greedy_decode", "src", src, dim=2)
    require_int("greedy_decode", "steps", steps, lo=0)
    tgt = torch.full((src.shape[0], 1), BOS, device=src.device)  # (B, 1)
    with eval_mode(model):
        # memory (B, S, C) and the source's mask (B, 1, 1, S): they do not depend on the target
        encoded = model.encode(src) if isinstance(model, EncoderDecoder) else None
        for _ in range(steps):
            logits = model(src, tgt) if encoded is None else model.decode(tgt, *encoded)  # (B, t, V)
            nxt = logits[:, -1].argmax(dim=-1)  # (B,)
            tgt = torch.cat([tgt, nxt[:, None]], dim=1)  # (B, t + 1)
    return tgt[:, 1:]


def exact_match(model: nn.Module, src: torch.Tensor, tgt_out: torch.Tensor) -> float:
    """Fraction of sequences whose greedy answer, EOS included, is exactly tgt_out (B, T).
    Built in chapter 12."""
    require_ids("exact_match", "src", src, dim=2)
    require_ids("exact_match", "tgt_out", tgt_out, dim=2)
    require(src.shape[0] == tgt_out.shape[0] > 0 and bool((tgt_out >= 0).all()), lambda: (
        f"exact_match: src {tuple(src.shape)} and tgt_out {tuple(tgt_out.shape)} must hold as many sequences, at "
        f"least one (the fraction of an empty batch is undefined), and tgt_out token ids ≥ 0"))
    pred = greedy_decode(model, src, tgt_out.shape[1])  # (B, T)
    right = (pred == tgt_out) | (tgt_out == PAD)  # (B, T): positions after EOS do not count
    return right.all(dim=1).float().mean().item()


def train_seq2seq(model: nn.Module, steps: int, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                  task: str = "reverse", warmup: int = 30) -> list[float]:
    """Train ``model(src, tgt_in)`` → (B, T, V) on freshly drawn training batches; return the losses.
    Built in chapter 12.

    AdamW, linear warm-up then cosine decay to lr/10, gradients clipped at 1. The batches depend only
    on ``seed``, so two models trained with the same seed see the same batches."""
    require_module("train_seq2seq", "model", model)
    for name, v, lo in (("steps", steps, 0), ("batch_size", batch_size, 1), ("seed", seed, None), ("warmup", warmup, 1)):
        require_int("train_seq2seq", name, v, lo=lo)
    require_real("train_seq2seq", "lr", lr, lo=0, lo_open=True)
    require_choice("train_seq2seq", "task", task, ("reverse", "sort"))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    model.train()
    for step in range(steps):
        frac = min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * frac
        src, tgt_in, tgt_out = digit_batch(batch_size, g, task)
        logits = model(src, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)  # (B·T, V)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses

"""Generating text from a trained GPT (chapter 11): sample one token at a time, with a KV cache.

Without a cache every new token recomputes the whole prefix; with one, each block keeps the keys and
values it has computed (:class:`~kqvlib.multihead.KVCache`), so a new token costs one position's work.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import eval_mode, require
from kqvlib.multihead import KVCache


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from next-token scores. Built in chapter 11.

    logits: (B, V) → (B, 1) token ids. temperature > 0 divides the logits (lower = more conservative);
    top_k keeps only the k most likely tokens.
    """
    logits = logits / temperature  # (B, V)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend idx (B, T) by ``max_new_tokens`` sampled tokens → (B, T + max_new_tokens). Built in chapter 11.

    ``model`` is a :class:`~kqvlib.model.GPT` (anything with ``config.block_size``, ``blocks`` and
    ``forward(idx, caches=…)``). Reproducible under ``torch.manual_seed`` or a given ``generator``.

    With ``use_cache`` each block keeps its keys and values, so a new token costs one position's work
    instead of the whole context's. The result is the same as without the cache: once the text outgrows
    block_size, the context is cropped to its last block_size tokens and recomputed, exactly as the
    uncached loop does.
    """
    require(temperature > 0, lambda: f"generate: temperature must be > 0, got {temperature}")
    block = model.config.block_size
    caches = None
    with eval_mode(model), torch.inference_mode():  # no autograd bookkeeping at all: faster than no_grad
        for _ in range(max_new_tokens):
            if caches is not None and idx.size(1) <= block:
                logits, _ = model(idx[:, -1:], caches=caches)  # only the newest token is new
            else:
                caches = [KVCache(block) for _ in model.blocks] if use_cache else None
                logits, _ = model(idx[:, -block:], caches=caches)  # (B, ≤ block_size) from scratch
            nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
    return idx.clone()  # outside inference mode: an ordinary tensor, usable with autograd

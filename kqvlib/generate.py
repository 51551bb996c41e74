"""Generating text from a trained GPT (chapter 11): sample one token at a time, with a KV cache.

Sampling rules (:func:`sample_next`, in this order): temperature (0 = greedy, the argmax), then top-k,
then top-p (nucleus: the smallest set of most likely tokens whose probability reaches p).

Without a cache every new token recomputes the whole prefix; with one, each block keeps the keys and
values it has computed (:class:`~kqvlib.multihead.KVCache`), so a new token costs one position's work.
That work is so small that the cost of launching each operation dominates it, so the cached step here
is lean: the weights are gathered once per call (queries, keys and values in one matrix), the rotary
angles are looked up once per token for all layers, and each layer does about a dozen operations.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import eval_mode, require
from kqvlib.multihead import KVCache
from kqvlib.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, V) scores → (B, V) with all but the k largest per row set to −inf (ties with the k-th kept).
    Built in chapter 11."""
    require(k >= 1, lambda: f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, min(k, logits.size(-1))).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) scores → (B, V) keeping, per row, the smallest set of most likely tokens whose
    probabilities add up to at least p (the token that crosses p is kept); the rest become −inf.
    Built in chapter 11 (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration",
    arXiv:1904.09751)."""
    require(0 < p <= 1, lambda: f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V) each
    probs = F.softmax(sorted_logits, dim=-1)  # (B, V), most likely first
    before = probs.cumsum(dim=-1) - probs  # (B, V): the mass of the tokens ranked above each one
    drop_sorted = before >= p  # (B, V): p is already reached without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # (B, V) back in vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None, top_p: float | None = None) -> torch.Tensor:
    """One token per row from next-token scores. Built in chapter 11.

    logits: (B, V) → (B, 1) token ids. temperature > 0 divides the logits (lower = more conservative);
    temperature 0 is greedy decoding (the most likely token, no randomness). Then top_k keeps only the
    k most likely tokens and top_p the smallest set whose probability reaches p.
    """
    require(temperature >= 0, lambda: f"sample_next: temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    if temperature != 1.0:
        logits = logits / temperature  # (B, V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        require(0 < top_p <= 1, lambda: f"sample_next: top_p must be in (0, 1], got {top_p}")
        if top_p < 1.0:
            logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


class _LeanStep:
    """The cached step of a GPT for one new position, in few, large operations (chapter 11).

    Everything that does not change from token to token is done once in ``__init__``: per layer the
    query, key and value weights are stacked into one (3C, C) matrix, and the keys and values of every
    layer live in one preallocated (L, B, 2, H, block_size, hs) tensor, filled from the prefill caches.
    """

    def __init__(self, model: nn.Module, caches: list[KVCache]):
        cfg, first = model.config, model.blocks[0].attn
        self.H, self.hs, self.C = first.n_heads, first.head_size, first.d_model
        self.model, self.pos, self.n = model, model.pos, len(caches[0])
        k0 = caches[0]._k  # (B, H, block_size, hs)
        B = k0.shape[0]
        self.kv = k0.new_empty(len(caches), B, 2, self.H, cfg.block_size, self.hs)
        self.layers = []
        for i, (blk, cache) in enumerate(zip(model.blocks, caches)):
            a = blk.attn
            self.kv[i, :, 0, :, : self.n] = cache._k[..., : self.n, :]
            self.kv[i, :, 1, :, : self.n] = cache._v[..., : self.n, :]
            w_qkv = torch.cat([a.q_proj.weight, a.kv_proj.weight])  # (3C, C)
            b_qkv = None if a.q_proj.bias is None else torch.cat([a.q_proj.bias, a.kv_proj.bias])
            self.layers.append((self._norm(blk.ln1), w_qkv, b_qkv, a.out_proj.weight, a.out_proj.bias,
                                self._norm(blk.ln2), blk.mlp.fc.weight, blk.mlp.fc.bias,
                                blk.mlp.proj.weight, blk.mlp.proj.bias))
        self.final_norm, self.w_head = self._norm(model.ln_f), model.lm_head.weight
        rot = first.rotary
        if isinstance(rot, RotaryEmbedding):
            # Rotate q, k and v with one multiply-add: v's "rotation" is cos 1, sin 0 (it is not rotated).
            P = rot.cos.shape[0]
            ones, zeros = rot.cos.new_ones(P, self.hs), rot.cos.new_zeros(P, self.hs)
            self.cos3 = torch.stack([rot.cos, rot.cos, ones], dim=1)[:, :, None, :]  # (P, 3, 1, hs)
            self.sin3 = torch.stack([rot.sin, rot.sin, zeros], dim=1)[:, :, None, :]  # (P, 3, 1, hs)
        else:
            self.cos3 = None

    @staticmethod
    def _norm(m: nn.Module):
        if isinstance(m, nn.LayerNorm):  # call the function directly: no module dispatch per token
            return lambda x, s=m.normalized_shape, w=m.weight, b=m.bias, e=m.eps: F.layer_norm(x, s, w, b, e)
        return m

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, 1) the newest token → logits (B, V) for the one after it."""
        n, H, hs = self.n, self.H, self.hs
        x = F.embedding(idx[:, 0], self.model.tok_emb.weight)  # (B, C)
        if isinstance(self.pos, (LearnedPositions, SinusoidalPositions)):
            x = x + self.pos(1, offset=n)  # + (1, C)
        B = x.shape[0]
        cos, sin = (self.cos3[n], self.sin3[n]) if self.cos3 is not None else (None, None)  # (3, 1, hs)
        for (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_fc, b_fc, w_pr, b_pr), kv in zip(self.layers, self.kv):
            qkv = F.linear(ln1(x), w_qkv, b_qkv).view(B, 3, H, hs)  # (B, C) → (B, 3C) → (B, 3, H, hs)
            if cos is not None:  # (x1, x2) ↦ (x1·cos − x2·sin, x2·cos + x1·sin), halves swapped by roll
                qkv = torch.addcmul(qkv * cos, qkv.roll(hs // 2, dims=-1), sin)  # (B, 3, H, hs)
            kv[:, :, :, n] = qkv[:, 1:]  # this position's keys and values into the cache
            y = F.scaled_dot_product_attention(qkv[:, 0, :, None], kv[:, 0, :, : n + 1],
                                               kv[:, 1, :, : n + 1])  # (B, H, 1, hs)
            x = x + F.linear(y.view(B, H * hs), w_o, b_o)  # (B, C)
            x = x + F.linear(F.gelu(F.linear(ln2(x), w_fc, b_fc)), w_pr, b_pr)  # (B, C)
        self.n = n + 1
        return F.linear(self.final_norm(x), self.w_head)  # (B, V)


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    top_p: float | None = None,
) -> torch.Tensor:
    """Extend idx (B, T) by ``max_new_tokens`` sampled tokens → (B, T + max_new_tokens). Built in chapter 11.

    ``model`` is a :class:`~kqvlib.model.GPT` (anything with ``config.block_size``, ``blocks`` and
    ``forward(idx, caches=…)``). Reproducible under ``torch.manual_seed`` or a given ``generator``.
    Sampling as in :func:`sample_next` (temperature 0 = greedy).

    With ``use_cache`` each block keeps its keys and values, so a new token costs one position's work
    instead of the whole context's. The result is the same as without the cache: once the text outgrows
    block_size, the context is cropped to its last block_size tokens and recomputed, exactly as the
    uncached loop does.
    """
    require(temperature >= 0, lambda: f"generate: temperature must be >= 0, got {temperature}")
    require(idx.dim() == 2 and idx.shape[1] >= 1,
            lambda: f"generate: idx must be (B, T) token ids with T >= 1, got {tuple(idx.shape)}")
    block = model.config.block_size
    B, T0 = idx.shape
    out = idx.new_empty(B, T0 + max_new_tokens)  # filled in place: no concatenation per token
    out[:, :T0] = idx
    step = None
    with eval_mode(model), torch.inference_mode():  # no autograd bookkeeping at all: faster than no_grad
        for t in range(T0, T0 + max_new_tokens):
            if step is not None and t <= block:
                logits = step(out[:, t - 1 : t])  # only the newest token is new: (B, V)
            else:
                caches = [KVCache(block) for _ in model.blocks] if use_cache else None
                logits, _ = model(out[:, max(0, t - block) : t], caches=caches)  # from scratch
                logits = logits[:, -1, :]  # (B, V)
                if use_cache and t < block:  # room for more positions: continue with the lean step
                    step = _LeanStep(model, caches)
                else:
                    step = None
            out[:, t : t + 1] = sample_next(logits, temperature, top_k, generator, top_p)  # (B, 1)
    return out.clone()  # outside inference mode: an ordinary tensor, usable with autograd

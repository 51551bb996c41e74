"""Generating text from a trained GPT (chapter 11): sample one token at a time, with a KV cache.

Sampling rules (:func:`sample_next`, in this order): temperature (0 = greedy, the argmax), then top-k,
then top-p (nucleus: the smallest set of most likely tokens whose probability reaches p).

Without a cache every new token recomputes the whole prefix; with one, each block keeps the keys and
values it has computed (:class:`~kqvlib.multihead.KVCache`), so a new token costs one position's work.
That work is so small that launching each operation dominates it, so the cached step is lean: weights
gathered once per call (Q, K, V in one matrix), rotary angles looked up once per token for all layers.

Past the context a model with rotary positions keeps going with a *rolling* cache (a ring of
W = block_size slots): every position, in every layer, attends to the W most recent positions (sliding-
window attention), each token rotated by its index in the whole text; without the cache the same
function is recomputed (:func:`window_logits`). With added position vectors, or blocks the lean step
does not know (grouped-query heads…), both paths crop the text to its last W tokens and recompute.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import eval_mode, lookup, require, require_float, require_ids, require_int, require_real, require_sampling
from kqvlib.block import MLP
from kqvlib.multihead import KVCache, MultiHeadAttention, merge_heads, split_heads
from kqvlib.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions

_NO_TOKEN = "sample_next: logits hold a row with a NaN (or +inf), or with no finite logit: no token to pick"


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, V) scores → (B, V) with all but the k largest per row set to −inf (ties with the k-th kept).
    Built in chapter 11."""
    require_float("top_k_filter", "logits", logits, min_dim=1)
    require_int("top_k_filter", "k (top_k)", k, lo=1)
    kth = torch.topk(logits, min(k, logits.size(-1))).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) scores → (B, V) keeping, per row, the smallest set of most likely tokens whose
    probabilities add up to at least p (the token that crosses p is kept); the rest become −inf.
    Built in chapter 11 (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration",
    arXiv:1904.09751)."""
    require_float("top_p_filter", "logits", logits, min_dim=1)
    require_real("top_p_filter", "p (top_p)", p, lo=0, hi=1, lo_open=True)
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
    require_float("sample_next", "logits", logits, dim=2)
    require(logits.shape[1] >= 1, lambda: f"sample_next: logits must be (B, V) with V >= 1, got {tuple(logits.shape)}")
    require_sampling("sample_next", temperature, top_k, top_p, generator)  # on every path, greedy too
    if temperature == 0:
        idx = logits.argmax(dim=-1, keepdim=True)  # (B, 1); a NaN is the argmax of its row
        require(bool((logits.gather(-1, idx) > float("-inf")).all()), _NO_TOKEN)  # False for NaN and -inf
        return idx
    if temperature != 1.0:
        logits = logits / temperature  # (B, V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    try:
        return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
    except RuntimeError:  # torch found a NaN or inf probability: name the argument it came from
        raise ValueError(_NO_TOKEN) from None


def _add_linear(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x + h wᵀ (+ b): a residual branch's last projection, one operation (addmm) when there is no bias."""
    return torch.addmm(x, h, w.t()) if b is None else x + F.linear(h, w, b)


class _LeanStep:
    """The cached step of a GPT for one new position, in few, large operations (chapter 11).

    Everything that does not change from token to token is done once in ``__init__``: per layer the
    query, key and value weights are stacked into one (3C, C) matrix, and the keys and values of every
    layer live in one preallocated (L, B, 2, H, block_size, hs) tensor, filled from the prefill caches.
    """

    def __init__(self, model: nn.Module, caches: list[KVCache], n_positions: int = 0):
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
        rot = _rotary_for(model, n_positions)  # the angles of every position this call will reach
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
        """idx: (B, 1) the newest token → logits (B, V) for the one after it. Its keys and values go into
        slot n mod block_size of the ring: past the context they overwrite the oldest position's."""
        n, H, hs = self.n, self.H, self.hs
        W = self.kv.shape[-2]  # the window: block_size slots
        slot, seen = n % W, min(n + 1, W)
        x = F.embedding(idx[:, 0], self.model.tok_emb.weight)  # (B, C)
        if isinstance(self.pos, (LearnedPositions, SinusoidalPositions)):
            x = x + self.pos(1, offset=n)  # + (1, C)
        B = x.shape[0]
        cos, sin = (self.cos3[n], self.sin3[n]) if self.cos3 is not None else (None, None)  # (3, 1, hs)
        for (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_fc, b_fc, w_pr, b_pr), kv in zip(self.layers, self.kv):
            qkv = F.linear(ln1(x), w_qkv, b_qkv).view(B, 3, H, hs)  # (B, C) → (B, 3C) → (B, 3, H, hs)
            if cos is not None:  # (x1, x2) ↦ (x1·cos − x2·sin, x2·cos + x1·sin), halves swapped by roll
                qkv = torch.addcmul(qkv * cos, qkv.roll(hs // 2, dims=-1), sin)  # (B, 3, H, hs)
            kv[:, :, :, slot] = qkv[:, 1:]  # this position's keys and values into the cache
            # the slots hold the window's positions out of order once it rolls: one query, no mask,
            # so the order of the keys does not matter
            y = F.scaled_dot_product_attention(qkv[:, 0, :, None], kv[:, 0, :, :seen],
                                               kv[:, 1, :, :seen])  # (B, H, 1, hs)
            x = _add_linear(x, y.view(B, H * hs), w_o, b_o)  # (B, C)
            x = _add_linear(x, F.gelu(F.linear(ln2(x), w_fc, b_fc)), w_pr, b_pr)  # (B, C)
        self.n = n + 1
        return F.linear(self.final_norm(x), self.w_head)  # (B, V)


def _rotary_for(model: nn.Module, n_positions: int) -> RotaryEmbedding | None:
    """The model's rotary embedding, or a longer one for n_positions > block_size positions (its first rows
    are the model's own, bit for bit: each angle is computed on its own in float64, then rounded)."""
    rot = model.blocks[0].attn.rotary
    if not isinstance(rot, RotaryEmbedding) or n_positions <= rot.max_positions:
        return rot
    longer = RotaryEmbedding(rot.head_size, n_positions, base=rot.base)
    return longer.to(dtype=rot.cos.dtype, device=rot.cos.device)


def _lean(model: nn.Module) -> bool:
    """Does the lean step know every block: plain heads (as many K, V heads as queries, no QK-norm), the MLP?"""
    return all(type(b.attn) is MultiHeadAttention and b.attn.n_kv_heads == b.attn.n_heads and b.attn.qk_norm
               is None and type(b.mlp) is MLP for b in model.blocks)


def _rolls(model: nn.Module) -> bool:
    """Can this model's cache roll past the context? With relative (rotary) positions, in blocks _lean knows."""
    return isinstance(model.blocks[0].attn.rotary, RotaryEmbedding) and model.pos is None and _lean(model)


def window_logits(model: nn.Module, idx: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Next-token logits (B, V) after idx (B, t) when every position, in every layer, attends only to the
    ``window`` most recent positions (itself included), each rotated by its index in idx: what
    :func:`generate` computes with its rolling cache, here recomputed without any cache. The last position
    depends on the last L·(window − 1) + 1 tokens; layer i runs only the queries that layers above it
    still need. ``window`` defaults to block_size. For a model with rotary positions. Built in chapter 11.
    """
    require(isinstance(model, nn.Module) and hasattr(model, "config") and _rolls(model),
            lambda: f"window_logits: model must be a GPT with rotary positions (pos_emb='rope'), got {type(model).__name__}")
    require_ids("window_logits", "idx", idx, dim=2)
    require_int("window_logits", "window", window, lo=1, hi=model.config.block_size, none_ok=True)
    W = model.config.block_size if window is None else window
    require(idx.dim() == 2 and idx.shape[1] >= 1 and 1 <= W <= model.config.block_size, lambda: (
        f"window_logits: idx must be (B, t) with t >= 1 and window in 1..block_size, got "
        f"{tuple(idx.shape)}, window={W}"))
    L, t = len(model.blocks), idx.shape[1]
    H = model.blocks[0].attn.n_heads
    lo = max(0, t - 1 - L * (W - 1))  # the first token the last position depends on
    rot = _rotary_for(model, t)
    x = lookup("window_logits", "idx", model.tok_emb, idx[:, lo:])  # (B, t − lo, C): positions lo … t − 1
    for i, blk in enumerate(model.blocks):
        a, first = blk.attn, max(lo, t - 1 - (L - 1 - i) * (W - 1))  # the queries layers above still need
        h = blk.ln1(x)  # (B, R, C), positions lo … t − 1
        q = split_heads(a.q_proj(h[:, first - lo :]), H)  # (B, H, t − first, hs)
        k, v = a.kv_proj(h).chunk(2, dim=-1)  # 2 × (B, R, C)
        q, k, v = rot(q, offset=first), rot(split_heads(k, H), offset=lo), split_heads(v, H)  # (B, H, ·, hs)
        qpos = torch.arange(first, t, device=idx.device)[:, None]  # (t − first, 1)
        kpos = torch.arange(lo, t, device=idx.device)[None, :]  # (1, R)
        band = (kpos <= qpos) & (kpos > qpos - W)  # (t − first, R): True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=band)  # (B, H, t − first, hs)
        x = x[:, first - lo :] + a.out_proj(merge_heads(y))  # (B, t − first, C)
        x = x + blk.mlp(blk.ln2(x))
        lo = first
    return model.lm_head(model.ln_f(x[:, -1]))  # (B, V)


def _generate_rolling(model, out, T0, temperature, top_k, generator, top_p) -> None:
    """Fill out[:, T0:] with one cache that rolls past the context (rotary positions)."""
    block, N = model.config.block_size, out.shape[1]
    if N == T0:
        return
    n0 = min(T0, block)
    caches = [KVCache(block) for _ in model.blocks]
    logits = model(out[:, :n0], caches=caches)[0][:, -1]  # (B, V)
    step = _LeanStep(model, caches, n_positions=N)
    for t in range(n0, T0):  # a prompt longer than the window: read its rest one token at a time
        logits = step(out[:, t : t + 1])  # (B, V)
    for t in range(T0, N):
        if t > T0:
            logits = step(out[:, t - 1 : t])  # only the newest token is new: (B, V)
        out[:, t : t + 1] = sample_next(logits, temperature, top_k, generator, top_p)  # (B, 1)


def _generate_recomputing(model, out, T0, use_cache, temperature, top_k, generator, top_p) -> None:
    """Fill out[:, T0:] without a cache, or with added position vectors (whose cache cannot roll)."""
    block, step = model.config.block_size, None
    for t in range(T0, out.shape[1]):
        if step is not None and t <= block:
            logits = step(out[:, t - 1 : t])  # only the newest token is new: (B, V)
        elif t > block and _rolls(model):  # past the context: the same window, recomputed
            logits = window_logits(model, out[:, :t])  # (B, V)
        else:
            caches = [KVCache(block) for _ in model.blocks] if use_cache else None
            logits, _ = model(out[:, max(0, t - block) : t], caches=caches)  # from scratch
            logits = logits[:, -1, :]  # (B, V)
            # room for more positions: continue with the lean step
            step = _LeanStep(model, caches) if use_cache and t < block and _lean(model) else None
        out[:, t : t + 1] = sample_next(logits, temperature, top_k, generator, top_p)  # (B, 1)


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
    instead of the whole context's; the tokens are the same as without the cache. Past block_size tokens
    (window W = block_size): with rotary positions every position attends to the last W positions, in
    every layer, rotated by its index in the whole text; the cache rolls (a ring of W slots) and the
    uncached path recomputes the same function (:func:`window_logits`). With added position vectors both
    paths crop the text to its last W tokens and recompute it.
    """
    require(isinstance(model, nn.Module) and hasattr(getattr(model, "config", None), "vocab_size"),
            lambda: f"generate: model must be a GPT, got {type(model).__name__}")
    V = model.config.vocab_size
    require_ids("generate", "idx", idx, dim=2)
    require(idx.shape[1] >= 1 and bool(((idx >= 0) & (idx < V)).all()), lambda: (
        f"generate: idx must be (B, T) token ids in 0..{V - 1} with T >= 1, got {tuple(idx.shape)} {idx.tolist()!s:.80}"))
    require_int("generate", "max_new_tokens", max_new_tokens, lo=0)
    require_sampling("generate", temperature, top_k, top_p, generator)
    B, T0 = idx.shape
    out = idx.new_empty(B, T0 + max_new_tokens)  # filled in place: no concatenation per token
    out[:, :T0] = idx
    with eval_mode(model), torch.inference_mode():  # no autograd bookkeeping at all: faster than no_grad
        if use_cache and _rolls(model):
            _generate_rolling(model, out, T0, temperature, top_k, generator, top_p)
        else:
            _generate_recomputing(model, out, T0, use_cache, temperature, top_k, generator, top_p)
    return out.clone()  # outside inference mode: an ordinary tensor, usable with autograd


def generate_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None) -> str:
    """The prompt and ``max_new_tokens`` sampled tokens after it, decoded to one string (:func:`generate`
    on the model's device). Built in chapter 11."""
    require(isinstance(prompt, str) and len(prompt) > 0,
            lambda: f"generate_text: prompt must be a non-empty string, got {prompt!r}")
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)  # (1, t)
    out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   generator=generator)  # (1, t + max_new_tokens)
    return tokenizer.decode(out[0].tolist())

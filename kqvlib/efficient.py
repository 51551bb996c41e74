"""The cost of attention, and making it cheaper (chapter 13).

Exact attention without the (T, S) score matrix, and one approximation:
    online_softmax       softmax in one pass over blocks: a running max m and a running sum l
    tiled_attention      exact attention one (query block, key block) tile at a time (the FlashAttention
                         idea), with a causal mask that skips the tiles wholly above the diagonal; its
                         backward recomputes the tiles from one saved log-sum-exp per query
    draw_projection, positive_random_features, performer_attention
                         Performer's random-feature approximation of softmax attention, cost O(T·m·d)
    causal_linear_attention, LinearAttentionRNN
                         causal linear attention from features: all positions by prefix sums, or one
                         position at a time with a constant-size state (an RNN)
    peak_allocated_bytes the peak bytes PyTorch allocates during one call (torch.profiler)
    sdpa_ops             which aten kernels a call of F.scaled_dot_product_attention ran

Shapes: q (..., T, d), k (..., S, d), v (..., S, d_v); ... is any batch and head axes.
"""
from __future__ import annotations

import contextlib
import math
import os

import torch

from kqvlib._common import (require, require_dim, require_dtype, require_float, require_generator, require_int,
                            require_qkv)

__all__ = ["online_softmax", "tiled_attention", "draw_projection", "positive_random_features",
           "performer_attention", "causal_linear_attention", "LinearAttentionRNN", "peak_allocated_bytes",
           "sdpa_ops"]


_check_qkv = require_qkv  # q (..., T, d), k (..., S, d), v (..., S, d_v): floats of one dtype and device


def online_softmax(x: torch.Tensor, dim: int = -1, block_size: int = 16) -> torch.Tensor:
    """Softmax along ``dim`` whose normaliser is found in ONE pass over blocks of ``block_size``
    entries, keeping a running max m and a running sum l = Σ exp(x − m) (Milakov & Gimelshein 2018).
    A second pass writes exp(x − m) / l. Built in chapter 13.

    x: (..., n, ...) → same shape; equals torch.softmax(x, dim).
    """
    require_float("online_softmax", "x", x, min_dim=1)
    require_dim("online_softmax", x, dim)
    require_int("online_softmax", "block_size", block_size, lo=1)
    xt = x.movedim(dim, -1)  # (..., n): the softmax axis last
    m = torch.full(xt.shape[:-1], -math.inf, dtype=x.dtype, device=x.device)  # (...,)
    l = torch.zeros_like(m)  # (...,)
    for j in range(0, xt.shape[-1], block_size):
        blk = xt[..., j:j + block_size]  # (..., b)
        m_new = torch.maximum(m, blk.amax(dim=-1))  # (...,)
        # the old sum was taken relative to m: rescale it to m_new, then add the new block
        l = l * torch.exp(m - m_new) + torch.exp(blk - m_new[..., None]).sum(dim=-1)
        m = m_new
    out = torch.exp(xt - m[..., None]) / l[..., None]  # (..., n): the second pass
    return out.movedim(-1, dim)


def _tiled_forward(q, k, v, causal, block_size):
    """The forward loop of :func:`tiled_attention`: (..., T, d_v) output and (..., T, 1) log-sum-exp."""
    T, S = q.shape[-2], k.shape[-2]
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    out = q.new_empty(*lead, T, v.shape[-1])  # (..., T, d_v)
    lse = q.new_empty(*lead, T, 1)  # (..., T, 1): log Σ_s exp(score), all the backward keeps
    for i0 in range(0, T, block_size):
        qi = q[..., i0:i0 + block_size, :] / math.sqrt(q.shape[-1])  # (..., bq, d)
        bq = qi.shape[-2]
        m = q.new_full((*lead, bq, 1), -math.inf)  # (..., bq, 1): running max of each row
        l = q.new_zeros((*lead, bq, 1))  # (..., bq, 1): running Σ exp(s − m)
        acc = q.new_zeros((*lead, bq, v.shape[-1]))  # (..., bq, d_v): running Σ exp(s − m) v
        stop = min(S, i0 + bq) if causal else S  # causal: key blocks from i0 + bq on are all future
        for j0 in range(0, stop, block_size):
            s = qi @ k[..., j0:j0 + block_size, :].mT  # (..., bq, bk): one tile of scores
            if causal and j0 + s.shape[-1] > i0 + 1:  # the tile crosses the diagonal
                s = s.masked_fill(_future(i0, bq, j0, s.shape[-1], q.device), -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (..., bq, 1)
            alpha = torch.exp(m - m_new)  # (..., bq, 1): 0 on the first block (m = −inf)
            p = torch.exp(s - m_new)  # (..., bq, bk)
            l = alpha * l + p.sum(dim=-1, keepdim=True)
            acc = alpha * acc + p @ v[..., j0:j0 + block_size, :]  # (..., bq, d_v)
            m = m_new
        out[..., i0:i0 + bq, :] = acc / l  # divide once, after the last key block
        lse[..., i0:i0 + bq, :] = m + torch.log(l)
    return out, lse


def _future(i0: int, bq: int, j0: int, bk: int, device) -> torch.Tensor:
    """(bq, bk) True where key j0 + c lies after query i0 + r: the causal mask of one tile."""
    return torch.arange(j0, j0 + bk, device=device)[None, :] > torch.arange(i0, i0 + bq, device=device)[:, None]


class _TiledAttention(torch.autograd.Function):
    """FlashAttention's backward (Dao et al. 2022, algorithm 2; Dao 2023): the forward keeps only the output
    and one log-sum-exp per query; the backward recomputes each tile's weights P = exp(s − lse) from them
    and accumulates dQ, dK and dV tile by tile, so neither pass holds a (T, S) matrix."""

    @staticmethod
    def forward(ctx, q, k, v, causal, block_size):
        out, lse = _tiled_forward(q, k, v, causal, block_size)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.block_size = causal, block_size
        return out

    @staticmethod
    def backward(ctx, d_out):
        q, k, v, out, lse = ctx.saved_tensors
        causal, b, scale = ctx.causal, ctx.block_size, 1 / math.sqrt(q.shape[-1])
        T, S = q.shape[-2], k.shape[-2]
        lead = lse.shape[:-2]
        dq = q.new_zeros(*lead, T, q.shape[-1])  # (..., T, d)
        dk = k.new_zeros(*lead, S, k.shape[-1])  # (..., S, d)
        dv = v.new_zeros(*lead, S, v.shape[-1])  # (..., S, d_v)
        delta = (d_out * out).sum(dim=-1, keepdim=True)  # (..., T, 1): rowsum(dO ∘ O) = Σ_s P dP
        for j0 in range(0, S, b):  # one block of keys; its dK and dV are complete after the inner loop
            kj, vj = k[..., j0:j0 + b, :], v[..., j0:j0 + b, :]  # (..., bk, d), (..., bk, d_v)
            for i0 in range(j0 // b * b if causal else 0, T, b):  # causal: earlier query blocks see none
                qi, doi = q[..., i0:i0 + b, :], d_out[..., i0:i0 + b, :]  # (..., bq, d), (..., bq, d_v)
                s = qi @ kj.mT * scale  # (..., bq, bk): the tile's scores, recomputed
                if causal and j0 + s.shape[-1] > i0 + 1:
                    s = s.masked_fill(_future(i0, s.shape[-2], j0, s.shape[-1], q.device), -math.inf)
                p = torch.exp(s - lse[..., i0:i0 + b, :])  # (..., bq, bk): the softmax weights, exactly
                dv[..., j0:j0 + b, :] += p.mT @ doi  # (..., bk, d_v)
                ds = p * (doi @ vj.mT - delta[..., i0:i0 + b, :])  # (..., bq, bk): softmax's backward
                dq[..., i0:i0 + b, :] += ds @ kj * scale  # (..., bq, d)
                dk[..., j0:j0 + b, :] += ds.mT @ qi * scale  # (..., bk, d)
        # inputs broadcast along the leading axes get the sum of their gradients
        return dq.sum_to_size(q.shape), dk.sum_to_size(k.shape), dv.sum_to_size(v.shape), None, None


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    block_size: int = 64) -> torch.Tensor:
    """Exact softmax(q kᵀ/√d) v, one (block_size × block_size) tile of scores at a time: for each
    query block, a running max m, running sum l and running output acc over the key blocks, each
    rescaled by exp(m_old − m_new) when the max grows (Rabe & Staats 2021; Dao et al. 2022). Never
    holds more than one tile of scores. ``causal``: query t sees keys s ≤ t (needs T = S); the key
    blocks wholly above the diagonal are skipped, not computed and masked. Differentiable: the backward
    recomputes each tile from the saved log-sum-exp per query (FlashAttention's backward), again
    without a (T, S) matrix. Built in chapter 13.

    q: (..., T, d)   k: (..., S, d)   v: (..., S, d_v)   →   (..., T, d_v)
    """
    _check_qkv("tiled_attention", q, k, v)
    require_int("tiled_attention", "block_size", block_size, lo=1)
    require(not causal or q.shape[-2] == k.shape[-2], lambda: (
        f"tiled_attention: causal needs as many queries as keys, got q {tuple(q.shape)}, k {tuple(k.shape)}"))
    return _TiledAttention.apply(q, k, v, causal, block_size)


def draw_projection(num_features: int, d: int, *, orthogonal: bool = True,
                    generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (num_features, d) random directions w_i ~ N(0, I_d) of Performer's features; with
    ``orthogonal`` they are made orthogonal in blocks of d and given Gaussian lengths, which provably
    lowers the variance (Choromanski et al. 2020; at chapter 13's sizes the gain is within the spread
    between draws). Built in chapter 13.

    → (num_features, d)
    """
    for name, n in (("num_features", num_features), ("d", d)):
        require_int("draw_projection", name, n, lo=1)
    require_generator("draw_projection", "generator", generator)
    require_dtype("draw_projection", "dtype", dtype)
    if not orthogonal:
        return torch.randn(num_features, d, generator=generator, dtype=dtype)
    blocks = []
    for _ in range(math.ceil(num_features / d)):
        g = torch.randn(d, d, generator=generator, dtype=torch.float64)  # (d, d)
        blocks.append(torch.linalg.qr(g).Q.T)  # (d, d): orthonormal rows
    w = torch.cat(blocks)[:num_features]  # (m, d)
    lengths = torch.randn(num_features, d, generator=generator, dtype=torch.float64).norm(dim=-1)  # (m,)
    return (w * lengths[:, None]).to(dtype)  # (m, d): each row as long as a Gaussian vector


def positive_random_features(x: torch.Tensor, w: torch.Tensor, *, stabilise_over: tuple | None = (-1,)
                             ) -> torch.Tensor:
    """φ(x) = exp(w·x − |x|²/2 − c) / √m, so that E[φ(q)·φ(k)] = exp(q·k − c_q − c_k). The
    constant c is the max of the exponent over the axes ``stabilise_over`` (None: c = 0; it cancels in attention's
    normalisation, and keeps exp from overflowing). Built in chapter 13.

    x: (..., n, d)   w: (m, d)   →   (..., n, m), all entries > 0
    """
    require_float("positive_random_features", "x", x, min_dim=1)
    require_float("positive_random_features", "w", w, dim=2)
    require(x.shape[-1] == w.shape[-1] and x.dtype == w.dtype and x.device == w.device, lambda: (
        f"positive_random_features: x {tuple(x.shape)} and w {tuple(w.shape)} must share their last axis d, dtype, device"))
    e = x @ w.mT - (x * x).sum(dim=-1, keepdim=True) / 2  # (..., n, m)
    if stabilise_over is not None:  # None: no constant (exp may overflow)
        e = e - e.amax(dim=stabilise_over, keepdim=True).detach()
    return torch.exp(e) / math.sqrt(w.shape[0])


def performer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *,
                        causal: bool = False) -> torch.Tensor:
    """Performer (FAVOR+) attention: softmax(q kᵀ/√d) v approximated as φ(q) (φ(k)ᵀ v) / φ(q) Σ φ(k),
    with q, k scaled by d^(−1/4) and m = w.shape[0] random features: cost O(T·m·d), no (T, S)
    matrix. ``causal`` uses running sums over the keys (T = S; memory O(T·m·d_v)). Built in
    chapter 13.

    q: (..., T, d)   k: (..., S, d)   v: (..., S, d_v)   w: (m, d)   →   (..., T, d_v)
    """
    _check_qkv("performer_attention", q, k, v)
    require(not causal or q.shape[-2] == k.shape[-2], lambda: (
        f"performer_attention: causal needs T = S, got q {tuple(q.shape)}, k {tuple(k.shape)}"))
    r = q.shape[-1] ** -0.25
    fq = positive_random_features(q * r, w)  # (..., T, m): one constant per query row
    fk = positive_random_features(k * r, w, stabilise_over=(-2, -1))  # (..., S, m): one for all keys
    if not causal:
        kv = fk.mT @ v  # (..., m, S) @ (..., S, d_v) → (..., m, d_v)
        z = fk.sum(dim=-2)  # (..., m)
        return (fq @ kv) / (fq @ z[..., None])  # (..., T, d_v) / (..., T, 1)
    return causal_linear_attention(fq, fk, v)


def causal_linear_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention in its parallel form, from features: out_t = φ(q_t)ᵀ S_t / φ(q_t)·z_t with
    S_t = Σ_{s≤t} φ(k_s) v_sᵀ and z_t = Σ_{s≤t} φ(k_s), all t at once by prefix sums. Built in chapter 13.

    fq: (..., T, m)   fk: (..., T, m)   v: (..., T, d_v)   →   (..., T, d_v)
    """
    require_qkv("causal_linear_attention", fq, fk, v, names=("fq", "fk", "v"), same_length=True)
    kv = (fk[..., :, None] * v[..., None, :]).cumsum(dim=-3)  # (..., T, m, d_v): Σ_{s≤t} φ(k_s) v_sᵀ
    num = (fq[..., None, :] @ kv).squeeze(-2)  # (..., T, 1, m) @ (..., T, m, d_v) → (..., T, d_v)
    den = (fq * fk.cumsum(dim=-2)).sum(dim=-1, keepdim=True)  # (..., T, 1)
    return num / den


class LinearAttentionRNN:
    """Causal linear attention as a recurrent network (Katharopoulos et al. 2020): the state is
    S (..., m, d_v) and z (..., m), the same size after 10 tokens or 10 million, where softmax attention's
    KV cache grows by one key and one value per token. ``step`` reads one position; the outputs equal
    :func:`causal_linear_attention`'s. Built in chapter 13.
    """

    def __init__(self) -> None:
        self.S: torch.Tensor | None = None  # (..., m, d_v): Σ φ(k_s) v_sᵀ so far
        self.z: torch.Tensor | None = None  # (..., m): Σ φ(k_s) so far

    def step(self, fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """fq, fk: (..., m), v: (..., d_v) of one new position → its output (..., d_v)."""
        require_qkv("LinearAttentionRNN.step", fq, fk, v, names=("fq", "fk", "v"), n=1)
        require(self.S is None or self.S.shape[-2:] == (fk.shape[-1], v.shape[-1]), lambda: (
            f"LinearAttentionRNN.step: fk {tuple(fk.shape)} and v {tuple(v.shape)} do not fit the state "
            f"{tuple(self.S.shape)}"))
        outer = fk[..., :, None] * v[..., None, :]  # (..., m, d_v)
        self.S = outer if self.S is None else self.S + outer
        self.z = fk if self.z is None else self.z + fk
        num = (fq[..., None, :] @ self.S).squeeze(-2)  # (..., 1, m) @ (..., m, d_v) → (..., d_v)
        return num / (fq * self.z).sum(dim=-1, keepdim=True)  # (..., d_v) / (..., 1)


@contextlib.contextmanager
def _quiet_stderr():  # some builds' profilers write log lines straight to file descriptor 2
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated_bytes(fn, *args, **kwargs) -> int:
    """Run ``fn(*args, **kwargs)`` once and return the peak number of bytes that PyTorch's CPU
    allocator held for NEW tensors during the call (the result included), read from torch.profiler's
    memory events (allocations +, frees −, in time order). Library workspaces outside PyTorch's
    allocator are not counted; tracemalloc would see none of it. Built in chapter 13.

    → bytes (int)
    """
    from torch.profiler import ProfilerActivity, profile

    require(callable(fn), lambda: f"peak_allocated_bytes: fn must be callable, got {type(fn).__name__}")
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*args, **kwargs)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()
        peak = max(peak, held)
    return peak


def sdpa_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> list[str]:
    """The names of the attention kernels that ``F.scaled_dot_product_attention(q, k, v, **kwargs)``
    ran, read from torch.profiler: e.g. ["aten::_scaled_dot_product_flash_attention_for_cpu"].
    Built in chapter 13.

    q: (..., T, d)   k: (..., S, d)   v: (..., S, d_v)   →   list of op names
    """
    from torch.profiler import ProfilerActivity, profile

    _check_qkv("sdpa_ops", q, k, v)
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    names = [e.name for e in prof.events()]
    return sorted({n for n in names if "attention" in n and n != "aten::scaled_dot_product_attention"})

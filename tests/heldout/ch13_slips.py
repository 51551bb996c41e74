"""Held-out learner slips for chapter 13 (efficient attention): blockwise attention with online softmax."""
import math

import torch

# ------------------------------------ check_blockwise_attention: blockwise_attention(q, k, v, block_size)


def _init(q, v, d_acc=None):
    m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)
    acc = torch.zeros(*q.shape[:-1], v.shape[-1] if d_acc is None else d_acc, dtype=q.dtype)
    return m, l, acc


def bw_no_scale(q, k, v, block_size):
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1)  # forgot / sqrt(d)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def bw_scale_by_dv(q, k, v, block_size):
    scale = 1 / math.sqrt(v.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def bw_slice_one_short(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        kb = k[..., j:j + block_size - 1, :]  # inclusive-end thinking: one key lost per block
        vb = v[..., j:j + block_size - 1, :]
        s = q @ kb.transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ vb
        m = m_new
    return acc / l


def bw_v_first_axis(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[j:j + block_size]  # slices the leading axis of v
        m = m_new
    return acc / l


def bw_acc_width_d(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v, d_acc=q.shape[-1])  # acc sized like q, not like v
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def bw_sum_over_queries(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-2, keepdim=True).sum(-1, keepdim=True)  # summed over queries too
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def bw_exponent_uses_old_max(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m)  # the old max
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def bw_no_final_divide(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m, l, acc = _init(q, v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc  # never divided by l


SLIPS = [
    ("check_blockwise_attention", "no_scale", bw_no_scale,
     "Forgot to scale the block scores by 1/sqrt(d)."),
    ("check_blockwise_attention", "scale_by_dv", bw_scale_by_dv,
     "Scaled the scores by 1/sqrt(d_v) (v's width) instead of 1/sqrt(d)."),
    ("check_blockwise_attention", "slice_one_short", bw_slice_one_short,
     "Sliced each block as j : j + block_size - 1, so the last key of every block is skipped."),
    ("check_blockwise_attention", "v_first_axis", bw_v_first_axis,
     "Sliced v[j : j + block_size] (the leading batch axis) instead of v[..., j : j + block_size, :]."),
    ("check_blockwise_attention", "acc_width_d", bw_acc_width_d,
     "Allocated the running output with q's width d instead of v's width d_v."),
    ("check_blockwise_attention", "sum_over_queries", bw_sum_over_queries,
     "Added to the running sum l the block's exponentials summed over the queries as well as the keys."),
    ("check_blockwise_attention", "exponent_uses_old_max", bw_exponent_uses_old_max,
     "Took the block's exponentials relative to the old max m instead of the new max m_new (inf on the first block)."),
    ("check_blockwise_attention", "no_final_divide", bw_no_final_divide,
     "Kept the running sum but never divided the running output by it at the end."),
]

"""Held-out learner slips for chapter 12 (encoder-decoder): one head of cross-attention."""
import math

import torch

NEG = float("-inf")

# ---------------------- check_cross_attention: cross_attention(x, memory, memory_mask, Wq, Wk, Wv)


def xa_scale_by_dv(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], NEG)
    return torch.softmax(scores, dim=-1) @ v


def xa_scale_by_C(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], NEG)
    return torch.softmax(scores, dim=-1) @ v


def xa_mask_inverted(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(memory_mask[:, None, :], NEG)  # blocks the real tokens
    return torch.softmax(scores, dim=-1) @ v


def xa_causal_added(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    T, S = q.shape[1], k.shape[1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, S, dtype=torch.bool).tril()
    scores = scores.masked_fill(~(memory_mask[:, None, :] & causal), NEG)
    return torch.nan_to_num(torch.softmax(scores, dim=-1)) @ v


def xa_softmax_over_queries(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], NEG)
    w = torch.nan_to_num(torch.softmax(scores, dim=-2))
    return w @ v


def xa_mask_after_softmax(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    w = torch.softmax(scores, dim=-1) * memory_mask[:, None, :]  # not renormalised
    return w @ v


def xa_Wk_for_values(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wk  # copy-paste
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], NEG)
    return torch.softmax(scores, dim=-1) @ v


def xa_k_dot_T(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.T / math.sqrt(q.shape[-1])  # .T reverses all three axes
    scores = scores.masked_fill(~memory_mask[:, None, :], NEG)
    return torch.softmax(scores, dim=-1) @ v


def xa_fill_zero(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], 0.0)
    return torch.softmax(scores, dim=-1) @ v


SLIPS = [
    ("check_cross_attention", "scale_by_dv", xa_scale_by_dv,
     "Scaled the scores by sqrt(d_v) instead of sqrt(d_k)."),
    ("check_cross_attention", "scale_by_C", xa_scale_by_C,
     "Scaled the scores by sqrt(C), the model width, instead of sqrt(d_k)."),
    ("check_cross_attention", "mask_inverted", xa_mask_inverted,
     "Filled -inf where memory_mask is True, blocking the real source tokens and keeping the padding."),
    ("check_cross_attention", "causal_added", xa_causal_added,
     "Added a causal triangle over (T, S) as in decoder self-attention, though the whole source is visible."),
    ("check_cross_attention", "softmax_over_queries", xa_softmax_over_queries,
     "Took the softmax over the query axis (dim=-2) instead of the key axis."),
    ("check_cross_attention", "mask_after_softmax", xa_mask_after_softmax,
     "Multiplied the softmax weights by the mask afterwards instead of filling -inf before, without renormalising."),
    ("check_cross_attention", "Wk_for_values", xa_Wk_for_values,
     "Copy-paste: computed the values with Wk instead of Wv."),
    ("check_cross_attention", "k_dot_T", xa_k_dot_T,
     "Used k.T on a 3-D tensor, which reverses all axes, instead of k.transpose(-2, -1)."),
    ("check_cross_attention", "fill_zero", xa_fill_zero,
     "Filled the padded keys' scores with 0 instead of -inf, so padding still gets weight."),
]

"""Held-out learner slips for chapter 6 (multi-head attention): split/merge heads and MHA."""
import math

import torch

# ------------------------------------------------------- check_split_heads: split_heads(x, n_heads)


def split_no_transpose(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads)  # stays (B, T, H, hs)


def split_permute_T_last(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).permute(0, 2, 3, 1)  # (B, H, hs, T)


def split_cat_not_stack(x, n_heads):
    return torch.cat(x.chunk(n_heads, dim=-1), dim=1)  # (B, H*T, hs)


def split_stack_axis0(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=0)  # (H, B, T, hs)


def split_returns_tuple(x, n_heads):
    return x.chunk(n_heads, dim=-1)  # a tuple of H tensors (B, T, hs)


def split_size_for_count(x, n_heads):
    # torch.split takes the size of each piece, not the number of pieces
    return torch.stack(torch.split(x, n_heads, dim=-1), dim=1)


# ------------------------------------------------------------ check_merge_heads: merge_heads(y)


def merge_cat_wrong_axis(y):
    return torch.cat(y.unbind(1), dim=1)  # (B, H*T, hs)


def merge_sum_heads(y):
    return y.sum(dim=1)  # (B, T, hs)


def merge_heads_reversed(y):
    B, H, T, hs = y.shape
    return y.flip(1).transpose(1, 2).reshape(B, T, H * hs)


def merge_flatten_from_1(y):
    return y.transpose(1, 2).flatten(1)  # (B, T*H*hs)


def merge_unpack_wrong_order(y):
    B, T, H, hs = y.shape  # but y is (B, H, T, hs)
    return y.transpose(1, 2).reshape(B, T, H * hs)


def merge_first_head_only(y):
    return y[:, 0]  # (B, T, hs)


# ---------------------------- check_multi_head_attention: multi_head_attention(x, W_q, W_k, W_v, W_o, n_heads)


def _split(x, H):
    B, T, C = x.shape
    return x.view(B, T, H, C // H).transpose(1, 2)


def _merge(y):
    B, H, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, H * hs)


def mha_linear_convention(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W.T, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return _merge(w @ v) @ W_o.T


def mha_causal_added(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    T = x.shape[1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    scores = scores.masked_fill(~causal, float("-inf"))
    return _merge(torch.softmax(scores, dim=-1) @ v) @ W_o


def mha_scale_by_hs(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
    return _merge(w @ v) @ W_o


def mha_multiply_sqrt(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) * math.sqrt(q.shape[-1]), dim=-1)
    return _merge(w @ v) @ W_o


def mha_adds_residual(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return x + _merge(w @ v) @ W_o


def mha_Wq_for_keys(x, W_q, W_k, W_v, W_o, n_heads):
    q = _split(x @ W_q, n_heads)
    k = _split(x @ W_q, n_heads)  # copy-paste: W_q instead of W_k
    v = _split(x @ W_v, n_heads)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return _merge(w @ v) @ W_o


def mha_scale_after_softmax(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1), dim=-1) / math.sqrt(q.shape[-1])
    return _merge(w @ v) @ W_o


def mha_sqrt_n_heads(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (_split(x @ W, n_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(n_heads), dim=-1)
    return _merge(w @ v) @ W_o


SLIPS = [
    ("check_split_heads", "no_transpose", split_no_transpose,
     "Viewed (B, T, C) as (B, T, H, hs) and stopped there, never moving the head axis before T."),
    ("check_split_heads", "permute_T_last", split_permute_T_last,
     "Used permute(0, 2, 3, 1), giving (B, H, hs, T): T and hs end up swapped."),
    ("check_split_heads", "cat_not_stack", split_cat_not_stack,
     "Chunked C into heads but joined them with torch.cat on axis 1 (B, H*T, hs) instead of stacking a new axis."),
    ("check_split_heads", "stack_axis0", split_stack_axis0,
     "Stacked the chunked heads on axis 0, giving (H, B, T, hs) instead of (B, H, T, hs)."),
    ("check_split_heads", "returns_tuple", split_returns_tuple,
     "Returned the tuple from x.chunk(n_heads, -1) instead of one (B, H, T, hs) tensor."),
    ("check_split_heads", "split_size_for_count", split_size_for_count,
     "Called torch.split(x, n_heads, -1), which takes a piece size, so it made hs pieces of width H."),

    ("check_merge_heads", "cat_wrong_axis", merge_cat_wrong_axis,
     "Concatenated the heads along the time axis (dim=1), giving (B, H*T, hs) instead of along features."),
    ("check_merge_heads", "sum_heads", merge_sum_heads,
     "Summed the heads (y.sum(1)) instead of concatenating them, giving (B, T, hs)."),
    ("check_merge_heads", "heads_reversed", merge_heads_reversed,
     "Flipped the head axis before merging, so the last head's features come first."),
    ("check_merge_heads", "flatten_from_1", merge_flatten_from_1,
     "After the transpose used flatten(1) instead of flatten(2), flattening T into the features (B, T*C)."),
    ("check_merge_heads", "unpack_wrong_order", merge_unpack_wrong_order,
     "Unpacked y.shape as B, T, H, hs although y is (B, H, T, hs), so the reshape uses swapped sizes."),
    ("check_merge_heads", "first_head_only", merge_first_head_only,
     "Returned only head 0 (y[:, 0]) instead of all heads merged."),

    ("check_multi_head_attention", "linear_convention", mha_linear_convention,
     "Used the nn.Linear convention x @ W.T for all four matrices instead of x @ W."),
    ("check_multi_head_attention", "causal_added", mha_causal_added,
     "Added a causal mask that the exercise did not ask for."),
    ("check_multi_head_attention", "scale_by_hs", mha_scale_by_hs,
     "Divided the scores by h_s instead of sqrt(h_s)."),
    ("check_multi_head_attention", "multiply_sqrt", mha_multiply_sqrt,
     "Multiplied the scores by sqrt(h_s) instead of dividing."),
    ("check_multi_head_attention", "adds_residual", mha_adds_residual,
     "Added the input x to the output (a residual connection) inside the attention function."),
    ("check_multi_head_attention", "Wq_for_keys", mha_Wq_for_keys,
     "Copy-paste: projected the keys with W_q instead of W_k."),
    ("check_multi_head_attention", "scale_after_softmax", mha_scale_after_softmax,
     "Divided the weights by sqrt(h_s) after the softmax instead of the scores before it."),
    ("check_multi_head_attention", "sqrt_n_heads", mha_sqrt_n_heads,
     "Scaled the scores by sqrt(n_heads) instead of sqrt(h_s)."),
]

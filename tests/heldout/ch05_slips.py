"""Held-out learner slips for chapter 5 (masking): causal_mask, padding_mask, masked attention."""
import math

import numpy as np
import torch

# ---------------------------------------------------------------- check_causal_mask: causal_mask(T)


def causal_diag_plus_one(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def causal_with_batch_axis(T):
    return torch.tril(torch.ones(1, T, T, dtype=torch.bool))


def causal_eye_only(T):
    return torch.eye(T, dtype=torch.bool)


def causal_all_true(T):
    return torch.ones(T, T, dtype=torch.bool)


def causal_size_plus_one(T):
    t = torch.arange(T + 1)
    return t[None, :] <= t[:, None]


def causal_numpy(T):
    return np.tril(np.ones((T, T), dtype=bool))


def causal_flipped_columns(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool)).flip(-1)


# ---------------------------------------------------------- check_padding_mask: padding_mask(lengths, S)


def padding_true_on_padding(lengths, S):
    pad = torch.arange(S)[None, :] >= lengths[:, None]
    return pad[:, None, None, :]


def padding_axes_in_front(lengths, S):
    real = torch.arange(S)[None, :] < lengths[:, None]
    return real[None, None]


def padding_longest_for_all(lengths, S):
    B = lengths.shape[0]
    real = (torch.arange(S) < lengths.max()).expand(B, S)
    return real[:, None, None, :]


def padding_reshape_scrambles(lengths, S):
    B = lengths.shape[0]
    real = torch.arange(S)[:, None] < lengths[None, :]  # (S, B)
    return real.reshape(B, 1, 1, S)


def padding_no_column(lengths, S):
    real = torch.arange(S) < lengths  # (S,) vs (B,)
    return real[:, None, None, :]


def padding_float(lengths, S):
    real = (torch.arange(S)[None, :] < lengths[:, None]).float()
    return real[:, None, None, :]


def padding_and_causal(lengths, S):
    real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
    return real[:, None, None, :] & causal  # (B, 1, S, S)


# ------------------------------------------------------- check_masked_attention: attention(Q, K, V, mask)


def att_mask_after_softmax_renorm(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    w = torch.softmax(scores, dim=-1) * mask
    w = w / w.sum(dim=-1, keepdim=True)
    return w @ V


def att_true_means_block(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.where((~mask).any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_fill_zero(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, 0.0)
    w = torch.softmax(scores, dim=-1)
    w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_scale_by_dv(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_K_dot_T(Q, K, V, mask):
    scores = Q @ K.T / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_minus_1e9_everywhere(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, -1e9)
    return torch.softmax(scores, dim=-1) @ V


def att_has_key_wrong_axis(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    has_key = mask.any(dim=-2, keepdim=True)  # (..., 1, S)
    w = torch.where(has_key, w, 0.0)
    return w @ V


def att_divide_by_dk(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / Q.shape[-1]
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_scales_Q_in_place(Q, K, V, mask):
    Q.div_(math.sqrt(Q.shape[-1]))
    scores = Q @ K.transpose(-2, -1)
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
    return w @ V


def att_softmax_over_queries(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-2)
    w = torch.nan_to_num(w, nan=0.0)
    return w @ V


SLIPS = [
    ("check_causal_mask", "diag_plus_one", causal_diag_plus_one,
     "Used tril(..., diagonal=1), so each query also sees the one key right after it."),
    ("check_causal_mask", "batch_axis", causal_with_batch_axis,
     "Built the mask with an extra leading batch axis, shape (1, T, T) instead of (T, T)."),
    ("check_causal_mask", "eye_only", causal_eye_only,
     "Returned the identity (only s == t allowed) instead of the whole lower triangle."),
    ("check_causal_mask", "all_true", causal_all_true,
     "Returned an all-True mask (no blocking at all, bidirectional attention)."),
    ("check_causal_mask", "size_plus_one", causal_size_plus_one,
     "Off by one in the size: built positions with arange(T + 1), giving a (T+1, T+1) mask."),
    ("check_causal_mask", "numpy_array", causal_numpy,
     "Returned a NumPy array (np.tril) instead of a torch tensor."),
    ("check_causal_mask", "flipped_columns", causal_flipped_columns,
     "Flipped the triangle left-right (.flip(-1)), so the keys are read in reverse order."),

    ("check_padding_mask", "true_on_padding", padding_true_on_padding,
     "Marked the padding positions True (s >= L) instead of the real tokens."),
    ("check_padding_mask", "axes_in_front", padding_axes_in_front,
     "Added the two singleton axes in front, giving (1, 1, B, S) instead of (B, 1, 1, S)."),
    ("check_padding_mask", "longest_for_all", padding_longest_for_all,
     "Used the longest length (lengths.max()) for every sequence instead of each row's own length."),
    ("check_padding_mask", "reshape_scrambles", padding_reshape_scrambles,
     "Built the comparison as an (S, B) table and reshaped it to (B, 1, 1, S), scrambling rows and keys."),
    ("check_padding_mask", "no_column", padding_no_column,
     "Compared arange(S) with lengths directly, without turning lengths into a column (B, 1)."),
    ("check_padding_mask", "float_mask", padding_float,
     "Returned the mask as float 0/1 instead of a boolean tensor."),
    ("check_padding_mask", "and_causal", padding_and_causal,
     "Combined the padding mask with a causal triangle, returning (B, 1, S, S)."),

    ("check_masked_attention", "mask_after_softmax_renorm", att_mask_after_softmax_renorm,
     "Applied the mask after the softmax and renormalised; right where a key is visible, but a fully blocked row gives 0/0 = NaN."),
    ("check_masked_attention", "true_means_block", att_true_means_block,
     "Read the mask the other way round: filled -inf where mask is True (True = block)."),
    ("check_masked_attention", "fill_zero", att_fill_zero,
     "Filled blocked scores with 0 instead of -inf, so blocked keys still get weight."),
    ("check_masked_attention", "scale_by_dv", att_scale_by_dv,
     "Scaled the scores by sqrt(d_v) (V's last axis) instead of sqrt(d_k)."),
    ("check_masked_attention", "K_dot_T", att_K_dot_T,
     "Used K.T, which reverses every axis, instead of transposing only the last two."),
    ("check_masked_attention", "minus_1e9_no_zero_rows", att_minus_1e9_everywhere,
     "Filled with -1e9 and did nothing else: a fully blocked row gets uniform weights (the mean of V) instead of zeros."),
    ("check_masked_attention", "has_key_wrong_axis", att_has_key_wrong_axis,
     "Checked for a visible key along the query axis (any over dim=-2), zeroing whole key columns instead of blocked query rows."),
    ("check_masked_attention", "divide_by_dk", att_divide_by_dk,
     "Divided the scores by d_k instead of sqrt(d_k)."),
    ("check_masked_attention", "scales_Q_in_place", att_scales_Q_in_place,
     "Scaled Q in place (Q.div_), so the output is right but the caller's Q is modified."),
    ("check_masked_attention", "softmax_over_queries", att_softmax_over_queries,
     "Took the softmax over the query axis (dim=-2) instead of the key axis, replacing NaNs by 0."),
]

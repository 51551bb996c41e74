"""Checkers for chapter 5: masks. The convention throughout: a boolean mask is ``True`` where a query
may look at a key ("attend") and ``False`` where it may not ("blocked"), as in kqvlib and in
``torch.nn.functional.scaled_dot_product_attention``.

    check_causal_mask(fn)       causal_mask(T) → bool (T, T), True on and below the diagonal
    check_padding_mask(fn)      padding_mask(lengths, S) → bool (B, 1, 1, S), True where key s of
                                sequence b is a real token (sequences padded on the right)
    check_masked_attention(fn)  masked_attention(Q, K, V, mask) → softmax(Q Kᵀ/√d_k, blocked scores
                                set to -inf) V, shape (..., T, d_v); a query whose keys are all blocked
                                gets zero weights, so its output row is zeros

The test sizes all differ (T ≠ S ≠ d_k ≠ d_v ≠ B), so a mask or a product the wrong way round fails
loudly. A mask returned as numbers instead of True/False gets its own hint before anything else: a float
mask of 0s and 1s is *added* to the scores by attention functions, so it would block nothing.

A large finite fill value (-1e9, ``torch.finfo(dtype).min``) instead of -inf is accepted: for a row with
at least one visible key it gives exactly the same weights, because exp of it underflows to 0. It is
wrong only on a fully masked row, where it averages all the blocked values instead of returning zeros;
that case has its own hint.

One module per exercise: ``masks`` (causal_mask, padding_mask, and the bool-not-numbers check they share)
and ``attention`` (masked_attention).
"""
from kqvlib.exercises.ch05.attention import check_masked_attention
from kqvlib.exercises.ch05.masks import check_causal_mask, check_padding_mask

__all__ = ["check_causal_mask", "check_padding_mask", "check_masked_attention"]

"""Checkers for chapter 6: multi-head attention.

    check_split_heads(fn)            split_heads(x, n_heads): (B, T, C) → (B, H, T, hs), head h owning
                                     the features h·hs … (h+1)·hs − 1
    check_merge_heads(fn)            merge_heads(y): (B, H, T, hs) → (B, T, C), heads side by side, head 0 first
    check_multi_head_attention(fn)   multi_head_attention(x, W_q, W_k, W_v, W_o, n_heads): self-attention
                                     with H heads and no mask, (B, T, C) → (B, T, C); every W is (C, C)
                                     and acts as ``x @ W`` (no biases)

The test sizes all differ (B=2, T=4, H=3, hs=5, C=15), so a reshape without its transpose or a transpose
of the wrong axes gives a wrong shape or wrong values instead of passing by luck. A second kind of input
has other sizes (H=2), so a hard-coded number shows. When ``multi_head_attention`` raises on those
inputs, it runs once more on inputs where T = H = hs (where a head axis left in place, or K not
transposed, still fits) to name the slip. A wrong output that matches no listed slip is diagnosed through
W_O: (your output) @ W_O⁻¹ is what your heads produced, side by side, and that is compared with the
right heads (in another order? rearranged? each head's own attention wrong?).

One module per exercise group: ``heads`` (split_heads, merge_heads, and the sizes and error explanations
the chapter shares) and ``mha`` (multi_head_attention).
"""
from kqvlib.exercises.ch06.heads import check_merge_heads, check_split_heads
from kqvlib.exercises.ch06.mha import check_multi_head_attention

__all__ = ["check_split_heads", "check_merge_heads", "check_multi_head_attention"]

"""Checkers for chapter 7, *Where is each token? Positions*.

    check_sinusoidal_encoding(fn)   fn(T, d_model) → (T, d_model): PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i)
    check_rotate(fn)                fn(x, positions) → x rotated by RoPE, the paper's *interleaved* pairs

with ω_i = θ_i = 10000^(−2i/d) for the pair i = 0 … d/2 − 1. ``rotate`` takes x (..., T, d) and positions
(T,) and turns each pair of features (x_2i, x_2i+1) at position p by the angle p·θ_i (Su et al. 2021):

    y_2i = x_2i·cos(pθ_i) − x_2i+1·sin(pθ_i),    y_2i+1 = x_2i·sin(pθ_i) + x_2i+1·cos(pθ_i).

Sizes differ everywhere (T ≠ d, positions do not start at 0), so a transpose, an ignored argument or an
off-by-one shows. Each Mistake below is one slip a learner is likely to make, with its own hint.

One module per exercise: ``table`` (sinusoidal_encoding, with the frequencies and explanations both share)
and ``rotate``.
"""
from kqvlib.exercises.ch07.rotate import check_rotate
from kqvlib.exercises.ch07.table import check_sinusoidal_encoding

__all__ = ["check_sinusoidal_encoding", "check_rotate"]

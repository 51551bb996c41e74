"""Checkers for chapter 8: the transformer block.

    check_layer_norm(fn)     layer_norm(x, weight, bias, eps): x (..., C), weight and bias (C,), eps a float
                             → (..., C), each position's C features normalised on their own:
                             (x − mean) / √(var + eps) · weight + bias, with the biased variance (÷ C)
    check_block_forward(fn)  block_forward(x, ln1, attn, ln2, mlp): x (B, T, C) and four modules → (B, T, C),
                             one pre-LN block: x' = x + attn(ln1(x)), then x' + mlp(ln2(x'))

The test sizes all differ (B=2, T=5, C=7 for layer_norm; B=2, T=5, C=12 with 3 heads for the block), so a
statistic over the wrong axis gives different numbers instead of passing by luck, and a mean without
keepdim=True fails to broadcast. ``eps`` is large in the tests (0.1 … 0.5, not 1e-5) and the inputs' scales
differ from position to position, so where eps goes (inside the square root, outside it, not at all) changes
the output visibly. The two norms of the block have different random gains and biases, and its input is
far from normalised, so every misplaced norm or residual shows.

One module per exercise: ``layer_norm`` and ``block``.
"""
from kqvlib.exercises.ch08.block import check_block_forward
from kqvlib.exercises.ch08.layer_norm import check_layer_norm

__all__ = ["check_layer_norm", "check_block_forward"]

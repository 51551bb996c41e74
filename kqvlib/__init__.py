"""kqvlib — what the KQV book builds, kept in one place so later chapters can use it.

One module per idea:
    attention  softmax, scaled dot-product attention, causal masks, multi-head attention
    model      GPTConfig and a decoder-only GPT
    data       Tiny Shakespeare, a character tokenizer, batches
    train      device choice, the training loop, checkpoints
    plot       attention heatmaps
    checks     the exercise-checker mechanism (the checkers themselves are in kqvlib.exercises)
"""
from kqvlib.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention, softmax
from kqvlib.seed import seed_everything

__version__ = "0.1.0"

__all__ = [
    "MultiHeadAttention",
    "causal_mask",
    "scaled_dot_product_attention",
    "seed_everything",
    "softmax",
]

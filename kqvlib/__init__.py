"""kqvlib — what the KQV book builds, kept in one place so later chapters can use it.

One module per idea:
    attention  softmax, scaled dot-product attention, causal masks, multi-head attention
    model      GPTConfig and a decoder-only GPT
    data       Tiny Shakespeare, a character tokenizer, batches
    train      device choice, the training loop, checkpoints
    plot       attention heatmaps
    checks     the exercise-checker mechanism (the checkers themselves are in kqvlib.exercises)
"""
from kqvlib.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
    soft_lookup,
    softmax,
)
from kqvlib.data import CharTokenizer, get_batch, load_dataset, load_tinyshakespeare
from kqvlib.model import GPT, GPTConfig
from kqvlib.seed import seed_everything
from kqvlib.train import TrainConfig, load_checkpoint, pick_device, save_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "GPTConfig",
    "CharTokenizer",
    "MultiHeadAttention",
    "TrainConfig",
    "get_batch",
    "load_checkpoint",
    "load_dataset",
    "load_tinyshakespeare",
    "pick_device",
    "save_checkpoint",
    "train",
    "causal_mask",
    "scaled_dot_product_attention",
    "seed_everything",
    "soft_lookup",
    "softmax",
]

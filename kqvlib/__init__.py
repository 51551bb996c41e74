"""kqvlib — what the KQV book builds, kept in one place so later chapters can use it.

One module per idea, in the order of the book (a module imports only from modules above it):
    attention   soft lookup, softmax, scaled dot-product attention, masks      chapters 1–5
    multihead   multi-head attention (self and cross), the KV cache             chapters 6, 11
    positions   sinusoidal, learned and rotary positions                        chapter 7
    block       LayerNorm, the MLP, the transformer block                       chapter 8
    tokenizers  text ↔ token ids (characters; byte-pair encoding)               chapter 9
    data        Tiny Shakespeare, the train/validation split, batches           chapter 9
    model       GPTConfig and a decoder-only GPT                                chapter 10
    precision   device choice and autocast                                      chapter 10
    optim       Muon, Newton–Schulz in bf16 only where bf16 is native           chapter 10
    train       the training loop, loss estimates, checkpoints                  chapter 10
    recipes     model + training configurations measured in the benchmarks     chapter 10
    pretrained  the book's reference GPT, shipped with kqvlib (pretrained_gpt)  chapter 10
    generate    sampling and generation with a KV cache                         chapter 11
    encdec      an encoder–decoder with cross-attention; toy seq2seq tasks      chapter 12
    efficient   online softmax, tiled exact attention, Performer attention      chapter 13
    interpret   capturing attention, head scores, switching heads off           chapter 14
    explorer    an interactive figure of every head's attention (plotly.js)     chapter 14
    induction   an attention-only transformer, induction heads, the pizza model  chapter 15
    modern      grouped-query, latent and sliding-window attention, QK-norm     chapter 16
Tools used throughout: seed (seed_everything), plot (attention heatmaps, a precomputed bar-chart slider),
checks (the exercise-checker mechanism; the checkers themselves are in kqvlib.exercises).
"""
from kqvlib.attention import (
    as_additive,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
    soft_lookup,
    softmax,
)
from kqvlib.block import MLP, Block, LayerNorm
from kqvlib.data import get_batch, load_dataset, load_tinyshakespeare
from kqvlib.generate import generate, generate_text, sample_next, top_k_filter, top_p_filter
from kqvlib.model import GPT, GPTConfig
from kqvlib.multihead import KVCache, MultiHeadAttention, merge_heads, split_heads
from kqvlib.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions, sinusoidal_encoding
from kqvlib.precision import autocast, pick_device, plan, plan_here
from kqvlib.pretrained import pretrained_gpt
from kqvlib.seed import seed_everything
from kqvlib.tokenizers import BPETokenizer, CharTokenizer
from kqvlib.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train

__version__ = "0.4.0"

__all__ = [
    # attention (chapters 1–5)
    "soft_lookup", "softmax", "scaled_dot_product_attention",
    "causal_mask", "padding_mask", "as_additive", "combine_masks",
    # multihead (chapters 6, 11)
    "MultiHeadAttention", "split_heads", "merge_heads", "KVCache",
    # positions (chapter 7)
    "sinusoidal_encoding", "SinusoidalPositions", "LearnedPositions", "RotaryEmbedding",
    # block (chapter 8)
    "LayerNorm", "MLP", "Block",
    # tokenizers, data (chapter 9)
    "CharTokenizer", "BPETokenizer", "load_tinyshakespeare", "load_dataset", "get_batch",
    # model, precision, train (chapter 10)
    "GPTConfig", "GPT", "pick_device", "autocast", "plan", "plan_here", "TrainConfig", "train", "evaluate",
    "save_checkpoint", "load_checkpoint",
    # pretrained (chapter 10): the book's reference model
    "pretrained_gpt",
    # generate (chapter 11)
    "top_k_filter", "top_p_filter", "sample_next", "generate", "generate_text",
    # tools
    "seed_everything",
]

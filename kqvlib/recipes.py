"""Training recipes (chapter 10): a model size and a way to train it, as (GPTConfig, TrainConfig) pairs.

``reference_recipe`` is nanoGPT's documented CPU recipe for Tiny Shakespeare (4 layers, 4 heads,
width 128, context 64, batch 12, AdamW 1e-3 → 1e-4, 2000 steps). ``cpu_recipe`` is what
``benchmarks/bench.py race`` selected by measurement for the same wall-clock time on a 2-core CPU;
``gpu_recipe`` is nanoGPT's Shakespeare-character GPU recipe (6 layers, 6 heads, width 384, context 256,
5000 steps); ``mps_recipe`` the same model for fewer steps; ``recipe_for(plan)`` picks one for a
:class:`kqvlib.precision.Plan`.
"""
from __future__ import annotations

from kqvlib.model import GPTConfig
from kqvlib.precision import Plan
from kqvlib.train import TrainConfig


def reference_recipe(vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """nanoGPT's documented CPU recipe, as kqvlib configs (the benchmarks' reference). Used in chapter 10."""
    model = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
                      dropout=0.0, bias=False, tie_weights=True, pos_emb="learned", norm="layernorm")
    train = TrainConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=2000)
    return model, train


def cpu_recipe(vocab_size: int = 65, seconds: float = 60.0) -> tuple[GPTConfig, TrainConfig]:
    """kqvlib's CPU recipe: train for ``seconds`` of wall-clock time. Built for chapter 10.

    Chosen by measurement (book appendix "Benchmarks"): a 512-character context with rotary positions,
    2 heads of width 64, Muon for the blocks' matrices, a cosine schedule over the time budget, and bf16
    matrix products where the CPU has them natively (float32 elsewhere).
    """
    model = GPTConfig(vocab_size=vocab_size, block_size=512, n_layer=4, n_head=2, n_embd=128,
                      dropout=0.0, bias=False, tie_weights=True, pos_emb="rope", norm="layernorm")
    train = TrainConfig(max_steps=10**9, batch_size=4, lr=6e-3, min_lr=1e-4, warmup_steps=30,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=10**9,
                        time_budget=seconds, optimizer="muon", muon_lr=0.02, cpu_bf16=True)
    return model, train


def notebook_cpu_recipe(vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """The small GPT that chapters 10, 11 and 14 train on the CPU: a fixed number of steps in float32
    with AdamW, so a notebook's stored outputs reproduce (a time budget never does). Built in chapter 10.

    Chapter 10 saves it to :data:`NOTEBOOK_CHECKPOINT`; chapters 11 and 14 load that checkpoint when it
    is there and otherwise train the same model themselves, with the same result.
    """
    # cpu_recipe's model (its 512-character context lets chapter 11 generate 500 tokens with one cache),
    # trained with AdamW in float32 for a fixed number of steps.
    model, _ = cpu_recipe(vocab_size)
    train = TrainConfig(max_steps=300, batch_size=4, lr=6e-3, min_lr=1e-4, warmup_steps=30,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=50,
                        eval_iters=10, progress=False)
    return model, train


NOTEBOOK_CHECKPOINT = "checkpoints/gpt_cpu.pt"  # relative to book/, where the notebooks run; git ignores *.pt


def gpu_recipe(vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """nanoGPT's config/train_shakespeare_char.py as kqvlib configs: 6 layers, 6 heads, width 384,
    context 256, dropout 0.2, batch 64, AdamW 1e-3 → 1e-4 over 5000 steps (nanoGPT reports validation
    loss 1.4697 in about 3 minutes on an A100). torch.compile on. Built in chapter 10."""
    model = GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=6, n_head=6, n_embd=384,
                      dropout=0.2, bias=False, tie_weights=True, pos_emb="learned", norm="layernorm")
    train = TrainConfig(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=250,
                        eval_iters=200, compile=True)
    return model, train


def mps_recipe(vocab_size: int = 65, steps: int = 1500) -> tuple[GPTConfig, TrainConfig]:
    """The GPU recipe's model on Apple's MPS, in float32, for fewer steps (``steps``) with the cosine
    schedule shortened to match. Built in chapter 10."""
    model, train = gpu_recipe(vocab_size)
    train.max_steps, train.eval_interval, train.eval_iters, train.compile = steps, 250, 50, False
    return model, train


def recipe_for(plan: Plan, vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """The recipe a :func:`kqvlib.precision.plan` names: "gpu", "mps" or "cpu" (the notebook's fixed-step
    CPU recipe). Built in chapter 10."""
    recipes = {"gpu": gpu_recipe, "mps": mps_recipe, "cpu": notebook_cpu_recipe}
    model, train = recipes[plan.recipe](vocab_size)
    train.compile = train.compile and plan.compile
    return model, train

"""Training recipes (chapter 10): a model size and a way to train it, as (GPTConfig, TrainConfig) pairs.

``reference_recipe`` is nanoGPT's documented CPU recipe for Tiny Shakespeare (4 layers, 4 heads,
width 128, context 64, batch 12, AdamW 1e-3 → 1e-4, 2000 steps). ``cpu_recipe(seconds)`` measures this
machine's matrix-multiply rate, turns seconds × rate into a compute budget and picks the model size a
scaling study (``benchmarks/bench.py scaling``, the table :data:`SCALING_STUDY`) found best at that
budget;
``gpu_recipe`` trains a model of nanoGPT's Shakespeare-character GPU size (6 layers, 6 heads, width 384,
context 256) with its schedule (5000 steps), with rotary positions; ``mps_recipe`` the same model for
fewer steps; ``recipe_for(plan)`` picks one for a :class:`kqvlib.precision.Plan`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from kqvlib._common import require
from kqvlib.model import GPT, GPTConfig
from kqvlib.precision import Plan, cpu_has_bf16, matmul_rate
from kqvlib.seed import seed_everything
from kqvlib.train import TrainConfig, load_checkpoint, train


def reference_recipe(vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """nanoGPT's documented CPU recipe, as kqvlib configs (the benchmarks' reference). Used in chapter 10."""
    model = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
                      dropout=0.0, bias=False, tie_weights=True, pos_emb="learned", norm="layernorm")
    train = TrainConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=2000)
    return model, train


def train_flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token of a :class:`GPTConfig`: 6 per matmul weight (forward 2, backward 4) plus
    attention's 12·L·C·T (QKᵀ and AV, counted in full as in PaLM's MFU, Chowdhery et al. 2022, app. B).
    The LM head counts as a matmul; embedding lookups and norms do not. Built in chapter 10."""
    C, L, T, V = cfg.n_embd, cfg.n_layer, cfg.block_size, cfg.vocab_size
    matmul_weights = L * (3 * C * C + C * C + 8 * C * C) + C * V  # qkv, out_proj, MLP, head
    return 6 * matmul_weights + 12 * L * C * T


@dataclass(frozen=True)
class Candidate:
    """One model size the CPU recipe may choose: layers, heads (of width 64), width, context, batch.
    Built in chapter 10."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int

    def model(self, vocab_size: int = 65) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=0.0, bias=False,
                         tie_weights=True, pos_emb="rope", norm="layernorm")

    def flops_per_step(self, vocab_size: int = 65) -> float:
        return train_flops_per_token(self.model(vocab_size)) * self.batch_size * self.block_size


# The sizes the scaling study compares (every one: rotary positions, Muon, 2,048 tokens a step).
CANDIDATES = (
    Candidate("tiny", n_layer=2, n_head=2, n_embd=128, block_size=256, batch_size=8),
    Candidate("small", n_layer=3, n_head=2, n_embd=128, block_size=256, batch_size=8),
    Candidate("short", n_layer=4, n_head=2, n_embd=128, block_size=256, batch_size=8),
    Candidate("medium", n_layer=4, n_head=2, n_embd=128, block_size=512, batch_size=4),
    Candidate("large", n_layer=6, n_head=3, n_embd=192, block_size=512, batch_size=4),
)

# What `python benchmarks/bench.py scaling` (and `... scaling --fp32`) measured: for each number format,
# the compute budgets B (FLOP: seconds × this machine's matmul rate in that format) and, per candidate,
# its validation loss (whole split) after training for B. tests/test_recipes.py checks that this copy
# equals benchmarks/results.json.
SCALING_STUDY: dict[str, dict] = {
    "bf16": {"budgets": (1.2e+13, 3.6e+13, 1.08e+14),
             "loss": {"tiny": (2.0077, 1.6523, 1.5214),
                      "small": (2.1249, 1.6908, 1.5171),
                      "short": (2.2558, 1.7403, 1.5314),
                      "medium": (2.3775, 1.8795, 1.5298),
                      "large": (2.5173, 2.2293, 1.6896)}},
    "fp32": {"budgets": (3e+12, 9e+12, 2.7e+13, 8.1e+13),
             "loss": {"tiny": (2.1111, 1.7109, 1.5402, 1.4865),
                      "small": (2.2480, 1.7842, 1.5513, 1.4671),
                      "short": (2.3478, 1.8819, 1.5593, 1.4675),
                      "medium": (2.4801, 2.0676, 1.5942, 1.4566),
                      "large": (2.5446, 2.4524, 1.9798)}},
}


def predicted_loss(name: str, budget: float, mode: str) -> float:
    """The study's loss for candidate ``name`` at ``budget`` FLOP, interpolated linearly in log budget
    between the measured budgets. Outside them it is the nearest measured value: no extrapolation, so a
    candidate the study did not run at its largest budgets (it was far behind) is assumed to gain
    nothing there. Built in chapter 10."""
    study = SCALING_STUDY[mode]
    ys = study["loss"][name]
    xs = [math.log(b) for b in study["budgets"][: len(ys)]]
    x = min(max(math.log(budget), xs[0]), xs[-1])
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


@dataclass(frozen=True)
class Choice:
    """What :func:`cpu_recipe` chose and why. Built in chapter 10."""

    mode: str  # "bf16" (the CPU multiplies bf16 natively) or "fp32"
    rate: float  # the measured matmul rate, FLOP/s, in that format
    budget: float  # seconds × rate, FLOP
    candidate: Candidate
    predicted: dict[str, float]  # every candidate's interpolated study loss at this budget

    def __str__(self) -> str:
        preds = ", ".join(f"{k} {v:.3f}" for k, v in self.predicted.items())
        return (f"{self.mode} matmul rate {self.rate / 1e9:.0f} GFLOP/s → budget {self.budget / 1e12:.1f} "
                f"TFLOP → {self.candidate.name} (study's loss at this budget: {preds})")


def choose(seconds: float, rate: float | None = None, mode: str | None = None) -> Choice:
    """The candidate the scaling study found best for ``seconds`` of training on this machine:
    budget = seconds × matmul rate (measured once per process unless ``rate`` is given), in bf16 where
    the CPU multiplies it natively, else float32. Ties go to the smaller model. Built in chapter 10."""
    mode = mode or ("bf16" if cpu_has_bf16() else "fp32")
    require(mode in SCALING_STUDY, lambda: f"choose: mode must be one of {list(SCALING_STUDY)}, got {mode!r}")
    if rate is None:
        rate = matmul_rate(torch.bfloat16 if mode == "bf16" else torch.float32)
    budget = seconds * rate
    predicted = {c.name: predicted_loss(c.name, budget, mode) for c in CANDIDATES}
    best = min(CANDIDATES, key=lambda c: (round(predicted[c.name], 6), c.flops_per_step()))
    return Choice(mode, rate, budget, best, predicted)


def cpu_recipe(vocab_size: int = 65, seconds: float = 60.0, rate: float | None = None,
               candidate: Candidate | None = None) -> tuple[GPTConfig, TrainConfig]:
    """kqvlib's CPU recipe: train for ``seconds`` of wall-clock time. Built in chapter 10.

    The model is the candidate :func:`choose` picks for this machine's speed and ``seconds`` (or
    ``candidate``); training is Muon for the blocks' matrices (Newton–Schulz in bf16 only where bf16 is
    native, :mod:`kqvlib.optim`), AdamW for the rest, a cosine schedule over the time budget, and bf16
    matrix products where the CPU has them natively (float32 elsewhere).
    """
    cand = candidate or choose(seconds, rate).candidate
    train = TrainConfig(max_steps=10**9, batch_size=cand.batch_size, lr=6e-3, min_lr=1e-4, warmup_steps=30,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=10**9,
                        time_budget=seconds, optimizer="muon", muon_lr=0.02, cpu_bf16=True)
    return cand.model(vocab_size), train


def notebook_cpu_recipe(vocab_size: int = 65) -> tuple[GPTConfig, TrainConfig]:
    """The small GPT that chapters 10, 11 and 14 train on the CPU: a fixed number of steps in float32
    with AdamW, so a notebook's stored outputs reproduce (a time budget never does). Built in chapter 10.

    Chapter 10 saves it to :data:`NOTEBOOK_CHECKPOINT`; chapters 11 and 14 load that checkpoint when it
    is there and otherwise train the same model themselves, with the same result.
    """
    # The "medium" candidate (its 512-character context lets chapter 11 generate 500 tokens with one
    # cache), trained with AdamW in float32 for a fixed number of steps.
    model = next(c for c in CANDIDATES if c.name == "medium").model(vocab_size)
    train = TrainConfig(max_steps=300, batch_size=4, lr=6e-3, min_lr=1e-4, warmup_steps=30,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=50,
                        eval_iters=10, progress=False)
    return model, train


NOTEBOOK_CHECKPOINT = "checkpoints/gpt_cpu.pt"  # relative to book/, where the notebooks run; git ignores *.pt


def notebook_checkpoint(device_kind: str = "cpu") -> str:
    """Where chapter 10 saves the model it trained on a device of this kind: :data:`NOTEBOOK_CHECKPOINT`
    on the CPU, ``checkpoints/gpt_cuda.pt`` or ``checkpoints/gpt_mps.pt`` (a bigger model, the GPU
    recipe's) beside it. Built in chapter 10."""
    require(device_kind in ("cpu", "cuda", "mps"),
            lambda: f"notebook_checkpoint: device_kind must be 'cpu', 'cuda' or 'mps', got {device_kind!r}")
    return NOTEBOOK_CHECKPOINT.replace("gpt_cpu", f"gpt_{device_kind}")


def notebook_threads() -> int:
    """The thread count chapter 10 trains :func:`notebook_cpu_recipe` with: half the cores, 1 to 4.
    Float32 sums are split between threads, so another count could round differently and end in other
    weights after 300 steps. Built in chapter 10."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def notebook_model(vocab_size: int, train_ids: torch.Tensor, val_ids: torch.Tensor,
                   checkpoint: str = NOTEBOOK_CHECKPOINT) -> GPT:
    """Chapter 10's trained model, for chapters 11 and 14, on the CPU and in eval mode. Built in chapter 11.

    Chapter 10 saves it to ``checkpoint`` on the CPU, and to ``gpt_cuda.pt`` or ``gpt_mps.pt`` beside it
    on a GPU (:func:`notebook_checkpoint`); the newest of those files is loaded, as the model its
    configuration describes (the GPU recipe's is bigger, with a 256-character context). When there is none
    it trains :func:`notebook_cpu_recipe`'s model here exactly as chapter 10 does on the CPU (same seed,
    steps and threads), so the weights are those of ``gpt_cpu.pt``."""
    beside = [os.path.join(os.path.dirname(checkpoint), f"gpt_{kind}.pt") for kind in ("cuda", "mps")]
    saved = [p for p in [checkpoint, *beside] if os.path.isfile(p)]
    seed_everything(0)  # as chapter 10's setup cell
    if saved:
        newest = max(saved, key=os.path.getmtime)
        config = torch.load(newest, map_location="cpu", weights_only=True)["model_config"]
        require(config["vocab_size"] == vocab_size, lambda: f"notebook_model: {newest!r} holds a model for "
                f"{config['vocab_size']} tokens, but vocab_size={vocab_size}")
        model = GPT(GPTConfig(**config))
        load_checkpoint(newest, model)  # weights_only: tensors and plain values, no pickled code
    else:
        model_cfg, train_cfg = notebook_cpu_recipe(vocab_size)
        model = GPT(model_cfg)
        threads = torch.get_num_threads()
        torch.set_num_threads(notebook_threads())
        try:
            train(model, train_ids, val_ids, train_cfg, device=torch.device("cpu"))
        finally:
            torch.set_num_threads(threads)
    return model.eval()


def gpu_recipe(vocab_size: int = 65, positions: str = "rope") -> tuple[GPTConfig, TrainConfig]:
    """The GPU recipe, at nanoGPT's Shakespeare-character size (config/train_shakespeare_char.py): 6 layers,
    6 heads, width 384, context 256, dropout 0.2, batch 64, AdamW (fused) 1e-3 → 1e-4 over 5000 steps.
    nanoGPT reports 1.4697 as its best validation estimate, in about 3 minutes on an A100. kqvlib's
    differences: rotary positions (``positions="learned"`` gives nanoGPT's own model), torch.compile, and
    cheaper loss estimates (50 batches every 500 steps instead of 200 every 250). With the plan for a
    CUDA GPU, train() adds bf16 autocast (fp16 + GradScaler below compute capability 8.0), TF32 for what
    stays float32, the split kept on the GPU and no per-step synchronisation. Built in chapter 10."""
    model = GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=6, n_head=6, n_embd=384,
                      dropout=0.2, bias=False, tie_weights=True, pos_emb=positions, norm="layernorm")
    train = TrainConfig(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=500,
                        eval_iters=50, compile=True)
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

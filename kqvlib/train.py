"""Training the GPT (chapter 10): AdamW (or Muon) with warmup + cosine decay, loss estimates,
checkpoints and resuming.

    cfg = TrainConfig(max_steps=2000, batch_size=12, lr=1e-3)
    history = train(model, train_ids, val_ids, cfg, checkpoint_path="ckpt.pt")

The device and number format come from :mod:`kqvlib.precision`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from kqvlib._common import eval_mode, require
from kqvlib.data import get_batch
from kqvlib.optim import Muon
from kqvlib.precision import autocast, autocast_dtype, distributed, maybe_compile, pick_device


@dataclass
class TrainConfig:
    """How to train: steps, batch, learning-rate schedule, optimizer, precision. Built in chapter 10."""

    max_steps: int = 2000
    batch_size: int = 12
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # the end of the cosine decay
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices only, not on biases, LayerNorm or embeddings' positions
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    eval_interval: int = 250  # estimate train/val loss every this many steps (and at the end)
    eval_iters: int = 20  # batches per estimate
    seed: int = 0
    progress: bool = True  # a tqdm bar
    time_budget: float | None = None  # seconds: stop then, and run the schedule by time, not steps
    optimizer: str = "adamw"  # "adamw", or "muon" (Muon for the blocks' matrices, AdamW for the rest)
    muon_lr: float = 0.02  # Muon's peak learning rate (its updates are orthogonalised, so it needs its own)
    cpu_bf16: bool = False  # bf16 autocast on CPUs with native bf16 matmul (float32 weights and optimizer)
    compile: bool = False  # torch.compile on CUDA (falls back to eager where it fails)


def lr_at(step: int, cfg: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup to cfg.lr over warmup_steps, then cosine decay to cfg.min_lr. Built in chapter 10.

    The decay runs from the end of warmup to max_steps, or, when ``progress`` (0 → 1, the fraction of
    the time budget used) is given, over that fraction instead.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if progress is None:
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    frac = min(1.0, max(0.0, progress))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (cfg.lr - cfg.min_lr)


def make_optimizers(model: nn.Module, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """AdamW with weight decay on 2-D weights only (matrices and embeddings), none on biases and norms.
    Built in chapter 10.

    With cfg.optimizer == "muon", the matrices inside the blocks go to Muon instead (Jordan et al. 2024:
    momentum whose update is orthogonalised by a few Newton–Schulz steps); embeddings, the LM head,
    biases and norms stay with AdamW. Each group remembers its peak rate in "peak_lr".
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    require(cfg.optimizer in ("adamw", "muon"), lambda: f"TrainConfig.optimizer must be 'adamw' or 'muon', got {cfg.optimizer!r}")
    use_muon = cfg.optimizer == "muon"
    hidden = [p for n, p in params if use_muon and p.dim() == 2 and n.startswith("blocks.")]
    to_muon = {id(p) for p in hidden}
    decay = [p for n, p in params if p.dim() >= 2 and id(p) not in to_muon]
    no_decay = [p for n, p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "peak_lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "peak_lr": cfg.lr},
    ]
    opts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type in ("cuda", "cpu"))
    ]
    if use_muon:
        # kqvlib's Muon: torch.optim.Muon's updates, with Newton–Schulz in float32 where bf16 is slow.
        opts.append(Muon([{"params": hidden, "peak_lr": cfg.muon_lr}], lr=cfg.muon_lr,
                         weight_decay=cfg.weight_decay, adjust_lr_fn="original"))
    return opts


@torch.no_grad()
def estimate_loss(
    model: nn.Module, splits: dict[str, torch.Tensor], batch_size: int, eval_iters: int,
    device: torch.device, seed: int = 1234,
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split (the same batches every call).
    Built in chapter 10."""
    out = {}
    with eval_mode(model):
        for name, data in splits.items():
            g = torch.Generator().manual_seed(seed)
            losses = []
            for _ in range(eval_iters):
                x, y = get_batch(data, batch_size, model.config.block_size, g, device)
                with autocast(device):
                    _, loss = model(x, y)
                losses.append(loss.item())
            out[name] = sum(losses) / len(losses)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, batch_size: int = 64, device: torch.device | None = None) -> float:
    """Mean cross-entropy over **every** predicted position of ``data`` (1-D ids). Built in chapter 10.

    The split is cut into consecutive windows of the model's block_size; each window predicts its
    block_size next tokens (the last, shorter window too), so every token after the first is scored once.
    """
    device = device or next(model.parameters()).device
    T = model.config.block_size
    n = len(data) - 1  # positions that have a next token
    total, count = 0.0, 0
    full = list(range(0, n - T + 1, T))  # starts of the whole windows
    batches = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
    if n % T:
        batches.append([n - n % T])  # the shorter last window, on its own
    with eval_mode(model):
        for starts in batches:
            L = min(T, n - starts[0])
            x = torch.stack([data[s : s + L] for s in starts]).to(device)  # (b, L)
            y = torch.stack([data[s + 1 : s + 1 + L] for s in starts]).to(device)  # (b, L): the next tokens
            with autocast(device):
                logits, _ = model(x)  # (b, L, V)
            logits = logits.float().reshape(-1, logits.size(-1))  # (b·L, V)
            total += nn.functional.cross_entropy(logits, y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return total / count


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer] | None,
                    step: int, history: dict, train_config: TrainConfig | None = None, elapsed: float = 0.0) -> None:
    """Save everything needed to resume, atomically (a crash mid-save leaves the old checkpoint).
    Built in chapter 10."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers or []],
        "step": step,
        "elapsed": elapsed,
        "history": history,
        "model_config": asdict(model.config) if hasattr(model, "config") else None,
        "train_config": _plain(asdict(train_config)) if train_config is not None else None,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _plain(d: dict) -> dict:
    """Tuples → lists, so the dict loads under weights_only=True."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def load_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer] | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load weights (and optimizer states) saved by :func:`save_checkpoint`, safely (``weights_only=True``).
    Built in chapter 10.
    Returns the whole checkpoint dict (step, elapsed seconds, history, configs)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    for opt, saved in zip(optimizers or [], state.get("optimizers", [])):
        opt.load_state_dict(saved)
    return state


@dataclass
class History:
    """What a chapter plots: the loss estimates, the learning rate and the training time at each estimate.
    Built in chapter 10."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def train(
    model: nn.Module,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    until: int | None = None,
) -> dict[str, list]:
    """Train ``model`` on random batches of ``train_data`` (1-D ids) for cfg.max_steps steps, or for
    cfg.time_budget seconds of training (loss estimates not counted) when that is set.

    Every cfg.eval_interval steps (and at the end) it estimates train and val loss; with
    ``checkpoint_path`` it saves a checkpoint at each estimate, and with ``resume`` it continues from
    that checkpoint (same step, optimizer state, history and batch stream). ``until`` stops early at
    that step (saving a checkpoint there), so a long run can be split over several sittings.
    Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel: every rank
    draws the same global batch of N × batch_size windows and keeps its own slice, DDP averages the
    gradients, and only rank 0 shows progress, estimates losses and saves checkpoints.
    Returns the history as a dict of lists: step, train_loss, val_loss, lr, seconds. Built in chapter 10.
    """
    from tqdm.auto import tqdm

    require(cfg.max_steps > 0, lambda: f"train: max_steps must be positive, got {cfg.max_steps}")
    rank, world, device = distributed(device or pick_device())
    require(world == 1 or cfg.time_budget is None,
            lambda: "train: a time budget would stop the processes at different steps; use max_steps")
    model.to(device)
    model.train()
    opts = make_optimizers(model, cfg, device)
    net = maybe_compile(model, device, cfg.compile)  # what the training steps call
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    B, T = cfg.batch_size, model.config.block_size
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype(device) == torch.float16 else None
    hist = History()
    start, elapsed = 0, 0.0
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path, model, opts, map_location=device)
        start, elapsed, hist = state["step"], state["elapsed"], History(**state["history"])
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(start):  # replay the batch stream so a resumed run sees the same batches
        get_batch(train_data, B * world, T, g)

    def checkpoint(done: int) -> None:
        if checkpoint_path is not None and rank == 0:
            save_checkpoint(checkpoint_path, model, opts, done, asdict(hist), cfg, elapsed)

    stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
    bar = tqdm(range(start, stop), disable=not cfg.progress or rank > 0, desc="training", leave=True)
    for step in bar:
        t0 = time.perf_counter()
        factor = lr_at(step, cfg, elapsed / cfg.time_budget if cfg.time_budget else None) / cfg.lr
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * factor
        x, y = get_batch(train_data, B * world, T, g, device)  # (B·world, T): the global batch
        x, y = x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B]  # (B, T): this rank's slice
        with autocast(device, cfg.cpu_bf16):
            _, loss = net(x, y)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            for opt in opts:
                scaler.unscale_(opt)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for opt in opts:
            if scaler is not None:
                scaler.step(opt)
            else:
                opt.step()
        if scaler is not None:
            scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - t0

        done = step + 1
        out_of_time = cfg.time_budget is not None and elapsed >= cfg.time_budget
        if rank > 0:  # only rank 0 estimates and saves; the others go on to the next step
            continue
        if done % cfg.eval_interval == 0 or done == cfg.max_steps or out_of_time:
            est = estimate_loss(model, {"train": train_data, "val": val_data}, B * world, cfg.eval_iters, device)
            hist.step.append(done)
            hist.train_loss.append(est["train"])
            hist.val_loss.append(est["val"])
            hist.lr.append(cfg.lr * factor)
            hist.seconds.append(elapsed)
            bar.set_postfix(train=f"{est['train']:.3f}", val=f"{est['val']:.3f}")
            checkpoint(done)
        elif done == stop:
            checkpoint(done)
        if out_of_time:
            break
    bar.close()
    if world > 1:
        torch.distributed.barrier()  # rank 0 may still be saving
        torch.distributed.destroy_process_group()
    return asdict(hist)

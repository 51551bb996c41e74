"""Training the GPT (chapter 10): AdamW (or Muon), warmup + cosine decay, loss estimates, checkpoints.

    cfg = TrainConfig(max_steps=2000, batch_size=12, lr=1e-3)
    history = train(model, train_ids, val_ids, cfg, checkpoint_path="ckpt.pt")

The device and number format: a :class:`kqvlib.precision.Plan` (``plan=``; else ``plan_for(device)``).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from kqvlib._common import eval_mode, require, require_ids, require_int, require_ints, require_module
from kqvlib.data import get_batch
from kqvlib.optim import lr_at, make_optimizers  # noqa: F401 — also kqvlib.train's names, as before
from kqvlib.precision import (Plan, distributed, maybe_compile, pick_device, plan_for, rng_state, set_rng_state,
                              unwrap)


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
    compile: bool = False  # torch.compile where the plan allows it (CUDA); eager where compiling fails


@torch.no_grad()
def estimate_loss(model: nn.Module, splits: dict[str, torch.Tensor], batch_size: int, eval_iters: int,
                  device: torch.device, seed: int = 1234, plan: Plan | None = None) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split (the same batches every call), under
    ``plan``'s autocast (default: :func:`plan_for` the device). Built in chapter 10."""
    require(eval_iters > 0 and batch_size > 0,
            lambda: f"estimate_loss: eval_iters and batch_size must be positive, got {eval_iters} and {batch_size}")
    run, out = plan or plan_for(device), {}
    with eval_mode(model):
        for name, data in splits.items():
            g = torch.Generator().manual_seed(seed)
            losses = torch.zeros(eval_iters, dtype=torch.float64, device=device)  # summed on the device: one sync
            for i in range(eval_iters):
                x, y = get_batch(data, batch_size, model.config.block_size, g, device)
                with run.autocast():
                    _, losses[i] = model(x, y)
            out[name] = losses.sum().item() / eval_iters
    return out


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, batch_size: int = 64, device: torch.device | None = None,
             plan: Plan | None = None) -> float:
    """Mean cross-entropy over **every** predicted position of ``data`` (1-D ids). Built in chapter 10.

    The split is cut into consecutive windows of the model's block_size; each window predicts its
    block_size next tokens (the last, shorter window too), so every token after the first is scored once.
    Full batches go through ``model`` as given (compiled, it compiles one shape), the rest eagerly."""
    require_ids("evaluate", "data", data, dim=1)
    require_int("evaluate", "batch_size", batch_size, lo=1)
    require(len(data) >= 2, lambda: f"evaluate: data needs at least 2 ids, got {len(data)}")
    device = device or next(model.parameters()).device
    run, T, data = plan or plan_for(device), model.config.block_size, data.to(device)
    n = len(data) - 1  # positions that have a next token
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    full = list(range(0, n - T + 1, T))  # starts of the whole windows
    batches = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
    if n % T:
        batches.append([n - n % T])  # the shorter last window, on its own
    with eval_mode(model):
        for starts in batches:
            L = min(T, n - starts[0])
            x = torch.stack([data[s : s + L] for s in starts])  # (b, L)
            y = torch.stack([data[s + 1 : s + 1 + L] for s in starts])  # (b, L): the next tokens
            net = model if (len(starts), L) == (batch_size, T) else unwrap(model)
            with run.autocast():
                logits, _ = net(x)  # (b, L, V)
            logits = logits.float().reshape(-1, logits.size(-1))  # (b·L, V)
            total += nn.functional.cross_entropy(logits, y.reshape(-1), reduction="sum")
            count += y.numel()
    return total.item() / count


SAME_FUNCTION = ("dropout", "attn_impl")  # model_config fields a checkpoint may differ in: no other weights


def _plain(x):
    """numpy numbers → Python numbers, tuples and arrays → lists: values weights_only=True loads."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    return x.item() if isinstance(x, np.generic) else x


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer] | None,
                    step: int, history: dict, train_config: TrainConfig | None = None, elapsed: float = 0.0,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """Save everything needed to resume: weights, optimizer and GradScaler states, the RNG states, step,
    time and history. Atomic: written to ``<path>.tmp``, fsynced, then renamed over ``path``, so a crash
    mid-save leaves the old checkpoint (and a failed save removes its temporary file). Built in chapter 10."""
    require_module("save_checkpoint", "model", model)
    path, net = Path(path), unwrap(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": net.state_dict(), "optimizers": [o.state_dict() for o in optimizers or []],
             "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_state(),
             "step": int(step), "elapsed": float(elapsed), "history": _plain(history),
             "model_config": asdict(net.config) if hasattr(net, "config") else None,
             "train_config": _plain(asdict(train_config)) if train_config is not None else None}
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # and the rename itself
        fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(fd), os.close(fd)


def load_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer] | None = None,
                    map_location: str | torch.device = "cpu", scaler: torch.amp.GradScaler | None = None,
                    restore_rng: bool = False) -> dict:
    """Load what :func:`save_checkpoint` saved, safely (``weights_only=True``) and all or nothing: the
    model_config (all but :data:`SAME_FUNCTION`), every tensor's name and shape and the optimizers (the
    file must hold one state for each given) are checked first; a mismatch raises ValueError naming it,
    with nothing loaded. ``scaler`` gets the file's GradScaler state where it has one; ``restore_rng``
    puts back the RNG states (resuming does). Returns the checkpoint dict. Built in chapter 10."""
    require(Path(path).is_file(), lambda: f"load_checkpoint: no checkpoint file at path={str(path)!r}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    require(isinstance(state, dict) and "model" in state,
            lambda: f"load_checkpoint: {str(path)!r} is not a kqvlib checkpoint (no 'model' entry)")
    net = unwrap(model)
    saved_cfg, ours = state.get("model_config") or {}, asdict(net.config) if hasattr(net, "config") else {}
    differ = [f"{k} {saved_cfg.get(k, '(absent)')!r} in the file, {ours.get(k, '(absent)')!r} in the model"
              for k in sorted(set(ours) | set(saved_cfg)) if saved_cfg and ours and k not in SAME_FUNCTION
              and saved_cfg.get(k, ...) != ours.get(k, ...)]
    require(not differ, lambda: f"load_checkpoint: {str(path)!r} holds a model with another model_config "
                                f"({'; '.join(differ)}); nothing was loaded. Build the model from the "
                                f"file's config: GPT(GPTConfig(**state['model_config'])).")
    own, saved = net.state_dict(), state["model"]
    wrong = [f"{k} missing from the file" for k in own if k not in saved]
    wrong += [f"{k} not in the model" for k in saved if k not in own]
    wrong += [f"{k} {tuple(saved[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in own.items() if k in saved and saved[k].shape != v.shape]
    require(not wrong, lambda: f"load_checkpoint: {str(path)!r} does not fit the model ({'; '.join(wrong[:5])}"
                               f"{f'; and {len(wrong) - 5} more' if len(wrong) > 5 else ''}); nothing was loaded")
    saved_opts = state.get("optimizers") or []
    require(not optimizers or len(saved_opts) == len(optimizers),
            lambda: f"load_checkpoint: {len(optimizers)} optimizers given, but {str(path)!r} holds "
                    f"{len(saved_opts)} optimizer states; nothing was loaded")
    for i, (opt, s) in enumerate(zip(optimizers or [], saved_opts)):
        have, had = [len(g["params"]) for g in opt.param_groups], [len(g["params"]) for g in s["param_groups"]]
        require(have == had, lambda: f"load_checkpoint: optimizer {i} has groups of {have} parameters, the "
                                     f"file's has {had}; nothing was loaded")
    net.load_state_dict(saved)
    for opt, s in zip(optimizers or [], saved_opts):
        opt.load_state_dict(s)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if restore_rng and state.get("rng"):
        set_rng_state(state["rng"])
    return state


def train(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, cfg: TrainConfig,
          device: torch.device | None = None, checkpoint_path: str | Path | None = None, resume: bool = False,
          until: int | None = None, plan: Plan | None = None) -> dict[str, list]:
    """Train ``model`` on random batches of ``train_data`` (1-D ids) for cfg.max_steps steps, or for
    cfg.time_budget seconds of training (loss estimates not counted) when that is set.

    ``plan`` sets the number format, GradScaler, compiling and TF32 (default: :func:`plan_for` the device,
    with cfg.cpu_bf16). The split is copied to the device once and batches are gathered there; nothing
    waits for the GPU between steps. Every cfg.eval_interval steps (and at the end) it estimates train and
    val loss; with ``checkpoint_path`` it saves a checkpoint at each estimate, and with ``resume`` it
    continues from that checkpoint (same step, optimizer, GradScaler and RNG states, history, batches),
    which must exist (else ValueError). ``until`` stops early at that step, saving there.
    Under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel: every rank draws the same
    global batch's starts and gathers its own slice; DDP averages gradients; rank 0 estimates and saves.
    Returns a dict of lists: step, train_loss, val_loss, lr, seconds. Built in chapter 10."""
    from tqdm.auto import tqdm

    require_ints("TrainConfig", lo=1, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                 eval_interval=cfg.eval_interval, eval_iters=cfg.eval_iters)
    require(not resume or (checkpoint_path is not None and Path(checkpoint_path).is_file()),
            lambda: f"train: resume=True, but there is no checkpoint at checkpoint_path={checkpoint_path!r}; "
                    f"pass resume=False to start a new run")
    device = torch.device(device) if device is not None else torch.device(plan.device) if plan else pick_device()
    rank, world, device = distributed(device)
    run = plan or plan_for(device, cfg.cpu_bf16)
    require(run.device == device.type, lambda: f"train: plan is for {run.device!r}, but device is {device}")
    require(world == 1 or cfg.time_budget is None,
            lambda: "train: a time budget would stop the processes at different steps; use max_steps")
    B, T = cfg.batch_size, model.config.block_size
    for name, ids in (("train_data", train_data), ("val_data", val_data)):
        require_ids("train", name, ids, dim=1)
        require(len(ids) > T, lambda: f"train: {name} has {len(ids)} ids, need more than block_size={T}")
    model.to(device).train()
    opts = make_optimizers(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type) if run.scaler else None
    hist, start, elapsed = {k: [] for k in ("step", "train_loss", "val_loss", "lr", "seconds")}, 0, 0.0
    if resume:
        state = load_checkpoint(checkpoint_path, model, opts, device, scaler, restore_rng=True)
        start, elapsed, hist = state["step"], state["elapsed"], {k: state["history"][k] for k in hist}
    data = train_data.to(device)  # the whole split lives on the device (Tiny Shakespeare: 8 MB)
    offsets = torch.arange(T, device=device)  # (T,)
    g = torch.Generator().manual_seed(cfg.seed)

    def draw() -> torch.Tensor:  # the starts of the global batch, as get_batch draws them: (B·world,)
        return torch.randint(len(data) - T, (B * world,), generator=g)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:  # this rank's (B, T) slice, gathered on the device
        starts = draw()[rank * B : (rank + 1) * B]  # (B,)
        if device.type == "cuda":  # from pinned memory the copy is queued, not waited for
            starts = starts.pin_memory()
        idx = starts.to(device, non_blocking=True)[:, None] + offsets  # (B, T)
        return data[idx], data[idx + 1]

    for _ in range(start):  # replay the batch stream so a resumed run sees the same batches
        draw()

    with run.tf32_matmuls():
        net = model
        if world > 1:  # DDP first, then compile the wrapped model (as PyTorch recommends)
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        blank = tuple(torch.zeros(B, T, dtype=torch.long, device=device) for _ in "xy")  # the steps' shapes
        net = maybe_compile(net, device, run.compile and cfg.compile, blank, run)
        judge = net if world == 1 else model  # rank 0 estimates alone: no DDP there
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        bar = tqdm(range(start, stop), disable=not cfg.progress or rank > 0, desc="training", leave=True)
        t0 = time.perf_counter()  # training time runs from here, paused for estimates and saves
        for step in bar:
            progress = (elapsed + time.perf_counter() - t0) / cfg.time_budget if cfg.time_budget else None
            factor = lr_at(step, cfg, progress) / cfg.lr
            for group in (group for opt in opts for group in opt.param_groups):
                group["lr"] = group["peak_lr"] * factor
            x, y = batch()
            with run.autocast():
                _, loss = net(x, y)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            for opt in opts if scaler is not None else []:
                scaler.unscale_(opt)  # the true gradients, for clipping
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for opt in opts:
                scaler.step(opt) if scaler is not None else opt.step()
            if scaler is not None:
                scaler.update()
            done = step + 1
            # host time: the GPU may still be a few steps behind; the estimates below wait for it
            out_of_time = cfg.time_budget is not None and elapsed + time.perf_counter() - t0 >= cfg.time_budget
            if rank > 0:  # only rank 0 estimates and saves; the others go on to the next step
                continue
            estimate = done % cfg.eval_interval == 0 or done == cfg.max_steps or out_of_time
            if estimate or done == stop:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed += time.perf_counter() - t0
                if estimate:
                    est = estimate_loss(judge, {"train": data, "val": val_data}, B * world, cfg.eval_iters, device,
                                        plan=run)
                    for k, v in zip(hist, (done, est["train"], est["val"], cfg.lr * factor, elapsed)):
                        hist[k].append(v)
                    bar.set_postfix(train=f"{est['train']:.3f}", val=f"{est['val']:.3f}")
                if checkpoint_path is not None:
                    save_checkpoint(checkpoint_path, model, opts, done, hist, cfg, elapsed, scaler)
                t0 = time.perf_counter()
            if out_of_time:
                break
        bar.close()
    if world > 1:
        torch.distributed.barrier()  # rank 0 may still be saving
        torch.distributed.destroy_process_group()
    return hist

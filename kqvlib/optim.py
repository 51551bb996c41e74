"""Muon whose Newton–Schulz iteration runs in bf16 only where bf16 is native (chapter 10).

Muon (Jordan et al. 2024) keeps a momentum buffer like SGD, but replaces each matrix's update by its
nearest semi-orthogonal matrix, computed with five steps of a Newton–Schulz iteration. PyTorch's
``torch.optim.Muon`` always runs those steps in bfloat16. That is fast on a GPU and on CPUs that
multiply bf16 natively (AVX512-BF16, AMX), and about a hundred times slower than float32 on CPUs that
do not (most laptops with AVX2 only), where it made a training step several times slower.

This module's :class:`Muon` is the same algorithm — it gives ``torch.optim.Muon``'s updates
when its iteration runs in bf16 — with the iteration's number format chosen per device by
:func:`ns_dtype`: bf16 where bf16 is native, float32 elsewhere.

    opt = Muon(hidden_matrices, lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
"""
from __future__ import annotations

import math

import torch

from kqvlib._common import require, require_module, require_real
from kqvlib.precision import native_bf16

__all__ = ["ns_dtype", "newton_schulz", "Muon", "make_optimizers", "lr_at"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan et al. (also torch.optim.Muon's)


def ns_dtype(device: torch.device | str) -> torch.dtype:
    """The number format for Newton–Schulz on ``device``: bf16 where it multiplies bf16 natively
    (:func:`kqvlib.precision.native_bf16`: CUDA GPUs of compute capability ≥ 8.0, CPUs with AVX512-BF16
    or AMX), float32 elsewhere (a T4 or V100, which only emulate bf16; Apple's MPS; CPUs with AVX2 only).
    Built in chapter 10."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def newton_schulz(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16,
                  eps: float = 1e-7) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with ``g``'s singular vectors: g = U S Vᵀ → about U Vᵀ
    (singular values land near 1, roughly in 0.7–1.2, which is all Muon needs). Built in chapter 10.

    g: (m, n) → (m, n) in ``dtype``, or a stack (k, m, n) → (k, m, n), each matrix on its own. Five steps
    of X ← aX + (bA + cA²)X with A = XXᵀ, after scaling X = g/‖g‖ so every singular value starts in
    (0, 1]. The iteration works on the wide orientation (m ≤ n), so XXᵀ is the smaller Gram matrix.
    """
    require(g.dim() in (2, 3), lambda: f"newton_schulz: g must be a matrix (m, n) or a stack (k, m, n), "
                                       f"got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT  # (..., n, m): wide
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    addmm = torch.addmm if x.dim() == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT  # (..., m, m)
        poly = addmm(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        x = addmm(x, poly, x, beta=a)  # a·X + (b·A + c·A²)·X
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised (built in chapter 10): for each matrix W with gradient G,

        B ← μB + (1 − μ)G                   (momentum buffer, as ``buf.lerp_(G, 1 − μ)``)
        U ← (1 − μ)G + μB  (Nesterov) or B
        O ← newton_schulz(U)                (in ``ns_dtype`` — default: :func:`ns_dtype` of W's device)
        W ← (1 − lr·λ)W − lr·√max(1, rows/cols)·O

    Only for 2-D parameters (the blocks' matrices); give embeddings, biases and norms to AdamW. With
    bf16 Newton–Schulz its updates are ``torch.optim.Muon``'s (``adjust_lr_fn="original"``): exactly so
    where each matrix has its own shape; matrices of one shape go through the iteration as one stack,
    which saves most of a small model's optimizer time and changes the numbers by rounding at most.
    """

    def __init__(self, params, lr: float = 0.02, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, ns_dtype: torch.dtype | None = None,
                 adjust_lr_fn: str | None = "original") -> None:
        require(lr >= 0 and weight_decay >= 0 and 0 <= momentum < 1,
                lambda: f"Muon: need lr ≥ 0, weight_decay ≥ 0, 0 ≤ momentum < 1; got {lr}, {weight_decay}, {momentum}")
        require(adjust_lr_fn in (None, "original"),
                lambda: f"Muon: adjust_lr_fn must be 'original' (or None, the same), got {adjust_lr_fn!r}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, ns_dtype=ns_dtype)
        super().__init__(params, defaults)
        self._native: dict[torch.device, torch.dtype] = {}  # ns_dtype per device, asked once
        for group in self.param_groups:
            for p in group["params"]:
                require(p.dim() == 2, lambda: f"Muon: only matrices (2-D parameters), got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            # Matrices of one shape are orthogonalised together, as one stack: a step of a small model
            # is otherwise mostly the overhead of many tiny matrix products.
            same_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                same_shape.setdefault((tuple(p.shape), p.device), []).append((p, update))
            for (shape, device), items in same_shape.items():
                if device not in self._native:
                    self._native[device] = ns_dtype(device)
                dtype = group["ns_dtype"] or self._native[device]
                if len(items) == 1:
                    orthogonal = [newton_schulz(items[0][1], group["ns_steps"], dtype)]
                else:
                    orthogonal = newton_schulz(torch.stack([u for _, u in items]), group["ns_steps"], dtype)
                scale = -lr * math.sqrt(max(1.0, shape[0] / shape[1]))
                for (p, _), o in zip(items, orthogonal):
                    p.mul_(1 - lr * wd)
                    p.add_(o, alpha=scale)
        return loss


def make_optimizers(model: torch.nn.Module, cfg, device: torch.device) -> list[torch.optim.Optimizer]:
    """AdamW with weight decay on 2-D weights only (matrices and embeddings), none on biases and norms;
    ``cfg`` is a :class:`kqvlib.train.TrainConfig`. Built in chapter 10.

    With cfg.optimizer == "muon", the matrices inside the blocks go to :class:`Muon` instead;
    embeddings, the LM head, biases and norms stay with AdamW. Each group remembers its peak rate in
    "peak_lr". AdamW is fused (one kernel for all parameters) on CUDA and the CPU.
    """
    require_module("train", "model", model)
    for name in ("lr", "muon_lr", "min_lr", "weight_decay", "grad_clip", "warmup_steps"):  # peak rates > 0
        require_real("TrainConfig", name, getattr(cfg, name), lo=0, lo_open=name in ("lr", "muon_lr"))
    require(len(cfg.betas) == 2, lambda: f"TrainConfig: betas must be two numbers, got {cfg.betas!r}")
    for b in cfg.betas:
        require_real("TrainConfig", "betas", b, lo=0, hi=1, hi_open=True)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    require(cfg.optimizer in ("adamw", "muon"),
            lambda: f"TrainConfig.optimizer must be 'adamw' or 'muon', got {cfg.optimizer!r}")
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
        torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=torch.device(device).type in ("cuda", "cpu"))
    ]
    if use_muon:  # Newton–Schulz in bf16 where that is native (ns_dtype), float32 elsewhere
        opts.append(Muon([{"params": hidden, "peak_lr": cfg.muon_lr}], lr=cfg.muon_lr,
                         weight_decay=cfg.weight_decay, adjust_lr_fn="original"))
    return opts


def lr_at(step: int, cfg, progress: float | None = None) -> float:
    """Linear warmup to cfg.lr over warmup_steps, then cosine decay to cfg.min_lr (``cfg``: a
    :class:`kqvlib.train.TrainConfig`). Built in chapter 10.

    The decay runs from the end of warmup to max_steps, or, when ``progress`` (0 → 1, the fraction of
    the time budget used) is given, over that fraction instead.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if progress is None:
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    frac = min(1.0, max(0.0, progress))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (cfg.lr - cfg.min_lr)

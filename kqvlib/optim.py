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

from kqvlib._common import require
from kqvlib.precision import cpu_has_bf16

__all__ = ["ns_dtype", "newton_schulz", "Muon"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan et al. (also torch.optim.Muon's)


def ns_dtype(device: torch.device | str) -> torch.dtype:
    """The number format for Newton–Schulz on ``device``: bf16 on CUDA GPUs with bf16 and on CPUs
    with native bf16 matrix products (:func:`kqvlib.precision.cpu_has_bf16`), float32 elsewhere
    (older GPUs, Apple's MPS, CPUs with AVX2 only). Built in chapter 10."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


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

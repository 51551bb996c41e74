"""Which device to train on, and in which number format (chapter 10).

    device = pick_device()                  # cuda, then mps, then cpu
    with autocast(device):                  # bf16 (or fp16) matrix products where that is faster
        logits, loss = model(x, y)

On CUDA the forward pass runs under bf16 autocast (fp16, with a GradScaler, on GPUs without bf16);
on the CPU and MPS it runs in float32 unless a CPU with native bf16 matrix products is asked to use them.
"""
from __future__ import annotations

import contextlib

import torch


def pick_device() -> torch.device:
    """The fastest device available: cuda, then mps (Apple), then cpu. Built in chapter 10."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX), so bf16 is faster,
    not slower. Built in chapter 10."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """bf16 on CUDA GPUs that support it, fp16 on older CUDA GPUs; on the CPU bf16 only when asked
    (``cpu_bf16``) and the CPU has native bf16 matmul; otherwise None (float32). Built in chapter 10."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16 and cpu_has_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """``with autocast(device): …`` runs matrix products in :func:`autocast_dtype`, or changes nothing
    where that is float32. Built in chapter 10."""
    dtype = autocast_dtype(device, cpu_bf16)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

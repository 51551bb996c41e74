"""Which device to train on, and in which number format (chapter 10).

    device = pick_device()                  # cuda, then mps, then cpu
    with autocast(device):                  # bf16 (or fp16) matrix products where that is faster
        logits, loss = model(x, y)

On CUDA the forward pass runs under bf16 autocast (fp16, with a GradScaler, on GPUs without bf16);
on the CPU and MPS it runs in float32 unless a CPU with native bf16 matrix products is asked to use them.
:func:`plan` is the whole choice in one tested function; :func:`distributed` joins a torchrun job.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

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
    not slower. ``KQV_CPU_BF16=0`` in the environment makes it say False (to try the float32 path on a
    CPU that has bf16, as ``benchmarks/bench.py --fp32`` does). Built in chapter 10."""
    if os.environ.get("KQV_CPU_BF16", "").strip() == "0":
        return False
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


@dataclass(frozen=True)
class Plan:
    """How to train on one kind of device: the autocast dtype (None: float32), whether fp16 needs a
    GradScaler, which recipe (:func:`kqvlib.recipes.recipe_for`) and whether to try torch.compile.
    Built in chapter 10."""

    device: str
    dtype: torch.dtype | None
    scaler: bool
    recipe: str
    compile: bool


def plan(device_kind: str, bf16_supported: bool = False) -> Plan:
    """The device/precision choice as one small function. Built in chapter 10.

    cuda with bf16 → bf16 autocast; cuda without bf16 (a T4, a V100) → fp16 autocast + GradScaler; both
    the "gpu" recipe and torch.compile. mps → float32, the "mps" recipe. cpu → float32 always (so stored
    outputs reproduce on CPUs without native bf16), the "cpu" recipe (fixed steps)."""
    if device_kind == "cuda":
        dtype = torch.bfloat16 if bf16_supported else torch.float16
        return Plan("cuda", dtype, scaler=not bf16_supported, recipe="gpu", compile=True)
    if device_kind == "mps":
        return Plan("mps", None, scaler=False, recipe="mps", compile=False)
    if device_kind == "cpu":
        return Plan("cpu", None, scaler=False, recipe="cpu", compile=False)
    raise ValueError(f"plan: device_kind must be 'cuda', 'mps' or 'cpu', got {device_kind!r}")


def plan_here() -> Plan:
    """:func:`plan` for the best device of this machine (cuda → mps → cpu). Built in chapter 10."""
    kind = pick_device().type
    return plan(kind, kind == "cuda" and torch.cuda.is_bf16_supported())


def maybe_compile(model: torch.nn.Module, device: torch.device, enabled: bool = True) -> torch.nn.Module:
    """torch.compile(model) on CUDA when it compiles and runs; otherwise the model unchanged, with a note.
    (On the CPU compiling costs more time than a short run saves.) Built in chapter 10."""
    if not enabled or device.type != "cuda":
        return model
    try:
        compiled = torch.compile(model)
        cfg = model.config
        x = torch.zeros(1, min(8, cfg.block_size), dtype=torch.long, device=device)
        with autocast(device):
            compiled(x)  # compiling happens here; a missing compiler (Triton, a C compiler) raises
        return compiled
    except Exception as e:  # noqa: BLE001 — any failure means: run uncompiled
        print(f"torch.compile unavailable ({type(e).__name__}); training uncompiled.")
        return model


def distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process. Under ``torchrun --nproc_per_node=N`` (WORLD_SIZE > 1)
    it joins the process group: nccl on CUDA (one GPU per process), gloo on the CPU. A single process
    gets (0, 1, device) and nothing else happens. Built in chapter 10."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


_RATES: dict[tuple[str, torch.dtype, int, int], float] = {}


def matmul_rate(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", n: int = 1024,
                seconds: float = 0.3) -> float:
    """This machine's matrix-multiply rate in FLOP/s: the best of five timings of (n, n) @ (n, n) in
    ``dtype``, after a warm-up; about a second in all. Measured once per process (per device, dtype,
    size and thread count) and then remembered. Built in chapter 10."""
    import time

    device = torch.device(device)
    key = (str(device), dtype, n, torch.get_num_threads())
    if key not in _RATES:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        a @ b
        sync()
        iters = max(1, min(200, int(seconds / 5 / max(time.perf_counter() - t0, 1e-6))))  # ~seconds/5 each
        rates = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(iters):
                a @ b
            sync()
            rates.append(2 * n**3 * iters / (time.perf_counter() - t0))
        _RATES[key] = max(rates)
    return _RATES[key]

"""Which device to train on, and in which number format (chapter 10).

    device = pick_device()                  # cuda, then mps, then cpu
    with autocast(device):                  # bf16 (or fp16) matrix products where that is faster
        logits, loss = model(x, y)

On CUDA the forward pass runs under bf16 autocast where the GPU multiplies bf16 natively (compute
capability 8.0 and later), and under fp16 with a GradScaler on older GPUs (a T4, a V100); on the CPU and
MPS it runs in float32 unless a CPU with native bf16 matrix products is asked to use them.
:func:`plan` is the whole choice in one tested function (:func:`plan_for` asks a device for its
inputs); :func:`distributed` joins a torchrun job.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from kqvlib._common import require


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


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` multiplies bf16 matrices natively. Built in chapter 10.

    A CUDA GPU does from compute capability 8.0 on (A100 8.0, RTX 30xx 8.6, H100 9.0). Older ones (a
    Colab T4 7.5, a V100 7.0) only emulate bf16, slowly, and ``torch.cuda.is_bf16_supported()`` still
    says True there (its default counts emulation), so the capability decides. A CPU does with
    AVX512-BF16 or AMX (:func:`cpu_has_bf16`); Apple's MPS is treated as not."""
    device = torch.device(device)
    if device.type == "cuda":
        return tuple(torch.cuda.get_device_capability(device)) >= (8, 0)
    return device.type == "cpu" and cpu_has_bf16()


@dataclass(frozen=True)
class Plan:
    """How to train on one kind of device: the autocast dtype (None: float32), whether fp16 needs a
    GradScaler, which recipe (:func:`kqvlib.recipes.recipe_for`), whether to try torch.compile, and
    whether float32 matrix products may use TF32 (CUDA). :func:`kqvlib.train.train` follows it.
    Built in chapter 10."""

    device: str
    dtype: torch.dtype | None
    scaler: bool
    recipe: str
    compile: bool
    tf32: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """``with plan.autocast(): …`` runs matrix products in the plan's dtype (nothing changes for float32)."""
        return torch.autocast(self.device, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    @contextlib.contextmanager
    def tf32_matmuls(self):
        """``with plan.tf32_matmuls(): …`` lets float32 matrix products on CUDA use TF32 where the plan
        says so (what autocast leaves in float32: the optimizer's, the loss's); restored afterwards."""
        before = torch.backends.cuda.matmul.fp32_precision
        if self.tf32:
            torch.backends.cuda.matmul.fp32_precision = "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision = before


def plan(device_kind: str, bf16_supported: bool = False, cpu_bf16: bool = False) -> Plan:
    """The device/precision choice as one small function. Built in chapter 10.

    ``bf16_supported`` means *native* bf16 (:func:`native_bf16`). cuda with it (compute capability ≥ 8.0)
    → bf16 autocast; cuda without it (a T4, a V100) → fp16 autocast + GradScaler; both the "gpu" recipe,
    torch.compile and TF32 for what stays in float32. mps → float32, the "mps" recipe. cpu → float32 (so
    stored outputs reproduce on CPUs without native bf16), the "cpu" recipe (fixed steps); bf16 only when
    asked (``cpu_bf16``, as the time-budget CPU recipe does) on a CPU that has it natively."""
    if device_kind == "cuda":
        dtype = torch.bfloat16 if bf16_supported else torch.float16
        return Plan("cuda", dtype, scaler=not bf16_supported, recipe="gpu", compile=True, tf32=True)
    if device_kind == "mps":
        return Plan("mps", None, scaler=False, recipe="mps", compile=False)
    if device_kind == "cpu":
        dtype = torch.bfloat16 if cpu_bf16 and bf16_supported else None
        return Plan("cpu", dtype, scaler=False, recipe="cpu", compile=False)
    raise ValueError(f"plan: device_kind must be 'cuda', 'mps' or 'cpu', got {device_kind!r}")


def plan_for(device: torch.device | str, cpu_bf16: bool = False) -> Plan:
    """:func:`plan` for ``device``, asking it what it has (:func:`native_bf16`). Built in chapter 10."""
    device = torch.device(device)
    return plan(device.type, native_bf16(device), cpu_bf16)


def plan_here() -> Plan:
    """:func:`plan` for the best device of this machine (cuda → mps → cpu). Built in chapter 10."""
    return plan_for(pick_device())


def autocast_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """:func:`plan_for`'s dtype: bf16 on CUDA GPUs with native bf16, fp16 on older ones; on the CPU bf16
    only when asked (``cpu_bf16``) and native; otherwise None (float32). Built in chapter 10."""
    return plan_for(device, cpu_bf16).dtype


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """``with autocast(device): …`` runs matrix products in :func:`autocast_dtype`, or changes nothing
    where that is float32. Built in chapter 10."""
    if isinstance(device, str) and device.split(":")[0] in ("cpu", "cuda", "mps"):
        device = torch.device(device)
    require(isinstance(device, torch.device),
            lambda: f"autocast: device must be a torch.device (or 'cpu', 'cuda', 'mps'), got {device!r}")
    dtype = autocast_dtype(device, cpu_bf16)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def maybe_compile(model: torch.nn.Module, device: torch.device, enabled: bool = True,
                  example: tuple | None = None, run: Plan | None = None) -> torch.nn.Module:
    """``torch.compile(model)`` when ``enabled``, warmed up once on ``example`` = (x, y), the training
    batch's real shapes, with a forward and backward under ``run``'s autocast, so the training steps
    reuse that one graph. Any failure there (no Triton, no C compiler) gives the model back uncompiled,
    with a note. Without ``example`` compiling happens at the first call. Built in chapter 10."""
    if not enabled:
        return model
    compiled = torch.compile(model)
    if example is None:
        return compiled
    x, y = example
    params = list(model.parameters())
    try:
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the warm-up's dropout must not shift the RNG
            with run.autocast() if run else contextlib.nullcontext():
                _, loss = compiled(x, y)
            loss.backward()
        return compiled
    except Exception as e:  # noqa: BLE001 — any failure means: run uncompiled
        print(f"torch.compile unavailable ({type(e).__name__}); training uncompiled.")
        return model
    finally:
        for p in params:
            p.grad = None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module that holds the weights, inside the wrappers of :func:`maybe_compile` (torch.compile) and
    DistributedDataParallel. Built in chapter 10."""
    for name in ("_orig_mod", "module"):
        inner = getattr(model, name, None)
        if isinstance(inner, torch.nn.Module):
            return unwrap(inner)
    return model


def rng_state() -> dict:
    """The state of every random-number generator a training step may draw from: torch's (CPU, each CUDA
    GPU), Python's and NumPy's, as tensors and plain values (a checkpoint holds it). Built in chapter 10."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": [version, list(mt), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(state: dict) -> None:
    """Put back what :func:`rng_state` returned. Built in chapter 10."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][: torch.cuda.device_count()]])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))


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

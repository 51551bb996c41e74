"""Small helpers every kqvlib module may use (they import nothing else from kqvlib).

* :func:`require` — the one way kqvlib checks its arguments: a clear ``ValueError`` that names the
  shapes. The message may be a ``lambda`` so that it is formatted only when the check fails, which
  keeps checks cheap on hot paths (one call per generated token, say).
* ``require_float``, ``require_ids``, ``require_int``, ``require_real``, ``require_choice``, … — the
  checks every public function makes of its arguments, built on :func:`require`. Each message starts
  with ``"func: name"`` (the function and the argument at fault), then what it got and what was expected.
* :func:`eval_mode` — run a block of code with a model in eval mode and restore its mode afterwards,
  even when the block raises.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Callable, Iterator

import torch
import torch.nn as nn

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def require(condition: bool, message: str | Callable[[], str]) -> None:
    """Raise ``ValueError(message)`` unless ``condition``; a callable message is called only then."""
    if not condition:
        raise ValueError(message() if callable(message) else message)


def _desc(t: torch.Tensor) -> str:
    return f"dtype {t.dtype} with shape {tuple(t.shape)}" + ("" if t.device.type == "cpu" else f" on {t.device}")


def require_tensor(func: str, name: str, t: object) -> None:
    """``t`` must be a torch.Tensor."""
    require(isinstance(t, torch.Tensor), lambda: f"{func}: {name} must be a torch.Tensor, got {type(t).__name__}")


def require_float(func: str, name: str, t: object, dim: int | None = None, min_dim: int = 0) -> None:
    """``t`` must be a floating-point tensor (with ``dim`` dimensions, or at least ``min_dim``); the error
    names the function, the argument and what it got."""
    require_tensor(func, name, t)
    require(t.is_floating_point(),
            lambda: f"{func}: {name} must be a floating-point tensor, got {_desc(t)}")
    require((dim is None or t.dim() == dim) and t.dim() >= min_dim, lambda: (
        f"{func}: {name} must have {dim if dim is not None else f'at least {min_dim}'} dimensions, "
        f"got shape {tuple(t.shape)}"))


def require_ids(func: str, name: str, t: object, dim: int | None = None) -> None:
    """``t`` must be an integer tensor of token ids (not bool, not float) whose values can be read (not on
    the meta device), with ``dim`` dimensions when given."""
    require_tensor(func, name, t)
    require(t.dtype in _INTEGER_DTYPES, lambda: f"{func}: {name} must be integer token ids, got {_desc(t)}")
    require(dim is None or t.dim() == dim, lambda: (
        f"{func}: {name} must have {dim} dimensions {'(B, T)' if dim == 2 else '(T,)' if dim == 1 else ''}, "
        f"got shape {tuple(t.shape)}"))
    require(t.device.type != "meta", lambda: f"{func}: {name} is on the meta device (it has no values)")


def is_int(v: object) -> bool:
    """A Python or NumPy integer, or a symbolic size under torch.compile — not a bool."""
    return isinstance(v, (numbers.Integral, torch.SymInt)) and not isinstance(v, bool)


def require_int(func: str, name: str, v: object, lo: int | None = None, hi: int | None = None,
                none_ok: bool = False) -> None:
    """``v`` must be an int with ``lo <= v`` (and ``v <= hi``) where given; or None, with ``none_ok``."""
    require(none_ok and v is None or is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), lambda: (
        f"{func}: {name} must be {'None or ' if none_ok else ''}an int" + (f" ≥ {lo}" if lo is not None else "")
        + (f" and ≤ {hi}" if hi is not None else "") + f", got {v!r}"))


def require_ints(func: str, lo: int | None = None, **values: object) -> None:
    """Each keyword argument must be an int ≥ ``lo``: ``require_ints("f", lo=0, B=B, T=T)``."""
    for name, v in values.items():
        require_int(func, name, v, lo=lo)


def require_real(func: str, name: str, v: object, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, none_ok: bool = False) -> None:
    """``v`` must be a finite real number in the interval [lo, hi] (an end is open where asked); or None,
    with ``none_ok``."""
    if none_ok and v is None:
        return
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))

    def message():
        where = ""
        if lo is not None or hi is not None:
            left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
            where = f" in {left}{'-∞' if lo is None else lo}, {'∞' if hi is None else hi}{right}"
        return f"{func}: {name} must be {'None or ' if none_ok else ''}a finite number{where}, got {v!r}"
    require(ok, message)


def require_choice(func: str, name: str, v: object, choices: tuple) -> None:
    """``v`` must be one of ``choices``."""
    require(isinstance(v, str) and v in choices, lambda: f"{func}: {name} must be one of {choices}, got {v!r}")


def require_str(func: str, name: str, v: object) -> None:
    require(isinstance(v, str), lambda: f"{func}: {name} must be a str, got {type(v).__name__} {v!r:.40}")


def require_generator(func: str, name: str, g: object) -> None:
    """``g`` must be None or a torch.Generator."""
    require(g is None or isinstance(g, torch.Generator),
            lambda: f"{func}: {name} must be a torch.Generator or None, got {type(g).__name__}")


def require_sampling(func: str, temperature: object, top_k: object, top_p: object, generator: object) -> None:
    """Sampling's arguments: temperature ≥ 0 (0 = greedy), top_k None or an int ≥ 1, top_p None or in
    (0, 1], generator None or a torch.Generator."""
    require_real(func, "temperature", temperature, lo=0)
    require_int(func, "top_k", top_k, lo=1, none_ok=True)
    require_real(func, "top_p", top_p, lo=0, hi=1, lo_open=True, none_ok=True)
    require_generator(func, "generator", generator)


def require_dtype(func: str, name: str, dtype: object, floating: bool = True) -> None:
    """``dtype`` must be a torch.dtype (a floating-point one where asked)."""
    require(isinstance(dtype, torch.dtype) and (not floating or dtype.is_floating_point),
            lambda: f"{func}: {name} must be a floating-point torch.dtype, got {dtype!r}")


def as_device(func: str, name: str, device: object) -> torch.device | None:
    """``device`` (None, a torch.device, a string such as "cpu" or "cuda:0", an index) as a torch.device."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{func}: {name} must be a torch.device or a name such as 'cpu', got {device!r} "
                         f"({e})") from None


def require_dim(func: str, x: torch.Tensor, dim: object) -> None:
    """``dim`` must be an int naming an axis of ``x`` (a 0-d tensor takes 0 or -1, as in torch)."""
    n = max(x.dim(), 1)
    require(is_int(dim) and -n <= dim < n, lambda: (
        f"{func}: dim must be an int in [{-n}, {n - 1}] for x of shape {tuple(x.shape)}, got {dim!r}"))


def require_qkv(func: str, q: object, k: object, v: object, names: tuple[str, str, str] = ("q", "k", "v"),
                n: int = 2, same_length: bool = False) -> None:
    """Attention's q (..., T, d), k (..., S, d), v (..., S, d_v) — or, with ``n=1``, one position's
    (..., d), (..., d), (..., d_v): floating point, one dtype and device, d shared, S shared by k and v
    (and T = S with ``same_length``), leading axes that broadcast together. ``names``: the arguments'."""
    nq, nk, nv = names
    for arg, t in zip(names, (q, k, v)):
        require_float(func, arg, t, min_dim=n)
    require(q.shape[-1] == k.shape[-1],
            lambda: f"{func}: {nq} {tuple(q.shape)} and {nk} {tuple(k.shape)} must share their last axis d")
    require(n == 1 or k.shape[-2] == v.shape[-2], lambda: (
        f"{func}: {nk} {tuple(k.shape)} and {nv} {tuple(v.shape)} must have the same number of keys S"))
    require(not same_length or q.shape[-2] == k.shape[-2], lambda: (
        f"{func}: {nq} {tuple(q.shape)} and {nk} {tuple(k.shape)} must have as many positions (causal)"))
    require(q.dtype == k.dtype == v.dtype and q.device == k.device == v.device, lambda: (
        f"{func}: {nq}, {nk} and {nv} must share a dtype and a device, got {q.dtype}, {k.dtype}, {v.dtype} on "
        f"{q.device}, {k.device}, {v.device}"))
    try:
        torch.broadcast_shapes(q.shape[:-n], k.shape[:-n], v.shape[:-n])
    except RuntimeError:
        raise ValueError(f"{func}: the leading axes of {nq} {tuple(q.shape)}, {nk} {tuple(k.shape)} and {nv} "
                         f"{tuple(v.shape)} do not broadcast together") from None


def require_same_device(func: str, **tensors: torch.Tensor) -> None:
    """All the named tensors live on one device."""
    devices = {t.device for t in tensors.values()}
    require(len(devices) == 1, lambda: f"{func}: " + ", ".join(
        f"{n} is on {t.device}" for n, t in tensors.items()) + "; they must be on one device")


def require_module(func: str, name: str, m: object) -> None:
    require(isinstance(m, nn.Module), lambda: f"{func}: {name} must be a torch.nn.Module, got {type(m).__name__}")


def lookup(func: str, name: str, emb: nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
    """``emb(idx)``; an id outside the table is a ValueError naming it. The ids are searched only after the
    embedding has raised (on the CPU), so the check costs nothing when they are fine."""
    require(idx.dtype in (torch.int64, torch.int32) and idx.device == emb.weight.device, lambda: (
        f"{func}: {name} must be int64 or int32 token ids (what an embedding takes) on {emb.weight.device}, "
        f"got {idx.dtype} on {idx.device}"))
    try:
        return emb(idx)
    except IndexError:
        V = emb.num_embeddings
        bad = idx[(idx < 0) | (idx >= V)]
        raise ValueError(f"{func}: {name}: token id {bad[0].item()} is outside the vocabulary "
                         f"(vocab_size {V}: ids 0..{V - 1})") from None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model): …`` — dropout off inside the block; the model's train/eval mode is
    restored afterwards, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

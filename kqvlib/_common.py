"""Small helpers every kqvlib module may use (they import nothing else from kqvlib).

* :func:`require` — the one way kqvlib checks its arguments: a clear ``ValueError`` that names the
  shapes. The message may be a ``lambda`` so that it is formatted only when the check fails, which
  keeps checks cheap on hot paths (one call per generated token, say).
* :func:`eval_mode` — run a block of code with a model in eval mode and restore its mode afterwards,
  even when the block raises.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn


def require(condition: bool, message: str | Callable[[], str]) -> None:
    """Raise ``ValueError(message)`` unless ``condition``; a callable message is called only then."""
    if not condition:
        raise ValueError(message() if callable(message) else message)


def require_float(func: str, name: str, t: object) -> None:
    """``t`` must be a floating-point tensor; the error names the function, the argument and what it got."""
    require(isinstance(t, torch.Tensor), lambda: f"{func}: {name} must be a torch.Tensor, got {type(t).__name__}")
    require(t.is_floating_point(),
            lambda: f"{func}: {name} must be a floating-point tensor, got dtype {t.dtype} with shape {tuple(t.shape)}")


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

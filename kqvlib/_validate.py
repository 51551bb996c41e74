"""Small argument checks shared by kqvlib's public functions: clear ``ValueError``s that name shapes."""
from __future__ import annotations

import torch


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def require_float(func: str, name: str, t: object) -> None:
    """``t`` must be a floating-point tensor; the error names the function, the argument and what it got."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{func}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(
            f"{func}: {name} must be a floating-point tensor, got dtype {t.dtype} with shape {tuple(t.shape)}"
        )

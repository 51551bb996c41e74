"""One call to seed every random number generator a chapter uses."""
from __future__ import annotations

import random

import numpy as np
import torch

from kqvlib._common import require


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global RNG and PyTorch (CPU and every GPU).
    Used from chapter 1 on (every setup cell)."""
    require(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32,
            lambda: f"seed_everything: seed must be an int in 0 .. 2**32 - 1, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

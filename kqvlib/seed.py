"""One call to seed every random number generator a chapter uses."""
from __future__ import annotations

import random

import numpy as np
import torch

from kqvlib._common import require_int


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global RNG and PyTorch (CPU and every GPU).
    Used from chapter 1 on (every setup cell)."""
    require_int("seed_everything", "seed", seed, lo=0, hi=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

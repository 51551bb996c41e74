"""One call to seed every random number generator a chapter uses."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global RNG and PyTorch (CPU and every GPU).
    Used from chapter 1 on (every setup cell)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

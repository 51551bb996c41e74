"""Shared test set-up: the data cache points at a copy of Tiny Shakespeare, never at the network."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_COPY = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def tinyshakespeare_path() -> Path | None:
    """$KQV_TINYSHAKESPEARE if set, else the shared copy beside the checkout, else None."""
    env = os.environ.get("KQV_TINYSHAKESPEARE")
    if env and Path(env).is_file():
        return Path(env)
    return SHARED_COPY if SHARED_COPY.is_file() else None


@pytest.fixture
def shakespeare_file() -> Path:
    p = tinyshakespeare_path()
    if p is None:
        pytest.skip("no local copy of Tiny Shakespeare (set KQV_TINYSHAKESPEARE)")
    return p

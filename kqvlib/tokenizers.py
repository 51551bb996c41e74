"""Text as numbers (chapter 9): tokenizers turn a string into integer ids and back."""
from __future__ import annotations

import torch

from kqvlib._common import require


class CharTokenizer:
    """Characters ↔ integer ids. The vocabulary is the sorted set of characters of ``text``.
    Built in chapter 9."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        """str of length n → n ids."""
        unknown = sorted(set(s) - self.stoi.keys())
        require(not unknown, lambda: f"CharTokenizer.encode: characters not in the vocabulary: {unknown!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids) -> str:
        """Ids (list or 1-D tensor of length n) → str of length n."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        require(not bad, lambda: f"CharTokenizer.decode: ids out of range 0..{len(self.chars) - 1}: {bad[:5]}")
        return "".join(self.chars[i] for i in ids)

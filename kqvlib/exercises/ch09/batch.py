"""Chapter 9 checker for a batch of next-token examples (``check_batch``). The chapter's docstring is in
:mod:`kqvlib.exercises.ch09`.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake
from kqvlib.exercises.ch09.tokens import _explain
from kqvlib.exercises.diagnose import checked as check

__all__ = ["check_batch"]


def _windows(data, starts, T, shift=0):  # (B, T): data[s + shift : s + shift + T] for each start s
    return data[starts[:, None] + torch.arange(T) + shift]


def _batch(data, starts, T):
    return _windows(data, starts, T), _windows(data, starts, T, 1)


def _batch_inputs(g: torch.Generator):
    """data: 61 distinct ids (so every shift is visible); B = 3 starts ≥ 1; T = 5."""
    N, B, T = 61, 3, 5
    data = torch.randperm(1000, generator=g)[:N]
    starts = torch.randint(1, N - 2 * T - 1, (B,), generator=g)
    return data, starts, T


_BATCH_MISTAKES = [
    Mistake("ids plus one", lambda d, s, T: (_windows(d, s, T), _windows(d, s, T) + 1),
            "your targets are the ids plus one (data[pos] + 1): the + 1 belongs to the positions, "
            "y = data[pos + 1], the next id in the text."),
    Mistake("no shift", lambda d, s, T: (_windows(d, s, T), _windows(d, s, T)),
            "y equals x: a model would learn to copy its input. The target at each position is the NEXT id: "
            "y = data[s + 1 : s + T + 1]."),
    Mistake("shifted the wrong way", lambda d, s, T: (_windows(d, s, T), _windows(d, s, T, -1)),
            "your targets are the PREVIOUS ids (data[s - 1 : s + T - 1]). Shift the other way: y = data[s + 1 : s + T + 1]."),
    Mistake("swapped", lambda d, s, T: (_windows(d, s, T, 1), _windows(d, s, T)),
            "x and y are swapped: return (x, y) with x = data[s : s + T] and y one further."),
    Mistake("roll", lambda d, s, T: (_windows(d, s, T), torch.roll(_windows(d, s, T), -1, dims=1)),
            "torch.roll wraps around, so the last target is the window's FIRST id. Take y from data itself: "
            "data[s + 1 : s + T + 1] reaches one id past the window."),
    Mistake("next block", lambda d, s, T: (_windows(d, s, T), _windows(d, s, T, T)),
            "your targets are the next block (data[s + T : s + 2T]), not the next token. Shift by one."),
    Mistake("transposed", lambda d, s, T: (_windows(d, s, T).T, _windows(d, s, T, 1).T),
            "x and y have shape (T, B): stack the windows as rows, torch.stack(list_of_windows) → (B, T)."),
    Mistake("starts ignored", lambda d, s, T: _batch(d, torch.arange(len(s)), T),
            "your windows start at 0, 1, 2, …: use the given starts, x[b] = data[starts[b] : starts[b] + T]."),
    Mistake("one too long", lambda d, s, T: (_windows(d, s, T + 1), _windows(d, s, T + 1, 1)),
            "your windows hold T + 1 ids: x = data[s : s + T] has T ids (Python slices exclude the end)."),
    Mistake("one too long, y from it", lambda d, s, T: (_windows(d, s, T + 1)[:, :-1], _windows(d, s, T + 1)),
            "y has T + 1 ids: slice y = data[s + 1 : s + T + 1], T ids, the window shifted by one."),
]


def check_batch(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(data: (N,) long, starts: (B,) long, block_size: int) → (x, y), both (B, T), y = x shifted by one."""
    return check("batch", fn, _batch, trials=_batch_inputs, mistakes=_BATCH_MISTAKES, explain=_explain,
                 seed=seed, quiet=quiet)

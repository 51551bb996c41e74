"""Chapter 5 checkers for the masks themselves: ``check_causal_mask`` and ``check_padding_mask``, with
the check that a mask is True/False rather than numbers. The chapter's docstring is in
:mod:`kqvlib.exercises.ch05`.
"""
from __future__ import annotations

import numpy as np
import torch

from kqvlib.attention import padding_mask
from kqvlib.checks import CheckResult, Mistake, Property, Trial
from kqvlib.exercises.diagnose import checked as check, describe

NEG_INF = float("-inf")
CONVENTION = "True = attend, False = blocked"


# --- the mask's type: True/False, not numbers -----------------------------------------------------

def _number_mask_hint(out) -> tuple[str, str] | None:
    """(key, hint) when ``out`` is a mask made of numbers instead of True/False, else None."""
    if isinstance(out, np.ndarray):
        out = torch.as_tensor(out)
    if not isinstance(out, torch.Tensor) or out.dtype == torch.bool or out.numel() == 0:
        return None
    values = set(torch.unique(out.detach().double()).tolist())
    if out.is_floating_point() and NEG_INF in values and values <= {0.0, NEG_INF}:
        return "additive mask", (
            "you returned the *additive* form of the mask (0 = attend, -inf = blocked). It is a valid mask, "
            "but this exercise asks for the boolean one (True = attend): compare instead of filling, e.g. "
            "`... <= ...` or `.tril()` on a bool tensor. kqvlib.as_additive turns one form into the other.")
    if values <= {0.0, 1.0}:
        return "0/1 numbers", (
            f"your mask holds the numbers 0 and 1 (dtype {out.dtype}), not True and False. Attention "
            "functions *add* a float mask to the scores, so 1s and 0s would block nothing. Return a bool "
            "tensor: build it with dtype=torch.bool, a comparison, or `.bool()` at the end.")
    return None


def mask_difference(got, expected, lengths=None) -> tuple[str, str] | None:
    """(key, hint) for a wrong boolean mask (..., T, S) (True = attend): which entries are wrongly open or
    blocked: the future, the padding (s ≥ lengths[b]), the diagonal, the last real key, whole rows."""
    g, e = got > 0.5, expected > 0.5
    if g.shape != e.shape or e.dim() < 2:
        return None
    T, S = e.shape[-2:]
    t, s = torch.arange(T)[:, None], torch.arange(S)[None, :]
    L = None if lengths is None else torch.as_tensor(lengths).reshape(-1, *[1] * (e.dim() - 1))
    extra, missing = g & ~e, e & ~g
    if T == S and bool((g == e.mT).all()):
        return "mask transposed", ("your mask is the right one transposed: row t is query t and column s is key s, "
                                   "so mask[..., t, s] says whether query t may read key s.")
    if L is not None and e.shape[0] > 1 and bool((g == g[int(L.flatten().argmax())]).all()):
        return "one length for the batch", ("every sequence got the mask of the longest one: you used one length for "
                                            "the whole batch (lengths.max()). Compare each key with its own "
                                            "sequence's length, lengths[:, None] (one row per sequence).")
    if bool(extra.any()) and not bool(missing.any()):  # entries open that must be blocked
        if L is not None and bool((extra <= (s >= L)).all()):
            return "padding visible", ("your mask lets queries read padding keys (key s ≥ the sequence's length): "
                                       "block every key s ≥ length[b], along the last axis.")
        if bool((extra <= (s > t)).all()):
            return "future visible", "your mask lets query t read keys after t, the future: keep only s ≤ t."
        return "too open", f"your mask allows {int(extra.sum())} entries that must be blocked."
    if bool(missing.any()) and not bool(extra.any()):
        if L is not None and bool((missing <= (s == L - 1)).all()):
            return "last real key blocked", ("your mask blocks the last real token of each sequence (key "
                                             "length[b] − 1): a sequence of length L has tokens 0 … L−1, so s < L.")
        if bool((missing <= (s < t)).all()) and bool(g.any()):
            return "past blocked", ("your mask blocks keys before the query: query t may read every key s ≤ t, "
                                    "the past as well as itself (tril, not only the diagonal).")
        if bool((missing <= (s == t)).all()):
            return "diagonal blocked", "your mask blocks the diagonal: a query may read its own key (s ≤ t, not s < t)."
        rows = missing.any(-1) & ~g.any(-1)
        if bool((missing <= rows[..., None]).all()):
            return "rows blocked", ("your mask blocks whole rows (queries) that must see their keys: padding is "
                                    "hidden by blocking keys (the last axis), never a query's whole row.")
        return "too closed", f"your mask blocks {int(missing.sum())} entries that must be open."
    if bool(extra.any()) and bool(missing.any()):
        found = describe(got, expected, ("query", "key"))
        if found is not None and found[0] not in ("some entries wrong", "some rows wrong", "edge wrong"):
            return found
        o, c = [tuple(int(v) for v in m.nonzero()[0][-2:]) for m in (extra, missing)]
        return "wrong entries", (f"your mask opens {int(extra.sum())} entries that must be blocked (e.g. query {o[0]}, "
                                 f"key {o[1]}) and blocks {int(missing.sum())} that must be open (e.g. query {c[0]}, "
                                 f"key {c[1]}): query t may read key s when s ≤ t (and s is a real token).")
    return None


def _check_mask_fn(name, fn, reference, trials, mistakes, sample, seed, quiet, explain=None,
                   lengths=lambda *a: None) -> CheckResult:
    """check(), preceded by one call on ``sample`` inputs that catches a mask made of numbers."""
    result = None
    try:
        out = fn(*sample)
        found = ("numpy mask", "you returned a NumPy array: return a torch tensor (torch.tril, torch.ones, "
                 "torch.arange), which masked_fill and the attention functions take.") \
            if isinstance(out, np.ndarray) else _number_mask_hint(out)
        if found is not None:
            result = CheckResult(False, found[0], f"✗ {name}: {found[1]}", {"hint": found[1]})
    except Exception:  # NotImplementedError and the learner's errors: check() reports them
        pass
    if result is None:
        masks = Property("mask", lambda args, got, exp: mask_difference(got, exp, lengths(*args)))
        return check(name, fn, reference, trials, mistakes, seed=seed, quiet=quiet, explain=explain,
                     properties=[masks], axes=("query", "key"))
    if not quiet:
        print(result.message)
    return result


# --- causal_mask(T) -------------------------------------------------------------------------------

def _causal(T):  # (T, T), True on and below the diagonal
    return torch.ones(T, T, dtype=torch.bool).tril()


def _random_T(g: torch.Generator) -> tuple[int]:
    return (int(torch.randint(3, 10, (1,), generator=g)),)


_CAUSAL_MISTAKES = [
    Mistake("wrong triangle", lambda T: _causal(T).T,
            "your mask is True on and *above* the diagonal: query t would read keys t, t+1, …, the future. "
            "Row t is query t and column s is key s, so keep the lower triangle: s ≤ t (torch.tril, not "
            "torch.triu)."),
    Mistake("inverted", lambda T: ~_causal(T),
            f"your mask is True exactly where it should be False: it marks the *blocked* keys. Here {CONVENTION} "
            "(as in F.scaled_dot_product_attention; nn.MultiheadAttention uses the opposite). Drop the ~ or "
            "the `== 0`, or use tril instead of triu(1)."),
    Mistake("diagonal excluded", lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
            "the diagonal is False, so no query may look at its own key, and query 0 may look at nothing at "
            "all. A position may see itself: keep the diagonal (tril(), i.e. diagonal=0, or s ≤ t, not s < t)."),
    Mistake("one future key", lambda T: torch.ones(T, T, dtype=torch.bool).tril(1),
            "your mask also lets query t see key t+1, one step into the future (tril(diagonal=1)). Keep the "
            "diagonal and everything below it, nothing above: tril() with diagonal=0, or s ≤ t."),
    Mistake("nothing blocked", lambda T: torch.ones(T, T, dtype=torch.bool),
            "your mask is True everywhere: every query may still read every key, the future included. "
            "Block the keys after the query: key s is allowed for query t only when s ≤ t."),
]


def check_causal_mask(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(T)`` → bool (T, T) mask, True on and below the diagonal."""
    return _check_mask_fn("causal_mask", fn, _causal, [Trial(_random_T)], _CAUSAL_MISTAKES, (5,), seed, quiet)


# --- padding_mask(lengths, S) ---------------------------------------------------------------------

B_PAD, S_PAD = 4, 7  # four sequences padded to 7 positions: B ≠ S


def _lengths(g: torch.Generator) -> tuple[torch.Tensor, int]:
    """B different lengths in 1..S (so an off-by-one always shows), the longest without padding."""
    lengths = torch.randperm(S_PAD, generator=g)[:B_PAD] + 1  # (B,) distinct values in 1..S
    lengths[int(torch.randint(B_PAD, (1,), generator=g))] = S_PAD
    return lengths, S_PAD


def _keys(lengths, S):  # (B, S): True where key s of sequence b is a real token
    return torch.arange(S)[None, :] < torch.as_tensor(lengths)[:, None]


_PAD_SHAPE = "(B, 1, 1, S), so that it broadcasts to multi-head scores (B, H, T, S) along their *key* axis"

_PADDING_MISTAKES = [
    Mistake("inverted", lambda L, S: ~padding_mask(L, S),
            f"your mask is True on the padding and False on the real tokens. Here {CONVENTION}: mark the "
            "real tokens, key s of sequence b being real when s < lengths[b]."),
    Mistake("masks queries", lambda L, S: padding_mask(L, S).transpose(-2, -1),
            "your mask has shape (B, 1, S, 1): it runs along the *query* axis, so it would block the rows "
            "of padding queries and let every query read the padding keys. Padding is hidden by blocking "
            f"keys, the last axis: shape {_PAD_SHAPE}."),
    Mistake("queries and keys", lambda L, S: padding_mask(L, S) & padding_mask(L, S).transpose(-2, -1),
            "you blocked padding queries as well as padding keys, shape (B, 1, S, S). Only the keys need "
            "blocking (nobody should *read* padding); blocking a padding query's whole row leaves it nothing "
            f"to attend to, a fully masked row. Return shape {_PAD_SHAPE}."),
    Mistake("(B, S)", lambda L, S: _keys(L, S),
            "the True/False values are right, but the shape is (B, S). Against scores (B, H, T, S) "
            "broadcasting lines up the last axes, so B would meet T. Add the two axes: "
            "mask[:, None, None, :], shape (B, 1, 1, S)."),
    Mistake("(B, 1, S)", lambda L, S: _keys(L, S)[:, None, :],
            "the values are right, but the shape is (B, 1, S): it fits single-head scores (B, T, S) but not "
            f"multi-head ones. Return shape {_PAD_SHAPE}: mask[:, None, None, :]."),
    Mistake("one padding key too many", lambda L, S: (torch.arange(S)[None, :] <= L[:, None])[:, None, None, :],
            "off by one: your mask lets each query see one padding position too many. Positions are "
            "0-based, so a sequence of length L has tokens at 0 … L-1: use s < L, not s ≤ L."),
    Mistake("last token blocked", lambda L, S: (torch.arange(S)[None, :] < L[:, None] - 1)[:, None, None, :],
            "off by one: your mask blocks the last real token of every sequence. A sequence of length L has "
            "tokens at positions 0 … L-1: use s < L."),
    Mistake("left padding", lambda L, S: (torch.arange(S)[None, :] >= S - L[:, None])[:, None, None, :],
            "your mask marks the *last* lengths[b] positions as real: that is left padding. Here sequences "
            "are padded on the right, so the real tokens are the first lengths[b] positions, s < lengths[b]."),
]


def _shorter(g: torch.Generator) -> tuple[torch.Tensor, int]:
    """Every sequence shorter than S: the batch was padded further than its longest sequence."""
    lengths, S = _lengths(g)
    return lengths.clamp_max(S - 2), S


_MAX_LENGTH_HINT = (
    "right when the longest sequence fills all S positions, but wrong when every sequence is shorter than "
    "S (a batch may be padded further than its longest sequence). Build the mask from S, not from the "
    "lengths: torch.arange(S), shape (B, 1, 1, S).")


def check_padding_mask(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Check ``fn(lengths, S)`` → bool (B, 1, 1, S), True where key s of sequence b is a real token."""
    sample = (torch.tensor([3, 7, 1, 5]), S_PAD)
    trials = [Trial(_lengths), Trial(_shorter, "used the longest length", _MAX_LENGTH_HINT)]
    return _check_mask_fn("padding_mask", fn, padding_mask, trials, _PADDING_MISTAKES, sample, seed, quiet,
                          lengths=lambda L, S: L)


"""Chapter 12 checkers for what the decoder reads: its self-attention mask (``check_decoder_mask``) and the
shifted input and labels of teacher forcing (``check_teacher_forcing``). The chapter's docstring is in
:mod:`kqvlib.exercises.ch12`.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial
from kqvlib.exercises.ch05.masks import _number_mask_hint, mask_difference
from kqvlib.exercises.diagnose import checked as check

B_, T_ = 4, 7
IGNORE = -100


# --- decoder_mask(tgt_lengths, T) -----------------------------------------------------------------------------

def _mask(L, T, causal=lambda t, s: s <= t, pad=lambda L, t, s: s < L):
    t = torch.arange(T)[:, None]  # (T, 1) queries
    s = torch.arange(T)[None, :]  # (1, T) keys
    Lb = torch.as_tensor(L)[:, None, None]  # (B, 1, 1)
    return (causal(t, s)[None] & pad(Lb, t[None], s[None]))[:, None]  # (B, 1, T, T)


def _lengths(g: torch.Generator, full: bool = False):
    """B distinct lengths in 1..T−1 (padded further than the longest), or with one of length T."""
    L = torch.randperm(T_ - 1, generator=g)[:B_] + 1
    if full:
        L[int(torch.randint(B_, (1,), generator=g))] = T_
    return L, T_


_MASK_MISTAKES = [
    Mistake("causal only", lambda L, T: _mask(L, T, pad=lambda L, t, s: torch.ones_like(s & t, dtype=torch.bool)),
            "your mask is the causal triangle only: the padded target positions are still readable as keys. "
            "Combine it with the padding of the keys: (s ≤ t) & (s < length[b])."),
    Mistake("padding only", lambda L, T: _mask(L, T, causal=lambda t, s: torch.ones(t.shape[0], s.shape[1],
                                                                                   dtype=torch.bool)),
            "your mask hides the padding but not the future: a decoder must not read the tokens after t. "
            "Combine it with the causal triangle: (s ≤ t) & (s < length[b])."),
    Mistake("padding along queries", lambda L, T: _mask(L, T, pad=lambda L, t, s: t < L),
            "your padding runs along the *queries* (rows): it blocks the padded positions' own rows and still "
            "lets every query read padded keys. Padding is hidden by blocking keys, the last axis: s < length[b]."),
    Mistake("inverted", lambda L, T: ~_mask(L, T),
            "your mask is True where attention is blocked. Here True = attend: (s ≤ t) & (s < length[b])."),
    Mistake("future instead of past", lambda L, T: _mask(L, T, causal=lambda t, s: s >= t),
            "your triangle is the upper one: query t reads keys t, t+1, …, the future. Keep s ≤ t (tril)."),
    Mistake("diagonal excluded", lambda L, T: _mask(L, T, causal=lambda t, s: s < t),
            "the diagonal is blocked, so a position cannot read itself and query 0 reads nothing: s ≤ t."),
    Mistake("one padding key too many", lambda L, T: _mask(L, T, pad=lambda L, t, s: s <= L),
            "off by one: each query may read one padding position. A target of length L has tokens 0 … L−1: s < L."),
    Mistake("(B, T, T)", lambda L, T: _mask(L, T)[:, 0],
            "right values, shape (B, T, T): add the head axis, mask[:, None], so it broadcasts over (B, H, T, T)."),
]


def check_decoder_mask(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(tgt_lengths (B,), T) → bool (B, 1, T, T), True where s ≤ t and s < tgt_lengths[b]."""
    sample = (torch.tensor([3, 7, 1, 5]), T_)
    try:
        found = _number_mask_hint(fn(*sample))
    except Exception:  # the stub and the learner's errors: check() reports them
        found = None
    if found is not None:
        result = CheckResult(False, found[0], f"✗ decoder_mask: {found[1]}", {"hint": found[1]})
        if not quiet:
            print(result.message)
        return result
    masks = Property("mask", lambda args, got, exp: mask_difference(got, exp, args[0]))
    trials = [Trial(_lengths), Trial(lambda g: _lengths(g, full=True))]
    return check("decoder_mask", fn, _mask, trials, _MASK_MISTAKES, properties=[masks],
                 axes=("batch", "head", "query", "key"), seed=seed, quiet=quiet)


# --- teacher_forcing(tgt_out, bos, eos, pad) ------------------------------------------------------------------

BOS, EOS, PAD = 1, 2, 0


def _tf(out, bos, eos, pad, swap_eos=True, ignore=IGNORE, shift=1):
    B = out.shape[0]
    if shift == 1:
        tin = torch.cat([torch.full((B, 1), bos, dtype=out.dtype), out[:, :-1]], dim=1)  # (B, T)
    else:  # shifted left
        tin = torch.cat([out[:, 1:], torch.full((B, 1), pad, dtype=out.dtype)], dim=1)
    if swap_eos:
        tin = torch.where(tin == eos, pad, tin)
    labels = out.masked_fill(out == pad, ignore) if ignore is not None else out.clone()
    return tin, labels


def _targets(g: torch.Generator):
    lengths = torch.randint(2, 7, (B_,), generator=g)
    lengths[0] = 7
    T = 8
    digits = torch.randint(3, 13, (B_, T), generator=g)
    i = torch.arange(T)[None, :]
    out = torch.where(i < lengths[:, None], digits, PAD)
    out[torch.arange(B_), lengths] = EOS
    return out, BOS, EOS, PAD


_TF_MISTAKES = [
    Mistake("no shift", lambda o, b, e, p: (o.clone(), o.masked_fill(o == p, IGNORE)),
            "your decoder input equals the targets: the decoder would read the token it must predict. Shift "
            "right: tgt_in = BOS followed by tgt_out[:, :-1]."),
    Mistake("shifted left", lambda o, b, e, p: _tf(o, b, e, p, shift=-1),
            "you shifted the targets left (tgt_out[:, 1:]): the decoder input starts with BOS and lags the "
            "targets by one, tgt_in = cat([BOS], tgt_out[:, :-1])."),
    Mistake("EOS kept in the input", lambda o, b, e, p: _tf(o, b, e, p, swap_eos=False),
            "your decoder input still holds EOS (read after the last answer token, where nothing is predicted "
            "any more): turn it into PAD, torch.where(tgt_in == eos, pad, tgt_in)."),
    Mistake("labels not masked", lambda o, b, e, p: _tf(o, b, e, p, ignore=None),
            "your labels keep the PAD tokens, so the loss would train the model to predict padding. Replace "
            "them with −100, cross-entropy's ignore_index: labels = tgt_out.masked_fill(tgt_out == pad, -100)."),
    Mistake("ignore index −1", lambda o, b, e, p: _tf(o, b, e, p, ignore=-1),
            "you marked padding with −1: cross-entropy ignores −100 by default (ignore_index=-100)."),
    Mistake("input masked too", lambda o, b, e, p: (_tf(o, b, e, p)[0].masked_fill(_tf(o, b, e, p)[0] == p, IGNORE),
                                                   _tf(o, b, e, p)[1]),
            "you put −100 into the decoder input too: −100 is not a token id (the embedding would fail). Only "
            "the labels get −100; the input keeps PAD."),
    Mistake("EOS masked in labels", lambda o, b, e, p: (_tf(o, b, e, p)[0], _tf(o, b, e, p)[1].masked_fill(o == e, IGNORE)),
            "you also hid EOS from the loss: the model must learn to stop, so EOS stays a label."),
]


def check_teacher_forcing(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(tgt_out (B, T) long, bos, eos, pad) → (tgt_in, labels), both (B, T)."""
    return check("teacher_forcing", fn, _tf, [Trial(_targets)], _TF_MISTAKES, axes=("batch", "position"),
                 seed=seed, quiet=quiet)


__all__ = ["check_decoder_mask", "check_teacher_forcing"]

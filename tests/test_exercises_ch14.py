"""Chapter 14's checkers: the reference and other correct answers pass, a stub is "not attempted", each
likely slip gets its own hint, raw errors become hints, and no input crashes the checker.

The answers below are written the way a learner would write them (loops, masks, NumPy), independently of
the Mistake functions inside kqvlib.exercises.ch14.
"""
import numpy as np
import pytest
import torch

from kqvlib.exercises import ch14
from kqvlib.interpret import head_score, induction_score


# --- induction score --------------------------------------------------------------------------------------------

def ind_library(weights, period):
    return induction_score(weights, period).mean(0)


def ind_loop(weights, period):
    B, H, T, _ = weights.shape
    total = torch.zeros(H, dtype=weights.dtype)
    for t in range(period, T):
        total += weights[:, :, t, t - period + 1].sum(0)
    return total / (B * (T - period))


def ind_diagonal(weights, period):  # the entries (t, t − period + 1) lie on one diagonal
    return weights.diagonal(offset=1 - period, dim1=-2, dim2=-1)[..., 1:].mean(dim=(0, -1))


def ind_numpy(weights, period):
    w = np.asarray(weights)
    return np.mean([w[:, :, t, t - period + 1] for t in range(period, w.shape[-1])], axis=(0, 1))


def ind_stub(weights, period):
    raise NotImplementedError  # your code here


def ind_prev_occurrence(weights, period):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, t - period] for t in range(period, T)], -1).mean((0, 2))


def ind_plus_two(weights, period):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, t - period + 2] for t in range(period, T)], -1).mean((0, 2))


def ind_from_zero(weights, period):  # also the first copy, with negative keys wrapping round
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, (t - period + 1) % T] for t in range(T)], -1).mean((0, 2))


def ind_start_late(weights, period):  # one query too few
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, t - period + 1] for t in range(period + 1, T)], -1).mean((0, 2))


def ind_half(weights, period):
    T = weights.shape[-1]
    p = T // 2
    return torch.stack([weights[:, :, t, t - p + 1] for t in range(p, T)], -1).mean((0, 2))


def ind_sum(weights, period):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, t - period + 1] for t in range(period, T)], -1).sum(2).mean(0)


def ind_keep_batch(weights, period):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t, t - period + 1] for t in range(period, T)], -1).mean(-1)


def ind_swapped(weights, period):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t - period + 1, t] for t in range(period, T)], -1).mean((0, 2))


def ind_argmax(weights, period):
    T = weights.shape[-1]
    hits = [(weights[:, :, t].argmax(-1) == t - period + 1).double() for t in range(period, T)]
    return torch.stack(hits, -1).mean((0, 2))


def ind_index_error(weights, period):
    T = weights.shape[-1]
    t = torch.arange(period, T + 1)  # one past the end
    return weights[..., t, t - period + 1].mean((0, -1))


@pytest.mark.parametrize("fn", [ind_library, ind_loop, ind_diagonal, ind_numpy])
def test_correct_induction_scores_pass(fn):
    assert ch14.check_induction_score(fn, seed=0, quiet=True).passed


@pytest.mark.parametrize("fn, key", [
    (ind_stub, "not attempted"),
    (ind_prev_occurrence, "previous occurrence"),
    (ind_plus_two, "one too far"),
    (ind_from_zero, "first copy wrapped"),
    (ind_start_late, "queries"),
    (ind_half, "half of T"),
    (ind_sum, "summed over queries"),
    (ind_keep_batch, "batch kept"),
    (ind_swapped, "query and key swapped"),
    (ind_argmax, "argmax"),
    (ind_index_error, "index"),
])
def test_induction_slips_get_their_hint(fn, key):
    r = ch14.check_induction_score(fn, seed=0, quiet=True)
    assert not r.passed
    assert key in r.key, (r.key, r.message)


# --- duplicate-token score --------------------------------------------------------------------------------------

def dup_mask(weights, tokens):
    T = tokens.shape[-1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T)
    earlier = torch.ones(T, T, dtype=torch.bool).tril(-1)
    return head_score(weights, same & earlier)


def dup_loop(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(t) if tokens[b, s] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
                count += 1
    return total / count


def dup_stub(weights, tokens):
    raise NotImplementedError  # your code here


def dup_itself(weights, tokens):
    same = tokens[:, :, None] == tokens[:, None, :]
    return head_score(weights, same & torch.ones_like(same).tril())


def dup_all_queries(weights, tokens):
    T = tokens.shape[-1]
    tg = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1)
    return (weights * tg[:, None]).sum(-1).mean((0, 2))


def dup_latest(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(t) if tokens[b, s] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys[-1]]
                count += 1
    return total / count


def dup_first_row(weights, tokens):
    T = tokens.shape[-1]
    tg = (tokens[0, :, None] == tokens[0, None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1)
    return head_score(weights, tg)


def dup_broadcast(weights, tokens):
    same = tokens[:, None] == tokens[None, :]  # (B, B, T): the wrong axes
    return (weights * same).sum(-1).mean((0, 2))


@pytest.mark.parametrize("fn", [dup_mask, dup_loop])
def test_correct_duplicate_scores_pass(fn):
    assert ch14.check_duplicate_score(fn, seed=0, quiet=True).passed


@pytest.mark.parametrize("fn, key", [
    (dup_stub, "not attempted"),
    (dup_itself, "itself included"),
    (dup_all_queries, "all queries"),
    (dup_latest, "latest only"),
    (dup_first_row, "one row of tokens"),
])
def test_duplicate_slips_get_their_hint(fn, key):
    r = ch14.check_duplicate_score(fn, seed=0, quiet=True)
    assert not r.passed
    assert r.key == key, (r.key, r.message)


def test_raw_errors_become_hints_and_nothing_crashes():
    r = ch14.check_duplicate_score(dup_broadcast, seed=0, quiet=True)
    assert not r.passed and "Traceback" not in r.message and len(r.message) > 40
    for bad in (lambda *a: None, lambda *a: "x", lambda *a: torch.zeros(2, 2), lambda *a: 1 / 0):
        for check in (ch14.check_induction_score, ch14.check_duplicate_score):
            assert not check(bad, seed=0, quiet=True).passed

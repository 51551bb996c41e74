"""Chapter 15's checkers: correct answers written in other ways pass, a stub is "not attempted", each likely
slip gets its own hint, raw errors become hints, and no input crashes the checker.

The answers below are written the way a learner would write them (loops, masks, NumPy), independently of
the Mistake functions inside kqvlib.exercises.ch15.
"""
import numpy as np
import pytest
import torch

from kqvlib.exercises import ch15
from kqvlib.interpret import head_score, induction_score, uniform_causal_weights


# --- prefix matching ------------------------------------------------------------------------------------------------

def pm_mask(weights, tokens):
    T = tokens.shape[-1]
    prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], 1)  # (B, T): token before each key
    tg = (tokens[:, :, None] == prev[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    return head_score(weights, tg)


def pm_loop(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(1, t + 1) if tokens[b, s - 1] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
                count += 1
    return total / count


def pm_numpy(weights, tokens):
    w, x = np.asarray(weights), np.asarray(tokens)
    scores = []
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            keys = [s for s in range(1, t + 1) if x[b, s - 1] == x[b, t]]
            if keys:
                scores.append(w[b, :, t, keys].sum(0))
    return np.mean(scores, axis=0)


def pm_stub(weights, tokens):
    raise NotImplementedError  # your code here


def pm_duplicate(weights, tokens):
    T = tokens.shape[-1]
    return head_score(weights, (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1))


def pm_next(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(0, min(t + 1, T - 1)) if tokens[b, s + 1] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
                count += 1
    return total / count


def pm_all_queries(weights, tokens):
    B, H, T, _ = weights.shape
    total = torch.zeros(H, dtype=weights.dtype)
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(1, t + 1) if tokens[b, s - 1] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
    return total / (B * T)


def pm_strict(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(1, t) if tokens[b, s - 1] == tokens[b, t]]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
                count += 1
    return total / count


def pm_wrapped(weights, tokens):
    B, H, T, _ = weights.shape
    total, count = torch.zeros(H, dtype=weights.dtype), 0
    for b in range(B):
        for t in range(T):
            keys = [s for s in range(0, t + 1) if tokens[b, s - 1] == tokens[b, t]]  # s = 0 reads tokens[b, -1]
            if keys:
                total += weights[b, :, t, keys].sum(-1)
                count += 1
    return total / count


def pm_double(weights, tokens):
    return 2 * pm_loop(weights, tokens)


@pytest.mark.parametrize("fn", [pm_mask, pm_loop, pm_numpy])
def test_correct_prefix_matching_scores_pass(fn):
    assert ch15.check_prefix_matching_score(fn, seed=0, quiet=True).passed


@pytest.mark.parametrize("fn, key", [
    (pm_stub, "not attempted"),
    (pm_duplicate, "duplicate token"),
    (pm_next, "next token"),
    (pm_all_queries, "all queries"),
    (pm_strict, "key t left out"),
    (pm_wrapped, "wrapped first key"),
    (pm_double, "constant factor"),
])
def test_prefix_matching_slips_get_their_hint(fn, key):
    r = ch15.check_prefix_matching_score(fn, seed=0, quiet=True)
    assert not r.passed
    assert key in r.key, (r.key, r.message)


# --- induction score with a control ---------------------------------------------------------------------------------

def ex_library(weights, period):
    T = weights.shape[-1]
    return induction_score(weights, period).mean(0) - induction_score(uniform_causal_weights(1, T)[0, 0], period)


def ex_loop(weights, period):
    B, H, T, _ = weights.shape
    score, control = torch.zeros(H, dtype=weights.dtype), 0.0
    for t in range(period, T):
        score += weights[:, :, t, t - period + 1].sum(0)
        control += 1 / (t + 1)
    return score / (B * (T - period)) - control / (T - period)


def ex_stub(weights, period):
    raise NotImplementedError


def ex_no_control(weights, period):
    return induction_score(weights, period).mean(0)


def ex_one_over_t(weights, period):
    T = weights.shape[-1]
    return induction_score(weights, period).mean(0) - sum(1 / t for t in range(period, T)) / (T - period)


def ex_all_queries(weights, period):
    T = weights.shape[-1]
    return induction_score(weights, period).mean(0) - sum(1 / (t + 1) for t in range(T)) / T


def ex_one_over_T(weights, period):
    return induction_score(weights, period).mean(0) - 1 / weights.shape[-1]


def ex_ratio(weights, period):
    T = weights.shape[-1]
    return induction_score(weights, period).mean(0) / induction_score(uniform_causal_weights(1, T)[0, 0], period)


def ex_fixed_period(weights, period):
    return ex_loop(weights, 5)


@pytest.mark.parametrize("fn", [ex_library, ex_loop])
def test_correct_excess_passes(fn):
    assert ch15.check_induction_excess(fn, seed=0, quiet=True).passed


@pytest.mark.parametrize("fn, key", [
    (ex_stub, "not attempted"),
    (ex_no_control, "no control"),
    (ex_one_over_t, "1/t"),
    (ex_all_queries, "control over all queries"),
    (ex_one_over_T, "control 1/T"),
    (ex_ratio, "ratio"),
    (ex_fixed_period, "another period"),
])
def test_excess_slips_get_their_hint(fn, key):
    r = ch15.check_induction_excess(fn, seed=0, quiet=True)
    assert not r.passed
    assert key in r.key, (r.key, r.message)


def test_a_uniform_head_has_no_excess():
    w = uniform_causal_weights(2, 9).expand(2, 3, 9, 9).double()
    assert torch.allclose(ch15.induction_excess(w, 4), torch.zeros(3, dtype=torch.float64))


def test_raw_errors_become_hints_and_nothing_crashes():
    for bad in (lambda *a: None, lambda *a: "x", lambda *a: torch.zeros(2, 2), lambda *a: 1 / 0,
                lambda w, x: w[:, :, 99]):
        for check in (ch15.check_prefix_matching_score, ch15.check_induction_excess):
            r = check(bad, seed=0, quiet=True)
            assert not r.passed and "Traceback" not in r.message

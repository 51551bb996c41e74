"""Chapter 14's checker: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers are written the way a learner would write them (loops, NumPy, masks), independently of
the Mistake functions inside kqvlib.exercises.ch14.
"""
import numpy as np
import pytest
import torch

from kqvlib.exercises import ch14


def ok_diagonal(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))


def ok_loop(weights):
    B, H, T, _ = weights.shape
    total = torch.zeros(H, dtype=weights.dtype)
    for t in range(1, T):
        total += weights[:, :, t, t - 1].sum(dim=0)
    return total / (B * (T - 1))


def ok_mask(weights):
    T = weights.shape[-1]
    below = torch.diag(torch.ones(T - 1), -1).to(weights.dtype)  # (T, T), ones at (t, t - 1)
    return (weights * below).sum(-1)[..., 1:].mean(dim=(0, -1))


def ok_numpy(weights):
    w = np.asarray(weights)
    T = w.shape[-1]
    return np.stack([w[:, :, t, t - 1] for t in range(1, T)], axis=-1).mean(axis=(0, 2))


def stub(weights):
    raise NotImplementedError  # your code here


def returns_none(weights):
    prev = weights.diagonal(-1, -2, -1)  # computed, then forgot to return


def main_diagonal(weights):
    return torch.diagonal(weights, dim1=-2, dim2=-1).mean(dim=(0, -1))


def above(weights):
    T = weights.shape[-1]
    return torch.stack([weights[:, :, t - 1, t] for t in range(1, T)], -1).mean(dim=(0, -1))


def with_position_0(weights):
    T = weights.shape[-1]
    # t - 1 = -1 at t = 0 reads the last key, which a causal row gives weight 0
    return torch.stack([weights[:, :, t, t - 1] for t in range(T)], -1).mean(dim=(0, -1))


def summed(weights):
    return weights.diagonal(-1, -2, -1).sum(dim=(0, -1))


def batch_summed(weights):
    return weights.diagonal(-1, -2, -1).mean(-1).sum(0)


def queries_summed(weights):
    return weights.diagonal(-1, -2, -1).sum(-1).mean(0)


def over_heads(weights):
    return weights.diagonal(-1, -2, -1).mean(dim=(1, 2))


def everything(weights):
    return weights.diagonal(-1, -2, -1).mean()


def per_sequence(weights):
    return weights.diagonal(-1, -2, -1).mean(-1)


def per_query(weights):
    return weights.diagonal(-1, -2, -1).mean(0)


def argmax_count(weights):
    T = weights.shape[-1]
    hits = weights.argmax(dim=-1) == (torch.arange(T) - 1)  # (B, H, T)
    return hits[:, :, 1:].float().mean(dim=(0, 2))


def two_back(weights):  # unlisted: the diagonal two below, found by the property
    return weights.diagonal(-2, -2, -1).mean(dim=(0, -1))


def divided_by_T_squared(weights):  # unlisted: a wrong count, found as a constant factor
    B, H, T, _ = weights.shape
    return weights.diagonal(-1, -2, -1).sum(dim=(0, -1)) / (B * T * T) * 2


def plus_half(weights):  # unlisted: values above 1
    return ok_diagonal(weights) + 0.9


@pytest.mark.parametrize("fn", [ok_diagonal, ok_loop, ok_mask, ok_numpy])
def test_right_answers_pass(fn):
    assert ch14.check_previous_token_score(fn, seed=0, quiet=True).passed


def test_stub_and_none_do_not_crash():
    r = ch14.check_previous_token_score(stub, seed=0, quiet=True)
    assert not r.passed and r.key == "not attempted"
    r = ch14.check_previous_token_score(returns_none, seed=0, quiet=True)
    assert not r.passed and r.key == "returned None"


@pytest.mark.parametrize("fn,key,words", [
    (main_diagonal, "main diagonal", "ITSELF"),
    (above, "diagonal above", "all 0"),
    (with_position_0, "position 0 included", "query 0 has no previous token"),
    (summed, "not normalised", "summed"),
    (batch_summed, "summed over the batch", "B times"),
    (queries_summed, "summed over queries", "T − 1 times"),
    (over_heads, "averaged over heads", "heads axis"),
    (everything, "averaged over everything", "one number for all heads"),
    (per_sequence, "batch kept", "(B, H)"),
    (per_query, "queries kept", "(H, T − 1)"),
    (argmax_count, "argmax", "LARGEST"),
    (two_back, "wrong diagonal", "t -2"),
    (divided_by_T_squared, "constant factor", "B · (T − 1)"),
    (plus_half, "outside [0, 1]", "outside [0, 1]"),
])
def test_each_slip_gets_its_own_hint(fn, key, words):
    r = ch14.check_previous_token_score(fn, seed=0, quiet=True)
    assert not r.passed
    assert r.key == key, r.message
    assert words in r.message


def test_checker_prints_one_line(capsys):
    ch14.check_previous_token_score(ok_diagonal, seed=1)
    assert capsys.readouterr().out.startswith("✓ previous_token_score")
    ch14.check_previous_token_score(stub)
    assert "not attempted" in capsys.readouterr().out

"""Chapter 12's checker: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers are written the way a learner would write them, independently of the Mistake functions
inside kqvlib.exercises.ch12.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import kqvlib
from kqvlib.exercises import ch12


# --- right answers -----------------------------------------------------------------------------------------

def cross_ok(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv  # (B, T, dk), (B, S, dk), (B, S, dv)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T, S)
    scores = scores.masked_fill(~memory_mask[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def cross_sdpa(x, memory, memory_mask, Wq, Wk, Wv):
    return F.scaled_dot_product_attention(x @ Wq, memory @ Wk, memory @ Wv, attn_mask=memory_mask[:, None, :])


def cross_kqvlib(x, memory, memory_mask, Wq, Wk, Wv):
    return kqvlib.scaled_dot_product_attention(x @ Wq, memory @ Wk, memory @ Wv, memory_mask[:, None, :])


def cross_large_negative(x, memory, memory_mask, Wq, Wk, Wv):
    q, k, v = x @ Wq, memory @ Wk, memory @ Wv
    scores = q @ k.mT / q.shape[-1] ** 0.5
    scores = torch.where(memory_mask.unsqueeze(1), scores, torch.tensor(-1e9, dtype=scores.dtype))
    return F.softmax(scores, dim=-1) @ v


def cross_stub(x, memory, memory_mask, Wq, Wk, Wv):
    raise NotImplementedError  # your code here


# --- slips ---------------------------------------------------------------------------------------------------

def _att(q, k, v, keep=None, scale=None, dim=-1):
    s = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if keep is not None:
        s = s.masked_fill(~keep, float("-inf"))
    return torch.softmax(s, dim=dim) @ v


SLIPS = {
    "keys and values from the decoder": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, x @ Wk, x @ Wv),
    "queries from the encoder": lambda x, m, k, Wq, Wk, Wv: _att(m @ Wq, m @ Wk, m @ Wv, k[:, None, :]),
    "projections swapped": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wk, m @ Wq, m @ Wv, k[:, None, :]),
    "causal": lambda x, m, k, Wq, Wk, Wv: _att(
        x @ Wq, m @ Wk, m @ Wv, k[:, None, :] & torch.tril(torch.ones(x.shape[1], m.shape[1], dtype=torch.bool))),
    "padding ignored": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv),
    "mask inverted": lambda x, m, k, Wq, Wk, Wv: mask_inverted_additive(x, m, k, Wq, Wk, Wv),
    "equal weights": lambda x, m, k, Wq, Wk, Wv: cross_large_negative(x, m, ~k, Wq, Wk, Wv),
    "not scaled": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k[:, None, :], scale=1.0),
    "√d_model": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k[:, None, :], scale=x.shape[-1] ** -0.5),
    "softmax over queries": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k[:, None, :], dim=-2),
    "softmax over batch": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k[:, None, :], dim=0),
    "returned weights": lambda x, m, k, Wq, Wk, Wv: torch.softmax(
        ((x @ Wq) @ (m @ Wk).mT / math.sqrt(Wq.shape[1])).masked_fill(~k[:, None, :], -math.inf), -1),
    # these raise when T ≠ S; the checker names them from a rerun with T = S
    "keys from the decoder": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, x @ Wk, m @ Wv),
    "values from the decoder": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, x @ Wv, k[:, None, :]),
    "mask along the queries": lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k[:, :, None]),
}


def mask_inverted_additive(x, m, k, Wq, Wk, Wv):
    """True taken as 'blocked', added as −1e9: right when nothing is padded, wrong when something is."""
    scores = (x @ Wq) @ (m @ Wk).mT / math.sqrt(Wq.shape[1]) + k[:, None, :].double() * -1e9
    return torch.softmax(scores, dim=-1) @ (m @ Wv)


def causal_square(x, m, k, Wq, Wk, Wv):
    """The decoder's (T, T) triangle reused for cross-attention: raises when T ≠ S."""
    T = x.shape[1]
    return _att(x @ Wq, m @ Wk, m @ Wv, k[:, None, :] & torch.tril(torch.ones(T, T, dtype=torch.bool)))


def mask_inverted_inf(x, m, k, Wq, Wk, Wv):
    """True taken as 'blocked' with −∞: every key of an unpadded source is blocked, so NaN."""
    return _att(x @ Wq, m @ Wk, m @ Wv, ~k[:, None, :])


@pytest.mark.parametrize("fn", [cross_ok, cross_sdpa, cross_kqvlib, cross_large_negative],
                         ids=["by hand", "sdpa", "kqvlib", "-1e9"])
@pytest.mark.parametrize("seed", range(4))
def test_accepts_right_answers(fn, seed):
    r = ch12.check_cross_attention(fn, quiet=True, seed=seed)
    assert r.passed and r.key == "ok", r.message


def test_stub(capsys):
    r = ch12.check_cross_attention(cross_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(SLIPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_slips_get_their_own_hint(key, seed):
    r = ch12.check_cross_attention(SLIPS[key], quiet=True, seed=seed)
    assert not r.passed and r.key == key, r.message


def test_hints_differ():
    msgs = {ch12.check_cross_attention(f, quiet=True, seed=3).message for f in SLIPS.values()}
    assert len(msgs) == len(SLIPS)


def test_square_causal_mask_is_named():
    r = ch12.check_cross_attention(causal_square, quiet=True, seed=0)
    assert r.key == "causal" and "raised" in r.message, r.message


def test_mask_without_query_axis_is_named():
    r = ch12.check_cross_attention(lambda x, m, k, Wq, Wk, Wv: _att(x @ Wq, m @ Wk, m @ Wv, k), quiet=True, seed=0)
    assert r.key == "mask without its query axis" and "[:, None, :]" in r.message, r.message


def test_inverted_mask_with_minus_infinity_is_explained():
    r = ch12.check_cross_attention(mask_inverted_inf, quiet=True, seed=0)
    assert r.key == "nan" and "True" in r.message and "key_padding_mask" in r.message, r.message


def test_unlisted_slip_is_diagnosed_by_property():
    """Weights times 2 after the softmax: no listed slip, the property names the constant factor."""
    r = ch12.check_cross_attention(lambda *a: 2 * cross_ok(*a), quiet=True, seed=0)
    assert not r.passed and r.key == "output times constant", r.message


def test_a_raising_function_does_not_crash(capsys):
    def broken(*a):
        raise KeyError("oops")

    r = ch12.check_cross_attention(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert not r.passed and r.key == "exception" and len(out) == 1


def test_nonsense_and_none():
    assert ch12.check_cross_attention(lambda *a: "nonsense", quiet=True).passed is False
    assert ch12.check_cross_attention(lambda *a: None, quiet=True).key == "returned None"

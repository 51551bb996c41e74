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


# --- decoder_mask ------------------------------------------------------------------------------------------------

def decoder_mask_ok(tgt_lengths, T):
    pos = torch.arange(T)
    causal = pos[None, :] <= pos[:, None]  # (T, T): key s ≤ query t
    real = pos[None, :] < tgt_lengths[:, None]  # (B, T): key s is a real token
    return (causal[None, :, :] & real[:, None, :])[:, None]  # (B, 1, T, T)


def decoder_mask_kqvlib(tgt_lengths, T):
    return kqvlib.causal_mask(T) & kqvlib.padding_mask(tgt_lengths, T)


@pytest.mark.parametrize("fn", [decoder_mask_ok, decoder_mask_kqvlib])
def test_decoder_mask_accepts_right_answers(fn):
    assert ch12.check_decoder_mask(fn, quiet=True)


def _dm(causal=lambda t, s: s <= t, real=lambda L, t, s: s < L, shape=lambda m: m[:, None]):
    def fn(tgt_lengths, T):
        t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
        L = tgt_lengths[:, None, None]
        return shape(causal(t, s)[None] & real(L, t[None], s[None]))
    return fn


@pytest.mark.parametrize("fn, key", [
    (_dm(real=lambda L, t, s: torch.ones_like(s, dtype=torch.bool)), "causal only"),
    (_dm(causal=lambda t, s: torch.ones(t.shape[0], s.shape[1], dtype=torch.bool)), "padding only"),
    (_dm(real=lambda L, t, s: t < L), "padding along queries"),
    (_dm(real=lambda L, t, s: (t < L) & (s < L)), "padding along queries"),  # the same mask, as s ≤ t
    (_dm(causal=lambda t, s: s >= t), "future instead of past"),
    (_dm(causal=lambda t, s: s < t), "diagonal excluded"),
    (_dm(real=lambda L, t, s: s <= L), "one padding key too many"),
    (_dm(shape=lambda m: m), "(B, T, T)"),
    (lambda L, T: ~decoder_mask_ok(L, T), "inverted"),
    (lambda L, T: decoder_mask_ok(L, T).float(), "0/1 numbers"),
    # unlisted: found by the mask diagnosis
    (_dm(real=lambda L, t, s: s < L - 1), "last real key blocked"),
    (_dm(real=lambda L, t, s: s < L.max()), "one for the whole batch"),
    (_dm(real=lambda L, t, s: s < L.max() + 0 * L), "one length for the batch"),
    (_dm(causal=lambda t, s: s <= t + 1), "future visible"),
    (lambda L, T: decoder_mask_ok(L, T)[:, 0] & decoder_mask_ok(L, T)[:, 0], "(B, T, T)"),
    (lambda L, T: decoder_mask_ok(L, T).transpose(-2, -1), "mask transposed"),
])
def test_decoder_mask_slips(fn, key):
    r = ch12.check_decoder_mask(fn, seed=0, quiet=True)
    assert not r.passed and (r.key == key or key == "future visible" and r.key == "future instead of past"), \
        r.message


def test_decoder_mask_broadcast_error_names_the_line():
    def no_axis(tgt_lengths, T):
        pos = torch.arange(T)
        causal = pos[None, :] <= pos[:, None]
        real = pos[None, :] < tgt_lengths[:, None]
        return (causal & real)[:, None]  # (T, T) & (B, T): B ≠ T
    r = ch12.check_decoder_mask(no_axis, seed=0, quiet=True)
    assert not r.passed and r.key == "broadcast" and "(causal & real)" in r.message, r.message


# --- teacher_forcing ---------------------------------------------------------------------------------------------

def teacher_forcing_ok(tgt_out, bos, eos, pad):
    B = tgt_out.shape[0]
    tgt_in = torch.cat([torch.full((B, 1), bos, dtype=tgt_out.dtype), tgt_out[:, :-1]], dim=1)
    tgt_in = torch.where(tgt_in == eos, pad, tgt_in)
    labels = tgt_out.masked_fill(tgt_out == pad, -100)
    return tgt_in, labels


def teacher_forcing_in_place(tgt_out, bos, eos, pad):  # in-place steps on its own copies
    tgt_in = tgt_out.roll(1, dims=1)
    tgt_in[:, 0] = bos
    tgt_in[tgt_in == eos] = pad
    labels = tgt_out.clone()
    labels[labels == pad] = -100
    return tgt_in, labels


@pytest.mark.parametrize("fn", [teacher_forcing_ok, teacher_forcing_in_place])
def test_teacher_forcing_accepts_right_answers(fn):
    assert ch12.check_teacher_forcing(fn, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (lambda o, b, e, p: (o.clone(), teacher_forcing_ok(o, b, e, p)[1]), "no shift"),
    (lambda o, b, e, p: (torch.cat([torch.where(o[:, 1:] == e, p, o[:, 1:]), torch.full_like(o[:, :1], p)], 1),
                         teacher_forcing_ok(o, b, e, p)[1]), "shifted left"),
    (lambda o, b, e, p: (torch.cat([torch.full_like(o[:, :1], b), o[:, :-1]], 1), teacher_forcing_ok(o, b, e, p)[1]),
     "EOS kept in the input"),
    (lambda o, b, e, p: (teacher_forcing_ok(o, b, e, p)[0], o.clone()), "labels not masked"),
    (lambda o, b, e, p: (teacher_forcing_ok(o, b, e, p)[0], o.masked_fill(o == p, -1)), "ignore index −1"),
    (lambda o, b, e, p: teacher_forcing_ok(o, b, e, p)[::-1], "results swapped"),
    (lambda o, b, e, p: teacher_forcing_ok(o, b, e, p)[0], "returned part"),
    # unlisted: found by the generic diagnosis
    (lambda o, b, e, p: (torch.where(torch.cat([torch.full_like(o[:, :1], b), o[:, 1:]], 1) == e, p,
                                     torch.cat([torch.full_like(o[:, :1], b), o[:, 1:]], 1)),
                         teacher_forcing_ok(o, b, e, p)[1]), "shifted by one"),
    (lambda o, b, e, p: (teacher_forcing_ok(o, b, e, p)[0][:, :-1], teacher_forcing_ok(o, b, e, p)[1]), "off by one"),
])
def test_teacher_forcing_slips(fn, key):
    r = ch12.check_teacher_forcing(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message


def test_new_decoder_stubs():
    def stub(*a):
        raise NotImplementedError
    assert ch12.check_decoder_mask(stub, quiet=True).key == "not attempted"
    assert ch12.check_teacher_forcing(stub, quiet=True).key == "not attempted"

"""Chapter 6's checkers: the reference passes, a stub is "not attempted", each likely slip gets its own hint,
and a function that raises never crashes the checker.

The wrong answers below are written the way a learner would write them (view and transpose, chunk and
stack, loops over heads, F.scaled_dot_product_attention, …), independently of the Mistake functions inside
kqvlib.exercises.ch06.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import kqvlib
from kqvlib.exercises import ch06
from kqvlib.exercises.ch06.heads import SIZES
from kqvlib.exercises.ch06.mha import _MHA_MISTAKES, _mha_inputs, _shared_mistakes
from kqvlib.exercises.ch06.mha import _mha as reference_mha

# --- split_heads(x, n_heads) --------------------------------------------------------------------------------


def split_ok(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def split_chunks(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)  # H × (B, T, hs) → (B, H, T, hs)


def split_einops_style(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)


def split_stub(x, n_heads):
    raise NotImplementedError  # your code here


def _bt(x):
    return x.shape[0], x.shape[1], x.shape[2]


SPLIT_SLIPS = {
    "no transpose": lambda x, H: x.view(x.shape[0], H, x.shape[1], x.shape[2] // H),
    "head axis not moved": lambda x, H: x.reshape(x.shape[0], x.shape[1], H, -1),
    "split as (hs, H)": lambda x, H: x.view(x.shape[0], x.shape[1], -1, H).permute(0, 3, 1, 2),
    "n_heads as head size": lambda x, H: x.view(x.shape[0], x.shape[1], -1, H).transpose(1, 2),
    "transpose(1, 3)": lambda x, H: x.view(x.shape[0], x.shape[1], H, -1).transpose(1, 3),
    "transpose(2, 3)": lambda x, H: x.view(x.shape[0], x.shape[1], H, -1).transpose(-1, -2),
    "positions last": lambda x, H: x.view(x.shape[0], x.shape[1], H, -1).permute(0, 2, 3, 1),
    "heads along T": lambda x, H: torch.cat(torch.split(x, x.shape[-1] // H, dim=-1), dim=1),
    "hard-coded size": lambda x, H: x.view(x.shape[0], x.shape[1], 3, 5).transpose(1, 2),
    "float head size": lambda x, H: x.view(x.shape[0], x.shape[1], H, x.shape[2] / H).transpose(1, 2),
}


@pytest.mark.parametrize("fn", [split_ok, split_chunks, split_einops_style, kqvlib.split_heads])
def test_split_heads_accepts_correct_answers(fn):
    r = ch06.check_split_heads(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


def test_split_heads_stub(capsys):
    r = ch06.check_split_heads(split_stub)
    assert r.key == "not attempted" and "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(SPLIT_SLIPS))
def test_split_heads_slips(key):
    r = ch06.check_split_heads(SPLIT_SLIPS[key], quiet=True, seed=1)
    assert not r.passed and r.key == key, r.message


def test_split_heads_unlisted_rearrangement_is_named():
    r = ch06.check_split_heads(lambda x, H: split_ok(x, H).permute(1, 0, 2, 3), quiet=True)
    assert r.key == "rearranged" and ".permute(" in r.message, r.message


# --- merge_heads(y) -----------------------------------------------------------------------------------------


def merge_ok(y):
    B, H, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, H * hs)


def merge_cat(y):
    return torch.cat(y.unbind(dim=1), dim=-1)  # H × (B, T, hs) side by side


def merge_contiguous(y):
    B, H, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, -1)


def merge_stub(y):
    raise NotImplementedError


MERGE_SLIPS = {
    "no transpose": lambda y: y.reshape(y.shape[0], y.shape[2], -1),
    "view on non-contiguous": lambda y: y.transpose(1, 2).view(y.shape[0], y.shape[2], -1),
    "not joined": lambda y: y.permute(0, 2, 1, 3),
    "merged as (hs, H)": lambda y: y.permute(0, 2, 3, 1).flatten(2),
    "heads reversed": lambda y: torch.cat([y[:, h] for h in reversed(range(y.shape[1]))], dim=-1),
    "swapped T and hs": lambda y: y.transpose(-1, -2).reshape(y.shape[0], y.shape[2], -1),
    "summed heads": lambda y: y.sum(1),
    "averaged heads": lambda y: y.mean(dim=1),
    "heads along T": lambda y: torch.cat([y[:, h] for h in range(y.shape[1])], dim=1),
    "joined T and hs": lambda y: y.reshape(y.shape[0], y.shape[1], -1),
    "hard-coded size": lambda y: y.transpose(1, 2).reshape(y.shape[0], y.shape[2], 15),
}


@pytest.mark.parametrize("fn", [merge_ok, merge_cat, merge_contiguous, kqvlib.merge_heads])
def test_merge_heads_accepts_correct_answers(fn):
    r = ch06.check_merge_heads(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


def test_merge_heads_stub(capsys):
    r = ch06.check_merge_heads(merge_stub)
    assert r.key == "not attempted" and "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(MERGE_SLIPS))
def test_merge_heads_slips(key):
    r = ch06.check_merge_heads(MERGE_SLIPS[key], quiet=True, seed=2)
    assert not r.passed and r.key == key, r.message


def test_view_hint_comes_before_the_raw_error():
    r = ch06.check_merge_heads(MERGE_SLIPS["view on non-contiguous"], quiet=True)
    assert r.message.index(".reshape(B, T, C)") < r.message.index("your code raised RuntimeError")


def test_split_then_merge_round_trip_is_the_identity():
    x = torch.randn(2, 4, 15, dtype=torch.float64)
    assert torch.equal(merge_ok(split_ok(x, 3)), x)


# --- multi_head_attention(x, W_q, W_k, W_v, W_o, n_heads) ---------------------------------------------------


def mha_ok(x, W_q, W_k, W_v, W_o, n_heads):
    B, T, C = x.shape
    hs = C // n_heads
    q = (x @ W_q).view(B, T, n_heads, hs).transpose(1, 2)  # (B, H, T, hs)
    k = (x @ W_k).view(B, T, n_heads, hs).transpose(1, 2)
    v = (x @ W_v).view(B, T, n_heads, hs).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hs), dim=-1)  # (B, H, T, T)
    return (w @ v).transpose(1, 2).reshape(B, T, C) @ W_o


def mha_loop(x, W_q, W_k, W_v, W_o, n_heads):
    hs = x.shape[-1] // n_heads
    outs = []
    for h in range(n_heads):
        cols = slice(h * hs, (h + 1) * hs)
        outs.append(kqvlib.scaled_dot_product_attention(x @ W_q[:, cols], x @ W_k[:, cols], x @ W_v[:, cols]))
    return torch.cat(outs, dim=-1) @ W_o


def mha_sdpa(x, W_q, W_k, W_v, W_o, n_heads):
    q, k, v = (kqvlib.split_heads(x @ W, n_heads) for W in (W_q, W_k, W_v))
    return kqvlib.merge_heads(F.scaled_dot_product_attention(q, k, v)) @ W_o


def mha_stub(x, W_q, W_k, W_v, W_o, n_heads):
    raise NotImplementedError  # your code here


def _mha(x, W_q, W_k, W_v, W_o, H, *, split=None, merge=None, attend=None, W_last=None):
    """mha_ok with one step swapped for a learner's wrong version."""
    B, T, C = x.shape
    hs = C // H
    split = split or (lambda t: t.view(B, T, H, hs).transpose(1, 2))
    merge = merge or (lambda y: y.transpose(1, 2).reshape(B, T, C))
    attend = attend or (lambda q, k, v: torch.softmax(q @ k.mT / math.sqrt(hs), dim=-1) @ v)
    return merge(attend(split(x @ W_q), split(x @ W_k), split(x @ W_v))) @ (W_o if W_last is None else W_last)


def _softmax_attend(scale=None, dim=-1, mask=False):
    def attend(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1] if scale is None else scale)
        if mask:
            T = s.shape[-1]
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return F.softmax(s, dim=dim) @ v
    return attend


MHA_SLIPS = {
    "no transpose": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, split=lambda t: t.reshape(x.shape[0], H, x.shape[1], -1),
        merge=lambda y: y.reshape(x.shape)),
    "split without transpose": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, split=lambda t: t.view(x.shape[0], H, x.shape[1], -1)),
    "merge without transpose": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, merge=lambda y: y.reshape(x.shape[0], x.shape[1], -1)),
    "split as (hs, H)": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, split=lambda t: t.view(x.shape[0], x.shape[1], -1, H).permute(0, 3, 1, 2),
        merge=lambda y: y.permute(0, 2, 3, 1).reshape(x.shape)),
    "√d_model": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(scale=x.shape[-1])),
    "not scaled": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(scale=1)),
    "softmax over queries": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(dim=2)),
    "softmax over heads": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(dim=1)),
    "softmax over batch": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(dim=0)),
    "causal mask": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, attend=_softmax_attend(mask=True)),
    "no W_O": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, W_last=torch.eye(x.shape[-1], dtype=x.dtype)),
    "W_O transposed": lambda x, Wq, Wk, Wv, Wo, H: _mha(x, Wq, Wk, Wv, Wo, H, W_last=Wo.T),
    "weights transposed": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq.T, Wk.T, Wv.T, Wo.T, H),
    "heads reversed": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, merge=lambda y: torch.cat([y[:, h] for h in range(H - 1, -1, -1)], dim=-1)),
    "one big head": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq, Wk, Wv, Wo, 1),
    "keys from W_q": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq, Wq, Wv, Wo, H),
    "values from W_k": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq, Wk, Wk, Wo, H),
    "values not projected": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq, Wk, torch.eye(x.shape[-1], dtype=x.dtype), Wo, H),
    "K @ Qᵀ": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, attend=lambda q, k, v: torch.softmax(k @ q.mT / math.sqrt(q.shape[-1]), -1) @ v),
    "no softmax": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, attend=lambda q, k, v: (q @ k.mT / math.sqrt(q.shape[-1])) @ v),
    # raise on the ordinary inputs; the run on inputs with T = H = hs names them
    "k not moved": lambda x, Wq, Wk, Wv, Wo, H: _mha_k_not_moved(x, Wq, Wk, Wv, Wo, H),
    # errors explained from the message
    "view on non-contiguous": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, merge=lambda y: y.transpose(1, 2).view(x.shape)),
    "float head size": lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, split=lambda t: t.view(x.shape[0], x.shape[1], H, x.shape[2] / H).transpose(1, 2)),
    "hard-coded size": lambda x, Wq, Wk, Wv, Wo, H: mha_ok(x, Wq, Wk, Wv, Wo, 3),
}


def _mha_k_not_moved(x, W_q, W_k, W_v, W_o, H):
    B, T, C = x.shape
    hs = C // H
    q = (x @ W_q).view(B, T, H, hs).transpose(1, 2)
    k = (x @ W_k).view(B, T, H, hs)  # forgot .transpose(1, 2) here
    v = (x @ W_v).view(B, T, H, hs).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hs), dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, T, C) @ W_o


@pytest.mark.parametrize("fn", [mha_ok, mha_loop, mha_sdpa])
def test_mha_accepts_correct_answers(fn):
    r = ch06.check_multi_head_attention(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


def test_mha_accepts_kqvlib_module():
    def with_module(x, W_q, W_k, W_v, W_o, n_heads):
        C = x.shape[-1]
        m = kqvlib.MultiHeadAttention(C, n_heads, bias=False).double()
        with torch.no_grad():
            m.q_proj.weight.copy_(W_q.T)
            m.kv_proj.weight.copy_(torch.cat([W_k.T, W_v.T]))
            m.out_proj.weight.copy_(W_o.T)
            return m(x)

    assert ch06.check_multi_head_attention(with_module, quiet=True).passed


def test_mha_stub(capsys):
    r = ch06.check_multi_head_attention(mha_stub)
    assert r.key == "not attempted" and "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(MHA_SLIPS))
def test_mha_slips(key):
    r = ch06.check_multi_head_attention(MHA_SLIPS[key], quiet=True, seed=3)
    assert not r.passed and r.key == key, r.message


def test_mha_q_k_not_transposed_is_named():
    slip = lambda x, Wq, Wk, Wv, Wo, H: _mha(  # noqa: E731
        x, Wq, Wk, Wv, Wo, H, attend=lambda q, k, v: torch.softmax(q @ k / math.sqrt(q.shape[-1]), -1) @ v)
    r = ch06.check_multi_head_attention(slip, quiet=True)
    assert r.key == "no transpose" and "transpose the last two axes of K" in r.message, r.message


def test_every_listed_mha_mistake_is_recognised_as_itself():
    """Each Mistake of the checker, used as the learner's function, gets its own key (or that of an
    earlier one that computes the very same thing on the test inputs)."""
    mistakes = _MHA_MISTAKES + _shared_mistakes()
    inputs = _mha_inputs(SIZES)(torch.Generator().manual_seed(0))
    expected = reference_mha(*inputs)
    for i, m in enumerate(mistakes):
        try:
            wrong = m.fn(*inputs)
        except Exception:
            continue
        if wrong.shape == expected.shape and torch.allclose(wrong, expected):
            continue  # the same as the right answer at these sizes (√d_v = √d_k here)
        r = ch06.check_multi_head_attention(m.fn, quiet=True, seed=4)
        same = [e.key for e in mistakes[:i] if _same(e.fn, m.fn, inputs)]
        assert r.key == m.key or r.key in same, (m.key, r.message)


def _same(f, g, inputs):
    try:
        a, b = f(*inputs), g(*inputs)
    except Exception:
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b))


def test_mha_hints_differ():
    msgs = {ch06.check_multi_head_attention(f, quiet=True, seed=5).message.split(" (your code")[0]
            for f in MHA_SLIPS.values()}
    assert len(msgs) == len(MHA_SLIPS)


def test_heads_in_another_order_are_diagnosed_through_w_o():
    r = ch06.check_multi_head_attention(lambda x, Wq, Wk, Wv, Wo, H: _mha(
        x, Wq, Wk, Wv, Wo, H, merge=lambda y: y.roll(1, dims=1).transpose(1, 2).reshape(x.shape)), quiet=True)
    assert r.key == "heads permuted", r.message


@pytest.mark.parametrize("check", [ch06.check_split_heads, ch06.check_merge_heads, ch06.check_multi_head_attention])
def test_a_raising_function_does_not_crash_and_prints_one_line(check, capsys):
    def broken(*args):
        raise KeyError("oops")

    r = check(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert not r.passed and r.key == "exception" and len(out) == 1 and "KeyError" in out[0]


# --- the hints that used to point the wrong way -----------------------------------------------------------------

def test_mha_with_no_transpose_anywhere_is_named():
    def no_transpose(x, W_q, W_k, W_v, W_o, n_heads):
        B, T, C = x.shape
        hs = C // n_heads
        q = (x @ W_q).view(B, T, n_heads, hs)
        k = (x @ W_k).view(B, T, n_heads, hs)
        v = (x @ W_v).view(B, T, n_heads, hs)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hs), dim=-1)
        return (w @ v).reshape(B, T, C) @ W_o
    r = ch06.check_multi_head_attention(no_transpose, seed=0, quiet=True)
    assert not r.passed and r.key == "heads never moved" and "weighted mix" not in r.message, r.message


def test_merge_with_a_misordered_shape_is_named():
    def unpacked_wrong(y):
        B, T, H, hs = y.shape  # y is (B, H, T, hs)
        return y.transpose(1, 2).reshape(B, T, H * hs)
    r = ch06.check_merge_heads(unpacked_wrong, seed=0, quiet=True)
    assert not r.passed and r.key == "sizes in the wrong order" and "permute" not in r.message, r.message

"""Chapter 13's checker: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers below are written the way a learner would write them (a loop over key blocks, m
starting at −inf), independently of the Mistake functions inside kqvlib.exercises.ch13.
"""
import math

import pytest
import torch

from kqvlib import efficient
from kqvlib.exercises import ch13


def blockwise_ok(q, k, v, block_size):
    scale = 1 / math.sqrt(q.shape[-1])
    m = torch.full(q.shape[:-1] + (1,), -math.inf, dtype=q.dtype)  # (..., T, 1)
    l = torch.zeros_like(m)  # (..., T, 1)
    acc = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)  # (..., T, d_v)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale  # (..., T, b)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = alpha * l + p.sum(dim=-1, keepdim=True)
        acc = alpha * acc + p @ v[..., j:j + block_size, :]
        m = m_new
    return acc / l


def blockwise_normalised_running(q, k, v, block_size):
    """A right variant: keep the output normalised at every step (rescale by l_old / l_new)."""
    scale = q.shape[-1] ** -0.5
    m = torch.full(q.shape[:-1] + (1,), -math.inf, dtype=q.dtype)
    l = torch.zeros_like(m)
    out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    for j in range(0, k.shape[-2], block_size):
        s = (q @ k[..., j:j + block_size, :].mT) * scale
        m_new = torch.maximum(m, s.max(dim=-1, keepdim=True).values)
        p = torch.exp(s - m_new)
        l_new = torch.exp(m - m_new) * l + p.sum(-1, keepdim=True)
        out = (torch.exp(m - m_new) * l * out + p @ v[..., j:j + block_size, :]) / l_new
        m, l = m_new, l_new
    return out


def blockwise_stub(q, k, v, block_size):
    raise NotImplementedError  # your code here


def _loop(q, k, v, block_size, *, body, finish=lambda acc, l: acc / l, stop=None, scale=None):
    """A learner's loop; ``body(state, s, vb)`` returns the new (m, l, acc)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    m = torch.full(q.shape[:-1] + (1,), -math.inf, dtype=q.dtype)
    state = (m, torch.zeros_like(m), torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype))
    S = k.shape[-2] if stop is None else stop(k.shape[-2], block_size)
    for j in range(0, S, block_size):
        s = q @ k[..., j:j + block_size, :].mT * scale
        state = body(state, s, v[..., j:j + block_size, :])
    return finish(state[2], state[1])


def _step(rescale_acc=True, rescale_l=True, p_from_old=False, wrong_sign=False, keep_m=True,
          overwrite=False, divide=False, no_max=False, acc_power=1):
    def body(state, s, vb):
        m, l, acc = state
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m_new - m) if wrong_sign else torch.exp(m - m_new)
        p = torch.exp(s) if no_max else torch.exp(s - (m if p_from_old else m_new))
        if no_max:
            alpha = torch.ones_like(alpha)
        l = (alpha * l if rescale_l else l) + p.sum(-1, keepdim=True)
        acc = p @ vb if overwrite else (alpha ** acc_power * acc if rescale_acc else acc) + p @ vb
        if divide:
            acc = acc / l
        return (m_new if keep_m else m), l, acc
    return body


def blockwise_average_of_blocks(q, k, v, block_size):
    outs = []
    for j in range(0, k.shape[-2], block_size):
        w = torch.softmax(q @ k[..., j:j + block_size, :].mT / math.sqrt(q.shape[-1]), dim=-1)
        outs.append(w @ v[..., j:j + block_size, :])
    return sum(outs) / len(outs)


def blockwise_returns_early(q, k, v, block_size):
    for j in range(0, k.shape[-2], block_size):
        w = torch.softmax(q @ k[..., j:j + block_size, :].mT / math.sqrt(q.shape[-1]), dim=-1)
        return w @ v[..., j:j + block_size, :]  # the return is indented one level too deep


def blockwise_2d_only(q, k, v, block_size):  # k.T and dim=1: right only for (T, d) inputs
    m, l, acc = None, None, None
    for j in range(0, k.shape[0], block_size):
        s = q @ k[j:j + block_size].T / math.sqrt(q.shape[1])
        mx = s.max(dim=1, keepdim=True).values
        m_new = mx if m is None else torch.maximum(m, mx)
        p = torch.exp(s - m_new)
        a = 0.0 if m is None else torch.exp(m - m_new)
        l = p.sum(1, keepdim=True) + (0.0 if l is None else a * l)
        acc = p @ v[j:j + block_size] + (0.0 if acc is None else a * acc)
        m = m_new
    return acc / l


SLIPS = {
    "acc not rescaled": lambda *a: _loop(*a, body=_step(rescale_acc=False)),
    "sum not rescaled": lambda *a: _loop(*a, body=_step(rescale_l=False)),
    "nothing rescaled": lambda *a: _loop(*a, body=_step(rescale_acc=False, rescale_l=False)),
    "divided inside the loop": lambda *a: _loop(*a, body=_step(divide=True), finish=lambda acc, l: acc),
    "divided twice": lambda *a: _loop(*a, body=_step(divide=True)),
    "not divided": lambda *a: _loop(*a, body=_step(), finish=lambda acc, l: acc),
    "blocks averaged": blockwise_average_of_blocks,
    "only the last block": lambda *a: _loop(*a, body=_step(keep_m=False)),
    "acc overwritten": lambda *a: _loop(*a, body=_step(overwrite=True)),
    "only the first block": blockwise_returns_early,
    "tail dropped": lambda *a: _loop(*a, body=_step(), stop=lambda S, b: S // b * b),
    "not scaled": lambda *a: _loop(*a, body=_step(), scale=1.0),
    "divided by d": lambda q, k, v, b: _loop(q, k, v, b, body=_step(), scale=1 / q.shape[-1]),
    "no max subtraction": lambda *a: _loop(*a, body=_step(no_max=True)),
    "extra axes": blockwise_2d_only,
    # NaN on ordinary inputs: the running max is −inf on the first block
    "nan": lambda *a: _loop(*a, body=_step(p_from_old=True)),
    # not listed as mistakes: found by the properties
    "blocks combined wrongly": lambda *a: _loop(*a, body=_step(acc_power=2)),  # alpha² on acc
    "output times constant": lambda *a: 2.0 * blockwise_ok(*a),
    "transposed output": lambda *a: blockwise_ok(*a).mT,
}


@pytest.mark.parametrize("fn", [blockwise_ok, blockwise_normalised_running, efficient.tiled_attention],
                         ids=["ok", "normalised running", "kqvlib tiled"])
@pytest.mark.parametrize("seed", range(4))
def test_accepts_right_answers(fn, seed):
    r = ch13.check_blockwise_attention(
        fn if fn is not efficient.tiled_attention else lambda q, k, v, b: fn(q, k, v, block_size=b),
        quiet=True, seed=seed)
    assert r.passed and r.key == "ok", r.message


def test_stub(capsys):
    r = ch13.check_blockwise_attention(blockwise_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:The use of `x.T`")
@pytest.mark.parametrize("key", list(SLIPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_slips_get_their_own_hint(key, seed):
    r = ch13.check_blockwise_attention(SLIPS[key], quiet=True, seed=seed)
    assert not r.passed and r.key == key, r.message


def test_wrong_sign_is_caught():
    """exp(m_new − m) with m = −inf on the first block: inf, then NaN — the NaN hint names it."""
    r = ch13.check_blockwise_attention(lambda *a: _loop(*a, body=_step(wrong_sign=True)), quiet=True)
    assert r.key == "nan" and "exp(m − m_new)" in r.message


def test_wrong_sign_with_a_finite_start_gets_its_hint():
    def finite_start(q, k, v, b):
        m = None
        for j in range(0, k.shape[-2], b):
            s = q @ k[..., j:j + b, :].mT / math.sqrt(q.shape[-1])
            if m is None:
                m = s.amax(-1, keepdim=True)
                p = torch.exp(s - m)
                l, acc = p.sum(-1, keepdim=True), p @ v[..., j:j + b, :]
                continue
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            a = torch.exp(m_new - m)  # the wrong way round
            p = torch.exp(s - m_new)
            l, acc, m = a * l + p.sum(-1, keepdim=True), a * acc + p @ v[..., j:j + b, :], m_new
        return acc / l

    assert ch13.check_blockwise_attention(finite_start, quiet=True).key == "rescaled the wrong way"


def test_hints_differ():
    msgs = {ch13.check_blockwise_attention(f, quiet=True, seed=3).message for f in SLIPS.values()}
    assert len(msgs) == len(SLIPS)


def test_a_raising_function_does_not_crash(capsys):
    def broken(*a):
        raise KeyError("oops")

    r = ch13.check_blockwise_attention(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert not r.passed and r.key == "exception" and len(out) == 1
    assert out[0].startswith("✗") and out[0].endswith("(your code raised KeyError: 'oops')")


def test_nonsense_and_none():
    assert ch13.check_blockwise_attention(lambda *a: "nonsense", quiet=True).passed is False
    assert ch13.check_blockwise_attention(lambda *a: None, quiet=True).key == "returned None"

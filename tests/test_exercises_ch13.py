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


def test_whole_matrix_answer_is_refused():
    """Right values from softmax(q kᵀ/√d) v: not blockwise, so not accepted."""
    def whole(q, k, v, block_size):
        return torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), dim=-1) @ v

    def whole_by_concatenated_blocks(q, k, v, block_size):
        s = torch.cat([q @ k[..., j:j + block_size, :].mT for j in range(0, k.shape[-2], block_size)], dim=-1)
        return torch.softmax(s / math.sqrt(q.shape[-1]), dim=-1) @ v

    for fn in (whole, whole_by_concatenated_blocks):
        r = ch13.check_blockwise_attention(fn, quiet=True, seed=0)
        assert not r.passed and r.key == "whole score matrix", r.message


# --- online softmax over a stream ------------------------------------------------------------------------------

def stream_ok(chunks):
    m = l = None
    for c in chunks:
        mx = c.amax(dim=-1)
        if m is None:
            m, l = mx, torch.exp(c - mx[:, None]).sum(-1)
            continue
        m_new = torch.maximum(m, mx)
        l = l * torch.exp(m - m_new) + torch.exp(c - m_new[:, None]).sum(-1)
        m = m_new
    return m, l


def stream_ok_minus_inf(chunks):
    m, l = None, None
    for c in chunks:
        if m is None:
            m = torch.full((c.shape[0],), -math.inf, dtype=c.dtype)
            l = torch.zeros_like(m)
        m_new = torch.maximum(m, c.max(dim=-1).values)
        l = torch.exp(m - m_new) * l + torch.exp(c - m_new.unsqueeze(-1)).sum(dim=-1)
        m = m_new
    return (m, l)


def _stream_slip(rescale=True, sign=1.0, m0=-math.inf, reset=False, one_max=False, swap=False, keep=False,
                 only_l=False, first_only=False, keepdim=False):
    def fn(chunks):
        m = l = None
        kept = []
        for c in chunks:
            if keep:
                kept.append(c)
            mx = (c.amax() * torch.ones(c.shape[0], dtype=c.dtype)) if one_max else c.amax(dim=-1)
            if m is None:  # m0 None: start at the first chunk's max
                m, l = (mx if m0 is None else torch.full_like(mx, m0)), torch.zeros_like(mx)
            m_new = torch.maximum(m, mx)
            a = torch.exp(sign * (m - m_new)) if rescale else 1.0
            l = (0.0 if reset else a * l) + torch.exp(c - m_new[:, None]).sum(dim=-1)
            m = m_new
            if first_only:
                break
        if only_l:
            return l
        if keepdim:
            return m[:, None], l[:, None]
        return (l, m) if swap else (m, l)
    return fn


def stream_indexed(chunks):
    m = chunks[0].amax(-1)
    return m, m


def stream_cat(chunks):
    x = torch.cat(list(chunks), dim=-1)
    m = x.amax(-1)
    return m, torch.exp(x - m[:, None]).sum(-1)


STREAM_SLIPS = {
    "sum not rescaled": _stream_slip(rescale=False),
    "rescaled the wrong way": _stream_slip(sign=-1.0, m0=None),
    "sum reset": _stream_slip(reset=True),
    "all negative": _stream_slip(m0=0.0),  # m started at 0
    "one max for the batch": _stream_slip(one_max=True),
    "swapped": _stream_slip(swap=True),
    "kept the chunks": stream_cat,
    "not a pair": _stream_slip(only_l=True),
    "pair shape": _stream_slip(keepdim=True),
    "first chunk only": _stream_slip(first_only=True),
    "indexed the stream": stream_indexed,
}


@pytest.mark.parametrize("fn", [stream_ok, stream_ok_minus_inf])
@pytest.mark.parametrize("seed", range(3))
def test_stream_accepts_right_answers(fn, seed):
    r = ch13.check_stream_softmax(fn, quiet=True, seed=seed)
    assert r.passed, r.message


@pytest.mark.parametrize("key", list(STREAM_SLIPS))
def test_stream_slips_get_their_own_hint(key):
    r = ch13.check_stream_softmax(STREAM_SLIPS[key], quiet=True, seed=1)
    assert not r.passed and r.key == key, r.message


def test_stream_stub_and_nonsense(capsys):
    def stub(chunks):
        raise NotImplementedError
    assert ch13.check_stream_softmax(stub).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    assert not ch13.check_stream_softmax(lambda c: "nonsense", quiet=True).passed
    assert ch13.check_stream_softmax(lambda c: None, quiet=True).key == "returned None"


# --- one tile of the flash backward ------------------------------------------------------------------------

def tile_ok(q, k, v, d_out, lse, delta):
    scale = q.shape[-1] ** -0.5
    p = torch.exp(q @ k.mT * scale - lse)  # (..., bq, bk)
    ds = p * (d_out @ v.mT - delta)
    return ds @ k * scale, ds.mT @ q * scale, p.mT @ d_out


def tile_ok_einsum(q, k, v, d_out, lse, delta):
    scale = 1 / math.sqrt(q.shape[-1])
    p = torch.exp(torch.einsum("...id,...jd->...ij", q, k) * scale - lse)
    dp = torch.einsum("...ie,...je->...ij", d_out, v)
    ds = p * (dp - delta)
    dq = torch.einsum("...ij,...jd->...id", ds, k) * scale
    dk = torch.einsum("...ij,...id->...jd", ds, q) * scale
    dv = torch.einsum("...ij,...ie->...je", p, d_out)
    return dq, dk, dv


def _tile_slip(local=False, delta=-1.0, unscaled=False, dq_scale=None, dk_scale=None, order=(0, 1, 2),
               dv_no_t=False, dv_wrong=False, two_d=False):
    def fn(q, k, v, d_out, lse, delta_):
        scale = 1 / math.sqrt(q.shape[-1])
        kt = k.T if two_d else k.mT
        s = q @ kt * (1.0 if unscaled else scale)
        p = torch.softmax(s, -1) if local else torch.exp(s - lse)
        dv = p @ d_out if dv_no_t else p.mT @ d_out
        if dv_wrong:
            dv = p.mT @ d_out - 0.1 * v
        ds = p * (d_out @ v.mT + delta * delta_)
        dq = ds @ k * (scale if dq_scale is None else dq_scale)
        dk = ds.mT @ q * (scale if dk_scale is None else dk_scale)
        out = (dq, dk, dv)
        return tuple(out[i] for i in order)
    return fn


TILE_SLIPS = {
    "weights renormalised in the tile": _tile_slip(local=True),
    "delta left out": _tile_slip(delta=0.0),
    "delta added": _tile_slip(delta=1.0),
    "scores not scaled": _tile_slip(unscaled=True),
    "dq not scaled": _tile_slip(dq_scale=1.0),
    "dk scaled twice": lambda q, *a: _tile_slip(dk_scale=1 / q.shape[-1])(q, *a),
    "order": _tile_slip(order=(1, 0, 2)),
    "transpose missing": _tile_slip(dv_no_t=True),
    "dv wrong": _tile_slip(dv_wrong=True),
    "not a triple": lambda *a: tile_ok(*a)[:2],
}


@pytest.mark.parametrize("fn", [tile_ok, tile_ok_einsum])
@pytest.mark.parametrize("seed", range(3))
def test_tile_accepts_right_answers(fn, seed):
    r = ch13.check_flash_backward_tile(fn, quiet=True, seed=seed)
    assert r.passed, r.message


@pytest.mark.filterwarnings("ignore:The use of `x.T`")
@pytest.mark.parametrize("key", list(TILE_SLIPS))
def test_tile_slips_get_their_own_hint(key):
    r = ch13.check_flash_backward_tile(TILE_SLIPS[key], quiet=True, seed=2)
    assert not r.passed and r.key == key, r.message


def test_tile_stub_does_not_crash(capsys):
    def stub(*a):
        raise NotImplementedError
    assert ch13.check_flash_backward_tile(stub).key == "not attempted"
    assert ch13.check_flash_backward_tile(lambda *a: None, quiet=True).key == "returned None"


# --- a second set of slips, written after the checkers, kept apart until they were final ----------------------

def held_s1(chunks):  # global max per chunk (scalar)
    m = l = None
    for c in chunks:
        mx = c.max()
        if m is None: m, l = mx, torch.exp(c - mx).sum(-1); continue
        mn = torch.maximum(m, mx); l = l * torch.exp(m - mn) + torch.exp(c - mn).sum(-1); m = mn
    return m, l
def held_s2(chunks):  # exp with the old m
    m, l = None, None
    for c in chunks:
        if m is None: m = torch.full((c.shape[0],), -math.inf, dtype=c.dtype); l = torch.zeros_like(m)
        mn = torch.maximum(m, c.amax(-1)); l = l * torch.exp(m - mn) + torch.exp(c - m[:, None]).sum(-1); m = mn
    return m, l
def held_s3(chunks):  # returns (m, log l)
    m = l = None
    for c in chunks:
        mx = c.amax(-1)
        if m is None: m, l = mx, torch.exp(c - mx[:, None]).sum(-1); continue
        mn = torch.maximum(m, mx); l = l * torch.exp(m - mn) + torch.exp(c - mn[:, None]).sum(-1); m = mn
    return m, torch.log(l)
def held_s4(chunks):  # m never updated after the first chunk
    m = l = None
    for c in chunks:
        mx = c.amax(-1)
        if m is None: m, l = mx, torch.exp(c - mx[:, None]).sum(-1); continue
        mn = torch.maximum(m, mx); l = l * torch.exp(m - mn) + torch.exp(c - mn[:, None]).sum(-1)
    return m, l
def held_s5(chunks):  # no [:, None]: raw broadcast error
    m = l = None
    for c in chunks:
        mx = c.amax(-1)
        if m is None: m, l = mx, torch.exp(c - mx).sum(-1); continue
    return m, l
def held_s6(chunks):  # sums over the wrong axis
    m = l = None
    for c in chunks:
        mx = c.amax(-1)
        if m is None: m, l = mx, torch.exp(c - mx[:, None]).sum(0); continue
        mn = torch.maximum(m, mx); l = l * torch.exp(m - mn) + torch.exp(c - mn[:, None]).sum(0); m = mn
    return m, l
def held_t1(q, k, v, do, lse, delta):  # precedence: exp(s) - lse
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.mT * c) - lse
    ds = p * (do @ v.mT - delta); return ds @ k * c, ds.mT @ q * c, p.mT @ do
def held_t2(q, k, v, do, lse, delta):  # forgot P in dS
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.mT * c - lse)
    ds = do @ v.mT - delta; return ds @ k * c, ds.mT @ q * c, p.mT @ do
def held_t3(q, k, v, do, lse, delta):  # dk without scale
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.mT * c - lse)
    ds = p * (do @ v.mT - delta); return ds @ k * c, ds.mT @ q, p.mT @ do
def held_t4(q, k, v, do, lse, delta):  # dv from dS
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.mT * c - lse)
    ds = p * (do @ v.mT - delta); return ds @ k * c, ds.mT @ q * c, ds.mT @ do
def held_t5(q, k, v, do, lse, delta):  # .T on 4-D
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.transpose(0, 1) * c - lse)
    ds = p * (do @ v.transpose(0, 1) - delta); return ds @ k * c, ds.transpose(0, 1) @ q * c, p.transpose(0, 1) @ do
def held_t6(q, k, v, do, lse, delta):  # returns (dq, dv, dk)
    c = q.shape[-1] ** -0.5; p = torch.exp(q @ k.mT * c - lse)
    ds = p * (do @ v.mT - delta); return ds @ k * c, p.mT @ do, ds.mT @ q * c
def held_b1(q, k, v, b):  # whole matrix via einsum
    return torch.softmax(torch.einsum("...td,...sd->...ts", q, k) / math.sqrt(q.shape[-1]), -1) @ v


HELD_OUT = [
    (ch13.check_stream_softmax, held_s1, "pair shape"), (ch13.check_stream_softmax, held_s2, "nan"),
    (ch13.check_stream_softmax, held_s3, "returned log l"), (ch13.check_stream_softmax, held_s4, "m never updated"),
    (ch13.check_stream_softmax, held_s5, "keepdim"),
    (ch13.check_flash_backward_tile, held_t1, "exp before subtracting"),
    (ch13.check_flash_backward_tile, held_t2, "P left out of dS"),
    (ch13.check_flash_backward_tile, held_t3, "dk not scaled"), (ch13.check_flash_backward_tile, held_t4, "dv wrong"),
    (ch13.check_flash_backward_tile, held_t5, "extra axes"), (ch13.check_flash_backward_tile, held_t6, "order"),
    (ch13.check_blockwise_attention, held_b1, "whole score matrix"),
]


@pytest.mark.parametrize("checker, fn, key", HELD_OUT, ids=[f.__name__ for _, f, _ in HELD_OUT])
def test_held_out_slips_are_named(checker, fn, key):
    r = checker(fn, quiet=True, seed=7)
    assert not r.passed and r.key == key, r.message

"""Chapter 8 checkers: the reference passes, a stub is "not attempted", each likely mistake gets its own hint,
and a function that raises never crashes the checker.

The wrong versions below are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch08.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import kqvlib
from kqvlib.exercises import ch08


def stub(*args):
    raise NotImplementedError  # your code here


# --- layer_norm ---------------------------------------------------------------------------------------------

def layer_norm_ok(x, weight, bias, eps):
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), biased
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _mv(x, dims=-1):
    return x.mean(dim=dims, keepdim=True), x.var(dim=dims, keepdim=True, unbiased=False)


def _xhat(x, eps):
    m, v = _mv(x)
    return (x - m) / (v + eps).sqrt()


LN_MISTAKES = {
    "unbiased variance": lambda x, w, b, eps: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b,
    "eps outside the square root": lambda x, w, b, eps: (x - _mv(x)[0]) / (_mv(x)[1].sqrt() + eps) * w + b,
    "std plus eps": lambda x, w, b, eps: (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + eps) * w + b,
    "no eps": lambda x, w, b, eps: (x - _mv(x)[0]) / _mv(x)[1].sqrt() * w + b,
    "divided by the variance": lambda x, w, b, eps: (x - _mv(x)[0]) / (_mv(x)[1] + eps) * w + b,
    "uncentred variance": lambda x, w, b, eps: (x - x.mean(-1, keepdim=True)) / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b,
    "mean only": lambda x, w, b, eps: (x - x.mean(-1, keepdim=True)) * w + b,
    "mean not subtracted": lambda x, w, b, eps: x / torch.sqrt(_mv(x)[1] + eps) * w + b,
    "RMSNorm": lambda x, w, b, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w + b,
    "batch axis": lambda x, w, b, eps: (x - _mv(x, 0)[0]) / torch.sqrt(_mv(x, 0)[1] + eps) * w + b,
    "time axis": lambda x, w, b, eps: (x - _mv(x, 1)[0]) / torch.sqrt(_mv(x, 1)[1] + eps) * w + b,
    "batch and time axes": lambda x, w, b, eps: (x - _mv(x, (0, 1))[0]) / torch.sqrt(_mv(x, (0, 1))[1] + eps) * w + b,
    "positions and features": lambda x, w, b, eps: F.layer_norm(x, x.shape[1:], None, None, eps) * w + b,
    "all axes": lambda x, w, b, eps: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * w + b,
    "no gain": lambda x, w, b, eps: _xhat(x, eps) + b,
    "no bias": lambda x, w, b, eps: _xhat(x, eps) * w,
    "no gain and no bias": lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], eps=eps),
    "gain and bias swapped": lambda x, w, b, eps: _xhat(x, eps) * b + w,
    "gain and bias before normalising": lambda x, w, b, eps: _xhat(w * x + b, eps),
    # raises: the mean lost its axis, (B, T) against (B, T, C)
    "keepdim": lambda x, w, b, eps: (x - x.mean(-1)) / torch.sqrt(x.var(-1, unbiased=False) + eps) * w + b,
    # right for (B, T, C) only
    "other axes": lambda x, w, b, eps: (x - x.mean(2, keepdim=True)) / torch.sqrt(x.var(2, keepdim=True, unbiased=False) + eps) * w + b,
}


def test_layer_norm_accepts_reference_and_pytorch():
    assert ch08.check_layer_norm(layer_norm_ok, quiet=True).key == "ok"
    assert ch08.check_layer_norm(lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps), quiet=True).passed


def test_layer_norm_accepts_kqvlib():
    def with_module(x, w, b, eps):
        ln = kqvlib.LayerNorm(x.shape[-1], eps=eps).double()
        with torch.no_grad():
            ln.weight.copy_(w)
            ln.bias.copy_(b)
        return ln(x).detach()

    assert ch08.check_layer_norm(with_module, quiet=True).passed


def test_layer_norm_stub(capsys):
    r = ch08.check_layer_norm(stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(LN_MISTAKES))
def test_layer_norm_mistakes(key):
    r = ch08.check_layer_norm(LN_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


@pytest.mark.parametrize("seed", [2, 3])
def test_layer_norm_hints_differ(seed):
    msgs = {ch08.check_layer_norm(f, quiet=True, seed=seed).message.split(" (your code")[0]
            for f in LN_MISTAKES.values()}
    assert len(msgs) == len(LN_MISTAKES)


def test_layer_norm_unlisted_slips_get_a_diagnosis():
    half = ch08.check_layer_norm(lambda x, w, b, eps: 0.5 * _xhat(x, eps) * w + b, quiet=True)
    assert half.key == "scaled" and "0.5" in half.message
    off_centre = ch08.check_layer_norm(lambda x, w, b, eps: (x - x.median(-1, keepdim=True).values)
                                       / torch.sqrt(_mv(x)[1] + eps) * w + b, quiet=True)
    assert off_centre.key == "not centred"


def test_layer_norm_hint_comes_before_the_error():
    r = ch08.check_layer_norm(LN_MISTAKES["keepdim"], quiet=True)
    assert r.message.index("keepdim=True") < r.message.index("your code raised")


# --- block_forward ------------------------------------------------------------------------------------------

def block_ok(x, ln1, attn, ln2, mlp):
    h = x + attn(ln1(x))
    out = h + mlp(ln2(h))
    return out


def _post(x, ln1, attn, ln2, mlp):
    x = ln1(x + attn(x))
    x = ln2(x + mlp(x))
    return x


def _around(x, ln1, attn, ln2, mlp):
    x = ln1(x)
    x = x + attn(x)
    x = ln2(x)
    x = x + mlp(x)
    return x


def _dropped(x, ln1, attn, ln2, mlp):
    a = x + attn(ln1(x))
    return x + mlp(ln2(a))


BLOCK_MISTAKES = {
    "post-LN": _post,
    "residual around the norm": _around,
    "no residual": lambda x, ln1, attn, ln2, mlp: mlp(ln2(attn(ln1(x)))),
    "no attention residual": lambda x, ln1, attn, ln2, mlp: (lambda a: a + mlp(ln2(a)))(attn(ln1(x))),
    "no MLP residual": lambda x, ln1, attn, ln2, mlp: mlp(ln2(x + attn(ln1(x)))),
    "attention output dropped": _dropped,
    "parallel branches": lambda x, ln1, attn, ln2, mlp: x + mlp(ln2(x)) + attn(ln1(x)),
    "no MLP": lambda x, ln1, attn, ln2, mlp: x + attn(ln1(x)),
    "no attention": lambda x, ln1, attn, ln2, mlp: x + mlp(ln2(x)),
    "MLP first": lambda x, ln1, attn, ln2, mlp: (lambda h: h + attn(ln1(h)))(x + mlp(ln2(x))),
    "norms swapped": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln1(h)))(x + attn(ln2(x))),
    "one norm twice": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln1(h)))(x + attn(ln1(x))),
    "no norms": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(h))(x + attn(x)),
    "no attention norm": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln2(h)))(x + attn(x)),
    "no MLP norm": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(h))(x + attn(ln1(x))),
    "norm on the output": lambda x, ln1, attn, ln2, mlp: (lambda h: h + ln2(mlp(h)))(x + ln1(attn(x))),
    "indexed the attention output": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln2(h)))(x + attn(ln1(x))[0]),
    "returned the input": lambda x, ln1, attn, ln2, mlp: x.clone(),
    # raises: a second argument is a context (cross-attention), which a causal attention refuses
    "attention arguments": lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln2(h)))(x + attn(ln1(x), ln1(x), ln1(x))),
}


def test_block_forward_accepts_reference():
    r = ch08.check_block_forward(block_ok, quiet=True)
    assert r.passed and r.key == "ok"


def test_block_forward_accepts_kqvlib_block():
    """kqvlib.Block with the same modules computes the same function."""
    def via_block(x, ln1, attn, ln2, mlp):
        blk = kqvlib.Block(x.shape[-1], attn.n_heads)
        blk.ln1, blk.attn, blk.ln2, blk.mlp = ln1, attn, ln2, mlp
        return blk.eval()(x)

    assert ch08.check_block_forward(via_block, quiet=True).passed


def test_block_forward_in_place_update_is_fine():
    def in_place(x, ln1, attn, ln2, mlp):
        x += attn(ln1(x))
        x += mlp(ln2(x))
        return x

    assert ch08.check_block_forward(in_place, quiet=True).passed


def test_block_forward_stub(capsys):
    r = ch08.check_block_forward(stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(BLOCK_MISTAKES))
def test_block_forward_mistakes(key):
    r = ch08.check_block_forward(BLOCK_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


def test_block_forward_hints_differ():
    msgs = {ch08.check_block_forward(f, quiet=True, seed=2).message for f in BLOCK_MISTAKES.values()}
    assert len(msgs) == len(BLOCK_MISTAKES)


# --- never raise ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("checker", [ch08.check_layer_norm, ch08.check_block_forward])
def test_checkers_never_raise_and_print_one_line(checker, capsys):
    def broken(*args):
        raise KeyError("oops")

    r = checker(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert not r.passed and r.key == "exception"
    assert len(out) == 1 and out[0].startswith("✗") and "KeyError" in out[0]


@pytest.mark.parametrize("checker", [ch08.check_layer_norm, ch08.check_block_forward])
def test_checkers_survive_odd_returns(checker):
    assert checker(lambda *a: None, quiet=True).key == "returned None"
    assert not checker(lambda *a: "a string", quiet=True).passed
    assert not checker(lambda *a: torch.full((2, 5, 7), math.nan, dtype=torch.float64), quiet=True).passed
    assert not checker(lambda *a: nn.Identity(), quiet=True).passed


# --- slips nobody listed: the output written as a sum of the block's parts ---------------------------------------

@pytest.mark.parametrize("fn, shown", [
    (lambda x, ln1, attn, ln2, mlp: attn(ln1(x)) + mlp(ln2(x + attn(ln1(x)))), "your output is attn(ln1(x)) +"),
    (lambda x, ln1, attn, ln2, mlp: 2 * x + attn(ln1(x)) + mlp(ln2(x + attn(ln1(x)))), "2·x"),
])
def test_block_output_is_decomposed(fn, shown):
    r = ch08.check_block_forward(fn, seed=0, quiet=True)
    assert not r.passed and r.key in ("sum of the wrong parts", "plus an input"), r.message


def test_layer_norm_weight_applied_twice_is_named():
    r = ch08.check_layer_norm(lambda x, w, b, eps: (_xhat(x, eps) * w + b) * w, seed=0, quiet=True)
    assert r.key == "gain or bias wrong" and "weight²" in r.message, r.message

"""Chapter 7's checkers: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers below are written the way a learner would write them (loops, NumPy, the PyTorch
tutorial's div_term, …), independently of the Mistake functions inside kqvlib.exercises.ch07.
"""
import math

import numpy as np
import pytest
import torch

import kqvlib
from kqvlib.exercises import ch07


# --- sinusoidal_encoding(T, d_model) ------------------------------------------------------------------------

def pe_loops(T, d_model):
    """Straight from the formula, one number at a time (NumPy)."""
    pe = np.zeros((T, d_model))
    for pos in range(T):
        for i in range(d_model // 2):
            pe[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
            pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
    return pe


def pe_log_space(T, d_model):
    """The div_term of many tutorials: exp(2i · (−ln 10000 / d))."""
    position = torch.arange(T).unsqueeze(1)  # (T, 1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (d/2,)
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def pe_stub(T, d_model):
    raise NotImplementedError  # your code here


def _pe(T, d, *, i_step=2, sign=-1, start=0, trig=(torch.sin, torch.cos), to_rad=1.0):
    pos = torch.arange(start, start + T, dtype=torch.float64)[:, None]
    i = torch.arange(d // 2, dtype=torch.float64)
    angles = pos * 10000.0 ** (sign * i_step * i / d) * to_rad
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = trig[0](angles), trig[1](angles)
    return pe


def pe_div_term_per_column(T, d):
    j = torch.arange(d, dtype=torch.float64)
    angle = torch.arange(T)[:, None] / 10000 ** (j / d)  # a div_term for every column
    return torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))


def pe_two_j(T, d):
    pe = np.zeros((T, d))
    for pos in range(T):
        for j in range(d):  # j runs over columns, but the formula's i runs over pairs
            f = math.sin if j % 2 == 0 else math.cos
            pe[pos, j] = f(pos / 10000 ** (2 * j / d))
    return pe


def pe_integer_division(T, d):
    pe = torch.zeros(T, d)
    i = torch.arange(0, d, 2)
    angle = torch.arange(T)[:, None] / 10000 ** (i // d)  # 2i // d is 0 for every pair
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


def pe_concatenated(T, d):
    angles = torch.arange(T)[:, None] * 10000 ** (-torch.arange(0, d, 2) / d)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def pe_outer_wrong_way(T, d):
    omega = 10000 ** (-torch.arange(0, d, 2) / d)  # (d/2,)
    angles = torch.outer(omega, torch.arange(T).double())  # (d/2, T)
    return torch.stack([angles.sin(), angles.cos()], dim=1).reshape(d, T)  # (d, T)


TABLE_SLIPS = {
    "sin and cos swapped": lambda T, d: _pe(T, d, trig=(torch.cos, torch.sin)),
    "exponent i/d": lambda T, d: _pe(T, d, i_step=1),
    "exponent from the column index": pe_div_term_per_column,
    "exponent 2j/d per column": pe_two_j,
    "exponent 4i/d": lambda T, d: _pe_over_pairs(T, d),
    "positive exponent": lambda T, d: _pe(T, d, sign=+1),
    "no exponent": lambda T, d: _pe_no_exponent(T, d),
    "frequency 1": pe_integer_division,
    "degrees": lambda T, d: _pe(T, d, to_rad=math.pi / 180),
    "positions from 1": lambda T, d: _pe(T, d, start=1),
    "concatenated halves": pe_concatenated,
    "only sines": lambda T, d: _pe(T, d, trig=(torch.sin, torch.sin)),
    "transposed": pe_outer_wrong_way,
    "batch axis": lambda T, d: pe_log_space(T, d).unsqueeze(0),
    "tutorial shape": lambda T, d: pe_log_space(T, d).unsqueeze(1),
    "angles only": lambda T, d: _pe(T, d, trig=(lambda a: a, lambda a: a)),
    "outer product": lambda T, d: _pe_flat_angles(T, d),  # raises: (T,) * (d/2,) does not broadcast
    # not listed as mistakes: found by the properties
    "cosines wrong": lambda T, d: _pe(T, d, trig=(torch.sin, lambda a: torch.cos(1.5 * a))),
    "sines wrong": lambda T, d: _pe(T, d, trig=(lambda a: torch.sin(a + 0.1), torch.cos)),
    "wrong columns": lambda T, d: _pe(T, d).flip(-1),
    "outside [-1, 1]": lambda T, d: 2 * _pe(T, d, trig=(torch.sin, lambda a: torch.cos(a + 1))),
}


def _pe_over_pairs(T, d):
    half = d // 2
    angle = torch.arange(T)[:, None] / 10000 ** (2 * torch.arange(half) / half)  # divided by d/2
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, d)


def _pe_flat_angles(T, d):
    pe = torch.zeros(T, d)
    angle = torch.arange(T) / 10000 ** (torch.arange(0, d, 2) / d)  # forgot unsqueeze(1)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


def _pe_no_exponent(T, d):
    pe = torch.zeros(T, d)
    pos = torch.arange(T)[:, None]
    pe[:, 0::2] = torch.sin(pos / 10000)  # the same angle broadcast to every pair
    pe[:, 1::2] = torch.cos(pos / 10000)
    return pe


@pytest.mark.parametrize("fn", [pe_loops, pe_log_space, kqvlib.sinusoidal_encoding], ids=["loops", "log", "kqvlib"])
@pytest.mark.parametrize("seed", range(5))
def test_table_accepts_right_answers(fn, seed):
    r = ch07.check_sinusoidal_encoding(fn, quiet=True, seed=seed)
    assert r.passed and r.key == "ok", r.message


def test_table_stub(capsys):
    r = ch07.check_sinusoidal_encoding(pe_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(TABLE_SLIPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_table_slips_get_their_own_hint(key, seed):
    r = ch07.check_sinusoidal_encoding(TABLE_SLIPS[key], quiet=True, seed=seed)
    assert not r.passed and r.key == key, r.message


def test_table_hints_differ():
    msgs = {ch07.check_sinusoidal_encoding(f, quiet=True, seed=3).message for f in TABLE_SLIPS.values()}
    assert len(msgs) == len(TABLE_SLIPS)


# --- rotate(x, positions) -------------------------------------------------------------------------------------

def rotate_ok(x, positions):
    d = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)  # (d/2,)
    angle = positions[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos(), angle.sin()
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each
    y_even = x_even * cos - x_odd * sin
    y_odd = x_even * sin + x_odd * cos
    return torch.stack([y_even, y_odd], dim=-1).flatten(-2)  # (..., T, d/2, 2) → (..., T, d)


def rotate_complex(x, positions):
    """The paper's complex form: pairs as complex numbers times e^(i·p·θ)."""
    d = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.contiguous().unflatten(-1, (-1, 2)))  # (..., T, d/2)
    turn = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64), positions[:, None] * theta)
    return torch.view_as_real(z * turn).flatten(-2)


def rotate_float32(x, positions):
    """Everything in float32 (the default dtype): must still pass."""
    d = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, d, 2) / d)  # float32
    angle = positions[:, None] * theta  # (T, d/2) float32
    e, o = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack([e * angle.cos() - o * angle.sin(), e * angle.sin() + o * angle.cos()], -1).flatten(-2)


def rotate_stub(x, positions):
    raise NotImplementedError  # your code here


def _rot(x, positions, *, angle=lambda a: a, d=None, power=2, pos=None, sign_odd=+1, trig=(torch.cos, torch.sin)):
    d_used = x.shape[-1] if d is None else d
    p = positions if pos is None else pos
    theta = 10000.0 ** (-power * torch.arange(x.shape[-1] // 2, dtype=torch.float64) / d_used)
    a = angle(p[:, None].double() * theta)
    c, s = trig[0](a), trig[1](a)
    e, o = x[..., 0::2], x[..., 1::2]
    return torch.stack([e * c - o * s, sign_odd * (e * s) + o * c], dim=-1).flatten(-2)


def rotate_halves(x, positions):
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    a = positions[:, None] * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([x1 * a.cos() - x2 * a.sin(), x2 * a.cos() + x1 * a.sin()], dim=-1)


def rotate_not_interleaved(x, positions):
    d = x.shape[-1]
    a = positions[:, None] * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    e, o = x[..., ::2], x[..., 1::2]
    return torch.cat([e * a.cos() - o * a.sin(), e * a.sin() + o * a.cos()], dim=-1)


def rotate_twice(x, positions):
    return rotate_ok(rotate_ok(x, positions), positions)


def rotate_no_swap(x, positions):
    d = x.shape[-1]
    a = positions[:, None] * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos = a.cos().repeat_interleave(2, dim=-1)  # (T, d)
    sin = a.sin().repeat_interleave(2, dim=-1)
    sin[:, 0::2] *= -1
    return x * cos + x * sin


def rotate_2d_only(x, positions):  # indexes features as axis 1: right only when x is (T, d)
    d = x.shape[1]
    a = positions[:, None] * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    e, o = x[:, 0::2], x[:, 1::2]
    return torch.stack([e * a.cos() - o * a.sin(), e * a.sin() + o * a.cos()], dim=-1).flatten(-2)


def rotate_numpy_degrees(x, positions):
    x = x.numpy()
    d = x.shape[-1]
    a = np.deg2rad(positions.numpy()[:, None] / 10000 ** (np.arange(0, d, 2) / d))
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * np.cos(a) - x[..., 1::2] * np.sin(a)
    out[..., 1::2] = x[..., 0::2] * np.sin(a) + x[..., 1::2] * np.cos(a)
    return out


def _arange(x, start):
    return torch.arange(start, start + x.shape[-2])


ROTATE_SLIPS = {
    "unchanged": lambda x, p: x,
    "halves": rotate_halves,
    "not interleaved back": rotate_not_interleaved,
    "negative angle": lambda x, p: _rot(x, -p),
    "angle doubled": rotate_twice,
    "ignored positions": lambda x, p: rotate_ok(x, torch.arange(x.shape[-2])),
    "positions from 1": lambda x, p: _rot(x, p, pos=_arange(x, 1)),
    "positions + 1": lambda x, p: rotate_ok(x, p + 1),
    "sin and cos swapped": lambda x, p: _rot(x, p, trig=(torch.sin, torch.cos)),
    "not a rotation": lambda x, p: _rot(x, p, sign_odd=-1),
    "partner not swapped": rotate_no_swap,
    "degrees": rotate_numpy_degrees,
    "exponent i/d": lambda x, p: _rot(x, p, power=1),
    "exponent 4i/d": lambda x, p: _rot(x, p, power=4),
    "positive exponent": lambda x, p: _rot(x, p, power=-2),
    "no exponent": lambda x, p: _rot_no_exponent(x, p),
    "frequency 1": lambda x, p: _rot(x, p, power=0),
    "T for d": lambda x, p: _rot(x, p, d=x.shape[-2]),
    "extra axes": rotate_2d_only,
    "outer product": lambda x, p: _rot_flat_angles(x, p),  # raises: (T,) * (d/2,) does not broadcast
    # not listed as mistakes: found by the properties
    "wrong angles": lambda x, p: _rot(x, p, angle=lambda a: a + 0.3),
}


def _rot_flat_angles(x, positions):
    d = x.shape[-1]
    a = positions * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # forgot [:, None]
    e, o = x[..., 0::2], x[..., 1::2]
    return torch.stack([e * a.cos() - o * a.sin(), e * a.sin() + o * a.cos()], dim=-1).flatten(-2)


def _rot_no_exponent(x, positions):
    a = positions[:, None].double() / 10000  # (T, 1): one angle for every pair
    e, o = x[..., 0::2], x[..., 1::2]
    return torch.stack([e * a.cos() - o * a.sin(), e * a.sin() + o * a.cos()], dim=-1).flatten(-2)


@pytest.mark.parametrize("fn", [rotate_ok, rotate_complex, rotate_float32], ids=["real", "complex", "float32"])
@pytest.mark.parametrize("seed", range(5))
def test_rotate_accepts_right_answers(fn, seed):
    r = ch07.check_rotate(fn, quiet=True, seed=seed)
    assert r.passed and r.key == "ok", r.message


def test_rotate_stub(capsys):
    r = ch07.check_rotate(rotate_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(ROTATE_SLIPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_rotate_slips_get_their_own_hint(key, seed):
    r = ch07.check_rotate(ROTATE_SLIPS[key], quiet=True, seed=seed)
    assert not r.passed and r.key == key, r.message


def test_rotate_hints_differ():
    msgs = {ch07.check_rotate(f, quiet=True, seed=3).message for f in ROTATE_SLIPS.values()}
    assert len(msgs) == len(ROTATE_SLIPS)


def test_rotate_halves_is_kqvlibs_layout():
    """The 'halves' slip is exactly what kqvlib's RotaryEmbedding computes, so the hint names it."""
    rope = kqvlib.RotaryEmbedding(10, 64).double()

    def via_kqvlib(x, positions):
        return rope(x[None, None], offset=int(positions[0]))[0, 0]

    assert ch07.check_rotate(via_kqvlib, quiet=True).key == "halves"


# --- both: never raise, one line, the hint before the raw error -----------------------------------------------

@pytest.mark.parametrize("checker, args", [(ch07.check_sinusoidal_encoding, 2), (ch07.check_rotate, 2)])
def test_a_raising_function_does_not_crash(checker, args, capsys):
    def broken(*a):
        raise KeyError("oops")

    r = checker(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert not r.passed and r.key == "exception" and len(out) == 1
    assert out[0].startswith("✗") and out[0].endswith("(your code raised KeyError: 'oops')")  # hint first


def test_the_hint_comes_before_the_raw_error():
    r = ch07.check_rotate(ROTATE_SLIPS["outer product"], quiet=True)
    assert r.message.index("positions[:, None]") < r.message.index("RuntimeError")


@pytest.mark.parametrize("checker", [ch07.check_sinusoidal_encoding, ch07.check_rotate])
def test_nonsense_and_none(checker):
    assert checker(lambda *a: "nonsense", quiet=True).passed is False
    assert checker(lambda *a: None, quiet=True).key == "returned None"


# --- slips nobody listed: the rates are fitted ------------------------------------------------------------------

def _table_base(T, d, base):
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    ang = pos / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(1)


def _rot_base(x, positions, base, shift=0):
    d = x.shape[-1]
    ang = (positions[:, None].double() + shift) * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], dim=-1).flatten(-2)


def test_a_wrong_base_is_fitted():
    r = ch07.check_sinusoidal_encoding(lambda T, d: _table_base(T, d, 1000.0), seed=0, quiet=True)
    assert r.key == "wrong base" and "1000" in r.message, r.message
    r = ch07.check_rotate(lambda x, p: _rot_base(x, p, 500.0), seed=0, quiet=True)
    assert r.key == "wrong base" and "500" in r.message, r.message


def test_shifted_positions_are_measured():
    r = ch07.check_rotate(lambda x, p: _rot_base(x, p, 10000.0, shift=-2), seed=0, quiet=True)
    assert r.key == "positions shifted" and "-2" in r.message, r.message

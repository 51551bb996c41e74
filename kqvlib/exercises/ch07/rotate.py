"""Chapter 7 checker for RoPE with interleaved pairs (``check_rotate``). The chapter's docstring is in
:mod:`kqvlib.exercises.ch07`.
"""
from __future__ import annotations

import math

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.ch07.table import BASE, F64, _explain, _freqs, _interleave, _rates_hint
from kqvlib.exercises.diagnose import checked as check


# --- rotate(x, positions): RoPE with interleaved pairs ----------------------------------------------------------

def _turn(x, angles, neg_sin=True):
    """Rotate the interleaved pairs of x (..., T, d) by angles (T, d/2)."""
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each
    cos, sin = torch.cos(angles), torch.sin(angles)
    return _interleave(a * cos - b * sin, a * sin + b * cos if neg_sin else b * cos - a * sin)


def _angles(x, positions, power=lambda i, d: 2 * i / d, d=None):
    freqs = _freqs(x.shape[-1] if d is None else d, power, n=x.shape[-1] // 2)  # (d/2,)
    return positions.to(F64)[:, None] * freqs  # (T, d/2)


def _rotate(x, positions):
    return _turn(x, _angles(x, positions))


def _halves(x, positions):  # kqvlib's layout: feature i pairs with i + d/2
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = torch.cos(_angles(x, positions)), torch.sin(_angles(x, positions))
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _not_interleaved_back(x, positions):
    y = _rotate(x, positions)
    return torch.cat([y[..., 0::2], y[..., 1::2]], dim=-1)


def _no_swap(x, positions):  # x·cos + x·(−sin, sin): the partner of each feature was never swapped in
    ang = _angles(x, positions)
    cos, sin = torch.cos(ang).repeat_interleave(2, -1), torch.sin(ang).repeat_interleave(2, -1)
    sign = torch.tensor([-1.0, 1.0], dtype=F64).repeat(x.shape[-1] // 2)
    return x * cos + x * sin * sign


def _arange(x, start=0):
    T = x.shape[-2]
    return torch.arange(start, start + T)


_ROTATE_SLIPS = [
    Mistake("unchanged", lambda x, p: x.clone(),
            "your output equals x: nothing was rotated. Each pair (x_2i, x_2i+1) at position p turns by p·θ_i."),
    Mistake("halves", _halves,
            "you paired feature i with feature i + d/2 (the 'halves' layout of kqvlib's RotaryEmbedding). This "
            "exercise asks for the paper's interleaved pairs: (x[..., 0::2], x[..., 1::2]), and the result "
            "interleaved the same way."),
    Mistake("not interleaved back", _not_interleaved_back,
            "your rotated numbers are right but in the wrong places: you returned the even features' results "
            "first and the odd ones' after. Put them back interleaved: torch.stack([y_even, y_odd], "
            "dim=-1).flatten(-2)."),
    Mistake("negative angle", lambda x, p: _turn(x, -_angles(x, p)),
            "you rotated the wrong way (by −p·θ_i): y_2i = x_2i·cos − x_2i+1·sin and y_2i+1 = x_2i·sin + "
            "x_2i+1·cos. The scores still depend only on distances, but the angles are the mirror image."),
    Mistake("angle doubled", lambda x, p: _turn(x, 2 * _angles(x, p)),
            "your angles are 2·p·θ_i: the position was applied twice (rotating a vector that was already "
            "rotated, or the angle added to itself). Rotate once, by p·θ_i."),
    Mistake("ignored positions", lambda x, p: _rotate(x, _arange(x)),
            "you rotated by 0, 1, …, T − 1 and ignored the positions argument. Use the positions given: here "
            "they do not start at 0 (a later chunk of a sequence, as with a KV cache)."),
    Mistake("positions from 1", lambda x, p: _rotate(x, _arange(x, 1)),
            "you rotated by 1, 2, …, T and ignored the positions argument. Use the positions given."),
    Mistake("positions + 1", lambda x, p: _rotate(x, p + 1),
            "every angle is one position too far: rotate by p·θ_i with p = positions[t] itself, not p + 1."),
    Mistake("sin and cos swapped", lambda x, p: _turn(x, math.pi / 2 - _angles(x, p)),
            "cos and sin are swapped: position 0 must leave x unchanged (cos 0 = 1, sin 0 = 0). y_2i = "
            "x_2i·cos(pθ_i) − x_2i+1·sin(pθ_i)."),
    Mistake("not a rotation", lambda x, p: _turn(x, _angles(x, p), neg_sin=False),
            "both outputs subtract the sine term, so the length of each pair changes: that is not a rotation. "
            "y_2i+1 = x_2i·sin + x_2i+1·cos (a plus sign)."),
    Mistake("partner not swapped", _no_swap,
            "each feature was multiplied by sin of its own angle: the sine term must take the OTHER feature of "
            "the pair, y_2i = x_2i·cos − x_2i+1·sin, y_2i+1 = x_2i+1·cos + x_2i·sin."),
    Mistake("degrees", lambda x, p: _turn(x, _angles(x, p) * math.pi / 180),
            "your angles are 180/π times too small: you treated p·θ_i as degrees. torch.cos and torch.sin "
            "take radians: use p·θ_i directly."),
    Mistake("exponent i/d", lambda x, p: _turn(x, _angles(x, p, lambda i, d: i / d)),
            "the frequencies fall too slowly: you used the exponent i/d. The pair i has θ_i = 10000^(−2i/d)."),
    Mistake("exponent 4i/d", lambda x, p: _turn(x, _angles(x, p, lambda i, d: 4 * i / d)),
            "the frequencies fall twice too fast: θ_i = 10000^(−2i/d) with d the full width; dividing by d/2, "
            "the number of pairs, gives 4i/d."),
    Mistake("positive exponent", lambda x, p: _turn(x, _angles(x, p, lambda i, d: -2 * i / d)),
            "your frequencies grow with i: the exponent's sign is wrong. θ_i = 10000^(−2i/d) = 1/10000^(2i/d)."),
    Mistake("no exponent", lambda x, p: _turn(x, _angles(x, p, lambda i, d: torch.ones_like(i))),
            "every pair turns at the same rate 1/10000: you divided the position by 10000 itself. Each pair "
            "i has its own θ_i = 10000^(−2i/d)."),
    Mistake("frequency 1", lambda x, p: _turn(x, _angles(x, p, lambda i, d: torch.zeros_like(i))),
            "every pair turns at the rate 1, as if the exponent were 0. An integer division (2 * i // d) "
            "gives that; use 2 * i / d."),
    Mistake("T for d", lambda x, p: _turn(x, _angles(x, p, d=x.shape[-2])),
            "your frequencies use T, the number of positions (x.shape[-2]), where d = x.shape[-1], the "
            "number of features, belongs: θ_i = 10000^(−2i/d)."),
]


def _turned_by(x, y):
    """The angle (..., T, d/2) that turns each pair of x into the same pair of y."""
    a, b, ya, yb = x[..., 0::2], x[..., 1::2], y[..., 0::2], y[..., 1::2]
    return torch.atan2(a * yb - b * ya, a * ya + b * yb)


def _rotate_properties() -> list[Property]:
    def norms(args, got, exp):
        if got.shape != exp.shape:
            return None
        pair = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)  # (..., T, d/2) lengths of the pairs
        if close(pair(got), pair(args[0])):  # a rotation: read its angles, position by position
            ang = _turned_by(args[0], got).reshape(-1, *got.shape[-2:-1], got.shape[-1] // 2)[0]  # (T, d/2)
            step = torch.remainder(ang[1:] - ang[:-1] + math.pi, 2 * math.pi) - math.pi  # (T-1, d/2) per position
            if close(step, step[:1].expand_as(step), atol=1e-6):
                found = _rates_hint(step[0], got.shape[-1], "angles per position")
                if found is not None:
                    return found
                p0 = args[1][0].item()
                off = (torch.remainder(ang[0] - p0 * step[0] + math.pi, 2 * math.pi) - math.pi) / step[0]
                if close(off, off[:1].expand_as(off), atol=1e-6) and abs(float(off[0])) > 1e-6:
                    return "positions shifted", (f"your angles are (p + {float(off[0]):.3g})·θ_i: the positions "
                                                 f"are shifted. Rotate by positions[t]·θ_i, as given.")
        if not close(pair(got), pair(args[0])):
            return "a rotation keeps the length of every pair (x_2i, x_2i+1), and yours changes it. " \
                   "y_2i = x_2i·cos − x_2i+1·sin, y_2i+1 = x_2i·sin + x_2i+1·cos."
        return ("wrong angles", "each pair keeps its length, as it should, but is turned by the wrong angle: "
                "position p turns the pair i by p·θ_i, θ_i = 10000^(−2i/d).")

    return [Property("not a rotation", norms)]


def _x_and_positions(*lead, T, d):
    def make(g):
        x = torch.randn(*lead, T, d, generator=g, dtype=F64)
        start = int(torch.randint(3, 40, (1,), generator=g))  # a later chunk of a sequence
        return x, torch.arange(start, start + T)
    return make


_AXES_HINT = ("right on x of shape (T, d), wrong with leading axes (B, H, T, d). Index features from the end "
              "(x[..., 0::2], x[..., 1::2]) and let the (T, d/2) angles broadcast over the leading axes.")


def check_rotate(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x: (..., T, d), positions: (T,)) → (..., T, d): RoPE with interleaved pairs (2i, 2i+1)."""
    return check("rotate", fn, _rotate,
                 [Trial(_x_and_positions(T=7, d=10)),
                  Trial(_x_and_positions(2, 3, T=5, d=8), "extra axes", _AXES_HINT)],
                 _ROTATE_SLIPS, properties=_rotate_properties(), explain=_explain, seed=seed, quiet=quiet)

"""Checkers for chapter 7, *Where is each token? Positions*.

    check_sinusoidal_encoding(fn)   fn(T, d_model) → (T, d_model): PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i)
    check_rotate(fn)                fn(x, positions) → x rotated by RoPE, the paper's *interleaved* pairs

with ω_i = θ_i = 10000^(−2i/d) for the pair i = 0 … d/2 − 1. ``rotate`` takes x (..., T, d) and positions
(T,) and turns each pair of features (x_2i, x_2i+1) at position p by the angle p·θ_i (Su et al. 2021):

    y_2i = x_2i·cos(pθ_i) − x_2i+1·sin(pθ_i),    y_2i+1 = x_2i·sin(pθ_i) + x_2i+1·cos(pθ_i).

Sizes differ everywhere (T ≠ d, positions do not start at 0), so a transpose, an ignored argument or an
off-by-one shows. Each Mistake below is one slip a learner is likely to make, with its own hint.
"""
from __future__ import annotations

import math

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close, permuted
from kqvlib.exercises.diagnose import checked as check

__all__ = ["check_sinusoidal_encoding", "check_rotate"]

BASE = 10000.0
F64 = torch.float64


def _freqs(d: int, power=lambda i, d: 2 * i / d, n: int | None = None) -> torch.Tensor:
    """(d/2,) angular frequencies ω_i = BASE^(−power(i, d)) (n of them if given); the right power is 2i/d."""
    return BASE ** (-power(torch.arange(d // 2 if n is None else n, dtype=F64), d))


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """(..., d/2) and (..., d/2) → (..., d) with even in columns 0, 2, 4, … and odd in 1, 3, 5, …"""
    return torch.stack([even, odd], dim=-1).flatten(-2)


def _explain(e: BaseException):
    """A broadcasting error between T positions and d/2 frequencies: the outer product is missing."""
    if isinstance(e, RuntimeError) and "must match the size" in str(e):
        return ("outer product", "the positions (T,) and the frequencies (d/2,) did not broadcast: the angles "
                "are a (T, d/2) table, positions[:, None] * freqs[None, :] (or torch.outer).")
    return None


# --- sinusoidal_encoding(T, d_model) → (T, d_model) ------------------------------------------------------------

def _table(T, d, start=0, power=lambda i, d: 2 * i / d, scale=1.0, sin=torch.sin, cos=torch.cos):
    angles = torch.arange(start, start + T, dtype=F64)[:, None] * _freqs(d, power) * scale  # (T, d/2)
    return _interleave(sin(angles), cos(angles))  # (T, d)


def _sinusoidal(T, d):
    return _table(T, d)


def _per_column(T, d, factor):  # column j uses the exponent factor·j/d: the cosines' exponent is off
    j = torch.arange(d, dtype=F64)
    angles = torch.arange(T, dtype=F64)[:, None] * BASE ** (-factor * j / d)  # (T, d)
    return torch.where(j % 2 == 0, torch.sin(angles), torch.cos(angles))


_TABLE_SLIPS = [
    Mistake("sin and cos swapped", lambda T, d: _table(T, d, sin=torch.cos, cos=torch.sin),
            "sine and cosine are swapped: row 0 should be [0, 1, 0, 1, …]. Even columns (0, 2, 4, …) hold "
            "sin(p·ω_i), odd columns cos(p·ω_i)."),
    Mistake("exponent i/d", lambda T, d: _table(T, d, power=lambda i, d: i / d),
            "the frequencies fall too slowly: you used the exponent i/d. The pair i (columns 2i and 2i+1) has "
            "ω_i = 10000^(−2i/d_model), so the slowest pair has wavelength close to 2π·10000."),
    Mistake("exponent from the column index", lambda T, d: _per_column(T, d, 1.0),
            "the sine columns are right but the cosines are not: column 2i+1 must use the SAME frequency as "
            "column 2i, ω_i = 10000^(−2i/d_model). Compute the exponent from the pair index i, not from the "
            "column index (e.g. torch.arange(0, d_model, 2) / d_model)."),
    Mistake("exponent 2j/d per column", lambda T, d: _per_column(T, d, 2.0),
            "you used 2j/d_model with j the column index (0 … d_model − 1), so the frequencies fall twice "
            "too fast. The exponent is 2i/d_model with i the PAIR index: 2i is the even column's own index."),
    Mistake("exponent 4i/d", lambda T, d: _table(T, d, power=lambda i, d: 4 * i / d),
            "the frequencies fall twice too fast: the exponent is 2i/d_model with d_model the full width; "
            "dividing by d_model/2, the number of pairs, gives 4i/d_model."),
    Mistake("positive exponent", lambda T, d: _table(T, d, power=lambda i, d: -2 * i / d),
            "your frequencies grow with i: the exponent has the wrong sign. ω_i = 10000^(−2i/d_model) = "
            "1 / 10000^(2i/d_model): divide the position by 10000^(2i/d_model)."),
    Mistake("no exponent", lambda T, d: _table(T, d, power=lambda i, d: torch.ones_like(i)),
            "every pair has the same frequency 1/10000: you divided the position by 10000 itself. Divide by "
            "10000^(2i/d_model), a different power for each pair i."),
    Mistake("frequency 1", lambda T, d: _table(T, d, power=lambda i, d: torch.zeros_like(i)),
            "every pair has frequency 1, as if the exponent were 0. An integer division (2 * i // d_model) "
            "gives that; use true division: 2 * i / d_model."),
    Mistake("degrees", lambda T, d: _table(T, d, scale=math.pi / 180),
            "your angles are 180/π times too small: you treated p·ω_i as degrees. torch.sin takes radians; "
            "apply it to p·ω_i directly, with no conversion."),
    Mistake("positions from 1", lambda T, d: _table(T, d, start=1),
            "your rows are shifted by one: the first row is position 0, so it is [0, 1, 0, 1, …]. Use "
            "torch.arange(T), not torch.arange(1, T + 1)."),
    Mistake("concatenated halves", lambda T, d: torch.cat(_table(T, d).unflatten(-1, (-1, 2)).unbind(-1), -1),
            "you put all the sines first and all the cosines after (the layout of some libraries). This "
            "exercise interleaves them: column 2i is sin(p·ω_i), column 2i+1 is cos(p·ω_i) (pe[:, 0::2] and "
            "pe[:, 1::2])."),
    Mistake("only sines", lambda T, d: _table(T, d, cos=torch.sin),
            "the odd columns hold sines too: column 2i+1 is cos(p·ω_i)."),
    Mistake("transposed", lambda T, d: _sinusoidal(T, d).T,
            "your table is (d_model, T): one column per position. Return (T, d_model), one row per position "
            "(a .T too many, or the arguments of an outer product the wrong way round)."),
    Mistake("batch axis", lambda T, d: _sinusoidal(T, d)[None],
            "your table has an extra leading axis, (1, T, d_model). Return (T, d_model); the caller "
            "broadcasts it over the batch."),
    Mistake("tutorial shape", lambda T, d: _sinusoidal(T, d)[:, None],
            "your table is (T, 1, d_model), the layout of a sequence-first model. Return (T, d_model)."),
    Mistake("angles only", lambda T, d: _table(T, d, sin=lambda a: a, cos=lambda a: a),
            "you returned the angles p·ω_i themselves: take sin of them in the even columns and cos in the "
            "odd ones."),
]


def _table_properties() -> list[Property]:
    def halves(args, got, exp):
        if got.shape != exp.shape:
            return None
        if close(got[:, 0::2], exp[:, 0::2]):
            return ("cosines wrong", "the sine columns (0, 2, 4, …) are right, the cosine columns are not: "
                    "column 2i+1 is cos(p·ω_i), with the same ω_i as column 2i.")
        if close(got[:, 1::2], exp[:, 1::2]):
            return ("sines wrong", "the cosine columns (1, 3, 5, …) are right, the sine columns are not: "
                    "column 2i is sin(p·ω_i), with the same ω_i as column 2i+1.")
        return None

    def order(args, got, exp):
        if permuted(got, exp):
            return "each row holds the right numbers in the wrong columns: column 2i is sin(p·ω_i), 2i+1 cos(p·ω_i)."
        if got.shape == exp.shape and close(got.flip(-1), exp):
            return "your columns come in reverse order: column 0 is sin(p·ω_0), the fastest pair, ω_0 = 1."
        return None

    def outside(args, got, exp):
        if bool((got.abs() > 1 + 1e-9).any()):
            return "some entries lie outside [−1, 1], which sin and cos never leave: apply sin and cos to the angles."
        return None

    return [Property("cosines wrong", halves), Property("wrong columns", order), Property("outside [-1, 1]", outside)]


def _table_inputs(g: torch.Generator):  # T in 9 … 20, d_model in 6, 8, …, 16, never equal
    T = int(torch.randint(9, 21, (1,), generator=g))
    d = 2 * int(torch.randint(3, 9, (1,), generator=g))
    return (T + 1 if T == d else T, d)


def check_sinusoidal_encoding(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(T, d_model) → (T, d_model) table: PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = 10000^(−2i/d_model)."""
    return check("sinusoidal_encoding", fn, _sinusoidal, [Trial(_table_inputs)], _TABLE_SLIPS,
                 properties=_table_properties(), explain=_explain, seed=seed, quiet=quiet)


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


def _rotate_properties() -> list[Property]:
    def norms(args, got, exp):
        if got.shape != exp.shape:
            return None
        pair = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)  # (..., T, d/2) lengths of the pairs
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

"""Chapter 7 checker for the sinusoidal table (``check_sinusoidal_encoding``), with the sizes, frequencies and
error explanations that :mod:`kqvlib.exercises.ch07.rotate` shares. The chapter's docstring is in
:mod:`kqvlib.exercises.ch07`.
"""
from __future__ import annotations

import math

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close, permuted
from kqvlib.exercises.diagnose import checked as check


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


def _rates_hint(rates: torch.Tensor, d: int, what: str) -> tuple[str, str] | None:
    """Fit the learner's per-pair rates (d/2,) as r_i = A · b^(−2i/d): name the base b, and the factor A."""
    if rates.numel() < 2 or not bool((rates > 1e-12).all()):
        return None
    i = torch.arange(rates.numel(), dtype=F64)
    slope, icpt = torch.linalg.lstsq(torch.stack([i, torch.ones_like(i)], 1), rates.log()[:, None]).solution[:, 0]
    if not close(rates.log(), icpt + slope * i, atol=1e-6):
        return "rates not geometric", (f"your {what} do not fall off geometrically with the pair index i "
                                       f"({', '.join(f'{float(r):.3g}' for r in rates[:4])}, …): ω_i = "
                                       f"10000^(−2i/d_model), one factor 10000^(−2/d) from each pair to the next.")
    base, factor = math.exp(-float(slope) * d / 2), math.exp(float(icpt))
    if abs(factor - 1) > 1e-4:
        return "angles scaled", (f"your {what} are the right kind of geometric series but all {factor:.4g} times "
                                 f"too {'large' if factor > 1 else 'small'} (pair 0 must turn by exactly 1 per "
                                 f"position): a stray factor on the angles.")
    if abs(base / math.exp(math.log10(BASE)) - 1) < 1e-4:
        return "log10", (f"your frequencies fall off as {base:.4g}^(−2i/d) = e^(−2i·4/d): you wrote log10(10000) = 4 "
                         f"where the natural log belongs, math.log(10000) ≈ 9.21 (exp and log go together).")
    if abs(base / BASE - 1) > 1e-4:
        return "wrong base", (f"your {what} fall off as b^(−2i/d) with b ≈ {base:.4g}, not 10000: check the base "
                              f"(10000) and the exponent (2i/d_model, with d_model the full width).")
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


def _table_rates() -> Property:
    def test(args, got, exp):
        T, d = args
        if got.shape != exp.shape or T < 2 or not close(got[:, 0::2] ** 2 + got[:, 1::2] ** 2, torch.ones(T, d // 2)):
            return None
        found = _rates_hint(torch.atan2(got[1, 0::2], got[1, 1::2]), d, "frequencies")
        if found and found[0] == "angles scaled" and f"{T / (T - 1):.4g}" in found[1]:
            return "positions spaced", (f"your positions are {T / (T - 1):.4g} apart, T/(T − 1): linspace(0, T, T) "
                                        f"spreads T points over [0, T]. Positions are 0, 1, …, T − 1: torch.arange(T).")
        return found
    return Property("rates", test)


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

    return [Property("cosines wrong", halves), Property("wrong columns", order),
            Property("outside [-1, 1]", outside), _table_rates()]


def _table_inputs(g: torch.Generator):  # T in 9 … 20, d_model in 6, 8, …, 16, never equal
    T = int(torch.randint(9, 21, (1,), generator=g))
    d = 2 * int(torch.randint(3, 9, (1,), generator=g))
    return (T + 1 if T == d else T, d)


def check_sinusoidal_encoding(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(T, d_model) → (T, d_model) table: PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = 10000^(−2i/d_model)."""
    return check("sinusoidal_encoding", fn, _sinusoidal, [Trial(_table_inputs)], _TABLE_SLIPS,
                 properties=_table_properties(), explain=_explain, seed=seed, quiet=quiet)

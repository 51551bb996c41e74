"""Chapter 13's checker of one tile of FlashAttention's backward pass."""
from __future__ import annotations

import math

import torch

from kqvlib.checks import Mistake, Property, Trial, check, close, constant_factor
from kqvlib.exercises.ch13.stream import ReturnedError, returned_values
from kqvlib.exercises.common import explain_error

F64 = torch.float64


# --- one tile of FlashAttention's backward --------------------------------------------------------------------

def _tile(q, k, v, d_out, lse, delta, *, scale=None, p_local=False, delta_sign=-1.0, dq_scale=True,
          dk_scale=True, exp_first=False, no_p=False):
    c = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.mT * c  # (..., bq, bk)
    p = torch.softmax(s, dim=-1) if p_local else torch.exp(s - lse)  # (..., bq, bk)
    if exp_first:
        p = torch.exp(s) - lse
    dv = p.mT @ d_out  # (..., bk, d_v)
    ds = (1.0 if no_p else p) * (d_out @ v.mT + delta_sign * delta)  # (..., bq, bk)
    dq = ds @ k * (1 / math.sqrt(q.shape[-1]) if dq_scale else 1.0)  # (..., bq, d)
    dk = ds.mT @ q * (1 / math.sqrt(q.shape[-1]) if dk_scale else 1.0)  # (..., bk, d)
    return dq, dk, dv


def _flat(grads):  # (dq, dk, dv) → one flat tensor, so that the checker's properties can read it
    return torch.cat([torch.as_tensor(t, dtype=F64).flatten() for t in grads])


def _tile_reference(q, k, v, d_out, lse, delta):
    return _flat(_tile(q, k, v, d_out, lse, delta))


def _as_triple(fn):
    def run(q, k, v, d_out, lse, delta):
        r = fn(q, k, v, d_out, lse, delta)
        if r is None:
            return None
        r = returned_values(r, 3, "not a triple", "the three gradients (dq, dk, dv)")
        want = [tuple(q.shape), tuple(k.shape), tuple(v.shape)]
        shapes = [tuple(torch.as_tensor(t).shape) for t in r]
        if shapes != want and sorted(shapes) == sorted(want):
            raise ReturnedError("order", f"your three gradients are in the wrong order (shapes {shapes}): return "
                                         f"(dq, dk, dv), dq shaped like q {want[0]}, dk like k {want[1]}, dv "
                                         f"like v {want[2]}.")
        for name, got, w in zip(("dq", "dk", "dv"), shapes, want):
            if got != w:
                raise ReturnedError(f"{name} shape", f"your {name} has shape {got}, expected {w} (like "
                                                     f"{name[1]}). Check which side of the product is transposed.")
        return _flat(r)
    return run


_TILE_SLIPS = [
    ("weights renormalised in the tile", lambda *a: _tile(*a, p_local=True),
     "your P is a softmax within this tile, so its rows sum to 1 over these keys alone. The weights belong to "
     "all the keys: P = exp(s − lse), with the saved log-sum-exp, and no new normalisation."),
    ("delta left out", lambda *a: _tile(*a, delta_sign=0.0),
     "dS = P ∘ (dP − delta): you left out delta. It carries softmax's normalisation (delta = rowsum(dO ∘ O) "
     "= Σ_s P dP)."),
    ("delta added", lambda *a: _tile(*a, delta_sign=1.0),
     "dS = P ∘ (dP − delta): you added delta instead of subtracting it."),
    ("exp before subtracting", lambda *a: _tile(*a, exp_first=True),
     "your P is exp(s) − lse: the subtraction happens inside the exponential, P = exp(s − lse) (mind the "
     "brackets: torch.exp(s - lse))."),
    ("P left out of dS", lambda *a: _tile(*a, no_p=True),
     "dS = P ∘ (dP − delta): you left out the factor P (the softmax's backward multiplies by the weights)."),
    ("scores not scaled", lambda *a: _tile(*a, scale=1.0),
     "the recomputed scores are not scaled: s = q kᵀ / √d, as in the forward pass, or exp(s − lse) is not P."),
]


def _tile_property(args, got, expected):
    """Which of dq, dk, dv is wrong, and how: in the wrong order, off by a constant (√d), or just that one."""
    sizes = [args[i].numel() for i in range(3)]
    got, expected = got.split(sizes), expected.split(sizes)
    names = ("dq", "dk", "dv")
    wrong = [i for i, (g, e) in enumerate(zip(got, expected)) if not close(g, e)]
    d = args[0].shape[-1]
    for i in wrong:
        c = constant_factor(got[i], expected[i])
        if c is not None and abs(c - math.sqrt(d)) < 1e-3 * math.sqrt(d):
            return f"{names[i]} not scaled", (f"your {names[i]} is √d times too large: s = q kᵀ · (1/√d), so "
                                              f"the chain rule multiplies {names[i]} by 1/√d too.")
        if c is not None and abs(c - 1 / math.sqrt(d)) < 1e-3:
            return f"{names[i]} scaled twice", f"your {names[i]} is divided by √d twice."
    hints = {0: "dq = dS K / √d, with dS = P ∘ (dO Vᵀ − delta)", 1: "dk = dSᵀ Q / √d", 2: "dv = Pᵀ dO"}
    if len(wrong) == 1:
        i = wrong[0]
        return f"{names[i]} wrong", f"the other two are right; your {names[i]} is not. Check it: {hints[i]}."
    return None


def _explain_tile(e):
    if isinstance(e, ReturnedError):
        return e.key, e.hint
    if "cannot be multiplied" in str(e) or "must match the size" in str(e):
        return "transpose missing", ("a product's shapes do not fit: P is (bq, bk), dO (bq, d_v), Q (bq, d), "
                                     "K (bk, d), so dV = Pᵀ dO and dK = dSᵀ Q need the transpose (.mT) and "
                                     "dQ = dS K does not.")
    return explain_error(e)


def _tile_inputs(*lead, bq, bk, d, d_v, extra=7):
    """One tile of a larger problem: lse and delta come from all bk + extra keys, so P's rows in this tile
    do not sum to 1."""
    def make(g):
        q = torch.randn(*lead, bq, d, generator=g, dtype=F64)
        k_all = torch.randn(*lead, bk + extra, d, generator=g, dtype=F64)
        v_all = torch.randn(*lead, bk + extra, d_v, generator=g, dtype=F64)
        d_out = torch.randn(*lead, bq, d_v, generator=g, dtype=F64)
        s = q @ k_all.mT / math.sqrt(d)  # (..., bq, S)
        lse = torch.logsumexp(s, dim=-1, keepdim=True)  # (..., bq, 1)
        out = torch.softmax(s, dim=-1) @ v_all  # (..., bq, d_v)
        delta = (d_out * out).sum(dim=-1, keepdim=True)  # (..., bq, 1)
        return q, k_all[..., :bk, :], v_all[..., :bk, :], d_out, lse, delta
    return make


def check_flash_backward_tile(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(q: (..., bq, d), k: (..., bk, d), v: (..., bk, d_v), d_out: (..., bq, d_v), lse: (..., bq, 1),
    delta: (..., bq, 1)) → (dq: (..., bq, d), dk: (..., bk, d), dv: (..., bk, d_v))."""
    trials = [
        Trial(_tile_inputs(bq=3, bk=5, d=4, d_v=2)),
        Trial(_tile_inputs(2, 3, bq=4, bk=6, d=8, d_v=3), "extra axes",
              "right for 2-D blocks, wrong with batch and head axes: transpose with .mT (the last two axes), "
              "not .T, and sum over dim=-1."),
    ]
    return check("one tile of the flash backward", _as_triple(fn), _tile_reference, trials,
                 [Mistake(k, lambda *a, f=f: _flat(f(*a)), h) for k, f, h in _TILE_SLIPS], properties=[Property("tile", _tile_property)],
                 explain=_explain_tile, seed=seed, quiet=quiet)

"""Mistake lists and property diagnoses shared by every chapter's checkers, one list per formula, so that
each checker names every slip an earlier chapter's checker names for the same step:

    weight_slips(rows)         wrong softmaxes: no exp, no division, a whole-tensor sum, log-probabilities, …
    attention_mistakes(parts)  wrong softmax(Q Kᵀ · scale) V: those slips on the scores, wrong scales,
                               products in the wrong order, the wrong output
    weights_property, attention_property: what is wrong when no listed slip matches (rows that do not
                               sum to 1, negative weights, a constant factor, a wrong scale, a transpose, …)
    explain_error(e)           hints for the errors that common slips raise (overflow trials: ch02.stability_trials)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from kqvlib.attention import softmax
from kqvlib.checks import Mistake, Property, Trial, close, constant_factor, permuted, transposed


# --- softmax(s, dim) -----------------------------------------------------------------------------------------

def _e(s, dim):  # exp(s - each slice's max): the safe numerator
    return torch.exp(s - s.amax(dim=dim, keepdim=True))


def _flat(s, start):  # softmax over all axes from `start` on, taken as one
    return softmax(s.flatten(start), dim=-1).view_as(s)


def _nk(s, d, max_keepdim, sum_keepdim):  # a max (None: no max) or a sum that forgot keepdim=True (square scores)
    e = torch.exp(s if max_keepdim is None else s - s.amax(dim=d, keepdim=max_keepdim))
    return e / e.sum(dim=d, keepdim=sum_keepdim)


WHOLE_HINT = ("you normalised over the whole tensor (or a whole score matrix) at once: all those weights together "
              "sum to 1, but ROWS should sum to 1 on its own. Sum along that axis only, with keepdim=True.")
_KEEPDIM = ("a max or sum along the softmax axis lost that axis (no keepdim=True), so it was broadcast back "
            "along the wrong one. Pass keepdim=True to every reduction.")


def weight_slips(rows: str = "each row") -> list[Mistake]:
    """Wrong versions of softmax, each ``fn(s, dim)``. ``rows`` names what should sum to 1 ("each row")."""
    slips = [
        ("not normalised", lambda s, d: torch.exp(s),
         "your weights are exp(scores), not divided by their sum, so ROWS does not sum to 1."),
        ("divided by max", _e, "your largest weight is exactly 1 and ROWS does not sum to 1. Divide the "
         "exponentials by their *sum* (dividing by their max, or not at all after subtracting the max, gives this)."),
        ("no exp", lambda s, d: s / s.sum(dim=d, keepdim=True), "you divided the scores by their sum without "
         "exponentiating them, so a negative score gets a negative weight. Use exp(scores) / exp(scores).sum()."),
        ("log-softmax", lambda s, d: torch.log_softmax(s, dim=d), "your weights are all ≤ 0: they are "
         "log-probabilities (log_softmax). The weights are the probabilities themselves, exp of what you computed."),
        ("whole tensor", lambda s, d: _flat(s, 0), WHOLE_HINT),
        ("whole tensor", lambda s, d: _e(s, d) / _e(s, d).sum(), WHOLE_HINT),
        ("whole tensor", lambda s, d: _flat(s, max(s.dim() - 2, 0)), WHOLE_HINT),
        *[("keepdim", lambda s, d, m=m, k=k: _nk(s, d, m, k), _KEEPDIM)
          for m, k in ((False, True), (True, False), (False, False), (None, False))],
        ("sigmoid", lambda s, d: torch.sigmoid(s), "you used a sigmoid: each weight lies in (0, 1) on its own, "
         "but ROWS does not sum to 1. Softmax normalises the exponentials together: exp(s) / exp(s).sum()."),
        ("hard lookup", lambda s, d: torch.zeros_like(s).scatter(d, s.argmax(dim=d, keepdim=True), 1.0),
         "all the weight went to the largest score (a hard max, argmax). Softmax gives every score some "
         "weight: exp(s) / exp(s).sum()."),
        ("plain average", lambda s, d: torch.ones_like(s) / s.shape[d],
         "your weights are all equal, 1/n: they ignore the scores. Weight each entry by exp(score) / sum."),
    ]
    return [Mistake(k, f, h.replace("ROWS", rows)) for k, f, h in slips]


def large_scores_trial(make: Callable) -> Trial:
    """For attention checkers: inputs ``make(g)`` whose scores reach the thousands."""
    return Trial(make, "no max subtraction",
                 "right on ordinary inputs, but NaN or inf when the scores reach the thousands: exp overflows. "
                 "Subtract each row's own max before exp (not its min or mean, not one max for the whole "
                 "tensor), or use torch.softmax or kqvlib.softmax.")


# --- softmax(Q Kᵀ · scale) V ---------------------------------------------------------------------------------

@dataclass
class Parts:
    """Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v); ``scale`` multiplies the scores (1/√d_k, or 1 for
    chapter 1's soft lookup); ``d_model`` is the width of X when Q, K, V are projections of it."""

    Q: torch.Tensor
    K: torch.Tensor
    V: torch.Tensor
    scale: float
    d_model: int | None = None

    @property
    def scores(self) -> torch.Tensor:
        return self.Q @ self.K.mT * self.scale

    def attend(self, scores: torch.Tensor) -> torch.Tensor:
        return softmax(scores, dim=-1) @ self.V


def _with_scale(f):  # attention whose scores are multiplied by f(p) instead of p.scale
    return lambda p: p.attend(p.Q @ p.K.mT * f(p))


_ORDER = [
    ("K @ Qᵀ", lambda p: p.attend(p.K @ p.Q.mT * p.scale), "you computed K @ Qᵀ, one row per key. Transpose "
     "K instead: Q @ K.transpose(-2, -1) gives one row of scores per query."),
    ("no transpose", lambda p: p.attend(p.Q @ p.K * p.scale), "Q @ K multiplies (T, d_k) by (S, d_k), which "
     "only fits when S = d_k. The dot products of queries with keys are Q @ K.transpose(-2, -1): transpose the "
     "last two axes of K."),
    ("K.T", lambda p: p.attend(p.Q @ p.K.permute(*range(p.K.dim() - 1, -1, -1)) * p.scale), "K.T on a tensor "
     "with a batch axis reverses *all* its axes. Transpose only the last two: K.transpose(-2, -1) or K.mT."),
    ("Kᵀ @ Q", lambda p: p.attend(p.K.mT @ p.Q * p.scale), "you computed Kᵀ @ Q. Queries go on the left: "
     "Q @ K.transpose(-2, -1) → (..., T, S)."),
    ("transpose(0, 1)", lambda p: p.attend(p.Q @ p.K.transpose(0, 1) * p.scale), "K.transpose(0, 1) swaps the "
     "batch axis with the keys axis. Swap the last two axes: K.transpose(-2, -1) (or K.mT)."),
    ("V @ weights", lambda p: p.V @ softmax(p.scores, dim=-1), "you multiplied V @ weights. The weights come "
     "first: weights (..., T, S) @ V (..., S, d_v) → (..., T, d_v), each row a weighted sum of value rows."),
    ("weightsᵀ @ V", lambda p: softmax(p.scores, dim=-1).mT @ p.V, "you transposed the weights before "
     "multiplying by V. They are already (..., T, S), which is what V (..., S, d_v) needs on its left."),
    ("weights @ Vᵀ", lambda p: softmax(p.scores, dim=-1) @ p.V.mT,
     "you multiplied the weights by Vᵀ. V (..., S, d_v) already has one value per row: weights @ V."),
]

_SCALE = [
    ("not scaled", lambda p: 1.0, "the scores are not scaled. Divide Q Kᵀ by √d_k (math.sqrt(Q.shape[-1])) "
     "so they keep variance ≈ 1 whatever d_k is."),
    ("divided by d_k", lambda p: 1 / p.Q.shape[-1], "you divided by d_k. Divide by its square root, √d_k: "
     "the standard deviation of q·k grows like √d_k, not d_k."),
    ("multiplied by √d_k", lambda p: math.sqrt(p.Q.shape[-1]), "you multiplied by √d_k. Divide by it instead."),
    *[("d_k**1/2", f, "you wrote d_k ** 1/2, which Python reads as (d_k ** 1) / 2: ** comes before /. Write "
       "d_k ** 0.5 or math.sqrt(d_k).") for f in (lambda p: 2 / p.Q.shape[-1], lambda p: 0.5 / p.Q.shape[-1])],
    ("√T", lambda p: 1 / math.sqrt(p.Q.shape[-2]), "you scaled by the square root of the number of queries "
     "(Q.shape[-2]). d_k is the *last* axis: math.sqrt(Q.shape[-1])."),
    ("√S", lambda p: 1 / math.sqrt(p.K.shape[-2]), "you scaled by the square root of the number of keys. "
     "d_k is the *last* axis of Q and K: math.sqrt(Q.shape[-1])."),
    ("√d_v", lambda p: 1 / math.sqrt(p.V.shape[-1]), "you scaled by √d_v, the width of the values. The "
     "scale belongs to the queries and keys: √d_k = math.sqrt(Q.shape[-1])."),
    ("√d_model", lambda p: 1 / math.sqrt(p.d_model), "you scaled by √d_model, the width of X. The scores are "
     "dot products of d_k-wide queries and keys: divide by √d_k, the width after the projection."),
]


def order_mistakes(to_parts: Callable) -> list[Mistake]:
    """The products in the wrong order, for ``diagnose_mistakes`` (they raise on non-square inputs)."""
    return [Mistake(k, lambda *a, f=f: f(to_parts(*a)), h) for k, f, h in _ORDER]


def attention_mistakes(to_parts: Callable, scaled: bool = True, out: Callable = lambda y: y) -> list[Mistake]:
    """Every listed slip of softmax(Q Kᵀ · scale) V, as Mistakes of the checked function: ``to_parts(*args)``
    → Parts; ``scaled``: whether the reference divides by √d_k (chapter 1's does not); ``out`` is applied to
    each wrong output (e.g. to drop the query axis of a single query)."""
    slips = list(_ORDER)
    if scaled:
        slips += [(k, _with_scale(f), h) for k, f, h in _SCALE]
        slips.append(("scaled after softmax", lambda p: softmax(p.Q @ p.K.mT, dim=-1) * p.scale @ p.V, "you "
                      "scaled the weights after the softmax, so they no longer sum to 1. Scale the *scores*."))
    else:
        slips.append(("scaled", _with_scale(lambda p: 1 / math.sqrt(p.Q.shape[-1])),
                      "you divided the scores by √d. This lookup uses the plain dot products q·k; the 1/√d_k "
                      "of attention comes in chapter 3."))
    slips += [
        ("softmax over queries", lambda p: softmax(p.scores, dim=-2) @ p.V, "your softmax runs over the "
         "queries axis (dim=-2), so each *column* sums to 1. Each query needs a distribution over the keys: dim=-1."),
        ("softmax over batch", lambda p: softmax(p.scores, dim=0) @ p.V,
         "your softmax runs over dim=0, the batch axis, mixing different examples (F.softmax without dim= "
         "picks dim 0 for a 3-D tensor). Use dim=-1, the keys."),
    ]
    slips += [(m.key, lambda p, f=m.fn: f(p.scores, -1) @ p.V, m.hint) for m in weight_slips("each query's row")]
    slips += [
        ("no softmax", lambda p: p.scores @ p.V, "you used the raw scores as weights. Turn each row into a "
         "distribution first: softmax(scores, dim=-1) @ V."),
        ("returned weights", lambda p: softmax(p.scores, dim=-1), "you returned the weights, one per key. "
         "Return their weighted sum of the values: weights @ V."),
        ("returned scores", lambda p: p.scores,
         "you returned the scores. Turn them into weights with softmax, then mix the values: softmax(scores) @ V."),
        ("plain average", lambda p: p.V.mean(dim=-2), "you averaged the values equally; weight each by the softmax "
         "of its key's score."),
    ]
    return [Mistake(k, lambda *a, f=f: out(f(to_parts(*a))), h) for k, f, h in slips]


# --- diagnosis by property -----------------------------------------------------------------------------------

def _fit_scale(W, x, dim) -> float | None:  # c when W = softmax(c·x) for some c ≠ 1 (least squares on log W)
    if not bool((W > 1e-250).all()):
        return None
    L, xc = W.log() - W.log().mean(dim=dim, keepdim=True), x - x.mean(dim=dim, keepdim=True)
    if float((xc * xc).sum()) == 0.0:
        return None
    c = float((L * xc).sum() / (xc * xc).sum())
    return c if abs(c - 1) > 1e-3 and close(softmax(c * x, dim=dim), W) else None


def diagnose_weights(W, x, dim=-1, rows="each row", scale_hint=None) -> tuple[str, str] | None:
    """(key, hint) for weights W that should be softmax(x) along dim; ``scale_hint(c)`` phrases W = softmax(c·x)."""
    P = softmax(x, dim=dim)
    if transposed(W, P):
        return "transposed", "your weights are the right ones transposed: keep one row per query."
    if W.shape != P.shape:
        return None
    if permuted(W, P, dim):
        return "permuted", f"{rows} holds the right weights in the wrong places: did a sort, flip or index move them?"
    if bool((W < -1e-9).any()):
        return "negative weights", ("some of your weights are negative, and a weight must be ≥ 0. exp makes "
                                    "every weight positive: did you skip it, or return log-probabilities?")
    sums = W.sum(dim=dim)
    span = f"{sums.min().item():.3g} … {sums.max().item():.3g}"
    if not close(sums, torch.ones_like(sums)):
        if abs(float(W.sum()) - 1) < 1e-6:
            return "whole tensor", WHOLE_HINT.replace("ROWS", rows)
        for a in range(W.dim()):
            if a != dim % W.dim() and close(W.sum(dim=a), torch.ones_like(W.sum(dim=a))):
                return "wrong axis", (f"your weights sum to 1 along axis {a}, not along the softmax axis: "
                                      f"normalise so that {rows} sums to 1.")
        c = constant_factor(W, P)
        if c is not None:
            return "weights times constant", (f"your weights are the right ones times {c:.3g}, so {rows} sums "
                                              f"to {c:.3g}, not 1. Look for an extra factor after the softmax.")
        if close(W / W.sum(dim=dim, keepdim=True), P):
            return "not normalised", (f"the proportions are right, but {rows} sums to {span}, not 1: "
                                      f"divide by the sum along the softmax axis.")
        return "rows do not sum to 1", (f"{rows} of your weights should sum to 1, but sums to {span}. "
                                        f"Divide exp(scores) by their sum along the softmax axis.")
    c = _fit_scale(W, x, dim)
    if c is not None and c < 0:
        return "sign flipped", ("your weights favour the *lowest* scores: somewhere the sign of the scores "
                                "flipped (softmax(−s)). A higher score must get more weight.")
    if c is not None:
        return "wrong scale", (scale_hint(c) if scale_hint else
                               f"your weights are softmax(c · scores) with c ≈ {c:.3g}: "
                               f"{'sharper' if c > 1 else 'flatter'} than they should be. Look for a stray "
                               f"factor on the scores.")
    return "not softmax", (f"{rows} sums to 1, but the weights are not exp(score) / sum: two weights' ratio "
                           f"must be e to the difference of their scores. Check the exponent.")


def weights_property(to_scores: Callable, rows: str = "each row", scale_hint=None) -> Property:
    """Weights that should be softmax(x, dim), ``to_scores(*args)`` → (x, dim); ``scale_hint(c, args)``."""
    def test(args, got, expected):
        x, dim = to_scores(*args)
        return diagnose_weights(got, x, dim, rows, scale_hint and (lambda c: scale_hint(c, args)))
    return Property("weights", test)


def _scale_hint(p: Parts, c: float) -> str:
    s = c * p.scale
    if p.scale == 1.0:
        return f"your scores are the plain dot products times {s:.3g}; this lookup uses q·k as it is."
    return (f"the weights behind your output are softmax(Q Kᵀ / {1 / s:.3g}), but the scores should be "
            f"divided by √d_k = √{p.Q.shape[-1]} = {math.sqrt(p.Q.shape[-1]):.3g}. Check the scale.")


def attention_property(to_parts: Callable) -> Property:
    """Diagnose an attention output: a transpose, a constant factor, rows in the wrong order, or, through the
    weights it implies (output @ pinv(V), readable when S ≤ d_v), what is wrong with its weights."""
    def test(args, got, expected):
        p = to_parts(*args)
        if transposed(got, expected):
            return "transposed output", ("your output is the right one transposed. Each query's answer is a "
                                         "row: weights (T, S) @ V (S, d_v) → (T, d_v).")
        if got.shape != expected.shape:
            return None
        c = constant_factor(got, expected)
        if c is not None:
            return "output times constant", (f"your output is the right one times {c:.3g}. Each query's "
                                             f"weights must sum to 1: look for an extra factor after the "
                                             f"softmax (or on V).")
        if got.dim() >= 2 and permuted(got, expected, dim=-2):
            return "rows permuted", "your output holds the right rows in the wrong order: row i is query i's answer."
        if p.V.shape[-2] > p.V.shape[-1]:
            return None  # more keys than value columns: the weights cannot be read back
        O = got.unsqueeze(-2) if got.dim() == p.Q.dim() - 1 else got  # a single query's answer as one row
        A = O @ torch.linalg.pinv(p.V.double())  # (..., T, S)
        if not close(A @ p.V.double(), O, atol=1e-7):
            return "not a mix of values", ("your output is not a weighted mix of the rows of V: no weights "
                                           "reproduce it. The last step is weights @ V.")
        found = diagnose_weights(A, p.scores.double(), -1, "each query's row", lambda c: _scale_hint(p, c))
        if found is None or found[0] == "wrong scale":
            return found
        return found[0], "judging by the weights behind your output, " + found[1]
    return Property("attention", test)


# --- errors --------------------------------------------------------------------------------------------------

def explain_error(e: BaseException) -> tuple[str, str] | None:
    """(key, hint) for an error that a common slip raises, or None."""
    msg = str(e)
    if "return_types" in msg:
        return "max returns a pair", ("`x.max(dim)` returns a pair (values, indices), not a tensor. Use "
                                      "`x.amax(dim=dim, keepdim=True)` or `x.max(dim=dim, keepdim=True).values`.")
    if "keepdims" in msg:
        return "numpy names", "PyTorch spells NumPy's keepdims=True as keepdim=True (and axis= as dim=)."
    if "must be Tensor, not numpy.ndarray" in msg:
        return "numpy input", "this exercise passes NumPy arrays: use np.exp, np.sum, `@`, … rather than torch."
    if "must match the size of tensor" in msg or "could not be broadcast" in msg:
        return "keepdim", ("shapes did not broadcast: a max or sum over one axis drops that axis unless you pass "
                           "keepdim=True (NumPy: keepdims=True); keep it so the result lines up with the scores.")
    return None

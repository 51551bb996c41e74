"""Chapter 8's checker for ``layer_norm(x, weight, bias, eps)``: see :mod:`kqvlib.exercises.ch08`."""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close, constant_factor
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.common import explain_error

__all__ = ["check_layer_norm"]

F64 = torch.float64


def _ln_inputs(*shape: int):
    """x (*shape) with a different mean and scale at every position, a random gain and bias, a large eps."""
    C = shape[-1]

    def make(g: torch.Generator):
        centre = 2 * torch.randn(*shape[:-1], 1, generator=g, dtype=F64)  # (..., 1): each position's offset
        scale = 0.3 + 2.7 * torch.rand(*shape[:-1], 1, generator=g, dtype=F64)  # (..., 1): in [0.3, 3]
        x = centre + scale * torch.randn(*shape, generator=g, dtype=F64)  # (..., C)
        weight = 1 + 0.5 * torch.randn(C, generator=g, dtype=F64)  # (C,) the gain γ
        bias = torch.randn(C, generator=g, dtype=F64)  # (C,) the shift β
        eps = 0.1 + 0.4 * torch.rand((), generator=g, dtype=F64).item()  # a Python float
        return x, weight, bias, eps

    return make


def _stats(x, dims=-1, unbiased=False):
    """Mean and variance over ``dims``, kept for broadcasting."""
    return x.mean(dim=dims, keepdim=True), x.var(dim=dims, keepdim=True, correction=int(unbiased))


def _layer_norm(x, weight, bias, eps):
    mean, var = _stats(x)  # (..., 1), (..., 1): over the C features of each position
    return (x - mean) / torch.sqrt(var + eps) * weight + bias  # (..., C)


def _normalised_over(dims):
    """The right formula, with mean and variance taken over ``dims`` (a wrong axis) instead of the last one."""
    def fn(x, weight, bias, eps):
        d = tuple(a % x.dim() for a in dims)
        if (x.dim() - 1) in d:  # only for the (B, T, C) tests: a wrong axis there is a different axis
            return None
        mean, var = _stats(x, d)
        return (x - mean) / torch.sqrt(var + eps) * weight + bias
    return fn


def _last_two_axes(x, weight, bias, eps):
    mean, var = _stats(x, (-2, -1))
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _all_axes(x, weight, bias, eps):
    return (x - x.mean()) / torch.sqrt(x.var(correction=0) + eps) * weight + bias


def _unbiased(x, weight, bias, eps):
    mean, var = _stats(x, unbiased=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _eps_outside(x, weight, bias, eps):
    mean, var = _stats(x)
    return (x - mean) / (torch.sqrt(var) + eps) * weight + bias


def _std_eps_outside(x, weight, bias, eps):  # x.std() is unbiased by default
    return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + eps) * weight + bias


def _no_eps(x, weight, bias, eps):
    mean, var = _stats(x)
    return (x - mean) / torch.sqrt(var) * weight + bias


def _by_variance(x, weight, bias, eps):
    mean, var = _stats(x)
    return (x - mean) / (var + eps) * weight + bias


def _mean_only(x, weight, bias, eps):
    return (x - x.mean(dim=-1, keepdim=True)) * weight + bias


def _uncentred_variance(x, weight, bias, eps):
    mean = x.mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight + bias


def _no_centering(x, weight, bias, eps):
    _, var = _stats(x)
    return x / torch.sqrt(var + eps) * weight + bias


def _rms_norm(x, weight, bias, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight + bias


def _x_hat(x, eps):
    mean, var = _stats(x)
    return (x - mean) / torch.sqrt(var + eps)


_LN_MISTAKES = [
    Mistake("unbiased variance", _unbiased,
            "you used the unbiased variance (divided by C − 1): x.var() and x.std() do that by default. "
            "LayerNorm divides by C: x.var(dim=-1, keepdim=True, unbiased=False), or "
            "((x - mean) ** 2).mean(dim=-1, keepdim=True)."),
    Mistake("eps outside the square root", _eps_outside,
            "eps is outside the square root: you divided by √var + eps. LayerNorm divides by √(var + eps), "
            "torch.sqrt(var + eps)."),
    Mistake("std plus eps", _std_eps_outside,
            "you divided by x.std(...) + eps. Two slips: x.std() is the unbiased one (÷ (C − 1)), and eps "
            "belongs inside the square root. Use torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + eps)."),
    Mistake("no eps", _no_eps,
            "eps is missing (or you used a fixed 1e-5 instead of the eps argument; the test passes eps ≈ 0.1 … "
            "0.5 so that you can see it). Divide by torch.sqrt(var + eps) with the eps you are given."),
    Mistake("divided by the variance", _by_variance,
            "you divided by the variance (+ eps). Divide by the standard deviation, its square root: "
            "torch.sqrt(var + eps)."),
    Mistake("uncentred variance", _uncentred_variance,
            "your variance is the mean of x², not of (x − mean)²: it ignores how far the mean is from 0. "
            "Use ((x - mean) ** 2).mean(dim=-1, keepdim=True), or x.var(dim=-1, keepdim=True, "
            "unbiased=False)."),
    Mistake("mean only", _mean_only,
            "you subtracted the mean but did not divide by the standard deviation: every position should "
            "come out with variance ≈ 1 before the gain. Divide by torch.sqrt(var + eps)."),
    Mistake("mean not subtracted", _no_centering,
            "you divided by the standard deviation but did not subtract the mean first: each position's "
            "features should average 0 before the gain and bias. Use (x - mean) / torch.sqrt(var + eps)."),
    Mistake("RMSNorm", _rms_norm,
            "you divided x by its root mean square, √(mean(x²) + eps), with no mean subtracted: that is "
            "RMSNorm. LayerNorm subtracts each position's mean and divides by its standard deviation."),
    Mistake("batch axis", _normalised_over((0,)),
            "your mean and variance run over dim=0, the batch axis: each example's numbers then depend on the "
            "other examples in the batch (batch norm). LayerNorm normalises each position's own C features: "
            "dim=-1."),
    Mistake("time axis", _normalised_over((-2,)),
            "your mean and variance run over the positions (dim=1 of (B, T, C)), so position t would depend "
            "on later positions. LayerNorm normalises each position's own C features: dim=-1."),
    Mistake("batch and time axes", _normalised_over((0, 1)),
            "your mean and variance run over the batch and the positions together, one pair per feature: "
            "that is batch norm. LayerNorm takes one mean and variance per position, over its C features: "
            "dim=-1."),
    Mistake("positions and features", _last_two_axes,
            "your mean and variance run over the positions and the features together, dims (-2, -1) "
            "(nn.LayerNorm(x.shape[1:]) does that), so position t would depend on later positions. "
            "LayerNorm here normalises each position's own C features: dim=-1 only."),
    Mistake("all axes", _all_axes,
            "you took one mean and one variance for the whole tensor. LayerNorm takes them for each position "
            "separately, over its C features: x.mean(dim=-1, keepdim=True), and the same for the variance."),
    Mistake("no gain", lambda x, w, b, eps: _x_hat(x, eps) + b,
            "the gain is missing: multiply the normalised x by weight (γ) before adding bias (β)."),
    Mistake("no bias", lambda x, w, b, eps: _x_hat(x, eps) * w,
            "the bias is missing: add bias (β) after multiplying by weight (γ)."),
    Mistake("no gain and no bias", lambda x, w, b, eps: _x_hat(x, eps),
            "you returned the normalised x without its gain and bias: finish with * weight + bias."),
    Mistake("gain and bias swapped", lambda x, w, b, eps: _x_hat(x, eps) * b + w,
            "gain and bias are swapped: multiply by weight (γ, the gain) and add bias (β, the shift)."),
    Mistake("gain and bias before normalising", lambda x, w, b, eps: _x_hat(x * w + b, eps),
            "you applied weight and bias to x *before* normalising, so normalising undid most of them. "
            "Normalise first, then * weight + bias."),
]


def _ln_property() -> Property:
    """When no listed slip matches: undo the gain and bias and look at what each position became."""
    def test(args, got, expected):
        x, weight, bias, eps = args
        if got.shape != expected.shape or not bool((weight.abs() > 1e-3).all()):
            return None
        xh = _x_hat(x, eps).reshape(-1, x.shape[-1])  # (N, C): the right normalised x
        G = got.reshape(-1, x.shape[-1])
        A = ((G - G.mean(0)) * (xh - xh.mean(0))).sum(0) / ((xh - xh.mean(0)) ** 2).sum(0)  # (C,) per-feature gain
        Bc = G.mean(0) - A * xh.mean(0)  # (C,) per-feature shift
        if close(G, xh * A + Bc) and not (close(A, weight) and close(Bc, bias)) \
                and not (close(Bc, bias) and constant_factor(A, weight) is not None):  # that is a scale: below
            names = {"weight": weight, "weight²": weight ** 2, "1 (no weight)": torch.ones_like(weight),
                     "bias": bias, "weight · bias": weight * bias, "0 (no bias)": torch.zeros_like(bias),
                     "2 · bias": 2 * bias}
            gain = next((n for n, v in names.items() if close(A, v)), "something else")
            shift = next((n for n, v in names.items() if close(Bc, v)), "something else")
            return "gain or bias wrong", (f"your normalisation is right, but each feature then gets the gain {gain} "
                                          f"and the shift {shift}, where it should get weight and bias: finish with "
                                          f"exactly x_hat * weight + bias, once.")
        z = (got - bias) / weight  # (..., C): what the learner's normalisation produced
        mean = z.mean(dim=-1)
        if not close(mean, torch.zeros_like(mean), atol=1e-6):
            return "not centred", ("after undoing weight and bias, your positions do not average 0 over their C "
                                   "features. Subtract each position's own mean: x - x.mean(dim=-1, keepdim=True).")
        c = constant_factor(z, _x_hat(x, eps))
        f = z / _x_hat(x, eps)  # (..., C): a factor per position when only the denominator is off
        if c is None and close(f, f[..., :1].expand_as(f), atol=1e-6):
            return "wrong denominator", ("each position is centred and scaled by one number, but not by "
                                         "1/√(var + eps): the denominator is off for each position (check var "
                                         "over the C features, biased, and eps inside the square root).")
        if c is not None:
            return "scaled", (f"your normalised x is the right one times {c:.3g}: the division is off by a "
                              f"constant. Divide by torch.sqrt(var + eps), var the mean of (x - mean)² over C.")
        return "wrong scale", ("each position is centred, but divided by the wrong amount. Divide by "
                               "torch.sqrt(var + eps), var = ((x - mean) ** 2).mean(dim=-1, keepdim=True).")
    return Property("layer norm", test)


_AXES_HINT = ("right for (B, T, C) inputs, but not for other numbers of axes (here (N, C) or (B, H, T, C)). "
              "Count the axis from the end, dim=-1, so that any leading axes work.")


def _ln_explain(e: BaseException) -> tuple[str, str] | None:
    msg = str(e)
    if "must match the size of tensor" in msg:
        return "keepdim", ("shapes did not broadcast: x.mean(dim=-1) drops the last axis, and (B, T) cannot be "
                           "subtracted from (B, T, C). Pass keepdim=True to the mean and the variance, so they "
                           "stay (B, T, 1).")
    if "unexpected keyword argument 'unbiased'" in msg or "correction" in msg:
        return "var arguments", ("x.var takes unbiased=False (older PyTorch) or correction=0 (newer): either "
                                 "gives the biased variance, ÷ C.")
    return explain_error(e)


def check_layer_norm(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x: (..., C), weight: (C,), bias: (C,), eps: float) → (..., C):
    (x − mean) / √(var + eps) · weight + bias over the last axis, var the biased variance."""
    return check(
        "layer_norm", fn, _layer_norm,
        [Trial(_ln_inputs(2, 5, 7)),
         Trial(_ln_inputs(6, 9), "other axes", _AXES_HINT),
         Trial(_ln_inputs(2, 3, 4, 6), "other axes", _AXES_HINT)],
        _LN_MISTAKES, properties=[_ln_property()], explain=_ln_explain, seed=seed, quiet=quiet,
    )

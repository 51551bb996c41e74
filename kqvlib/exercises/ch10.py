"""Checkers for chapter 10: training a GPT.

``check_lr_at`` checks a learning-rate schedule ``lr_at(step, warmup_steps, max_steps, lr, min_lr)``:
linear warmup to ``lr`` over the first ``warmup_steps`` steps (step 0 already trains, at lr/warmup_steps),
then half a cosine from ``lr`` down to ``min_lr`` between the end of warmup and ``max_steps``, and
``min_lr`` after that. The checker calls it for every step from 0 to a few past ``max_steps`` and
compares the whole curve, so each slip shows up as a curve of its own shape. The sizes are random and
all different (warmup 3–9, max_steps 23–41), so a swapped argument cannot pass.
"""
from __future__ import annotations

import math

import torch

from kqvlib.checks import CheckResult, Mistake, Trial, check

__all__ = ["check_lr_at"]

PAST_END = 5  # steps checked after max_steps: the rate must stay at min_lr


def _inputs(g: torch.Generator):
    warmup = int(torch.randint(3, 10, (1,), generator=g))
    max_steps = int(torch.randint(23, 42, (1,), generator=g))
    lr = float(1e-3 * (1 + 5 * torch.rand(1, generator=g, dtype=torch.float64)))
    min_lr = float(lr * (0.05 + 0.2 * torch.rand(1, generator=g, dtype=torch.float64)))
    return warmup, max_steps, lr, min_lr


def _curve(rate):
    """A one-step rule rate(step, W, M, lr, lo) → the whole curve, a float64 tensor over steps 0..M+5."""
    def curve(W, M, lr, lo):
        return torch.tensor([float(rate(s, W, M, lr, lo)) for s in range(M + PAST_END + 1)],
                            dtype=torch.float64)
    return curve


def _cosine(frac, lr, lo):
    return lo + 0.5 * (1 + math.cos(math.pi * frac)) * (lr - lo)


def _clamp(x):
    return min(1.0, max(0.0, x))


def _ref(s, W, M, lr, lo):
    if s < W:
        return lr * (s + 1) / W
    return _cosine(_clamp((s - W) / (M - W)), lr, lo)


def _after_warmup(decay):
    """Right warmup; ``decay(s, W, M, lr, lo)`` after it."""
    return lambda s, W, M, lr, lo: lr * (s + 1) / W if s < W else decay(s, W, M, lr, lo)


MISTAKES = [
    Mistake("warmup off by one", _curve(lambda s, W, M, lr, lo: lr * s / W if s < W
                                        else _ref(s, W, M, lr, lo)),
            "your warmup starts at 0 (lr · step / warmup_steps), so step 0 does not train at all and the peak "
            "is reached one step late. Count the step being taken: lr · (step + 1) / warmup_steps."),
    Mistake("no warmup", _curve(lambda s, W, M, lr, lo: _cosine(_clamp((s - W) / (M - W)), lr, lo)
                                if s >= W else lr),
            "the first warmup_steps steps run at the full rate. Ramp up linearly first: "
            "lr · (step + 1) / warmup_steps while step < warmup_steps."),
    Mistake("decay from 0", _curve(_after_warmup(lambda s, W, M, lr, lo: _cosine(_clamp(s / M), lr, lo))),
            "your cosine is measured from step 0, so right after warmup the rate drops below lr. Measure "
            "the decay from the end of warmup: progress = (step − warmup_steps) / (max_steps − warmup_steps)."),
    Mistake("decay over max_steps", _curve(_after_warmup(
        lambda s, W, M, lr, lo: _cosine(_clamp((s - W) / M), lr, lo))),
            "your cosine never reaches min_lr at max_steps: you divided by max_steps, but the decay lasts "
            "max_steps − warmup_steps steps. progress = (step − warmup_steps) / (max_steps − warmup_steps)."),
    Mistake("decays to zero", _curve(_after_warmup(
        lambda s, W, M, lr, lo: 0.5 * (1 + math.cos(math.pi * _clamp((s - W) / (M - W)))) * lr)),
            "your cosine ends at 0, not at min_lr. Decay the distance above the floor: "
            "min_lr + ½(1 + cos(π·progress)) · (lr − min_lr)."),
    Mistake("floor added", _curve(_after_warmup(
        lambda s, W, M, lr, lo: lo + 0.5 * (1 + math.cos(math.pi * _clamp((s - W) / (M - W)))) * lr)),
            "right after warmup your rate jumps to lr + min_lr. The cosine scales (lr − min_lr), the gap "
            "between the peak and the floor, not lr."),
    Mistake("no π", _curve(_after_warmup(
        lambda s, W, M, lr, lo: lo + 0.5 * (1 + math.cos(_clamp((s - W) / (M - W)))) * (lr - lo))),
            "your cosine stops a third of the way down: cos(progress) only goes from 1 to cos(1) ≈ 0.54. Use "
            "cos(π · progress), which goes from 1 to −1, so the rate ends at min_lr."),
    Mistake("full cosine", _curve(_after_warmup(
        lambda s, W, M, lr, lo: lo + 0.5 * (1 + math.cos(2 * math.pi * _clamp((s - W) / (M - W)))) * (lr - lo))),
            "your rate comes back up to lr at the end: cos(2π · progress) is a whole period. Half a period, "
            "cos(π · progress), goes from the peak down to the floor once."),
    Mistake("rising", _curve(_after_warmup(
        lambda s, W, M, lr, lo: lo + 0.5 * (1 - math.cos(math.pi * _clamp((s - W) / (M - W)))) * (lr - lo))),
            "your rate rises after warmup: ½(1 − cos) goes from 0 to 1. The decay is ½(1 + cos(π·progress)), "
            "1 at the end of warmup and 0 at max_steps."),
    Mistake("linear decay", _curve(_after_warmup(
        lambda s, W, M, lr, lo: lr - (lr - lo) * _clamp((s - W) / (M - W)))),
            "your decay is a straight line. This schedule is half a cosine: "
            "min_lr + ½(1 + cos(π·progress)) · (lr − min_lr), flat at both ends, steepest in the middle."),
    Mistake("no clamp", _curve(_after_warmup(
        lambda s, W, M, lr, lo: _cosine((s - W) / (M - W), lr, lo))),
            "right up to max_steps, but after it your rate climbs again (the cosine keeps turning). Clamp "
            "the progress to at most 1, so the rate stays at min_lr."),
    Mistake("warmup to min_lr", _curve(lambda s, W, M, lr, lo: lo + (lr - lo) * (s + 1) / W if s < W
                                       else _ref(s, W, M, lr, lo)),
            "your warmup starts from min_lr. It starts from (almost) zero: lr · (step + 1) / warmup_steps."),
    Mistake("warmup one step long", _curve(lambda s, W, M, lr, lo: lr * (s + 1) / W if s < W
                                           else _cosine(_clamp((s - W + 1) / (M - W)), lr, lo)),
            "your cosine starts one step early (progress uses step − warmup_steps + 1), so the peak rate is "
            "never used after warmup. At step = warmup_steps the progress is 0: (step − warmup_steps)."),
]


def _learner_curve(fn):
    """The learner's one-step function as a whole curve; None anywhere means a missing return."""
    def curve(W, M, lr, lo):
        values = [fn(s, W, M, lr, lo) for s in range(M + PAST_END + 1)]
        if any(v is None for v in values):
            return None
        return torch.tensor([float(v) for v in values], dtype=torch.float64)
    return curve


def check_lr_at(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(step, warmup_steps, max_steps, lr, min_lr) → the learning rate (a float) at that step."""
    return check("lr_at", _learner_curve(fn), _curve(_ref), trials=[Trial(_inputs)], mistakes=MISTAKES,
                 atol=1e-9, rtol=1e-7, seed=seed, quiet=quiet)

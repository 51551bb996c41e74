"""Chapter 10 checkers for learning-rate schedules: the chapter's warmup + cosine (``check_lr_at``) and a
warmup-stable-decay schedule it does not show (``check_wsd_lr``). The chapter's docstring is in
:mod:`kqvlib.exercises.ch10`.
"""
from __future__ import annotations

import math

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial
from kqvlib.checks import close
from kqvlib.exercises.diagnose import checked as check, describe

__all__ = ["check_lr_at", "check_wsd_lr"]

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


def phase_property(phases) -> Property:
    """A schedule wrong in one phase: ``phases(*args)`` → [(name, first step, last step)]; the wrong phase is
    named, and what is wrong in it (a factor, an offset, one step early or late, only its edge step)."""
    def test(args, got, expected):
        if got.shape != expected.shape:
            return None
        bad = ~torch.isclose(got, expected, atol=1e-9, rtol=1e-7)
        for name, a, b in phases(*args):
            if not bool(bad[a:b + 1].any()):
                continue
            where = f"in the {name} (steps {a}–{b})"
            steps = [a + int(i) for i in torch.nonzero(bad[a:b + 1]).flatten()]
            right_before = a == 0 or not bool(bad[:a].any())
            if len(steps) == 1 and right_before:
                s = steps[0]
                return "one step wrong", (f"{where} only step {s} is wrong: {float(got[s]):.4g} instead of "
                                          f"{float(expected[s]):.4g}. A boundary is off by one (< against ≤, or "
                                          f"step against step + 1) at the {'start' if s == a else 'end'} of the {name}.")
            s0 = steps[0]
            if b > a and close(expected[a:b + 1], expected[a:a + 1].expand(b - a + 1)) \
                    and not close(got[a:b + 1], got[a:a + 1].expand(b - a + 1)):
                return "phase starts early", (f"{where} your rate should stay at {float(expected[a]):.4g}, but it "
                                              f"{'falls' if float(got[s0]) < float(expected[s0]) else 'rises'} from "
                                              f"step {s0} on: the next phase starts too early (check where it begins).")
            if b - s0 >= 2:  # one step late/early: got[s] = expected[s ∓ 1] from the first wrong step on
                for d, word in ((1, "late"), (-1, "early")):
                    lo, hi = max(s0, a + d), min(b, b + d) - (1 if d < 0 else 0)
                    if hi > lo and close(got[lo:hi + 1], expected[lo - d:hi - d + 1]):
                        return "shifted by one", (f"{where} your curve is the right one one step {word}: the "
                                                  f"progress counts from the wrong step (step − start ± 1).")
                seg_g, seg_e = got[a:b + 1], expected[a:b + 1]
                found = describe(seg_g, seg_e, ("step",))
                if found is not None and found[0] == "times constant":
                    c = float((seg_g * seg_e).sum() / (seg_e * seg_e).sum())
                    W, lr, lo = args[0], args[-2], args[-1]
                    named = {"min_lr / lr (lr and min_lr swapped?)": lo / lr, "lr / min_lr (lr and min_lr swapped?)":
                             lr / lo, "warmup_steps / (warmup_steps + 1)": W / (W + 1),
                             "(warmup_steps + 1) / warmup_steps": (W + 1) / W, "warmup_steps": W, "1 / warmup_steps": 1 / W}
                    which = next((n for n, v in named.items() if abs(c - v) < 1e-6 * max(1.0, abs(v))), None)
                    if which:
                        found = (found[0], found[1].replace(": a constant", f" ({which}): a constant", 1))
                if found is not None and found[0] == "affine" and found[1].startswith("your output is 2 ×"):
                    found = ("½ missing", "your decay swings twice as far, below min_lr: the factor ½(1 + cos(π·"
                             "progress)) lost its ½ (or its 1 +), so cos alone goes from 1 to −1.")
                if found is not None and found[0] != "some entries wrong":
                    return found[0], f"{where}{' (the steps before it are right)' if right_before and a > 0 else ''}: " + found[1]
                if s0 > a and close(got[b:b + 1], expected[b:b + 1]):
                    return "wrong shape of curve", (
                        f"{where} your rate starts and ends where it should but takes another path in between "
                        f"({float(got[s0]):.4g} instead of {float(expected[s0]):.4g} at step {s0}): the shape of "
                        f"that phase is wrong (a cosine where a straight line belongs, or the other way round, "
                        f"or a progress measured over the wrong span).")
            return "phase wrong", (f"your rate is right before step {steps[0]} and wrong from there, {where}: "
                                   f"check that phase's formula ({float(got[steps[0]]):.4g} instead of "
                                   f"{float(expected[steps[0]]):.4g} at step {steps[0]}).")
        return None
    return Property("phase", test)


def check_lr_at(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(step, warmup_steps, max_steps, lr, min_lr) → the learning rate (a float) at that step."""
    phases = phase_property(lambda W, M, lr, lo: [("warmup", 0, W - 1), ("cosine decay", W, M),
                                                    ("end, past max_steps,", M + 1, M + PAST_END)])
    return check("lr_at", _learner_curve(fn), _curve(_ref), trials=[Trial(_inputs)], mistakes=MISTAKES,
                 properties=[phases], axes=("step",), atol=1e-9, rtol=1e-7, seed=seed, quiet=quiet)


# --- warmup-stable-decay ---------------------------------------------------------------------------------

def _wsd_inputs(g: torch.Generator):
    W = int(torch.randint(3, 8, (1,), generator=g))
    D = int(torch.randint(9, 14, (1,), generator=g))
    M = int(torch.randint(30, 42, (1,), generator=g))
    lr = float(1e-3 * (1 + 5 * torch.rand(1, generator=g, dtype=torch.float64)))
    lo = float(lr * (0.05 + 0.2 * torch.rand(1, generator=g, dtype=torch.float64)))
    return W, D, M, lr, lo


def _wsd(s, W, D, M, lr, lo, start=None, span=None, floor=None, up=lambda s, W: (s + 1) / W):
    if s < W:
        return lr * up(s, W)
    start = M - D if start is None else start(W, D, M)
    span = D if span is None else span(W, D, M)
    lo = lo if floor is None else floor
    return lr if s < start else lo + (lr - lo) * _clamp(1 - (s - start) / span)


def _wsd_curve(rate):
    def curve(W, D, M, lr, lo):
        return torch.tensor([float(rate(s, W, D, M, lr, lo)) for s in range(M + PAST_END + 1)], dtype=torch.float64)
    return curve


def _wsd_learner(fn):
    def curve(W, D, M, lr, lo):
        values = [fn(s, W, D, M, lr, lo) for s in range(M + PAST_END + 1)]
        return None if any(v is None for v in values) else torch.tensor([float(v) for v in values], dtype=torch.float64)
    return curve


def _w(**kw):
    return _wsd_curve(lambda s, W, D, M, lr, lo: _wsd(s, W, D, M, lr, lo, **kw))


WSD_MISTAKES = [
    Mistake("decay from the end of warmup", _w(start=lambda W, D, M: W, span=lambda W, D, M: M - W),
            "your rate decays from the end of warmup: there is no stable phase. Hold lr until step "
            "max_steps − decay_steps, then decay over the last decay_steps steps."),
    Mistake("decay to zero", _w(floor=0.0),
            "your decay ends at 0, not at min_lr: min_lr + (lr − min_lr) · (max_steps − step) / decay_steps."),
    Mistake("decay starts at max_steps", _w(start=lambda W, D, M: M),
            "your rate stays at lr until max_steps and only then decays: the decay takes the *last* decay_steps "
            "steps, from max_steps − decay_steps to max_steps."),
    Mistake("warmup from 0", _w(up=lambda s, W: s / W),
            "your warmup starts at 0 (lr · step / warmup_steps), so step 0 does not train: lr · (step + 1) / "
            "warmup_steps."),
    Mistake("no floor after the end", _wsd_curve(lambda s, W, D, M, lr, lo: lr * (s + 1) / W if s < W else (
        lr if s < M - D else lo + (lr - lo) * (1 - (s - M + D) / D))),
            "right up to max_steps, but after it your rate keeps falling below min_lr (negative progress past "
            "the end): clamp it so the rate stays at min_lr."),
]


def check_wsd_lr(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(step, warmup_steps, decay_steps, max_steps, lr, min_lr) → lr · (step + 1) / warmup_steps during warmup,
    lr until max_steps − decay_steps, then a straight line down to min_lr at max_steps, min_lr after."""
    phases = phase_property(lambda W, D, M, lr, lo: [("warmup", 0, W - 1), ("stable phase", W, M - D - 1),
                                                       ("decay", M - D, M), ("end, past max_steps,", M + 1, M + PAST_END)])
    return check("wsd_lr", _wsd_learner(fn), _wsd_curve(_wsd), trials=[Trial(_wsd_inputs)], mistakes=WSD_MISTAKES,
                 properties=[phases], axes=("step",), atol=1e-9, rtol=1e-7, seed=seed, quiet=quiet)

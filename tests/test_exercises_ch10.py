"""Chapter 10 checker: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong schedules below are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch10.
"""
import math

import pytest
import torch

from kqvlib.exercises import ch10
from kqvlib.train import TrainConfig, lr_at as kqv_lr_at


def ok(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def via_kqvlib(step, warmup_steps, max_steps, lr, min_lr):
    return kqv_lr_at(step, TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr))


def stub(step, warmup_steps, max_steps, lr, min_lr):
    raise NotImplementedError


def cos_decay(p, lr, min_lr, cos=math.cos):
    return min_lr + (lr - min_lr) * (1 + cos(math.pi * p)) / 2


def warm(step, W, lr):
    return lr * (step + 1) / W


MISTAKES = {
    "warmup off by one": lambda s, W, M, lr, lo: lr * s / W if s < W else ok(s, W, M, lr, lo),
    "no warmup": lambda s, W, M, lr, lo: lr if s < W else ok(s, W, M, lr, lo),
    "decay from 0": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W else cos_decay(min(1, s / M), lr, lo),
    "decay over max_steps": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else cos_decay(min(1, (s - W) / M), lr, lo),
    "decays to zero": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lr * (1 + math.cos(math.pi * min(1, (s - W) / (M - W)))) / 2,
    "floor added": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lo + lr * (1 + math.cos(math.pi * min(1, (s - W) / (M - W)))) / 2,
    "no π": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lo + (lr - lo) * (1 + math.cos(min(1, (s - W) / (M - W)))) / 2,
    "full cosine": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lo + (lr - lo) * (1 + math.cos(2 * math.pi * min(1, (s - W) / (M - W)))) / 2,
    "rising": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lo + (lr - lo) * (1 - math.cos(math.pi * min(1, (s - W) / (M - W)))) / 2,
    "linear decay": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else lr - (lr - lo) * min(1, (s - W) / (M - W)),
    "no clamp": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W else cos_decay((s - W) / (M - W), lr, lo),
    "warmup to min_lr": lambda s, W, M, lr, lo: lo + (lr - lo) * (s + 1) / W if s < W else ok(s, W, M, lr, lo),
    "warmup one step long": lambda s, W, M, lr, lo: warm(s, W, lr) if s < W
    else cos_decay(min(1, (s - W + 1) / (M - W)), lr, lo),
}


@pytest.mark.parametrize("fn", [ok, via_kqvlib])
def test_accepts_reference_and_kqvlib(fn):
    r = ch10.check_lr_at(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


def test_stub_is_not_attempted(capsys):
    r = ch10.check_lr_at(stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(MISTAKES))
def test_each_mistake_gets_its_own_hint(key):
    r = ch10.check_lr_at(MISTAKES[key], quiet=True, seed=3)
    assert not r.passed and r.key == key, r.message


def test_missing_return_and_errors_do_not_crash():
    def forgot_return(step, warmup_steps, max_steps, lr, min_lr):
        lr * step

    def broken(step, warmup_steps, max_steps, lr, min_lr):
        return lr / (step - step)  # ZeroDivisionError

    r = ch10.check_lr_at(forgot_return, quiet=True)
    assert not r.passed and r.key == "returned None"
    r = ch10.check_lr_at(broken, quiet=True)
    assert not r.passed and "raised ZeroDivisionError" in r.message
    assert r.message.index("return lr / (step - step)") < r.message.index("(your code raised")  # names the line


# --- wsd_lr: warmup, stable, linear decay ------------------------------------------------------------------------

def wsd_ok(step, warmup_steps, decay_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_start = max_steps - decay_steps
    if step < decay_start:
        return lr
    progress = min(1.0, (step - decay_start) / decay_steps)
    return lr - (lr - min_lr) * progress


def wsd_torch(step, warmup_steps, decay_steps, max_steps, lr, min_lr):  # a tensor-valued, clamped variant
    s = torch.tensor(float(step), dtype=torch.float64)
    up = lr * (s + 1) / warmup_steps
    down = min_lr + (lr - min_lr) * ((max_steps - s) / decay_steps).clamp(0, 1)
    return torch.where(s < warmup_steps, up, down).item()


def _wsd_slip(**change):
    def fn(step, W, D, M, lr, lo):
        W_, start, span, floor, clamp = W, M - D, D, lo, True
        start = change.get("start", lambda W, D, M: M - D)(W, D, M)
        span = change.get("span", lambda W, D, M: D)(W, D, M)
        floor = change.get("floor", lo)
        if step < W_:
            return lr * (step + change.get("up", 1)) / W_
        if step < start:
            return lr
        p = (step - start) / span
        p = min(1.0, p) if change.get("clamp", clamp) else p
        shape = change.get("shape", lambda p: p)
        return lr - (lr - floor) * shape(p)
    return fn


def test_wsd_accepts_right_answers():
    assert ch10.check_wsd_lr(wsd_ok, quiet=True) and ch10.check_wsd_lr(wsd_torch, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (_wsd_slip(start=lambda W, D, M: W, span=lambda W, D, M: M - W), "decay from the end of warmup"),
    (_wsd_slip(floor=0.0), "decay to zero"),
    (_wsd_slip(start=lambda W, D, M: M), "decay starts at max_steps"),
    (_wsd_slip(up=0), "warmup from 0"),
    (_wsd_slip(clamp=False), "no floor after the end"),
    # unlisted: found by the phase diagnosis
    (_wsd_slip(start=lambda W, D, M: M - D + 1), "shifted by one"),
    (_wsd_slip(shape=lambda p: 0.5 * (1 - math.cos(math.pi * p))), "wrong shape of curve"),
    (_wsd_slip(up=2), ("shifted by one", "offset")),  # lr·(s + 2)/W: one step early, or lr/W too much
])
def test_wsd_slips(fn, key):
    for seed in range(3):
        r = ch10.check_wsd_lr(fn, seed=seed, quiet=True)
        assert not r.passed and r.key in (key if isinstance(key, tuple) else (key,)), r.message


def test_wsd_stub():
    def stub(step, warmup_steps, decay_steps, max_steps, lr, min_lr):
        raise NotImplementedError
    assert ch10.check_wsd_lr(stub, quiet=True).key == "not attempted"


def test_lr_at_unlisted_slips_are_named_by_phase():
    reference = ok

    def peak_doubled(step, W, M, lr, lo):
        return 2 * reference(step, W, M, lr, lo) if step < W else reference(step, W, M, lr, lo)

    def boundary(step, W, M, lr, lo):
        return lr * (step + 1) / W if step <= W else reference(step, W, M, lr, lo)
    r = ch10.check_lr_at(peak_doubled, seed=0, quiet=True)
    assert r.key == "times constant" and "warmup" in r.message, r.message
    r = ch10.check_lr_at(boundary, seed=0, quiet=True)
    assert r.key == "one step wrong" and "cosine decay" in r.message, r.message


# --- clip_grad_norm ---------------------------------------------------------------------------------------------

def clip_ok(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / float(total))
    return [g * scale for g in grads], total


def clip_in_place(grads, max_norm):  # torch's own, which works in place (on the checker's copies) with an eps
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], total


def clip_cat(grads, max_norm):
    flat = torch.cat([g.flatten() for g in grads])
    total = flat.norm()
    return [g * torch.clamp(max_norm / total, max=1.0) for g in grads], total.item()


@pytest.mark.parametrize("fn", [clip_ok, clip_in_place, clip_cat])
def test_clip_accepts_right_answers(fn):
    assert ch10.check_clip_grad_norm(fn, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (lambda gr, m: ([g * min(1.0, m / float(g.norm())) for g in gr], clip_ok(gr, m)[1]), "each tensor on its own"),
    (lambda gr, m: ([g * min(1.0, m / float(sum(x.norm() for x in gr))) for g in gr], sum(x.norm() for x in gr)),
     "sum of norms"),
    (lambda gr, m: ([g * (m / float(clip_ok(gr, m)[1])) for g in gr], clip_ok(gr, m)[1]), "always rescaled"),
    (lambda gr, m: (clip_ok(gr, m)[0], torch.sqrt(sum((g ** 2).sum() for g in clip_ok(gr, m)[0]))),
     "norm after clipping"),
    (lambda gr, m: clip_ok(gr, m)[0], "returned part"),
    (lambda gr, m: clip_ok(gr, m)[::-1], "results swapped"),
    (lambda gr, m: ([g * min(1.0, m / float(clip_ok(gr, m)[1])) * 2 for g in gr], clip_ok(gr, m)[1]),
     "times constant"),
    (lambda gr, m: (gr, torch.stack(gr).norm()), "stack"),
])
def test_clip_slips(fn, key):
    r = ch10.check_clip_grad_norm(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message

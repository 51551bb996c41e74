"""Chapter 10 checker: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong schedules below are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch10.
"""
import math

import pytest

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
    assert r.message.index("error before returning") < r.message.index("ZeroDivisionError")

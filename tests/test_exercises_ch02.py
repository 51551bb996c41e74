"""Chapter 2 checkers: each accepts a right answer, says "not attempted yet" for a stub, and gives each
likely mistake its own hint. The wrong answers below are written the way a learner would write them."""
import pytest
import torch
import torch.nn.functional as F

from kqvlib.exercises import ch02


# --- stable_softmax(x, dim) --------------------------------------------------------------------

def softmax_right(x, dim=-1):
    z = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_stub(x, dim=-1):
    raise NotImplementedError


def softmax_dim0(x, dim=-1):
    z = x - x.amax(dim=0, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=0, keepdim=True)


def softmax_last_axis_always(x, dim=-1):
    z = x - x.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(-1, keepdim=True)


def softmax_naive(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def softmax_no_normalise(x, dim=-1):
    return torch.exp(x)


def softmax_no_normalise_after_max(x, dim=-1):
    return torch.exp(x - x.amax(dim=dim, keepdim=True))


def softmax_divide_by_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.max(dim=dim, keepdim=True).values


def softmax_no_keepdim(x, dim=-1):
    z = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim)


def softmax_max_pair(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim))
    return e / e.sum(dim=dim, keepdim=True)


def test_softmax_accepts_reference(capsys):
    r = ch02.check_softmax(softmax_right)
    assert r.passed and r.key == "ok"
    assert "✓" in capsys.readouterr().out


def test_softmax_accepts_torch_softmax():
    assert ch02.check_softmax(lambda x, dim=-1: F.softmax(x, dim=dim), quiet=True).key == "ok"


def test_softmax_stub_not_attempted(capsys):
    r = ch02.check_softmax(softmax_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, key, words",
    [
        (softmax_dim0, "wrong axis", "dim 0"),
        (softmax_last_axis_always, "ignored dim", "dim=1"),
        (softmax_naive, "no max subtraction", "Subtract the max"),
        (softmax_global_max, "global max", "own max"),
        (softmax_no_normalise, "not normalised", "exp(x)"),
        (softmax_no_normalise_after_max, "divided by max", "*sum*"),
        (softmax_divide_by_max, "divided by max", "*sum*"),
        (softmax_no_keepdim, "keepdim", "keepdim=True"),
        (softmax_max_pair, "max returns a pair", "amax"),
    ],
)
def test_softmax_mistakes(fn, key, words, capsys):
    for seed in (0, 1, 2):  # the hint must not depend on the random inputs
        r = ch02.check_softmax(fn, seed=seed)
        out = capsys.readouterr().out
        assert not r.passed and r.key == key, (r.key, r.message)
        assert words in out


def test_softmax_mistake_keys_are_distinct():
    keys = {m.key for m in ch02._SOFTMAX_MISTAKES} | {t.key for t in ch02._SOFTMAX_TRIALS}
    assert len(keys) == len(ch02._SOFTMAX_MISTAKES) + len(ch02._SOFTMAX_TRIALS)


# --- temperature_softmax(scores, T) -------------------------------------------------------------

def temperature_right(scores, T):
    return torch.softmax(scores / T, dim=-1)


def temperature_stub(scores, T):
    raise NotImplementedError


def temperature_times(scores, T):
    return torch.softmax(scores * T, dim=-1)


def temperature_ignored(scores, T):
    return torch.softmax(scores, dim=-1)


def temperature_after(scores, T):
    return torch.softmax(scores, dim=-1) / T


def temperature_dim0(scores, T):
    return torch.softmax(scores / T, dim=0)


def temperature_naive(scores, T):
    e = torch.exp(scores / T)
    return e / e.sum(dim=-1, keepdim=True)


def test_temperature_accepts_reference(capsys):
    r = ch02.check_temperature_softmax(temperature_right)
    assert r.passed and r.key == "ok"
    assert "✓" in capsys.readouterr().out


def test_temperature_stub_not_attempted(capsys):
    r = ch02.check_temperature_softmax(temperature_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, key, words",
    [
        (temperature_times, "multiplied by T", "Divide"),
        (temperature_ignored, "ignored T", "do not depend on T"),
        (temperature_after, "T after softmax", "*before*"),
        (temperature_dim0, "wrong axis", "dim 0"),
        (temperature_naive, "cold", "stable softmax"),
    ],
)
def test_temperature_mistakes(fn, key, words, capsys):
    for seed in (0, 1, 2):
        r = ch02.check_temperature_softmax(fn, seed=seed)
        out = capsys.readouterr().out
        assert not r.passed and r.key == key, (r.key, r.message)
        assert words in out


def test_checkers_never_raise_on_garbage():
    assert ch02.check_softmax(lambda x, dim=-1: "nonsense", quiet=True).key != "ok"
    assert ch02.check_softmax(lambda x, dim=-1: None, quiet=True).key == "returned None"
    assert ch02.check_temperature_softmax(lambda s, T: 1 / 0, quiet=True).key == "exception"

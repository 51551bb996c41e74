"""Chapter 2 checkers: each accepts a right answer, says "not attempted yet" for a stub, and gives each
likely mistake its own hint. The wrong answers below are written the way a learner would write them."""
import math

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
        (softmax_no_normalise, "not normalised", "exp(scores)"),
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


def softmax_min_shift(x, dim=-1):
    e = torch.exp(x - x.amin(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def softmax_mean_shift(x, dim=-1):
    e = torch.exp(x - x.mean(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def softmax_median_shift(x, dim=-1):
    e = torch.exp(x - x.median(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_whole_tensor(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def softmax_flatten(x, dim=-1):
    return F.softmax(x.flatten(), dim=0).reshape(x.shape)


@pytest.mark.parametrize(
    "fn, key, words",
    [
        (softmax_min_shift, "min subtraction", "minimum"),
        (softmax_mean_shift, "mean subtraction", "mean"),
        (softmax_median_shift, "mean subtraction", "middle value"),
        (softmax_whole_tensor, "whole tensor", "whole tensor"),
        (softmax_flatten, "whole tensor", "whole tensor"),
        (lambda x, dim=-1: F.log_softmax(x, dim=dim), "log-softmax", "log-probabilities"),
        (lambda x, dim=-1: (lambda e: e / e.sum(dim, keepdim=True))(torch.exp(x - x.amax(-1, keepdim=True))),
         "max along another axis", "another axis"),
        (lambda x, dim=-1: torch.sigmoid(x), "sigmoid", "sigmoid"),
        (lambda x, dim=-1: x / x.sum(dim=dim, keepdim=True), "no exp", "exponentiating"),
        (lambda x, dim=-1: F.one_hot(x.argmax(dim=-1), x.shape[-1]).double(), "hard lookup", "argmax"),
        # no listed slip: the property of the output names the step
        (lambda x, dim=-1: 0.5 * softmax_right(x, dim), "weights times constant", "times 0.5"),
        (lambda x, dim=-1: softmax_right(2 * x, dim), "wrong scale", "sharper"),
        (lambda x, dim=-1: softmax_right(-x, dim), "sign flipped", "lowest"),
        (lambda x, dim=-1: softmax_right(x, dim).flip(dim), "permuted", "wrong places"),
        (lambda x, dim=-1: softmax_right(x, dim) - 0.01, "negative weights", "negative"),
        (lambda x, dim=-1: softmax_right(x, dim) + 0.01, "rows do not sum to 1", "sum to 1"),
        (lambda x, dim=-1: torch.exp(x) / (1 + torch.exp(x).sum(dim=dim, keepdim=True)), "not normalised",
         "proportions are right"),
        (lambda x, dim=-1: (x - x.amin(dim, keepdim=True)) ** 2 / ((x - x.amin(dim, keepdim=True)) ** 2).sum(
            dim, keepdim=True), "not softmax", "exponent"),
        (lambda x, dim=-1: softmax_right(x, dim).transpose(0, -1), "transposed", "transposed"),
    ],
)
def test_softmax_more_slips(fn, key, words):
    for seed in (0, 1, 2):
        r = ch02.check_softmax(fn, seed=seed, quiet=True)
        assert not r.passed and r.key == key, (r.key, r.message)
        assert words in r.message


@pytest.mark.parametrize("key", sorted({m.key for m in ch02._SOFTMAX_MISTAKES} - {"keepdim"}))
def test_softmax_every_listed_mistake_is_named(key):
    """Each listed mistake, handed in as an answer, gets its own hint (no earlier one shadows it). The
    keepdim variants only run on square inputs; they raise here and get the keepdim hint from the error."""
    m = next(m for m in ch02._SOFTMAX_MISTAKES if m.key == key)
    assert ch02.check_softmax(m.fn, seed=0, quiet=True).key == key


def test_softmax_hints_differ():
    hints = {}
    for m in ch02._SOFTMAX_MISTAKES:
        hints.setdefault(m.key, m.hint)
    hints.update({t.key: t.hint for t in ch02._SOFTMAX_TRIALS if t.hint})
    assert len(set(hints.values())) == len(hints)


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


def temperature_min_shift(scores, T):
    return softmax_min_shift(scores / T)


def temperature_mean_shift(scores, T):
    return softmax_mean_shift(scores / T)


def temperature_whole(scores, T):
    e = torch.exp(scores / T - (scores / T).amax(dim=-1, keepdim=True))
    return e / e.sum()


@pytest.mark.parametrize(
    "fn, key, words",
    [
        (temperature_min_shift, "min subtraction", "minimum"),
        (temperature_mean_shift, "mean subtraction", "mean"),
        (temperature_whole, "whole tensor", "whole tensor"),
        (lambda s, T: torch.exp(s / T), "not normalised", "not divided"),
        (lambda s, T: F.log_softmax(s / T, dim=-1), "log-softmax", "log-probabilities"),
        (lambda s, T: softmax_right(s / T ** 2), "wrong scale", "but T is"),
        (lambda s, T: softmax_right(s / math.sqrt(T)), "wrong scale", "but T is"),
        (lambda s, T: softmax_right(s / T) * T, "weights times constant", "times"),
        (lambda s, T: softmax_right(s / T).flip(-1), "permuted", "wrong places"),
    ],
)
def test_temperature_more_slips(fn, key, words):
    for seed in (0, 1, 2):
        r = ch02.check_temperature_softmax(fn, seed=seed, quiet=True)
        assert not r.passed and r.key == key, (r.key, r.message)
        assert words in r.message


def test_temperature_names_every_softmax_slip():
    """The temperature checker names every slip the softmax checker names, for the same step."""
    for m in ch02._SOFTMAX_MISTAKES:
        if m.key in {"ignored dim", "keepdim", "max along another axis"}:  # about `dim`, which it has not
            continue
        r = ch02.check_temperature_softmax(lambda s, T, f=m.fn: f(s / T, -1), seed=0, quiet=True)
        assert r.key == m.key, (m.key, r.message)
    softmax_trials = {t.key for t in ch02._SOFTMAX_TRIALS} - {"ordinary", "middle dim", "no max subtraction"}
    assert softmax_trials <= {t.key for t in ch02._TEMPERATURE_TRIALS}


def test_checkers_never_raise_on_garbage():
    assert ch02.check_softmax(lambda x, dim=-1: "nonsense", quiet=True).key != "ok"
    assert ch02.check_softmax(lambda x, dim=-1: None, quiet=True).key == "returned None"
    r = ch02.check_temperature_softmax(lambda s, T: 1 / 0, quiet=True)
    assert r.key == "exception" and r.message.endswith("(your code raised ZeroDivisionError: division by zero)")

"""Chapter 11's checkers: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch11.
"""
import pytest
import torch
import torch.nn.functional as F

from kqvlib.exercises import ch11


# --- top_k_probs(logits, k) ----------------------------------------------------------------------------------

def top_k_ok(logits, k):
    kth = torch.topk(logits, k).values[:, -1:]
    return F.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)


def top_k_sorted_loop(logits, k):
    out = torch.zeros_like(logits)
    for b in range(logits.shape[0]):
        idx = torch.argsort(logits[b], descending=True)[:k]
        out[b, idx] = F.softmax(logits[b, idx], dim=0)
    return out


def top_k_plus_one(logits, k):
    kth = torch.topk(logits, k + 1).values[:, -1:]
    return F.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)


def top_k_minus_one(logits, k):
    kth = torch.topk(logits, k).values[:, -1:]
    return F.softmax(logits.masked_fill(logits <= kth, float("-inf")), dim=-1)


def top_k_smallest(logits, k):
    idx = torch.sort(logits, dim=-1).indices[:, :k]  # ascending: the least likely
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
    return F.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


def top_k_zero(logits, k):
    kth = torch.topk(logits, k).values[:, -1:]
    return F.softmax(logits.masked_fill(logits < kth, 0.0), dim=-1)


def top_k_unnormalised(logits, k):
    kth = torch.topk(logits, k).values[:, -1:]
    return F.softmax(logits, dim=-1) * (logits >= kth)


def top_k_dim0(logits, k):
    kth = torch.topk(logits, k).values[:, -1:]
    return F.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=0)


def stub_k(logits, k):
    raise NotImplementedError  # your code here


def test_top_k_reference_passes():
    assert ch11.check_top_k_probs(top_k_ok, seed=0, quiet=True).key == "ok"
    assert ch11.check_top_k_probs(top_k_sorted_loop, seed=1, quiet=True).key == "ok"
    assert ch11.check_top_k_probs(ch11.top_k_probs, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (top_k_plus_one, "k + 1"), (top_k_minus_one, "k - 1"), (top_k_smallest, "smallest k"),
    (top_k_zero, "masked with 0"), (top_k_unnormalised, "not renormalised"),
])
def test_top_k_mistakes_get_their_own_hint(fn, key):
    r = ch11.check_top_k_probs(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, (r.key, r.message)


def test_top_k_softmax_over_batch_names_the_axis():
    r = ch11.check_top_k_probs(top_k_dim0, seed=0, quiet=True)
    assert not r.passed and r.key == "nan" and "dim=-1" in r.message, (r.key, r.message)


def test_top_k_stub_and_crash(capsys):
    assert ch11.check_top_k_probs(stub_k, seed=0).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    r = ch11.check_top_k_probs(lambda logits, k: logits[k + 100], seed=0, quiet=True)
    assert not r.passed and r.key == "exception"


# --- top_p_probs(logits, p, temperature) ---------------------------------------------------------------------

def top_p_ok(logits, p, temperature):
    logits = logits / temperature
    s, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(s, dim=-1)
    drop = probs.cumsum(-1) - probs >= p
    s = s.masked_fill(drop, float("-inf"))
    return torch.zeros_like(logits).scatter(-1, order, F.softmax(s, dim=-1))


def _top_p(logits, p, temperature, *, desc=True, incl=True, fill=float("-inf"), renorm=True, unsort=True,
           t_after=False):
    scaled = logits if t_after else logits / temperature
    s, order = torch.sort(scaled, dim=-1, descending=desc)
    probs = F.softmax(s, dim=-1)
    keep = (probs.cumsum(-1) - probs < p) if incl else (probs.cumsum(-1) <= p)
    if t_after:
        s = s / temperature
    if not renorm:
        out = F.softmax(s, dim=-1) * keep
    else:
        out = F.softmax(s.masked_fill(~keep, fill), dim=-1)
    return torch.zeros_like(logits).scatter(-1, order, out) if unsort else out


def stub_p(logits, p, temperature):
    raise NotImplementedError  # your code here


def test_top_p_reference_passes():
    assert ch11.check_top_p_probs(top_p_ok, seed=0, quiet=True).key == "ok"
    assert ch11.check_top_p_probs(_top_p, seed=3, quiet=True).key == "ok"


@pytest.mark.parametrize("kw, key", [
    (dict(desc=False), "ascending sort"), (dict(renorm=False), "not renormalised"),
    (dict(fill=0.0), "masked with 0"), (dict(unsort=False), "not unsorted"),
    (dict(t_after=True), "temperature after"),
])
def test_top_p_mistakes_get_their_own_hint(kw, key):
    r = ch11.check_top_p_probs(lambda x, p, t: _top_p(x, p, t, **kw), seed=0, quiet=True)
    assert not r.passed and r.key == key, (r.key, r.message)


def test_top_p_crossing_token_dropped():
    # cumsum <= p: either the slip's own hint, or (when a row becomes empty) the NaN hint naming it
    r = ch11.check_top_p_probs(lambda x, p, t: _top_p(x, p, t, incl=False), seed=0, quiet=True)
    assert not r.passed and r.key in ("crossing token dropped", "nan"), (r.key, r.message)
    assert "crosses p" in r.message


@pytest.mark.parametrize("fn, key", [
    (lambda x, p, t: top_p_ok(x, p, 1.0), "temperature ignored"),
    (lambda x, p, t: top_p_ok(x * t * t, p, t), "temperature multiplied"),
])
def test_top_p_temperature_slips(fn, key):
    r = ch11.check_top_p_probs(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, (r.key, r.message)


def test_top_p_softmax_over_batch():
    def dim0(x, p, t):
        keep = top_p_ok(x, p, t) > 0
        return F.softmax((x / t).masked_fill(~keep, float("-inf")), dim=0)
    r = ch11.check_top_p_probs(dim0, seed=0, quiet=True)
    assert not r.passed and r.key == "nan" and "dim=-1" in r.message, (r.key, r.message)


def test_top_p_stub_and_crash(capsys):
    assert ch11.check_top_p_probs(stub_p, seed=0).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    r = ch11.check_top_p_probs(lambda x, p, t: x.cumsum(5), seed=0, quiet=True)
    assert not r.passed and r.key == "exception"

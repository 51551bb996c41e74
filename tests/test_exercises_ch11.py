"""Chapter 11's checkers: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch11.
"""
import math

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
    assert not r.passed and r.key == "index" and "logits[k + 100]" in r.message


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
    assert not r.passed and r.key == "axis" and "x.cumsum(5)" in r.message


# --- min-p -------------------------------------------------------------------------------------------------------

def min_p_ok(logits, p_base):
    probs = torch.softmax(logits, dim=-1)
    keep = probs >= p_base * probs.amax(dim=-1, keepdim=True)
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


def min_p_log_space(logits, p_base):  # the same rule on log-probabilities, finfo.min as the fill
    logp = torch.log_softmax(logits, dim=-1)
    keep = logp >= logp.max(dim=-1, keepdim=True).values + math.log(p_base)
    probs = torch.softmax(logits.masked_fill(~keep, torch.finfo(logits.dtype).min), dim=-1)
    return probs


def min_p_in_place(logits, p_base):
    probs = logits.softmax(-1)
    probs[probs < p_base * probs.max(-1, keepdim=True).values] = 0
    probs /= probs.sum(-1, keepdim=True)
    return probs


@pytest.mark.parametrize("fn", [min_p_ok, min_p_log_space, min_p_in_place])
def test_min_p_accepts_right_answers(fn):
    assert ch11.check_min_p_probs(fn, quiet=True)


def _min_p(keep_rule, renorm=True, dim=-1):
    def fn(logits, p_base):
        probs = torch.softmax(logits, dim=dim)
        kept = probs * keep_rule(probs, logits, p_base)
        return kept / kept.sum(-1, keepdim=True) if renorm else kept
    return fn


@pytest.mark.parametrize("fn, key", [
    (_min_p(lambda pr, x, p: pr >= p * pr.max()), "one max for the batch"),
    (_min_p(lambda pr, x, p: pr >= p), "absolute threshold"),
    (_min_p(lambda pr, x, p: x >= p * x.amax(-1, keepdim=True)), "threshold on logits"),
    (_min_p(lambda pr, x, p: pr >= p * pr.amax(-1, keepdim=True), renorm=False), "not renormalised"),
    (_min_p(lambda pr, x, p: pr >= p * pr.amax(-1)), "broadcast"),
    (_min_p(lambda pr, x, p: pr >= p * pr.amax(-1, keepdim=True), dim=0), "softmax over the batch"),
    # unlisted: found by the support diagnosis
    (_min_p(lambda pr, x, p: pr >= 2 * p * pr.amax(-1, keepdim=True)), "kept too few"),
    (_min_p(lambda pr, x, p: pr >= p * pr[:, :1].amax(-1, keepdim=True)), "some rows wrong"),
    (lambda x, p: min_p_ok(x, p) / min_p_ok(x, p).sum(), "normalised over the batch"),
])
def test_min_p_slips(fn, key):
    r = ch11.check_min_p_probs(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message


# --- repetition penalty -------------------------------------------------------------------------------------------

def penalty_ok(logits, prev, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        for t in set(prev[b].tolist()):
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out


def penalty_gather(logits, prev, penalty):  # vectorised; a repeated index writes the same value twice
    seen = logits.gather(1, prev)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, prev, seen)


def penalty_in_place(logits, prev, penalty):  # in-place steps on a copy of the logits
    logits = logits.clone()
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prev, True)
    pos = mask & (logits > 0)
    logits[pos] /= penalty
    logits[mask & ~pos] *= penalty
    return logits


@pytest.mark.parametrize("fn", [penalty_ok, penalty_gather, penalty_in_place])
def test_penalty_accepts_right_answers(fn):
    assert ch11.check_repetition_penalty(fn, quiet=True)


def _each_occurrence(logits, prev, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        for t in prev[b].tolist():
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out


@pytest.mark.parametrize("fn, key", [
    (lambda x, h, r: x.scatter(1, h, x.gather(1, h) / r), "divided every seen logit"),
    (lambda x, h, r: x.scatter(1, h, x.gather(1, h) * r), "multiplied every seen logit"),
    (_each_occurrence, "once per occurrence"),
    (lambda x, h, r: penalty_ok(x, h[:1].expand_as(h), r), "one row's history"),
    (lambda x, h, r: penalty_ok(x, h, r) - (x != penalty_ok(x, h, r)) * 0 + 0.0 * x + (x > 100), "ok?"),
    (lambda x, h, r: torch.where(x > 0, x / r, x * r), "unseen tokens changed"),
    (lambda x, h, r: penalty_ok(x, h, r).softmax(-1), "some rows wrong"),
])
def test_penalty_slips(fn, key):
    r = ch11.check_repetition_penalty(fn, seed=0, quiet=True)
    if key == "ok?":
        assert r.passed, r.message
        return
    assert not r.passed and r.key != "wrong values", r.message
    assert r.key == key or key == "some rows wrong", r.message


def test_new_sampling_stubs():
    def stub(*a):
        raise NotImplementedError
    assert ch11.check_min_p_probs(stub, quiet=True).key == "not attempted"
    assert ch11.check_repetition_penalty(stub, quiet=True).key == "not attempted"

"""Chapter 1 checkers: the reference passes, a stub is "not attempted", each listed mistake gets its own hint,
and unlisted slips are named by a property. Learners write NumPy here, so the wrong answers are NumPy."""
import numpy as np
import pytest
import torch

from kqvlib.exercises import ch01
from kqvlib.exercises.common import attention_mistakes


def _numpy(fn):  # a Mistake's function (tensors in) as a learner's function (NumPy in)
    return lambda *a: fn(*(torch.from_numpy(x) for x in a))


# --- cosine_similarity --------------------------------------------------------------------------------------

def cos_ok(a, b):
    return (a @ b) / (np.sqrt(a @ a) * np.sqrt(b @ b))


@pytest.mark.parametrize("fn, key", [
    (cos_ok, "ok"),
    (lambda a, b: a @ b, "no normalisation"),
    (lambda a, b: (a @ b) / ((a @ a) * (b @ b)), "squared norms"),
    (lambda a, b: (a @ b) / np.sqrt(a @ a), "one norm"),
    (lambda a, b: a * b / (np.sqrt(a @ a) * np.sqrt(b @ b)), "elementwise"),
    (lambda a, b: np.arccos(cos_ok(a, b)), "angle"),
    (lambda a, b: (a @ b) / (np.linalg.norm(a) + np.linalg.norm(b)), "sum of norms"),
])
def test_cosine(fn, key):
    for seed in (0, 1, 2):
        assert ch01.check_cosine_similarity(fn, seed=seed, quiet=True).key == key


# --- soft_lookup (one query) --------------------------------------------------------------------------------

def lookup_ok(q, K, V):
    s = K @ q
    w = np.exp(s - s.max())
    return (w / w.sum()) @ V


@pytest.mark.parametrize("fn, key", [
    (lookup_ok, "ok"),
    (lambda q, K, V: np.exp(K @ q) / np.exp(K @ q).sum(), "returned weights"),
    (lambda q, K, V: ((K @ q) / (K @ q).sum()) @ V, "no exp"),
    (lambda q, K, V: np.exp(K @ q) @ V, "not normalised"),
    (lambda q, K, V: V[np.argmax(K @ q)], "hard lookup"),
    (lambda q, K, V: V.mean(axis=0), "plain average"),
    (lambda q, K, V: lookup_ok(q / np.sqrt(len(q)), K, V), "scaled"),
    (lambda q, K, V: lookup_ok(3 * q, K, V), "wrong scale"),  # unlisted: read from the implied weights
    (lambda q, K, V: 0.5 * lookup_ok(q, K, V), "output times constant"),
])
def test_soft_lookup(fn, key):
    r = ch01.check_soft_lookup(fn, seed=0, quiet=True)
    assert r.key == key, r.message


def test_stub_prints_not_attempted(capsys):
    def stub(q, K, V):
        raise NotImplementedError

    assert ch01.check_soft_lookup(stub).key == "not attempted"
    assert ch01.check_soft_lookup_batch(stub).key == "not attempted"
    assert capsys.readouterr().out.count("not attempted yet") == 2


# --- soft_lookup_batch (many queries) ------------------------------------------------------------------------

def batch_ok(Q, K, V):
    s = Q @ K.T                                  # (m, n)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)) @ V


def batch_loop(Q, K, V):
    return np.stack([lookup_ok(q, K, V) for q in Q])


def _w(s):
    return np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)


LEARNER_SLIPS = {
    "one query": lambda Q, K, V: lookup_ok(Q[0], K, V),
    "returned weights": lambda Q, K, V: _w(Q @ K.T),
    "not normalised": lambda Q, K, V: np.exp(Q @ K.T) @ V,
    "softmax over queries": lambda Q, K, V: (np.exp(Q @ K.T) / np.exp(Q @ K.T).sum(axis=0)) @ V,
    "whole tensor": lambda Q, K, V: (np.exp(Q @ K.T) / np.exp(Q @ K.T).sum()) @ V,
    "keepdim": lambda Q, K, V: (np.exp(Q @ K.T) / np.exp(Q @ K.T).sum(axis=1)) @ V,  # raises; square re-run names it
    "K @ Qᵀ": lambda Q, K, V: _w(K @ Q.T) @ V,
    "no transpose": lambda Q, K, V: _w(Q @ K) @ V,
    "V @ weights": lambda Q, K, V: V @ _w(Q @ K.T),
    "hard lookup": lambda Q, K, V: V[(Q @ K.T).argmax(axis=1)],
    "plain average": lambda Q, K, V: np.tile(V.mean(axis=0), (len(Q), 1)),
    "scaled": lambda Q, K, V: batch_ok(Q / np.sqrt(Q.shape[1]), K, V),
    "returned a list": lambda Q, K, V: [lookup_ok(q, K, V) for q in Q],
    # unlisted slips, named by what the output is
    "rows do not sum to 1": lambda Q, K, V: (_w(Q @ K.T) + 0.1) @ V,
    "sign flipped": lambda Q, K, V: batch_ok(-Q, K, V),
    "transposed output": lambda Q, K, V: batch_ok(Q, K, V).T,
    "rows permuted": lambda Q, K, V: batch_ok(Q, K, V)[::-1],
    "not a mix of values": lambda Q, K, V: batch_ok(Q, K, V) + 1,
    "numpy input": lambda Q, K, V: torch.exp(Q @ K.T),
}


def test_batch_unlisted_normalisation_slip_is_named_by_its_property():
    def plus_one(Q, K, V):  # the right proportions, divided by (sum + 1)
        e = np.exp(Q @ K.T)
        return (e / (1 + e.sum(axis=1, keepdims=True))) @ V

    r = ch01.check_soft_lookup_batch(plus_one, quiet=True)
    assert r.key == "not normalised" and "proportions are right" in r.message


def test_batch_accepts_the_reference_a_loop_and_torch(capsys):
    assert ch01.check_soft_lookup_batch(batch_ok).key == "ok"
    assert "✓ soft_lookup_batch: correct on 3 random tests." in capsys.readouterr().out
    assert ch01.check_soft_lookup_batch(batch_loop, quiet=True).key == "ok"
    assert ch01.check_soft_lookup_batch(
        lambda Q, K, V: (torch.softmax(torch.tensor(Q @ K.T), -1) @ torch.tensor(V)).numpy(), quiet=True).passed


@pytest.mark.parametrize("key", list(LEARNER_SLIPS))
def test_batch_learner_slips(key):
    for seed in (0, 1, 2):
        r = ch01.check_soft_lookup_batch(LEARNER_SLIPS[key], seed=seed, quiet=True)
        assert r.key == key, r.message


SHADOWED = {"K.T", "softmax over batch", "Kᵀ @ Q", "transpose(0, 1)"}  # 2-D: the same as the reference, or as an earlier slip


@pytest.mark.parametrize("key", sorted({m.key for m in ch01._BATCH_MISTAKES} - SHADOWED))
def test_batch_every_listed_mistake_is_named(key):
    m = next(m for m in ch01._BATCH_MISTAKES if m.key == key)
    for seed in (0, 1, 2):
        assert ch01.check_soft_lookup_batch(_numpy(m.fn), seed=seed, quiet=True).key == key


def test_batch_hints_differ():
    hints = {}
    for m in ch01._BATCH_MISTAKES:
        hints.setdefault(m.key, m.hint)
    assert len(set(hints.values())) == len(hints)


@pytest.mark.parametrize("key", sorted({m.key for m in attention_mistakes(ch01._single, scaled=False)}))
def test_single_lookup_every_listed_mistake_is_named_or_shadowed(key):
    """One query: a mistake is named by its own key, or by the first earlier one that computes the same."""
    mistakes = attention_mistakes(ch01._single, scaled=False, out=lambda y: y.squeeze(-2))
    m = next(m for m in mistakes if m.key == key)
    args = ch01._lookup_inputs(torch.Generator().manual_seed(0))
    try:
        wrong = m.fn(*args)
    except Exception:
        pytest.skip(f"{key} does not run on one query")
    if _runs_and_equals(ch01.soft_lookup, args, wrong):
        pytest.skip(f"{key} is the right answer for one query")
    first = next(e.key for e in mistakes
                 if _runs_and_equals(e.fn, args, wrong))
    assert ch01.check_soft_lookup(_numpy(m.fn), seed=0, quiet=True).key == first


def _runs_and_equals(fn, args, target):
    try:
        out = fn(*args)
    except Exception:
        return False
    return out.shape == target.shape and torch.allclose(out, target)

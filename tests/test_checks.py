"""The checker mechanism, and chapter 1's checkers: the reference passes, each mistake gets its own hint."""
import numpy as np
import pytest
import torch

from kqvlib import softmax
from kqvlib.checks import Mistake, Trial, check
from kqvlib.exercises import ch01


def _rows(g):
    return (torch.randn(3, 5, generator=g, dtype=torch.float64),)


def _huge(g):
    return (1000 + 10 * torch.randn(3, 5, generator=g, dtype=torch.float64),)


def softmax_check(fn):
    return check(
        "softmax", fn, softmax, [Trial(_rows), Trial(_huge, "overflow", "subtract the max before exp.")],
        mistakes=[Mistake("wrong axis", lambda x: softmax(x, dim=0), "wrong axis."),
                  Mistake("no normalisation", lambda x: torch.exp(x), "divide by the sum.")],
        quiet=True,
    )


def naive(x):
    e = torch.exp(x)
    return e / e.sum(-1, keepdim=True)


def test_reference_passes():
    r = softmax_check(softmax)
    assert r.passed and r.key == "ok" and r.message.startswith("✓")


@pytest.mark.parametrize("fn, key", [
    (lambda x: torch.exp(x) / torch.exp(x).sum(0, keepdim=True), "wrong axis"),
    (lambda x: torch.exp(x), "no normalisation"),
    (naive, "overflow"),
    (lambda x: x[:, :2], "wrong shape"),
    (lambda x: x * 0, "wrong values"),
    (lambda x: None, "returned None"),
])
def test_mistakes_get_their_own_hint(fn, key):
    r = softmax_check(fn)
    assert not r.passed and r.key == key, r.message


def test_stub_and_crash_never_raise(capsys):
    def stub(x):
        raise NotImplementedError

    def crash(x):
        return x @ torch.ones(2)

    r = softmax_check(stub)
    assert r.key == "not attempted" and "not attempted yet" in r.message
    r = check("softmax", crash, softmax, _rows)
    assert r.key == "exception" and "RuntimeError" in r.message
    assert "✗ softmax: your function raised RuntimeError" in capsys.readouterr().out


def test_inputs_are_fresh_each_call():
    seen = []

    def spy(x):
        seen.append(x.clone())
        return softmax(x)

    check("softmax", spy, softmax, _rows, quiet=True)
    check("softmax", spy, softmax, _rows, quiet=True)
    assert not torch.equal(seen[0], seen[3])


# --- chapter 1 --------------------------------------------------------------------------------

def cos_ok(a, b):
    return (a @ b) / (np.sqrt(a @ a) * np.sqrt(b @ b))


@pytest.mark.parametrize("fn, key", [
    (cos_ok, "ok"),
    (lambda a, b: a @ b, "no normalisation"),
    (lambda a, b: (a @ b) / ((a @ a) * (b @ b)), "squared norms"),
    (lambda a, b: (a @ b) / np.sqrt(a @ a), "one norm"),
    (lambda a, b: a * b / (np.sqrt(a @ a) * np.sqrt(b @ b)), "elementwise"),
])
def test_ch01_cosine(fn, key):
    assert ch01.check_cosine_similarity(fn).key == key


def lookup_ok(q, K, V):
    s = K @ q
    w = np.exp(s - s.max())
    return (w / w.sum()) @ V


@pytest.mark.parametrize("fn, key", [
    (lookup_ok, "ok"),
    (lambda q, K, V: np.exp(K @ q) / np.exp(K @ q).sum(), "weights returned"),
    (lambda q, K, V: ((K @ q) / (K @ q).sum()) @ V, "no exp"),
    (lambda q, K, V: np.exp(K @ q) @ V, "not normalised"),
    (lambda q, K, V: V[np.argmax(K @ q)], "hard lookup"),
    (lambda q, K, V: V.mean(axis=0), "plain average"),
])
def test_ch01_soft_lookup(fn, key):
    r = ch01.check_soft_lookup(fn)
    assert r.key == key, r.message


def test_ch01_stub_prints_not_attempted(capsys):
    def stub(q, K, V):
        raise NotImplementedError

    assert ch01.check_soft_lookup(stub).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


def test_diagnose_names_the_mistake_behind_an_error():
    """A product in the wrong order raises on non-square inputs; the square re-run names it."""
    def ref(Q, K):  # (T, d) and (S, d) → (T, S)
        return Q @ K.T

    def rect(g):
        return torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)

    def square(g):
        return torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)

    no_transpose = Mistake("no transpose", lambda Q, K: Q @ K, "transpose K.")
    r = check("scores", lambda Q, K: Q @ K, ref, rect, quiet=True, diagnose=Trial(square), diagnose_mistakes=[no_transpose])
    assert r.key == "no transpose" and "raised RuntimeError" in r.message and "Likely cause: transpose K." in r.message
    r = check("scores", lambda Q, K: Q @ K[:2], ref, rect, quiet=True, diagnose=Trial(square), diagnose_mistakes=[no_transpose])
    assert r.key == "exception"

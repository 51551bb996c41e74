"""Chapter 3 checkers: the reference passes, a stub is "not attempted", each likely mistake gets its own hint.

The wrong variants below are written the way a learner would write them, independently of the
Mistake functions inside kqvlib.exercises.ch03.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from kqvlib.exercises import ch03

# K.T on a 3-D tensor is one of the mistakes we test; PyTorch warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")


# --- scaled_scores ------------------------------------------------------------------------------

def scores_ok(Q, K):
    d_k = Q.shape[-1]
    return torch.matmul(Q, K.mT) / d_k**0.5


def scores_stub(Q, K):
    raise NotImplementedError


SCORE_MISTAKES = {
    "not scaled": lambda Q, K: Q @ K.transpose(-2, -1),
    "divided by d_k": lambda Q, K: Q @ K.transpose(-2, -1) / K.size(-1),
    "multiplied by √d_k": lambda Q, K: torch.einsum("...td,...sd->...ts", Q, K) * math.sqrt(Q.size(-1)),
    "√T": lambda Q, K: Q @ K.transpose(1, 2) / math.sqrt(Q.shape[1]),
    "√S": lambda Q, K: Q @ K.transpose(1, 2) / math.sqrt(K.shape[1]),
    "K @ Qᵀ": lambda Q, K: K @ Q.transpose(-2, -1) / math.sqrt(Q.shape[-1]),  # runs, wrong shape
    "no transpose": lambda Q, K: torch.matmul(Q, K) / math.sqrt(Q.shape[-1]),  # raises
    "K.T": lambda Q, K: Q @ K.T / math.sqrt(Q.shape[-1]),  # raises on (B, S, d_k)
    "Kᵀ @ Q": lambda Q, K: K.transpose(-2, -1) @ Q / math.sqrt(Q.shape[-1]),  # raises
    "extra batch axes": lambda Q, K: Q @ K.transpose(1, 2) / math.sqrt(Q.shape[2]),  # fine for 3-D only
}


def test_scaled_scores_accepts_reference():
    r = ch03.check_scaled_scores(scores_ok, quiet=True)
    assert r.passed and r.key == "ok"


def test_scaled_scores_stub(capsys):
    r = ch03.check_scaled_scores(scores_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(SCORE_MISTAKES))
def test_scaled_scores_mistakes(key):
    r = ch03.check_scaled_scores(SCORE_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


def test_scaled_scores_hints_differ():
    msgs = {ch03.check_scaled_scores(f, quiet=True, seed=2).message.split(" (With")[0] for f in SCORE_MISTAKES.values()}
    assert len(msgs) == len(SCORE_MISTAKES)


# --- attention ----------------------------------------------------------------------------------

def attention_ok(Q, K, V):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    return torch.softmax(scores, dim=-1) @ V


def attention_stub(Q, K, V):
    raise NotImplementedError  # your code here


def _s(Q, K):
    return Q @ K.transpose(-2, -1)


ATTENTION_MISTAKES = {
    "not scaled": lambda Q, K, V: F.softmax(_s(Q, K), dim=-1) @ V,
    "divided by d_k": lambda Q, K, V: F.softmax(_s(Q, K) / Q.shape[-1], dim=-1) @ V,
    "multiplied by √d_k": lambda Q, K, V: F.softmax(_s(Q, K) * Q.shape[-1] ** 0.5, dim=-1) @ V,
    "√T": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(Q.shape[1]), dim=-1) @ V,
    "√S": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(V.shape[1]), dim=-1) @ V,
    "softmax over queries": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=1) @ V,
    "softmax over batch": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=0) @ V,
    "no softmax": lambda Q, K, V: (_s(Q, K) / math.sqrt(Q.shape[-1])) @ V,
    "not normalised": lambda Q, K, V: (_s(Q, K) / math.sqrt(Q.shape[-1])).exp() @ V,
    "returned weights": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=-1),
    # products in the wrong order: they raise on the non-square inputs, the diagnosis names them
    "K @ Qᵀ": lambda Q, K, V: F.softmax(K @ Q.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V,
    "no transpose": lambda Q, K, V: F.softmax(Q @ K / math.sqrt(Q.shape[-1]), dim=-1) @ V,
    "K.T": lambda Q, K, V: F.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V,
    "Kᵀ @ Q": lambda Q, K, V: F.softmax(torch.matmul(K.mT, Q) / math.sqrt(Q.shape[-1]), dim=-1) @ V,
    "V @ weights": lambda Q, K, V: V @ F.softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=-1),
    "weightsᵀ @ V": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=-1).mT @ V,
    "extra batch axes": lambda Q, K, V: F.softmax(Q @ K.transpose(1, 2) / math.sqrt(Q.shape[-1]), dim=-1) @ V,
}


def test_attention_accepts_reference():
    r = ch03.check_attention(attention_ok, quiet=True)
    assert r.passed and r.key == "ok"


def test_attention_accepts_kqvlib_and_pytorch():
    import kqvlib

    assert ch03.check_attention(kqvlib.scaled_dot_product_attention, quiet=True).passed
    assert ch03.check_attention(F.scaled_dot_product_attention, quiet=True).passed


def test_attention_stub(capsys):
    r = ch03.check_attention(attention_stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("key", list(ATTENTION_MISTAKES))
def test_attention_mistakes(key):
    r = ch03.check_attention(ATTENTION_MISTAKES[key], quiet=True, seed=3)
    assert not r.passed
    assert r.key == key, r.message


def test_attention_hints_differ():
    msgs = {ch03.check_attention(f, quiet=True, seed=4).message.split(" (With")[0] for f in ATTENTION_MISTAKES.values()}
    assert len(msgs) == len(ATTENTION_MISTAKES)


def test_unknown_shape_error_gets_generic_transpose_hint():
    def weird(Q, K, V):  # fits neither the non-square nor the square inputs
        return Q @ torch.ones(7, 7, dtype=Q.dtype)

    r = ch03.check_attention(weird, quiet=True)
    assert r.key == "wrong transpose" and "Q @ K.transpose(-2, -1)" in r.message


def test_other_exceptions_are_reported(capsys):
    def broken(Q, K, V):
        raise KeyError("oops")

    r = ch03.check_attention(broken)
    assert r.key == "exception" and "KeyError" in capsys.readouterr().out


def test_checkers_never_raise_and_print_one_line(capsys):
    ch03.check_attention(ATTENTION_MISTAKES["K @ Qᵀ"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("✗ attention:")

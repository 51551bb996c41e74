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
    "d_k**1/2": lambda Q, K: Q @ K.mT / Q.shape[-1] ** 1/2,  # ** binds tighter than /
    "transpose(0, 1)": lambda Q, K: Q @ K.transpose(0, 1) / math.sqrt(Q.shape[-1]),  # raises
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
    # the softmax slips of chapter 2, and the soft-lookup slips of chapter 1, made again here
    "√d_v": lambda Q, K, V: F.softmax(_s(Q, K) / math.sqrt(V.shape[-1]), dim=-1) @ V,
    "scaled after softmax": lambda Q, K, V: F.softmax(_s(Q, K), dim=-1) / math.sqrt(Q.shape[-1]) @ V,
    "whole tensor": lambda Q, K, V: (lambda e: e / e.sum())(torch.exp(_S(Q, K))) @ V,
    "log-softmax": lambda Q, K, V: F.log_softmax(_s(Q, K) / math.sqrt(Q.shape[-1]), dim=-1) @ V,
    "divided by max": lambda Q, K, V: (lambda s: torch.exp(s - s.amax(-1, keepdim=True)))(_S(Q, K)) @ V,
    "no exp": lambda Q, K, V: (lambda s: s / s.sum(-1, keepdim=True))(_S(Q, K)) @ V,
    "keepdim": lambda Q, K, V: (lambda e: e / e.sum(-1))(torch.exp(_S(Q, K))) @ V,  # raises on T ≠ S
    "sigmoid": lambda Q, K, V: torch.sigmoid(_s(Q, K) / math.sqrt(Q.shape[-1])) @ V,
    "hard lookup": lambda Q, K, V: F.one_hot(_s(Q, K).argmax(-1), K.shape[-2]).double() @ V,
    "plain average": lambda Q, K, V: V.mean(dim=-2, keepdim=True).expand(*Q.shape[:-1], V.shape[-1]),
    "returned scores": lambda Q, K, V: _s(Q, K) / math.sqrt(Q.shape[-1]),
    "max returns a pair": lambda Q, K, V: torch.exp(_s(Q, K) - _s(Q, K).max(-1)) @ V,
    "d_k**1/2": lambda Q, K, V: F.softmax(_s(Q, K) / Q.shape[-1] ** 1/2, dim=-1) @ V,  # ** before /
    "transpose(0, 1)": lambda Q, K, V: F.softmax(Q @ K.transpose(0, 1) / math.sqrt(Q.shape[-1]), -1) @ V,
    "weights @ Vᵀ": lambda Q, K, V: F.softmax(_S(Q, K), dim=-1) @ V.mT,
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


def _S(Q, K):  # the right scores
    return _s(Q, K) / math.sqrt(Q.shape[-1])


def naive_softmax(s):
    e = torch.exp(s)
    return e / e.sum(-1, keepdim=True)


def min_shift_softmax(s):
    e = torch.exp(s - s.amin(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


@pytest.mark.parametrize("fn, key, words", [
    # overflow: right on ordinary inputs, NaN on scores in the thousands
    (lambda Q, K, V: naive_softmax(_S(Q, K)) @ V, "no max subtraction", "max"),
    (lambda Q, K, V: min_shift_softmax(_S(Q, K)) @ V, "no max subtraction", "not its min or mean"),
    # unlisted slips, named by a property of the output or of the weights behind it
    (lambda Q, K, V: F.softmax(_s(Q, K) / 3, dim=-1) @ V, "wrong scale", "softmax(Q Kᵀ / 3)"),
    (lambda Q, K, V: 3 * F.softmax(_S(Q, K), dim=-1) @ V, "output times constant", "times 3"),
    (lambda Q, K, V: (F.softmax(_S(Q, K), dim=-1) @ V).mT, "transposed output", "transposed"),
    (lambda Q, K, V: F.softmax(-_S(Q, K), dim=-1) @ V, "sign flipped", "lowest"),
    (lambda Q, K, V: F.softmax(_S(Q, K), dim=-1) @ V + 1, "not a mix of values", "weights @ V"),
    (lambda Q, K, V: (F.softmax(_S(Q, K), dim=-1) @ V).flip(-2), "rows permuted", "wrong order"),
    (lambda Q, K, V: (F.softmax(_S(Q, K), dim=-1) + 0.1) @ V, "rows do not sum to 1", "should sum to 1"),
    (lambda Q, K, V: naive_softmax(_S(Q, K)) / 2 @ V, "output times constant", "times 0.5"),
    (lambda Q, K, V: (lambda e: e / (1 + e.sum(-1, keepdim=True)))(torch.exp(_S(Q, K))) @ V,
     "not normalised", "proportions are right"),
    (lambda Q, K, V: (lambda e: e / e.sum(-1, keepdim=True))(_s(Q, K) ** 2) @ V, "not softmax", "exponent"),
])
def test_attention_slips_named_by_trial_or_property(fn, key, words):
    for seed in (0, 1, 2):
        r = ch03.check_attention(fn, quiet=True, seed=seed)
        assert r.key == key and words in r.message, r.message


@pytest.mark.parametrize("fn, key, words", [
    (lambda Q, K: Q @ K.mT / 3, "wrong scale", "Q Kᵀ / 3"),
    (lambda Q, K: scores_ok(Q, K) + 1, "offset", "plus 1"),
    (lambda Q, K: scores_ok(Q, K).flip(-1), "permuted", "wrong places"),
])
def test_scaled_scores_unlisted_slips(fn, key, words):
    r = ch03.check_scaled_scores(fn, quiet=True, seed=0)
    assert r.key == key and words in r.message, r.message


@pytest.mark.parametrize("key", sorted({m.key for m in ch03._ATTENTION_MISTAKES}))
def test_attention_every_listed_mistake_is_named(key):
    m = next(m for m in ch03._ATTENTION_MISTAKES if m.key == key)
    for seed in (0, 1):
        assert ch03.check_attention(m.fn, quiet=True, seed=seed).key == key


def test_unknown_shape_error_gets_generic_transpose_hint():
    def weird(Q, K, V):  # fits neither the non-square nor the square inputs
        return Q @ torch.ones(8, 8, dtype=Q.dtype)

    r = ch03.check_attention(weird, quiet=True)
    assert r.key == "wrong transpose" and "Q @ K.transpose(-2, -1)" in r.message
    assert r.message.index("Q @ K.transpose") < r.message.index("(your code raised RuntimeError")


def test_other_exceptions_are_reported(capsys):
    def broken(Q, K, V):
        raise KeyError("oops")

    r = ch03.check_attention(broken)
    assert r.key == "exception" and "KeyError" in capsys.readouterr().out


def test_checkers_never_raise_and_print_one_line(capsys):
    ch03.check_attention(ATTENTION_MISTAKES["K @ Qᵀ"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("✗ attention:")


def test_names_every_slip_chapters_1_and_2_name():
    """One shared list: chapter 3's attention checker knows the soft-lookup slips of chapter 1 (bar the
    ones about one query and about scaling) and the softmax slips of chapter 2 (bar those about `dim`)."""
    from kqvlib.exercises import ch01, ch02

    ch03_keys = {m.key for m in ch03._ATTENTION_MISTAKES + ch03._ATTENTION_TRANSPOSE_MISTAKES}
    assert {m.key for m in ch01._BATCH_MISTAKES} - {"one query", "scaled"} <= ch03_keys
    softmax_keys = {m.key for m in ch02._SOFTMAX_MISTAKES} - {"wrong axis", "ignored dim", "max along another axis"}
    assert softmax_keys <= ch03_keys  # "wrong axis" is "softmax over queries" / "softmax over batch" here

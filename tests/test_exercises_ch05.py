"""Chapter 5 checkers: the reference passes, a stub is "not attempted", a function that raises does not
crash the checker, and each likely mistake gets its own hint.

The wrong versions below are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch05.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kqvlib
from kqvlib.exercises import ch05

# K.T on a 3-D tensor is one of the mistakes we test; PyTorch warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")


def stub(*args):
    raise NotImplementedError  # your code here


def broken(*args):
    raise KeyError("oops")


# --- causal_mask ----------------------------------------------------------------------------------

def causal_ok(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


def causal_ok_compare(T):
    t = torch.arange(T)
    return t[None, :] <= t[:, None]  # key s ≤ query t


CAUSAL_MISTAKES = {
    "wrong triangle": lambda T: torch.triu(torch.ones(T, T)).bool(),
    "inverted": lambda T: torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1),
    "diagonal excluded": lambda T: torch.arange(T)[None, :] < torch.arange(T)[:, None],
    "one future key": lambda T: torch.tril(torch.ones(T, T), diagonal=1) == 1,
    "nothing blocked": lambda T: torch.ones(T, T, dtype=torch.bool),
    "0/1 numbers": lambda T: torch.tril(torch.ones(T, T)),
    "additive mask": lambda T: torch.zeros(T, T).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf")),
}


@pytest.mark.parametrize("fn", [causal_ok, causal_ok_compare, kqvlib.causal_mask])
def test_causal_mask_accepts_reference(fn):
    r = ch05.check_causal_mask(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


def test_causal_mask_as_numpy_is_named():  # the exercise asks for a tensor: masked_fill cannot take an array
    r = ch05.check_causal_mask(lambda T: np.tril(np.ones((T, T), dtype=bool)), quiet=True)
    assert not r.passed and r.key == "numpy mask", r.message


@pytest.mark.parametrize("key", list(CAUSAL_MISTAKES))
def test_causal_mask_mistakes(key):
    r = ch05.check_causal_mask(CAUSAL_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


def test_causal_mask_int_mask_is_numbers():
    r = ch05.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.long).tril(), quiet=True)
    assert r.key == "0/1 numbers" and "torch.int64" in r.message


def test_causal_mask_stub_and_errors(capsys):
    assert ch05.check_causal_mask(stub).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    r = ch05.check_causal_mask(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert r.key == "exception" and len(out) == 1 and "KeyError" in out[0]


# --- padding_mask ---------------------------------------------------------------------------------

def padding_ok(lengths, S):
    mask = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    return mask[:, None, None, :]  # (B, 1, 1, S)


def padding_ok_loop(lengths, S):
    mask = torch.zeros(len(lengths), 1, 1, S, dtype=torch.bool)
    for b, L in enumerate(lengths.tolist()):
        mask[b, 0, 0, :L] = True
    return mask


def _pad(lengths, S):
    return torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)


PADDING_MISTAKES = {
    "inverted": lambda L, S: (torch.arange(S)[None, :] >= L[:, None])[:, None, None, :],
    "masks queries": lambda L, S: _pad(L, S)[:, None, :, None],
    "queries and keys": lambda L, S: (_pad(L, S)[:, :, None] & _pad(L, S)[:, None, :])[:, None],
    "(B, S)": lambda L, S: _pad(L, S),
    "(B, 1, S)": lambda L, S: _pad(L, S).unsqueeze(1),
    "one padding key too many": lambda L, S: (torch.arange(S)[None, :] <= L[:, None]).view(len(L), 1, 1, S),
    "last token blocked": lambda L, S: (torch.arange(1, S + 1)[None, :] < L[:, None]).view(len(L), 1, 1, S),
    "left padding": lambda L, S: torch.stack([torch.arange(S) >= S - n for n in L])[:, None, None, :],
    "0/1 numbers": lambda L, S: _pad(L, S).float()[:, None, None, :],
    "additive mask": lambda L, S: kqvlib.as_additive(padding_ok(L, S)),
    "used the longest length": lambda L, S: (torch.arange(int(L.max()))[None, :] < L[:, None])[:, None, None, :],
}


@pytest.mark.parametrize("fn", [padding_ok, padding_ok_loop, kqvlib.padding_mask])
def test_padding_mask_accepts_reference(fn):
    r = ch05.check_padding_mask(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


@pytest.mark.parametrize("key", list(PADDING_MISTAKES))
def test_padding_mask_mistakes(key):
    r = ch05.check_padding_mask(PADDING_MISTAKES[key], quiet=True, seed=2)
    assert not r.passed
    assert r.key == key, r.message


def test_padding_mask_stub_and_errors(capsys):
    assert ch05.check_padding_mask(stub).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    assert ch05.check_padding_mask(broken, quiet=True).key == "exception"


# --- masked_attention -----------------------------------------------------------------------------

def attention_ok(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    return kqvlib.softmax(scores, dim=-1) @ V  # kqvlib.softmax: an all -inf row gives zeros


def attention_ok_where(Q, K, V, mask):
    scores = Q @ K.mT / Q.shape[-1] ** 0.5
    w = torch.softmax(torch.where(mask, scores, -torch.inf), dim=-1)  # NaN on a fully blocked row …
    w = torch.where(mask.any(dim=-1, keepdim=True), w, 0.0)  # … set to zero
    return w @ V


def attention_ok_big_negative(Q, K, V, mask):
    """-1e9 instead of -inf is accepted, as long as fully blocked rows get zeros."""
    scores = (Q @ K.mT / math.sqrt(Q.shape[-1])).masked_fill(mask == 0, -1e9)
    w = F.softmax(scores, dim=-1) * mask.any(-1, keepdim=True)
    return w @ V


def _s(Q, K):
    return Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])


def _sm(x):
    return torch.softmax(x, dim=-1)


def _forgot_to_assign(Q, K, V, mask):
    scores = _s(Q, K)
    scores.masked_fill(~mask, float("-inf"))  # returns a new tensor, which is thrown away
    return _sm(scores) @ V


def _renormalised_after(Q, K, V, mask):
    w = _sm(_s(Q, K)) * mask
    return w / w.sum(-1, keepdim=True) @ V  # 0/0 on a fully blocked row


ATTENTION_MISTAKES = {
    "mask ignored": _forgot_to_assign,
    "inverted mask": lambda Q, K, V, m: kqvlib.softmax(_s(Q, K).masked_fill(m, float("-inf"))) @ V,
    "masked after softmax": lambda Q, K, V, m: (_sm(_s(Q, K)) * m) @ V,
    "filled with 0": lambda Q, K, V, m: _sm(_s(Q, K) * m) @ V,
    "bool mask added": lambda Q, K, V, m: _sm(_s(Q, K) + m) @ V,
    "finite fill on blocked row": lambda Q, K, V, m: _sm(_s(Q, K).masked_fill(~m, -1e9)) @ V,
    "finite fill on blocked row (added)": lambda Q, K, V, m: _sm(_s(Q, K) + (1 - m.double()) * -1e9) @ V,
    "fully masked row": lambda Q, K, V, m: _sm(_s(Q, K).masked_fill(~m, float("-inf"))) @ V,  # NaN
    "mask transposed": lambda Q, K, V, m: kqvlib.softmax(_s(Q, K).masked_fill(~m.T, -torch.inf)) @ V,
    "1 - mask": lambda Q, K, V, m: kqvlib.softmax(_s(Q, K).masked_fill((1 - m).bool(), -torch.inf)) @ V,
    "boolean indexing": lambda Q, K, V, m: _index_fill(Q, K, V, m),
    "extra batch axes": lambda Q, K, V, m: kqvlib.softmax(
        (Q @ K.transpose(1, 2) / math.sqrt(Q.shape[-1])).masked_fill(~m, -torch.inf)) @ V,
    # the shared attention slips, with the mask applied
    "not scaled": lambda Q, K, V, m: kqvlib.softmax((Q @ K.mT).masked_fill(~m, -torch.inf)) @ V,
    "divided by d_k": lambda Q, K, V, m: kqvlib.softmax((Q @ K.mT / Q.shape[-1]).masked_fill(~m, -torch.inf)) @ V,
    "softmax over queries": lambda Q, K, V, m: torch.softmax(_s(Q, K).masked_fill(~m, -torch.inf), dim=-2) @ V,
    "returned weights": lambda Q, K, V, m: kqvlib.softmax(_s(Q, K).masked_fill(~m, -torch.inf)),
    "K @ Qᵀ": lambda Q, K, V, m: kqvlib.softmax((K @ Q.mT / math.sqrt(Q.shape[-1])).masked_fill(~m, -torch.inf)) @ V,
    "V @ weights": lambda Q, K, V, m: V @ kqvlib.softmax(_s(Q, K).masked_fill(~m, -torch.inf)),
}


def _index_fill(Q, K, V, mask):
    scores = _s(Q, K)
    scores[~mask] = float("-inf")  # needs a mask of the scores' full shape
    return kqvlib.softmax(scores) @ V


@pytest.mark.parametrize("fn", [attention_ok, attention_ok_where, attention_ok_big_negative,
                                kqvlib.scaled_dot_product_attention,
                                lambda Q, K, V, m: F.scaled_dot_product_attention(Q, K, V, attn_mask=m)])
def test_masked_attention_accepts_reference(fn):
    r = ch05.check_masked_attention(fn, quiet=True)
    assert r.passed and r.key == "ok", r.message


@pytest.mark.parametrize("key", list(ATTENTION_MISTAKES))
def test_masked_attention_mistakes(key):
    r = ch05.check_masked_attention(ATTENTION_MISTAKES[key], quiet=True, seed=3)
    assert not r.passed
    assert r.key == key.split(" (")[0], r.message


def test_masked_attention_renormalising_after_the_softmax_is_the_nan_row():
    r = ch05.check_masked_attention(_renormalised_after, quiet=True, seed=4)
    assert r.key == "fully masked row" and "NaN" in r.message


def test_masked_attention_hints_differ():
    msgs = {ch05.check_masked_attention(f, quiet=True, seed=5).details.get("hint") for f in ATTENTION_MISTAKES.values()}
    assert len(msgs) == len(ATTENTION_MISTAKES)  # the two finite fills: one key, a hint for each


def test_masked_attention_zero_times_minus_inf_gets_the_nan_hint():
    def multiplied(Q, K, V, m):  # 0 · (-inf) = NaN wherever the mask is True
        return torch.softmax(_s(Q, K) * m + (~m) * float("-inf"), dim=-1) @ V

    r = ch05.check_masked_attention(multiplied, quiet=True, seed=7)
    assert r.key == "nan" and "0 · (-inf)" in r.message


def test_masked_attention_property_names_blocked_weight():
    def half_masked(Q, K, V, m):  # blocked scores lowered a little, not to -inf: blocked keys keep weight
        return kqvlib.softmax(_s(Q, K) - 2.0 * (~m)) @ V

    r = ch05.check_masked_attention(half_masked, quiet=True, seed=6)
    assert r.key == "blocked keys get weight", r.message


def test_masked_attention_stub_and_errors(capsys):
    assert ch05.check_masked_attention(stub).key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    r = ch05.check_masked_attention(broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert r.key == "exception" and len(out) == 1
    assert out[0].index("The line that raised it") < out[0].index("KeyError")  # the hint, with the line, first


def test_all_hints_name_no_other_mistake_keys():
    """Each checker prints one line, starting with ✗ and the exercise name."""
    for check, fn in [(ch05.check_causal_mask, CAUSAL_MISTAKES["inverted"]),
                      (ch05.check_padding_mask, PADDING_MISTAKES["masks queries"]),
                      (ch05.check_masked_attention, ATTENTION_MISTAKES["mask transposed"])]:
        r = check(fn, quiet=True)
        assert r.message.startswith("✗ ") and "\n" not in r.message


def test_masked_attention_property_names_rows_that_do_not_sum_to_one():
    def plus_one(Q, K, V, m):  # exp / (sum + 1): blocked keys get nothing, but the rows sum to less than 1
        e = _s(Q, K).masked_fill(~m, float("-inf")).exp()
        return e / (e.sum(-1, keepdim=True) + 1) @ V

    r = ch05.check_masked_attention(plus_one, quiet=True, seed=8)
    assert r.key == "rows do not sum to 1", r.message


# --- slips nobody listed: named by the mask diagnosis -----------------------------------------------------------

@pytest.mark.parametrize("fn, key", [
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(-1), "wrong entries"),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril().flip(0), "reversed"),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril()[:-1], "off by one"),
])
def test_causal_mask_unlisted_slips(fn, key):
    r = ch05.check_causal_mask(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message


@pytest.mark.parametrize("fn, key", [
    (lambda L, S: (torch.arange(S)[None, :] < L.max())[:, None, None, :].expand(len(L), 1, 1, S),
     "one length for the batch"),
    (lambda L, S: (torch.arange(S)[None, :] < L[:, None])[None, None], "axis of size 1"),
    (lambda L, S: (torch.arange(S)[None, :] < L[:, None] - 1)[:, None, None, :], "last token blocked"),
])
def test_padding_mask_unlisted_slips(fn, key):
    r = ch05.check_padding_mask(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message

"""The checker mechanism: mistakes, trials, properties, errors reported hint first, never raising, and one
signature for every checker of chapters 1–4. (Chapter 1's checkers are in test_exercises_ch01.py.)"""
import inspect
import re

import numpy as np
import pytest
import torch

from kqvlib import softmax
from kqvlib.checks import Mistake, Property, Trial, check, constant_factor, constant_offset, permuted, transposed
from kqvlib.exercises import ch01, ch02, ch03, ch04


def _rows(g):
    return (torch.randn(3, 5, generator=g, dtype=torch.float64),)


def _huge(g):
    return (1000 + 10 * torch.randn(3, 5, generator=g, dtype=torch.float64),)


def _sums_to_one(args, got, expected):
    if got.shape != expected.shape or torch.allclose(got.sum(-1), torch.ones(3, dtype=torch.float64)):
        return None
    return "rows must sum to 1."


def softmax_check(fn, **kw):
    return check(
        "softmax", fn, softmax, [Trial(_rows), Trial(_huge, "overflow", "subtract the max before exp.")],
        mistakes=[Mistake("wrong axis", lambda x: softmax(x, dim=0), "wrong axis."),
                  Mistake("no normalisation", lambda x: torch.exp(x), "divide by the sum.")],
        properties=[Property("rows", _sums_to_one)], quiet=True, **kw,
    )


def naive(x):
    e = torch.exp(x)
    return e / e.sum(-1, keepdim=True)


def test_reference_passes():
    r = softmax_check(softmax)
    assert r.passed and r.key == "ok" and r.message == "✓ softmax: correct on 6 random tests."


@pytest.mark.parametrize("fn, key", [
    (lambda x: torch.exp(x) / torch.exp(x).sum(0, keepdim=True), "wrong axis"),
    (lambda x: torch.exp(x), "no normalisation"),
    (naive, "overflow"),
    (lambda x: 2 * softmax(x), "rows"),  # no mistake matches: the property names it
    (lambda x: x[:, :2], "wrong shape"),
    (lambda x: softmax(x).flip(-1), "wrong values"),  # rows sum to 1, nothing else known
    (lambda x: None, "returned None"),
    (lambda x: [softmax(x)], "returned a list"),
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
    out = capsys.readouterr().out
    assert r.key == "exception" and out.startswith("✗ softmax: your function stopped with an error")
    assert out.rstrip().endswith(")") and "(your code raised RuntimeError:" in out  # hint first, raw error last


def test_explain_names_an_error_hint_first():
    r = check("softmax", lambda x: x @ torch.ones(2), softmax, _rows, quiet=True,
              explain=lambda e: ("matmul", "a product did not fit."))
    assert r.key == "matmul" and re.fullmatch(r"✗ softmax: a product did not fit\. \(your code raised RuntimeError: .*\)",
                                              r.message)


def test_error_on_a_later_trial_gets_that_trials_hint():
    def breaks_on_huge(x):
        if x.abs().max() > 100:
            raise ValueError("too big")
        return softmax(x)

    r = softmax_check(breaks_on_huge)
    assert r.key == "overflow" and r.message == "✗ softmax: subtract the max before exp. (your code raised ValueError: too big)"


def test_inputs_are_fresh_each_call_and_in_place_edits_harm_nothing():
    seen = []

    def spy(x):
        seen.append(x.clone())
        return softmax(x)

    check("softmax", spy, softmax, _rows, quiet=True)
    check("softmax", spy, softmax, _rows, quiet=True)
    assert not torch.equal(seen[0], seen[3])

    def in_place(x):  # changes its input: the mistakes must still see the original
        x += 1.0
        return torch.exp(x - 1.0)

    assert softmax_check(in_place).key == "no normalisation"


def test_checker_never_raises_even_on_odd_returns():
    for odd in ("nonsense", np.array(["a", "b"]), np.array([1 + 2j]), {"a": 1}, 3):
        r = check("softmax", lambda x, o=odd: o, softmax, _rows, quiet=True, properties=[Property("p", _sums_to_one)])
        assert not r.passed


def test_a_broken_property_or_reference_does_not_raise():
    def boom(*a):
        raise RuntimeError("bug in the checker")

    assert softmax_check(naive, seed=0).key == "overflow"
    r = check("softmax", lambda x: 2 * x, softmax, _rows, quiet=True, properties=[Property("boom", boom)])
    assert r.key == "wrong values"
    r = check("softmax", softmax, boom, _rows, quiet=True)
    assert r.key == "checker error" and not r.passed


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
    assert r.key == "no transpose" and r.message.startswith("✗ scores: transpose K. (your code raised RuntimeError")
    r = check("scores", lambda Q, K: Q @ K[:2], ref, rect, quiet=True, diagnose=Trial(square), diagnose_mistakes=[no_transpose])
    assert r.key == "exception"


def test_property_helpers():
    x = torch.randn(3, 4, dtype=torch.float64)
    assert constant_factor(2.5 * x, x) == pytest.approx(2.5) and constant_factor(x, x) is None
    assert constant_offset(x + 0.7, x) == pytest.approx(0.7) and constant_offset(x, x) is None
    assert transposed(x.T, x) and not transposed(x, x)
    assert permuted(x.flip(-1), x) and not permuted(x, x) and not permuted(2 * x, x)


CHECKERS = [ch01.check_cosine_similarity, ch01.check_soft_lookup, ch01.check_soft_lookup_batch,
            ch02.check_softmax, ch02.check_temperature_softmax, ch03.check_scaled_scores, ch03.check_attention,
            ch04.check_self_attention]


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_every_checker_has_one_signature(checker):
    params = inspect.signature(checker).parameters
    assert list(params) == ["fn", "seed", "quiet"]
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY and params["seed"].default is None
    assert params["quiet"].kind is inspect.Parameter.KEYWORD_ONLY and params["quiet"].default is False


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_every_checker_prints_one_line_and_never_raises(checker, capsys):
    def crash(*args):
        raise KeyError("oops")

    r = checker(crash, seed=0)
    out = capsys.readouterr().out.splitlines()
    assert not r.passed and len(out) == 1 and out[0].startswith("✗ ")
    assert out[0].index("(your code raised KeyError") > out[0].index(": ") + 2  # a hint comes first
    assert checker(lambda *a: None, quiet=True).key == "returned None"


# --- chapters 5–12: diagnosis by property, and no input can make a checker raise ---------------------------------

def _chapter_checkers():
    from kqvlib.exercises import ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12
    return [getattr(m, n) for m in (ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12) for n in m.__all__
            if n.startswith("check_")]


def _garbage(kind):
    def fn(*args):
        if kind == "raises":
            raise RuntimeError("boom")
        if kind == "stub":
            raise NotImplementedError
        return {"none": None, "str": "hello", "int": 3, "nan": float("nan"), "dict": {1: 2}, "empty": [],
                "nested": [[None]], "first arg": args[0] if args else None, "tensor": torch.ones(2, 2),
                "array": np.zeros((3, 3)), "tuple": (1, 2, 3), "complex": torch.ones(2, dtype=torch.cfloat)}[kind]
    return fn


@pytest.mark.parametrize("kind", ["raises", "stub", "none", "str", "int", "nan", "dict", "empty", "nested",
                                  "first arg", "tensor", "array", "tuple", "complex"])
def test_no_input_makes_a_checker_of_chapters_5_to_12_raise(kind, capsys):
    for checker in _chapter_checkers():
        r = checker(_garbage(kind), seed=0)
        out = capsys.readouterr().out.strip().splitlines()
        assert not r.passed and len(out) == 1 and r.key != "checker error", (checker.__name__, r.message)
        assert (r.key == "not attempted") == (kind == "stub"), (checker.__name__, r.message)


def test_describe_names_what_a_wrong_answer_is():
    from kqvlib.exercises.diagnose import describe
    e = torch.randn(2, 3, 5, dtype=torch.float64)
    cases = {"times constant": 2 * e, "offset": e + 0.5, "transposed": e.mT, "axes permuted": e.permute(1, 0, 2),
             "shifted by one": e.roll(1, dims=2), "off by one": e[..., :-1], "reduced an axis": e.sum(1),
             "reversed": e.flip(1), "sign flipped": -e, "axis of size 1": e[:, None]}
    for key, got in cases.items():
        assert describe(got, e, ("query", "key"))[0] == key, (key, describe(got, e))
    assert describe((e, e + 1), (e + 1, e))[0] == "results swapped"
    assert describe(e, (e, e + 1))[0] == "returned part"
    assert describe(e, e) is None or describe(e, e)[0] != "times constant"


def test_raw_errors_name_the_learners_line():
    from kqvlib.exercises.errors import explain_raw
    try:
        x = torch.ones(2, 3)
        x @ x  # a product that does not fit
    except RuntimeError as e:
        key, hint = explain_raw(e)
    assert key == "matmul" and "`x @ x  # a product that does not fit`" in hint


@pytest.mark.parametrize("checker, fn, key", [
    ("ch05.check_masked_attention", lambda Q, K, V, m: (kqvlib_sdpa(Q, K, V, m), None), "returned extra"),
    ("ch09.check_batch", lambda d, s, T: ([d[i:i + T] for i in s], [d[i + 1:i + T + 1] for i in s]), "list of rows"),
    ("ch09.check_pair_counts", lambda ids: {p: 1 + sum(q == p for q in zip(ids, ids[1:])) for p in zip(ids, ids[1:])},
     "counts off by a constant"),
    ("ch11.check_top_k_probs", lambda x, k: x.masked_fill(x < torch.topk(x.flatten(), k).values[-1], float("-inf"))
     .softmax(-1), "one cut-off for the batch"),
    ("ch12.check_cross_attention", lambda x, m, mask, Wq, Wk, Wv: torch.softmax(
        ((x @ Wq) @ (m @ Wk).mT / (Wq.shape[-1] ** 0.5)).masked_fill(~mask[:1, None, :], float("-inf")), -1) @ (m @ Wv),
     "one row's mask"),
])
def test_families_of_unlisted_slips_are_named(checker, fn, key):
    from kqvlib.exercises import ch05, ch09, ch11, ch12  # noqa: F401
    r = eval(checker)(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message


def kqvlib_sdpa(Q, K, V, m):
    from kqvlib import scaled_dot_product_attention
    return scaled_dot_product_attention(Q, K, V, m)


def test_chapter_explanations_quote_the_learners_line():
    from kqvlib.exercises import ch12

    def broken(x, memory, memory_mask, Wq, Wk, Wv):
        scores = (x @ Wq) @ (memory @ Wk).mT
        return torch.softmax(scores, -1) @ (memory @ Wv) + 0 * (memory @ Wv)  # (B, T, d_v) + (B, S, d_v)
    r = ch12.check_cross_attention(broken, seed=0, quiet=True)
    assert not r.passed and "+ 0 * (memory @ Wv)" in r.message, r.message

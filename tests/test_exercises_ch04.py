"""Chapter 4's checker: accepts a right answer, and names each likely mistake — its own, and every one that
chapters 1–3 name for the same formula (one shared list)."""
import math

import pytest
import torch

from kqvlib.exercises import ch04


def right(X, W_q, W_k, W_v):
    Q = X @ W_q  # (n, d_k)
    K = X @ W_k  # (n, d_k)
    V = X @ W_v  # (n, d_v)
    scores = Q @ K.T / math.sqrt(K.shape[-1])  # (n, n)
    return torch.softmax(scores, dim=-1) @ V  # (n, d_v)


def stub(X, W_q, W_k, W_v):
    raise NotImplementedError


def keys_as_queries(X, W_q, W_k, W_v):
    Q, K = X @ W_k, X @ W_q
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ (X @ W_v)


def raw_values(X, W_q, W_k, W_v):
    Q, K = X @ W_q, X @ W_k
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ X


def unscaled(X, W_q, W_k, W_v):
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    return torch.softmax(Q @ K.T, dim=-1) @ V


def column_softmax(X, W_q, W_k, W_v):
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=0) @ V


def transposed_weights(X, W_q, W_k, W_v):
    # the nn.Linear habit: x @ weight.T
    Q, K, V = X @ W_q.T, X @ W_k.T, X @ W_v.T
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V


def forgot_k_transpose(X, W_q, W_k, W_v):
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    return torch.softmax(Q @ K / math.sqrt(Q.shape[-1]), dim=-1) @ V


def other_crash(X, W_q, W_k, W_v):
    return X @ W_q @ X  # a shape error that is none of the named mistakes


def test_accepts_the_reference(capsys):
    r = ch04.check_self_attention(right)
    assert r.passed and r.key == "ok"
    assert "✓" in capsys.readouterr().out


def test_numpy_style_answer_is_accepted():
    def via_numpy(X, W_q, W_k, W_v):
        X, W_q, W_k, W_v = (t.numpy() for t in (X, W_q, W_k, W_v))
        s = (X @ W_q) @ (X @ W_k).T / math.sqrt(W_q.shape[1])
        e = __import__("numpy").exp(s - s.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)) @ (X @ W_v)

    assert ch04.check_self_attention(via_numpy, quiet=True).key == "ok"


def test_stub_is_not_attempted(capsys):
    r = ch04.check_self_attention(stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out


def _attend(scores_fn, weights_fn=lambda s: torch.softmax(s, dim=-1)):
    """A learner's self-attention whose scores or softmax step differ from the formula."""
    def fn(X, W_q, W_k, W_v):
        Q, K, V = X @ W_q, X @ W_k, X @ W_v
        return weights_fn(scores_fn(Q, K, X)) @ V
    return fn


def _scaled(Q, K, X):
    return Q @ K.T / math.sqrt(K.shape[-1])


def _exp_over(denominator):
    return lambda s: torch.exp(s) / denominator(torch.exp(s))


CASES = {
    "swapped q and k": keys_as_queries,
    "values not projected": raw_values,
    "not scaled": unscaled,
    "softmax over queries": column_softmax,
    "weight transposed": transposed_weights,
    "K not transposed": forgot_k_transpose,
    # the slips chapter 3's checker names, made here again
    "divided by d_k": _attend(lambda Q, K, X: Q @ K.T / K.shape[-1]),
    "√d_model": _attend(lambda Q, K, X: Q @ K.T / math.sqrt(X.shape[-1])),
    "√T": _attend(lambda Q, K, X: Q @ K.T / math.sqrt(Q.shape[0])),
    "√d_v": lambda X, W_q, W_k, W_v: torch.softmax((X @ W_q) @ (X @ W_k).T / math.sqrt(W_v.shape[1]), -1) @ (X @ W_v),
    "multiplied by √d_k": _attend(lambda Q, K, X: Q @ K.T * math.sqrt(K.shape[-1])),
    "scaled after softmax": _attend(lambda Q, K, X: Q @ K.T, lambda s: torch.softmax(s, -1) / math.sqrt(3)),
    "not normalised": _attend(_scaled, torch.exp),
    "whole tensor": _attend(_scaled, _exp_over(lambda e: e.sum())),
    "keepdim": _attend(_scaled, _exp_over(lambda e: e.sum(dim=-1))),
    "divided by max": _attend(_scaled, _exp_over(lambda e: e.amax(dim=-1, keepdim=True))),
    "no exp": _attend(_scaled, lambda s: s / s.sum(-1, keepdim=True)),
    "log-softmax": _attend(_scaled, lambda s: torch.log_softmax(s, -1)),
    "no softmax": _attend(_scaled, lambda s: s),
    "hard lookup": _attend(_scaled, lambda s: torch.nn.functional.one_hot(s.argmax(-1), s.shape[-1]).double()),
    "plain average": lambda X, W_q, W_k, W_v: (X @ W_v).mean(dim=0),
    "returned weights": lambda X, W_q, W_k, W_v: torch.softmax(_scaled(X @ W_q, X @ W_k, X), -1),
    "V @ weights": lambda X, W_q, W_k, W_v: (X @ W_v) @ torch.softmax(_scaled(X @ W_q, X @ W_k, X), -1),
    "weightsᵀ @ V": lambda X, W_q, W_k, W_v: torch.softmax(_scaled(X @ W_q, X @ W_k, X), -1).T @ (X @ W_v),
    "no projections": lambda X, W_q, W_k, W_v: torch.softmax(X @ X.T / math.sqrt(X.shape[1]), -1) @ X,
    "no max subtraction": _attend(_scaled, _exp_over(lambda e: e.sum(-1, keepdim=True))),
    "d_k**1/2": _attend(lambda Q, K, X: Q @ K.T / K.shape[-1] ** 1/2),
    "W @ X": lambda X, W_q, W_k, W_v: torch.softmax((W_q @ X) @ (W_k @ X).T / W_q.shape[1] ** 0.5, -1) @ (W_v @ X),
    "W_v as values": lambda X, W_q, W_k, W_v: torch.softmax(_scaled(X @ W_q, X @ W_k, X), -1) @ W_v,
    "weights @ Vᵀ": lambda X, W_q, W_k, W_v: torch.softmax(_scaled(X @ W_q, X @ W_k, X), -1) @ (X @ W_v).T,
    # unlisted slips, named by a property of the weights behind the output
    "wrong scale": _attend(lambda Q, K, X: Q @ K.T / 2.5),
    "rows do not sum to 1": _attend(_scaled, lambda s: torch.softmax(s, -1) + 0.1),
    "output times constant": lambda X, W_q, W_k, W_v: 2 * right(X, W_q, W_k, W_v),
    "sign flipped": _attend(lambda Q, K, X: -_scaled(Q, K, X)),
    "not a mix of values": lambda X, W_q, W_k, W_v: right(X, W_q, W_k, W_v) + 1,
    "transposed output": lambda X, W_q, W_k, W_v: right(X, W_q, W_k, W_v).T,
}


def test_each_mistake_gets_its_own_hint():
    messages = {}
    for key, fn in CASES.items():
        for seed in (0, 1, 2):
            r = ch04.check_self_attention(fn, quiet=True, seed=seed)
            assert not r.passed and r.key == key, (key, r.key, r.message)
        messages[key] = r.message.split(" (your code raised")[0]
    listed = {k: m for k, m in messages.items() if k in {m.key for m in ch04._MISTAKES + ch04._DIAGNOSTIC_MISTAKES}}
    assert len(set(listed.values())) == len(listed)


SHADOWED = {"K.T", "softmax over batch", "K @ Qᵀ", "no transpose", "Kᵀ @ Q", "√S", "transpose(0, 1)"}  # the same as the reference, or as
# an earlier slip, on one (n, d) sequence


@pytest.mark.parametrize("key", sorted({m.key for m in ch04._MISTAKES} - SHADOWED))
def test_every_listed_mistake_is_named(key):
    m = next(m for m in ch04._MISTAKES if m.key == key)
    assert ch04.check_self_attention(m.fn, quiet=True, seed=0).key == key


def test_names_every_slip_chapter_3_names():
    """One shared list: every slip of chapter 3's attention checker is one of chapter 4's."""
    from kqvlib.exercises import ch03

    ch04_keys = {m.key for m in ch04._MISTAKES + ch04._DIAGNOSTIC_MISTAKES}
    assert {m.key for m in ch03._ATTENTION_MISTAKES} <= ch04_keys


def test_transposed_weight_hint_names_the_shapes():
    r = ch04.check_self_attention(transposed_weights, quiet=True)
    assert "(7, 3)" in r.message and "(4, 7)" in r.message
    assert r.message.index("(4, 7)") < r.message.index("(your code raised RuntimeError")


def test_values_not_projected_hint_names_d_v():
    r = ch04.check_self_attention(raw_values, quiet=True)
    assert "d_v" in r.message and "(4, 5)" in r.message


def test_other_crash_is_reported_with_shapes():
    r = ch04.check_self_attention(other_crash, quiet=True)
    assert r.key == "shape error" and "(7, 3)" in r.message
    assert r.message.index("(7, 3)") < r.message.index("(your code raised RuntimeError")


def test_checker_never_raises_on_nonsense():
    assert ch04.check_self_attention(lambda *a: "nonsense", quiet=True).passed is False
    assert ch04.check_self_attention(lambda *a: None, quiet=True).key == "returned None"

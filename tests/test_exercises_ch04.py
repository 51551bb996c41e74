"""Chapter 4's checker: accepts a right answer, and names each likely mistake."""
import math

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


def test_each_mistake_gets_its_own_hint():
    cases = {
        "swapped q and k": keys_as_queries,
        "values not projected": raw_values,
        "no scaling": unscaled,
        "wrong axis": column_softmax,
        "weight transposed": transposed_weights,
        "K not transposed": forgot_k_transpose,
    }
    messages = set()
    for key, fn in cases.items():
        for seed in (0, 1, 2):
            r = ch04.check_self_attention(fn, quiet=True, seed=seed)
            assert not r.passed and r.key == key, (key, r.key, r.message)
        messages.add(r.message.split("Likely cause:")[-1])
    assert len(messages) == len(cases)


def test_transposed_weight_hint_names_the_shapes():
    r = ch04.check_self_attention(transposed_weights, quiet=True)
    assert "RuntimeError" in r.message and "(6, 4)" in r.message and "(5, 6)" in r.message


def test_values_not_projected_hint_names_d_v():
    r = ch04.check_self_attention(raw_values, quiet=True)
    assert "d_v" in r.message and "(5, 3)" in r.message


def test_other_crash_is_reported_with_shapes():
    r = ch04.check_self_attention(other_crash, quiet=True)
    assert r.key == "exception" and "RuntimeError" in r.message and "(6, 4)" in r.message


def test_checker_never_raises_on_nonsense():
    assert ch04.check_self_attention(lambda *a: "nonsense", quiet=True).passed is False
    assert ch04.check_self_attention(lambda *a: None, quiet=True).key == "returned None"

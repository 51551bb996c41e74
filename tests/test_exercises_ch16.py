"""Chapter 16's checkers: the reference passes, a stub is "not attempted", each likely slip gets its own hint.

The wrong answers are written the way a learner would write them, independently of the Mistake functions.
"""
import pytest
import torch

from kqvlib.exercises import ch16


def repeat_ok(k, n_rep):
    B, G, S, hs = k.shape
    return k.unsqueeze(2).expand(B, G, n_rep, S, hs).reshape(B, G * n_rep, S, hs)


def repeat_stub(k, n_rep):
    raise NotImplementedError  # your code here


@pytest.mark.parametrize("fn, key", [
    (lambda k, r: torch.cat([k] * r, dim=1), "tiled"),
    (lambda k, r: k.repeat_interleave(r, dim=-2), "sequence axis"),
    (lambda k, r: k.repeat_interleave(2, dim=1), "three"),
    (lambda k, r: k.repeat_interleave(r, dim=1).flip(1), "heads reordered"),
    (lambda k, r: k.repeat_interleave(r), "wrong shape"),
])
def test_repeat_kv_slips(fn, key):
    r = ch16.check_repeat_kv(fn, seed=0, quiet=True)
    assert not r and r.key == key, (r.key, r.message)


def test_repeat_kv_accepts_and_stub():
    assert ch16.check_repeat_kv(repeat_ok, seed=0, quiet=True)
    assert ch16.check_repeat_kv(lambda k, r: k.repeat_interleave(r, dim=1), seed=1, quiet=True)
    assert ch16.check_repeat_kv(repeat_stub, quiet=True).key == "not attempted"


def mask_ok(T, window):
    t = torch.arange(T).view(T, 1)
    s = torch.arange(T).view(1, T)
    return (s <= t) & (t - s < window)


@pytest.mark.parametrize("fn, key", [
    (lambda T, w: torch.ones(T, T).tril().bool() & (torch.ones(T, T).tril(-w - 1) == 0), "one too many"),
    (lambda T, w: (torch.arange(T)[None] <= torch.arange(T)[:, None]) & (torch.arange(T)[:, None] - torch.arange(T)[None] < w - 1), "one too few"),
    (lambda T, w: (torch.arange(T)[:, None] - torch.arange(T)[None]).abs() < w, "not causal"),
    (lambda T, w: torch.ones(T, T).tril().bool(), "causal only"),
    (lambda T, w: ~mask_ok(T, w), "inverted"),
    (lambda T, w: mask_ok(T, w).T, "future"),
])
def test_sliding_window_mask_slips(fn, key):
    r = ch16.check_sliding_window_mask(fn, seed=0, quiet=True)
    assert not r and r.key == key, (r.key, r.message)


def test_sliding_window_mask_accepts_and_stub():
    assert ch16.check_sliding_window_mask(mask_ok, seed=0, quiet=True)
    assert ch16.check_sliding_window_mask(lambda T, w: (torch.ones(T, T).tril() - torch.ones(T, T).tril(-w)).bool(),
                                          seed=0, quiet=True)

    def stub(T, window):
        raise NotImplementedError  # your code here
    assert ch16.check_sliding_window_mask(stub, quiet=True).key == "not attempted"


def bytes_ok(n_layers, n_heads, n_kv_heads, head_dim, bytes_per_number):
    return n_layers * 2 * n_kv_heads * head_dim * bytes_per_number


@pytest.mark.parametrize("fn, key", [
    (lambda L, H, G, hs, b: L * 2 * H * hs * b, "n_heads"),
    (lambda L, H, G, hs, b: L * G * hs * b, "keys only"),
    (lambda L, H, G, hs, b: 2 * G * hs * b, "one layer"),
    (lambda L, H, G, hs, b: 2 * L * G * hs, "numbers"),
    (lambda L, H, G, hs, b: 2 * L * G * hs * 2, "keys only"),
    (lambda L, H, G, hs, b: 2 * L * G * hs * 4, "bfloat16"),
    (lambda L, H, G, hs, b: 2 * L * G * b, "missing factor"),
])
def test_kv_bytes_slips(fn, key):
    r = ch16.check_kv_bytes_per_token(fn, seed=0, quiet=True)
    assert not r and r.key == key, (r.key, r.message)


def test_kv_bytes_accepts_and_stub():
    assert ch16.check_kv_bytes_per_token(bytes_ok, seed=0, quiet=True)

    def stub(n_layers, n_heads, n_kv_heads, head_dim, bytes_per_number):
        raise NotImplementedError  # your code here
    assert ch16.check_kv_bytes_per_token(stub, quiet=True).key == "not attempted"

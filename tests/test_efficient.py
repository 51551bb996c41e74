"""kqvlib.efficient (chapter 13): online softmax, tiled exact attention, Performer attention."""
import math

import pytest
import torch
import torch.nn.functional as F

from kqvlib import efficient
from kqvlib.attention import scaled_dot_product_attention

F64 = torch.float64


def _qkv(*lead, T, S, d=16, d_v=8, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, T, d, generator=g, dtype=F64) * scale
    k = torch.randn(*lead, S, d, generator=g, dtype=F64) * scale
    v = torch.randn(*lead, S, d_v, generator=g, dtype=F64)
    return q, k, v


# --- online softmax ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block_size", [1, 3, 16, 100])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_online_softmax_equals_torch_softmax(block_size, dim):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 37, 3, generator=g, dtype=F64) * 20
    got = efficient.online_softmax(x, dim=dim, block_size=block_size)
    assert torch.allclose(got, torch.softmax(x, dim=dim), atol=1e-12, rtol=0)


def test_online_softmax_survives_huge_logits():
    x = torch.tensor([[1000.0, 1001.0, -1000.0, 999.0]], dtype=F64)
    got = efficient.online_softmax(x, block_size=1)
    assert torch.isfinite(got).all() and torch.allclose(got, torch.softmax(x, -1), atol=1e-14)


# --- tiled attention: exact, for every block size, with and without the causal mask -------------------------

@pytest.mark.parametrize("block_size", [1, 4, 7, 16, 64])
@pytest.mark.parametrize("T", [1, 13, 16, 50])
@pytest.mark.parametrize("causal", [False, True])
def test_tiled_equals_sdpa(block_size, T, causal):
    q, k, v = _qkv(2, 3, T=T, S=T)  # (B, H, T, d): batch and head axes
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = efficient.tiled_attention(q, k, v, causal=causal, block_size=block_size)
    assert got.shape == ref.shape and (got - ref).abs().max().item() < 1e-10


@pytest.mark.parametrize("T, S", [(5, 23), (23, 5), (9, 9), (1, 40)])
@pytest.mark.parametrize("block_size", [2, 5, 8])
def test_tiled_non_causal_with_more_or_fewer_queries_than_keys(T, S, block_size):
    q, k, v = _qkv(3, T=T, S=S, d=6, d_v=11, seed=T + S)
    ref = scaled_dot_product_attention(q, k, v)
    got = efficient.tiled_attention(q, k, v, block_size=block_size)
    assert (got - ref).abs().max().item() < 1e-10


def test_tiled_without_lead_axes_and_with_large_scores():
    q, k, v = _qkv(T=19, S=19, scale=30.0)  # scores in the hundreds
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        got = efficient.tiled_attention(q, k, v, causal=causal, block_size=4)
        assert torch.isfinite(got).all() and (got - ref).abs().max().item() < 1e-10


def test_tiled_float32_to_float_tolerance():
    q, k, v = (t.float() for t in _qkv(2, 4, T=70, S=70, d=32, d_v=32))
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        got = efficient.tiled_attention(q, k, v, causal=causal, block_size=16)
        assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-5)


def test_tiled_broadcasts_lead_axes():
    q, _, _ = _qkv(2, 3, T=6, S=6)
    _, k, v = _qkv(1, 3, T=6, S=9, seed=4)  # one batch of keys shared by both query batches
    got = efficient.tiled_attention(q, k, v, block_size=4)
    assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v), atol=1e-10)


def test_tiled_causal_skips_future_blocks():
    """The causal pass computes about half the tiles: count the key blocks it reads through v."""
    q, k, v = _qkv(T=64, S=64)
    seen = []

    class Spy(torch.Tensor):
        def __getitem__(self, idx):
            seen.append(idx)
            return super().__getitem__(idx)

    efficient.tiled_attention(q, k, v.as_subclass(Spy), causal=True, block_size=16)
    assert len(seen) == 4 + 3 + 2 + 1  # lower triangle of 4 × 4 tiles, diagonal included


def test_tiled_checks_shapes():
    q, k, v = _qkv(T=5, S=7)
    with pytest.raises(ValueError, match="causal"):
        efficient.tiled_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="last axis"):
        efficient.tiled_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="number of keys"):
        efficient.tiled_attention(q, k, v[:4])
    with pytest.raises(ValueError, match="block_size"):
        efficient.tiled_attention(q, k, v, block_size=0)


# --- Performer ------------------------------------------------------------------------------------------------

def test_orthogonal_projection_rows_are_orthogonal_within_a_block():
    w = efficient.draw_projection(20, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert w.shape == (20, 8)
    u = w[:8] / w[:8].norm(dim=-1, keepdim=True)
    assert torch.allclose(u @ u.T, torch.eye(8, dtype=F64), atol=1e-10)


def test_features_are_positive_and_estimate_exp_of_dot_product():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=F64) * 0.3
    y = torch.randn(5, 4, generator=g, dtype=F64) * 0.3
    w = efficient.draw_projection(200_000, 4, generator=g, dtype=F64, orthogonal=False)
    fx = efficient.positive_random_features(x, w, stabilise_over=None)
    fy = efficient.positive_random_features(y, w, stabilise_over=None)
    assert (fx > 0).all()
    assert torch.allclose(fx @ fy.T, torch.exp(x @ y.T), rtol=0.02)


@pytest.mark.parametrize("causal", [False, True])
def test_performer_error_falls_with_more_features(causal):
    q, k, v = _qkv(2, T=64, S=64, d=16, scale=0.5)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    g = torch.Generator().manual_seed(0)
    errs = []
    for m in (8, 4096):
        w = efficient.draw_projection(m, 16, generator=g, dtype=F64)
        got = efficient.performer_attention(q, k, v, w, causal=causal)
        assert got.shape == ref.shape and torch.isfinite(got).all()
        errs.append(((got - ref).norm() / ref.norm()).item())
    assert errs[1] < errs[0] / 3 and errs[1] < 0.1


def test_performer_causal_matches_a_loop_over_prefixes():
    q, k, v = _qkv(T=7, S=7, d=4, scale=0.5)
    w = efficient.draw_projection(32, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    got = efficient.performer_attention(q, k, v, w, causal=True)
    rows = [efficient.performer_attention(q[t:t + 1], k[: t + 1], v[: t + 1], w)[0] for t in range(7)]
    assert torch.allclose(got, torch.stack(rows), atol=1e-10)


# --- measuring ------------------------------------------------------------------------------------------------

def test_peak_allocated_bytes_sees_the_score_matrix():
    q, k, v = (t.float() for t in _qkv(1, 1, T=512, S=512, d=32, d_v=32))

    def naive(q, k, v):
        return torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), dim=-1) @ v

    n2 = 512 * 512 * 4  # one (T, S) float32 matrix
    assert efficient.peak_allocated_bytes(naive, q, k, v) >= n2
    assert efficient.peak_allocated_bytes(efficient.tiled_attention, q, k, v, block_size=64) < n2 / 4


def test_sdpa_ops_names_the_cpu_kernels():
    q, k, v = (t.float() for t in _qkv(1, 2, T=16, S=16, d_v=16))
    assert efficient.sdpa_ops(q, k, v) == ["aten::_scaled_dot_product_flash_attention_for_cpu"]
    assert efficient.sdpa_ops(q, k, v, dropout_p=0.5) == ["aten::_scaled_dot_product_attention_math"]


# --- FlashAttention's backward -------------------------------------------------------------------------------

def _grads(fn, q, k, v, d_out):
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    fn(q, k, v).backward(d_out)
    return q.grad, k.grad, v.grad


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T, block_size", [(1, 1), (7, 3), (13, 5), (29, 8), (29, 64), (40, 16)])
def test_flash_backward_equals_autograd_through_plain_attention(T, block_size, causal):
    q, k, v = _qkv(2, 3, T=T, S=T, d=6, d_v=5, seed=T)  # odd head size and value width
    d_out = torch.randn(2, 3, T, 5, generator=torch.Generator().manual_seed(9), dtype=F64)
    mask = torch.ones(T, T, dtype=torch.bool).tril() if causal else None
    want = _grads(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask), q, k, v, d_out)
    got = _grads(lambda a, b, c: efficient.tiled_attention(a, b, c, causal=causal, block_size=block_size),
                 q, k, v, d_out)
    for name, g_, w in zip("qkv", got, want):
        assert torch.allclose(g_, w, atol=1e-12, rtol=1e-10), name


@pytest.mark.parametrize("T, S, block_size", [(5, 19, 4), (19, 5, 4), (11, 11, 32)])
def test_flash_backward_with_more_or_fewer_queries_than_keys(T, S, block_size):
    q, k, v = _qkv(3, T=T, S=S, d=4, d_v=7, seed=S)
    d_out = torch.randn(3, T, 7, generator=torch.Generator().manual_seed(1), dtype=F64)
    want = _grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c), q, k, v, d_out)
    got = _grads(lambda a, b, c: efficient.tiled_attention(a, b, c, block_size=block_size), q, k, v, d_out)
    for g_, w in zip(got, want):
        assert torch.allclose(g_, w, atol=1e-12, rtol=1e-10)


def test_flash_backward_gradcheck_and_broadcast_lead_axes():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 1, 9, 4, generator=g, dtype=F64, requires_grad=True)  # broadcast over heads
    k = torch.randn(1, 3, 9, 4, generator=g, dtype=F64, requires_grad=True)  # broadcast over the batch
    v = torch.randn(2, 3, 9, 5, generator=g, dtype=F64, requires_grad=True)
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, c: efficient.tiled_attention(a, b, c, causal=causal, block_size=4), (q, k, v))


def test_flash_backward_memory_stays_linear():
    def fwd_bwd(fn, T):
        g = torch.Generator().manual_seed(T)
        q, k, v = (torch.randn(1, 1, T, 32, generator=g, requires_grad=True) for _ in range(3))
        return efficient.peak_allocated_bytes(lambda: fn(q, k, v).sum().backward())
    naive = lambda q, k, v: torch.softmax(q @ k.mT / math.sqrt(32), -1) @ v  # noqa: E731
    tiled = lambda q, k, v: efficient.tiled_attention(q, k, v, block_size=64)  # noqa: E731
    T = 1024
    assert fwd_bwd(naive, T) > 2 * 4 * T * T  # at least two score matrices kept or made
    assert fwd_bwd(tiled, T) < 4 * T * T / 4  # under a quarter of one


# --- linear attention as an RNN ------------------------------------------------------------------------------

def test_linear_attention_rnn_equals_parallel_form_and_causal_performer():
    q, k, v = _qkv(2, 3, T=23, S=23, d=8, d_v=5, seed=4, scale=0.5)
    w = efficient.draw_projection(16, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = 8 ** -0.25
    fq = efficient.positive_random_features(q * r, w)  # (2, 3, 23, 16)
    fk = efficient.positive_random_features(k * r, w, stabilise_over=None)  # no constant that needs all keys
    parallel = efficient.causal_linear_attention(fq, fk, v)
    rnn = efficient.LinearAttentionRNN()
    steps = torch.stack([rnn.step(fq[..., t, :], fk[..., t, :], v[..., t, :]) for t in range(23)], dim=-2)
    assert torch.allclose(steps, parallel, atol=1e-12, rtol=1e-10)
    assert rnn.S.shape == (2, 3, 16, 5) and rnn.z.shape == (2, 3, 16)  # the same size at every step
    assert torch.allclose(parallel, efficient.performer_attention(q, k, v, w, causal=True), atol=1e-12)

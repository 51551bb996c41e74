"""kqvlib.attention against PyTorch's own softmax and SDPA (multi-head attention: tests/test_multihead.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from kqvlib import causal_mask, scaled_dot_product_attention, soft_lookup, softmax

TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}
DTYPES = [torch.float64, torch.float32]


def randn(*shape, dtype=torch.float64, g=None):
    return torch.randn(*shape, dtype=dtype, generator=g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch(dtype, dim):
    g = torch.Generator().manual_seed(0)
    x = 5 * randn(4, 6, 7, dtype=dtype, g=g)
    torch.testing.assert_close(softmax(x, dim=dim), F.softmax(x, dim=dim), **TOL[dtype])


def test_softmax_is_stable_for_huge_scores():
    x = torch.tensor([1000.0, 1001.0, 1002.0])
    assert torch.isfinite(softmax(x)).all()
    torch.testing.assert_close(softmax(x), F.softmax(x, dim=-1))


def test_softmax_all_minus_inf_row_is_zeros_not_nan():
    x = torch.tensor([[0.0, 1.0], [float("-inf"), float("-inf")]])
    out = softmax(x)
    assert not torch.isnan(out).any()
    assert out[1].tolist() == [0.0, 0.0]
    torch.testing.assert_close(out[0], F.softmax(x[0], dim=-1))


def test_softmax_rejects_integer_tensors():
    with pytest.raises(ValueError, match="floating-point"):
        softmax(torch.tensor([1, 2, 3]))


def _sdpa_inputs(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    B, H = torch.randint(1, 4, (2,), generator=g).tolist()
    T, S, dk, dv = torch.randint(1, 9, (4,), generator=g).tolist()
    return randn(B, H, T, dk, dtype=dtype, g=g), randn(B, H, S, dk, dtype=dtype, g=g), randn(B, H, S, dv, dtype=dtype, g=g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_sdpa_no_mask(dtype, seed):
    q, k, v = _sdpa_inputs(dtype, seed)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_sdpa_causal(dtype, seed):
    q, k, v = _sdpa_inputs(dtype, seed)
    T = min(q.shape[-2], k.shape[-2])  # causal self-attention: as many keys as queries
    q, k, v = q[..., :T, :], k[..., :T, :], v[..., :T, :]
    ours = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_sdpa_boolean_mask(dtype, seed):
    q, k, v = _sdpa_inputs(dtype, seed)
    g = torch.Generator().manual_seed(100 + seed)
    mask = torch.rand(q.shape[-2], k.shape[-2], generator=g) > 0.3
    mask[:, 0] = True  # no fully masked rows here (see the dedicated test)
    ours = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_sdpa_additive_mask(dtype, seed):
    q, k, v = _sdpa_inputs(dtype, seed)
    g = torch.Generator().manual_seed(200 + seed)
    mask = torch.randn(q.shape[-2], k.shape[-2], generator=g, dtype=dtype)
    mask[:, 1:] = mask[:, 1:].masked_fill(torch.rand(mask[:, 1:].shape, generator=g) > 0.6, float("-inf"))
    ours = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL[dtype])


def test_sdpa_returns_weights_that_sum_to_one():
    q, k, v = _sdpa_inputs(torch.float64, 7)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert w.shape == (*q.shape[:-1], k.shape[-2])
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
    torch.testing.assert_close(out, w @ v)


def test_fully_masked_row_gives_zeros_not_nan():
    """Documented: a query whose keys are all blocked gets zero weights and a zero output."""
    q, k, v = randn(1, 3, 4), randn(1, 5, 4), randn(1, 5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert (w[0, 1] == 0).all() and (out[0, 1] == 0).all()
    torch.testing.assert_close(out[:, [0, 2]], F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[:, [0, 2]])
    additive = torch.zeros(3, 5, dtype=torch.float64).masked_fill(~mask, float("-inf"))
    assert (scaled_dot_product_attention(q, k, v, mask=additive)[0, 1] == 0).all()


def test_sdpa_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 5, 3\)"):
        scaled_dot_product_attention(randn(2, 3, 4), randn(2, 5, 3), randn(2, 5, 3))
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(randn(3, 4), randn(5, 4), randn(6, 2))
    with pytest.raises(ValueError, match="share a dtype"):
        scaled_dot_product_attention(randn(3, 4), randn(5, 4, dtype=torch.float32), randn(5, 2))
    with pytest.raises(ValueError, match="floating-point"):
        scaled_dot_product_attention(randn(3, 4), torch.ones(5, 4, dtype=torch.long), randn(5, 2))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 3\)"):
        scaled_dot_product_attention(randn(3, 4), randn(5, 4), randn(5, 2), mask=torch.ones(5, 3, dtype=torch.bool))


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tolist() == [[True, False, False, False], [True, True, False, False], [True, True, True, False], [True] * 4]
    assert causal_mask(0).shape == (0, 0)  # empty, as torch.ones(0, 0).tril()
    with pytest.raises(ValueError, match="T must be"):
        causal_mask(-1)


def test_soft_lookup_is_single_query_attention_without_scaling():
    q, K, V = randn(6), randn(4, 6), randn(4, 3)
    expected = F.softmax(K @ q, dim=0) @ V
    torch.testing.assert_close(soft_lookup(q, K, V), expected, **TOL[torch.float64])
    scaled = scaled_dot_product_attention((q * math.sqrt(6))[None], K, V)[0]
    torch.testing.assert_close(soft_lookup(q, K, V), scaled, **TOL[torch.float64])
    with pytest.raises(ValueError, match=r"keys \(6, 4\)"):
        soft_lookup(q, K.T, V)

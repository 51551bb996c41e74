"""kqvlib's masks (chapter 5): causal and padding masks, their additive form, combining them, and the
fully masked row — against torch.nn.functional.scaled_dot_product_attention wherever it applies.

The convention under test: a boolean mask is True where a query may attend, False where it may not; a
float mask is added to the scores (0 = attend, -inf = blocked); a query with every key blocked gets zero
weights and a zero output.
"""
import pytest
import torch
import torch.nn.functional as F

from kqvlib import (MultiHeadAttention, as_additive, causal_mask, combine_masks, padding_mask,
                    scaled_dot_product_attention)

TOL = dict(atol=1e-10, rtol=1e-10)
NEG_INF = float("-inf")


def randn(*shape, g=None, dtype=torch.float64):
    return torch.randn(*shape, generator=g, dtype=dtype)


def qkv(B=2, H=3, T=5, S=5, d_k=4, d_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return randn(B, H, T, d_k, g=g), randn(B, H, S, d_k, g=g), randn(B, H, S, d_v, g=g)


# --- causal_mask ------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 2, 7])
def test_causal_mask_is_lower_triangle_with_diagonal(T):
    m = causal_mask(T)
    assert m.dtype == torch.bool and m.shape == (T, T)
    t = torch.arange(T)
    assert torch.equal(m, t[None, :] <= t[:, None])  # key s allowed for query t iff s ≤ t


@pytest.mark.parametrize("T", [-3, 2.0, True, "4", None])
def test_causal_mask_rejects_bad_T(T):
    with pytest.raises(ValueError, match="causal_mask: T must be a positive int"):
        causal_mask(T)


def test_empty_masks_are_empty_as_in_torch():
    assert causal_mask(0).shape == (0, 0) and causal_mask(0).dtype == torch.bool
    assert padding_mask([], 4).shape == (0, 1, 1, 4) and padding_mask([0, 0], 0).shape == (2, 1, 1, 0)


def test_causal_mask_matches_is_causal_as_bool_and_additive():
    q, k, v = qkv(T=6, S=6)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    m = causal_mask(6)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=m), expected, **TOL)
    add = as_additive(m, torch.float64)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=add), expected, **TOL)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=add), expected, **TOL)


def test_causal_output_ignores_the_future():
    """Changing the last position's key and value changes only the last output row."""
    q, k, v = qkv(T=6, S=6, seed=1)
    out = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    k2, v2 = k.clone(), v.clone()
    k2[..., -1, :] += 5.0
    v2[..., -1, :] -= 3.0
    out2 = scaled_dot_product_attention(q, k2, v2, mask=causal_mask(6))
    torch.testing.assert_close(out[..., :-1, :], out2[..., :-1, :], **TOL)
    assert not torch.allclose(out[..., -1, :], out2[..., -1, :])


# --- padding_mask -----------------------------------------------------------------------------------

def test_padding_mask_values_and_shape():
    m = padding_mask([3, 0, 5], 5)
    assert m.dtype == torch.bool and m.shape == (3, 1, 1, 5)
    assert m[:, 0, 0].tolist() == [[True, True, True, False, False], [False] * 5, [True] * 5]


@pytest.mark.parametrize("lengths", [[2, 4], (2, 4), torch.tensor([2, 4]), torch.tensor([2, 4], dtype=torch.int32)])
def test_padding_mask_accepts_sequences_and_int_tensors(lengths):
    assert torch.equal(padding_mask(lengths, 4)[:, 0, 0], torch.tensor([[True, True, False, False], [True] * 4]))


@pytest.mark.parametrize("lengths, S, match", [
    (torch.tensor([[2, 3]]), 4, r"shape \(B,\), got shape \(1, 2\)"),
    (torch.tensor([2.0, 3.0]), 4, "float"),
    (torch.tensor([True, False]), 4, "bool"),
    ([2, 5], 4, r"0..S=4, got \[2, 5\]"),
    ([-1, 2], 4, r"got \[-1, 2\]"),
    ([1, 2], -1, "S must be a positive int"),
    ([1, 2], 4.0, "S must be a positive int"),
    ("ab", 4, "lengths must be B integers"),
    (torch.tensor([1], device="meta"), 4, "lengths is on the meta device"),
])
def test_padding_mask_errors_name_what_was_wrong(lengths, S, match):
    with pytest.raises(ValueError, match=match):
        padding_mask(lengths, S)


@pytest.mark.parametrize("impl", ["sdpa", "scratch"])
def test_padding_does_not_change_the_real_positions(impl):
    """Each padded sequence's real positions give what the sequence alone gives, with and without a
    causal mask, in kqvlib's function, PyTorch's, and MultiHeadAttention."""
    torch.manual_seed(0)
    lengths, S = [5, 2, 4], 5
    q, k, v = qkv(B=3, H=2, T=S, S=S, seed=2)
    pad = padding_mask(lengths, S)  # (B, 1, 1, S)
    mha = MultiHeadAttention(8, 2, impl=impl).double()
    mha_causal = MultiHeadAttention(8, 2, causal=True, impl=impl).double()
    mha_causal.load_state_dict(mha.state_dict())
    x = randn(3, S, 8, g=torch.Generator().manual_seed(3))
    for causal in (False, True):
        mask = combine_masks(pad, causal_mask(S)) if causal else pad
        ours = scaled_dot_product_attention(q, k, v, mask=mask)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        layer = mha_causal if causal else mha
        y = layer(x, mask=pad)
        for b, L in enumerate(lengths):
            alone = F.scaled_dot_product_attention(q[b, :, :L], k[b, :, :L], v[b, :, :L], is_causal=causal)
            torch.testing.assert_close(ours[b, :, :L], alone, **TOL)
            torch.testing.assert_close(theirs[b, :, :L], alone, **TOL)
            torch.testing.assert_close(y[b, :L], layer(x[b : b + 1, :L])[0], **TOL)


def test_padding_keys_get_zero_weight_and_rows_sum_to_one():
    q, k, v = qkv(B=2, H=1, T=4, S=6, seed=4)
    _, w = scaled_dot_product_attention(q, k, v, mask=padding_mask([6, 3], 6), return_weights=True)
    assert (w[1, ..., 3:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype), **TOL)


def test_single_head_scores_use_mask_without_the_head_axis():
    g = torch.Generator().manual_seed(5)
    q, k, v = randn(2, 3, 4, g=g), randn(2, 6, 4, g=g), randn(2, 6, 2, g=g)  # (B, T, d), no head axis
    m = padding_mask([6, 2], 6)[:, 0]  # (B, 1, S)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=m),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=m), **TOL)


# --- as_additive and combine_masks ----------------------------------------------------------------------

def test_as_additive_values_dtype_and_float_passthrough():
    m = torch.tensor([[True, False], [False, True]])
    a = as_additive(m)
    assert a.dtype == torch.float32 and a.tolist() == [[0.0, NEG_INF], [NEG_INF, 0.0]]
    assert as_additive(m, torch.float64).dtype == torch.float64
    f = torch.randn(3, 3)
    assert as_additive(f) is f


def test_as_additive_errors():
    with pytest.raises(ValueError, match=r"torch.int64 with shape \(2, 2\)"):
        as_additive(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype must be a floating-point torch.dtype"):
        as_additive(torch.ones(2, 2, dtype=torch.bool), torch.int32)
    with pytest.raises(ValueError, match="torch.Tensor"):
        as_additive([[True]])


@pytest.mark.parametrize("seed", range(3))
def test_bool_and_additive_masks_agree_with_pytorch(seed):
    q, k, v = qkv(T=4, S=7, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    m = torch.rand(4, 7, generator=g) > 0.4
    m[:, 0] = True  # no fully masked rows here
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=m), expected, **TOL)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=as_additive(m, torch.float64)), expected, **TOL)


def test_combine_masks_none_bool_and_float():
    c, p = causal_mask(3), padding_mask([2, 3], 3)
    assert combine_masks(None, None) is None
    assert combine_masks(c, None) is c and combine_masks(None, p) is p
    both = combine_masks(c, p)
    assert both.dtype == torch.bool and both.shape == (2, 1, 3, 3)
    assert torch.equal(both, c & p)
    mixed = combine_masks(as_additive(c, torch.float64), p)  # float + bool → float
    assert mixed.dtype == torch.float64 and torch.equal(mixed, as_additive(both, torch.float64))
    soft = torch.full((3, 3), -2.0, dtype=torch.float64)  # a float mask that is not only 0 / -inf
    assert torch.equal(combine_masks(soft, c), soft + as_additive(c, torch.float64))


def test_combined_mask_matches_pytorch():
    q, k, v = qkv(B=2, H=2, T=5, S=5, seed=6)
    mask = combine_masks(causal_mask(5), padding_mask([5, 3], 5))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)


def test_combine_masks_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 1, 1, 5\)"):
        combine_masks(torch.ones(3, 4, dtype=torch.bool), padding_mask([1, 2], 5))


# --- a mask of the wrong shape or type --------------------------------------------------------------------

def test_transposed_mask_is_a_value_error_naming_the_shapes():
    q, k, v = qkv(B=1, H=1, T=3, S=5)
    with pytest.raises(ValueError, match=r"mask of shape \(5, 3\).*\(1, 1, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(3, 1, 1, 5\)"):  # more sequences than the batch holds
        scaled_dot_product_attention(q, k, v, mask=padding_mask([1, 2, 3], 5))


def test_integer_mask_is_a_value_error():
    q, k, v = qkv(B=1, H=1, T=3, S=3)
    with pytest.raises(ValueError, match=r"torch.int64 with shape \(3, 3\).*mask.bool\(\)"):
        scaled_dot_product_attention(q, k, v, mask=causal_mask(3).long())


# --- the fully masked row -------------------------------------------------------------------------------

def _one_blocked_row(T=3, S=5, row=1):
    m = torch.ones(T, S, dtype=torch.bool)
    m[row] = False
    return m


@pytest.mark.parametrize("additive", [False, True])
def test_fully_masked_row_gives_zero_weights_and_output(additive):
    q, k, v = qkv(B=1, H=1, T=3, S=5, seed=7)
    m = _one_blocked_row()
    mask = as_additive(m, torch.float64) if additive else m
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (w[..., 1, :] == 0).all() and (out[..., 1, :] == 0).all()
    other = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    torch.testing.assert_close(out[..., [0, 2], :], other[..., [0, 2], :], **TOL)


def test_naive_softmax_of_a_fully_masked_row_is_nan():
    """What kqvlib avoids: softmax of an all -inf row is 0/0."""
    assert torch.isnan(torch.softmax(torch.full((4,), NEG_INF), dim=-1)).all()


def test_fully_masked_row_has_finite_zero_gradients():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=1, T=3, S=5, seed=8))
    scaled_dot_product_attention(q, k, v, mask=_one_blocked_row()).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[..., 1, :] == 0).all()  # the blocked query influences nothing


def test_left_padding_under_a_causal_mask_gives_fully_masked_rows_not_nan():
    """Left padding: sequence 1 is [pad, pad, a, b]; its first two queries can see only padding."""
    q, k, v = qkv(B=2, H=1, T=4, S=4, seed=9)
    left = torch.tensor([[True] * 4, [False, False, True, True]])[:, None, None, :]  # (B, 1, 1, S)
    mask = combine_masks(causal_mask(4), left)
    out = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and (out[1, :, :2] == 0).all()


# F.scaled_dot_product_attention returns zeros for a fully masked row from PyTorch 2.5 on (NaN before).
_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


@pytest.mark.parametrize("impl", [
    pytest.param("sdpa", marks=pytest.mark.skipif(_TORCH < (2, 5), reason="NaN rows before PyTorch 2.5")),
    "scratch",
])
def test_mha_with_an_empty_sequence_is_finite(impl):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, impl=impl).double()
    x = randn(2, 4, 8, g=torch.Generator().manual_seed(10))
    y = mha(x, mask=padding_mask([4, 0], 4))  # the second sequence is all padding
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1], mha.out_proj.bias.expand(4, 8))  # zero attention, then W_O's bias

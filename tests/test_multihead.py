"""kqvlib.multihead: split/merge heads, MultiHeadAttention (self- and cross-attention) against a loop over heads,
nn.MultiheadAttention and F.scaled_dot_product_attention, the KV cache, and errors that name the shapes."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib import KVCache, MultiHeadAttention, causal_mask, merge_heads, padding_mask, split_heads

TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}
DTYPES = [torch.float64, torch.float32]


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# --- split_heads / merge_heads ------------------------------------------------------------------------------

def test_split_heads_gives_each_head_its_own_slice_of_features():
    B, T, H, hs = 2, 5, 3, 4
    x = randn(B, T, H * hs)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, T, hs)
    for h in range(H):
        assert torch.equal(heads[:, h], x[..., h * hs:(h + 1) * hs])


@pytest.mark.parametrize("B,T,H,hs", [(1, 1, 1, 1), (2, 5, 3, 4), (3, 7, 8, 2)])
def test_split_merge_round_trip(B, T, H, hs):
    x = randn(B, T, H * hs)
    assert torch.equal(merge_heads(split_heads(x, H)), x)
    y = randn(B, H, T, hs, seed=1)
    assert torch.equal(split_heads(merge_heads(y), H), y)


def test_merge_heads_accepts_a_non_contiguous_input():
    y = randn(2, 5, 3, 4).transpose(1, 2)  # (2, 3, 5, 4), not contiguous
    assert not y.is_contiguous()
    assert torch.equal(merge_heads(y), y.transpose(1, 2).reshape(2, 5, 12))


def test_split_and_merge_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"divisible by n_heads=5, got \(2, 3, 12\)"):
        split_heads(randn(2, 3, 12), 5)
    with pytest.raises(ValueError, match=r"\(B, T, C\).*got \(3, 12\)"):
        split_heads(randn(3, 12), 3)
    with pytest.raises(ValueError, match=r"\(B, H, T, hs\), got \(2, 3, 12\)"):
        merge_heads(randn(2, 3, 12))


# --- MultiHeadAttention against a loop over heads -----------------------------------------------------------

def loop_over_heads(m: MultiHeadAttention, x, context=None, mask=None):
    """The definition, one head at a time: head h uses columns h·hs … (h+1)·hs − 1 of W_Q, W_K, W_V
    (rows of the nn.Linear weights) and the matching rows of W_O."""
    src = x if context is None else context
    C, H, hs = m.d_model, m.n_heads, m.head_size
    W_k, W_v = m.kv_proj.weight[:C], m.kv_proj.weight[C:]
    b_k, b_v = (m.kv_proj.bias[:C], m.kv_proj.bias[C:]) if m.kv_proj.bias is not None else (None, None)
    outs = []
    for h in range(H):
        rows = slice(h * hs, (h + 1) * hs)
        bias = lambda b: None if b is None else b[rows]  # noqa: E731
        q = F.linear(x, m.q_proj.weight[rows], bias(m.q_proj.bias))  # (B, T, hs)
        k = F.linear(src, W_k[rows], bias(b_k))  # (B, S, hs)
        v = F.linear(src, W_v[rows], bias(b_v))  # (B, S, hs)
        s = q @ k.mT / math.sqrt(hs)  # (B, T, S)
        if m.causal:
            s = s.masked_fill(~causal_mask(x.shape[1]), float("-inf"))
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        outs.append(torch.softmax(s, dim=-1) @ v)  # (B, T, hs)
    return m.out_proj(torch.cat(outs, dim=-1))  # (B, T, C)


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_batched_equals_loop_over_heads(impl, causal, bias):
    torch.manual_seed(0)
    m = MultiHeadAttention(12, 3, causal=causal, bias=bias, impl=impl).double()
    x = randn(2, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(m(x), loop_over_heads(m, x), **TOL[torch.float64])


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_cross_attention_equals_loop_over_heads(impl):
    torch.manual_seed(1)
    m = MultiHeadAttention(12, 4, impl=impl).double()
    x, ctx = randn(2, 3, 12), randn(2, 7, 12, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(m(x, context=ctx), loop_over_heads(m, x, ctx), **TOL[torch.float64])


def test_the_output_is_a_sum_over_heads_through_their_rows_of_w_o():
    torch.manual_seed(2)
    m = MultiHeadAttention(12, 3, bias=False, impl="scratch").double()
    x = randn(2, 5, 12)
    with torch.no_grad():
        q = split_heads(m.q_proj(x), 3)
        k, v = (split_heads(t, 3) for t in m.kv_proj(x).chunk(2, dim=-1))
        heads = torch.softmax(q @ k.mT / 2.0, dim=-1) @ v  # (B, H, T, hs), hs = 4
        W_O = m.out_proj.weight.T  # (C, C), acting as y @ W_O
        per_head = sum(heads[:, h] @ W_O[4 * h:4 * (h + 1)] for h in range(3))
        torch.testing.assert_close(m(x), per_head, **TOL[torch.float64])


# --- against PyTorch ----------------------------------------------------------------------------------------

def _copy_from_torch(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        C = mha.d_model
        mha.q_proj.weight.copy_(ref.in_proj_weight[:C])  # in_proj stacks W_Q, W_K, W_V: (3C, C)
        mha.q_proj.bias.copy_(ref.in_proj_bias[:C])
        mha.kv_proj.weight.copy_(ref.in_proj_weight[C:])
        mha.kv_proj.bias.copy_(ref.in_proj_bias[C:])
        mha.out_proj.weight.copy_(ref.out_proj.weight)
        mha.out_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch_multiheadattention(dtype, impl, causal):
    torch.manual_seed(0)
    B, T, C, H = 3, 7, 24, 4
    ref = nn.MultiheadAttention(C, H, batch_first=True, dtype=dtype).eval()
    ours = MultiHeadAttention(C, H, causal=causal, impl=impl).to(dtype).eval()
    _copy_from_torch(ours, ref)
    x = torch.randn(B, T, C, dtype=dtype)
    # nn.MultiheadAttention's bool mask is the opposite of ours: True there means *blocked*.
    ref_mask = ~causal_mask(T) if causal else None
    expected, expected_w = ref(x, x, x, attn_mask=ref_mask, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(ours(x), expected, **TOL[dtype])
    out, w = ours(x, return_weights=True)
    torch.testing.assert_close(out, expected, **TOL[dtype])
    torch.testing.assert_close(w, expected_w, **TOL[dtype])


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_cross_attention_matches_torch_multiheadattention(impl):
    """Queries from x (T positions), keys and values from a context of another length S, with padding."""
    torch.manual_seed(3)
    B, T, S, C, H = 2, 4, 9, 16, 2
    ref = nn.MultiheadAttention(C, H, batch_first=True, dtype=torch.float64).eval()
    ours = MultiHeadAttention(C, H, impl=impl).double().eval()
    _copy_from_torch(ours, ref)
    x, ctx = randn(B, T, C), randn(B, S, C, seed=1)
    pad = padding_mask([9, 6], S)  # (B, 1, 1, S), True = a real token
    expected, expected_w = ref(x, ctx, ctx, key_padding_mask=~pad[:, 0, 0], average_attn_weights=False)
    out, w = ours(x, context=ctx, mask=pad, return_weights=True)
    assert out.shape == (B, T, C) and w.shape == (B, H, T, S)
    torch.testing.assert_close(out, expected, **TOL[torch.float64])
    torch.testing.assert_close(w, expected_w, **TOL[torch.float64])
    assert (w[1, ..., 6:] == 0).all()  # the padding keys get no weight
    torch.testing.assert_close(ours(x, context=ctx, mask=pad), expected, **TOL[torch.float64])


def test_heads_equal_pytorch_sdpa_on_the_split_projections():
    torch.manual_seed(4)
    m = MultiHeadAttention(12, 3, causal=True, impl="scratch").double()
    x = randn(2, 5, 12)
    with torch.no_grad():
        q = split_heads(m.q_proj(x), 3)
        k, v = (split_heads(t, 3) for t in m.kv_proj(x).chunk(2, dim=-1))
        expected = m.out_proj(merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
        torch.testing.assert_close(m(x), expected, **TOL[torch.float64])


@pytest.mark.parametrize("causal", [False, True])
def test_mha_paths_agree_with_extra_mask(causal):
    torch.manual_seed(1)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    a = MultiHeadAttention(16, 2, causal=causal, impl="scratch").double()
    b = MultiHeadAttention(16, 2, causal=causal, impl="sdpa").double()
    b.load_state_dict(a.state_dict())
    pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    pad[1, ..., 4:] = False  # the second sequence has two padding positions
    for mask in (None, pad, torch.zeros(6, 6, dtype=torch.float64).masked_fill(~pad[1, 0], float("-inf"))):
        torch.testing.assert_close(a(x, mask=mask), b(x, mask=mask), atol=1e-10, rtol=1e-10)


# --- shapes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,S", [(1, 1), (3, 8), (8, 3)])
def test_self_and_cross_attention_shapes(T, S):
    m = MultiHeadAttention(20, 4)
    x, ctx = torch.randn(2, T, 20), torch.randn(2, S, 20)
    y, w = m(x, return_weights=True)
    assert y.shape == (2, T, 20) and w.shape == (2, 4, T, T)
    y, w = m(x, context=ctx, return_weights=True)
    assert y.shape == (2, T, 20) and w.shape == (2, 4, T, S)
    assert m(x, context=ctx).shape == (2, T, 20)  # the fused path too
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, T))


def test_parameters_do_not_depend_on_the_number_of_heads():
    counts = {H: sum(p.numel() for p in MultiHeadAttention(64, H).parameters()) for H in (1, 2, 4, 8, 64)}
    assert set(counts.values()) == {4 * 64 * 64 + 4 * 64}


# --- the KV cache -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_len", [None, 9])
@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_cache_one_position_at_a_time_equals_the_full_causal_pass(max_len, impl):
    torch.manual_seed(5)
    m = MultiHeadAttention(12, 3, causal=True, impl=impl).double().eval()
    x = randn(2, 9, 12)
    cache = KVCache(max_len)
    with torch.no_grad():
        full = m(x)
        first = m(x[:, :4], cache=cache)  # fills the cache with 4 positions
        steps = [m(x[:, t:t + 1], cache=cache) for t in range(4, 9)]
    assert len(cache) == 9
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, **TOL[torch.float64])


def test_kv_cache_append_and_overflow():
    cache = KVCache(max_len=5)
    k, v = randn(1, 2, 3, 4), randn(1, 2, 3, 4, seed=1)
    K, V = cache.append(k, v)
    assert len(cache) == 3 and torch.equal(K, k) and torch.equal(V, v)
    K, V = cache.append(k[..., :2, :], v[..., :2, :])
    assert K.shape == (1, 2, 5, 4) and torch.equal(K[..., 3:, :], k[..., :2, :])
    with pytest.raises(ValueError, match="exceed max_len=5"):
        cache.append(k[..., :1, :], v[..., :1, :])
    grow = KVCache()
    for t in range(3):
        K, V = grow.append(k[..., t:t + 1, :], v[..., t:t + 1, :])
    assert torch.equal(K, k) and torch.equal(V, v)


# --- errors -------------------------------------------------------------------------------------------------

def test_mha_errors_name_the_shapes():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="impl must be"):
        MultiHeadAttention(8, 2, impl="flash")
    m = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(2, 5, 6\)"):
        m(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(5, 8\)"):
        m(torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"context must have shape \(2, S, 8\).*\(3, 4, 8\)"):
        m(torch.randn(2, 5, 8), context=torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match=r"context must have shape \(2, S, 8\).*\(2, 4, 6\)"):
        m(torch.randn(2, 5, 8), context=torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="cross-attention"):
        MultiHeadAttention(8, 2, causal=True)(torch.randn(2, 5, 8), context=torch.randn(2, 4, 8))
    cache = KVCache()
    m(torch.randn(1, 3, 8), cache=cache)
    with pytest.raises(ValueError, match=r"3 cached positions.*one new position.*\(1, 2, 8\)"):
        m(torch.randn(1, 2, 8), cache=cache)


def test_grouped_kv_heads_default_to_n_heads_and_shrink_the_kv_projection():
    """Chapter 16: n_kv_heads defaults to n_heads (the module of chapter 6); fewer key/value heads
    shrink W_K and W_V to (C, G·hs) each, and the output matches PyTorch's enable_gqa attention."""
    m = MultiHeadAttention(32, 4)
    assert m.n_kv_heads == 4 and m.kv_proj.weight.shape == (64, 32)
    g = MultiHeadAttention(32, 4, causal=True, n_kv_heads=2).double()
    assert g.kv_proj.weight.shape == (32, 32)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    q = split_heads(g.q_proj(x), 4)  # (B, 4, T, 8)
    k, v = (split_heads(t, 2) for t in g.kv_proj(x).chunk(2, dim=-1))  # (B, 2, T, 8)
    ref = g.out_proj(merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)))
    torch.testing.assert_close(g(x), ref)

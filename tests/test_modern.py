"""Chapter 16's pieces against references: grouped-query attention against PyTorch's, the sliding window
against the causal mask, the rolling cache, latent attention absorbed and plain, RMSNorm and SwiGLU."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib import modern
from kqvlib.block import RMSNorm, SwiGLU
from kqvlib.model import GPTConfig
from kqvlib.multihead import KVCache, MultiHeadAttention, merge_heads, repeat_kv, split_heads
from kqvlib.positions import RotaryEmbedding

F64 = torch.float64


def test_gqa_with_as_many_kv_heads_is_mha_exactly():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=True)
    torch.manual_seed(0)
    gqa = MultiHeadAttention(32, 4, causal=True, n_kv_heads=4)
    x = torch.randn(2, 9, 32)
    assert all(torch.equal(a, b) for a, b in zip(mha.state_dict().values(), gqa.state_dict().values()))
    assert torch.equal(mha(x), gqa(x))


@pytest.mark.parametrize("G", [1, 2, 4])
@pytest.mark.parametrize("impl", ["sdpa", "scratch"])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_equals_pytorch_enable_gqa_in_float64(G, impl, causal):
    torch.manual_seed(1)
    m = MultiHeadAttention(32, 4, causal=causal, n_kv_heads=G, impl=impl).double()
    x = torch.randn(2, 7, 32, dtype=F64)
    q = split_heads(m.q_proj(x), 4)  # (B, 4, T, 8)
    k, v = (split_heads(t, G) for t in m.kv_proj(x).chunk(2, dim=-1))  # (B, G, T, 8)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    ref = m.out_proj(merge_heads(ref))
    torch.testing.assert_close(m(x), ref, atol=1e-12, rtol=1e-12)


def test_repeat_kv_matches_repeat_interleave():
    k = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(k, 4), k.repeat_interleave(4, dim=1))
    assert repeat_kv(k, 1) is k


@pytest.mark.parametrize("G", [1, 2])
def test_the_cache_holds_n_kv_heads_heads_and_decoding_matches(G):
    torch.manual_seed(2)
    rot = RotaryEmbedding(8, 16)
    m = MultiHeadAttention(32, 4, causal=True, n_kv_heads=G, rotary=rot).double()
    x = torch.randn(1, 6, 32, dtype=F64)
    cache = KVCache()
    outs = [m(x[:, :4], cache=cache)] + [m(x[:, t:t + 1], cache=cache) for t in (4, 5)]
    assert cache._k.shape == (1, G, 6, 8) and cache._v.shape == (1, G, 6, 8)
    torch.testing.assert_close(torch.cat(outs, 1), m(x))


def test_n_kv_heads_must_divide_n_heads():
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        MultiHeadAttention(32, 4, n_kv_heads=3)


def test_sliding_window_at_least_T_is_causal():
    torch.manual_seed(3)
    x = torch.randn(2, 10, 32)
    mha = MultiHeadAttention(32, 4, causal=True)
    for window in (10, 50):
        swa = modern.SlidingWindowAttention(32, 4, window)
        swa.load_state_dict(mha.state_dict())
        torch.testing.assert_close(swa(x), mha(x), atol=1e-6, rtol=1e-5)
    assert torch.equal(modern.sliding_window_mask(10, 10), torch.ones(10, 10).tril().bool())


def test_sliding_window_mask_band():
    m = modern.sliding_window_mask(5, 2)
    assert m.sum(-1).tolist() == [1, 2, 2, 2, 2]
    assert torch.equal(modern.sliding_window_mask(2, 2, 5), m[-2:])


def test_banded_attention_equals_masked_attention():
    q, k, v = (torch.randn(2, 3, 37, 8, dtype=F64) for _ in range(3))
    for w in (1, 5, 16, 40):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=modern.sliding_window_mask(37, w))
        torch.testing.assert_close(modern.banded_attention(q, k, v, w), ref)


def test_sliding_window_decoding_with_a_rolling_cache_equals_the_full_pass():
    torch.manual_seed(4)
    rot = RotaryEmbedding(8, 64)
    swa = modern.SlidingWindowAttention(32, 4, 4, rotary=rot).double()
    x = torch.randn(2, 12, 32, dtype=F64)
    cache = modern.RollingKVCache(4, rotary=rot)
    steps = torch.cat([swa(x[:, t:t + 1], cache=cache) for t in range(12)], 1)
    assert len(cache) == 3
    torch.testing.assert_close(steps, swa(x))


def test_rolling_cache_keeps_sinks_and_the_newest():
    cache = modern.RollingKVCache(5, sinks=2)
    for t in range(9):
        val = torch.full((1, 1, 1, 2), float(t))
        k, _ = cache.append(val, val)
    assert k[0, 0, :, 0].tolist() == [0, 1, 6, 7, 8]  # what the last step saw
    assert cache._v[0, 0, :, 0].tolist() == [0, 1, 7, 8] and len(cache) == 4


def test_latent_attention_absorbed_equals_plain():
    torch.manual_seed(5)
    mla = modern.LatentAttention(32, 4, d_latent=6, d_rope=4, max_positions=16).double()
    x = torch.randn(2, 9, 32, dtype=F64)
    cache = KVCache()
    prefill = mla(x[:, :5], cache=cache)
    steps = [mla(x[:, t:t + 1], cache=cache) for t in range(5, 9)]  # the absorbed form
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), mla(x))
    assert cache._k.shape == (2, 9, 6) and cache._v.shape == (2, 9, 4)  # latents, rotated keys
    q_c, q_r = torch.randn(2, 4, 3, 8, dtype=F64), torch.randn(2, 4, 3, 4, dtype=F64)
    c, k_r = torch.randn(2, 9, 6, dtype=F64), torch.randn(2, 1, 9, 4, dtype=F64)
    torch.testing.assert_close(mla.attend_absorbed(q_c, q_r, c, k_r), mla.attend_plain(q_c, q_r, c, k_r))


def test_bytes_per_token_of_published_models():
    P = modern.PUBLISHED
    assert modern.kv_bytes_per_token(**{k: P["Llama 3 8B"][k] for k in ("n_layers", "n_kv_heads", "head_dim")}) == 131072
    assert modern.kv_bytes_per_token(12, 12, 64) == 36864
    assert modern.latent_bytes_per_token(61, 512, 64) == 70272


def test_rmsnorm_equals_pytorch_and_swiglu_shapes():
    x = torch.randn(3, 5, 16, dtype=F64)
    ours, ref = RMSNorm(16).double(), nn.RMSNorm(16, eps=1e-6).double()
    with torch.no_grad():
        ours.weight.uniform_()
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))
    mlp = SwiGLU(48)
    assert mlp.gate.out_features == 128 and mlp(torch.randn(2, 3, 48)).shape == (2, 3, 48)


def test_qk_norm_normalises_each_head():
    torch.manual_seed(6)
    qk = modern.QKNorm(8)
    q, k = qk(torch.randn(2, 4, 5, 8) * 30, torch.randn(2, 2, 5, 8) * 30)
    torch.testing.assert_close(q.pow(2).mean(-1), torch.ones(2, 4, 5), atol=1e-4, rtol=1e-4)
    m = MultiHeadAttention(32, 4, causal=True, n_kv_heads=2, qk_norm=qk)
    assert m(torch.randn(1, 5, 32)).shape == (1, 5, 32)


def test_build_gpt_composes_pieces_and_trains():
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=32, pos_emb="rope", norm="rmsnorm")
    gqa = lambda c, rot: MultiHeadAttention(c.n_embd, c.n_head, causal=True, rotary=rot, n_kv_heads=1)
    model = modern.build_gpt(cfg, gqa, lambda c: SwiGLU(c.n_embd))
    assert model.blocks[0].attn.n_kv_heads == 1 and isinstance(model.blocks[1].mlp, SwiGLU)
    data = torch.arange(200) % 11
    losses = modern.train_steps(model, data, 30, 8, 1e-2)
    assert losses[-1] < losses[0]
    ids = data[:17].view(1, 17)
    caches = [modern.RollingKVCache(8, sinks=1, rotary=model.blocks[0].attn.rotary) for _ in model.blocks]
    assert modern.stream_losses(model, ids, caches).shape == (16,)

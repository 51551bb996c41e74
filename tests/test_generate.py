"""Sampling rules and generation with the KV cache (chapter 11)."""
import pytest
import torch
import torch.nn.functional as F

from kqvlib import GPT, GPTConfig, generate, sample_next
from kqvlib.generate import top_k_filter, top_p_filter


def tiny(pos_emb="rope", impl="sdpa", block_size=24, bias=True, norm="layernorm"):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=13, block_size=block_size, n_layer=2, n_head=2, n_embd=16, pos_emb=pos_emb,
                    attn_impl=impl, bias=bias, norm=norm)
    return GPT(cfg).double().eval()


MODES = [dict(temperature=1.0), dict(temperature=0.0), dict(temperature=0.7, top_k=5),
         dict(temperature=1.2, top_p=0.8), dict(temperature=0.9, top_k=6, top_p=0.9)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pos_emb", ["rope", "learned", "sinusoidal"])
def test_cached_and_uncached_generation_identical(mode, pos_emb):
    m = tiny(pos_emb)
    start = torch.tensor([[1, 2, 3], [4, 5, 6]])
    outs = [generate(m, start, 40, generator=torch.Generator().manual_seed(5), use_cache=c, **mode)
            for c in (True, False)]  # 3 + 40 > block_size 24: the crop and recompute path runs too
    assert outs[0].shape == (2, 43)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0][:, :3], start)


@pytest.mark.parametrize("kw", [dict(bias=False), dict(norm="rmsnorm"), dict(impl="scratch")])
def test_cached_step_matches_full_forward_logits(kw):
    from kqvlib.generate import _LeanStep
    from kqvlib.multihead import KVCache
    m = tiny(**kw)
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, _ = m(idx)  # (2, 10, V)
        caches = [KVCache(m.config.block_size) for _ in m.blocks]
        m(idx[:, :4], caches=caches)
        step = _LeanStep(m, caches)
        for t in range(4, 10):
            assert torch.allclose(step(idx[:, t : t + 1]), full[:, t], atol=1e-10)


def test_greedy_is_argmax():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1, keepdim=True))
    m = tiny()
    a = generate(m, torch.tensor([[1]]), 10, temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = generate(m, torch.tensor([[1]]), 10, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)  # no randomness at all


def test_temperature_to_zero_approaches_greedy():
    logits = torch.randn(3, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    probs = F.softmax(logits / 1e-3, dim=-1)
    assert torch.allclose(probs, F.one_hot(logits.argmax(-1), 9).double(), atol=1e-12)
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, temperature=1e-3, generator=g) for _ in range(50)], dim=1)
    assert (draws == logits.argmax(-1, keepdim=True)).all()


def test_top_p_keeps_the_smallest_set_with_mass_at_least_p():
    g = torch.Generator().manual_seed(3)
    for p in (0.05, 0.3, 0.5, 0.9, 0.999):
        logits = torch.randn(5, 17, generator=g, dtype=torch.float64)
        kept = top_p_filter(logits, p) > float("-inf")  # (5, 17)
        probs = F.softmax(logits, -1)
        for row in range(5):
            mass = probs[row][kept[row]].sum()
            assert mass >= p - 1e-12  # reaches p …
            smallest_kept = probs[row][kept[row]].min()
            assert mass - smallest_kept < p  # … and without its least likely token it would not
            assert (probs[row][~kept[row]] <= smallest_kept).all()  # the most likely ones
    exact = torch.log(torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64))
    assert (top_p_filter(exact, 0.8) > float("-inf")).tolist() == [[True, True, False]]
    assert (top_p_filter(exact, 1.0) > float("-inf")).all()


def test_top_k_keeps_k_and_sampling_stays_inside():
    logits = torch.randn(6, 20, generator=torch.Generator().manual_seed(4))
    kept = top_k_filter(logits, 3) > float("-inf")
    assert (kept.sum(-1) == 3).all()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        tok = sample_next(logits, top_k=3, generator=g)
        assert kept.gather(1, tok).all()
        tok = sample_next(logits, top_p=0.5, generator=g)
        assert (top_p_filter(logits, 0.5) > float("-inf")).gather(1, tok).all()


@pytest.mark.parametrize("kw, words", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
])
def test_errors_name_the_argument(kw, words):
    with pytest.raises(ValueError, match=words):
        generate(tiny(), torch.tensor([[1]]), 3, **kw)


def test_generate_leaves_training_mode_and_returns_ordinary_tensor():
    m = tiny().train()
    out = generate(m, torch.tensor([[1, 2]]), 5)
    assert m.training and not out.is_inference()


# --- past the context: the rolling cache and its uncached reference -------------------------------------------

def _banded_forward(m, idx, window):
    """The model's own blocks with a banded causal mask (for idx no longer than block_size)."""
    T = idx.shape[1]
    pos = torch.arange(T)
    band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - window)  # (T, T)
    x = m.tok_emb(idx)
    for blk in m.blocks:
        x = blk(x, mask=band)
    return m.lm_head(m.ln_f(x))[:, -1]


@pytest.mark.parametrize("window", [1, 3, 7, 24])
def test_window_logits_equal_the_models_blocks_with_a_banded_mask(window):
    from kqvlib.generate import window_logits
    m = tiny(block_size=24)
    idx = torch.randint(0, 13, (2, 24), generator=torch.Generator().manual_seed(window))
    with torch.no_grad():
        for t in (1, 5, 24):
            assert torch.allclose(window_logits(m, idx[:, :t], window), _banded_forward(m, idx[:, :t], window),
                                  atol=1e-12)
        # the whole window: plain causal attention, the model's forward
        assert torch.allclose(window_logits(m, idx), m(idx)[0][:, -1], atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(bias=False, norm="rmsnorm")])
def test_rolling_cache_logits_equal_the_uncached_window_past_the_context(kw):
    from kqvlib.generate import _LeanStep, window_logits
    from kqvlib.multihead import KVCache
    m = tiny(block_size=8, **kw)
    idx = torch.randint(0, 13, (2, 40), generator=torch.Generator().manual_seed(0))  # 5 windows long
    with torch.no_grad():
        caches = [KVCache(8) for _ in m.blocks]
        m(idx[:, :3], caches=caches)
        step = _LeanStep(m, caches, n_positions=40)
        for t in range(3, 39):
            got = step(idx[:, t : t + 1])  # logits for position t + 1
            assert torch.allclose(got, window_logits(m, idx[:, : t + 1]), atol=1e-10), t
        assert step.kv.shape[-2] == 8  # the cache never grows past the window


@pytest.mark.parametrize("mode", MODES)
def test_rolling_cache_generation_equals_uncached_with_the_same_window(mode):
    m = tiny(block_size=8)
    for start in (torch.tensor([[1], [7]]), torch.randint(0, 13, (2, 19), generator=torch.Generator().manual_seed(1))):
        outs = [generate(m, start, 4 * 8, generator=torch.Generator().manual_seed(3), use_cache=c, **mode)
                for c in (True, False)]  # a prompt shorter and one longer than the window
        assert torch.equal(outs[0], outs[1])


def test_rolling_cache_float32_greedy_tokens_identical():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=32, pos_emb="rope")).eval()
    start = torch.tensor([[3]])
    a = generate(m, start, 64, temperature=0.0)
    b = generate(m, start, 64, temperature=0.0, use_cache=False)
    assert torch.equal(a, b)


def test_window_logits_needs_rotary_positions():
    from kqvlib.generate import window_logits
    with pytest.raises(ValueError, match="rotary"):
        window_logits(tiny("learned"), torch.tensor([[1, 2]]))


def test_generate_works_on_blocks_the_lean_step_does_not_know():
    """Grouped-query heads (chapter 16): generate falls back to the modules, cached == uncached, also past
    the context (where both crop and recompute)."""
    from kqvlib.modern import build_gpt
    from kqvlib.multihead import MultiHeadAttention

    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16, pos_emb="rope")
    torch.manual_seed(0)
    gqa = lambda c, rot: MultiHeadAttention(c.n_embd, c.n_head, causal=True, bias=c.bias, rotary=rot,
                                            n_kv_heads=2)
    model = build_gpt(cfg, attention=gqa).double()
    idx = torch.tensor([[1, 2, 3]])
    for n in (4, 12):  # within the context, and past it
        a = generate(model, idx, n, temperature=0.0)
        b = generate(model, idx, n, temperature=0.0, use_cache=False)
        assert torch.equal(a, b) and a.shape == (1, 3 + n)
    assert isinstance(model, GPT)

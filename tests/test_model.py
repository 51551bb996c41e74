"""The GPT: shapes, initial loss, causality, reproducible generation, both attention paths."""
import math

import pytest
import torch

from kqvlib import GPT, GPTConfig, generate

SMALL = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)


def make(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**SMALL, **kw})).eval()


def test_shapes_and_loss():
    m = make()
    idx = torch.randint(0, 65, (3, 16))
    logits, loss = m(idx, idx)
    assert logits.shape == (3, 16, 65) and loss.shape == ()
    logits, loss = m(idx[:, :5])
    assert logits.shape == (3, 5, 65) and loss is None


def test_initial_loss_is_close_to_log_vocab():
    m = make(n_layer=4, n_head=4, n_embd=128, block_size=64)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 65, (8, 64), generator=g)
    tgt = torch.randint(0, 65, (8, 64), generator=g)
    _, loss = m(idx, tgt)
    assert abs(loss.item() - math.log(65)) < 0.1


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_masking_is_causal(impl):
    """Changing token t never changes the logits at positions < t."""
    m = make(attn_impl=impl).double()
    idx = torch.randint(0, 65, (1, 16))
    base, _ = m(idx)
    for t in [1, 7, 15]:
        changed = idx.clone()
        changed[0, t] = (changed[0, t] + 1) % 65
        out, _ = m(changed)
        torch.testing.assert_close(out[0, :t], base[0, :t], atol=0, rtol=0)
        assert not torch.allclose(out[0, t], base[0, t])


def test_attention_paths_give_the_same_model():
    a, b = make(attn_impl="scratch").double(), make(attn_impl="sdpa").double()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 65, (2, 16))
    torch.testing.assert_close(a(idx)[0], b(idx)[0], atol=1e-10, rtol=1e-10)


def test_weights_are_tied():
    m = make()
    assert m.lm_head.weight is m.tok_emb.weight


def test_generation_is_reproducible_under_a_seed():
    m = make()
    start = torch.zeros(2, 1, dtype=torch.long)
    torch.manual_seed(42)
    a = generate(m, start, 40, temperature=0.8, top_k=10)
    torch.manual_seed(42)
    b = generate(m, start, 40, temperature=0.8, top_k=10)
    assert a.shape == (2, 41) and torch.equal(a, b)
    c = generate(m, start, 40, generator=torch.Generator().manual_seed(42))
    d = generate(m, start, 40, generator=torch.Generator().manual_seed(42))
    assert torch.equal(c, d)


def test_top_k_one_is_greedy():
    m = make()
    start = torch.zeros(1, 1, dtype=torch.long)
    out = generate(m, start, 5, top_k=1)
    for t in range(1, 6):
        logits, _ = m(out[:, :t])
        assert out[0, t] == logits[0, -1].argmax()


def test_bad_inputs_name_the_shapes():
    m = make()
    with pytest.raises(ValueError, match="exceeds block_size 16"):
        m(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\).*\(4,\)"):
        m(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets have shape \(1, 3\)"):
        m(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_kv_cache_generates_the_same_tokens(pos_emb, impl):
    """Sampling with and without the cache gives identical tokens, also past block_size (16 here)."""
    m = make(pos_emb=pos_emb, attn_impl=impl)
    start = torch.randint(0, 65, (2, 3), generator=torch.Generator().manual_seed(1))
    a = generate(m, start, 30, top_k=20, generator=torch.Generator().manual_seed(7), use_cache=True)
    b = generate(m, start, 30, top_k=20, generator=torch.Generator().manual_seed(7), use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("max_len", [None, 10])
def test_cached_logits_equal_full_forward(max_len):
    from kqvlib.multihead import KVCache

    m = make(pos_emb="rope").double()
    idx = torch.randint(0, 65, (2, 10))
    full, _ = m(idx)
    caches = [KVCache(max_len) for _ in m.blocks]
    first, _ = m(idx[:, :4], caches=caches)
    steps = [m(idx[:, t : t + 1], caches=caches)[0] for t in range(4, 10)]
    torch.testing.assert_close(torch.cat([first] + steps, dim=1), full, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="one new position"):
        m(idx[:, :2], caches=caches)


@pytest.mark.parametrize("cfg", [dict(pos_emb="rope"), dict(norm="rmsnorm"), dict(pos_emb="rope", norm="rmsnorm", bias=False)])
def test_variants_are_causal_and_start_at_log_vocab(cfg):
    m = make(**cfg).double()
    idx = torch.randint(0, 65, (4, 16))
    logits, loss = m(idx, torch.randint(0, 65, (4, 16)))
    assert abs(loss.item() - math.log(65)) < 0.1
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 65
    torch.testing.assert_close(m(changed)[0][:, :9], logits[:, :9], atol=0, rtol=0)


def test_a_token_outside_the_vocabulary_names_the_id_and_the_vocabulary():
    m = make()
    with pytest.raises(ValueError, match=r"token id 70 is outside the vocabulary \(vocab_size 65"):
        m(torch.tensor([[1, 2, 70]]))
    with pytest.raises(ValueError, match=r"token id -1 "):
        m(torch.tensor([[-1, 2]]))


def test_bad_targets_and_ids_are_named():
    m = make()
    idx = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"GPT: targets hold id 65, outside the vocabulary"):
        m(idx, torch.tensor([[1, 65, 2]]))
    with pytest.raises(ValueError, match="GPT: targets"):
        m(idx, idx.float())
    assert m(idx, torch.full_like(idx, -100))[1].isnan()  # -100 ignores a position, as in F.cross_entropy
    with pytest.raises(ValueError, match="GPT: idx must be integer token ids"):
        m(idx.bool())
    with pytest.raises(ValueError, match="GPT: idx is on meta"):
        m(idx.to("meta"))
    with pytest.raises(ValueError, match=r"GPT: caches must be None or a list of one KVCache per block \(2\)"):
        m(idx, caches=[])


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
def test_the_forward_compiles_without_graph_breaks(pos_emb):
    """The argument checks add no data-dependent branch: torch.compile traces the forward as one graph,
    for sequences of any length (dynamic shapes), and computes the same loss."""
    m = make(pos_emb=pos_emb, n_layer=1)
    torch._dynamo.reset()
    compiled = torch.compile(m, backend="eager", fullgraph=True, dynamic=True)
    for T in (3, 7):
        idx = torch.randint(0, 65, (2, T))
        torch.testing.assert_close(compiled(idx, idx)[1], m(idx, idx)[1], atol=0, rtol=0)

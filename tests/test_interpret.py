"""kqvlib.interpret: captured weights equal MultiHeadAttention's own, ablation equals zeroing W_O's columns
for the head, both context managers leave the model exactly as it was (also after an exception), and the
head scores and target masks on small hand-made inputs."""
import pytest
import torch

from kqvlib.interpret import (ablate_heads, attention_by_offset, attention_layers, capture_attention,
                              capture_heads, head_score, induction_score, line_start_targets, patch_heads, previous_token_targets, speaker_targets,
                              uniform_causal_weights)
from kqvlib.model import GPT, GPTConfig


def small_gpt(pos_emb="rope", n_head=2, dtype=torch.float64):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=3, n_head=n_head, n_embd=16, pos_emb=pos_emb,
                    bias=True)
    model = GPT(cfg).to(dtype).eval()
    for p in model.parameters():  # larger weights than the init, so every head matters
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    return model


def ids(B=2, T=12, seed=1):
    return torch.randint(0, 11, (B, T), generator=torch.Generator().manual_seed(seed))


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs)
               + len(m._forward_pre_hooks_with_kwargs) for m in model.modules())


# --- capture_attention ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pos_emb", ["rope", "learned"])
def test_captured_weights_equal_return_weights(pos_emb):
    model, x = small_gpt(pos_emb), ids()
    with capture_attention(model) as weights:
        logits, _ = model(x)
    assert len(weights) == 3 and all(w.shape == (2, 2, 12, 12) for w in weights)
    # the same weights from MultiHeadAttention(return_weights=True), layer by layer
    h = model.tok_emb(x)
    if model.pos is not None:
        h = h + model.pos(12)
    for block, w in zip(model.blocks, weights):
        y, expected = block.attn(block.ln1(h), return_weights=True)
        assert torch.equal(w, expected)
        h = h + y  # the block's own steps, with the attention output that came with the weights
        h = h + block.mlp(block.ln2(h))
    assert torch.equal(model.lm_head(model.ln_f(h)), logits)


def test_capture_passes_the_output_through_unchanged():
    model, x = small_gpt(), ids()
    before, _ = model(x)
    with capture_attention(model):
        during, _ = model(x)
    assert torch.allclose(before, during, atol=1e-12)  # the scratch path instead of the fused one
    # a caller that asks for the weights itself still gets them
    attn = model.blocks[0].attn
    h = torch.randn(1, 5, 16, dtype=torch.float64)
    with capture_attention(model) as weights:
        y, w = attn(h, return_weights=True)
    assert torch.equal(w, weights[0])


def test_capture_weights_are_causal_distributions():
    model = small_gpt()
    with capture_attention(model) as weights:
        model(ids())
    for w in weights:
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 12, dtype=torch.float64))
        assert torch.equal(w.triu(1), torch.zeros_like(w))


def test_capture_removes_its_hooks_also_after_an_exception():
    model, x = small_gpt(), ids()
    before, _ = model(x)
    n = hook_count(model)
    with capture_attention(model):
        assert hook_count(model) > n
    assert hook_count(model) == n
    with pytest.raises(RuntimeError, match="inside"):
        with capture_attention(model):
            model(x)
            raise RuntimeError("raised inside the block")
    assert hook_count(model) == n
    after, _ = model(x)
    assert torch.equal(before, after)


# --- ablate_heads -----------------------------------------------------------------------------------------

def zeroed_columns(model, layer, head):
    """A copy of the model whose W_O has zeros in the head's input columns: the definition we test."""
    import copy
    other = copy.deepcopy(model)
    attn = other.blocks[layer].attn
    hs = attn.head_size
    with torch.no_grad():
        attn.out_proj.weight[:, head * hs:(head + 1) * hs] = 0.0
    return other


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 1), (2, 0)])
def test_ablating_a_head_equals_zeroing_its_columns_of_w_o(layer, head):
    model, x = small_gpt(), ids()
    with ablate_heads(model, {(layer, head)}):
        ablated, _ = model(x)
    expected, _ = zeroed_columns(model, layer, head)(x)
    assert torch.allclose(ablated, expected, atol=1e-12)
    plain, _ = model(x)
    assert (ablated - plain).abs().max() > 1e-3  # it did change something


def test_ablating_every_head_of_a_layer_removes_the_attention_branch_but_the_bias():
    model, x = small_gpt(), ids()
    block = model.blocks[1]
    with ablate_heads(model, {(1, 0), (1, 1)}):
        with capture_attention(model):
            pass
        h = torch.randn(2, 12, 16, dtype=torch.float64)
        out = block.attn(h)
    assert torch.allclose(out, block.attn.out_proj.bias.expand(2, 12, 16), atol=1e-12)


def test_ablation_restores_the_model_exactly_also_after_an_exception():
    model, x = small_gpt(dtype=torch.float32), ids()
    before, _ = model(x)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    n = hook_count(model)
    with ablate_heads(model, {(0, 1), (2, 0)}):
        during, _ = model(x)
    after, _ = model(x)
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
    with pytest.raises(KeyError):
        with ablate_heads(model, {(1, 0)}):
            model(x)
            raise KeyError("inside")
    after, _ = model(x)
    assert torch.equal(before, after)
    assert hook_count(model) == n
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


def test_ablation_and_capture_together():
    model, x = small_gpt(), ids()
    with ablate_heads(model, {(0, 0)}), capture_attention(model) as weights:
        model(x)
    assert all(w is not None for w in weights)
    # ablating a head of layer 0 leaves layer 0's weights alone, changes the later layers'
    with capture_attention(model) as plain:
        model(x)
    assert torch.equal(weights[0], plain[0])
    assert not torch.allclose(weights[1], plain[1])


def test_ablate_rejects_heads_that_do_not_exist():
    model = small_gpt()
    with pytest.raises(ValueError, match=r"no head \(3, 0\).*3 layers of 2 heads"):
        with ablate_heads(model, {(3, 0)}):
            pass
    with pytest.raises(ValueError, match=r"no head \(0, 2\)"):
        with ablate_heads(model, [(0, 2)]):
            pass
    assert hook_count(model) == 0
    assert len(attention_layers(model)) == 3


# --- scores and targets ------------------------------------------------------------------------------------

def test_head_score_of_a_perfect_previous_token_head_is_one():
    T = 7
    perfect = torch.zeros(1, 1, T, T)
    perfect[0, 0, 0, 0] = 1.0
    perfect[0, 0, torch.arange(1, T), torch.arange(T - 1)] = 1.0
    assert head_score(perfect, previous_token_targets(T)).item() == 1.0
    base = head_score(uniform_causal_weights(1, T), previous_token_targets(T)).item()
    expected = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)  # query 0 has no previous token
    assert base == pytest.approx(expected)


def test_head_score_shapes_and_errors():
    w = uniform_causal_weights(3, 5).expand(3, 4, 5, 5)
    assert head_score(w, previous_token_targets(5)).shape == (4,)
    with pytest.raises(ValueError, match=r"targets must be \(B, T, S\) = \(3, 5, 5\)"):
        head_score(w, torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="weights"):
        head_score(w[0], previous_token_targets(5))


def encode(text):
    chars = sorted(set(text) | {"\n", ":"})
    return torch.tensor([[chars.index(c) for c in text]]), chars.index("\n"), chars.index(":")


def test_line_start_targets_point_at_the_first_character_of_the_line():
    text = "ab\ncde\nf"
    x, nl, _ = encode(text)
    tg = line_start_targets(x, nl, first_char=True)[0]
    found = {t: tg[t].nonzero().flatten().tolist() for t in range(len(text))}
    assert found == {0: [], 1: [], 2: [], 3: [], 4: [3], 5: [3], 6: [3], 7: []}
    tg = line_start_targets(x, nl)[0]  # the newline that opens the line
    found = {t: tg[t].nonzero().flatten().tolist() for t in range(len(text))}
    assert found == {0: [], 1: [], 2: [], 3: [2], 4: [2], 5: [2], 6: [2], 7: [6]}


def test_speaker_targets_name_the_speaker_of_every_later_line():
    text = "x\n\nAB:\nhi\nyo\n\nC:\nok"
    x, nl, colon = encode(text)
    tg = speaker_targets(x, nl, colon)[0]
    names = {t: "".join(text[k] for k in tg[t].nonzero().flatten().tolist()) for t in range(len(text))}
    for t, c in enumerate(text):
        if 7 <= t <= 13:  # "hi\nyo\n" and the blank line's second "\n": AB's speech
            assert names[t] == "AB", (t, c)
        elif t >= 17:  # "ok"
            assert names[t] == "C", (t, c)
        else:  # before any name, or on a name line
            assert names[t] == "", (t, c)


# --- induction_score -------------------------------------------------------------------------------------------

def test_induction_score_on_hand_built_attention_patterns():
    T, period = 10, 4
    t = torch.arange(T)
    induction = torch.zeros(T, T)
    induction[t[period:], t[period:] - period + 1] = 1.0  # the token after the previous occurrence
    induction[:period] = torch.eye(T)[:period]  # first copy: attend to itself (not scored)
    prev = torch.eye(T).roll(1, 0).tril()  # query t looks at t − 1 (query 0 at itself)
    prev[0, 0] = 1.0
    uniform = uniform_causal_weights(1, T)[0, 0]  # (T, T)
    w = torch.stack([induction, prev, uniform, 0.5 * induction + 0.5 * prev])  # (4, T, T): four heads
    score = induction_score(w, period)
    assert score.shape == (4,)
    expected_uniform = (1.0 / (t[period:] + 1.0)).mean()
    assert torch.allclose(score, torch.stack([torch.tensor(1.0), torch.tensor(0.0), expected_uniform,
                                              torch.tensor(0.5)]))
    # leading axes are kept: (n_layer, n_head, T, T) → (n_layer, n_head), (B, H, T, T) → (B, H)
    assert torch.equal(induction_score(w.reshape(2, 2, T, T), period), score.reshape(2, 2))


def test_induction_score_rejects_bad_input():
    w = torch.rand(2, 3, 8, 8)
    for bad in (0, 8, 9, -1, 2.0):
        with pytest.raises(ValueError, match="period"):
            induction_score(w, bad)
    with pytest.raises(ValueError, match="T, T"):
        induction_score(torch.rand(2, 8, 7), 3)


# --- attention_by_offset --------------------------------------------------------------------------------------

def test_attention_by_offset_on_hand_built_patterns():
    T = 9
    prev = torch.eye(T).roll(1, 0).tril()  # query t on key t − 1
    prev[0, 0] = 1.0
    uniform = uniform_causal_weights(1, T)[0, 0]
    p = attention_by_offset(torch.stack([prev, uniform]), 2)  # (2, 4): offsets 0, 1, 2, further
    assert torch.allclose(p[0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    t = torch.arange(2, T, dtype=torch.float32)
    assert torch.allclose(p[1], torch.stack([(1 / (t + 1)).mean()] * 3 + [((t - 2) / (t + 1)).mean()]))
    assert torch.allclose(p.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="max_offset"):
        attention_by_offset(prev, T)


# --- capture_heads, patch_heads --------------------------------------------------------------------------------

def test_captured_head_outputs_rebuild_each_attention_output():
    model, x = small_gpt(), ids()
    with capture_heads(model) as outs, capture_attention(model):
        model(x)
    layers = attention_layers(model)
    for l, attn in enumerate(layers):
        B, T, H, hs = outs[l].shape
        assert (H, hs) == (2, 8)
        y = attn.out_proj(outs[l].reshape(B, T, H * hs))  # (B, T, C) what the layer added
        per_head = sum(outs[l][:, :, h] @ attn.out_proj.weight[:, h * hs:(h + 1) * hs].T for h in range(H))
        assert torch.allclose(y, per_head + attn.out_proj.bias, atol=1e-12)


def test_patching_every_head_from_another_run_of_layer_0_gives_that_runs_layer_0():
    model, x = small_gpt(), ids()
    x2 = ids(seed=2)
    with capture_heads(model) as src:
        model(x2)
    with patch_heads(model, src, {(0, 0), (0, 1)}), capture_heads(model) as seen:  # in hook order
        model(x)
    assert torch.equal(seen[0], src[0])  # capture sees what the patch put in
    with capture_heads(model) as plain:
        model(x)
    assert not torch.allclose(plain[0], src[0])
    # patching one head changes that head's slice only
    with patch_heads(model, src, {(1, 1)}), capture_heads(model) as one:
        model(x)
    assert torch.equal(one[1][:, :, 0], plain[1][:, :, 0]) and torch.equal(one[1][:, :, 1], src[1][:, :, 1])


def test_patching_restores_the_model_exactly_also_after_an_exception():
    model, x = small_gpt(dtype=torch.float32), ids()
    before, _ = model(x)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    n = hook_count(model)
    with capture_heads(model) as src:
        model(ids(seed=3))
    assert hook_count(model) == n
    with patch_heads(model, src, {(2, 1)}):
        during, _ = model(x)
    assert not torch.equal(before, during)
    with pytest.raises(RuntimeError):
        with patch_heads(model, src, {(0, 0), (1, 1)}), capture_heads(model):
            model(x)
            raise RuntimeError("inside")
    after, _ = model(x)
    assert torch.equal(before, after) and hook_count(model) == n
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


def test_patch_rejects_bad_heads_and_a_source_of_another_shape():
    model, x = small_gpt(), ids()
    with capture_heads(model) as src:
        model(ids(T=5))
    with pytest.raises(ValueError, match="recorded output"):
        with patch_heads(model, src, {(0, 0)}):
            model(x)
    for bad in ({(0, 2)}, 3, [(0,)]):
        with pytest.raises(ValueError, match="heads|no head"):
            with patch_heads(model, src, bad):
                pass
    assert hook_count(model) == 0

"""Chapter 12: cross-attention with source and target of different lengths, the encoder–decoder, the task."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import kqvlib
from kqvlib import encdec as ed

F64 = torch.float64


def _mha_pair(C=12, H=3, seed=0):
    """kqvlib's MultiHeadAttention and nn.MultiheadAttention with the same weights (float64)."""
    torch.manual_seed(seed)
    ours = kqvlib.MultiHeadAttention(C, H).double()
    theirs = nn.MultiheadAttention(C, H, batch_first=True).double()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.kv_proj.weight]))  # (3C, C): Q, K, V
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.kv_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, theirs


@pytest.mark.parametrize("T, S", [(3, 7), (7, 3), (1, 5), (5, 5)])
def test_cross_attention_matches_nn_multihead_attention(T, S):
    ours, theirs = _mha_pair()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, T, 12, generator=g, dtype=F64)  # (B, T, C): the queries' sequence
    memory = torch.randn(2, S, 12, generator=g, dtype=F64)  # (B, S, C): keys and values
    y, w = ours(x, context=memory, return_weights=True)
    y_ref, w_ref = theirs(x, memory, memory, average_attn_weights=False)
    assert y.shape == (2, T, 12) and w.shape == (2, 3, T, S)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(ours(x, context=memory), y)  # the fused path gives the same


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_cross_attention_with_a_source_padding_mask(impl):
    ours, theirs = _mha_pair()
    ours.impl = impl
    g = torch.Generator().manual_seed(2)
    T, S = 4, 6
    x = torch.randn(3, T, 12, generator=g, dtype=F64)
    memory = torch.randn(3, S, 12, generator=g, dtype=F64)
    keep = kqvlib.padding_mask([6, 2, 4], S)  # (B, 1, 1, S), True = real
    y, w = ours(x, context=memory, mask=keep, return_weights=True)
    # nn.MultiheadAttention's key_padding_mask is the opposite: True = padding, shape (B, S)
    y_ref, w_ref = theirs(x, memory, memory, key_padding_mask=~keep[:, 0, 0], average_attn_weights=False)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(w, w_ref)
    assert bool((w[1, :, :, 2:] == 0).all()), "padded keys must get no weight"
    torch.testing.assert_close(ours(x, context=memory, mask=keep), y)


def test_cross_attention_matches_sdpa_with_a_rectangular_mask():
    """A (T, S) boolean mask with T ≠ S, against F.scaled_dot_product_attention on the same projections."""
    ours, _ = _mha_pair(C=8, H=2)
    g = torch.Generator().manual_seed(3)
    T, S = 3, 5
    x = torch.randn(2, T, 8, generator=g, dtype=F64)
    memory = torch.randn(2, S, 8, generator=g, dtype=F64)
    mask = torch.rand(T, S, generator=g) > 0.4  # (T, S)
    mask[:, 0] = True  # every query keeps a key
    y = ours(x, context=memory, mask=mask)
    q = ours.q_proj(x).view(2, T, 2, 4).transpose(1, 2)  # (B, T, C) → (B, H, T, hs)
    k, v = ours.kv_proj(memory).chunk(2, dim=-1)  # 2 × (B, S, C)
    k, v = (t.view(2, S, 2, 4).transpose(1, 2) for t in (k, v))  # (B, S, C) → (B, H, S, hs)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hs)
    ref = ours.out_proj(ref.transpose(1, 2).reshape(2, T, 8))  # (B, H, T, hs) → (B, T, C)
    torch.testing.assert_close(y, ref)


def test_cross_attention_rejects_a_causal_module_and_a_square_mask():
    torch.manual_seed(0)
    x, memory = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    with pytest.raises(ValueError, match="causal"):
        kqvlib.MultiHeadAttention(8, 2, causal=True)(x, context=memory)
    with pytest.raises(ValueError, match="does not broadcast"):
        kqvlib.MultiHeadAttention(8, 2, impl="scratch")(x, context=memory, mask=kqvlib.causal_mask(3))


def test_decoder_block_shapes_and_weights():
    torch.manual_seed(0)
    blk = ed.DecoderBlock(16, 4).double()
    x, memory = torch.randn(2, 5, 16, dtype=F64), torch.randn(2, 9, 16, dtype=F64)
    keep = kqvlib.padding_mask([9, 3], 9)
    y, w = blk(x, memory, keep, return_weights=True)
    assert y.shape == (2, 5, 16) and w.shape == (2, 4, 5, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5, dtype=F64))
    assert bool((w[1, ..., 3:] == 0).all())
    torch.testing.assert_close(blk(x, memory, keep), y)
    # causal self-attention: changing the last target position leaves the earlier outputs alone
    x2 = x.clone()
    x2[:, -1] += 1.0
    torch.testing.assert_close(blk(x2, memory, keep)[:, :-1], y[:, :-1])
    with pytest.raises(ValueError, match="memory"):
        blk(x, torch.randn(3, 9, 16, dtype=F64))


def test_encoder_decoder_forward_and_padding():
    torch.manual_seed(0)
    model = ed.EncoderDecoder(ed.EncDecConfig(d_model=32, n_heads=4)).double()
    src, tgt_in, tgt_out = ed.digit_batch(4, torch.Generator().manual_seed(0))
    logits, weights = model(src, tgt_in, return_weights=True)
    assert logits.shape == (4, tgt_in.shape[1], 13) and len(weights) == 2
    assert weights[0].shape == (4, 4, tgt_in.shape[1], src.shape[1])
    # padding in the source changes nothing: append more PAD and compare
    more = torch.cat([src, torch.zeros(4, 3, dtype=src.dtype)], dim=1)
    torch.testing.assert_close(model(more, tgt_in), logits)


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_digit_batch_is_the_task(task):
    src, tgt_in, tgt_out = ed.digit_batch(50, torch.Generator().manual_seed(1), task)
    for s, i, o in zip(src, tgt_in, tgt_out):
        digits = ed.to_digits(s)
        want = digits[::-1] if task == "reverse" else "".join(sorted(digits))
        assert 5 <= len(digits) <= 10 and ed.to_digits(o) == want
        assert ed.to_digits(i) == "^" + want[:-1] + want[-1]  # BOS, then the answer
        n = len(digits)
        assert s[n] == ed.EOS and o[n] == ed.EOS and bool((s[n + 1:] == ed.PAD).all())


def test_held_out_split_is_disjoint():
    g = torch.Generator().manual_seed(2)
    train_src = ed.digit_batch(2000, g)[0]
    test_src = ed.digit_batch(300, g, split="test")[0]
    digits = lambda src: torch.where(src >= 3, src - 3, -1)  # noqa: E731
    assert not bool(ed.is_held_out(digits(train_src)).any())
    assert bool(ed.is_held_out(digits(test_src)).all())
    train = {ed.to_digits(s) for s in train_src}
    assert not train & {ed.to_digits(s) for s in test_src}


def test_greedy_decode_and_exact_match_on_an_oracle():
    class Oracle(nn.Module):  # knows the answer: logits that point at tgt_out
        def __init__(self, answer):
            super().__init__()
            self.answer = answer

        def forward(self, src, tgt_in):
            T = tgt_in.shape[1]
            return F.one_hot(self.answer[:, :T], 13).float()

    src, _, tgt_out = ed.digit_batch(8, torch.Generator().manual_seed(3))
    assert ed.exact_match(Oracle(tgt_out), src, tgt_out) == 1.0
    wrong = tgt_out.clone()
    wrong[0, 0] = 3 if wrong[0, 0] != 3 else 4
    assert ed.exact_match(Oracle(wrong), src, tgt_out) == pytest.approx(7 / 8)


def test_training_learns_reversal():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only wait for each other
    try:
        torch.manual_seed(0)
        model = ed.EncoderDecoder(ed.EncDecConfig(d_model=32, n_heads=4))
        losses = ed.train_seq2seq(model, steps=60, batch_size=32)
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.8 * losses[0]  # the digits' frequencies alone give about 2.3

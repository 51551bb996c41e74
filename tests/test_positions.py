"""kqvlib.positions: the sinusoidal formula, the position modules' shapes, offsets and errors, RoPE's relative
property, and the reason positions are needed at all (attention without them is permutation-equivariant)."""
import math

import pytest
import torch

from kqvlib import (LearnedPositions, MultiHeadAttention, RotaryEmbedding, SinusoidalPositions,
                    scaled_dot_product_attention, sinusoidal_encoding)

F64 = torch.float64


# --- sinusoidal ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T, d, base", [(1, 2, 10000.0), (17, 6, 10000.0), (50, 32, 10000.0), (9, 10, 100.0)])
def test_sinusoidal_formula_against_a_direct_computation(T, d, base):
    pe = sinusoidal_encoding(T, d, base=base, dtype=F64)
    assert pe.shape == (T, d) and pe.dtype == F64
    for p in range(T):
        for i in range(d // 2):
            angle = p / base ** (2 * i / d)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoidal_default_is_float32_rounded_once():
    pe32, pe64 = sinusoidal_encoding(40, 16), sinusoidal_encoding(40, 16, dtype=F64)
    assert pe32.dtype == torch.float32
    assert torch.equal(pe32, pe64.float())


def test_sinusoidal_row_zero_and_range():
    pe = sinusoidal_encoding(100, 8, dtype=F64)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 4, dtype=F64))
    assert pe.abs().max() <= 1.0


def test_sinusoidal_dot_product_depends_only_on_the_distance():
    pe = sinusoidal_encoding(80, 16, dtype=F64)
    omega = 10000.0 ** (-torch.arange(0, 16, 2, dtype=F64) / 16)
    for k in (0, 1, 5, 30):
        dots = (pe[: 80 - k] * pe[k:]).sum(-1)  # PE[p]·PE[p+k] for every p
        torch.testing.assert_close(dots, torch.cos(k * omega).sum().expand_as(dots), atol=1e-12, rtol=0)


def test_odd_d_model_is_refused():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(4, 7)
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7, 16)


# --- the modules: shapes, offsets, errors ---------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SinusoidalPositions, LearnedPositions])
def test_position_modules_shapes_and_offsets(cls):
    torch.manual_seed(0)
    pos = cls(20, 12)
    full = pos(20)
    assert full.shape == (20, 12)
    assert pos(5).shape == (5, 12)
    torch.testing.assert_close(pos(5, offset=7), full[7:12], atol=0, rtol=0)
    torch.testing.assert_close(pos(1, offset=19), full[19:20], atol=0, rtol=0)


def test_sinusoidal_module_is_the_table():
    torch.testing.assert_close(SinusoidalPositions(30, 8)(30), sinusoidal_encoding(30, 8), atol=0, rtol=0)


def test_learned_positions_are_trainable_rows():
    torch.manual_seed(0)
    pos = LearnedPositions(10, 4)
    assert [n for n, p in pos.named_parameters()] == ["table.weight"]
    pos(3, offset=2).sum().backward()
    touched = pos.table.weight.grad.abs().sum(-1) > 0  # (10,)
    assert touched.tolist() == [False, False, True, True, True] + [False] * 5


@pytest.mark.parametrize("make, call", [
    (lambda: SinusoidalPositions(16, 8), lambda m: m(10, offset=8)),
    (lambda: LearnedPositions(16, 8), lambda m: m(10, offset=8)),
    (lambda: RotaryEmbedding(8, 16), lambda m: m(torch.zeros(1, 1, 10, 8), offset=8)),
])
def test_positions_past_the_table_name_the_positions(make, call):
    with pytest.raises(ValueError, match=r"positions up to 17 asked.*(15|16)"):
        call(make())


def test_double_rebuilds_the_tables_in_float64():
    s = SinusoidalPositions(50, 8).double()
    assert s.table.dtype == F64 and torch.equal(s.table, sinusoidal_encoding(50, 8, dtype=F64))
    r = RotaryEmbedding(8, 50).double()
    angles = 49 * 10000.0 ** (-torch.arange(0, 8, 2, dtype=F64) / 8)
    torch.testing.assert_close(r.cos[49, :4], angles.cos(), atol=1e-15, rtol=0)
    r.float()
    assert r.cos.dtype == torch.float32 and torch.equal(r.cos[49, :4], angles.cos().float())


# --- RoPE ---------------------------------------------------------------------------------------------------

def rotated_at_every_position(rope, v):
    """v (hs,) → (P, hs): row p is v rotated by position p."""
    P, hs = rope.max_positions, v.shape[-1]
    return rope(v.expand(1, 1, P, hs))[0, 0]


def test_rope_scores_depend_only_on_relative_position():
    """For many pairs (q, k) and every pair of positions (m, n): R_m q · R_n k depends only on m − n."""
    g = torch.Generator().manual_seed(0)
    rope = RotaryEmbedding(16, 120).double()
    for _ in range(5):
        q, k = torch.randn(16, generator=g, dtype=F64), torch.randn(16, generator=g, dtype=F64)
        S = rotated_at_every_position(rope, q) @ rotated_at_every_position(rope, k).T  # (P, P): S[m, n]
        # constant along every diagonal: S[m, n] = S[m + j, n + j]
        torch.testing.assert_close(S[1:, 1:], S[:-1, :-1], atol=1e-10, rtol=0)
        for delta in (-50, -3, 0, 1, 7, 100):  # and the value is q·R_(n−m) k, the score at m = 0
            diag = torch.diagonal(S, offset=delta)
            torch.testing.assert_close(diag, S[0, delta].expand_as(diag) if delta >= 0
                                       else S[-delta, 0].expand_as(diag), atol=1e-10, rtol=0)


def test_rope_relative_property_in_float32_holds_to_rounding():
    g = torch.Generator().manual_seed(1)
    rope = RotaryEmbedding(8, 64)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    S = rotated_at_every_position(rope, q) @ rotated_at_every_position(rope, k).T
    torch.testing.assert_close(S[1:, 1:], S[:-1, :-1], atol=1e-4, rtol=0)


def test_rope_preserves_norms_and_leaves_position_zero_alone():
    g = torch.Generator().manual_seed(2)
    rope = RotaryEmbedding(12, 40).double()
    x = torch.randn(2, 3, 40, 12, generator=g, dtype=F64)
    y = rope(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), atol=1e-12, rtol=0)
    pair = lambda t: torch.stack(t.chunk(2, dim=-1), dim=-1).norm(dim=-1)  # lengths of (x_i, x_{i+hs/2})
    torch.testing.assert_close(pair(y), pair(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :], atol=0, rtol=0)


def test_rope_is_a_complex_multiplication_and_offsets_slice_it():
    g = torch.Generator().manual_seed(3)
    rope = RotaryEmbedding(10, 30).double()
    x = torch.randn(1, 2, 30, 10, generator=g, dtype=F64)
    theta = 10000.0 ** (-torch.arange(0, 10, 2, dtype=F64) / 10)
    turn = torch.polar(torch.ones(30, 5, dtype=F64), torch.arange(30, dtype=F64)[:, None] * theta)
    z = torch.complex(*x.chunk(2, dim=-1)) * turn  # pairs (x_i, x_{i+5}) as complex numbers
    expected = torch.cat([z.real, z.imag], dim=-1)
    torch.testing.assert_close(rope(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(rope(x[:, :, 11:18], offset=11), expected[:, :, 11:18], atol=1e-12, rtol=0)


def test_rope_in_attention_is_unchanged_by_a_common_shift():
    """Shifting every position by the same amount leaves RoPE attention exactly as it was."""
    torch.manual_seed(4)
    mha = MultiHeadAttention(16, 2, causal=True, rotary=RotaryEmbedding(8, 64)).double()
    x = torch.randn(2, 10, 16, dtype=F64)
    q, k = mha.q_proj(x).view(2, 10, 2, 8).transpose(1, 2), mha.kv_proj(x)[..., :16].view(2, 10, 2, 8).transpose(1, 2)
    scores = lambda off: mha.rotary(q, offset=off) @ mha.rotary(k, offset=off).mT  # (B, H, T, T)
    torch.testing.assert_close(scores(0), scores(37), atol=1e-10, rtol=0)


# --- why positions are needed ----------------------------------------------------------------------------------

def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(5)
    mha = MultiHeadAttention(16, 4).double()  # no causal mask, no positions
    x = torch.randn(3, 9, 16, dtype=F64)
    perm = torch.randperm(9)
    torch.testing.assert_close(mha(x[:, perm]), mha(x)[:, perm], atol=1e-12, rtol=0)
    q, k, v = torch.randn(3, 9, 5, dtype=F64), torch.randn(3, 9, 5, dtype=F64), torch.randn(3, 9, 7, dtype=F64)
    torch.testing.assert_close(scaled_dot_product_attention(q[:, perm], k[:, perm], v[:, perm]),
                               scaled_dot_product_attention(q, k, v)[:, perm], atol=1e-12, rtol=0)
    # shuffling only the keys and values (together) changes nothing at all
    torch.testing.assert_close(scaled_dot_product_attention(q, k[:, perm], v[:, perm]),
                               scaled_dot_product_attention(q, k, v), atol=1e-12, rtol=0)


@pytest.mark.parametrize("how", ["causal", "sinusoidal", "rope"])
def test_a_causal_mask_or_positions_break_the_equivariance(how):
    torch.manual_seed(6)
    rotary = RotaryEmbedding(4, 9) if how == "rope" else None
    mha = MultiHeadAttention(16, 4, causal=how == "causal", rotary=rotary).double()
    add = SinusoidalPositions(9, 16).double()(9) if how == "sinusoidal" else 0.0
    x = torch.randn(3, 9, 16, dtype=F64)
    perm = torch.tensor([8, 0, 1, 2, 3, 4, 5, 6, 7])  # a rotation of the sequence: no fixed point
    diff = (mha(x[:, perm] + add) - mha(x + add)[:, perm]).abs().max()
    assert diff > 1e-3

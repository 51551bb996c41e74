"""kqvlib.block: the hand-built LayerNorm against nn.LayerNorm, make_norm, the MLP and the pre-LN Block."""
import pytest
import torch
import torch.nn as nn

from kqvlib import MLP, Block, LayerNorm
from kqvlib.block import make_norm

ODD_SHAPES = [(7,), (3, 5), (2, 3, 11), (2, 3, 4, 5), (1, 1, 13)]


def _randomised_pair(C: int, bias: bool, dtype: torch.dtype, eps: float = 1e-5):
    """kqvlib.LayerNorm and nn.LayerNorm with the same random (not 1 and 0) gain and bias."""
    g = torch.Generator().manual_seed(C)
    ours, theirs = LayerNorm(C, eps=eps, bias=bias).to(dtype), nn.LayerNorm(C, eps=eps, bias=bias).to(dtype)
    with torch.no_grad():
        w = 1 + 0.5 * torch.randn(C, generator=g, dtype=dtype)
        ours.weight.copy_(w)
        theirs.weight.copy_(w)
        if bias:
            b = torch.randn(C, generator=g, dtype=dtype)
            ours.bias.copy_(b)
            theirs.bias.copy_(b)
    return ours, theirs


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_layer_norm_matches_pytorch(shape, bias, dtype, atol):
    ours, theirs = _randomised_pair(shape[-1], bias, dtype)
    g = torch.Generator().manual_seed(1)
    x = 3 + 2 * torch.randn(*shape, generator=g, dtype=dtype)  # far from normalised
    torch.testing.assert_close(ours(x), theirs(x), atol=atol, rtol=0)
    assert (ours.bias is None) == (not bias)


@pytest.mark.parametrize("eps", [1e-5, 0.1, 1.0])
def test_layer_norm_eps_inside_the_square_root(eps):
    ours, theirs = _randomised_pair(6, True, torch.float64, eps=eps)
    x = 0.3 * torch.randn(4, 6, dtype=torch.float64)  # small variance: eps matters
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)


def test_layer_norm_gradients_match_pytorch():
    ours, theirs = _randomised_pair(9, True, torch.float64)
    x = torch.randn(2, 5, 9, dtype=torch.float64, requires_grad=True)
    gx_ours, gw_ours = torch.autograd.grad(ours(x).pow(2).sum(), (x, ours.weight))
    gx_theirs, gw_theirs = torch.autograd.grad(theirs(x).pow(2).sum(), (x, theirs.weight))
    torch.testing.assert_close(gx_ours, gx_theirs, atol=1e-10, rtol=0)
    torch.testing.assert_close(gw_ours, gw_theirs, atol=1e-10, rtol=0)


def test_layer_norm_output_statistics():
    """With gain 1 and bias 0, every position has mean 0 and (biased) variance var / (var + eps)."""
    ln = LayerNorm(16).double()
    x = 5 + 3 * torch.randn(4, 8, 16, dtype=torch.float64)
    y = ln(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 8, dtype=torch.float64), atol=1e-12, rtol=0)
    var = x.var(-1, unbiased=False)
    torch.testing.assert_close(y.var(-1, unbiased=False), var / (var + ln.eps), atol=1e-12, rtol=0)


def test_layer_norm_acts_on_each_position_alone():
    ln = LayerNorm(8).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    changed = x.clone()
    changed[1, 2] = 100.0 * torch.randn(8, dtype=torch.float64)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[1, 2] = False
    torch.testing.assert_close(ln(changed)[keep], ln(x)[keep], atol=0, rtol=0)


def test_layer_norm_wrong_width_is_a_clear_error():
    with pytest.raises(ValueError, match=r"LayerNorm: expected x of shape \(\.\.\., 8\), got \(2, 7\)"):
        LayerNorm(8)(torch.randn(2, 7))


# --- make_norm -------------------------------------------------------------------------------------------

def test_make_norm():
    ln = make_norm("layernorm", 10)
    assert isinstance(ln, nn.LayerNorm) and ln.normalized_shape == (10,) and ln.bias is not None
    assert make_norm("layernorm", 10, bias=False).bias is None
    rms = make_norm("rmsnorm", 10)
    assert isinstance(rms, nn.RMSNorm) and rms.normalized_shape == (10,)
    x = 3 * torch.randn(2, 3, 10, dtype=torch.float64)
    eps = torch.finfo(x.dtype).eps if rms.eps is None else rms.eps  # nn.RMSNorm's default eps
    torch.testing.assert_close(rms.double()(x), x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
                               atol=1e-12, rtol=0)


def test_make_norm_layernorm_is_the_hand_built_function():
    """make_norm's fused nn.LayerNorm and the hand-built LayerNorm give the same outputs."""
    fused, ours = make_norm("layernorm", 12).double(), LayerNorm(12).double()
    ours.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 12, dtype=torch.float64)
    torch.testing.assert_close(ours(x), fused(x), atol=1e-12, rtol=0)


def test_make_norm_unknown_kind():
    with pytest.raises(ValueError, match="kind must be 'layernorm' or 'rmsnorm' \\(the norm\\), got 'batchnorm'"):
        make_norm("batchnorm", 8)


# --- MLP -------------------------------------------------------------------------------------------------

def test_mlp_shapes_and_width():
    mlp = MLP(12)
    assert mlp.fc.weight.shape == (48, 12) and mlp.proj.weight.shape == (12, 48)
    assert mlp(torch.randn(2, 5, 12)).shape == (2, 5, 12)
    assert mlp(torch.randn(7, 12)).shape == (7, 12)
    assert sum(p.numel() for p in mlp.parameters()) == 8 * 12 * 12 + 5 * 12
    assert MLP(12, bias=False).fc.bias is None


def test_mlp_is_position_wise_and_matches_pytorch_layers():
    mlp = MLP(6).double()
    ref = nn.Sequential(nn.Linear(6, 24), nn.GELU(), nn.Linear(24, 6)).double()
    ref[0].load_state_dict(mlp.fc.state_dict())
    ref[2].load_state_dict(mlp.proj.state_dict())
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    y = mlp(x)
    torch.testing.assert_close(y, ref(x), atol=1e-12, rtol=0)
    for t in range(5):  # each position on its own gives the same row
        torch.testing.assert_close(mlp(x[:, t]), y[:, t], atol=1e-12, rtol=0)


def test_mlp_dropout_only_in_training():
    mlp = MLP(8, dropout=0.5)
    x = torch.randn(4, 3, 8)
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp(x), atol=0, rtol=0)
    mlp.train()
    torch.manual_seed(0)
    assert not torch.equal(mlp(x), mlp.eval()(x))


# --- Block -----------------------------------------------------------------------------------------------

def _block(**kw) -> Block:
    torch.manual_seed(0)
    return Block(12, 3, **kw).double().eval()


def test_block_shapes():
    blk = _block()
    assert blk(torch.randn(2, 5, 12, dtype=torch.float64)).shape == (2, 5, 12)
    assert isinstance(blk.ln1, nn.LayerNorm) and isinstance(blk.mlp, MLP)
    assert isinstance(_block(norm="rmsnorm").ln2, nn.RMSNorm)


def test_block_is_the_pre_ln_formula():
    blk = _block(causal=False)
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    h = x + blk.attn(blk.ln1(x))
    torch.testing.assert_close(blk(x), h + blk.mlp(blk.ln2(h)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("impl", ["scratch", "sdpa"])
def test_causal_block_is_causal(impl):
    """Changing position t never changes the outputs at positions < t."""
    blk = _block(causal=True, impl=impl)
    x = torch.randn(1, 8, 12, dtype=torch.float64)
    base = blk(x)
    for t in [0, 3, 7]:
        changed = x.clone()
        changed[0, t] += torch.randn(12, dtype=torch.float64)
        out = blk(changed)
        torch.testing.assert_close(out[0, :t], base[0, :t], atol=0, rtol=0)
        assert not torch.allclose(out[0, t], base[0, t])


def test_non_causal_block_sees_the_future():
    blk = _block(causal=False)
    x = torch.randn(1, 6, 12, dtype=torch.float64)
    changed = x.clone()
    changed[0, 5] += torch.randn(12, dtype=torch.float64)
    assert not torch.allclose(blk(changed)[0, 0], blk(x)[0, 0])


def test_block_with_zero_output_projections_is_the_identity():
    """Pre-LN: each half only *adds* to the residual stream, so with its last layer at zero a block is x ↦ x."""
    blk = _block()
    with torch.no_grad():
        for lin in (blk.attn.out_proj, blk.mlp.proj):
            lin.weight.zero_()
            lin.bias.zero_()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    assert torch.equal(blk(x), x)


def test_block_matches_pytorch_encoder_layer():
    """kqvlib.Block(causal) = nn.TransformerEncoderLayer(norm_first=True, gelu) with a causal mask."""
    blk = _block()
    ref = nn.TransformerEncoderLayer(12, 3, dim_feedforward=48, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True).double().eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([blk.attn.q_proj.weight, blk.attn.kv_proj.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([blk.attn.q_proj.bias, blk.attn.kv_proj.bias]))
    ref.self_attn.out_proj.load_state_dict(blk.attn.out_proj.state_dict())
    ref.linear1.load_state_dict(blk.mlp.fc.state_dict())
    ref.linear2.load_state_dict(blk.mlp.proj.state_dict())
    ref.norm1.load_state_dict(blk.ln1.state_dict())
    ref.norm2.load_state_dict(blk.ln2.state_dict())
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    torch.testing.assert_close(blk(x), ref(x, src_mask=mask, is_causal=True), atol=1e-10, rtol=0)


def test_block_errors():
    with pytest.raises(ValueError, match="not divisible"):
        Block(10, 3)
    with pytest.raises(ValueError, match="norm must be"):
        Block(12, 3, norm="batchnorm")
    with pytest.raises(ValueError, match=r"Block: expected x of shape \(B, T, 12\), got \(2, 5, 8\)"):
        Block(12, 3)(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"Block: expected x of shape \(B, T, 12\), got \(5, 12\)"):
        Block(12, 3)(torch.randn(5, 12))

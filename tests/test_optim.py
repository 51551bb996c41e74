"""kqvlib.optim: Muon whose Newton–Schulz runs in bf16 only where bf16 is native."""
import pytest
import torch

import kqvlib.precision as precision
from kqvlib import GPT, GPTConfig
from kqvlib.optim import Muon, newton_schulz, ns_dtype
from kqvlib.train import TrainConfig, make_optimizers


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32), (128, 512)])
def test_float32_newton_schulz_gives_orthogonal_updates(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o = newton_schulz(g, dtype=torch.float32)
    assert o.shape == g.shape and o.dtype == torch.float32
    # Jordan's quintic lands every singular value near 1 (roughly 0.7–1.2), not exactly on it: every one
    # that started above ~1/300 of ‖g‖ (five steps of slope 3.4 at zero lift those; a random square
    # matrix has a few tinier ones, which stay small — also in torch.optim.Muon).
    u, sg, vh = torch.linalg.svd(g, full_matrices=False)
    s = torch.linalg.svdvals(o)
    lifted = s[sg / g.norm() > 1 / 300]
    assert len(lifted) >= 0.9 * len(s) and lifted.min() > 0.6 and s.max() < 1.25, s
    # and keeps the singular vectors: o ≈ U Vᵀ of g
    assert torch.nn.functional.cosine_similarity(o.flatten(), (u @ vh).flatten(), dim=0) > 0.95


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32)])
def test_float32_path_matches_the_bf16_path_to_bf16_tolerance(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    o32 = newton_schulz(g, dtype=torch.float32)
    o16 = newton_schulz(g, dtype=torch.bfloat16).float()
    rel = (o32 - o16).norm() / o32.norm()
    assert rel < 3e-2, f"relative difference {rel:.4f}"  # bf16 keeps 8 bits: ~0.4% per rounding, 5 steps


def test_with_bf16_newton_schulz_it_is_exactly_torch_optim_muon():
    torch.manual_seed(0)
    w1 = [torch.nn.Parameter(torch.randn(48, 16)), torch.nn.Parameter(torch.randn(16, 48))]
    w2 = [torch.nn.Parameter(p.detach().clone()) for p in w1]
    ours = Muon(w1, lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16)
    theirs = torch.optim.Muon(w2, lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
    for step in range(4):
        g = [torch.randn_like(p, generator=None) for p in w1]
        for p, q, gi in zip(w1, w2, g):
            p.grad, q.grad = gi.clone(), gi.clone()
        ours.step()
        theirs.step()
        for p, q in zip(w1, w2):
            assert torch.equal(p, q), f"step {step}: max difference {(p - q).abs().max():.3g}"


def test_same_shaped_matrices_are_orthogonalised_as_one_stack_with_the_same_result():
    torch.manual_seed(1)
    shapes = [(64, 64)] * 3 + [(128, 32)] * 2 + [(32, 128)]
    w1 = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    w2 = [torch.nn.Parameter(p.detach().clone()) for p in w1]
    ours = Muon(w1, ns_dtype=torch.bfloat16)
    theirs = torch.optim.Muon(w2, lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
    for _ in range(3):
        for p, q in zip(w1, w2):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    for p, q in zip(w1, w2):  # bf16 matrix products give the same numbers one by one or stacked
        assert torch.allclose(p, q, atol=1e-6), (p - q).abs().max()
    stack = torch.randn(3, 48, 16)
    each = torch.stack([newton_schulz(m, dtype=torch.float32) for m in stack])
    assert torch.allclose(newton_schulz(stack, dtype=torch.float32), each, atol=1e-5)


def test_float32_muon_trains_like_bf16_muon():
    torch.manual_seed(0)
    target = torch.randn(32, 32)
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.nn.Parameter(torch.zeros(32, 32))
        opt = Muon([w], lr=0.05, weight_decay=0.0, ns_dtype=dtype)
        for _ in range(60):
            loss = ((w - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[dtype] = loss.item()
    assert losses[torch.float32] < 0.5 * (target**2).mean().item()
    assert abs(losses[torch.float32] - losses[torch.bfloat16]) < 0.1 * losses[torch.bfloat16] + 1e-3


def test_ns_dtype_is_bf16_only_where_bf16_is_native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert ns_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert ns_dtype("cpu") == torch.float32
    assert ns_dtype("mps") == torch.float32
    # CUDA: by compute capability, not by is_bf16_supported(), which counts a T4's emulated bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    for capability, dtype in [((7, 5), torch.float32), ((7, 0), torch.float32), ((8, 0), torch.bfloat16),
                              ((9, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert ns_dtype("cuda") == dtype, capability


def test_the_environment_switch_turns_native_bf16_off(monkeypatch):
    monkeypatch.setenv("KQV_CPU_BF16", "0")
    assert precision.cpu_has_bf16() is False and ns_dtype("cpu") == torch.float32


def test_muon_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"only matrices.*\(5,\)"):
        Muon([torch.nn.Parameter(torch.zeros(5))])
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], adjust_lr_fn="match_rms_adamw")
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 4\)"):
        newton_schulz(torch.zeros(2, 2, 3, 4))


def test_the_training_loop_uses_kqvlibs_muon_for_the_blocks_matrices():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opts = make_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    assert isinstance(opts[1], Muon)
    assert all(p.dim() == 2 for g in opts[1].param_groups for p in g["params"])

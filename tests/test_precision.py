"""The device/precision choice is one small function; here it is given every kind of machine.

The GPUs are mocked as they really report themselves: a T4 (compute capability 7.5) and a V100 (7.0)
answer torch.cuda.is_bf16_supported() with True, because its default counts emulated bf16; only
is_bf16_supported(including_emulation=False) says False there. The capability decides.
"""
import pytest
import torch

import kqvlib.precision as precision
from kqvlib import GPT, GPTConfig, TrainConfig, train
from kqvlib.optim import make_optimizers, ns_dtype
from kqvlib.precision import Plan, autocast_dtype, maybe_compile, native_bf16, plan, plan_for, plan_here
from kqvlib.recipes import gpu_recipe, notebook_cpu_recipe, recipe_for
from kqvlib.train import evaluate

GPUS = {"T4": (7, 5), "V100": (7, 0), "A100": (8, 0), "H100": (9, 0)}


def fake_gpu(monkeypatch, name):
    """torch.cuda answering as the named GPU does."""
    capability = GPUS[name]
    native = capability >= (8, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"NVIDIA {name}")


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("name", ["T4", "V100"])
def test_gpus_below_sm80_get_fp16_with_a_grad_scaler(monkeypatch, name):
    fake_gpu(monkeypatch, name)
    assert torch.cuda.is_bf16_supported()  # the trap: emulated bf16 counts by default
    p = plan_here()
    assert (p.device, p.dtype, p.scaler, p.recipe, p.compile, p.tf32) == ("cuda", torch.float16, True, "gpu", True,
                                                                          True)
    cuda = torch.device("cuda")
    assert not native_bf16(cuda) and autocast_dtype(cuda) == torch.float16 and plan_for(cuda) == p
    assert ns_dtype(cuda) == torch.float32  # Muon's Newton–Schulz: emulated bf16 would be slow
    model, train_cfg = recipe_for(p)
    assert (model.n_layer, model.n_embd, model.block_size) == (6, 384, 256) and train_cfg.compile


@pytest.mark.parametrize("name", ["A100", "H100"])
def test_gpus_from_sm80_on_get_bf16_without_a_scaler(monkeypatch, name):
    fake_gpu(monkeypatch, name)
    p = plan_here()
    assert (p.device, p.dtype, p.scaler, p.recipe, p.compile, p.tf32) == ("cuda", torch.bfloat16, False, "gpu", True,
                                                                          True)
    cuda = torch.device("cuda")
    assert native_bf16(cuda) and autocast_dtype(cuda) == torch.bfloat16
    assert ns_dtype(cuda) == torch.bfloat16
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    assert make_optimizers(model, TrainConfig(), cuda)[0].defaults["fused"]  # AdamW fused on the GPU


def test_no_gpu_gives_the_cpu_recipe(monkeypatch):
    no_gpu(monkeypatch)
    p = plan_here()
    assert p == plan("cpu") and (p.dtype, p.scaler, p.recipe, p.compile, p.tf32) == (None, False, "cpu", False, False)
    model, train_cfg = recipe_for(p)
    assert (model, train_cfg) == notebook_cpu_recipe()


def test_apple_gpu_gets_the_mps_recipe(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    p = plan_here()
    assert (p.device, p.dtype, p.scaler, p.recipe, p.compile) == ("mps", None, False, "mps", False)
    model, train_cfg = recipe_for(p)
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size) == (6, 6, 384, 256)
    assert train_cfg.max_steps < 5000 and not train_cfg.compile


@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_is_float32_unless_the_training_config_asks_for_native_bf16(bf16):
    p = plan("cpu", bf16_supported=bf16)  # even a CPU with native bf16: the notebook must reproduce
    assert (p.dtype, p.scaler, p.recipe, p.compile) == (None, False, "cpu", False)
    model, train_cfg = recipe_for(p)
    assert (model, train_cfg) == notebook_cpu_recipe()
    assert train_cfg.time_budget is None and train_cfg.optimizer == "adamw" and not train_cfg.cpu_bf16
    assert plan("cpu", bf16, cpu_bf16=True).dtype == (torch.bfloat16 if bf16 else None)


def test_gpu_recipe_is_nanogpts_shakespeare_size():
    model, train_cfg = recipe_for(plan("cuda", True))
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size, model.dropout) == (6, 6, 384, 256, 0.2)
    assert (train_cfg.max_steps, train_cfg.batch_size, train_cfg.lr, train_cfg.min_lr) == (5000, 64, 1e-3, 1e-4)
    assert model.pos_emb == "rope" and gpu_recipe(positions="learned")[0].pos_emb == "learned"
    assert train_cfg.compile and train_cfg.optimizer == "adamw"


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="tpu"):
        plan("tpu")


def test_tf32_is_switched_on_for_the_plan_only(monkeypatch):
    before = torch.backends.cuda.matmul.fp32_precision
    with plan("cuda", True).tf32_matmuls():
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before
    with plan("cpu").tf32_matmuls():
        assert torch.backends.cuda.matmul.fp32_precision == before


# --- train() follows the plan; compiling happens once ------------------------------------------------

CFG = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
SEQ = torch.arange(20).repeat(30)


class Spy(GPT):
    """A GPT that notes the autocast dtype of every training forward pass."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen = []

    def forward(self, idx, targets=None, caches=None):
        if self.training:
            on = torch.is_autocast_enabled("cpu")
            self.seen.append(torch.get_autocast_dtype("cpu") if on else None)
        return super().forward(idx, targets, caches)


def short(**kw):
    return TrainConfig(**{**dict(max_steps=4, batch_size=4, warmup_steps=1, eval_interval=4, eval_iters=1,
                                 progress=False), **kw})


def test_train_follows_the_plan_it_is_given(tmp_path):
    cpu = torch.device("cpu")
    fp16 = Plan("cpu", torch.float16, scaler=True, recipe="cpu", compile=False)
    m = Spy(CFG)
    train(m, SEQ, SEQ, short(cpu_bf16=True), device=cpu, plan=fp16, checkpoint_path=tmp_path / "a.pt")
    assert m.seen == [torch.float16] * 4  # not the config's cpu_bf16: the plan decides
    assert torch.load(tmp_path / "a.pt", weights_only=True)["scaler"]["scale"] > 0  # a GradScaler ran
    m = Spy(CFG)
    train(m, SEQ, SEQ, short(cpu_bf16=True), device=cpu, plan=plan("cpu"), checkpoint_path=tmp_path / "b.pt")
    assert m.seen == [None] * 4 and torch.load(tmp_path / "b.pt", weights_only=True)["scaler"] is None
    with pytest.raises(ValueError, match="plan is for 'cuda'"):
        train(Spy(CFG), SEQ, SEQ, short(), device=cpu, plan=plan("cuda", True))


def test_without_a_plan_train_decides_for_the_device(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    m = Spy(CFG)
    train(m, SEQ, SEQ, short(cpu_bf16=True), device=torch.device("cpu"))
    assert m.seen == [torch.bfloat16] * 4
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    m = Spy(CFG)
    train(m, SEQ, SEQ, short(cpu_bf16=True), device=torch.device("cpu"))
    assert m.seen == [None] * 4


@pytest.fixture
def counted(monkeypatch):
    """torch.compile with a stub backend that notes each graph it is given: training (grad on) or
    evaluation (grad off)."""
    graphs = []

    def counting(gm, example_inputs):
        graphs.append("train" if torch.is_grad_enabled() else "eval")
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=counting))
    torch._dynamo.reset()
    yield graphs
    torch._dynamo.reset()


def test_one_compilation_for_all_training_steps_and_one_for_all_estimates(counted):
    run = Plan("cpu", None, scaler=False, recipe="cpu", compile=True)
    torch.manual_seed(0)
    model = GPT(CFG)
    h = train(model, SEQ, SEQ, short(max_steps=6, eval_interval=2, eval_iters=2, compile=True),
              device=torch.device("cpu"), plan=run)
    assert h["step"] == [2, 4, 6]
    # the warm-up used the training batch's shapes and targets, so no step recompiled; the three estimates
    # (eval mode, no gradients: another program) share one graph
    assert counted == ["train", "eval"]


def test_compiled_training_matches_eager_training(counted):
    cfg = short(max_steps=5, compile=True)
    torch.manual_seed(0)
    eager, compiled = GPT(CFG), GPT(CFG)
    compiled.load_state_dict(eager.state_dict())
    torch.manual_seed(1)  # the same dropout masks
    train(eager, SEQ, SEQ, cfg, device=torch.device("cpu"))
    torch.manual_seed(1)
    train(compiled, SEQ, SEQ, cfg, device=torch.device("cpu"), plan=Plan("cpu", None, False, "cpu", compile=True))
    for a, b in zip(eager.parameters(), compiled.parameters()):  # the warm-up changed no weight, no RNG
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_evaluate_keeps_full_batches_compiled_and_the_rest_eager(counted):
    model = GPT(CFG).eval()
    compiled = maybe_compile(model, torch.device("cpu"))
    data = torch.arange(20).repeat(5)[:95]  # 94 positions: 11 windows of 8 (batches of 4, 4, 3) and one of 6
    assert evaluate(compiled, data, batch_size=4) == pytest.approx(evaluate(model, data, batch_size=4), rel=1e-6)
    assert counted == ["eval"]  # one shape compiled; the ragged batches ran eagerly, nothing recompiled


def test_maybe_compile_falls_back_to_eager_and_leaves_no_gradients(monkeypatch, capsys):
    def broken(model, **kw):
        def fails(*a, **k):
            raise RuntimeError("no compiler")
        return fails

    monkeypatch.setattr(torch, "compile", broken)
    model = GPT(CFG)
    x = torch.zeros(2, 8, dtype=torch.long)
    assert maybe_compile(model, torch.device("cpu"), True, (x, x)) is model
    assert "uncompiled" in capsys.readouterr().out
    assert all(p.grad is None for p in model.parameters())
    assert maybe_compile(model, torch.device("cpu"), enabled=plan("cpu").compile) is model

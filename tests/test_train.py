"""Training loop, schedule, checkpoints (weights_only) and resume."""
import math

import pytest
import torch

from kqvlib import GPT, GPTConfig, TrainConfig, load_checkpoint, pick_device, train
from kqvlib.train import evaluate, lr_at

CFG = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)


def data(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 20, (n,), generator=g)


def test_pick_device_on_this_machine():
    assert pick_device().type in {"cuda", "mps", "cpu"}


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


def test_training_reduces_loss_on_a_learnable_sequence():
    torch.manual_seed(0)
    seq = torch.arange(20).repeat(100)  # 0,1,…,19,0,1,…: the next token is always predictable
    m = GPT(CFG)
    h = train(m, seq, seq, TrainConfig(max_steps=150, batch_size=8, lr=3e-3, warmup_steps=10,
                                       eval_interval=50, eval_iters=2, progress=False), device=torch.device("cpu"))
    assert h["step"] == [50, 100, 150]
    assert h["val_loss"][-1] < 0.5 * math.log(20)
    assert evaluate(m, seq) < 0.5 * math.log(20)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(max_steps=40, batch_size=4, warmup_steps=5, eval_interval=20, eval_iters=1, progress=False)
    d = data()
    torch.manual_seed(0)
    full = GPT(CFG)
    h_full = train(full, d, d, cfg, device=torch.device("cpu"))

    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    half = GPT(CFG)
    train(half, d, d, cfg, device=torch.device("cpu"), checkpoint_path=ckpt, until=15)
    # The first run stops at step 15 (between two evaluations); a new process would rebuild the model and resume:
    torch.manual_seed(123)
    resumed = GPT(CFG)
    h_res = train(resumed, d, d, cfg, device=torch.device("cpu"), checkpoint_path=ckpt, resume=True)
    assert h_res["step"] == h_full["step"]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_checkpoint_loads_with_weights_only(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    m = GPT(CFG)
    train(m, data(), data(seed=1), TrainConfig(max_steps=5, batch_size=2, warmup_steps=1, eval_interval=5,
                                         eval_iters=1, progress=False), device=torch.device("cpu"), checkpoint_path=ckpt)
    state = torch.load(ckpt, weights_only=True)  # would raise on pickled arbitrary objects
    assert state["step"] == 5 and state["model_config"]["n_embd"] == 16
    fresh = GPT(CFG)
    load_checkpoint(ckpt, fresh)
    for a, b in zip(m.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_scores_every_position():
    m = GPT(CFG).eval()
    d = data(101)  # 100 predicted positions: 12 full windows of 8 and one of 4
    logits = torch.cat([m(d[s : s + 8][None])[0][0] for s in range(0, 96, 8)] + [m(d[96:100][None])[0][0]])
    expected = torch.nn.functional.cross_entropy(logits, d[1:101]).item()
    assert evaluate(m, d, batch_size=5) == pytest.approx(expected, rel=1e-5)


def test_time_budget_stops_on_time_and_decays_the_rate():
    cfg = TrainConfig(max_steps=10**6, batch_size=2, warmup_steps=2, eval_interval=10**6, eval_iters=1,
                      progress=False, time_budget=1.0, lr=1e-3, min_lr=1e-4)
    h = train(GPT(CFG), data(), data(seed=1), cfg, device=torch.device("cpu"))
    assert len(h["step"]) == 1 and 1.0 <= h["seconds"][-1] < 1.5
    # the cosine runs by time: near min_lr when time runs out (how near depends on the last step's length,
    # which a busy machine stretches)
    assert 1e-4 <= h["lr"][-1] < 2e-4


def test_muon_and_cpu_bf16_options_train():
    cfg = TrainConfig(max_steps=30, batch_size=4, warmup_steps=3, eval_interval=30, eval_iters=2, progress=False,
                      optimizer="muon", lr=3e-3, muon_lr=0.02, cpu_bf16=True)
    seq = torch.arange(20).repeat(50)
    torch.manual_seed(0)
    h = train(GPT(CFG), seq, seq, cfg, device=torch.device("cpu"))
    assert h["val_loss"][-1] < math.log(20)
    with pytest.raises(ValueError, match="optimizer"):
        train(GPT(CFG), seq, seq, TrainConfig(optimizer="sgd", progress=False), device=torch.device("cpu"))


def test_checkpoint_save_load_gives_identical_logits(tmp_path):
    from kqvlib.train import save_checkpoint
    torch.manual_seed(0)
    m = GPT(CFG)
    train(m, data(), data(seed=1), TrainConfig(max_steps=3, batch_size=2, warmup_steps=1, eval_interval=3,
                                         eval_iters=1, progress=False), device=torch.device("cpu"))
    save_checkpoint(tmp_path / "m.pt", m, None, 3, {})
    fresh = GPT(CFG)
    load_checkpoint(tmp_path / "m.pt", fresh)
    x = data(40, seed=2).view(5, 8)
    assert torch.equal(m.eval()(x)[0], fresh.eval()(x)[0])


def test_resume_continues_the_step_count_and_the_schedule(tmp_path):
    cfg = TrainConfig(max_steps=30, batch_size=2, warmup_steps=4, eval_interval=5, eval_iters=1, progress=False,
                      lr=1e-3, min_lr=1e-4)
    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    h_full = train(GPT(CFG), data(), data(), cfg, device=torch.device("cpu"))
    torch.manual_seed(0)
    train(GPT(CFG), data(), data(), cfg, device=torch.device("cpu"), checkpoint_path=ckpt, until=12)
    assert torch.load(ckpt, weights_only=True)["step"] == 12
    h_res = train(GPT(CFG), data(), data(), cfg, device=torch.device("cpu"), checkpoint_path=ckpt, resume=True)
    assert h_res["step"] == [5, 10, 15, 20, 25, 30]  # counted on from 12, not restarted at 0
    assert h_res["lr"] == pytest.approx(h_full["lr"])  # the schedule picked up where it stopped
    assert h_res["lr"][2] == pytest.approx(lr_at(14, cfg))
    assert h_res["val_loss"] == pytest.approx(h_full["val_loss"], rel=1e-5)

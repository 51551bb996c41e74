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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy machine two threads wait for each other for up to a second per op
    try:
        h = train(GPT(CFG), data(), data(seed=1), cfg, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
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


# --- checkpoints: all or nothing, RNG states, atomic saves ----------------------------------------

import os
import random

import numpy as np

from kqvlib.train import save_checkpoint

DROPOUT = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.2)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_with_dropout_equals_an_uninterrupted_one(tmp_path):
    cfg = TrainConfig(max_steps=30, batch_size=4, warmup_steps=5, eval_interval=10, eval_iters=1, progress=False)
    d = data()
    torch.manual_seed(0)
    full = GPT(DROPOUT)
    h_full = train(full, d, d, cfg, device=torch.device("cpu"))
    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    train(GPT(DROPOUT), d, d, cfg, device=torch.device("cpu"), checkpoint_path=ckpt, until=15)
    torch.manual_seed(123)  # a new process: other RNG states, which the checkpoint puts back
    resumed = GPT(DROPOUT)
    h_res = train(resumed, d, d, cfg, device=torch.device("cpu"), checkpoint_path=ckpt, resume=True)
    assert h_res["val_loss"] == pytest.approx(h_full["val_loss"], rel=1e-6)
    for a, b in zip(full.parameters(), resumed.parameters()):  # the same dropout masks, step for step
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rng_states_of_torch_python_and_numpy_are_restored(tmp_path):
    m = GPT(CFG)
    save_checkpoint(tmp_path / "c.pt", m, None, 0, {})
    draws = lambda: (torch.rand(3).tolist(), random.random(), np.random.rand())  # noqa: E731
    first = draws()
    load_checkpoint(tmp_path / "c.pt", GPT(CFG))
    assert draws() != first  # loading weights alone leaves the generators alone
    load_checkpoint(tmp_path / "c.pt", GPT(CFG), restore_rng=True)
    assert draws() == first


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    cfg = TrainConfig(max_steps=2, batch_size=2, eval_iters=1, progress=False)
    with pytest.raises(ValueError, match="resume=True.*no checkpoint.*missing.pt"):
        train(GPT(CFG), data(), data(), cfg, device=torch.device("cpu"), checkpoint_path=tmp_path / "missing.pt",
              resume=True)
    with pytest.raises(ValueError, match="resume=True.*None"):
        train(GPT(CFG), data(), data(), cfg, device=torch.device("cpu"), resume=True)


@pytest.mark.parametrize("change, named", [(dict(n_head=4), "n_head 2 in the file, 4 in the model"),
                                           (dict(norm="rmsnorm"), "norm 'layernorm' in the file, 'rmsnorm'")])
def test_another_model_config_is_refused_before_anything_is_loaded(tmp_path, change, named):
    save_checkpoint(tmp_path / "c.pt", GPT(CFG), None, 0, {})
    other = GPT(GPTConfig(**{**CFG.__dict__, **change}))  # the same tensor shapes, another function
    before = weights(other)
    with pytest.raises(ValueError, match=named):
        load_checkpoint(tmp_path / "c.pt", other)
    assert same_weights(weights(other), before)
    load_checkpoint(tmp_path / "c.pt", GPT(GPTConfig(**{**CFG.__dict__, "dropout": 0.3})))  # dropout may differ


def test_wrong_names_or_shapes_are_refused_with_the_model_untouched(tmp_path):
    m = GPT(CFG)
    save_checkpoint(tmp_path / "c.pt", m, None, 0, {})
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    first, last = list(state["model"])[0], list(state["model"])[-1]
    state["model"][last] = torch.zeros(3, 3)  # a wrong shape, after tensors that would fit
    state["model"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    fresh = GPT(CFG)
    before = weights(fresh)
    with pytest.raises(ValueError, match=rf"{last} \(3, 3\) in the file.*nothing was loaded"):
        load_checkpoint(tmp_path / "bad.pt", fresh)
    assert same_weights(weights(fresh), before)  # not partly overwritten
    del state["model"][first]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"{first} missing from the file.*extra.weight not in the model"):
        load_checkpoint(tmp_path / "bad.pt", fresh)


def test_an_optimizer_missing_from_the_file_is_an_error(tmp_path):
    from kqvlib.train import make_optimizers

    m = GPT(CFG)
    save_checkpoint(tmp_path / "c.pt", m, None, 0, {})
    opts = make_optimizers(m, TrainConfig(), torch.device("cpu"))
    with pytest.raises(ValueError, match="1 optimizers given, but .* holds 0"):
        load_checkpoint(tmp_path / "c.pt", GPT(CFG), opts)
    muon = make_optimizers(m, TrainConfig(optimizer="muon"), torch.device("cpu"))
    save_checkpoint(tmp_path / "c.pt", m, muon, 0, {})
    with pytest.raises(ValueError, match="1 optimizers given, but .* holds 2"):
        load_checkpoint(tmp_path / "c.pt", GPT(CFG), opts)
    with pytest.raises(ValueError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nothing.pt", GPT(CFG))


def test_history_with_numpy_numbers_saves_as_plain_numbers_and_loads(tmp_path):
    history = {"step": [np.int64(5)], "val_loss": [np.float32(1.5), np.float64(2.25)], "arr": np.array([1.0, 2.0])}
    save_checkpoint(tmp_path / "c.pt", GPT(CFG), None, np.int64(5), history, TrainConfig(), elapsed=np.float64(1.5))
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["history"] == {"step": [5], "val_loss": [1.5, 2.25], "arr": [1.0, 2.0]}
    assert type(state["history"]["val_loss"][0]) is float and type(state["step"]) is int
    assert state["train_config"]["betas"] == [0.9, 0.99]


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    m = GPT(CFG)
    save_checkpoint(path, m, None, 1, {})
    old = path.read_bytes()

    def dies(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-save

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, m, None, 2, {})
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_the_file_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b)))
    save_checkpoint(tmp_path / "c.pt", GPT(CFG), None, 0, {})
    assert events[:2] == ["fsync", "rename"]


def test_the_grad_scalers_state_is_checkpointed(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    save_checkpoint(tmp_path / "c.pt", GPT(CFG), None, 0, {}, scaler=scaler)
    fresh = torch.amp.GradScaler("cpu")
    load_checkpoint(tmp_path / "c.pt", GPT(CFG), scaler=fresh)
    assert fresh.get_scale() == 1024.0


def test_a_restored_model_in_eval_mode_gives_identical_logits(tmp_path):
    """What chapter 10's restore cell compares: both models in eval mode (dropout off)."""
    torch.manual_seed(0)
    m = GPT(DROPOUT)
    train(m, data(), data(seed=1), TrainConfig(max_steps=3, batch_size=2, warmup_steps=1, eval_interval=3,
                                             eval_iters=1, progress=False), device=torch.device("cpu"),
          checkpoint_path=tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    restored = GPT(GPTConfig(**state["model_config"]))
    load_checkpoint(tmp_path / "m.pt", restored)
    x = data(40, seed=2).view(5, 8)
    with torch.no_grad():
        assert not torch.equal(restored.train()(x)[0], m.train()(x)[0])  # dropout on: other logits each call
        assert torch.equal(restored.eval()(x)[0], m.eval()(x)[0])


# --- gradient clipping ------------------------------------------------------------------------------

class Loud(GPT):
    """A GPT whose loss is a million times larger: its gradient norm is far above any clipping limit."""

    def forward(self, idx, targets=None, caches=None):
        logits, loss = super().forward(idx, targets, caches)
        return logits, None if loss is None else loss * 1e6


@pytest.mark.parametrize("clip", [1.0, 0.5])
def test_train_clips_the_gradient_adam_sees(tmp_path, clip):
    # After one step AdamW's first moment is (1 - β1)·g for the gradient g it was given: clipped,
    # ‖g‖ is exactly the limit; unclipped it is about a million.
    cfg = TrainConfig(max_steps=1, batch_size=4, warmup_steps=1, eval_interval=1, eval_iters=1, progress=False,
                      grad_clip=clip)
    torch.manual_seed(0)
    train(Loud(CFG), data(), data(), cfg, device=torch.device("cpu"), checkpoint_path=tmp_path / "c.pt")
    moments = torch.load(tmp_path / "c.pt", weights_only=True)["optimizers"][0]["state"].values()
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s["exp_avg"]) for s in moments]))
    assert norm.item() == pytest.approx((1 - cfg.betas[0]) * clip, rel=1e-4)
    torch.manual_seed(0)
    train(Loud(CFG), data(), data(), TrainConfig(**{**cfg.__dict__, "grad_clip": 0.0}), device=torch.device("cpu"),
          checkpoint_path=tmp_path / "d.pt")  # grad_clip=0: no clipping, and the moment shows it
    moments = torch.load(tmp_path / "d.pt", weights_only=True)["optimizers"][0]["state"].values()
    assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s["exp_avg"]) for s in moments])) > 1e3

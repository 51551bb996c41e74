"""The same train() under torchrun: 2 CPU processes (gloo) give what one process gives with the same
global batch, and only rank 0 writes the checkpoint."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    import importlib
    T = importlib.import_module("kqvlib.train")  # the module (kqvlib.train is also the function)
    from kqvlib import GPT, GPTConfig, TrainConfig
    torch.set_num_threads(1)
    out = sys.argv[1]
    rank = os.environ.get("RANK", "single")
    real_save = T.save_checkpoint
    def recording_save(path, *a, **k):  # note who saves, then save
        open(os.path.join(out, f"saved_by_{rank}"), "a").write("x")
        real_save(path, *a, **k)
    T.save_checkpoint = recording_save
    world = int(os.environ.get("WORLD_SIZE", "1"))
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 20, (3000,), generator=g)
    torch.manual_seed(int(rank == "1"))  # ranks start from different weights: DDP must broadcast rank 0's
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))
    if world == 1:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(max_steps=8, batch_size=int(sys.argv[2]), warmup_steps=2, eval_interval=4, eval_iters=2,
                      progress=False)
    h = T.train(model, data, data, cfg, device=torch.device("cpu"),
                checkpoint_path=os.path.join(out, f"ckpt_{world}.pt"))
    if rank in ("0", "single"):
        torch.save(h, os.path.join(out, f"history_{world}.pt"))
''')


def run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run([sys.executable, str(script), str(one), "4"], tmp_path)  # one process, batch 4
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(two), "2"], tmp_path)  # two processes, 2 each: the same global batch of 4
    h1 = torch.load(one / "history_1.pt", weights_only=True)
    h2 = torch.load(two / "history_2.pt", weights_only=True)
    assert h1["step"] == h2["step"] == [4, 8]
    assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-5)
    assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)
    w1 = torch.load(one / "ckpt_1.pt", weights_only=True)["model"]
    w2 = torch.load(two / "ckpt_2.pt", weights_only=True)["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4)
    assert sorted(p.name for p in two.glob("saved_by_*")) == ["saved_by_0"]  # rank 1 never saved

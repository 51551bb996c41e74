"""The recipes build, and the benchmark's stock model and FLOP count are what they claim."""
import importlib.util
from pathlib import Path

import torch

from kqvlib import GPT
import json

import pytest

import kqvlib.recipes as recipes
from kqvlib.recipes import CANDIDATES, SCALING_STUDY, choose, cpu_recipe, notebook_cpu_recipe, reference_recipe

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_recipe_is_nanogpts_cpu_recipe():
    m, t = reference_recipe()
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (t.batch_size, t.lr, t.min_lr, t.warmup_steps, t.max_steps) == (12, 1e-3, 1e-4, 100, 2000)
    assert m.pos_emb == "learned" and m.tie_weights and m.norm == "layernorm"


def test_the_notebooks_model_fits_500_generated_tokens():
    m, t = notebook_cpu_recipe()
    assert m.block_size >= 501  # a 1-token prompt plus 500 new tokens stays inside the context
    assert t.time_budget is None and t.optimizer == "adamw" and not t.cpu_bf16  # fixed steps, float32
    model = GPT(m)
    x = torch.randint(0, m.vocab_size, (1, 16))
    assert model(x)[0].shape == (1, 16, m.vocab_size)


def test_cpu_recipe_trains_the_chosen_candidate_for_the_time_budget():
    for cand in CANDIDATES:
        m, t = cpu_recipe(seconds=30, candidate=cand)
        assert (m.n_layer, m.n_embd, m.block_size, t.batch_size) == (cand.n_layer, cand.n_embd, cand.block_size,
                                                                    cand.batch_size)
        assert t.time_budget == 30 and t.optimizer == "muon" and t.cpu_bf16
        assert m.n_embd // m.n_head == 64


@pytest.mark.parametrize("mode", sorted(SCALING_STUDY))
def test_a_faster_machine_gets_a_bigger_model_for_the_same_seconds(mode):
    budgets = SCALING_STUDY[mode]["budgets"]
    rates = [budgets[0] / 60 / 4 * 2 ** (i / 2) for i in range(30)]  # 60 s, from below to above the study
    sizes = [choose(60, rate=r, mode=mode).candidate.flops_per_step() for r in rates]
    assert sizes == sorted(sizes), "a faster machine never gets a smaller model"
    assert sizes[-1] > sizes[0], "somewhere in the study's range a faster machine gets a bigger model"


def test_the_choice_is_deterministic_for_a_measured_rate(monkeypatch):
    monkeypatch.setattr(recipes, "matmul_rate", lambda *a, **k: pytest.fail("rate given: nothing to measure"))
    for mode in SCALING_STUDY:
        a, b = choose(90, rate=2e11, mode=mode), choose(90, rate=2e11, mode=mode)
        assert a == b and a.budget == 90 * 2e11 and a.candidate.name in a.predicted
        assert a.predicted[a.candidate.name] == min(a.predicted.values())
        assert f"{a.candidate.name} (study's loss" in str(a)
    monkeypatch.setattr(recipes, "matmul_rate", lambda *a, **k: 1e11)
    monkeypatch.setattr(recipes, "cpu_has_bf16", lambda: False)
    assert choose(60).mode == "fp32" and choose(60).rate == 1e11
    with pytest.raises(ValueError, match="mode must be one of"):
        choose(60, rate=1e11, mode="fp8")


def test_the_recipes_study_table_is_the_benchmarks_last_study():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    for mode, table in SCALING_STUDY.items():
        st = results[f"scaling:{mode}"]
        assert list(table["budgets"]) == st["budgets"]
        for c in CANDIDATES:
            row = st["candidates"][c.name]
            assert table["loss"][c.name] == tuple(round(x, 4) for x in row["loss"]), c.name
            assert list(row.get("budgets", st["budgets"])) == st["budgets"][: len(row["loss"])], c.name


def test_stock_model_matches_in_size_and_flop_count_counts_every_matmul():
    bench = load_bench()
    cfg, _ = reference_recipe()
    ours, stock = GPT(cfg), bench.StockGPT(cfg)
    assert ours.num_params() == sum(p.numel() for p in stock.parameters())
    loss = stock(torch.randint(0, 65, (2, 64)), torch.randint(0, 65, (2, 64)))[1]
    assert loss.item() > 3
    linear = sum(mod.weight.numel() for mod in ours.modules() if isinstance(mod, torch.nn.Linear))
    C, L, T = cfg.n_embd, cfg.n_layer, cfg.block_size
    assert bench.train_flops_per_token(cfg) == 6 * linear + 12 * L * C * T


def test_notebook_model_trains_with_chapter_10s_threads_when_the_checkpoint_is_missing(monkeypatch, tmp_path):
    seen = {}

    def fake_train(model, train_ids, val_ids, cfg, device=None):
        seen["threads"], seen["steps"] = torch.get_num_threads(), cfg.max_steps
        raise KeyboardInterrupt  # stop here: the threads must still be put back

    before = torch.get_num_threads()
    monkeypatch.setattr(recipes, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        recipes.notebook_model(65, torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long),
                               checkpoint=str(tmp_path / "missing.pt"))
    assert seen == {"threads": recipes.notebook_threads(), "steps": notebook_cpu_recipe()[1].max_steps}
    assert torch.get_num_threads() == before


def test_notebook_model_loads_chapter_10s_checkpoint(tmp_path):
    from kqvlib.train import save_checkpoint

    m, _ = notebook_cpu_recipe()
    torch.manual_seed(3)
    trained = GPT(m)
    save_checkpoint(tmp_path / "gpt.pt", trained, None, step=0, history={})
    loaded = recipes.notebook_model(65, None, None, checkpoint=str(tmp_path / "gpt.pt"))
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))


def test_notebook_checkpoint_names_one_file_per_device_kind():
    assert recipes.notebook_checkpoint() == recipes.NOTEBOOK_CHECKPOINT == "checkpoints/gpt_cpu.pt"
    assert recipes.notebook_checkpoint("cuda") == "checkpoints/gpt_cuda.pt"
    assert recipes.notebook_checkpoint("mps") == "checkpoints/gpt_mps.pt"
    with pytest.raises(ValueError, match="device_kind"):
        recipes.notebook_checkpoint("tpu")


def test_notebook_model_loads_a_model_chapter_10_trained_on_a_gpu(tmp_path):
    import os

    from kqvlib import GPTConfig
    from kqvlib.train import save_checkpoint

    gpu_like = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.2, bias=False,
                         pos_emb="rope")  # another size than the CPU recipe's, as the GPU recipe's is
    torch.manual_seed(4)
    on_gpu = GPT(gpu_like)
    save_checkpoint(tmp_path / "gpt_cuda.pt", on_gpu, None, step=0, history={})
    loaded = recipes.notebook_model(65, None, None, checkpoint=str(tmp_path / "gpt_cpu.pt"))  # no CPU file
    assert loaded.config == gpu_like and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(on_gpu.state_dict().values(), loaded.state_dict().values()))
    # both there: the newer one is what chapter 10 trained last
    save_checkpoint(tmp_path / "gpt_cpu.pt", GPT(notebook_cpu_recipe()[0]), None, step=0, history={})
    os.utime(tmp_path / "gpt_cuda.pt", (1e9, 1e9))
    assert recipes.notebook_model(65, None, None, str(tmp_path / "gpt_cpu.pt")).config == notebook_cpu_recipe()[0]
    os.utime(tmp_path / "gpt_cpu.pt", (1e8, 1e8))
    assert recipes.notebook_model(65, None, None, str(tmp_path / "gpt_cpu.pt")).config == gpu_like
    with pytest.raises(ValueError, match="65 tokens, but vocab_size=50"):
        recipes.notebook_model(50, None, None, str(tmp_path / "gpt_cpu.pt"))


def test_the_gpu_benchmark_runs_end_to_end(monkeypatch):
    """bench.py gpu, on the CPU with a tiny recipe: what it measures and stores (the real one needs CUDA)."""
    from dataclasses import replace

    from kqvlib import GPTConfig
    from kqvlib.recipes import gpu_recipe

    bench = load_bench()

    def tiny(vocab_size, positions="rope"):
        model, train_cfg = gpu_recipe(vocab_size, positions)
        return (GPTConfig(**{**model.__dict__, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}),
                replace(train_cfg, max_steps=4, batch_size=2, warmup_steps=1, eval_interval=2, eval_iters=1,
                        compile=False))

    results = {}
    bench.gpu_bench(results, baseline=True, device=torch.device("cpu"), recipe=tiny)
    runs = results["gpu"]["runs"]
    assert sorted(runs) == ["kqvlib", "nanogpt_model"] and runs["nanogpt_model"]["model"]["pos_emb"] == "learned"
    for r in runs.values():
        assert r["steps"] == 4 and r["restored_logits_identical"] and 2 < r["val_loss_whole_split"] < 5
        assert r["best_estimate_step"] in (2, 4) and r["goal_met"] is False and r["tokens_per_s"] > 0

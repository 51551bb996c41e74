"""The recipes build, and the benchmark's stock model and FLOP count are what they claim."""
import importlib.util
from pathlib import Path

import torch

from kqvlib import GPT
from kqvlib.recipes import cpu_recipe, reference_recipe

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


def test_cpu_recipe_fits_500_generated_tokens_and_runs_on_time():
    m, t = cpu_recipe(seconds=30)
    assert m.block_size >= 501  # a 1-token prompt plus 500 new tokens stays inside the context
    assert t.time_budget == 30
    model = GPT(m)
    x = torch.randint(0, m.vocab_size, (1, 16))
    assert model(x)[0].shape == (1, 16, m.vocab_size)


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

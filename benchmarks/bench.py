"""KQV's benchmarks, in one process.

    python benchmarks/bench.py            # all four, then write benchmarks/results.{json,md}
    python benchmarks/bench.py race step  # some of them (race, step, generate, utilisation)

1. race         nanoGPT's CPU recipe for 2000 steps (its training time is T) against kqvlib's CPU
                recipe for the same T; both scored on the entire validation split.
2. step         one training step (forward, backward, AdamW) of kqvlib's GPT against the same model
                built from torch.nn.TransformerEncoderLayer, at the CPU and the GPU configurations.
3. generate     500 new tokens with the KV cache against without it (the same tokens under a seed).
4. utilisation  model FLOPs per training step ÷ step time, against this machine's measured matmul rate.

Everything runs on the CPU unless --device says otherwise. Training times exclude loss estimates.
The book's appendix shows the last results (benchmarks/results.md).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib import GPT, GPTConfig, load_dataset, seed_everything
from kqvlib.attention import causal_mask
from kqvlib.recipes import cpu_recipe, reference_recipe
from kqvlib.generate import generate
from kqvlib.precision import autocast, autocast_dtype
from kqvlib.train import evaluate, train

HERE = Path(__file__).resolve().parent
GPU_CONFIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=256)  # nanoGPT's Shakespeare-char GPU model


def log(msg: str) -> None:
    print(msg, flush=True)


# --- 1. recipe race ----------------------------------------------------------------------------

def race(device: torch.device, results: dict) -> dict:
    tok, train_ids, val_ids = load_dataset()
    log(f"validation split: {len(val_ids):,} characters")

    ref_model_cfg, ref_train_cfg = reference_recipe(tok.vocab_size)
    seed_everything(0)
    ref = GPT(ref_model_cfg)
    log(f"reference: {ref.num_params():,} parameters, {ref_train_cfg.max_steps} steps …")
    h_ref = train(ref, train_ids, val_ids, replace(ref_train_cfg, progress=False), device=device)
    T = h_ref["seconds"][-1]
    ref_val = evaluate(ref, val_ids)
    log(f"reference: trained {h_ref['step'][-1]} steps in T = {T:.1f} s; full validation loss {ref_val:.4f}")

    gc.collect()  # start the second run from a tidy heap
    our_model_cfg, our_train_cfg = cpu_recipe(tok.vocab_size, seconds=T)
    seed_everything(0)
    ours = GPT(our_model_cfg)
    log(f"kqvlib recipe: {ours.num_params():,} parameters, {T:.1f} s …")
    h_ours = train(ours, train_ids, val_ids, replace(our_train_cfg, progress=False), device=device)
    our_val = evaluate(ours, val_ids)
    log(f"kqvlib recipe: trained {h_ours['step'][-1]} steps in {h_ours['seconds'][-1]:.1f} s; "
        f"full validation loss {our_val:.4f}")

    results["race"] = {
        "T_seconds": T,
        "reference": {"val_loss": ref_val, "steps": h_ref["step"][-1], "seconds": T,
                      "model": asdict(ref_model_cfg), "train": asdict(ref_train_cfg)},
        "kqvlib": {"val_loss": our_val, "steps": h_ours["step"][-1], "seconds": h_ours["seconds"][-1],
                   "model": asdict(our_model_cfg), "train": asdict(our_train_cfg)},
    }
    return {"model": ours, "tokenizer": tok}


# --- 2. step time against PyTorch's own layers ---------------------------------------------------

class StockGPT(nn.Module):
    """The same GPT from PyTorch's own parts: nn.TransformerEncoderLayer (pre-LN, GELU, causal mask)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        layer = nn.TransformerEncoderLayer(cfg.n_embd, cfg.n_head, 4 * cfg.n_embd, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True, bias=cfg.bias)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight
        self.register_buffer("mask", ~causal_mask(cfg.block_size), persistent=False)  # True = blocked, PyTorch's way

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))  # (B, T, C)
        x = self.encoder(x, mask=self.mask[:T, :T], is_causal=True)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))


def _step_fn(model, device, batch, cpu_bf16=False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cuda", "cpu"))
    g = torch.Generator().manual_seed(0)
    T, V = model.config.block_size, model.config.vocab_size
    x = torch.randint(0, V, (batch, T), generator=g).to(device)
    y = torch.randint(0, V, (batch, T), generator=g).to(device)
    def step() -> float:
        t0 = time.perf_counter()
        with autocast(device, cpu_bf16):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def step_time(device: torch.device, results: dict, warmup: int = 3) -> None:
    out = {}
    ref_cfg, _ = reference_recipe()
    for name, cfg, steps in [("cpu_config", ref_cfg, 40), ("gpu_config", replace(ref_cfg, **GPU_CONFIG), 20)]:
        torch.manual_seed(0)
        ours, stock = GPT(cfg).to(device), StockGPT(cfg).to(device)
        assert ours.num_params() == sum(p.numel() for p in stock.parameters()), "models differ in size"
        a, b = _step_fn(ours, device, 8), _step_fn(stock, device, 8)
        for _ in range(warmup):
            a(), b()
        ta, tb = [], []
        for _ in range(steps):  # interleaved, so a drift in the machine's speed hits both alike
            ta.append(a())
            tb.append(b())
        ma, mb = statistics.median(ta), statistics.median(tb)
        out[name] = {"config": {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size")},
                     "batch": 8, "steps": steps, "kqvlib_ms": 1000 * ma, "stock_ms": 1000 * mb, "ratio": ma / mb,
                     "params": ours.num_params()}
        log(f"step time {name} {out[name]['config']}: kqvlib {1000 * ma:.1f} ms, "
            f"nn.TransformerEncoderLayer {1000 * mb:.1f} ms, ratio {ma / mb:.3f}")
    results["step"] = out


# --- 3. generation with and without the KV cache -----------------------------------------------------

def generate_bench(device: torch.device, results: dict, model: GPT | None = None, new_tokens: int = 500,
                   repeats: int = 3) -> None:
    if model is None:
        cfg, _ = cpu_recipe()
        seed_everything(0)
        model = GPT(cfg)
        trained = False
    else:
        trained = True
    model = model.to(device).eval()
    # One new token is a few hundred thousand multiply-adds: far too little to split across threads
    # (on a busy 2-core machine the threads' hand-offs cost more than the work). Both paths run with the
    # same single thread; the thread count in effect is printed and stored.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    require_len = 1 + new_tokens
    start = torch.zeros(1, 1, dtype=torch.long, device=device)  # one newline character as the prompt
    times, outs = {True: [], False: []}, {}
    for use_cache in (True, False):  # warm-up: the first calls pay for allocations
        generate(model, start, 50, generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)
    for _ in range(repeats):
        for use_cache in (True, False):
            g = torch.Generator(device=device).manual_seed(1337)
            t0 = time.perf_counter()
            out = generate(model, start, new_tokens, temperature=0.8, top_k=None, generator=g, use_cache=use_cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[use_cache].append(time.perf_counter() - t0)
            outs[use_cache] = out
    gen_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    identical = torch.equal(outs[True], outs[False])
    mc, mn = statistics.median(times[True]), statistics.median(times[False])
    results["generate"] = {"new_tokens": new_tokens, "block_size": model.config.block_size,
                           "fits_in_context": require_len <= model.config.block_size, "trained_model": trained,
                           "cache_s": mc, "no_cache_s": mn, "speedup": mn / mc, "identical_tokens": identical,
                           "threads": gen_threads}
    log(f"generate {new_tokens} tokens (block_size {model.config.block_size}): with cache {mc:.2f} s, "
        f"without {mn:.2f} s, speedup {mn / mc:.1f}x, identical tokens: {identical} "
        f"({gen_threads} thread)")


# --- 4. utilisation ----------------------------------------------------------------------------

def train_flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token: 6 per matmul weight (forward 2, backward 4) plus attention's
    12·L·C·T (QKᵀ and AV, counted in full as in PaLM's MFU, Chowdhery et al. 2022, app. B).
    The LM head counts as a matmul; embedding lookups and norms are not counted."""
    C, L, T, V = cfg.n_embd, cfg.n_layer, cfg.block_size, cfg.vocab_size
    matmul_weights = L * (3 * C * C + C * C + 8 * C * C) + C * V  # qkv, out_proj, MLP, head
    return 6 * matmul_weights + 12 * L * C * T


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 1024, iters: int = 30) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(5):
        a @ b
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(2 * n**3 * iters / (time.perf_counter() - t0))
    return max(rates)


def utilisation(device: torch.device, results: dict, steps: int = 20) -> None:
    out = {}
    fp32 = matmul_rate(device, torch.float32)
    bf16 = matmul_rate(device, torch.bfloat16)
    log(f"matmul rate (1024³): fp32 {fp32 / 1e9:.0f} GFLOP/s, bf16 {bf16 / 1e9:.0f} GFLOP/s")
    ref_m, ref_t = reference_recipe()
    our_m, our_t = cpu_recipe()
    for name, mcfg, tcfg in [("reference", ref_m, ref_t), ("kqvlib_recipe", our_m, our_t)]:
        torch.manual_seed(0)
        model = GPT(mcfg).to(device)
        step = _step_fn(model, device, tcfg.batch_size, tcfg.cpu_bf16)
        for _ in range(3):
            step()
        t = statistics.median(step() for _ in range(steps))
        flops = train_flops_per_token(mcfg) * tcfg.batch_size * mcfg.block_size
        bf = autocast_dtype(device, tcfg.cpu_bf16) == torch.bfloat16
        out[name] = {"flops_per_step": flops, "step_ms": 1000 * t, "achieved_gflops": flops / t / 1e9,
                     "of_fp32_matmul": flops / t / fp32, "bf16": bf,
                     "of_bf16_matmul": flops / t / bf16 if bf else None}
        log(f"utilisation {name}: {flops / 1e9:.2f} GFLOP/step in {1000 * t:.1f} ms = {flops / t / 1e9:.0f} GFLOP/s, "
            f"{100 * flops / t / fp32:.0f}% of the fp32 matmul rate"
            + (f", {100 * flops / t / bf16:.0f}% of the bf16 rate (it trains in bf16)" if bf else ""))
    results["utilisation"] = {"fp32_matmul_gflops": fp32 / 1e9, "bf16_matmul_gflops": bf16 / 1e9, **out}


# --- report ------------------------------------------------------------------------------------

def write_markdown(results: dict, path: Path) -> None:
    r = results
    lines = [f"*Measured {r['date']} on {r['machine']} ({r['threads']} threads), torch {r['torch']}, "
             f"device {r['device']}; `python benchmarks/bench.py` wrote this table.*", ""]
    older = {k: d for k, d in r.get("measured", {}).items() if d != r["date"]}
    if older:
        lines += ["*Kept from an earlier run (only some benchmarks were run on " + r["date"] + "): "
                  + ", ".join(f"{k} ({d})" for k, d in older.items()) + ".*", ""]
    if "race" in r:
        ra = r["race"]
        m = ra["kqvlib"]["model"]
        t = ra["kqvlib"]["train"]
        lines += ["### Recipe race", "",
                  "| recipe | steps | training time | validation loss (whole split) |", "|---|---|---|---|",
                  f"| reference (nanoGPT CPU recipe) | {ra['reference']['steps']} | {ra['T_seconds']:.1f} s | "
                  f"{ra['reference']['val_loss']:.4f} |",
                  f"| kqvlib CPU recipe | {ra['kqvlib']['steps']} | {ra['kqvlib']['seconds']:.1f} s | "
                  f"{ra['kqvlib']['val_loss']:.4f} |", "",
                  f"kqvlib's recipe: {m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context "
                  f"{m['block_size']}, {m['pos_emb']} positions, {m['norm']}, batch {t['batch_size']}, "
                  f"{t['optimizer']} (AdamW lr {t['lr']:g}"
                  + (f", Muon lr {t['muon_lr']:g}" if t["optimizer"] == "muon" else "")
                  + f"), {'bf16 autocast' if t['cpu_bf16'] else 'float32'}, cosine schedule over the time budget.", ""]
    if "step" in r:
        lines += ["### Step time: kqvlib's GPT vs `nn.TransformerEncoderLayer`", "",
                  "| configuration | batch | kqvlib | PyTorch stock | ratio |", "|---|---|---|---|---|"]
        for name, s in r["step"].items():
            c = s["config"]
            lines.append(f"| {c['n_layer']} layers, width {c['n_embd']}, context {c['block_size']} | {s['batch']} | "
                         f"{s['kqvlib_ms']:.1f} ms | {s['stock_ms']:.1f} ms | {s['ratio']:.3f} |")
        lines.append("")
    if "generate" in r:
        gen = r["generate"]
        lines += ["### Generation with a KV cache", "",
                  f"{gen['new_tokens']} new tokens (context {gen['block_size']}): {gen['cache_s']:.2f} s with the "
                  f"cache, {gen['no_cache_s']:.2f} s without — **{gen['speedup']:.1f}×**; identical tokens: "
                  f"{gen['identical_tokens']}. (Both paths on {gen.get('threads', r['threads'])} thread(s), "
                  f"measured {r.get('measured', {}).get('generate', r['date'])}.)", ""]
    if "utilisation" in r:
        u = r["utilisation"]
        lines += ["### Utilisation", "",
                  f"Measured matmul rate (1024×1024): fp32 {u['fp32_matmul_gflops']:.0f} GFLOP/s, "
                  f"bf16 {u['bf16_matmul_gflops']:.0f} GFLOP/s.", "",
                  "| model | FLOPs / step | step time | achieved | of fp32 matmul rate |", "|---|---|---|---|---|"]
        for name in ("reference", "kqvlib_recipe"):
            x = u[name]
            lines.append(f"| {name.replace('_', ' ')} | {x['flops_per_step'] / 1e9:.2f} G | {x['step_ms']:.1f} ms | "
                         f"{x['achieved_gflops']:.0f} GFLOP/s | {100 * x['of_fp32_matmul']:.0f}%"
                         + (f" ({100 * x['of_bf16_matmul']:.0f}% of bf16)" if x["bf16"] else "") + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help="race, step, generate, utilisation (default: all four)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write .json and .md")
    args = parser.parse_args()
    known = ["race", "step", "generate", "utilisation"]
    args.which = args.which or known
    unknown = set(args.which) - set(known)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {known}")
    device = torch.device(args.device)
    out = Path(args.out)
    # A run of some of the benchmarks keeps the others' last results (each section records its own date).
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    kept = [k for k in known if k in previous and k not in args.which]
    results = {**{k: previous[k] for k in kept}, "measured": {k: previous.get("measured", {}).get(k, previous.get("date"))
                                                            for k in kept},
               "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
    t0 = time.perf_counter()
    trained = {}
    if "race" in args.which:
        trained = race(device, results)
    if "step" in args.which:
        step_time(device, results)
    if "generate" in args.which:
        generate_bench(device, results, trained.get("model"))
    if "utilisation" in args.which:
        utilisation(device, results)
    results["measured"].update({k: results["date"] for k in args.which})
    results["total_seconds"] = time.perf_counter() - t0
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    write_markdown(results, out.with_suffix(".md"))
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({results['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()

"""KQV's benchmarks, in one process.

    python benchmarks/bench.py               # all six, then write benchmarks/results.{json,md}
    python benchmarks/bench.py race step     # some of them (scaling, race, muon, step, generate,
                                             # utilisation)
    python benchmarks/bench.py --fp32 scaling race muon   # as on a CPU without native bf16

--fp32 makes kqvlib believe the CPU has no native bf16 (KQV_CPU_BF16=0): training runs in float32 and
Muon's Newton–Schulz too, so one machine can measure both paths. scaling, race and muon keep one result
per number format ("bf16" where the CPU has it natively and --fp32 is not given, else "fp32").

0. scaling      the scaling study behind kqvlib's CPU recipe: each candidate model size
                (kqvlib.recipes.CANDIDATES) trained for several compute budgets (seconds × matmul rate),
                scored on the whole validation split. Its table goes into kqvlib.recipes.SCALING_STUDY.
1. race         nanoGPT's CPU recipe for 2000 steps (its training time is T) against kqvlib's CPU
                recipe for the same T; both scored on the entire validation split.
1b. muon        one training step of the recipe's model with AdamW against Muon (Newton–Schulz in
                this format), and against torch.optim.Muon (Newton–Schulz always in bf16).
2. step         one training step (forward, backward, AdamW) of kqvlib's GPT against the same model
                built from torch.nn.TransformerEncoderLayer, at the CPU and the GPU configurations.
3. generate     new tokens with the KV cache against without it (the same tokens under a seed): up to
                500 within the context, and 4 × block_size past it (the cache rolls; without it the
                same window is recomputed). The book's trained reference GPT when its weights exist.
                On the CPU, times are this process's CPU time (one thread), the wall clock beside them.
4. utilisation  model FLOPs per training step ÷ step time, against this machine's measured matmul rate.
5. gpu          (CUDA only) the GPU recipe trained to completion with the plan for this GPU: steps/s,
                tokens/s, wall time, whole-split validation loss against the goal (≤ 1.47 in ≤ 3 min),
                graphs compiled, restored logits; --baseline also trains nanoGPT's own model (learned
                positions) the same way. One command on a GPU machine:
                    python benchmarks/bench.py gpu step --device cuda

Everything runs on the CPU unless --device says otherwise. Training times exclude loss estimates.
The book's appendix shows the last results (benchmarks/results.md).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib import GPT, GPTConfig, load_dataset, seed_everything
from kqvlib.attention import causal_mask
from kqvlib.recipes import CANDIDATES, choose, cpu_recipe, gpu_recipe, reference_recipe, train_flops_per_token
from kqvlib.generate import generate
from kqvlib.precision import autocast, autocast_dtype, cpu_has_bf16, matmul_rate
from kqvlib.train import evaluate, load_checkpoint, make_optimizers, save_checkpoint, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_markdown  # noqa: E402 — benchmarks/report.py: results.json → results.md, the figure

HERE = Path(__file__).resolve().parent
MEDIUM = next(c for c in CANDIDATES if c.name == "medium")  # the notebooks' model (context 512)
GPU_CONFIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=256)  # nanoGPT's Shakespeare-char GPU model


def log(msg: str) -> None:
    print(msg, flush=True)


# --- 1. recipe race ----------------------------------------------------------------------------

def mode() -> str:
    """The number format the CPU recipe trains in here: "bf16" where the CPU multiplies it natively.
    With oneDNN limited to AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2, as a CPU without AVX-512 has), "fp32-avx2"."""
    avx2 = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"
    return "bf16" if cpu_has_bf16() else "fp32-avx2" if avx2 else "fp32"


def _train_step(model: nn.Module, opts: list, x: torch.Tensor, device: torch.device, cpu_bf16: bool,
                y: torch.Tensor | None = None) -> float:
    """Seconds for one training step (forward, backward, every optimizer) on inputs x and targets y
    (default: x)."""
    t0 = time.perf_counter()
    with autocast(device, cpu_bf16):
        _, loss = model(x, x if y is None else y)
    loss.backward()
    for opt in opts:
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# --- 0. scaling study ------------------------------------------------------------------------------

# Compute budgets (FLOP = seconds × this machine's matmul rate in the format) per number format: on this
# 2-core machine about 10, 30 and 90 s of training each; they span the budgets of a laptop's minute or two.
STUDY_BUDGETS = {"bf16": (12e12, 36e12, 108e12), "fp32": (3e12, 9e12, 27e12, 81e12)}


def utilisations(device: torch.device, cands=CANDIDATES, rounds: int = 8) -> tuple[float, dict[str, float]]:
    """(matmul rate, {candidate: utilisation}) where utilisation = the candidate's training FLOP/s ÷ the
    matmul rate. Measured round-robin — a burst of 1024³ products, then one training step of each
    candidate — and each ratio taken within its round, so a machine whose speed drifts (or is shared)
    still gives the ratios a quiet one would. The first two rounds only warm up."""
    dtype = torch.bfloat16 if mode() == "bf16" else torch.float32
    a, b = torch.randn(1024, 1024, device=device).to(dtype), torch.randn(1024, 1024, device=device).to(dtype)
    runs = {}
    for cand in cands:
        _, tcfg = cpu_recipe(seconds=60, candidate=cand)
        torch.manual_seed(0)
        model = GPT(cand.model()).to(device)
        x = torch.randint(0, 65, (cand.batch_size, cand.block_size), generator=torch.Generator().manual_seed(0))
        runs[cand.name] = (model, make_optimizers(model, tcfg, device), x.to(device), cand.flops_per_step())
    rates, ratios = [], {k: [] for k in runs}
    for r in range(rounds + 2):
        t0 = time.perf_counter()
        for _ in range(20):
            a @ b
        rate = 20 * 2 * 1024**3 / (time.perf_counter() - t0)
        for k, (model, opts, x, flops) in runs.items():
            t = _train_step(model, opts, x, device, True)
            if r >= 2:
                ratios[k].append(flops / t / rate)
        if r >= 2:
            rates.append(rate)
    return statistics.median(rates), {k: statistics.median(v) for k, v in ratios.items()}


TRAIN_THREADS: int | None = None  # --threads


def scaling(device: torch.device, results: dict, previous: dict | None = None, only: list[str] | None = None) -> None:
    """The study. Where the last study of this format (``previous``) already has a run, it is kept: a
    later call runs only what it lacks (a new candidate, a new budget), with ``only`` limiting it to
    some candidates. A candidate's utilisation, which sets its steps, is measured once, when it is new."""
    tok, train_ids, val_ids = load_dataset()
    m = mode()
    budgets = list(STUDY_BUDGETS[m.split("-")[0]])
    previous = previous or {"candidates": {}}
    old = {name: dict(zip(row["budgets"] if "budgets" in row else previous["budgets"],
                          zip(row["steps"], row["loss"], row["seconds"])))
           for name, row in previous["candidates"].items()}
    cands = [c for c in CANDIDATES if (not only or c.name in only)
             and any(b not in old.get(c.name, {}) for b in budgets)]
    new = [c for c in cands if c.name not in old]
    rate, util = utilisations(device, new) if new else (previous["rate"], {})
    util.update({c.name: previous["candidates"][c.name]["utilisation"] for c in cands if c.name in old})
    util_threads = torch.get_num_threads()
    if TRAIN_THREADS:  # the runs are fixed steps: any thread count gives the same losses, up to rounding
        torch.set_num_threads(TRAIN_THREADS)
    log(f"scaling study ({m}): budgets " + ", ".join(f"{b / 1e12:g}" for b in budgets) + " TFLOP; to run: "
        + (", ".join(f"{c.name} (utilisation {util[c.name]:.2f})" for c in cands) or "nothing")
        + (f"; matmul rate {rate / 1e9:.0f} GFLOP/s (measured beside the steps)" if new else ""))
    study = {"mode": m, "rate": previous.get("rate", rate), "budgets": budgets,
             "utilisation_threads": previous.get("utilisation_threads", util_threads),
             "train_threads": previous.get("train_threads", torch.get_num_threads()),
             "candidates": dict(previous["candidates"])}
    for cand in cands:
        runs = dict(old.get(cand.name, {}))  # a copy: old keeps what was there before
        for budget in budgets:
            if budget in runs:
                continue
            # Fixed steps (budget × utilisation ÷ FLOPs per step): the result does not depend on the clock.
            steps = max(40, round(budget * util[cand.name] / cand.flops_per_step()))
            mcfg, tcfg = cpu_recipe(tok.vocab_size, seconds=60, candidate=cand)
            tcfg = replace(tcfg, time_budget=None, max_steps=steps, progress=False)
            seed_everything(0)
            model = GPT(mcfg)
            h = train(model, train_ids, val_ids, tcfg, device=device)
            runs[budget] = (steps, evaluate(model, val_ids), h["seconds"][-1])
            log(f"  {cand.name:7s} {budget / 1e12:5.0f} TFLOP: {steps:5d} steps in {runs[budget][2]:5.1f} s, "
                f"validation loss {runs[budget][1]:.4f}")
            gc.collect()
        row = {**previous["candidates"].get(cand.name, {}), "utilisation": util[cand.name]}
        if cand.name not in old and previous["candidates"]:
            row["rate"] = rate  # measured in this later run
        done = [b for b in budgets if b in runs]
        row.update(budgets=done, steps=[runs[b][0] for b in done], loss=[runs[b][1] for b in done],
                   seconds=[runs[b][2] for b in done])
        if len(done) > len(old.get(cand.name, {})) and old.get(cand.name):
            row["later_runs_threads"] = torch.get_num_threads()  # the runs this call added
        study["candidates"][cand.name] = row
    order = [c.name for c in CANDIDATES]
    study["candidates"] = dict(sorted(study["candidates"].items(), key=lambda kv: order.index(kv[0])))
    results[f"scaling:{m}"] = study


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
    choice = choose(T)
    log(f"kqvlib recipe chose: {choice}")
    our_model_cfg, our_train_cfg = cpu_recipe(tok.vocab_size, seconds=T, candidate=choice.candidate)
    seed_everything(0)
    ours = GPT(our_model_cfg)
    log(f"kqvlib recipe: {ours.num_params():,} parameters, {T:.1f} s …")
    h_ours = train(ours, train_ids, val_ids, replace(our_train_cfg, progress=False), device=device)
    our_val = evaluate(ours, val_ids)
    log(f"kqvlib recipe: trained {h_ours['step'][-1]} steps in {h_ours['seconds'][-1]:.1f} s; "
        f"full validation loss {our_val:.4f}")

    results[f"race:{mode()}"] = {
        "T_seconds": T, "choice": str(choice), "candidate": choice.candidate.name,
        "reference": {"val_loss": ref_val, "steps": h_ref["step"][-1], "seconds": T,
                      "model": asdict(ref_model_cfg), "train": asdict(ref_train_cfg)},
        "kqvlib": {"val_loss": our_val, "steps": h_ours["step"][-1], "seconds": h_ours["seconds"][-1],
                   "model": asdict(our_model_cfg), "train": asdict(our_train_cfg)},
    }
    return {"model": ours, "tokenizer": tok}


# --- 1b. Muon's step time against AdamW's ----------------------------------------------------------

def muon_step(device: torch.device, results: dict, steps: int = 20) -> None:
    """One training step of the recipe's "medium" model: AdamW for everything, kqvlib's Muon (+ AdamW for
    the rest), and torch.optim.Muon (+ AdamW), interleaved so drifts in the machine's speed hit all."""
    cand = MEDIUM
    _, tcfg = cpu_recipe(seconds=60, candidate=cand)
    x = torch.randint(0, 65, (cand.batch_size, cand.block_size), generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in ("adamw", "muon", "torch_muon"):
        torch.manual_seed(0)
        model = GPT(cand.model()).to(device)
        opts = make_optimizers(model, replace(tcfg, optimizer="adamw" if name == "adamw" else "muon"), device)
        if name == "torch_muon":  # the same parameters, PyTorch's Muon (Newton–Schulz in bf16 always)
            hidden = opts[1].param_groups[0]["params"]
            opts[1] = torch.optim.Muon(hidden, lr=tcfg.muon_lr, weight_decay=0.1, adjust_lr_fn="original")
        runs[name] = (model, opts)
    times = {k: [] for k in runs}
    for i in range(steps + 2):
        for k, (model, opts) in runs.items():
            t = _train_step(model, opts, x.to(device), device, tcfg.cpu_bf16)
            if i >= 2:  # the first steps pay for allocations
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"mode": mode(), "model": cand.name, **{f"{k}_ms": 1000 * v for k, v in med.items()},
           "muon_over_adamw": med["muon"] / med["adamw"], "torch_muon_over_adamw": med["torch_muon"] / med["adamw"]}
    log(f"muon step ({mode()}): AdamW {out['adamw_ms']:.1f} ms, kqvlib Muon {out['muon_ms']:.1f} ms "
        f"(×{out['muon_over_adamw']:.3f}), torch.optim.Muon {out['torch_muon_ms']:.1f} ms "
        f"(×{out['torch_muon_over_adamw']:.3f})")
    results[f"muon:{mode()}"] = out


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
    return lambda: _train_step(model, [opt], x, device, cpu_bf16, y)


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

def _reference_model() -> GPT | None:
    """The book's trained reference GPT (kqvlib.pretrained), when its weights are in place."""
    try:
        from kqvlib.pretrained import pretrained_gpt
        return pretrained_gpt()[0]
    except (ImportError, ValueError, OSError):
        return None


def _time_generate(model, device, new_tokens, repeats, use_cache):
    """(median seconds, median wall-clock seconds, tokens) of generate() from one newline, sampled at
    temperature 0.8 under seed 1337. On the CPU the first is the CPU time of this process (one thread):
    what the work costs, whatever else the machine is running; on a GPU it is the wall clock."""
    start = torch.zeros(1, 1, dtype=torch.long, device=device)  # one newline character as the prompt
    cpu, wall = [], []
    for _ in range(repeats):
        g = torch.Generator(device=device).manual_seed(1337)
        t0, c0 = time.perf_counter(), time.process_time()
        out = generate(model, start, new_tokens, temperature=0.8, top_k=None, generator=g, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0 if device.type == "cpu" else wall[-1])
    return statistics.median(cpu), statistics.median(wall), out


def generate_bench(device: torch.device, results: dict, model: GPT | None = None, new_tokens: int = 500,
                   repeats: int = 3) -> None:
    """Two runs, each with the KV cache against without it, the same tokens under one seed: ``new_tokens``
    within the context (at most block_size − 1), and 4 × block_size new tokens, past the context, where the
    cache rolls (a window of block_size positions; the uncached path recomputes the same window, once)."""
    source = "trained by the race" if model is not None else "untrained"
    if model is None:
        model = _reference_model()
        source = "the book's reference GPT (kqvlib.pretrained)" if model is not None else source
    trained = source != "untrained"
    if model is None:
        cfg, _ = cpu_recipe(candidate=MEDIUM)
        seed_everything(0)
        model = GPT(cfg)
    model = model.to(device).eval()
    block = model.config.block_size
    # One new token is a few million multiply-adds at most: too little to split across threads (on a
    # busy 2-core machine the threads' hand-offs cost more than the work). Both paths run with the
    # same single thread; the thread count in effect is printed and stored.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    for use_cache in (True, False):  # warm-up: the first calls pay for allocations
        generate(model, torch.zeros(1, 1, dtype=torch.long, device=device), 50,
                 generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)
    runs, clock = {}, "CPU" if device.type == "cpu" else "wall-clock"
    for name, n, reps_uncached in [("within_context", min(new_tokens, block - 1), repeats),
                                   ("past_context", 4 * block, 1)]:
        mc, wc, with_cache = _time_generate(model, device, n, repeats, True)
        mn, wn, without = _time_generate(model, device, n, reps_uncached, False)
        runs[name] = {"new_tokens": n, "cache_s": mc, "no_cache_s": mn, "speedup": mn / mc,
                      "cache_wall_s": wc, "no_cache_wall_s": wn, "clock": clock,
                      "identical_tokens": torch.equal(with_cache, without)}
        log(f"generate {n} tokens ({name.replace('_', ' ')}, block_size {block}): with cache {mc:.2f} s, "
            f"without {mn:.2f} s of {clock} time, speedup {mn / mc:.1f}x (wall clock {wc:.2f} s and "
            f"{wn:.2f} s), identical tokens: {runs[name]['identical_tokens']}")
    gen_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    inside = runs["within_context"]
    results["generate"] = {"new_tokens": inside["new_tokens"], "block_size": block, "fits_in_context": True,
                           "trained_model": trained, "cache_s": inside["cache_s"],
                           "no_cache_s": inside["no_cache_s"], "speedup": inside["speedup"],
                           "identical_tokens": inside["identical_tokens"], "threads": gen_threads,
                           "clock": clock, "cache_wall_s": inside["cache_wall_s"],
                           "no_cache_wall_s": inside["no_cache_wall_s"],
                           "past_context": {**runs["past_context"], "window": block,
                                            "uncached": "the same window recomputed, once"}}
    results["generate"]["model"] = source
    log(f"generate: {gen_threads} thread; model {source}")


# --- 4. utilisation ----------------------------------------------------------------------------

def utilisation(device: torch.device, results: dict, steps: int = 20) -> None:
    out = {}
    fp32 = matmul_rate(torch.float32, device)
    bf16 = matmul_rate(torch.bfloat16, device)
    log(f"matmul rate (1024³): fp32 {fp32 / 1e9:.0f} GFLOP/s, bf16 {bf16 / 1e9:.0f} GFLOP/s")
    ref_m, ref_t = reference_recipe()
    our_m, our_t = cpu_recipe(candidate=MEDIUM)
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


# --- 5. the GPU recipe, on CUDA -------------------------------------------------------------------

GPU_GOAL = (1.47, 180.0)  # whole-split validation loss, seconds of wall time (an H100-class GPU)


def gpu_bench(results: dict, baseline: bool = False, device: torch.device | None = None,
              recipe=gpu_recipe) -> None:
    """Train the GPU recipe to completion on this CUDA GPU, as chapter 10's GPU cell does (its plan: bf16 from
    compute capability 8.0, fp16 + GradScaler below; compiled; TF32; the split on the GPU), and measure it.
    (``device`` and ``recipe`` let a test run it on the CPU with a tiny recipe.)"""
    import tempfile

    from torch._dynamo.utils import counters

    from kqvlib.precision import plan_for

    device = device or torch.device("cuda")
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench.py gpu needs a CUDA GPU (torch.cuda.is_available() is False here)")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tok, train_ids, val_ids = load_dataset()
    plan = plan_for(device)
    name, cap = (torch.cuda.get_device_name(), torch.cuda.get_device_capability()) if cuda else ("cpu", (0, 0))
    out = {"gpu": name, "capability": f"{cap[0]}.{cap[1]}", "dtype": str(plan.dtype), "scaler": plan.scaler,
           "goal": {"val_loss": GPU_GOAL[0], "seconds": GPU_GOAL[1]}, "runs": {}}
    runs = {"kqvlib": recipe(tok.vocab_size)}
    if baseline:
        runs["nanogpt_model"] = recipe(tok.vocab_size, positions="learned")
    for label, (mcfg, tcfg) in runs.items():
        seed_everything(0)
        model = GPT(mcfg)
        counters.clear()
        sync()
        t0 = time.perf_counter()
        h = train(model, train_ids, val_ids, replace(tcfg, progress=False), device=device, plan=plan)
        sync()
        wall = time.perf_counter() - t0  # compiling and the loss estimates included
        graphs = counters["stats"]["unique_graphs"]
        val = evaluate(model, val_ids, batch_size=64, plan=plan)
        steps, secs = h["step"][-1], h["seconds"][-1]
        tokens = steps * tcfg.batch_size * mcfg.block_size
        with tempfile.TemporaryDirectory() as tmp:  # chapter 10's restore cell, on this GPU
            save_checkpoint(f"{tmp}/gpt.pt", model, None, steps, h)
            restored = GPT(mcfg).to(device)
            load_checkpoint(f"{tmp}/gpt.pt", restored, map_location=device)
            x = val_ids[: mcfg.block_size].view(1, -1).to(device)
            with torch.no_grad():
                identical = torch.equal(restored.eval()(x)[0], model.eval()(x)[0])
        best = min(zip(h["val_loss"], h["step"]))
        met = val <= GPU_GOAL[0] and wall <= GPU_GOAL[1]
        out["runs"][label] = {"steps": steps, "train_seconds": secs, "wall_seconds": wall,
                              "steps_per_s": steps / secs, "tokens_per_s": tokens / secs,
                              "val_loss_whole_split": val, "last_estimate": h["val_loss"][-1],
                              "best_estimate": best[0], "best_estimate_step": best[1], "graphs_compiled": graphs,
                              "restored_logits_identical": identical, "goal_met": met, "model": asdict(mcfg),
                              "train": asdict(tcfg)}
        log(f"gpu {label} on {name} (sm {cap[0]}.{cap[1]}, autocast {plan.dtype}, GradScaler {plan.scaler}): "
            f"{steps} steps in {secs:.1f} s of training ({steps / secs:.1f} steps/s, {tokens / secs:,.0f} tokens/s), "
            f"{wall:.1f} s wall with compiling and estimates; whole-split validation loss {val:.4f} (estimates: "
            f"last {h['val_loss'][-1]:.4f}, best {best[0]:.4f} at step {best[1]}); graphs compiled: {graphs} "
            f"(2 = one for training, one for the estimates); restored model, eval mode, identical logits: "
            f"{identical}; goal ≤ {GPU_GOAL[0]} in ≤ {GPU_GOAL[1]:.0f} s: {'met' if met else 'NOT met'}")
        del model, restored
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    results["gpu"] = out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help="scaling, race, muon, step, generate, utilisation, gpu (default: "
                                                 "all but gpu)")
    parser.add_argument("--baseline", action="store_true", help="gpu: also train nanoGPT's own model (learned "
                                                                "positions) with the same plan")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, the cores); for scaling, only its training runs: "
                             "the utilisation that sets their steps is measured with all cores, as the recipe runs")
    parser.add_argument("--candidates", default=None, type=lambda s: s.split(","),
                        help="scaling: only these candidates (comma-separated), added to the last study of "
                             "this format")
    parser.add_argument("--fp32", action="store_true", help="pretend the CPU has no native bf16 (KQV_CPU_BF16=0)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write .json and .md")
    args = parser.parse_args()
    known = ["scaling", "race", "muon", "step", "generate", "utilisation", "gpu"]
    args.which = args.which or known[:-1]
    if args.fp32:
        os.environ["KQV_CPU_BF16"] = "0"
    unknown = set(args.which) - set(known)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {known}")
    device = torch.device(args.device)
    global TRAIN_THREADS
    TRAIN_THREADS = args.threads
    if args.threads and "scaling" not in args.which:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    # A run of some of the benchmarks keeps the others' last results (each section records its own date).
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    per_mode = {"scaling", "race", "muon"}
    ran = [f"{k}:{mode()}" if k in per_mode else k for k in args.which]
    kept = [k for k in previous if k.split(":")[0] in known and k not in ran]
    results = {**{k: previous[k] for k in kept}, "measured": {k: previous.get("measured", {}).get(k, previous.get("date"))
                                                            for k in kept},
               "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
    t0 = time.perf_counter()
    trained = {}
    if "scaling" in args.which:
        scaling(device, results, previous.get(f"scaling:{mode()}"), args.candidates)
    if "race" in args.which:
        trained = race(device, results)
    if "muon" in args.which:
        muon_step(device, results)
    if "step" in args.which:
        step_time(device, results)
    if "generate" in args.which:
        model = trained.get("model")  # the race's model, if its context holds the 501 tokens
        generate_bench(device, results, model if model is not None and model.config.block_size > 500 else None)
    if "utilisation" in args.which:
        utilisation(device, results)
    if "gpu" in args.which:
        gpu_bench(results, args.baseline)
    results["measured"].update({k: results["date"] for k in ran})
    results["total_seconds"] = time.perf_counter() - t0
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    write_markdown(results, out.with_suffix(".md"))
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({results['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()

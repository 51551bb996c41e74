"""benchmarks/results.json → benchmarks/results.md (shown in the book's appendix) and the scaling figure
book/images/scaling_study.png. bench.py calls write_markdown after every run; run this file alone to
redraw both from the stored results:

    python benchmarks/report.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURE = HERE.parent / "book" / "images" / "scaling_study.png"
MODES = {"bf16": "bf16 (native on this CPU)", "fp32": "float32 (`--fp32`: as on a CPU without native bf16)",
         "fp32-avx2": "float32 with AVX2 kernels only (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 "
                      "MKL_ENABLE_INSTRUCTIONS=AVX2`: bf16 emulated, as on an AVX2 laptop)"}


def _candidates():
    from kqvlib.recipes import CANDIDATES

    return {c.name: c for c in CANDIDATES}


def _budgets(st: dict, row: dict) -> list[float]:
    """The budgets a candidate's row was run at: its own list, or the study's first len(loss)."""
    return row.get("budgets") or st["budgets"][: len(row["loss"])]


def scaling_lines(r: dict) -> list[str]:
    cands = _candidates()
    lines = []
    for m in MODES:
        st = r.get(f"scaling:{m}")
        if not st:
            continue
        heads = " | ".join(f"{b / 1e12:g} TFLOP" for b in st["budgets"])
        threads = (f" (utilisation measured on {st['utilisation_threads']} threads, as the recipe trains; the "
                   f"fixed-step runs on {st['train_threads']})" if "train_threads" in st else "")
        lines += [f"**{MODES[m]}** — matmul rate {st['rate'] / 1e9:.0f} GFLOP/s{threads}; validation loss (whole "
                  "split) after training for each budget, steps in brackets, the best in bold:", "",
                  f"| candidate | layers × width, context × batch | utilisation | {heads} |",
                  "|---|---|---|" + "---|" * len(st["budgets"])]
        runs = {name: dict(zip(_budgets(st, row), zip(row["loss"], row["steps"])))
                for name, row in st["candidates"].items()}
        best = {b: min((n for n in runs if b in runs[n]), key=lambda n: runs[n][b][0]) for b in st["budgets"]}
        for name, row in st["candidates"].items():
            c = cands.get(name)
            shape = f"{c.n_layer} × {c.n_embd}, {c.block_size} × {c.batch_size}" if c else "?"
            cells = [((f"**{runs[name][b][0]:.3f}**" if best[b] == name else f"{runs[name][b][0]:.3f}")
                      + f" ({runs[name][b][1]})") if b in runs[name] else "—" for b in st["budgets"]]
            mark = "¹" if ("note" in row or "later_runs_threads" in row) else ""
            lines.append(f"| {name}{mark} | {shape} | {100 * row['utilisation']:.0f}% | " + " | ".join(cells) + " |")
        notes = [f"{name}: " + row.get("note", f"the last budget was run later, on {row.get('later_runs_threads')} "
                                       "thread(s)") for name, row in st["candidates"].items()
                 if "note" in row or "later_runs_threads" in row]
        lines += ["", "¹ " + "; ".join(notes) + "."] if notes else []
        lines.append("")
    if lines:
        lines += ["![Validation loss against compute budget for each candidate, bf16 and float32]"
                  "(images/scaling_study.png)", ""]
    return lines


def race_lines(r: dict) -> list[str]:
    rows = [(m, r[f"race:{m}"]) for m in MODES if f"race:{m}" in r]
    if not rows:
        return []
    lines = ["| number format | T (reference's 2000 steps) | reference loss | kqvlib's choice | kqvlib steps | "
             "kqvlib loss |", "|---|---|---|---|---|---|"]
    for m, ra in rows:
        lines.append(f"| {m} | {ra['T_seconds']:.1f} s | {ra['reference']['val_loss']:.4f} | {ra['candidate']} | "
                     f"{ra['kqvlib']['steps']} | **{ra['kqvlib']['val_loss']:.4f}** |")
    lines.append("")
    for m, ra in rows:
        t = ra["kqvlib"]["train"]
        lines.append(f"- {m}: the recipe measured {ra['choice']}. Trained with Muon (lr {t['muon_lr']:g}) + AdamW "
                     f"(lr {t['lr']:g}), batch {t['batch_size']}, cosine schedule over the time budget.")
    return lines + [""]


def muon_lines(r: dict) -> list[str]:
    rows = [(m, r[f"muon:{m}"]) for m in MODES if f"muon:{m}" in r]
    if not rows:
        return []
    lines = ["| Newton–Schulz format | AdamW step | kqvlib Muon step | ratio | torch.optim.Muon step | ratio |",
             "|---|---|---|---|---|---|"]
    names = {"bf16": "bf16 (native here)", "fp32": "float32 (`--fp32`)", "fp32-avx2": "float32, AVX2 kernels only"}
    for m, x in rows:
        lines.append(f"| {names.get(m, m)} | {x['adamw_ms']:.1f} ms | {x['muon_ms']:.1f} ms | **{x['muon_over_adamw']:.3f}** | "
                     f"{x['torch_muon_ms']:.1f} ms | {x['torch_muon_over_adamw']:.3f} |")
    return lines + [""]


def plot_scaling(r: dict, path: Path = FIGURE) -> bool:
    studies = [(m, r[f"scaling:{m}"]) for m in MODES if f"scaling:{m}" in r]
    if not studies:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studies), figsize=(4.2 * len(studies), 3.2), dpi=90, squeeze=False)
    for ax, (m, st) in zip(axes[0], studies):
        for name, row in st["candidates"].items():
            ax.plot([b / 1e12 for b in _budgets(st, row)], row["loss"], "o-", label=name)
        ax.set_xscale("log")
        ticks = [b / 1e12 for b in st["budgets"]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set(xlabel="budget, TFLOP (seconds × matmul rate)", ylabel="validation loss", title=m)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def write_markdown(results: dict, path: Path) -> None:
    r = results
    lines = [f"*Measured {r['date']} on {r['machine']} ({r['threads']} threads), torch {r['torch']}, "
             f"device {r['device']}; `python benchmarks/bench.py` wrote this table.*", ""]
    older = {k: d for k, d in r.get("measured", {}).items() if d != r["date"]}
    if older:
        lines += ["*Kept from an earlier run (only some benchmarks were run on " + r["date"] + "): "
                  + ", ".join(f"{k} ({d})" for k, d in older.items()) + ".*", ""]
    if any(k.startswith("scaling:") for k in r):
        lines += ["### Scaling study", ""] + scaling_lines(r)
        plot_scaling(r)
    if any(k.startswith("race:") for k in r):
        lines += ["### Recipe race", ""] + race_lines(r)
    if any(k.startswith("muon:") for k in r):
        lines += ["### Muon's step time against AdamW's", ""] + muon_lines(r)
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
                  f"measured {r.get('measured', {}).get('generate', r['date'])}; {gen.get('clock', 'wall-clock')} "
                  f"time; model: {gen.get('model', 'untrained')}.)", ""]
        past = gen.get("past_context")
        if past:
            lines += [f"Past the context: {past['new_tokens']} new tokens ({past['new_tokens'] // gen['block_size']} × "
                      f"the context): {past['cache_s']:.2f} s with the rolling cache, {past['no_cache_s']:.2f} s "
                      f"recomputing the same window of {past['window']} positions for every token — "
                      f"**{past['speedup']:.1f}×**; identical tokens: {past['identical_tokens']}.", ""]
    if "utilisation" in r:
        u = r["utilisation"]
        lines += ["### Utilisation", "",
                  f"Measured matmul rate (1024×1024): fp32 {u['fp32_matmul_gflops']:.0f} GFLOP/s, "
                  f"bf16 {u['bf16_matmul_gflops']:.0f} GFLOP/s.", "",
                  "| model | FLOPs / step | step time | achieved | of fp32 matmul rate |", "|---|---|---|---|---|"]
        for name in ("reference", "kqvlib_recipe"):
            x = u[name]
            label = {"kqvlib_recipe": "kqvlib medium candidate (the notebooks' model)"}.get(name, name)
            lines.append(f"| {label} | {x['flops_per_step'] / 1e9:.2f} G | {x['step_ms']:.1f} ms | "
                         f"{x['achieved_gflops']:.0f} GFLOP/s | {100 * x['of_fp32_matmul']:.0f}%"
                         + (f" ({100 * x['of_bf16_matmul']:.0f}% of bf16)" if x["bf16"] else "") + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def study_literal(r: dict) -> str:
    """The scaling study of results.json as the Python literal kqvlib.recipes.SCALING_STUDY holds."""
    lines = ["SCALING_STUDY: dict[str, dict] = {"]
    for m in ("bf16", "fp32"):
        st = r[f"scaling:{m}"]
        budgets = ", ".join(f"{b:g}" for b in st["budgets"])
        lines.append(f'    "{m}": {{"budgets": ({budgets}),')
        rows = [f'"{k}": ({", ".join(f"{x:.4f}" for x in v["loss"])})' for k, v in st["candidates"].items()]
        lines.append('             "loss": {' + (",\n                      ".join(rows)) + "}},")
    return "\n".join(lines + ["}"])


if __name__ == "__main__":
    import sys

    out = HERE / "results"
    results = json.loads(out.with_suffix(".json").read_text())
    if sys.argv[1:] == ["--study"]:  # print the table for kqvlib/recipes.py
        print(study_literal(results))
    else:
        write_markdown(results, out.with_suffix(".md"))
        print(f"wrote {out.with_suffix('.md')} and {FIGURE}")

"""Train the book's reference GPT and write it into kqvlib as package data.

    python scripts/train_reference.py              # the real run: about 15 minutes on a 2-core CPU
    python scripts/train_reference.py --steps 5 --out /tmp/ref   # a smoke test

It trains kqvlib.pretrained.pretrained_recipe() with a fixed seed for a fixed number of steps, rounds
the weights to float16 (as shipped), measures the validation loss of exactly those weights over the
whole validation split, and writes kqvlib/weights/reference_gpt.pt and reference_gpt.json (the facts:
torch version, CPU, threads, number format, configuration, steps, tokens seen, wall time, loss,
sha256). It prints the same facts, and the loss estimates along the way.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kqvlib.data import load_dataset  # noqa: E402
from kqvlib.model import GPT  # noqa: E402
from kqvlib.precision import cpu_has_bf16  # noqa: E402
from kqvlib.pretrained import FACTS, WEIGHTS, pretrained_recipe, save_reference, sha256_of  # noqa: E402
from kqvlib.seed import seed_everything  # noqa: E402
from kqvlib.train import evaluate, train  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6000, help="training steps (default: the real run's 6000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="a progress bar on stderr")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for reference_gpt.pt/.json (default: inside kqvlib, as shipped)")
    args = ap.parse_args(argv)
    weights = (args.out / WEIGHTS.name) if args.out else WEIGHTS
    facts_path = (args.out / FACTS.name) if args.out else FACTS
    weights.parent.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(args.threads)
    tok, train_ids, val_ids = load_dataset()
    model_cfg, train_cfg = pretrained_recipe(tok.vocab_size, args.steps)
    train_cfg.seed, train_cfg.progress = args.seed, args.progress
    seed_everything(args.seed)
    model = GPT(model_cfg)
    fmt = "bf16 autocast (native on this CPU)" if train_cfg.cpu_bf16 and cpu_has_bf16() else "float32"
    print(f"training {model.num_params():,} parameters for {args.steps:,} steps, {fmt}, "
          f"{args.threads} threads", flush=True)

    t0 = time.perf_counter()
    hist = train(model, train_ids, val_ids, train_cfg, device=torch.device("cpu"))
    train_seconds = time.perf_counter() - t0
    for s, tl, vl in zip(hist["step"], hist["train_loss"], hist["val_loss"]):
        print(f"  step {s:>6,}: loss estimate train {tl:.3f}, val {vl:.3f}", flush=True)

    save_reference(model, weights)  # float16 on disk
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})  # exactly the shipped weights
    val_loss = evaluate(model, val_ids, batch_size=32, device=torch.device("cpu"))
    wall = time.perf_counter() - t0
    tokens = args.steps * train_cfg.batch_size * model_cfg.block_size
    facts = {
        "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
        "threads": args.threads, "number_format": fmt, "seed": args.seed,
        "model_config": asdict(model_cfg), "train_config": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in asdict(train_cfg).items()},
        "params": model.num_params(), "steps": args.steps, "tokens_seen": tokens,
        "epochs": tokens / len(train_ids), "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(wall, 1), "val_loss": val_loss, "val_tokens": len(val_ids) - 1,
        "history": hist, "vocabulary": tok.chars, "file_bytes": weights.stat().st_size,
        "sha256": sha256_of(weights), "date": time.strftime("%Y-%m-%d"),
    }
    facts_path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"tokens seen: {tokens:,} ({facts['epochs']:.1f} passes over {len(train_ids):,} training characters)")
    print(f"wall time: {wall / 60:.1f} min (training {train_seconds / 60:.1f} min)")
    print(f"validation loss, whole split ({facts['val_tokens']:,} positions), float16 weights: {val_loss:.4f}")
    print(f"wrote {weights} ({facts['file_bytes'] / 1e6:.2f} MB, sha256 {facts['sha256'][:16]}…) and {facts_path.name}")
    return facts


if __name__ == "__main__":
    main()

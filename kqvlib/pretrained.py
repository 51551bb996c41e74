"""The book's reference model (chapter 10): a GPT trained once on Tiny Shakespeare by
``scripts/train_reference.py`` and shipped inside kqvlib, so every install can load it without training.

    model, tok = pretrained_gpt()        # eval mode, on the CPU, weights checked against their sha256
    print(model.facts)                   # how it was trained, and its whole-validation-split loss

The weights are stored in float16 (half the bytes of float32) and loaded into a float32 model; the
recorded validation loss is measured on exactly those rounded weights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pooch
import torch

from kqvlib._common import require
from kqvlib.model import GPT, GPTConfig
from kqvlib.tokenizers import CharTokenizer
from kqvlib.train import TrainConfig

WEIGHTS = Path(__file__).parent / "weights" / "reference_gpt.pt"
FACTS = WEIGHTS.with_suffix(".json")
HOW_TO_RESTORE = ("restore it with `pip install --force-reinstall kqvlib` (or, in a clone of the book's "
                  "repository, `git checkout -- kqvlib/weights/`), or make it again with "
                  "`python scripts/train_reference.py` (about 30 minutes on a 2-core CPU)")


def pretrained_recipe(vocab_size: int = 65, steps: int = 6000) -> tuple[GPTConfig, TrainConfig]:
    """How the reference model is trained (``scripts/train_reference.py``): the scaling study's "medium"
    candidate (4 layers of width 128, 2 heads of width 64, a 512-character context, rotary positions),
    Muon for the blocks' matrices and AdamW for the rest, float32, ``steps`` steps of 4 windows (2,048
    characters) on a warmup + cosine schedule. Built in chapter 10."""
    model = GPTConfig(vocab_size=vocab_size, block_size=512, n_layer=4, n_head=2, n_embd=128,
                      dropout=0.0, bias=False, tie_weights=True, pos_emb="rope", norm="layernorm")
    train = TrainConfig(max_steps=steps, batch_size=4, lr=6e-3, min_lr=1e-4, warmup_steps=30,
                        weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
                        eval_interval=max(1, steps // 12), eval_iters=20, optimizer="muon", muon_lr=0.02,
                        cpu_bf16=False)
    return model, train


@dataclass(frozen=True)
class ReferenceFacts:
    """What ``scripts/train_reference.py`` recorded beside the weights. Built in chapter 10."""

    facts: dict

    def __getitem__(self, key: str):
        return self.facts[key]

    def __str__(self) -> str:
        f = self.facts
        cfg = f["model_config"]
        return "\n".join([
            f"reference GPT: {cfg['n_layer']} layers × width {cfg['n_embd']}, {cfg['n_head']} heads, "
            f"context {cfg['block_size']}, {f['params']:,} parameters",
            f"trained: {f['steps']:,} steps, {f['tokens_seen'] / 1e6:.1f} M characters "
            f"({f['epochs']:.1f} passes over the training split) in {f['wall_seconds'] / 60:.1f} min",
            f"on: {f['cpu']}, {f['threads']} threads, {f['number_format']}, torch {f['torch']}",
            f"validation loss (whole split, every position): {f['val_loss']:.4f}",
        ])


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (pooch's, as :mod:`kqvlib.data` checks the dataset). Built in chapter 10."""
    return pooch.file_hash(str(path), alg="sha256")


def reference_facts(facts_path: str | Path = FACTS) -> ReferenceFacts:
    """The recorded facts of the reference model (no weights loaded). Built in chapter 10."""
    facts_path = Path(facts_path)
    require(facts_path.is_file(), lambda: f"pretrained_gpt: {facts_path} is missing; {HOW_TO_RESTORE}")
    try:
        return ReferenceFacts(json.loads(facts_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"pretrained_gpt: {facts_path} is not valid JSON ({e}); {HOW_TO_RESTORE}") from None


def pretrained_gpt(weights: str | Path = WEIGHTS, facts: str | Path = FACTS) -> tuple[GPT, CharTokenizer]:
    """The book's reference GPT and its character tokenizer: the model in eval mode on the CPU, float32,
    with ``model.facts`` (a :class:`ReferenceFacts`; print it). The file's sha256 is checked first: a
    changed or truncated file raises ``ValueError`` naming it and saying how to restore it.
    Built in chapter 10."""
    weights = Path(weights)
    info = reference_facts(facts)
    require(weights.is_file(), lambda: f"pretrained_gpt: {weights} is missing; {HOW_TO_RESTORE}")
    digest = sha256_of(weights)
    require(digest == info["sha256"],
            lambda: f"pretrained_gpt: {weights} is damaged or changed (sha256 {digest[:12]}…, expected "
                    f"{info['sha256'][:12]}…); {HOW_TO_RESTORE}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    model.facts = info
    tok = CharTokenizer("".join(info["vocabulary"]))
    return model.eval(), tok


def save_reference(model: GPT, path: str | Path) -> None:
    """Write ``model``'s weights as the reference file: float16 tensors and the plain config, nothing
    else (so ``weights_only`` loading needs nothing more). Built in chapter 10."""
    from dataclasses import asdict

    sd = {k: v.detach().to("cpu", torch.float16).clone() for k, v in model.state_dict().items()}
    torch.save({"model": sd, "model_config": asdict(model.config)}, path)

"""Chapter 10's restore cell, run as a reader on a GPU would run it: a model with dropout."""
import json
from pathlib import Path

import torch

from kqvlib import GPT, GPTConfig
from kqvlib.train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def restore_cell() -> str:
    nb = json.loads((ROOT / "book" / "10_training.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    (cell,) = [c for c in cells if "restored = GPT(" in c and "load_checkpoint(final, restored)" in c]
    return cell


def run(cell: str, tmp_path) -> bool:
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.2)
    torch.manual_seed(0)
    model = GPT(cfg).train()  # as training leaves it
    final = str(tmp_path / "gpt.pt")
    save_checkpoint(final, model, None, 1, {"step": [], "train_loss": [], "val_loss": [], "lr": [], "seconds": []})
    ns = {"torch": torch, "GPT": GPT, "GPTConfig": GPTConfig, "model": model, "final": final,
          "val_ids": torch.randint(0, 65, (200,), generator=torch.Generator().manual_seed(1))}
    exec(cell, ns)
    return ns["same"]


def test_the_restore_cell_compares_eval_mode_models(tmp_path):
    assert run(restore_cell(), tmp_path) is True


def test_without_eval_mode_dropout_would_make_them_differ(tmp_path):
    """The control: the same cell with the .eval() calls removed prints False with dropout 0.2."""
    cell = restore_cell().replace("restored.eval()(x)", "restored.train()(x)").replace("model.eval()(x)", "model.train()(x)")
    assert run(cell, tmp_path) is False

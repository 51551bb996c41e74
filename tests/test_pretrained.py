"""The reference model shipped inside kqvlib (chapter 10): checksum, loading, its recorded loss."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kqvlib.pretrained import (FACTS, WEIGHTS, pretrained_gpt, pretrained_recipe, reference_facts,
                               save_reference, sha256_of)
from kqvlib.train import evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset(shakespeare_file):
    from kqvlib.data import CharTokenizer, train_val_split

    text = shakespeare_file.read_text(encoding="utf-8")
    tok = CharTokenizer(text)
    return (tok, *train_val_split(torch.tensor(tok.encode(text), dtype=torch.long)))


def test_shipped_file_is_small_and_its_sha256_matches():
    facts = reference_facts()
    assert WEIGHTS.stat().st_size <= 8 * 1024 * 1024
    assert sha256_of(WEIGHTS) == facts["sha256"]
    assert facts["file_bytes"] == WEIGHTS.stat().st_size


def test_loads_fast_in_eval_mode_on_the_cpu():
    t0 = time.perf_counter()
    model, tok = pretrained_gpt()
    assert time.perf_counter() - t0 <= 3.0
    assert not model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tok.vocab_size == model.config.vocab_size == 65
    text = "ROMEO:\nBut soft!"
    assert tok.decode(tok.encode(text)) == text
    assert "validation loss" in str(model.facts)


def test_recorded_facts_are_complete():
    facts = reference_facts()
    for key in ("torch", "cpu", "threads", "number_format", "model_config", "train_config", "steps",
                "tokens_seen", "wall_seconds", "val_loss", "sha256"):
        assert key in facts.facts, key
    assert facts["tokens_seen"] == facts["steps"] * facts["train_config"]["batch_size"] * facts["model_config"]["block_size"]
    assert facts["wall_seconds"] <= 30 * 60
    assert facts["val_loss"] <= 1.47


def test_recorded_validation_loss_is_recomputed(dataset):
    """Every non-overlapping window of the context over the whole validation split, every position."""
    _, _, val = dataset
    model, _ = pretrained_gpt()
    loss = evaluate(model, val, batch_size=32)
    assert abs(loss - reference_facts()["val_loss"]) < 2e-3, loss
    assert loss <= 1.47


def test_save_then_load_gives_identical_logits(tmp_path):
    model, _ = pretrained_gpt()
    path = tmp_path / "copy.pt"
    save_reference(model, path)
    facts = dict(reference_facts().facts, sha256=sha256_of(path))
    (tmp_path / "copy.json").write_text(json.dumps(facts))
    again, _ = pretrained_gpt(path, tmp_path / "copy.json")
    idx = torch.randint(0, 65, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], again(idx)[0])


@pytest.mark.parametrize("damage", ["one byte changed", "truncated", "missing"])
def test_a_damaged_file_names_itself_and_how_to_restore_it(tmp_path, damage):
    path = tmp_path / "reference_gpt.pt"
    shutil.copy(WEIGHTS, path)
    data = bytearray(path.read_bytes())
    if damage == "one byte changed":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    else:
        path.unlink()
    with pytest.raises(ValueError) as err:
        pretrained_gpt(path, FACTS)
    msg = str(err.value)
    assert str(path) in msg and "restore" in msg and "train_reference.py" in msg


def test_training_command_runs_a_few_steps(tmp_path, shakespeare_file):
    """The command that made the shipped model, for 3 steps (a smoke test)."""
    env = dict(os.environ, KQV_TINYSHAKESPEARE=str(shakespeare_file))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_reference.py"), "--steps", "3",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "validation loss, whole split" in out.stdout
    facts = json.loads((tmp_path / "reference_gpt.json").read_text())
    assert facts["steps"] == 3 and facts["sha256"] == sha256_of(tmp_path / "reference_gpt.pt")
    model, _ = pretrained_gpt(tmp_path / "reference_gpt.pt", tmp_path / "reference_gpt.json")
    assert model.config == pretrained_recipe()[0]

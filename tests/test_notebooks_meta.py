"""Every notebook starts with the shared setup cell, naming the repository that _config.yml names."""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def first_code_cell(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_setup_cell_names_the_configured_repository(nb):
    src = first_code_cell(nb)
    urls = re.findall(r"git\+(https://[^\"'\s]+)", src)
    assert urls == [repository_url()], f"{nb.name}: setup cell installs from {urls}, _config.yml says {repository_url()}"
    assert 'if "google.colab" in sys.modules' in src and "kqvlib.seed_everything(" in src


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_one_clean_run(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{nb.name}: re-execute it top to bottom (make notebook NB={nb.relative_to(ROOT)})"
    for c in cells:
        errors = [o for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors or "raises-exception" in c.get("metadata", {}).get("tags", [])
    assert nb.stat().st_size < 2_000_000


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for nb in NOTEBOOKS:
        assert str(nb.relative_to(ROOT).with_suffix("")) in toc, f"{nb} is not listed in _toc.yml"

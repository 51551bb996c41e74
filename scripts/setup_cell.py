"""The setup cell every notebook starts with: the function it runs, and the text of the cell.

Where kqvlib is missing (Colab, Kaggle, a downloaded .ipynb in a local Jupyter), the notebook is all
there is: nothing can be imported before kqvlib is installed. So the first cell carries one small,
standard-library-only function, ``kqv_setup`` below, and calls it with the book's repository address
and release tag. Those two are written once, in ``_config.yml`` (``repository.url`` and
``repository.branch``); this script writes the cell from this function and those two values, and
``tests/test_notebooks_meta.py`` checks that every notebook's first cell is exactly that text.
``tests/test_setup.py`` runs the cell in a fresh virtual environment.

    .venv/bin/python scripts/setup_cell.py            # print the cell
    .venv/bin/python scripts/setup_cell.py --check    # list the notebooks whose first cell differs
    .venv/bin/python scripts/setup_cell.py --write    # rewrite those cells (source and the
                                                      # hide-input tag only; stored outputs stay)

Nothing here imports kqvlib.
"""
from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "hide-input"  # Jupyter Book collapses the cell's code in the HTML
HEADER = """\
# @title Setup (the same first cell in every chapter) { display-mode: "form" }
# Installs kqvlib where it is missing (Colab, Kaggle, a downloaded notebook).
"""


def kqv_setup(repository, tag):
    import importlib.util, subprocess, sys
    spec = f"kqvlib[notebooks] @ git+{repository}@{tag}"
    if importlib.util.find_spec("kqvlib") is None:
        print(f"Installing kqvlib {tag} from {repository} ...", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-color", spec]
        pip = subprocess.run(pip, capture_output=True, text=True)
        importlib.invalidate_caches()
    if importlib.util.find_spec("kqvlib") is None:  # say what failed and what to run
        said = [s.strip() for s in pip.stderr.splitlines()]
        why = [s for s in said if s.startswith(("fatal:", "ERROR:"))][:2]
        print(f"KQV setup could not install kqvlib {tag} from {repository}:", *why,
              f'Run this in a cell, then this cell again:  %pip install "{spec}"',
              f'or in a terminal:  "{sys.executable}" -m pip install "{spec}"',
              f"or run the book locally: git clone --branch {tag} {repository} kqv && "
              "cd kqv && make lab", sep="\n    ")

        class KQVSetupError(ImportError):
            _render_traceback_ = lambda self: [f"KQVSetupError: {self}"]  # one line
        raise KQVSetupError("kqvlib is not installed (the message above says why)")


def config(root: Path = ROOT) -> tuple[str, str]:
    """(repository address, release tag) from _config.yml: the one place they are written."""
    import yaml

    repo = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    return repo["url"], repo["branch"]


def cell_source(repository: str | None = None, tag: str | None = None) -> str:
    """The text of the setup cell, for `repository` at `tag` (default: what _config.yml says)."""
    if repository is None or tag is None:
        url, branch = config()
        repository, tag = repository or url, tag or branch
    return (HEADER + inspect.getsource(kqv_setup) + "\n\n"
            + f"kqv_setup({json.dumps(repository)}, {json.dumps(tag)})\n"
            + "import kqvlib\n\nkqvlib.seed_everything(0)")


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def first_code_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def is_current(nb: dict, source: str) -> bool:
    cell = first_code_cell(nb)
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return src == source and TAG in cell.get("metadata", {}).get("tags", [])


def write(paths: list[Path], source: str) -> list[Path]:
    """Set the first code cell of each notebook to `source` with the hide-input tag; keep its outputs,
    execution count and other metadata (the cell prints nothing where kqvlib is installed, so the
    stored outputs stay valid). Returns the notebooks that changed."""
    import nbformat

    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if is_current(nb, source):
            continue
        cell = first_code_cell(nb)
        cell["source"] = source
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if TAG not in tags:
            tags.append(TAG)
        nbformat.write(nb, path)
        changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    source = cell_source()
    if not argv:
        print(source)
        return 0
    stale = [p for p in notebooks() if not is_current(json.loads(p.read_text()), source)]
    if argv == ["--check"]:
        for p in stale:
            print(f"{p.relative_to(ROOT)}: first cell is not the setup cell (run with --write)")
        return 1 if stale else 0
    if argv == ["--write"]:
        for p in write(stale, source):
            print(f"rewrote the setup cell of {p.relative_to(ROOT)}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

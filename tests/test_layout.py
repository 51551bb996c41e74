"""kqvlib reads like the table of contents: one module per idea, in book order, each short.

The order below is the book's. A module may import only modules above it (so the import graph has no
cycles); `_common`, `seed`, `plot` and
`checks` are tools any module may use. CONTRIBUTING.md ("Where code goes") describes the same map.
"""
import ast
import inspect
import importlib
import re
from pathlib import Path

import pytest

import kqvlib

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "kqvlib"
EXERCISES = PKG / "exercises"

TOOLS = ["_common", "seed", "plot", "checks"]
IDEAS = ["attention", "multihead", "positions", "block", "tokenizers", "data", "model", "precision", "optim",
         "train", "recipes", "pretrained", "generate", "encdec", "efficient", "interpret", "explorer", "induction",
         "modern"]
ORDER = TOOLS + IDEAS
MAX_LINES = 300


def kqvlib_imports(path: Path) -> set[str]:
    """The kqvlib modules a file imports (first component after ``kqvlib.``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kqvlib"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from kqvlib import x
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kqvlib."):
                    found.add(a.name.split(".")[1])
    return found


def test_every_module_is_on_the_map():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER), f"add new modules to ORDER (and CONTRIBUTING.md): {modules ^ set(ORDER)}"


@pytest.mark.parametrize("name", ORDER)
def test_imports_run_from_later_ideas_to_earlier_ones(name):
    earlier = set(ORDER[: ORDER.index(name)])
    if name in TOOLS:
        earlier = {"_common"} if name != "_common" else set()
    bad = kqvlib_imports(PKG / f"{name}.py") - earlier
    assert not bad, f"kqvlib/{name}.py imports {sorted(bad)}, which come later in the book (or are not tools)"


def exercise_files() -> list[tuple[int, Path]]:
    """(chapter, file) for every checker module: a module exercises/chNN.py, or every .py of a chapter package
    exercises/chNN/ (its __init__ and the modules it is split into), all of them chapter NN."""
    flat = [(int(p.stem[2:]), p) for p in EXERCISES.glob("ch*.py")]
    packaged = [(int(p.relative_to(EXERCISES).parts[0][2:]), p) for p in EXERCISES.glob("ch*/**/*.py")]
    return sorted(flat + packaged, key=lambda cp: (cp[0], str(cp[1])))


def resolved_imports(path: Path) -> list[list[str]]:
    """Every name a file imports, as its full dotted path split into parts (``from a.b import c`` gives
    [a, b, c]), relative imports resolved from the file's own package."""
    package = list(path.relative_to(ROOT).parent.parts)  # e.g. [kqvlib, exercises, ch05]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            found += [module + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name.split(".") for a in node.names]
    return found


def test_exercises_import_only_the_library_and_earlier_chapters():
    """A chapter's checkers may use the library and the checkers of earlier chapters, never later ones. A
    chapter split into a package (exercises/chNN/*.py) counts as one chapter, whose modules may import each
    other."""
    files = exercise_files()
    assert files, "no exercise checkers found"
    both = sorted(p.stem for p in EXERCISES.glob("ch*.py") if (EXERCISES / p.stem).is_dir())
    assert not both, f"{both}: a chapter is a module chNN.py or a package chNN/, not both"
    for chapter, path in files:
        name = path.relative_to(EXERCISES)
        imports = resolved_imports(path)
        kqvlib_modules = kqvlib_imports(path) | {p[1] for p in imports if p[0] == "kqvlib" and len(p) > 1}
        unknown = kqvlib_modules - set(ORDER) - {"exercises"}
        assert not unknown, f"{name} imports {sorted(unknown)}, which are not kqvlib modules"
        chapters = [int(c) for c in re.findall(r"kqvlib\.exercises(?:\.| import )ch(\d+)", path.read_text())]
        chapters += [int(p[2][2:]) for p in imports
                     if p[:2] == ["kqvlib", "exercises"] and len(p) > 2 and re.fullmatch(r"ch\d+", p[2])]
        own_package = path.parent != EXERCISES  # exercises/chNN/…: the chapter's modules import each other
        later = sorted({c for c in chapters if c > chapter or (c == chapter and not own_package)})
        assert not later, f"{name} imports the checkers of chapter(s) {later}, not earlier ones"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it"


@pytest.mark.parametrize("name", [n for n in ORDER if n not in ("_common", "checks")])
def test_every_public_name_says_which_chapter_builds_it(name):
    mod = importlib.import_module(f"kqvlib.{name}")
    for attr, obj in vars(mod).items():
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if obj.__module__ != mod.__name__:
            continue  # imported from elsewhere
        doc = inspect.getdoc(obj) or ""
        assert re.search(r"chapter \d+", doc), f"kqvlib.{name}.{attr}: its docstring must say which chapter builds it"


def test_all_lists_what_exists():
    assert len(kqvlib.__all__) == len(set(kqvlib.__all__))
    for name in kqvlib.__all__:
        assert hasattr(kqvlib, name), f"kqvlib.__all__ names {name}, which kqvlib does not have"


def test_readme_and_contributing_list_every_module():
    for doc in ("README.md", "CONTRIBUTING.md"):
        text = (ROOT / doc).read_text()
        for name in IDEAS:
            assert f"{name}.py" in text, f"{doc} does not mention kqvlib/{name}.py"


def test_every_checker_has_one_signature():
    """check_xxx(fn, *, seed=None, quiet=False) in every chapter."""
    import pkgutil

    import kqvlib.exercises as ex

    names = [m.name for m in pkgutil.iter_modules(ex.__path__) if m.name.startswith("ch")]
    assert names
    for name in names:
        mod = importlib.import_module(f"kqvlib.exercises.{name}")
        checkers = [getattr(mod, a) for a in dir(mod) if a.startswith("check_")]
        assert checkers, f"kqvlib.exercises.{name} has no checker"
        for fn in checkers:
            params = list(inspect.signature(fn).parameters.values())
            shape = [(p.name, p.kind, p.default) for p in params]
            assert shape == [("fn", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
                             ("seed", inspect.Parameter.KEYWORD_ONLY, None),
                             ("quiet", inspect.Parameter.KEYWORD_ONLY, False)], \
                f"kqvlib.exercises.{name}.{fn.__name__}{inspect.signature(fn)}: use (fn, *, seed=None, quiet=False)"

"""The instructor switch: `hide_solutions: true` leaves out whole gated answers (`_ext/kqv_solutions.py`),
code included, and the exercise's link to its answer becomes plain text. A two-page Sphinx project, built
twice in a temporary folder (a few seconds); the book's own pages are built by `make test`'s build step."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHAPTER = """# Chapter

```{exercise} Add
:label: ex-add

Write `add(a, b)`.

→ {ref}`Solution <sol-add>`
```
"""

SOLUTIONS = """# Solutions

## Add

```{solution-start} ex-add
:label: sol-add
:class: dropdown
```

The ANSWER-TEXT:

```python
def add(a, b):
    return a + b  # ANSWER-CODE
```

```{solution-end}
```

## After the answers

STILL-HERE
"""


def build(tmp_path: Path, hide: bool) -> tuple[str, str, list[str]]:
    from sphinx.application import Sphinx

    src = tmp_path / ("hidden" if hide else "shown")
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / '_ext')!r})\n"
        "extensions = ['myst_parser', 'sphinx_exercise', 'kqv_solutions']\n"
        f"hide_solutions = {hide}\nsuppress_warnings = ['ref.ref']\n")
    (src / "index.md").write_text("# Book\n\n```{toctree}\nchapter\nsolutions\n```\n")
    (src / "chapter.md").write_text(CHAPTER)
    (src / "solutions.md").write_text(SOLUTIONS)
    warnings = []

    class Collect:
        def write(self, text):
            warnings.append(text)

        def flush(self):
            pass

    app = Sphinx(str(src), str(src), str(src / "_build"), str(src / "_build" / ".doctrees"), "html",
                 status=None, warning=Collect(), freshenv=True)
    app.build()
    out = src / "_build"
    # A second Sphinx in one process re-registers docutils' nodes and directives: not the book's business.
    warnings = [w for w in warnings if w.strip() and "is already registered" not in w]
    return (out / "chapter.html").read_text(), (out / "solutions.html").read_text(), warnings


@pytest.fixture(autouse=True)
def _keep_sys_path():
    saved = list(sys.path)
    yield
    sys.path[:] = saved


def test_answers_are_folded_into_the_solution(tmp_path):
    chapter, solutions, warnings = build(tmp_path, hide=False)
    assert not warnings, warnings
    assert 'href="solutions.html#sol-add"' in chapter
    start = solutions.index('id="sol-add"')
    assert 'class="solution dropdown' in solutions[start - 80:start]
    answer = solutions[start:solutions.index("After the answers")]
    assert "ANSWER-TEXT" in answer and "ANSWER-CODE" in answer


def test_the_instructor_switch_leaves_out_whole_gated_answers(tmp_path):
    chapter, solutions, warnings = build(tmp_path, hide=True)
    assert "ANSWER-TEXT" not in solutions and "ANSWER-CODE" not in solutions
    assert "STILL-HERE" in solutions and "sol-add" not in solutions
    assert "Solution" in chapter and 'href="solutions.html#sol-add"' not in chapter
    assert not warnings, warnings  # the link's "undefined label" is suppressed (ref.ref), as in the docs

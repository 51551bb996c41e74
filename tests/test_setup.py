"""The setup cell every notebook starts with (scripts/setup_cell.py).

Fast checks run the cell's function in this process. The slow one runs the real setup path, as a
reader on Colab meets it: a fresh virtual environment without kqvlib, a Jupyter kernel in it with a
fake ``google.colab`` already imported, and the cell with the repository address pointed at a local
``file://`` clone (tagged like the release). The cell must install kqvlib and import it; run again,
it must print nothing; with a bad address it must print one clear message and show no traceback.

The fresh environment sees this checkout's .venv packages (torch, IPython, ...) but not kqvlib, so pip
only has to build and install kqvlib itself (and fetch setuptools to build it). It is isolated from the
caller's environment: its processes run without PYTHONPATH (and PYTHONHOME, PYTHONSTARTUP, PYTHONUSERBASE),
so a PYTHONPATH that points at this checkout cannot make kqvlib importable there. Without git, venv or
a package index that test is skipped, saying why; with CI=true it fails instead.
"""
import importlib.util
import json
import re
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("setup_cell", ROOT / "scripts" / "setup_cell.py")
setup_cell = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup_cell)

URL, TAG = setup_cell.config()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PIP_GIT_FAILURE = """\
  error: subprocess-exited-with-error

  × git clone --filter=blob:none --quiet https://example.org/nowhere /tmp/pip-install-x/kqvlib
  │ exit code: 128
  ╰─> [1 lines of output]
      fatal: unable to access 'https://example.org/nowhere/': Could not resolve host: example.org
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
ERROR: Failed to build 'kqvlib' when git clone --filter=blob:none --quiet https://example.org/nowhere
"""


# Variables that would let the caller's Python setup leak into the fresh environment.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


def fresh_env(**extra: str) -> dict[str, str]:
    """os.environ without the variables that point Python at other packages, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k not in LEAKY}, **extra}


def _unavailable(why: str):
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


# --- the cell's text --------------------------------------------------------------------------------

def test_the_cell_is_written_from_config_yml():
    src = setup_cell.cell_source()
    assert src.count(URL) == 1 and src.count(f'"{TAG}"') == 1, "the address and tag appear once, in the call"
    assert TAG.startswith("v"), "_config.yml's repository.branch is the release tag (vX.Y.Z)"
    assert "import kqvlib\n" in src and src.endswith("kqvlib.seed_everything(0)")
    compile(src, "<setup cell>", "exec")  # plain Python: no %pip magic, so it runs anywhere


def test_the_cell_fits_the_page():
    long = [line for line in setup_cell.cell_source().splitlines() if len(line) > 88]
    assert not long, f"setup cell lines over 88 characters: {long}"


def test_the_cell_prints_nothing_where_kqvlib_is_installed(monkeypatch, capfd):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    exec(compile(setup_cell.cell_source(), "<setup cell>", "exec"), {})
    assert capfd.readouterr() == ("", "")


def test_a_failed_install_says_what_failed_and_what_to_run(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kqvlib" else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", PIP_GIT_FAILURE))
    with pytest.raises(ImportError) as e:
        setup_cell.kqv_setup("https://example.org/nowhere", "v9.9.9")
    out = capsys.readouterr().out
    spec = "kqvlib[notebooks] @ git+https://example.org/nowhere@v9.9.9"
    assert "could not install kqvlib v9.9.9 from https://example.org/nowhere" in out
    assert "fatal: unable to access 'https://example.org/nowhere/': Could not resolve host" in out
    assert f'%pip install "{spec}"' in out
    assert f'"{sys.executable}" -m pip install "{spec}"' in out
    assert "git clone --branch v9.9.9 https://example.org/nowhere kqv && cd kqv && make lab" in out
    assert "subprocess-exited-with-error" not in out  # pip's noise is left out
    # IPython shows _render_traceback_() instead of a traceback: one short line.
    assert e.value._render_traceback_() == [f"KQVSetupError: {e.value}"] and len(str(e.value)) < 80


def test_write_changes_only_the_first_cell(tmp_path):
    nb_path = tmp_path / "nb.ipynb"
    nb = json.loads((ROOT / "book" / "02_softmax.ipynb").read_text())
    # An out-of-date first cell (as in a new notebook, or after the address or tag changed):
    setup_cell.first_code_cell(nb)["source"] = ["import kqvlib\n", "kqvlib.seed_everything(0)"]
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    before = json.loads(nb_path.read_text())
    src = setup_cell.cell_source()
    assert setup_cell.write([nb_path], src) == [nb_path]
    after = json.loads(nb_path.read_text())
    first = setup_cell.first_code_cell(after)
    assert "".join(first["source"]) == src and "hide-input" in first["metadata"]["tags"]
    old_first = setup_cell.first_code_cell(before)
    assert first["outputs"] == old_first["outputs"] and first["execution_count"] == old_first["execution_count"]
    i = after["cells"].index(first)
    assert after["cells"][:i] + after["cells"][i + 1:] == before["cells"][:i] + before["cells"][i + 1:]
    assert after["metadata"] == before["metadata"]
    assert setup_cell.write([nb_path], src) == []  # already current: untouched


# --- the real setup path ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A virtual environment without kqvlib whose Python sees this .venv's other packages, a kernel
    spec for it (with a fake google.colab on its path), and a file:// clone of this repository with
    the release tag."""
    if shutil.which("git") is None:
        _unavailable("git is not installed: pip installs kqvlib from a git repository")
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True,
                          env=fresh_env())
    if made.returncode:
        _unavailable(f"cannot create a virtual environment: {made.stderr.strip()}")
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True, env=fresh_env()).strip())
    # Everything installed here except kqvlib (and .pth hooks such as its editable finder).
    deps = tmp / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not (entry.name.startswith(("kqvlib", "__editable__", "_distutils_hack")) or entry.suffix == ".pth"
                or entry.name == "__pycache__"):
            (deps / entry.name).symlink_to(entry)
    (site / "kqv-test-deps.pth").write_text(f"{deps}\n")
    assert subprocess.run([str(python), "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('kqvlib') is not None)"],
                          cwd=tmp, env=fresh_env()).returncode == 0, "the fresh environment must not see kqvlib"
    clone = tmp / "kqv"
    subprocess.run(["git", "clone", "-q", ROOT.as_uri(), str(clone)], check=True, env=fresh_env())
    if not subprocess.run(["git", "-C", str(clone), "rev-parse", "-q", "--verify", f"refs/tags/{TAG}"],
                          capture_output=True).stdout:
        subprocess.run(["git", "-C", str(clone), "tag", TAG], check=True)
    # pip builds kqvlib in an isolated environment: its build requirements come from a package index.
    import tomllib

    build = tomllib.loads((clone / "pyproject.toml").read_text())["build-system"]["requires"]
    got = subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp / "dl"), *build],
                         capture_output=True, text=True, cwd=tmp, env=fresh_env())
    if got.returncode:
        _unavailable(f"pip cannot reach a package index for {build} (to build kqvlib): {got.stderr.strip()[-300:]}")

    fake = tmp / "fake-colab"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
    kernels = tmp / "kernels"
    (kernels / "fresh").mkdir(parents=True)
    (kernels / "fresh" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv without kqvlib", "language": "python",
        "env": {"PYTHONPATH": str(fake), "MPLBACKEND": "agg"},
    }))
    return {"venv": venv, "site": site, "clone": clone, "kernels": kernels, "tmp": tmp}


def run_in_kernel(fresh, *sources: str):
    """Execute cells in a Jupyter kernel of the fresh environment, as Colab would; returns the cells."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    km = KernelManager(kernel_name="fresh", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(fresh["kernels"])]))
    # The kernel starts from os.environ with the spec's env on top (PYTHONPATH = the fake google.colab only);
    # the other leaky variables are removed for the kernel's lifetime.
    with pytest.MonkeyPatch.context() as mp:
        for name in LEAKY[1:]:
            mp.delenv(name, raising=False)
        NotebookClient(nb, km=km, timeout=300, allow_errors=True,
                       resources={"metadata": {"path": str(fresh["tmp"])}}).execute()
    return nb.cells


def text(cell, name="stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_fresh_env_drops_the_callers_pythonpath(monkeypatch, tmp_path):
    """With PYTHONPATH set by the caller (to a folder holding a kqvlib, say), a process started with
    fresh_env() does not see it."""
    (tmp_path / "kqvlib").mkdir()
    (tmp_path / "kqvlib" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = fresh_env(EXTRA="1")
    assert "PYTHONPATH" not in env and env["EXTRA"] == "1" and env["PATH"] == os.environ["PATH"]
    show_path = [sys.executable, "-c", "import sys; print(sys.path)"]
    assert str(tmp_path) in subprocess.check_output(show_path, text=True), "the caller's PYTHONPATH is seen"
    assert str(tmp_path) not in subprocess.check_output(show_path, text=True, env=env)


def test_setup_cell_on_a_fresh_host(fresh):
    # A bad address (run first, while kqvlib is missing): one clear message, no traceback.
    bad = "file:///nonexistent/kqv"
    _, cell = run_in_kernel(fresh, "import google.colab", setup_cell.cell_source(bad, TAG))
    out = text(cell)
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert "could not install kqvlib" in out and "fatal: '/nonexistent/kqv' does not appear to be a git repository" in out, out
    assert f'%pip install "kqvlib[notebooks] @ git+{bad}@{TAG}"' in out and f"git clone --branch {TAG} {bad} kqv" in out, out
    assert len(errors) == 1 and errors[0].ename == "KQVSetupError", cell.outputs
    assert errors[0].traceback == [f"KQVSetupError: {errors[0].evalue}"], "no traceback, one readable line"
    assert not text(cell, "stderr")

    # The address pointed at a local clone: the cell installs kqvlib and imports it; run again, it prints nothing.
    good = fresh["clone"].as_uri()
    cells = run_in_kernel(fresh, "import google.colab", setup_cell.cell_source(good, TAG),
                          setup_cell.cell_source(good, TAG), "print(kqvlib.__file__)")
    install, again, where = cells[1:]
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"], [c.outputs for c in cells]
    assert text(install) == f"Installing kqvlib {TAG} from {good} ...\n" and not text(install, "stderr")
    assert again.outputs == [], "with kqvlib installed the cell prints nothing (the stored outputs stay valid)"
    assert text(where).strip().startswith(str(fresh["site"] / "kqvlib")), text(where)


# --- what the environments claim ------------------------------------------------------------------

def _pins(path: Path) -> dict[str, str]:
    """name -> version for each `name==version` line of a requirements file."""
    from packaging.requirements import Requirement

    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith(("-", ".")):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: pin {line} exactly"
            pins[req.name.lower()] = spec.version
    return pins


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pyproject_claims_what_the_pinned_toolchain_satisfies():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project, pins = _pyproject(), _pins(ROOT / "requirements.txt")
    for line in project["dependencies"] + project["optional-dependencies"]["notebooks"]:
        req = Requirement(line)
        assert req.name.lower() in pins, f"requirements.txt does not pin {req.name}"
        assert pins[req.name.lower()] in req.specifier, f"requirements.txt's {req.name}=={pins[req.name.lower()]} breaks {line}"
    py = ".".join(map(str, sys.version_info[:2]))
    assert py in SpecifierSet(project["requires-python"]), f"this Python ({py}) is outside requires-python"
    uses_muon = any("torch.optim.Muon" in p.read_text() for p in (ROOT / "kqvlib").rglob("*.py"))
    torch_req = next(Requirement(d) for d in project["dependencies"] if d.startswith("torch"))
    if uses_muon:
        assert "2.8" not in torch_req.specifier and "2.9" in torch_req.specifier, "torch.optim.Muon exists from 2.9"


def test_binder_installs_the_notebooks_needs_only_on_cpu_torch():
    binder, pins = _pins(ROOT / "binder" / "requirements.txt"), _pins(ROOT / "requirements.txt")
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert binder["torch"] == pins["torch"] + "+cpu" and "download.pytorch.org/whl/cpu" in text
    for name, version in binder.items():
        assert version.split("+")[0] == pins[name], f"binder pins {name}=={version}, requirements.txt {pins[name]}"
    project = _pyproject()
    from packaging.requirements import Requirement

    needed = {Requirement(d).name.lower() for d in project["dependencies"] + project["optional-dependencies"]["notebooks"]}
    assert set(binder) == needed, f"binder should pin exactly kqvlib's and the notebooks' needs: {needed}"
    assert re.search(r"^-e \.$", text, re.M), "binder installs kqvlib from the checkout"
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"

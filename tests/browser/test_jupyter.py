"""Chapter 14's attention explorer in JupyterLab: a notebook that makes the figure is run in a real JupyterLab
(a local server, Chromium at 1280 and 420 px, every outside request refused), and both controls are used."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .test_explorer import _check, _explore

CELLS = [
    "from kqvlib import pretrained_gpt\nfrom kqvlib.explorer import attention_explorer\nmodel, tok = pretrained_gpt()",
    'attention_explorer(model, tok, "MIRANDA:\\nAlack, what trouble\\nWas I then to you!\\n")',
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.skip("JupyterLab is not installed here")
    root = tmp_path_factory.mktemp("lab")
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
                    for s in CELLS],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (root / "explorer.ipynb").write_text(json.dumps(nb))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a private configuration: every cell drawn (no virtual scrolling), no news toast, a fresh workspace
    settings = root / ".settings"
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false"}}.items():
        f = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".config"), "JUPYTER_RUNTIME_DIR": str(root / ".run"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces")}
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start in 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("width", [1280, 420])
def test_explorer_in_jupyterlab(lab, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    outside = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(lab)
               else (outside.append(route.request.url), route.abort()))
    try:
        page.goto(f"{lab}/lab/tree/explorer.ipynb", wait_until="load")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
        page.wait_for_function("() => window.jupyterapp && jupyterapp.shell.currentWidget"
                               " && jupyterapp.shell.currentWidget.sessionContext", timeout=60000)
        # the side bars closed (at 420 px they would leave the notebook 40 px), then Run > Run All Cells
        page.evaluate("() => { jupyterapp.shell.collapseLeft(); jupyterapp.shell.collapseRight(); }")
        page.wait_for_timeout(500)
        page.evaluate("() => jupyterapp.shell.currentWidget.sessionContext.ready"
                      ".then(() => jupyterapp.commands.execute('notebook:run-all-cells'))")
        page.wait_for_selector(".jp-OutputArea .kqv-explorer .js-plotly-plot .main-svg", timeout=120000)
        try:
            _check(*_explore(page), width)
        except Exception:
            page.screenshot(path=f"/tmp/lab_{width}.png")
            raise
        assert not outside, f"asked the network for {outside}"
    finally:
        page.close()

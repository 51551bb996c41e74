"""Serve _build/html on 127.0.0.1 and drive Debian's Chromium through Playwright."""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "tests" / "screenshots"
# Every page of the built book (redirect stubs included; tests skip those themselves).
PAGES = sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html") if "_static" not in p.parts) if HTML.is_dir() else []
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]


def chromium_path() -> str | None:
    for p in (os.environ.get("KQV_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium")):
        if p and Path(p).is_file():
            return p
    return None


def _missing(what: str):
    """In CI a missing browser or book is a failure; on a laptop it is a skip with instructions."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def site():
    if not (HTML / "index.html").is_file():
        _missing(f"no built book at {HTML}: run `make book` first")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    if exe is None:
        _missing("Chromium not found (apt-get install chromium, or set KQV_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        # Real scroll bars (Playwright hides them in headless mode): the layout test checks that a reader
        # can see one wherever a code block scrolls sideways.
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
                               ignore_default_args=["--hide-scrollbars"])
        yield b
        b.close()


def is_redirect(page_path: str) -> bool:
    """The root index.html is a redirect stub, not a page."""
    return 'http-equiv="Refresh"' in (HTML / page_path).read_text(errors="replace")


def open_page(browser, site: str, page_path: str, width: int, height: int = 900):
    """A page of the book at the given window width, with every request outside the local server refused."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(site) else route.continue_())
    page.goto(f"{site}/{page_path}", wait_until="load")
    return page

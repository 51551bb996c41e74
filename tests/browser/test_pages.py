"""Open every page of the built book in headless Chromium.

Each page must: typeset its math (no raw TeX left), raise no JavaScript errors (beyond ALLOWED_ERRORS),
fail no request to the local server, and have every internal link and image resolve.
A failing page's screenshot is saved in tests/screenshots/.
"""
import re
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from .conftest import HTML, PAGES, SCREENSHOTS

# Page errors we accept, as regexes, each with the reason. Keep this short.
ALLOWED_ERRORS: list[tuple[str, str]] = [
    (r"Identifier 'THEBE_JS_URL' has already been declared",
     "Jupyter Book 1 (sphinx-thebe 0.3.1 with sphinx-book-theme 1.3) writes thebe's config script twice on "
     "notebook pages; the second copy fails harmlessly. The book does not use thebe (live code on the page)."),
]


def _ids(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def test_the_book_was_built():
    assert PAGES, f"no HTML pages under {HTML}: run `make book`"


@pytest.mark.parametrize("page_path", PAGES)
def test_page(site, browser, page_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, failed, external = [], [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})") if r.url.startswith(site) else None)
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.url.startswith(site) and r.status >= 400 else None)
    # The book must work offline: answer every outside request with an error, and note it.
    page.route(re.compile(r"^(?!" + re.escape(site) + ")https?://.*"), lambda route: (external.append(route.request.url), route.abort()))
    problems = []
    source = (HTML / page_path).read_text(errors="replace")
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', source)
    if redirect:  # a redirect stub (the root index.html): its target must exist
        page.close()
        assert ((HTML / page_path).parent / redirect.group(1)).is_file(), f"{page_path} redirects to a missing page"
        return
    try:
        page.goto(f"{site}/{page_path}", wait_until="load")
        if page.locator(".math").count():
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=15000)
            page.evaluate("() => MathJax.startup.promise")
            raw = page.evaluate(r"""() => [...document.querySelectorAll('.math')]
                .filter(e => !e.querySelector('mjx-container') && /\\\(|\\\[|\$\$|\\frac|\\sum/.test(e.textContent))
                .map(e => e.textContent.slice(0, 60))""")
            if raw:
                problems.append(f"math not typeset: {raw[:3]}")
            if not page.locator("mjx-container").count():
                problems.append("page has math but MathJax rendered nothing")
        broken_imgs = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
        if broken_imgs:
            problems.append(f"images that did not load: {broken_imgs}")
        here = HTML / page_path
        for href in page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"):
            if not href.startswith(site):
                continue
            url, frag = urldefrag(href)
            target = HTML / unquote(urlparse(url).path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"broken link {href}")
            elif frag and target.suffix == ".html" and unquote(frag) not in _ids(target):
                problems.append(f"link to a missing anchor {href}")
        unexpected = [e for e in errors if not any(re.search(p, e) for p, _ in ALLOWED_ERRORS)]
        if unexpected:
            problems.append(f"JavaScript errors: {unexpected}")
        if failed:
            problems.append(f"failed local requests: {failed}")
        if problems:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / (page_path.replace("/", "__") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            problems.append(f"screenshot: {shot}")
        assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)
    finally:
        page.close()

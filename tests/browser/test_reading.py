"""What a reader does on the page: open what is hidden, move the temperature figure's control, follow an
exercise to its solution.

- Hidden content (a `hide-input` / `hide-output` cell, a dropdown, a solution) is hidden at first and
  shows when its toggle is clicked; the shared setup cell's code is hidden once it is the new cell.
- Chapter 2's temperature figure responds to its control without a kernel (a slider or a video): the
  chapter draws it with `kqvlib.plot.bar_slider`, precomputed frames behind a range input.
- Every exercise links to its solution, and the link lands on a sphinx-exercise solution, except on the
  pages listed in CHAPTERS_BEING_WRITTEN (a chapter whose solutions are not linked yet); a page on that
  list whose exercises are all linked fails the test, so the list cannot go stale.
"""
import html.parser
import re
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

from .conftest import HTML, PAGES, SCREENSHOTS, is_redirect, open_page

NOTEBOOK_PAGES = [p for p in PAGES if (HTML / p).is_file() and 'class="cell' in (HTML / p).read_text(errors="replace")]

# Hidden things in the article, each with how to open it and what must then be visible.
HIDDEN_JS = r"""() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const shown = el => !!el && el.checkVisibility({visibilityProperty: true}) && el.getClientRects().length > 0;
  const items = [];
  article.querySelectorAll('details').forEach((d, i) => {
    if (d.open) return;
    d.dataset.kqvHidden = `details-${i}`;
    const body = [...d.children].find(c => c.tagName !== 'SUMMARY');
    items.push({key: d.dataset.kqvHidden, kind: 'details', label: (d.querySelector('summary') || d).textContent.trim().slice(0, 40),
                hidden_before: !shown(body)});
  });
  article.querySelectorAll('.toggle-hidden').forEach((t, i) => {
    t.dataset.kqvHidden = `toggle-${i}`;
    const body = [...t.children].find(c => !c.classList.contains('admonition-title') && c.tagName !== 'BUTTON');
    items.push({key: t.dataset.kqvHidden, kind: 'toggle', label: t.textContent.trim().slice(0, 40),
                hidden_before: !shown(body)});
  });
  return items;
}"""

SHOWN_AFTER_CLICK_JS = r"""key => {
  const el = document.querySelector(`[data-kqv-hidden="${key}"]`);
  const shown = e => !!e && e.checkVisibility({visibilityProperty: true}) && e.getClientRects().length > 0;
  const body = el.tagName === 'DETAILS' ? [...el.children].find(c => c.tagName !== 'SUMMARY')
             : [...el.children].find(c => !c.classList.contains('admonition-title') && c.tagName !== 'BUTTON');
  return shown(body) && (el.tagName !== 'DETAILS' || el.open);
}"""


@pytest.mark.parametrize("page_path", NOTEBOOK_PAGES or ["(no book)"])
def test_hidden_content_opens_on_click(site, browser, page_path):
    if page_path == "(no book)" or is_redirect(page_path):
        pytest.skip("no notebook pages")
    page = open_page(browser, site, page_path, 1280)
    try:
        problems = []
        first = page.locator("article .cell").first
        if "kqv_setup(" in first.inner_text() or first.locator("details").count():
            # The new setup cell: its code is collapsed (hide-input) until clicked.
            if not first.evaluate("c => c.classList.contains('tag_hide-input') && !!c.querySelector('details:not([open])')"):
                problems.append("the setup cell's code is not hidden (tag it hide-input)")
        for item in page.evaluate(HIDDEN_JS):
            el = page.locator(f'[data-kqv-hidden="{item["key"]}"]')
            if not item["hidden_before"]:
                problems.append(f"{item['kind']} '{item['label']}' is not hidden before a click")
                continue
            el.scroll_into_view_if_needed()
            if item["kind"] == "details":
                el.locator("summary").first.click()
            else:
                el.locator("button.toggle-button").first.click()
            try:
                page.wait_for_function(SHOWN_AFTER_CLICK_JS, arg=item["key"], timeout=3000)
            except Exception:
                problems.append(f"{item['kind']} '{item['label']}' did not open on click")
        assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)
    finally:
        page.close()


def test_temperature_figure_responds_to_its_control(site, browser):
    page = open_page(browser, site, "book/02_softmax.html", 1280)
    try:
        slider = page.locator("div.cell_output input[type=range]")
        video = page.locator("div.cell_output video")
        assert slider.count() or video.count(), (
            "chapter 2's temperature figure has no control that works without a kernel (a range input or a video)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if slider.count():
            control = slider.first
            output = control.locator("xpath=ancestor::div[contains(@class, 'cell_output')][1]")
            control.scroll_into_view_if_needed()
            before = output.screenshot(path=str(SCREENSHOTS / "chapter2-temperature-before.png"))
            low, high, value = (control.evaluate(f"e => e.{a}") for a in ("min", "max", "value"))
            control.fill(high if value != high else low)
            page.wait_for_timeout(500)
            after = output.screenshot(path=str(SCREENSHOTS / "chapter2-temperature-after.png"))
            assert before != after, "moving the temperature slider did not change the figure"
        else:
            clip = video.first
            clip.scroll_into_view_if_needed()
            clip.evaluate("v => { v.muted = true; return v.play(); }")
            page.wait_for_timeout(1500)
            assert clip.evaluate("v => v.currentTime") > 0, "the temperature animation does not play"
    finally:
        page.close()


class _Ids(html.parser.HTMLParser):
    """id -> class attribute of every element of a page."""

    def __init__(self):
        super().__init__()
        self.classes: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.classes[a["id"]] = a.get("class") or ""


def _classes_by_id(path) -> dict[str, str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return parser.classes


class _Exercises(html.parser.HTMLParser):
    """(exercise id, [hrefs of the links inside it]) for each sphinx-exercise exercise on a page."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, list[str]]] = []
        self._depth = 0  # depth of <div> inside the current exercise (0: not in one)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            if self._depth:
                self._depth += 1
            elif "exercise" in (a.get("class") or "").split():
                self.found.append((a.get("id", "?"), []))
                self._depth = 1
        elif tag == "a" and self._depth and a.get("href"):
            self.found[-1][1].append(a["href"])

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1


def _solution_links(page_path: str) -> list[tuple[str, list[str]]]:
    """For each exercise on the page: its id and the links in it that land on a sphinx-exercise solution."""
    parser = _Exercises()
    parser.feed((HTML / page_path).read_text(errors="replace"))
    out = []
    for ex_id, hrefs in parser.found:
        good = []
        for href in hrefs:
            url, frag = urldefrag(urljoin(f"http://book/{page_path}", href))
            target = HTML / unquote(urlparse(url).path).lstrip("/")
            if frag and url.startswith("http://book/") and target.is_file():
                if "solution" in _classes_by_id(target).get(unquote(frag), "").split():
                    good.append(f"{target.relative_to(HTML)}#{frag}")
        out.append((ex_id, good))
    return out


# Chapters still being written, whose exercises may not link to their solutions yet. Take a chapter off the
# list when its exercises are linked (the test says so).
CHAPTERS_BEING_WRITTEN: set[str] = set()


def test_each_exercise_links_to_its_solution(site, browser):
    exercises = {(p, ex): links for p in PAGES if not is_redirect(p) for ex, links in _solution_links(p)}
    if not exercises:
        pytest.skip("the book has no exercises")
    linked = {k: v for k, v in exercises.items() if v}
    done = sorted({p for (p, _), links in exercises.items() if p in CHAPTERS_BEING_WRITTEN}
                  - {p for (p, _), links in exercises.items() if not links})
    assert not done, f"{done}: every exercise links to its solution now; take it off CHAPTERS_BEING_WRITTEN"
    missing = [f"{p}#{ex}" for (p, ex), links in exercises.items() if not links and p not in CHAPTERS_BEING_WRITTEN]
    assert not missing, f"{len(missing)} exercises do not link to a sphinx-exercise solution:\n  " + "\n  ".join(missing)
    assert linked, "no exercise links to a solution"
    # Follow one link in the browser: it lands on the solution, which opens on a click.
    (page_path, ex), links = next(iter(linked.items()))
    page = open_page(browser, site, page_path, 1280)
    try:
        page.locator(f'[id="{ex}"] a[href*="#{links[0].split("#")[1]}"]').first.click()
        page.wait_for_load_state("load")
        target = page.locator(f'[id="{links[0].split("#")[1]}"]')
        assert target.count() == 1 and re.search(r"\bsolution\b", target.get_attribute("class"))
        button = target.locator("button.toggle-button")
        if button.count():
            button.first.click()
        target.locator("section, p").last.wait_for(state="visible", timeout=3000)
    finally:
        page.close()

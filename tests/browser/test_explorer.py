"""Chapter 14's attention explorer in Chromium, at a desktop width and a phone width, with the network cut.

In the built book and as a bare notebook output (what Jupyter and Colab show): the figure draws, the head
menu and the query slider change what is shown, hovering shows a number, and no request leaves the page.
"""
import json
import re

import pytest

from .conftest import CHROMIUM_FLAGS, HTML, ROOT, open_page  # noqa: F401  (CHROMIUM_FLAGS: same browser)

PAGE = "book/14_inside_gpt.html"
FACTS = json.loads((ROOT / "kqvlib" / "static" / "plotly-heatmap.json").read_text())

STATE = """() => {
  const gd = document.querySelector('.kqv-explorer .js-plotly-plot');
  const images = [...gd.querySelectorAll('g.hm image')].map(i => i.getAttribute('href') || i.getAttribute('xlink:href'));
  const box = gd.getBoundingClientRect();
  return {
    version: Plotly.version,
    // plotly.js's own check of the figure. Not counted: attributes of hidden traces ('unused'), the menu's and
    // slider's arguments ('dynamic': checked below by using them), and the shared colour axis, which validate
    // does not resolve (coloraxis is checked on the drawn figure instead).
    invalid: (Plotly.validate(gd.data, gd.layout) || [])
      .filter(e => e.code !== 'unused' && e.code !== 'dynamic' && e.astr !== 'coloraxis').map(e => e.msg),
    shared: gd._fullData.filter(t => t.visible === true).every(t => t.coloraxis === 'coloraxis')
      && gd._fullLayout.coloraxis.cmax === 100,
    visible: gd._fullData.filter(t => t.visible === true).map(t => t.name),
    menu: gd.querySelector('.updatemenu-header .updatemenu-item-text').textContent,
    query: gd.querySelector('.slider-label').textContent,
    active: gd.layout.sliders[0].active,
    outline: [gd.layout.shapes[0].x0, gd.layout.shapes[0].y0, gd.layout.shapes[1].y0],
    images: images,
    left: box.left, right: box.right, width: box.width, viewport: window.innerWidth,
  };
}"""


def _explore(page):
    """Use both controls and the hover; return the states seen and what went wrong."""
    page.wait_for_selector(".kqv-explorer .js-plotly-plot .main-svg", timeout=20000)
    plot = page.locator(".kqv-explorer .js-plotly-plot")
    plot.scroll_into_view_if_needed()
    first = page.evaluate(STATE)

    # the head menu: open it and pick the fourth head
    page.locator(".kqv-explorer .updatemenu-header").click()
    page.locator(".kqv-explorer .updatemenu-dropdown-button").nth(3).click()
    page.wait_for_timeout(300)
    after_menu = page.evaluate(STATE)

    # the query slider: click a quarter of the way along its rail
    rail = page.locator(".kqv-explorer .slider-rail-rect").bounding_box()
    page.mouse.click(rail["x"] + rail["width"] * 0.25, rail["y"] + rail["height"] / 2)
    page.wait_for_timeout(600)
    after_slider = page.evaluate(STATE)

    # hover over the middle of the triangle's lower-left half: a number appears
    drag = page.locator(".kqv-explorer .nsewdrag").nth(1).bounding_box()
    page.mouse.move(drag["x"] + drag["width"] * 0.3, drag["y"] + drag["height"] * 0.8)
    page.wait_for_timeout(300)
    hover = page.locator(".kqv-explorer .hovertext").all_text_contents()
    return first, after_menu, after_slider, hover


def _check(first, after_menu, after_slider, hover, width):
    assert first["version"] == FACTS["plotly.js"]
    assert first["invalid"] == [], f"plotly.js rejects parts of the figure: {first['invalid'][:3]}"
    assert first["shared"], "the two heatmaps do not share one colour scale (0–100%)"
    assert first["visible"] == ["L0H0", "L0H0"] and first["menu"] == "head L0H0"
    assert len(first["images"]) == 2 and all(first["images"]), "the two heatmaps were not drawn"
    assert first["left"] >= 0 and first["right"] <= first["viewport"] + 0.5, f"the figure overflows at {width} px"
    # the menu changes the head, and what is drawn
    assert after_menu["visible"] == ["L1H1", "L1H1"] and after_menu["menu"] == "head L1H1"
    assert after_menu["images"][0] != first["images"][0] and after_menu["images"][1] != first["images"][1]
    # the slider changes the query, the outline, and the passage's colours (for the head the menu chose)
    assert after_slider["active"] != after_menu["active"]
    assert after_slider["query"] != after_menu["query"] and after_slider["outline"] != after_menu["outline"]
    assert after_slider["visible"] == ["L1H1", "L1H1"]
    assert after_slider["images"][0] != after_menu["images"][0]
    assert any(re.search(r"query .* key .*\d+% of the attention", h, re.S) for h in hover), hover


@pytest.mark.parametrize("width", [1280, 420])
def test_explorer_in_the_book(site, browser, width):
    if not (HTML / PAGE).is_file():
        pytest.fail(f"{PAGE} was not built")
    page = open_page(browser, site, PAGE, width)
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.reload(wait_until="load")  # record from the start
        first, after_menu, after_slider, hover = _explore(page)
        _check(first, after_menu, after_slider, hover, width)
        outside = [u for u in requests if not u.startswith(site) and not u.startswith("data:")]
        assert not outside, f"the page asked the network for {outside}"
        assert not [e for e in errors if "THEBE_JS_URL" not in e], errors
    finally:
        page.close()


@pytest.mark.parametrize("width", [1280, 420])
def test_explorer_as_a_notebook_output(browser, width):
    """The stored output alone, as Jupyter or Colab renders it: a page with nothing else and no network."""
    nb = json.loads((ROOT / "book" / "14_inside_gpt.ipynb").read_text())
    html = next("".join(o["data"]["text/html"]) for c in nb["cells"] for o in c.get("outputs", [])
                if "kqv-explorer" in "".join(o.get("data", {}).get("text/html", "")))
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests, errors = [], []
    page.route("**/*", lambda route: (requests.append(route.request.url), route.abort()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.set_content(f'<!doctype html><meta charset="utf-8"><body style="margin:8px">{html}</body>')
        _check(*_explore(page), width)
        assert not requests, f"the output asked the network for {requests}"
        assert not errors, errors
    finally:
        page.close()

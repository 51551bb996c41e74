"""Every page at a laptop's width (1280 px) and a phone's (420 px): no code or output block is wider
than its column unless the reader can get at the rest. Outputs wrap; a code block that does not fit
scrolls sideways with a scroll bar that is drawn (not an overlay that hides); nothing sticks out of the
column. At 1280 px every code cell fits the 88 characters the notebooks' lines are kept to. What a click
reveals (hidden code and outputs, the appendix's solution dropdowns) is opened first and checked too.

Screenshots of chapter 2 at both widths go to tests/screenshots/ on every run, for a human to look at.
"""
import pytest

from .conftest import PAGES, SCREENSHOTS, is_redirect, open_page

WIDTHS = {"laptop": 1280, "phone": 420}
CODE_COLUMNS = 88  # tests/test_notebooks_meta.py keeps code lines within this

# For each code or output block in the article: what a reader could not see. `pre` blocks are the code
# cells, markdown code blocks and outputs; images and tables come from outputs.
OFFENDERS_JS = r"""() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const col = article.getBoundingClientRect();
  const name = el => {
    const cell = el.closest('.cell');
    const where = cell ? `cell ${[...document.querySelectorAll('.cell')].indexOf(cell) + 1}` : 'text';
    return `${where} <${el.tagName.toLowerCase()}> "${el.textContent.trim().slice(0, 50)}"`;
  };
  const out = [];
  for (const el of article.querySelectorAll('pre, div.cell_output img, div.cell_output table, div.cell_output')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || el.closest('details:not([open])')) continue;  // hidden until clicked
    if (r.right > col.right + 1 || r.left < col.left - 1) {
      out.push(`${name(el)} sticks out of the column (${Math.round(r.left)}..${Math.round(r.right)} px, ` +
               `column ${Math.round(col.left)}..${Math.round(col.right)} px)`);
      continue;
    }
    if (el.tagName !== 'PRE' || el.scrollWidth <= el.clientWidth + 1) continue;
    const cs = getComputedStyle(el);
    const bar = el.offsetHeight - el.clientHeight - parseFloat(cs.borderTopWidth) - parseFloat(cs.borderBottomWidth);
    if (el.closest('div.cell_output'))
      out.push(`${name(el)}: an output ${el.scrollWidth - el.clientWidth} px too wide does not wrap`);
    else if (!['auto', 'scroll'].includes(cs.overflowX) || bar < 4)
      out.push(`${name(el)}: code ${el.scrollWidth - el.clientWidth} px too wide, no visible scroll bar`);
  }
  return out;
}"""

# How many characters of the code font fit in the text box of the narrowest code cell shown.
CODE_COLUMNS_JS = r"""() => {
  const widths = [...document.querySelectorAll('div.cell_input pre')].filter(pre => pre.getClientRects().length)
    .map(pre => {
      const probe = document.createElement('span');
      probe.textContent = 'x'.repeat(100);
      pre.appendChild(probe);
      const ch = probe.getBoundingClientRect().width / 100;
      probe.remove();
      const cs = getComputedStyle(pre);
      return (pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) / ch;
    });
  return widths.length ? Math.min(...widths) : null;
}"""


def open_everything(page):
    """Open what a reader opens with a click: <details> (hide-input, hide-output) and togglebutton
    dropdowns (the appendix's solutions)."""
    page.evaluate("() => document.querySelectorAll('article details').forEach(d => { d.open = true; })")
    buttons = page.locator("article .toggle-hidden > button.toggle-button, article .toggle-hidden > .admonition-title button.toggle-button")
    for _ in range(buttons.count()):
        buttons.first.click()


@pytest.mark.parametrize("page_path", PAGES)
def test_code_and_outputs_fit_the_column(site, browser, page_path):
    if is_redirect(page_path):
        pytest.skip("a redirect stub")
    page = open_page(browser, site, page_path, WIDTHS["laptop"])
    problems = []
    try:
        open_everything(page)
        for width in WIDTHS.values():
            page.set_viewport_size({"width": width, "height": 900})
            found = page.evaluate(OFFENDERS_JS)
            if width == WIDTHS["laptop"]:
                columns = page.evaluate(CODE_COLUMNS_JS)
                if columns is not None and columns < CODE_COLUMNS:
                    found.append(f"a code cell shows {columns:.1f} characters per line, not {CODE_COLUMNS}")
            if found:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shot = SCREENSHOTS / f"{page_path.replace('/', '__')}-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                problems += [f"at {width} px: {f}" for f in found] + [f"screenshot: {shot}"]
        assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)
    finally:
        page.close()


@pytest.mark.parametrize("device", WIDTHS)
def test_chapter2_screenshots(site, browser, device):
    """Chapter 2 (the long checker messages, the temperature figure) as a reader sees it, whole."""
    width = WIDTHS[device]
    page = open_page(browser, site, "book/02_softmax.html", width)
    try:
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)", timeout=15000)
        page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
        # A window as tall as the page rather than a full-page capture, which leaves out scroll bars.
        page.set_viewport_size({"width": width, "height": page.evaluate("() => document.documentElement.scrollHeight")})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"chapter2-{width}.png"))
        assert (SCREENSHOTS / f"chapter2-{width}.png").stat().st_size > 10_000
    finally:
        page.close()

"""What a reader sees on chapter 1: typeset math, the figures, and an "open in Colab" launch button.
The screenshot is always saved (tests/screenshots/chapter1.png) for a human to look at."""
from .conftest import SCREENSHOTS


def test_chapter1_page(site, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(site) else route.continue_())
    page.goto(f"{site}/book/01_dot_products.html", wait_until="load")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=15000)
    page.evaluate("() => MathJax.startup.promise")

    assert page.locator("mjx-container").count() >= 5, "typeset formulas expected"
    figures = page.locator(".cell_output img")
    assert figures.count() >= 2
    assert all(figures.nth(i).evaluate("i => i.complete && i.naturalWidth > 100") for i in range(figures.count()))

    colab = page.locator('a[href^="https://colab.research.google.com/github/"]')
    assert colab.count() >= 1 and colab.first.get_attribute("href").endswith("/book/01_dot_products.ipynb")
    # The launch menu opens and shows the Colab entry.
    page.locator(".dropdown-launch-buttons button").first.click()
    colab.first.wait_for(state="visible", timeout=5000)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chapter1.png"))
    page.locator(".cell_output img").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "chapter1-figure.png"))
    page.locator("div.math mjx-container").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "chapter1-math.png"))
    page.close()

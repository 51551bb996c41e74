"""kqvlib.plot: the precomputed bar-chart slider (chapter 2's temperature figure) and the attention heatmap."""
import re

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from kqvlib.plot import attention_heatmap, bar_slider  # noqa: E402

LABELS = ["a", "b", "c"]


def frames(n_stops=5):
    x = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    temps = [0.1 * 3**i for i in range(n_stops)]
    return torch.stack([torch.softmax(x / t, -1) for t in temps]), temps


def test_bar_slider_is_plain_html_that_needs_no_kernel_or_network():
    heights, temps = frames()
    html = bar_slider(heights, temps, LABELS, reference=1 / 3, caption="weights <at> T").data
    assert 'type="range" min="0" max="4" step="1" value="2"' in html  # five stops, the middle one first
    assert "http" not in html and "src=" not in html  # nothing to fetch: works offline
    assert "&lt;at&gt;" in html  # the caption is escaped
    assert html.count('data-kqv="bar"') == 3
    # the first drawing is in the HTML itself (a page without JavaScript still shows a figure)
    shown = [float(v) for v in re.findall(r'data-kqv="value"[^>]*>([0-9.]+)<', html)]
    assert shown == [round(v, 3) for v in heights[2].tolist()]
    assert "T = 0.90</output>" in html


def test_bar_slider_html_is_the_same_on_every_run():
    """nbval compares the stored HTML: no random ids, heights rounded to 3 decimals."""
    heights, temps = frames()
    a = bar_slider(heights, temps, LABELS).data
    b = bar_slider(heights + 1e-12, temps, LABELS).data  # another CPU's last digits
    assert a == b
    other = bar_slider(heights.flip(-1), temps, LABELS).data  # another figure gets another id
    ids = re.findall(r'id="(kqv-bar-slider-[0-9a-f]+)"', a + other)
    assert len(ids) == 2 and ids[0] != ids[1]


def test_bar_slider_checks_shapes():
    heights, temps = frames()
    with pytest.raises(ValueError, match=r"\(5, 2\), got \(5, 3\)"):
        bar_slider(heights, temps, LABELS[:2])


def test_attention_heatmap_checks_labels():
    with pytest.raises(ValueError, match="2 query labels"):
        attention_heatmap(torch.eye(3), ["x", "y"])

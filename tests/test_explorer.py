"""Chapter 14's attention explorer: the embedded plotly.js, the numbers it stores, the figure's controls.
(tests/browser/test_explorer.py uses the figure in Chromium.)"""
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from kqvlib import pretrained_gpt
from kqvlib import explorer as ex
from kqvlib.interpret import capture_attention

PASSAGE = "MIRANDA:\nAlack, what trouble\nWas I then to you!\n"


@pytest.fixture(scope="module")
def ref():
    return pretrained_gpt()


@pytest.fixture(scope="module")
def shown(ref):
    model, tok = ref
    return ex.attention_explorer(model, tok, PASSAGE)


def test_the_bundle_is_the_recorded_one():
    facts = json.loads(ex.PLOTLY_FACTS.read_text())
    data = ex.PLOTLY_JS.read_bytes()
    assert len(data) == facts["bytes"] and hashlib.sha256(data).hexdigest() == facts["sha256"]
    assert f"plotly.js v{facts['plotly.js']} " in data[:200].decode()
    assert b"</script" not in data.lower(), "the bundle would end the <script> it is embedded in"
    assert len(data) < 1_400_000, "the bundle grew: chapter 14's notebook must stay under 2 MB"


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_a_damaged_bundle_is_refused_with_the_way_back(tmp_path, monkeypatch, damage):
    data = bytearray(ex.PLOTLY_JS.read_bytes())
    bad = tmp_path / "plotly-heatmap.min.js"
    if damage == "flip":
        data[1000] ^= 1
        bad.write_bytes(bytes(data))
    elif damage == "truncate":
        bad.write_bytes(bytes(data[:-10]))
    monkeypatch.setattr(ex, "PLOTLY_JS", bad)
    with pytest.raises(ValueError, match=r"missing or changed.*build_plotly\.sh"):
        ex.plotly_js()


def test_the_weights_are_the_models(ref, shown):
    model, tok = ref
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w = shown.weights
    L, H = model.config.n_layer, model.config.n_head
    T = len(PASSAGE)
    assert w.shape == (L, H, T, T) and w.dtype == torch.float64
    with torch.no_grad(), capture_attention(model) as A:
        model(torch.tensor(tok.encode(PASSAGE))[None])
    assert (w - torch.stack([a[0] for a in A]).double()).abs().max() < 1e-5  # float32 vs float64
    assert torch.allclose(w.sum(-1), torch.ones(L, H, T, dtype=torch.float64), atol=1e-12)
    assert (w.triu(1) == 0).all(), "a query sees a later character"
    # the float64 copy leaves the model as it was
    assert all(p.dtype == torch.float32 for p in model.parameters()) and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_figure_stores_every_head_and_query(shown):
    fig, w = shown.figure, shown.weights
    L, H, T, _ = w.shape
    n = L * H
    data = fig["data"]
    assert len(data) == 2 * n and [t["visible"] for t in data] == [i % n == 0 for i in range(2 * n)]
    cells = ex._grid(PASSAGE)
    buttons = fig["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == [f"head L{l}H{h}" for l in range(L) for h in range(H)]
    for i, b in enumerate(buttons):  # each head shows its passage view and its matrix, nothing else
        assert b["args"][0]["visible"] == [j % n == i for j in range(2 * n)]
    steps = fig["layout"]["sliders"][0]["steps"]
    assert len(steps) == T and fig["layout"]["sliders"][0]["active"] == T - 1
    for q in (0, 20, T - 1):
        z_all = steps[q]["args"][0]["z"]
        for i in (0, n - 1):
            l, h = divmod(i, H)
            z = z_all[i]
            for k, (r, c) in enumerate(cells):
                assert z[r][c] == (round(100 * w[l, h, q, k].item()) if k <= q else None)
            matrix = data[n + i]["z"]
            assert matrix[q] == [round(100 * x) for x in w[l, h, q, : q + 1].tolist()]
        r, c = cells[q]
        assert steps[q]["args"][1]["shapes[0].x0"] == c - 0.5 and steps[q]["args"][1]["shapes[0].y0"] == r - 0.5
        assert steps[q]["args"][1]["shapes[1].y0"] == q - 0.5
    assert [s["label"] for s in steps] == [ex.SHOWN.get(c, c) for c in PASSAGE]


def test_the_html_is_self_contained_and_the_same_on_every_run(ref, shown):
    model, tok = ref
    again = ex.attention_explorer(model, tok, PASSAGE)
    assert again.html == shown.html and again.element_id == shown.element_id
    assert shown._repr_html_() == shown.html
    rest = shown.html.replace(ex.plotly_js(), "")
    assert not re.search(r"\bsrc\s*=|https?://|\bfetch\(|import\(", rest), "the figure would reach the network"
    assert shown.html.count(ex.plotly_js()) == 1
    assert repr(shown) == ("AttentionExplorer: 4 layers × 2 heads on a passage of 48 characters "
                           "(a figure: open it in a notebook or the HTML book)")


def test_the_chapter_shows_what_the_library_makes(shown):
    """Chapter 14's stored figure is the one kqvlib makes now (nbval re-runs it too; this names the drift)."""
    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "14_inside_gpt.ipynb").read_text())
    stored = [("".join(o["data"]["text/html"])) for c in nb["cells"] for o in c.get("outputs", [])
              if "kqv-explorer" in "".join(o.get("data", {}).get("text/html", ""))]
    assert stored == [shown.html], "re-run chapter 14 (make notebook NB=book/14_inside_gpt.ipynb)"


def test_a_passage_too_long_for_a_page_is_refused_by_name(ref):
    model, tok = ref
    ex.attention_explorer(model, tok, "a" * ex.MAX_CHARS)
    with pytest.raises(ValueError, match=rf"text must have 2 to {ex.MAX_CHARS} characters, got {ex.MAX_CHARS + 1}"):
        ex.attention_explorer(model, tok, "a" * (ex.MAX_CHARS + 1))


def test_other_queries_and_short_texts(ref):
    model, tok = ref
    first = ex.attention_explorer(model, tok, "ab", query=0)
    assert first.figure["layout"]["sliders"][0]["active"] == 0
    last = ex.attention_explorer(model, tok, "ab", query=-1)
    assert last.figure["layout"]["sliders"][0]["active"] == 1

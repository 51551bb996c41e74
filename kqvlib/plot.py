"""Pictures: a bar chart with a precomputed slider (chapter 2), attention heatmaps (from chapter 3 on)."""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import torch


def attention_heatmap(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    annotate: bool = False,
    cmap: str = "viridis",
):
    """Draw attention weights as a heatmap: row i is query i, column j is key j. Built in chapter 3.

    weights: (T, S) tensor or array, each row a distribution over the S keys.
    query_labels: T strings for the rows (y axis); key_labels: S strings for the columns (x axis).
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    w = torch.as_tensor(weights).detach().cpu().double()
    if w.dim() != 2:
        raise ValueError(f"attention_heatmap: weights must have shape (T, S), got {tuple(w.shape)}")
    T, S = w.shape
    if query_labels is not None and len(query_labels) != T:
        raise ValueError(f"attention_heatmap: {len(query_labels)} query labels for weights of shape {(T, S)}")
    if key_labels is not None and len(key_labels) != S:
        raise ValueError(f"attention_heatmap: {len(key_labels)} key labels for weights of shape {(T, S)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * S + 2, 0.45 * T + 1.2))
    im = ax.imshow(w.numpy(), cmap=cmap, vmin=0.0, vmax=max(1e-9, float(w.max())))
    ax.set_xticks(range(S), key_labels if key_labels is not None else range(S), rotation=60, ha="right")
    ax.set_yticks(range(T), query_labels if query_labels is not None else range(T))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate:
        for i in range(T):
            for j in range(S):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


_SLIDER_JS = """<script>
(function () {
  var root = document.getElementById(%(id)s);
  if (!root) return;
  var frames = %(frames)s, names = %(names)s, top = %(top)s;
  var input = root.querySelector("input"), out = root.querySelector("output");
  var bars = root.querySelectorAll("[data-kqv=bar]"), values = root.querySelectorAll("[data-kqv=value]");
  function show(i) {
    out.textContent = names[i];
    frames[i].forEach(function (v, j) {
      bars[j].style.height = (100 * v / top).toFixed(1) + "%%";
      values[j].textContent = v.toFixed(3);
    });
  }
  input.addEventListener("input", function () { show(+input.value); });
})();
</script>"""


def bar_slider(heights, settings: Sequence[float], labels: Sequence[str], *, name: str = "T",
               fmt: str = "{:.2f}", start: int | None = None, reference: float | None = None,
               caption: str = "", top: float = 1.0, color: str = "#ff7f0e"):
    """A bar chart with a slider that steps through precomputed frames. Built in chapter 2.

    heights: (F, n), one row of n bar heights for each of the F stops of the slider; settings: the F
    values the stops stand for, shown as ``f"{name} = {fmt.format(value)}"``; labels: n strings under the
    bars; start: the stop shown first (default: the middle one); reference: a height drawn as a dashed
    line; top: the height of a full bar.

    The result is plain HTML with a few lines of JavaScript and no outside files, so the slider moves in
    a static page (the HTML book, offline) as well as in Jupyter or Colab, without a kernel. Heights are
    written with 3 decimals, so the HTML is the same on every machine. Returns an ``IPython.display.HTML``.
    """
    from IPython.display import HTML

    h = torch.as_tensor(heights).detach().cpu().double()
    if h.dim() != 2 or h.shape[0] != len(settings) or h.shape[1] != len(labels):
        raise ValueError(f"bar_slider: heights must have shape (len(settings), len(labels)) = "
                         f"({len(settings)}, {len(labels)}), got {tuple(h.shape)}")
    frames = [[float(f"{v:.3f}") for v in row] for row in h.tolist()]
    names = [f"{name} = {fmt.format(s)}" for s in settings]
    start = len(frames) // 2 if start is None else start
    data = json.dumps([frames, names, caption, top, reference, color, start])
    element_id = "kqv-bar-slider-" + hashlib.sha1(data.encode()).hexdigest()[:12]  # the same on every run

    def pct(v: float) -> str:
        return f"{100 * v / top:.1f}%"

    esc = lambda text: str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    row = "display:flex;gap:6%;padding:0 4%"
    bars = "".join(
        f'<div data-kqv="bar" style="flex:1;position:relative;height:{pct(v)};background:{color}">'
        f'<span data-kqv="value" style="position:absolute;bottom:100%;left:-50%;right:-50%;'
        f'text-align:center">{v:.3f}</span></div>' for v in frames[start])
    line = ("" if reference is None else
            f'<div style="position:absolute;left:0;right:0;bottom:{pct(reference)};'
            f'border-top:1px dashed #888"></div>')
    html = (
        f'<div class="kqv-bar-slider" id="{element_id}" style="max-width:34rem;font-size:0.85rem;'
        f'line-height:1.4;margin:0.5rem 0">'
        f'<div style="text-align:center;margin-bottom:1.5rem">{esc(caption)}</div>'
        f'<div style="position:relative;height:9rem;align-items:flex-end;'
        f'border-bottom:1px solid currentColor;{row}">{line}{bars}</div>'
        f'<div style="{row};text-align:center">'
        + "".join(f'<div style="flex:1">{esc(label)}</div>' for label in labels) + "</div>"
        f'<label style="display:flex;align-items:center;gap:0.6rem;margin-top:0.6rem">'
        f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
        f'aria-label="{esc(name)}" style="flex:1;min-width:0">'
        f'<output style="min-width:6rem">{esc(names[start])}</output></label></div>\n'
        + _SLIDER_JS % {"id": json.dumps(element_id), "frames": json.dumps(frames),
                        "names": json.dumps(names), "top": json.dumps(top)})
    return HTML(html)

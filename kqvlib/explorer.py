"""The attention explorer (chapter 14): every head of a model on one passage, in a figure that works with
no Python behind it, in the HTML book, in Jupyter and in Colab.

    ex = attention_explorer(model, tok, "ROMEO:\\nBut, soft! ...")   # runs the model once
    ex                      # in a notebook: the figure (a menu for the head, a slider for the query)
    ex.weights              # (L, H, T, T) float64, what the figure shows
    ex.html                 # the whole figure as one self-contained piece of HTML

The figure is drawn by plotly.js (a custom bundle of its core and its heatmap trace, 1.2 MB, made by
``scripts/build_plotly.sh``). Its JavaScript is embedded in the figure's HTML, so nothing is fetched from
the network, and every weight is precomputed: the menu and the slider only switch between stored arrays.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from kqvlib._common import is_int, require, require_float, require_ids, require_module, require_str
from kqvlib.interpret import attention_layers, capture_attention

__all__ = ["attention_explorer", "AttentionExplorer", "passage_attention", "plotly_js"]

PLOTLY_JS = Path(__file__).parent / "static" / "plotly-heatmap.min.js"
PLOTLY_FACTS = PLOTLY_JS.with_suffix("").with_suffix(".json")
SHOWN = {"\n": "↵", " ": "␣", "\t": "⇥"}  # characters that would be invisible as a label
MAX_CHARS = 100  # the figure stores every head × query × key: 0.14 MB at 48 characters, about 0.8 MB at 100
COLORSCALE = [[0.0, "#ffffff"], [0.15, "#c6dbef"], [0.4, "#6baed6"], [0.7, "#2171b5"], [1.0, "#08306b"]]


def plotly_js() -> str:
    """The embedded plotly.js bundle, checked against the sha256 recorded beside it. Built in chapter 14."""
    facts = json.loads(PLOTLY_FACTS.read_text())
    data = PLOTLY_JS.read_bytes() if PLOTLY_JS.is_file() else b""
    require(hashlib.sha256(data).hexdigest() == facts["sha256"], lambda: (
        f"plotly_js: {PLOTLY_JS} is missing or changed (sha256 differs from {PLOTLY_FACTS.name}); restore it with "
        "`pip install --force-reinstall kqvlib`, `git checkout -- kqvlib/static/`, or `bash scripts/build_plotly.sh`"))
    return data.decode("utf-8")


@torch.no_grad()
def passage_attention(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Every head's attention on one passage: ids (T,) → (L, H, T, T) float64. Built in chapter 14.

    The model runs on a float64 copy (the model itself is untouched), so the weights are the same to ~1e-15
    on any CPU and the rounded numbers the figure stores never depend on the machine.
    """
    require_module("passage_attention", "model", model)
    require_ids("passage_attention", "ids", ids, dim=1)
    require(ids.numel() > 0, "passage_attention: ids is empty; give at least one token id")
    require(len(attention_layers(model)) > 0, lambda: (
        f"passage_attention: model ({type(model).__name__}) has no MultiHeadAttention layers to watch"))
    block = getattr(getattr(model, "config", None), "block_size", None)
    require(block is None or ids.numel() <= block, lambda: (
        f"passage_attention: ids holds {ids.numel()} tokens, more than the model's context of {block}"))
    twin = copy.deepcopy(model).double().eval()
    with capture_attention(twin) as w:
        twin(ids[None].to(next(twin.parameters()).device))
    return torch.stack([a[0] for a in w]).cpu()  # (L, H, T, T)


def _labels(text: str) -> list[str]:
    return [f"{t}:{SHOWN.get(c, c)}" for t, c in enumerate(text)]  # unique, so usable as categories


def _grid(text: str) -> list[tuple[int, int]]:
    """(row, column) of each character on the page: a new row after every newline."""
    cells, r, c = [], 0, 0
    for ch in text:
        cells.append((r, c))
        r, c = (r + 1, 0) if ch == "\n" else (r, c + 1)
    return cells


def _figure(text: str, weights: torch.Tensor, start: int) -> dict:
    """The plotly.js figure: L·H passage traces, then L·H matrix traces (one of each visible), a head menu
    and a query slider. Weights are stored as whole percentages, rows ragged (a query sees no later key)."""
    L, H, T, _ = weights.shape
    cells = _grid(text)
    rows, cols = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    page = [[""] * cols for _ in range(rows)]
    for (r, c), ch in zip(cells, text):
        page[r][c] = SHOWN.get(ch, ch) if ch in "\n\t" else ch
    # (L·H·T) rows, row i·T + q: head i's query q over keys 0 … q, in whole percents (compact, and the same
    # on every machine: the weights are float64)
    rows_all = weights.reshape(L * H * T, T).tolist()
    w = [[round(100 * x) for x in row[: i % T + 1]] for i, row in enumerate(rows_all)]

    def passage_z(head: int, q: int) -> list[list[int | None]]:
        """The page coloured by query q's weights; None where q sees nothing (later characters, line ends)."""
        z = [[None] * cols for _ in range(rows)]
        for k, (r, c) in enumerate(cells[: q + 1]):
            z[r][c] = w[head * T + q][k]
        return z

    names = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    labels = _labels(text)
    heat = dict(type="heatmap", coloraxis="coloraxis", xgap=1, ygap=1)
    data = [dict(heat, name=n, z=passage_z(i, start), text=page, texttemplate="%{text}", visible=i == 0,
                 textfont=dict(size=13), xaxis="x", yaxis="y",
                 hovertemplate="%{text}: %{z}% of the attention<extra>" + n + "</extra>") for i, n in enumerate(names)]
    data += [dict(heat, name=n, x=labels, y=labels, xaxis="x2", yaxis="y2", visible=i == 0,
                  z=w[i * T: (i + 1) * T],
                  hovertemplate="query %{y} → key %{x}<br>%{z}% of the attention<extra>" + n + "</extra>")
             for i, n in enumerate(names)]
    menu = dict(type="dropdown", x=0, xanchor="left", y=1.0, yanchor="bottom", showactive=True, active=0,
                pad=dict(b=6), buttons=[dict(label=f"head {n}", method="restyle",
                                             args=[{"visible": [j % len(names) == i for j in range(2 * len(names))]}])
                                        for i, n in enumerate(names)])

    def outlines(q: int) -> tuple[dict, dict]:
        """The query's cell on the page, and its row in the matrix."""
        r, c = cells[q]
        return dict(x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5), dict(y0=q - 0.5, y1=q + 0.5)

    def move(q: int) -> dict:  # the layout change that moves both outlines to query q
        return {f"shapes[{i}].{k}": v for i, box in enumerate(outlines(q)) for k, v in box.items()}

    steps = [dict(label=SHOWN.get(ch, ch), method="update",
                  args=[{"z": [passage_z(i, q) for i in range(len(names))]}, move(q), list(range(len(names)))])
             for q, ch in enumerate(text)]
    slider = dict(active=start, steps=steps, x=0, len=1, y=0, yanchor="top", pad=dict(t=28),
                  currentvalue=dict(prefix="query: ", font=dict(size=13)), font=dict(size=10), ticklen=3)
    page_box, row_box = outlines(start)
    outline = dict(type="rect", line=dict(color="#d62728", width=2.5), fillcolor="rgba(0,0,0,0)")
    shapes = [dict(outline, xref="x", yref="y", **page_box),
              dict(outline, xref="x2 domain", yref="y2", x0=0, x1=1, **row_box)]
    axis = dict(showgrid=False, zeroline=False, fixedrange=True, ticks="")
    ticks = dict(tickmode="array", tickvals=labels, ticktext=[SHOWN.get(c, c) for c in text], tickfont=dict(size=9))
    note = dict(xref="paper", yref="paper", x=0, xanchor="left", yanchor="bottom", showarrow=False,
                font=dict(size=10, color="#555"))
    layout = dict(
        height=820, autosize=True, margin=dict(l=30, r=10, t=40, b=90), plot_bgcolor="#f2f2f2",
        font=dict(family="monospace, monospace", size=11), updatemenus=[menu], sliders=[slider], shapes=shapes,
        annotations=[dict(note, y=0.975, text="where the outlined query looks"),
                     dict(note, y=0.665, text="every query (a row) and where it looks")],
        coloraxis=dict(colorscale=COLORSCALE, cmin=0, cmax=100, colorbar=dict(
            orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom", len=0.45, thickness=10,
            title=dict(text="attention (%)", side="top"))),
        xaxis=dict(axis, domain=[0, 1], anchor="y", showticklabels=False),
        yaxis=dict(axis, domain=[0.74, 0.97], anchor="x", autorange="reversed", showticklabels=False),
        xaxis2=dict(axis, **ticks, domain=[0, 1], anchor="y2", tickangle=0),
        yaxis2=dict(axis, **ticks, domain=[0, 0.66], anchor="x2", autorange="reversed"),
    )
    config = dict(responsive=True, displaylogo=False, displayModeBar=False, scrollZoom=False)
    return dict(data=data, layout=layout, config=config)


class AttentionExplorer:
    """The figure of :func:`attention_explorer`: shows itself in a notebook (``_repr_html_``); ``html`` is
    the same self-contained HTML, ``figure`` the plotly.js figure, ``weights`` (L, H, T, T). Built in chapter 14."""

    def __init__(self, text: str, weights: torch.Tensor, start: int = -1):
        require_str("AttentionExplorer", "text", text)
        require_float("AttentionExplorer", "weights", weights, dim=4)
        require(weights.shape[2:] == (len(text), len(text)) and weights.shape[0] * weights.shape[1] > 0, lambda: (
            f"AttentionExplorer: weights must have shape (L, H, T, T) with T = len(text) = {len(text)}, "
            f"got {tuple(weights.shape)}"))
        require(is_int(start) and -len(text) <= start < len(text), lambda: (
            f"AttentionExplorer: start must be a position in the text (-{len(text)} … {len(text) - 1}), got {start!r}"))
        start %= len(text)
        self.text, self.weights, self.figure = text, weights, _figure(text, weights, start)
        spec = json.dumps(self.figure, separators=(",", ":"), ensure_ascii=False)
        self.element_id = "kqv-explorer-" + hashlib.sha1(spec.encode()).hexdigest()[:12]  # the same on every run
        self.html = (f'<div class="kqv-explorer"><script>{plotly_js()}</script>'
                     f'<div id="{self.element_id}" style="width:100%;max-width:56rem"></div><script>'
                     f'(function(){{var f={spec};Plotly.newPlot(document.getElementById("{self.element_id}"),'
                     'f.data,f.layout,f.config);})();</script></div>')

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        L, H, T, _ = self.weights.shape
        return (f"AttentionExplorer: {L} layers × {H} heads on a passage of {T} characters "
                "(a figure: open it in a notebook or the HTML book)")


def attention_explorer(model: nn.Module, tokenizer, text: str, *, query: int | None = None) -> AttentionExplorer:
    """An interactive figure of every head's attention on ``text``: a menu picks the head, a slider the
    query character (outlined); the passage is coloured by that query's weights and the whole (T, T)
    pattern is drawn below it. Hover for the numbers. Built in chapter 14.

    model: a kqvlib GPT (its MultiHeadAttention layers are watched); tokenizer: a character tokenizer
    (``encode(str) → list[int]``, one token per character); query: the character shown first (default:
    the last).
    """
    require_module("attention_explorer", "model", model)
    require_str("attention_explorer", "text", text)
    require(2 <= len(text) <= MAX_CHARS, lambda: (
        f"attention_explorer: text must have 2 to {MAX_CHARS} characters, got {len(text)}: the figure stores "
        "every head's weight for every query and key, so a longer passage makes a page too heavy to load"))
    require(callable(getattr(tokenizer, "encode", None)), lambda: (
        f"attention_explorer: tokenizer must have an encode(str) method, got {type(tokenizer).__name__}"))
    try:
        ids = tokenizer.encode(text)
    except (KeyError, ValueError) as e:
        raise ValueError(f"attention_explorer: the tokenizer cannot encode text ({e}); use characters from "
                         "its vocabulary") from None
    require(len(ids) == len(text), lambda: (
        f"attention_explorer: the tokenizer made {len(ids)} tokens of {len(text)} characters; the explorer "
        "labels one token per character (use a character tokenizer)"))
    block = getattr(getattr(model, "config", None), "block_size", None)
    require(block is None or len(text) <= block, lambda: (
        f"attention_explorer: text has {len(text)} characters, more than the model's context of {block}"))
    start = len(text) - 1 if query is None else query
    require(is_int(start) and -len(text) <= start < len(text), lambda: (
        f"attention_explorer: query must be a position in the text (0 … {len(text) - 1}), got {query!r}"))
    weights = passage_attention(model, torch.tensor(ids))
    return AttentionExplorer(text, weights, start)

"""Pictures of attention (from chapter 3 on)."""
from __future__ import annotations

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

"""Looking inside a trained GPT (chapter 14): read every head's attention, score what it does, switch
heads off, patch them from another run.

    capture_attention(model)      with … as w: model(idx) fills w[l] with layer l's weights (B, H, T, T)
    capture_heads(model)          with … as out: model(idx) fills out[l] with (B, T, H, hs), heads' outputs
    ablate_heads(model, {(l, h)}) with …: those heads output zero (the input of W_O)
    patch_heads(model, out, {(l, h)})  with …: those heads output what ``out`` recorded (another run)
    head_score, induction_score, attention_by_offset: numbers from captured weights (see each docstring)
    previous_token_targets, line_start_targets, speaker_targets, uniform_causal_weights: jobs, baseline

The context managers work through PyTorch hooks (no change to the model's code), removed in a
``finally``, so they are gone even when the ``with`` block raises.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
import torch.nn as nn

from kqvlib._common import is_int, require, require_float, require_ids, require_int, require_ints, \
    require_module
from kqvlib.multihead import MultiHeadAttention

__all__ = ["attention_layers", "capture_attention", "ablate_heads", "head_score",
           "uniform_causal_weights", "previous_token_targets", "line_start_targets",
           "speaker_targets", "induction_score", "attention_by_offset", "capture_heads", "patch_heads"]


def attention_layers(model: nn.Module) -> list[MultiHeadAttention]:
    """The model's attention modules in forward order (for kqvlib's GPT ``model.blocks[l].attn``).
    Built in chapter 14."""
    require_module("attention_layers", "model", model)
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    require(len(layers) > 0, lambda: f"attention_layers: model ({type(model).__name__}) has no MultiHeadAttention")
    return layers


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[torch.Tensor | None]]:
    """``with capture_attention(model) as weights: model(idx)`` → ``weights[l]`` is layer l's attention
    weights (B, H, T, S) from the latest forward pass (S = T for self-attention). Built in chapter 14.

    A pre-hook asks each attention module for its weights (``return_weights=True``: kqvlib's own softmax,
    not the fused kernel); a forward hook stores them and hands the caller the output alone, as it asked.
    """
    layers = attention_layers(model)
    weights: list[torch.Tensor | None] = [None] * len(layers)
    asked, handles = [False] * len(layers), []  # asked[i]: did the caller itself ask for the weights?

    def pre_hook(i):
        def hook(module, args, kwargs):
            asked[i] = bool(kwargs.get("return_weights", False))
            return args, {**kwargs, "return_weights": True}
        return hook

    def post_hook(i):
        def hook(module, args, kwargs, output):
            y, w = output  # (B, T, C), (B, H, T, S)
            weights[i] = w.detach()
            return output if asked[i] else y
        return hook

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
            handles.append(layer.register_forward_hook(post_hook(i), with_kwargs=True))
        yield weights
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def ablate_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[nn.Module]:
    """``with ablate_heads(model, {(layer, head), …}):`` those heads are switched off. Built in chapter 14.

    Head h's output, the slice h·hs … (h+1)·hs − 1 of the input of W_O (``out_proj``), is zeroed by a
    pre-hook; W_O's bias stays. No parameter changes; the hooks go on exit, also when the block raises.
    """
    chosen = _heads_in(model, heads, "ablate_heads")

    def zero(off):
        def f(y):  # (B, T, H, hs)
            keep = torch.ones(y.shape[2], 1, dtype=y.dtype, device=y.device)  # (H, 1): 0 drops a head
            keep[off] = 0.0
            return y * keep
        return f

    with _before_w_o(model, {layer: zero(off) for layer, off in chosen.items()}):
        yield model


def head_score(weights: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How much of each head's attention goes to the keys a job names. Built in chapter 14.

    weights: (B, H, T, S); targets: (B, T, S) or (T, S) bool, True where key s counts for query t.
    For every query with at least one target, the weight on its targets (a number in [0, 1]); the
    score is the mean over those queries and the batch → (H,). Queries with no target are left out.
    """
    require_float("head_score", "weights (B, H, T, S)", weights, dim=4)
    B, H, T, S = weights.shape
    require(isinstance(targets, torch.Tensor) and targets.dtype == torch.bool and targets.shape[-2:] == (T, S),
            lambda: f"head_score: targets must be bool (B, T, S) or (T, S), T, S = {T}, {S}, got {targets!r:.60}")
    if targets.dim() == 2:
        targets = targets.expand(B, T, S)  # (T, S) → (B, T, S)
    require(targets.shape == (B, T, S), lambda: (
        f"head_score: targets must be (B, T, S) = {(B, T, S)} or (T, S) like weights "
        f"{tuple(weights.shape)}, got {tuple(targets.shape)}"))
    on_target = (weights * targets[:, None].to(weights.dtype)).sum(-1)  # (B, H, T)
    valid = targets.any(-1)  # (B, T): queries that have a target
    require(bool(valid.any()), "head_score: targets name no key for any query (all False)")
    return (on_target * valid[:, None]).sum((0, 2)) / valid.sum()  # (H,)


def uniform_causal_weights(B: int, T: int) -> torch.Tensor:
    """(B, 1, T, T): w[t, s] = 1/(t+1) for s ≤ t, the even head, a baseline to beat. Built in chapter 14."""
    require_ints("uniform_causal_weights", lo=0, B=B, T=T)
    causal = torch.ones(T, T).tril()  # (T, T)
    return (causal / causal.sum(-1, keepdim=True)).expand(B, 1, T, T)  # (B, 1, T, T)


def previous_token_targets(T: int) -> torch.Tensor:
    """(T, T) bool: query t's target is key t − 1 (query 0 has none). Built in chapter 14."""
    require_int("previous_token_targets", "T", T, lo=0)
    return torch.ones(T, T, dtype=torch.bool).tril(-1).triu(-1)  # the diagonal just below the main


def _latest(flags: torch.Tensor) -> torch.Tensor:
    """(B, T) bool → (B, T) long: for each t the largest s ≤ t where flags[s], or −1 if none."""
    T = flags.shape[-1]
    pos = torch.where(flags, torch.arange(T), torch.full_like(flags, -1, dtype=torch.long))  # (B, T)
    return pos.cummax(-1).values  # (B, T)


def line_start_targets(tokens: torch.Tensor, newline: int, first_char: bool = False) -> torch.Tensor:
    """(B, T) token ids → (B, T, T) bool: query t's target is where its line starts — the newline
    that ends the previous line (the latest one before t), or with ``first_char`` the character just
    after it. Queries whose line starts before the window, or at t itself, have none.
    Built in chapter 14."""
    require_ids("line_start_targets", "tokens", tokens, dim=2)
    require_int("line_start_targets", "newline", newline, lo=0)
    B, T = tokens.shape
    before = torch.zeros_like(tokens, dtype=torch.bool)  # (B, T): True just after a newline
    before[:, 1:] = tokens[:, :-1] == newline
    start = _latest(before) - (0 if first_char else 1)  # (B, T) the line's first character or its "\n"
    t = torch.arange(T)
    ok = (_latest(before) >= 0) & (start < t)  # (B, T): in the window, and not t itself
    key = torch.arange(T)[None, None, :]  # (1, 1, T)
    return (key == start[..., None]) & ok[..., None]  # (B, T, T)


def speaker_targets(tokens: torch.Tensor, newline: int, colon: int) -> torch.Tensor:
    """(B, T) token ids → (B, T, T) bool: the speaker's name for every character of a speech.
    Built in chapter 14.

    In the play's text a speech is a blank line, a line "NAME:", then the speech's lines. A name line
    is a line that ends in ":" and comes right after a blank line ("\\n\\n" before it, in the window).
    For a query t on a later line of that speech (before the next blank line), the targets are the
    characters of NAME (the colon not included). Queries with no name line in the window: none.
    """
    require_ids("speaker_targets", "tokens", tokens, dim=2)
    require_ints("speaker_targets", lo=0, newline=newline, colon=colon)
    B, T = tokens.shape
    nl = tokens == newline  # (B, T)
    blank = torch.zeros_like(nl)  # (B, T): True at the second "\n" of a blank line ("\n\n")
    blank[:, 1:] = nl[:, 1:] & nl[:, :-1]
    name_start = torch.zeros_like(nl)  # (B, T): first character of a line after a blank line
    name_start[:, 1:] = blank[:, :-1]
    s0 = _latest(name_start)  # (B, T) start of the latest line that followed a blank line
    is_colon_nl = torch.zeros_like(nl)  # (B, T): a "\n" right after ":" (the end of a name line)
    is_colon_nl[:, 1:] = nl[:, 1:] & (tokens[:, :-1] == colon)
    idx = torch.where(nl, torch.arange(T), torch.full_like(tokens, T))  # (B, T)
    first_nl = idx.flip(-1).cummin(-1).values.flip(-1)  # (B, T): the first "\n" at or after each t
    s0c = s0.clamp(min=0)
    end = first_nl.gather(1, s0c)  # (B, T): the "\n" that ends that line
    t = torch.arange(T)
    # a name line ends in ":\n", and t lies beyond it, with no blank line in between (s0 is the latest)
    named = (s0 >= 0) & is_colon_nl.gather(1, end.clamp(max=T - 1)) & (end < T) & (end < t)
    key = torch.arange(T)[None, None, :]  # (1, 1, T)
    in_name = (key >= s0c[..., None]) & (key < (end - 1)[..., None])  # (B, T, T): NAME, not ":"
    return in_name & named[..., None]


def induction_score(weights: torch.Tensor, period: int) -> torch.Tensor:
    """How much a head attends like an induction head, on a sequence that repeats itself. Built in chapter 14.

    weights: (..., T, T) attention weights (query t, key s) captured on a sequence whose token t equals
    token t − period for every t ≥ period (a random block of ``period`` tokens, then a copy of it). Any
    leading axes are kept: pass one layer's (B, H, T, T) → (B, H), or the layers stacked for one
    sequence, (n_layer, n_head, T, T) → (n_layer, n_head).

    An induction head at query t looks back to the previous occurrence of token t, at t − period, and
    attends to the token that followed it, at key t − period + 1 (the token it will predict next). The
    score is the weight on that key, averaged over the queries t = period … T − 1 of the repeats: 1 for
    a perfect induction head, 0 for a head that never looks there. A head that spreads evenly over
    keys 0 … t scores mean(1/(t+1)) (:func:`uniform_causal_weights`), the baseline to beat.
    """
    require_float("induction_score", "weights (..., T, T)", weights, min_dim=2)
    require(weights.shape[-1] == weights.shape[-2], lambda: (
        f"induction_score: weights must be (..., T, T) with query and key axes last, got {tuple(weights.shape)}"))
    T = weights.shape[-1]
    require(is_int(period) and 1 <= period < T, lambda: (
        f"induction_score: period must be an int in 1 … T − 1 = {T - 1} (the repeated block), got {period!r}"))
    t = torch.arange(period, T)  # the queries whose token has occurred before
    return weights[..., t, t - period + 1].mean(-1)  # (...)


def attention_by_offset(weights: torch.Tensor, max_offset: int) -> torch.Tensor:
    """(..., T, T) causal attention weights → (..., max_offset + 2): the mean weight a query t puts on
    key t − k for k = 0 … max_offset, and in the last column on all keys further back. The mean is over
    the queries t = max_offset … T − 1, which all have every one of those keys. Built in chapter 14."""
    require_float("attention_by_offset", "weights (..., T, T)", weights, min_dim=2)
    require(weights.shape[-1] == weights.shape[-2], lambda: (
        f"attention_by_offset: weights must be (..., T, T), got {tuple(weights.shape)}"))
    T = weights.shape[-1]
    require(is_int(max_offset) and 0 <= max_offset < T, lambda: (
        f"attention_by_offset: max_offset must be an int in 0 … T − 1 = {T - 1}, got {max_offset!r}"))
    t = torch.arange(max_offset, T)  # queries with keys t … t − max_offset
    near = torch.stack([weights[..., t, t - k] for k in range(max_offset + 1)], -1)  # (..., Tq, n + 1)
    rest = weights[..., t, :].sum(-1, keepdim=True) - near.sum(-1, keepdim=True)  # (..., Tq, 1)
    return torch.cat([near, rest], -1).mean(-2)  # (..., n + 2)


def _heads_in(model: nn.Module, heads: Iterable[tuple[int, int]], who: str) -> dict[int, list[int]]:
    layers, chosen = attention_layers(model), {}
    heads = list(heads) if isinstance(heads, Iterable) and not isinstance(heads, str) else [None]
    require(all(isinstance(p, tuple) and len(p) == 2 and all(map(is_int, p)) for p in heads),
            lambda: f"{who}: heads must be (layer, head) pairs of ints, e.g. {{(0, 1)}}, got {heads!r}")
    for layer, head in heads:
        require(0 <= layer < len(layers) and 0 <= head < layers[layer].n_heads, lambda: (
            f"{who}: no head ({layer}, {head}) in a model with {len(layers)} layers of "
            f"{layers[0].n_heads} heads"))
        chosen.setdefault(layer, []).append(head)
    return chosen


@contextlib.contextmanager
def _before_w_o(model: nn.Module, change: dict) -> Iterator[None]:
    """Pre-hooks on W_O: ``change[l]((B, T, H, hs))`` gives layer l's heads' outputs to use instead."""
    layers = attention_layers(model)

    def hook_for(attn, f):
        def hook(module, args):
            x = args[0]  # (B, T, C), the heads side by side
            B, T, C = x.shape
            return (f(x.view(B, T, attn.n_heads, -1)).reshape(B, T, C), *args[1:])  # (B, T, H, hs) → (B, T, C)
        return hook

    handles = []
    try:
        for layer, f in change.items():
            handles.append(layers[layer].out_proj.register_forward_pre_hook(hook_for(layers[layer], f)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_heads(model: nn.Module) -> Iterator[list[torch.Tensor | None]]:
    """``with capture_heads(model) as out: model(idx)`` → ``out[l]`` is layer l's (B, T, H, hs): what
    each head hands to W_O (its weights times its values). Head h's part of the residual stream is
    ``out[l][:, :, h] @ W_O[:, h·hs:(h+1)·hs].T``. Built in chapter 14."""
    out: list[torch.Tensor | None] = [None] * len(attention_layers(model))

    def keep(i):
        def f(y):
            out[i] = y.detach().clone()  # (B, T, H, hs)
            return y
        return f

    with _before_w_o(model, {i: keep(i) for i in range(len(out))}):
        yield out


@contextlib.contextmanager
def patch_heads(model: nn.Module, source: list[torch.Tensor], heads: Iterable[tuple[int, int]]
                ) -> Iterator[nn.Module]:
    """``with patch_heads(model, out, {(l, h), …}): model(idx)`` — those heads output what
    :func:`capture_heads` recorded in ``out`` (a run on another input of the same shape); every other
    head computes as usual. No parameter changes; the hooks go on exit. Built in chapter 14."""
    n = len(attention_layers(model))
    require(isinstance(source, (list, tuple)) and len(source) == n, lambda: (
        f"patch_heads: source must be capture_heads' list of {n} layers' outputs, got {source!r:.60}"))
    chosen = _heads_in(model, heads, "patch_heads")

    def put(layer, hs):
        def f(y):  # (B, T, H, hs)
            require(isinstance(source[layer], torch.Tensor) and source[layer].shape == y.shape, lambda: (
                f"patch_heads: source[{layer}], layer {layer}'s recorded output, must be {tuple(y.shape)} "
                f"like this run's, got {source[layer]!r:.60}"))
            y = y.clone()
            y[:, :, hs] = source[layer][:, :, hs].to(y.dtype)
            return y
        return f

    with _before_w_o(model, {layer: put(layer, hs) for layer, hs in chosen.items()}):
        yield model

"""Attention for one head, built from scratch: soft lookup (chapter 1), softmax (chapter 2), scaled
dot-product attention (chapters 3–4) and masks (chapter 5).

Shapes use these letters:
    B batch, H heads, T query positions, S key/value positions, d_k query/key width, d_v value width.

Mask convention (the same as ``torch.nn.functional.scaled_dot_product_attention``):
    * a **boolean** mask says which keys each query may look at: ``True`` = attend, ``False`` = blocked;
    * a **float** mask is *added* to the scores (``0`` = attend, ``-inf`` = blocked).
A mask must broadcast to the scores' shape (..., T, S) without making it bigger.

A query row whose keys are *all* blocked has nothing to attend to. We define its weights to be all
zeros, so its output is the zero vector. (The naive formula would give 0/0 = NaN, which then spreads
silently through every later layer; chapter 5 shows it.)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from kqvlib._common import as_device, is_int, require, require_dim, require_dtype, require_float, require_same_device


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``. Built in chapter 2.

    x: any shape (...). Returns the same shape, non-negative, summing to 1 along ``dim``.

    Subtracting each row's maximum before ``exp`` changes nothing mathematically
    (the factor e^-max cancels) but keeps ``exp`` from overflowing. A row that is entirely
    ``-inf`` (every entry blocked) returns all zeros instead of NaN. A NaN (or a +inf, which leaves
    inf − inf) makes its whole row NaN, as in ``torch.softmax``; an empty ``x`` gives an empty result.
    """
    require_float("softmax", "x", x)
    require_dim("softmax", x, dim)
    if x.dim() and x.shape[dim] == 0:  # nothing to normalise (amax has no identity to reduce an empty axis to)
        return x.clone()
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(m == float("-inf"), torch.zeros_like(m), m)  # an all -inf row: shift by 0, not by -inf
    e = torch.exp(x - m)
    s = e.sum(dim=dim, keepdim=True)  # ≥ 1 in a row with a finite maximum; 0 in an all -inf row; NaN with a NaN
    return torch.where(s == 0, torch.zeros_like(e), e / s.clamp_min(torch.finfo(x.dtype).tiny))


def soft_lookup(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A dictionary lookup made soft. Built in chapter 1.

    Score the query against every key by a dot product, turn the scores into weights with softmax,
    return the weighted sum of the values.

    query: (d,)   keys: (n, d)   values: (n, d_v)   →   (d_v,)

    It is attention for one query with no 1/√d scaling: ``scaled_dot_product_attention`` adds that.
    """
    for name, t in (("query", query), ("keys", keys), ("values", values)):
        require_float("soft_lookup", name, t)
    require(query.dtype == keys.dtype == values.dtype, lambda: (
        f"soft_lookup: query, keys and values must share a dtype, got {query.dtype}, {keys.dtype}, {values.dtype}"))
    require_same_device("soft_lookup", query=query, keys=keys, values=values)
    require(
        query.dim() == 1 and keys.dim() == 2 and values.dim() == 2
        and keys.shape[1] == query.shape[0] and values.shape[0] == keys.shape[0],
        lambda: f"soft_lookup: expected query (d,), keys (n, d), values (n, d_v); got query "
                f"{tuple(query.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}",
    )
    scores = keys @ query  # (n,): one similarity per key
    weights = softmax(scores, dim=0)  # (n,), sums to 1
    return weights @ values  # (d_v,)


# --- masks (chapter 5) ---------------------------------------------------------------------------

def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (T, T) mask, ``True`` on and below the diagonal: query t may look at keys 0..t only.
    Built in chapter 5.

    >>> causal_mask(3)
    tensor([[ True, False, False],
            [ True,  True, False],
            [ True,  True,  True]])

    Row t is query t, column s is key s. Its transpose (True on and above the diagonal) lets every
    position read the future instead of the past; chapter 5 trains a model with it to show what happens.
    """
    require(is_int(T) and T >= 0, lambda: f"causal_mask: T must be a positive int (or 0: empty), got {T!r}")
    return torch.ones(T, T, dtype=torch.bool, device=as_device("causal_mask", "device", device)).tril()


def padding_mask(lengths: Sequence[int] | torch.Tensor, S: int,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (B, 1, 1, S) mask for a batch of sequences padded on the right to S positions.
    Built in chapter 5.

    lengths: (B,) the real length of each sequence (its first ``lengths[b]`` positions are tokens, the
    rest padding). ``mask[b, 0, 0, s]`` is True when key s of sequence b is a real token: the mask blocks
    padding *keys*, for every query. The shape broadcasts to multi-head scores (B, H, T, S); for
    single-head scores (B, T, S) use ``mask[:, 0]``. Combine it with :func:`causal_mask` by
    :func:`combine_masks`.

    The queries at padding positions are not blocked (their outputs are computed and then ignored by
    the loss). A sequence of length 0 blocks every key, so each of its queries gets a fully masked row,
    whose weights this module defines to be zeros (see the module docstring).
    """
    require(is_int(S) and S >= 0, lambda: f"padding_mask: S must be a positive int (or 0: empty), got {S!r}")
    device = as_device("padding_mask", "device", device)
    if isinstance(lengths, (list, tuple)) and len(lengths) == 0:
        lengths = torch.zeros(0, dtype=torch.long)  # an empty batch (as_tensor would make it float)
    try:
        lengths = torch.as_tensor(lengths, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"padding_mask: lengths must be B integers, shape (B,), got {lengths!r:.60} ({e})") from None
    require(lengths.dim() == 1 and not lengths.is_floating_point() and not lengths.is_complex()
            and lengths.dtype != torch.bool,
            lambda: f"padding_mask: lengths must be B integers, shape (B,), got shape "
                    f"{tuple(lengths.shape)} of {lengths.dtype}")
    require(lengths.device.type != "meta", "padding_mask: lengths is on the meta device (it has no values)")
    require(bool(((lengths >= 0) & (lengths <= S)).all()),
            lambda: f"padding_mask: lengths must each be in 0..S={S}, got {lengths.tolist()}")
    keys = torch.arange(S, device=lengths.device)  # (S,)
    return (keys[None, :] < lengths[:, None])[:, None, None, :]  # (B, S) → (B, 1, 1, S)


def as_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean mask as the float mask that does the same: 0 where True, -inf where False.
    A float mask is returned unchanged. Built in chapter 5.

    Adding the result to the scores and taking the softmax gives the same weights as filling the blocked
    scores with -inf: e^-inf = 0, so a blocked key gets no weight and the others share the whole sum.
    """
    require(isinstance(mask, torch.Tensor),
            lambda: f"as_additive: mask must be a torch.Tensor, got {type(mask).__name__}")
    require_dtype("as_additive", "dtype", dtype)
    if mask.is_floating_point():
        return mask
    require(mask.dtype == torch.bool, lambda: (
        f"as_additive: mask must be bool (True = attend) or float (added to the scores), got {mask.dtype} "
        f"with shape {tuple(mask.shape)}. A 0/1 integer mask is ambiguous: convert it with mask.bool()"))
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def combine_masks(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """One mask that blocks what either blocks (e.g. causal and padding). Built in chapter 5.

    Two boolean masks give their ``&``; a float mask involved gives the sum of both as float masks.
    ``None`` means "no mask" and leaves the other one as it is. The two shapes must broadcast together:
    (T, S) and (B, 1, 1, S) give (B, 1, T, S)."""
    for name, m in (("a", a), ("b", b)):
        require(m is None or isinstance(m, torch.Tensor) and (m.dtype == torch.bool or m.is_floating_point()),
                lambda: f"combine_masks: {name} must be None or a bool or float mask tensor, got "
                        + (f"{m.dtype} with shape {tuple(m.shape)}; convert a 0/1 mask with mask.bool()"
                           if isinstance(m, torch.Tensor) else type(m).__name__))
    if a is None or b is None:
        return b if a is None else a
    require(a.device == b.device, lambda: f"combine_masks: a is on {a.device}, b on {b.device}")
    try:
        if a.dtype == torch.bool and b.dtype == torch.bool:
            return a & b
        dtype = a.dtype if a.is_floating_point() else b.dtype
        return as_additive(a, dtype) + as_additive(b, dtype)
    except RuntimeError as e:  # shapes that do not broadcast: name them (checked only on failure)
        raise ValueError(f"combine_masks: masks a and b of shapes {tuple(a.shape)} and {tuple(b.shape)} do "
                         f"not broadcast together ({e})") from None


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size, q: torch.Tensor) -> None:
    require(isinstance(mask, torch.Tensor), lambda: (
        f"scaled_dot_product_attention: mask must be None or a bool or float tensor, got {type(mask).__name__}"))
    require(mask.dtype == torch.bool or mask.is_floating_point(), lambda: (
        f"scaled_dot_product_attention: the mask must be bool (True = attend) or float (added to the "
        f"scores), got {mask.dtype} with shape {tuple(mask.shape)}; convert a 0/1 mask with mask.bool()"))
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    require(fits, lambda: (
        f"scaled_dot_product_attention: a mask of shape {tuple(mask.shape)} does not broadcast to the "
        f"scores' shape {tuple(scores_shape)} (..., T, S). A mask transposed by mistake has shape (S, T)."))
    require(mask.dtype == torch.bool or mask.dtype == q.dtype, lambda: (
        f"scaled_dot_product_attention: a float mask must have the dtype of q ({q.dtype}), got {mask.dtype}"))
    require(mask.device == q.device, lambda: (
        f"scaled_dot_product_attention: mask is on {mask.device}, q on {q.device}"))


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d_k + mask) v, written out. Built in chapter 3; the mask in chapter 5.

    q: (..., T, d_k)   k: (..., S, d_k)   v: (..., S, d_v)
    mask: None, or bool / float broadcastable to (..., T, S) — see the module docstring.
    Returns out (..., T, d_v), and the weights (..., T, S) too when ``return_weights``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_float("scaled_dot_product_attention", name, t)
        require(t.dim() >= 2, lambda: f"scaled_dot_product_attention: {name} must have shape (..., n, d), "
                                      f"got {tuple(t.shape)}")
    require(q.dtype == k.dtype == v.dtype, lambda: (
        f"scaled_dot_product_attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"))
    require(q.shape[-1] == k.shape[-1], lambda: (
        f"scaled_dot_product_attention: q has shape {tuple(q.shape)} and k has shape {tuple(k.shape)}; "
        f"their last dimensions (d_k) must match"))
    require(k.shape[-2] == v.shape[-2], lambda: (
        f"scaled_dot_product_attention: k has shape {tuple(k.shape)} and v has shape {tuple(v.shape)}; "
        f"they must have the same number of positions S (dimension -2)"))
    require(q.shape[-1] >= 1, lambda: f"scaled_dot_product_attention: q has d_k = 0 (shape {tuple(q.shape)})")
    require_same_device("scaled_dot_product_attention", q=q, k=k, v=v)
    try:
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        lead = None
    require(lead is not None, lambda: (
        f"scaled_dot_product_attention: the batch dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and "
        f"v {tuple(v.shape)} (all but the last two) do not broadcast together"))
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, S)
    if mask is not None:
        _check_mask(mask, scores.shape, q)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = softmax(scores, dim=-1)  # (..., T, S); a fully blocked row is all zeros
    out = weights @ v  # (..., T, d_v)
    return (out, weights) if return_weights else out

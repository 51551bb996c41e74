"""Chapter 6 checkers for ``split_heads`` and ``merge_heads``, with the sizes, reference split/merge and
error explanations that ``mha`` reuses. The chapter's docstring is in :mod:`kqvlib.exercises.ch06`.
"""
from __future__ import annotations

import itertools

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.common import explain_error

F64 = torch.float64
SIZES = dict(B=2, T=4, H=3, hs=5)  # C = 15; every size different
OTHER = dict(B=3, T=6, H=2, hs=7)  # C = 14: catches a hard-coded size


def _split(x, H):  # (B, T, C) → (B, H, T, hs)
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(1, 2)


def _merge(y):  # (B, H, T, hs) → (B, T, C)
    B, H, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, H * hs)


# --- explaining errors --------------------------------------------------------------------------------------

_VIEW_HINT = ("`.view` cannot join axes of a tensor that is not contiguous in memory, and a transposed "
              "tensor is not. After `.transpose(1, 2)` use `.reshape(B, T, C)` (it copies when it must), "
              "or `.contiguous().view(B, T, C)`.")
_FLOAT_HINT = ("a size was a float: `C / n_heads` is a float in Python 3, and view/reshape want ints. "
               "Use integer division, hs = C // n_heads.")


def _explain(e: BaseException, shapes: str) -> tuple[str, str] | None:
    msg = str(e)
    if "view size is not compatible" in msg:
        return "view on non-contiguous", _VIEW_HINT
    if isinstance(e, TypeError) and "float" in msg:
        return "float head size", _FLOAT_HINT
    if "is invalid for input of size" in msg:
        return "wrong sizes", (f"a view/reshape asked for a shape with a different number of entries. {shapes}. "
                               f"Read B, T and C from x.shape, in that order (B, T, C = x.shape), and compute "
                               f"hs = C // n_heads.")
    if isinstance(e, (RuntimeError, ValueError)) and any(
            w in msg for w in ("must match the size", "shapes cannot be multiplied", "size mismatch",
                               "Expected size", "does not broadcast")):
        return "shapes do not fit", (f"a product did not fit. {shapes}. Every head's q, k and v must be "
                                     f"(B, H, T, hs), the scores (B, H, T, T), the merged heads (B, T, C) "
                                     f"before W_O (C, C). Print the shapes step by step.")
    return explain_error(e)


# --- split_heads(x, n_heads) --------------------------------------------------------------------------------

def _x(size):
    def make(g):
        B, T, H, hs = size["B"], size["T"], size["H"], size["hs"]
        return torch.randn(B, T, H * hs, generator=g, dtype=F64), H
    return make


def _v(x, *shape):  # x.reshape with the sizes read from x
    return x.reshape(*shape)


_SPLIT_MISTAKES = [
    Mistake("no transpose",
            lambda x, H: _v(x, x.shape[0], H, x.shape[1], x.shape[2] // H),
            "you reshaped (B, T, C) straight to (B, H, T, hs). The shape is right, but a reshape keeps the "
            "memory order, so each 'head' got a run of the flattened sequence: whole positions, mixed up. "
            "Split the features first, x.view(B, T, H, hs), then swap T and H: .transpose(1, 2)."),
    Mistake("head axis not moved",
            lambda x, H: _v(x, x.shape[0], x.shape[1], H, x.shape[2] // H),
            "your output is (B, T, H, hs): the features are split, but the head axis is still after T. "
            "Attention needs each head's positions as rows, (B, H, T, hs): add .transpose(1, 2)."),
    Mistake("split as (hs, H)",
            lambda x, H: _v(x, x.shape[0], x.shape[1], x.shape[2] // H, H).permute(0, 3, 1, 2),
            "you split C as (hs, H), so head h got every H-th feature (h, h+H, h+2H, …). A head owns a "
            "consecutive slice, x[..., h*hs:(h+1)*hs]: split as view(B, T, H, hs), heads first."),
    Mistake("n_heads as head size",
            lambda x, H: _v(x, x.shape[0], x.shape[1], x.shape[2] // H, H).transpose(1, 2),
            "your output is (B, hs, T, H): you used n_heads as the size of each head. n_heads is the number "
            "of heads H; each has hs = C // n_heads features: x.view(B, T, H, hs).transpose(1, 2)."),
    Mistake("transpose(1, 3)",
            lambda x, H: _v(x, x.shape[0], x.shape[1], H, x.shape[2] // H).transpose(1, 3),
            "you swapped axes 1 and 3 of (B, T, H, hs), giving (B, hs, H, T). Swap T and H, axes 1 and 2: "
            ".transpose(1, 2)."),
    Mistake("transpose(2, 3)",
            lambda x, H: _v(x, x.shape[0], x.shape[1], H, x.shape[2] // H).transpose(2, 3),
            "you swapped axes 2 and 3 of (B, T, H, hs), giving (B, T, hs, H). The head axis must come "
            "before T: .transpose(1, 2) → (B, H, T, hs)."),
    Mistake("positions last",
            lambda x, H: _v(x, x.shape[0], x.shape[1], H, x.shape[2] // H).permute(0, 2, 3, 1),
            "your output is (B, H, hs, T): each head's positions are columns. Keep them as rows, "
            "(B, H, T, hs): .permute(0, 2, 1, 3), which is .transpose(1, 2)."),
    Mistake("heads along T",
            lambda x, H: torch.cat(x.chunk(H, dim=-1), dim=1),
            "you concatenated the heads' slices along the positions, (B, H·T, hs). Put them on a new axis "
            "instead: torch.stack(x.chunk(H, dim=-1), dim=1) → (B, H, T, hs)."),
]


def _rearranged(candidates, what: str, view=None, viewed: str = "") -> Property:
    """Names the expression that produced ``got`` when it holds the input's numbers in other places.
    ``view(args, got)`` reshapes ``got`` first (described by ``viewed``) so the candidates can match it."""
    def test(args, got, expected):
        x = args[0]
        if got.dim() != expected.dim() and close(got.flatten(), expected.flatten()):
            return "axes joined wrongly", (
                f"your output has {got.dim()} axes, shape {tuple(got.shape)}, where {tuple(expected.shape)} is expected: "
                f"a flatten or reshape joined the wrong axes (flatten(2) joins H and hs after the transpose; "
                f"flatten(1) also swallows T).")
        if got.shape != expected.shape and close(got.flatten(), expected.flatten()):
            return "sizes in the wrong order", (
                f"your output has the right numbers in the right order but shape {tuple(got.shape)}, expected "
                f"{tuple(expected.shape)}: the sizes given to view/reshape are wrong. Did you unpack the shape in "
                f"the wrong order? {'x.shape is (B, T, C)' if x.dim() == 3 else 'y.shape is (B, H, T, hs)'}: "
                f"unpack it in that order ({'B, T, C = x.shape' if x.dim() == 3 else 'B, H, T, hs = y.shape'}).")
        if got.numel() != x.numel() or not close(got.flatten().sort().values, x.double().flatten().sort().values):
            return None
        seen = view(args, got) if view is not None else got
        for expr, make in candidates(x, *args[1:]):
            for p in itertools.permutations(range(4)):
                t = make().permute(*p)
                if t.shape == seen.shape and close(t, seen):
                    return "rearranged", (f"your output holds the right numbers in the wrong places: {viewed}it "
                                          f"equals {expr}.permute{p}. {what}")
        return "rearranged", f"your output holds the right numbers in the wrong places. {what}"
    return Property("rearranged", test)


def _split_candidates(x, H):
    B, T, C = x.shape
    hs = C // H
    return [("x.view(B, T, H, hs)", lambda: x.reshape(B, T, H, hs)),
            ("x.view(B, T, hs, H)", lambda: x.reshape(B, T, hs, H)),
            ("x.view(B, H, T, hs)", lambda: x.reshape(B, H, T, hs))]


_SPLIT_WHAT = "The right one is x.view(B, T, H, hs).transpose(1, 2): split the features, then swap T and H."


def check_split_heads(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x: (B, T, C), n_heads) → (B, H, T, hs) with out[b, h, t] = x[b, t, h·hs:(h+1)·hs]."""
    return check(
        "split_heads", fn, _split,
        trials=[Trial(_x(SIZES)),
                Trial(_x(OTHER), "hard-coded size", "right for the first sizes, wrong for others (here "
                      f"H={OTHER['H']}): read B, T, C from x.shape and use hs = C // n_heads, not a fixed number.")],
        mistakes=_SPLIT_MISTAKES, properties=[_rearranged(_split_candidates, _SPLIT_WHAT)],
        explain=lambda e: _explain(e, "x is (B, T, C)"), seed=seed, quiet=quiet,
    )


# --- merge_heads(y) -----------------------------------------------------------------------------------------

def _y(size):
    def make(g):
        B, T, H, hs = size["B"], size["T"], size["H"], size["hs"]
        return (torch.randn(B, H, T, hs, generator=g, dtype=F64),)
    return make


def _bthc(y):  # (B, T, C) from a (B, H, T, hs) tensor's sizes
    B, H, T, hs = y.shape
    return B, T, H * hs


_MERGE_MISTAKES = [
    Mistake("no transpose", lambda y: y.reshape(*_bthc(y)),
            "you reshaped (B, H, T, hs) straight to (B, T, C). The shape is right, but the memory order is "
            "head by head, so each output row mixes positions. Move the head axis back first, "
            "y.transpose(1, 2) → (B, T, H, hs), then .reshape(B, T, C)."),
    Mistake("not joined", lambda y: y.transpose(1, 2),
            "your output is (B, T, H, hs): the heads are back behind T but not joined. "
            "Finish with .reshape(B, T, H * hs)."),
    Mistake("merged as (hs, H)", lambda y: y.permute(0, 2, 3, 1).reshape(*_bthc(y)),
            "your output interleaves the heads' features (feature j of every head, then feature j+1, …). "
            "Head 0's hs features come first, then head 1's: y.transpose(1, 2).reshape(B, T, C)."),
    Mistake("heads reversed", lambda y: y.flip(1).transpose(1, 2).reshape(*_bthc(y)),
            "your heads are side by side in reverse order. Head 0 comes first: output features "
            "h·hs … (h+1)·hs − 1 belong to head h (the order split_heads used)."),
    Mistake("swapped T and hs", lambda y: y.transpose(2, 3).reshape(*_bthc(y)),
            "you swapped T and hs (axes 2 and 3) before reshaping. Swap H and T, axes 1 and 2: "
            "y.transpose(1, 2).reshape(B, T, C)."),
    Mistake("summed heads", lambda y: y.sum(dim=1),
            "you added the heads together, (B, T, hs). The heads sit side by side (concatenated) so that "
            "W_O sees all of them: (B, T, H·hs)."),
    Mistake("averaged heads", lambda y: y.mean(dim=1),
            "you averaged the heads, (B, T, hs). Concatenate them instead, giving (B, T, H·hs) = (B, T, C)."),
    Mistake("heads along T", lambda y: torch.cat(y.unbind(dim=1), dim=1),
            "you concatenated the heads along the positions, (B, H·T, hs). Concatenate along the features: "
            "torch.cat(y.unbind(1), dim=-1), or y.transpose(1, 2).reshape(B, T, C)."),
    Mistake("joined T and hs", lambda y: y.flatten(2),
            "you joined the T and hs axes, (B, H, T·hs). Join H and hs instead: move H next to hs with "
            ".transpose(1, 2), then .reshape(B, T, H * hs)."),
]


def _merge_candidates(y):
    B, H, T, hs = y.shape
    return [("y", lambda: y), ("y.reshape(B, T, H, hs)", lambda: y.reshape(B, T, H, hs)),
            ("y.reshape(B, H, hs, T)", lambda: y.reshape(B, H, hs, T))]


def _merge_rearranged() -> Property:
    def view(args, got):  # compare as (B, T, H, hs), where the candidates' permutations live
        B, H, T, hs = args[0].shape
        return got.reshape(B, T, H, hs)
    return _rearranged(_merge_candidates, "The right one is y.transpose(1, 2).reshape(B, T, H * hs).",
                       view, "viewed as (B, T, H, hs), ")


def check_merge_heads(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(y: (B, H, T, hs)) → (B, T, H·hs), out[b, t, h·hs:(h+1)·hs] = y[b, h, t]."""
    return check(
        "merge_heads", fn, _merge,
        trials=[Trial(_y(SIZES)),
                Trial(_y(OTHER), "hard-coded size", "right for the first sizes, wrong for others (here "
                      f"H={OTHER['H']}): read B, H, T, hs from y.shape instead of fixing a number.")],
        mistakes=_MERGE_MISTAKES, properties=[_merge_rearranged()],
        explain=lambda e: _explain(e, "y is (B, H, T, hs)"), seed=seed, quiet=quiet,
    )

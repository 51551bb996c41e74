"""Diagnosis by property for any checker: what a wrong answer *is*, measured against the reference, when no
listed slip matched, and which line a raw torch error most likely comes from.

    describe(got, expected, axes)   (key, hint) or None: part of a tuple returned, results swapped, axes
                                    permuted or transposed, one entry too few or too many along an axis,
                                    the reference times / plus / to the power of a fitted constant, shifted
                                    by one or flipped along an axis, normalised along another axis, right
                                    for some batch entries (rows) and wrong for others (module ``describe``)
    explain_raw(e)                  (key, hint) for a broadcast, matmul, reshape, dtype, index or unpacking
                                    error, quoting the learner's line that raised it (module ``errors``)
    checked(name, fn, reference, …) :func:`kqvlib.checks.check` with both: the chapter's own mistakes,
                                    properties and explanations come first, these only replace "wrong
                                    shape", "wrong values", NaN and the generic error hint; it also names an
                                    input changed in place, the right answer plus one of the inputs, and a
                                    float32 input answered in another dtype

``axes`` names the axes from the last one backwards, e.g. ("batch", "query", "key") for (B, T, S) scores.
"""
from __future__ import annotations

import inspect
import re

import torch

from kqvlib.checks import CheckResult, Property, check, close
from kqvlib.exercises.describe import _ORD, _GENERIC, _close, describe
from kqvlib.exercises.errors import explain_raw, learner_line


class KernelMissing(RuntimeError):
    """A NotImplementedError raised by torch itself (an operation missing for a dtype), not by the stub."""


def _names(fn, n):
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        names = []
    return (names + [f"argument {i}" for i in range(len(names), n)])[:n]


def _changed(before, after) -> bool:
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        return before.shape != after.shape or not bool(torch.equal(before, after))
    if isinstance(before, list) and isinstance(after, list):
        return before != after
    return False


def _plus_input(names):
    """The right answer plus (or minus) one of the inputs: a residual or a stray term added."""
    def test(args, got, expected):
        for a, n in zip(args, names):
            if isinstance(a, torch.Tensor) and a.shape == expected.shape and a.is_floating_point():
                for sign, word in ((1, "plus"), (-1, "minus")):
                    if close(got, expected + sign * a.double()) and not close(a.double(), torch.zeros_like(expected)):
                        why = (f"a residual or stray term ({n} + …) that does not belong here" if sign > 0 else
                               f"a term {n} + … is missing (a residual connection dropped)")
                        return "plus an input", f"your output is the right answer {word} the input {n}: {why}."
        return None
    return Property("plus an input", test)


def checked(name, fn, reference, trials, mistakes=(), *, axes=None, explain=None, seed=None, quiet=False,
            inputs_may_change=True, keep_dtype=None, properties=(), **kw) -> CheckResult:
    """:func:`kqvlib.checks.check`, with :func:`describe` for a wrong answer no listed slip or property named
    and :func:`explain_raw` for an error the chapter's ``explain`` did not name. Tensors changed in place are
    accepted (in-place code is a correct variant); with ``inputs_may_change=False`` a list changed in place fails;
    with ``keep_dtype=i`` the output must keep argument i's dtype
    when it is float32."""
    seen: dict = {}

    def ref(*a):
        seen["args"], seen["expected"] = a, reference(*a)
        return seen["expected"]

    def spy(*a):
        seen.pop("got", None)
        before = [x.clone() if isinstance(x, torch.Tensor) else list(x) if isinstance(x, list) else None for x in a]
        try:
            seen["got"] = fn(*a)
        except NotImplementedError as e:
            if "not implemented for" in str(e):  # torch's own, for a dtype: not the stub's bare raise
                raise KernelMissing(str(e)) from e
            raise
        if not inputs_may_change:
            hit = [i for i, (b, x) in enumerate(zip(before, a)) if b is not None and _changed(b, x)]
            if hit and "mutated" not in seen:
                seen["mutated"] = hit[0]
        return seen["got"]

    def expl(e):
        line = learner_line(e)
        if line and re.search(r"\.T\b", line) and re.search(r"size|shape|dimension|match", str(e)):
            return "batched .T", (f".T reverses *all* the axes of a tensor with a batch axis: transpose only the last "
                                  f"two, .transpose(-2, -1) or .mT. The line that raised it: `{line}`.")
        found = explain(e) if explain is not None else None
        if found is None:
            return explain_raw(e)
        return found if not line or line in found[1] else (found[0], f"{found[1]} The line that raised it: `{line}`.")

    names = _names(fn, 16)
    result = check(name, spy, ref, trials, mistakes, seed=seed, quiet=True, explain=expl,
                   properties=[_plus_input(names), *properties], **kw)
    got = seen.get("got")
    if result.key == "returned a list" and isinstance(got, (tuple, list)):
        i = next((i for i, g in enumerate(got) if _close(g, seen["expected"])), None)
        if i is not None:
            hint = (f"the {_ORD[i] if i < len(_ORD) else f'#{i + 1}'} of the {len(got)} things you returned is the "
                    f"right answer: return only it (not a tuple with the weights or other values).")
            result = CheckResult(False, "returned extra", f"✗ {name}: {hint}", {"hint": hint})
    if result.key in _GENERIC - {"exception"} and "got" in seen:
        found = describe(seen["got"], seen["expected"], axes)
        if found is not None:
            result = CheckResult(False, found[0], f"✗ {name}: {found[1]}", {"hint": found[1]})
    if result.passed and "mutated" in seen and not inputs_may_change:
        n = names[seen["mutated"]]
        if isinstance(seen["args"][seen["mutated"]], list):  # a list changed in place: the exercise wants a new one
            hint = (f"your answer is right, but your function changed the list {n} it was given (ids[i] = …, del, "
                    f"pop, append): the caller's {n} is modified. Build a new list instead.")
            result = CheckResult(False, "changed its input", f"✗ {name}: {hint}", {"hint": hint})
    if result.passed and keep_dtype is not None:
        wrong = _dtype_check(name, fn, reference, trials, keep_dtype, names)
        result = result if wrong is None else wrong
    if not quiet:
        print(result.message)
    return result


def _dtype_check(name, fn, reference, trials, i, names):
    """Call once on float32 inputs: the output must come back in argument i's dtype."""
    make = trials[0].make_inputs if isinstance(trials, (list, tuple)) else trials
    args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in make(torch.Generator().manual_seed(0))]
    try:
        out = fn(*args)
    except Exception:
        return None
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != args[i].dtype:
        hint = (f"right values, but for a float32 {names[i]} your output is {out.dtype}: something was computed in "
                f"another dtype and never cast back. Return {names[i]}'s dtype (build the angles or tables with "
                f"dtype={names[i]}.dtype, or finish with .to({names[i]}.dtype)).")
        return CheckResult(False, "wrong dtype", f"✗ {name}: {hint}", {"hint": hint})
    return None





__all__ = ["describe", "explain_raw", "learner_line", "checked"]

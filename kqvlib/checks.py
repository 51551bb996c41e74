"""The exercise-checker mechanism.

A checker runs the learner's function on fresh random inputs, compares it with the reference, and prints
one line: ``✓ …`` or a *specific* hint, taken from (in this order)

1. known mistakes: a :class:`Mistake` is a wrong variant of the reference (softmax over the wrong axis, no
   √d_k, …); when the learner's output matches its output, its hint is printed;
2. the kind of input: a :class:`Trial` with a hint (huge scores, an extra batch axis) names what goes wrong
   when the learner is right on every earlier kind of input and wrong on this one;
3. properties: a :class:`Property` reads the wrong output itself (rows that do not sum to 1, negative
   weights, the right answer times a constant, a transpose, …), so an unlisted slip still gets a hint
   that points at the step that went wrong;
4. "wrong shape", NaN, and last "right shape, wrong values".

A stub that still raises ``NotImplementedError`` prints "not attempted yet"; any other error is reported
hint first, raw error after: ``✗ attention: <hint> (your code raised RuntimeError: …)``. A checker never
raises, so a notebook always runs to the end. Every checker has the signature
``check_xxx(fn, *, seed=None, quiet=False)``; for example::

    def check_softmax(fn, *, seed=None, quiet=False):
        return check("softmax", fn, reference=kqvlib.softmax,
                     trials=lambda g: (torch.randn(4, 7, generator=g, dtype=torch.float64),),
                     mistakes=[Mistake("wrong axis", lambda x: kqvlib.softmax(x, dim=0), "Normalise along the last axis.")],
                     seed=seed, quiet=quiet)
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

Inputs = tuple  # the positional arguments for one call


@dataclass
class Mistake:
    """A likely wrong answer: ``fn`` computes it (same arguments as the reference), ``hint`` explains it."""

    key: str
    fn: Callable[..., Any]
    hint: str


@dataclass
class Trial:
    """One kind of input to try. ``hint`` is printed when the learner fails *only* on this kind (e.g. huge
    scores: "subtract the max before exp")."""

    make_inputs: Callable[[torch.Generator], Inputs]
    key: str = "ordinary"
    hint: str = ""


@dataclass
class Property:
    """A diagnosis of a finite wrong output that no mistake matched: ``test(args, got, expected)`` (outputs
    as float64 tensors) returns a hint, or ``(key, hint)``, when it explains ``got``; else None."""

    key: str
    test: Callable[[Inputs, Any, Any], "str | tuple[str, str] | None"]


@dataclass
class CheckResult:
    """What a checker found. ``key`` is "ok", "not attempted", a :class:`Mistake` key, or a failure kind."""

    passed: bool
    key: str
    message: str
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """The checker already printed its line; show nothing more in a notebook."""


def _as_tensor(x: Any) -> Any:
    if isinstance(x, np.ndarray) or isinstance(x, (float, int, np.floating)):
        try:  # object or complex arrays stay as they are, equal to nothing
            return x if np.iscomplexobj(x) else torch.as_tensor(np.asarray(x, dtype=np.float64).copy())
        except (TypeError, ValueError):
            return x
    if isinstance(x, (tuple, list)):
        return type(x)(_as_tensor(t) for t in x)
    return x


def _fresh(args: Inputs, numpy: bool) -> Inputs:
    """Copies of the inputs for the learner, so code that changes them in place harms nothing."""
    return tuple((a.clone().numpy() if numpy else a.clone()) if isinstance(a, torch.Tensor) else a for a in args)


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    a, b = _as_tensor(a), _as_tensor(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y, atol, rtol) for x, y in zip(a, b))
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a.shape != b.shape or a.is_complex() or b.is_complex():
        return False
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=False))


def _shape(x: Any) -> Any:
    x = _as_tensor(x)
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shape(t) for t in x)
    return type(x).__name__


def _finite_tensor(x: Any) -> torch.Tensor | None:
    """x as a finite float64 tensor, or None (NaN, inf, not a tensor)."""
    x = _as_tensor(x)
    if not isinstance(x, torch.Tensor) or x.is_complex():
        return None
    x = x.detach().double()
    return x if bool(torch.isfinite(x).all()) else None


def _has_nan(x: Any) -> bool:
    x = _as_tensor(x)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return bool(torch.isnan(x).any() or torch.isinf(x).any())
    if isinstance(x, (tuple, list)):
        return any(_has_nan(t) for t in x)
    return False


def error_text(e: BaseException) -> str:
    """'RuntimeError: mat1 and mat2 shapes cannot be multiplied (5x6 and 4x6)': the first line only."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0].rstrip('.') if lines else ''}".rstrip(": ")


def raised(name: str, key: str, hint: str, details: dict) -> CheckResult:
    """The result for a learner's function that raised: the hint first, the raw error after it."""
    return CheckResult(False, key, f"✗ {name}: {hint.rstrip()} (your code raised {details['error']})",
                       {**details, "hint": hint})


_GENERIC_ERROR_HINT = ("your function stopped with an error before returning. Run it on a small "
                       "input and read which line fails")


def check(
    name: str, fn: Callable[..., Any], reference: Callable[..., Any],
    trials: Sequence[Trial] | Callable[[torch.Generator], Inputs], mistakes: Sequence[Mistake] = (),
    numpy: bool = False, repeats: int = 3, atol: float = 1e-5, rtol: float = 1e-4, nan_hint: str = "",
    seed: int | None = None, quiet: bool = False, diagnose: Trial | None = None,
    diagnose_mistakes: Sequence[Mistake] = (), properties: Sequence[Property] = (),
    explain: Callable[[BaseException], "tuple[str, str] | None"] | None = None,
) -> CheckResult:
    """Run ``fn`` against ``reference`` and print ✓ or a specific hint; never raises.

    trials: the kinds of input to try (a bare ``make_inputs(generator)`` is one ordinary trial), each
        ``repeats`` times with fresh float64 inputs (a new seed on every call unless ``seed`` is given).
    mistakes: known wrong variants, in order; the first whose output the learner's matches gives its hint.
    properties: diagnoses of a finite wrong output that matches no mistake, in order.
    numpy: pass NumPy arrays to ``fn`` instead of tensors (its result may be either).
    nan_hint: what to say when the learner's output holds NaN or inf where the reference's does not.
    diagnose: when ``fn`` raises, it runs once more on these inputs (typically square ones, where a product
        in the wrong order still fits); if it then matches one of ``diagnose_mistakes``, that is the cause.
    explain: else ``explain(error)`` may return ``(key, hint)`` from the error itself (a missing keepdim, …).
    """
    try:
        result = _check(name, fn, reference, trials, mistakes, numpy, repeats, atol, rtol, nan_hint,
                        seed, diagnose, diagnose_mistakes, properties, explain)
    except Exception as e:  # a bug in a checker must not stop the learner's notebook either
        result = CheckResult(False, "checker error", f"✗ {name}: the checker itself failed ({error_text(e)}).")
    if not quiet:
        print(result.message)
    return result


def _check(name, fn, reference, trials, mistakes, numpy, repeats, atol, rtol, nan_hint, seed,
           diagnose, diagnose_mistakes, properties, explain) -> CheckResult:
    if callable(trials) and not isinstance(trials, Trial):
        trials = [Trial(trials)]
    gen = torch.Generator().manual_seed(secrets.randbits(62) if seed is None else seed)
    for i, trial in enumerate(trials):
        for _ in range(repeats):
            args = trial.make_inputs(gen)
            result = _one_call(name, fn, reference, args, trial if i else Trial(trial.make_inputs),
                               mistakes, properties, numpy, atol, rtol, nan_hint)
            if result is None:
                continue
            if result.key == "exception":
                result = _explain_error(name, fn, reference, result, trial if i else None, numpy, atol,
                                        rtol, seed, diagnose, diagnose_mistakes, explain)
            return result
    return CheckResult(True, "ok", f"✓ {name}: correct on {len(trials) * repeats} random tests.")


def _explain_error(name, fn, reference, result, trial, numpy, atol, rtol, seed, diagnose,
                   diagnose_mistakes, explain) -> CheckResult:
    """Name the likely cause of an error, most specific first; the raw error goes after the hint."""
    details = result.details
    if trial is not None and trial.hint:  # right on every earlier kind of input, broken by this one
        return raised(name, trial.key, trial.hint, details)
    if diagnose is not None:
        found = _check(name, fn, reference, [diagnose], diagnose_mistakes, numpy, 1, atol, rtol, "",
                       seed, None, (), (), None)
        if found.key in {m.key for m in diagnose_mistakes}:
            return raised(name, found.key, found.details["hint"], details)
    named = explain(details["exc"]) if explain is not None else None
    if named is not None:
        return raised(name, named[0], named[1], details)
    return raised(name, "exception", _GENERIC_ERROR_HINT, details)


def _one_call(name, fn, reference, args, trial, mistakes, properties, numpy, atol, rtol,
              nan_hint) -> CheckResult | None:
    """None when the learner's answer is right on these inputs, else what went wrong."""
    expected = reference(*args)
    try:
        got = fn(*_fresh(args, numpy))
    except NotImplementedError:
        return CheckResult(False, "not attempted", f"… {name}: not attempted yet (the stub still raises NotImplementedError).")
    except Exception as e:  # the learner's bug is reported, never raised
        return CheckResult(False, "exception", f"✗ {name}: {_GENERIC_ERROR_HINT}.", {"error": error_text(e), "exc": e})
    if got is None:
        return CheckResult(False, "returned None", f"✗ {name}: your function returned None. Did you forget `return`?")
    if _close(got, expected, atol, rtol):
        return None
    if isinstance(got, (list, tuple)) and isinstance(expected, torch.Tensor):
        return CheckResult(False, "returned a list", f"✗ {name}: you returned a Python {type(got).__name__}, not "
                                                     f"one array: build one (np.stack, np.array or torch.stack).")
    for m in mistakes:
        try:
            wrong = m.fn(*args)
        except Exception:
            continue
        if _close(got, wrong, atol, rtol) and not _close(wrong, expected, atol, rtol):
            return CheckResult(False, m.key, f"✗ {name}: {m.hint}", {"hint": m.hint})
    if trial.hint:  # right on the earlier kinds of input, wrong on this one
        return CheckResult(False, trial.key, f"✗ {name}: {trial.hint}", {"hint": trial.hint})
    finite, exp = _finite_tensor(got), _finite_tensor(expected)
    if finite is not None and exp is not None:
        for p in properties:
            try:
                found = p.test(args, finite, exp)
            except Exception:
                continue
            if found:
                key, hint = found if isinstance(found, tuple) else (p.key, found)
                return CheckResult(False, key, f"✗ {name}: {hint}", {"hint": hint})
    if _shape(got) != _shape(expected):
        return CheckResult(
            False, "wrong shape", f"✗ {name}: your output has shape {_shape(got)}, expected {_shape(expected)}."
        )
    if _has_nan(got) and not _has_nan(expected):
        return CheckResult(False, "nan", f"✗ {name}: your output contains NaN or inf. {nan_hint}".rstrip())
    return CheckResult(False, "wrong values", f"✗ {name}: right shape, wrong values. Compare with the formula step by step.")


# --- helpers for properties ---------------------------------------------------------------------

def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> bool:
    """Same shape and allclose (float64)."""
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def constant_factor(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """c when ``got`` is ``c * expected`` for one number c that is not 1 (least squares, then checked)."""
    if got.shape != expected.shape or float((expected * expected).sum()) == 0.0:
        return None
    c = float((got * expected).sum() / (expected * expected).sum())
    return c if abs(c - 1) > 1e-3 and close(got, c * expected) else None


def constant_offset(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """c when ``got`` is ``expected + c`` for one number c that is not 0."""
    if got.shape != expected.shape:
        return None
    c = float((got - expected).mean())
    return c if abs(c) > 1e-6 and close(got, expected + c) else None


def transposed(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """``got`` is ``expected`` with its last two axes swapped (and it is not already right)."""
    return (expected.dim() >= 2 and got.shape == expected.mT.shape and close(got, expected.mT)
            and not close(got, expected))


def permuted(got: torch.Tensor, expected: torch.Tensor, dim: int = -1) -> bool:
    """Each slice of ``got`` along ``dim`` holds the right numbers, in another order."""
    if got.shape != expected.shape or close(got, expected):
        return False
    return close(got.sort(dim=dim).values, expected.sort(dim=dim).values)

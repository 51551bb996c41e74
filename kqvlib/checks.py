"""The exercise-checker mechanism.

A checker runs the learner's function on fresh random inputs, compares it with the reference, and
prints one line: ``✓ …`` or a *specific* hint. The hint comes from known mistakes: each
:class:`Mistake` is a wrong variant of the reference (softmax over the wrong axis, no √d_k, …); when
the learner's output matches a mistake's output, that mistake's hint is printed.

A stub that still raises ``NotImplementedError`` prints "not attempted yet"; any other exception is
reported as a hint too. A checker never raises, so a notebook always runs to the end.

Writing a checker for an exercise::

    def check_softmax(fn):
        return check(
            "softmax", fn, reference=kqvlib.softmax,
            trials=lambda g: (torch.randn(4, 7, generator=g, dtype=torch.float64),),
            mistakes=[Mistake("wrong axis", lambda x: kqvlib.softmax(x, dim=0), "Normalise along the last axis.")],
        )
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
    """One kind of input to try. ``hint`` is printed when the learner fails *only* on this kind
    (e.g. huge scores: "subtract the max before exp")."""

    make_inputs: Callable[[torch.Generator], Inputs]
    key: str = "ordinary"
    hint: str = ""


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
        return torch.as_tensor(np.asarray(x))
    if isinstance(x, (tuple, list)):
        return type(x)(_as_tensor(t) for t in x)
    return x


def _to_numpy(args: Inputs) -> Inputs:
    return tuple(a.numpy() if isinstance(a, torch.Tensor) else a for a in args)


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    a, b = _as_tensor(a), _as_tensor(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y, atol, rtol) for x, y in zip(a, b))
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a.shape != b.shape:
        return False
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=False))


def _shape(x: Any) -> Any:
    x = _as_tensor(x)
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shape(t) for t in x)
    return type(x).__name__


def _has_nan(x: Any) -> bool:
    x = _as_tensor(x)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return bool(torch.isnan(x).any() or torch.isinf(x).any())
    if isinstance(x, (tuple, list)):
        return any(_has_nan(t) for t in x)
    return False


def check(
    name: str,
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    trials: Sequence[Trial] | Callable[[torch.Generator], Inputs],
    mistakes: Sequence[Mistake] = (),
    numpy: bool = False,
    repeats: int = 3,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    nan_hint: str = "",
    seed: int | None = None,
    quiet: bool = False,
    diagnose: Trial | None = None,
    diagnose_mistakes: Sequence[Mistake] = (),
) -> CheckResult:
    """Run ``fn`` against ``reference`` and print ✓ or a specific hint; never raises.

    trials: the kinds of input to try (a bare ``make_inputs(generator)`` is one ordinary trial).
        Each kind is tried ``repeats`` times with fresh random inputs (a new seed on every call
        unless ``seed`` is given), all in float64.
    mistakes: known wrong variants, checked in order; the first whose output the learner's matches
        gives its hint.
    numpy: pass NumPy arrays to ``fn`` instead of tensors (its result may be either).
    nan_hint: what to say when the learner's output holds NaN or inf where the reference's does not.
    diagnose: when ``fn`` raises, it runs once more on these inputs (typically square ones, where a
        product in the wrong order still fits); if its output then matches one of ``diagnose_mistakes``,
        the hint names that mistake as the likely cause of the error.
    """
    if callable(trials) and not isinstance(trials, Trial):
        trials = [Trial(trials)]
    gen = torch.Generator().manual_seed(secrets.randbits(62) if seed is None else seed)
    result: CheckResult | None = None
    for trial in trials:
        for _ in range(repeats):
            args = trial.make_inputs(gen)
            result = _one_call(name, fn, reference, args, trial, mistakes, numpy, atol, rtol, nan_hint)
            if result is not None:
                break
        if result is not None:
            break
    if result is None:
        result = CheckResult(True, "ok", f"✓ {name}: correct on {len(trials) * repeats} random tests.")
    if result.key == "exception" and diagnose is not None:
        found = check(name, fn, reference, [diagnose], diagnose_mistakes, numpy=numpy, repeats=1,
                      atol=atol, rtol=rtol, seed=seed, quiet=True)
        if found.key in {m.key for m in diagnose_mistakes}:
            result = CheckResult(False, found.key, f"✗ {name}: your function raised {result.details['error']}. "
                                                   f"Likely cause: {found.details['hint']}", result.details)
    if not quiet:
        print(result.message)
    return result


def _one_call(name, fn, reference, args, trial, mistakes, numpy, atol, rtol, nan_hint) -> CheckResult | None:
    """None when the learner's answer is right on these inputs, else what went wrong."""
    expected = reference(*args)
    try:
        got = fn(*(_to_numpy(args) if numpy else args))
    except NotImplementedError:
        return CheckResult(False, "not attempted", f"… {name}: not attempted yet (the stub still raises NotImplementedError).")
    except Exception as e:  # the learner's bug is reported, never raised
        error = f"{type(e).__name__}: {e}"
        return CheckResult(False, "exception", f"✗ {name}: your function raised {error}", {"error": error, "exc": e})
    if got is None:
        return CheckResult(False, "returned None", f"✗ {name}: your function returned None. Did you forget `return`?")
    if _close(got, expected, atol, rtol):
        return None
    for m in mistakes:
        try:
            wrong = m.fn(*args)
        except Exception:
            continue
        if _close(got, wrong, atol, rtol) and not _close(wrong, expected, atol, rtol):
            return CheckResult(False, m.key, f"✗ {name}: {m.hint}", {"hint": m.hint})
    if _shape(got) != _shape(expected):
        return CheckResult(
            False, "wrong shape", f"✗ {name}: your output has shape {_shape(got)}, expected {_shape(expected)}."
        )
    if trial.hint:  # right on the earlier kinds of input, wrong on this one
        return CheckResult(False, trial.key, f"✗ {name}: {trial.hint}")
    if _has_nan(got) and not _has_nan(expected):
        return CheckResult(False, "nan", f"✗ {name}: your output contains NaN or inf. {nan_hint}".rstrip())
    return CheckResult(False, "wrong values", f"✗ {name}: right shape, wrong values. Compare with the formula step by step.")

"""Chapter 10 checker for clipping the gradient's global norm by hand (``check_clip_grad_norm``). The
chapter's docstring is in :mod:`kqvlib.exercises.ch10`.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Trial
from kqvlib.exercises.diagnose import checked as check

F64 = torch.float64
SHAPES = [(4, 3), (3,), (2, 5)]


def _norm(grads):
    return torch.sqrt(sum((g * g).sum() for g in grads))


def _clip(grads, max_norm):
    total = _norm(grads)
    scale = min(1.0, max_norm / float(total))
    return [g * scale for g in grads], total


def _scaled(grads, scale):
    return [g * scale for g in grads]


def _inputs(big: bool):
    def make(g: torch.Generator):
        grads = [torch.randn(*s, generator=g, dtype=F64) for s in SHAPES]
        total = float(_norm(grads))
        return grads, total * (0.3 + 0.4 * float(torch.rand(1, generator=g))) if big else total * 2.5
    return make


_MISTAKES = [
    Mistake("each tensor on its own", lambda gr, m: ([g * min(1.0, m / float(g.norm())) for g in gr], _norm(gr)),
            "you clipped each gradient tensor by its own norm. Clipping is global: one norm over all the "
            "tensors together, sqrt(sum of every squared entry), and one factor for all of them."),
    Mistake("sum of norms", lambda gr, m: (_scaled(gr, min(1.0, m / float(sum(g.norm() for g in gr)))),
                                            sum(g.norm() for g in gr)),
            "your total norm is the sum of the tensors' norms. The global norm is the square root of the sum "
            "of their *squared* norms: torch.sqrt(sum((g ** 2).sum() for g in grads))."),
    Mistake("squared norm", lambda gr, m: (_scaled(gr, min(1.0, m / float(_norm(gr) ** 2))), _norm(gr) ** 2),
            "your total is the squared norm: take its square root."),
    Mistake("always rescaled", lambda gr, m: (_scaled(gr, m / float(_norm(gr))), _norm(gr)),
            "you rescale every time, so small gradients are scaled *up* to max_norm. Clipping only shrinks: "
            "the factor is min(1, max_norm / total_norm)."),
    Mistake("norm after clipping", lambda gr, m: (_clip(gr, m)[0], _norm(_clip(gr, m)[0])),
            "the clipped gradients are right, but you returned their norm after clipping. Return the norm "
            "before clipping (what torch.nn.utils.clip_grad_norm_ returns: it tells how large it was)."),
    Mistake("factor inverted", lambda gr, m: (_scaled(gr, min(1.0, float(_norm(gr)) / m)), _norm(gr)),
            "your factor is total_norm / max_norm, upside down: scale by max_norm / total_norm (at most 1)."),
    Mistake("max instead of min", lambda gr, m: (_scaled(gr, max(1.0, m / float(_norm(gr)))), _norm(gr)),
            "you took max(1, max_norm / total_norm): large gradients are left alone and small ones scaled up. "
            "Use min(1, max_norm / total_norm)."),
]


def _explain(e: BaseException):
    if "only one element tensors" in str(e) or "a Tensor with" in str(e):
        return "list as tensor", ("grads is a Python list of tensors of different shapes: loop over it (or "
                                  "torch.cat([g.flatten() for g in grads])) rather than treating it as one tensor.")
    return None


def check_clip_grad_norm(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(grads: list of tensors, max_norm) → (clipped list, total norm before clipping): every tensor times
    min(1, max_norm / ‖all of grads‖₂)."""
    return check("clip_grad_norm", fn, _clip,
                 trials=[Trial(_inputs(True)),
                         Trial(_inputs(False), "small gradients changed",
                               "right when the norm is above max_norm, but you changed gradients whose norm is "
                               "already below it: clipping only shrinks, the factor is min(1, max_norm / norm).")],
                 mistakes=_MISTAKES, explain=_explain, inputs_may_change=True, seed=seed, quiet=quiet)


__all__ = ["check_clip_grad_norm"]

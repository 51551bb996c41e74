"""Checkers for chapter 10: training a GPT.

    check_lr_at(fn)            lr_at(step, warmup_steps, max_steps, lr, min_lr): linear warmup to lr over the
                               first warmup_steps steps (step 0 already trains, at lr / warmup_steps), half a
                               cosine from lr down to min_lr between the end of warmup and max_steps, min_lr after
    check_wsd_lr(fn)           wsd_lr(step, warmup_steps, decay_steps, max_steps, lr, min_lr): the same warmup,
                               then lr held (the stable phase) until max_steps − decay_steps, then a straight line
                               down to min_lr at max_steps, min_lr after
    check_clip_grad_norm(fn)   clip_grad_norm(grads, max_norm) → (clipped grads, total norm): one global L2 norm
                               over every tensor, every tensor times min(1, max_norm / norm)

A schedule is checked as a whole curve (every step from 0 to a few past max_steps, random sizes all
different), so each slip shows as a curve of its own shape; a curve no listed slip explains is diagnosed
phase by phase (which phase goes wrong first, and how: a factor, an offset, one step early or late).

One module per group: ``schedule`` (lr_at, wsd_lr) and ``clip`` (clip_grad_norm).
"""
from kqvlib.exercises.ch10.clip import check_clip_grad_norm
from kqvlib.exercises.ch10.schedule import MISTAKES, check_lr_at, check_wsd_lr

__all__ = ["check_lr_at", "check_wsd_lr", "check_clip_grad_norm"]

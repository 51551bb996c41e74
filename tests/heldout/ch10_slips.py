"""Held-out learner slips for chapter 10 (training): the learning-rate schedule lr_at."""
import math

# ---------------------------------------------- check_lr_at: lr_at(step, warmup_steps, max_steps, lr, min_lr)


def lr_progress_over_max_steps(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_no_clamp(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (max_steps - warmup_steps)  # > 1 after max_steps
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_decays_to_zero(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress)) * lr


def lr_no_half(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + math.cos(math.pi * progress) * (lr - min_lr)


def lr_warmup_boundary_le(step, warmup_steps, max_steps, lr, min_lr):
    if step <= warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_no_pi(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + 0.5 * (1 + math.cos(progress)) * (lr - min_lr)


def lr_linear_decay(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return lr - progress * (lr - min_lr)


def lr_one_minus_cos(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + 0.5 * (1 - math.cos(math.pi * progress)) * (lr - min_lr)


SLIPS = [
    ("check_lr_at", "progress_over_max_steps", lr_progress_over_max_steps,
     "Divided the decay progress by max_steps instead of by the decay length max_steps - warmup_steps."),
    ("check_lr_at", "no_clamp", lr_no_clamp,
     "Did not clamp the progress at 1, so past max_steps the cosine climbs back up instead of staying at min_lr."),
    ("check_lr_at", "decays_to_zero", lr_decays_to_zero,
     "Ignored min_lr in the cosine: 0.5 * (1 + cos) * lr decays to 0."),
    ("check_lr_at", "no_half", lr_no_half,
     "Wrote min_lr + cos(pi * progress) * (lr - min_lr), forgetting 0.5 * (1 + ...), so it goes below min_lr."),
    ("check_lr_at", "warmup_boundary_le", lr_warmup_boundary_le,
     "Used step <= warmup_steps for the warmup, so step warmup_steps gets lr * (w + 1) / w, above the peak."),
    ("check_lr_at", "no_pi", lr_no_pi,
     "Forgot the pi inside the cosine: cos(progress) instead of cos(pi * progress)."),
    ("check_lr_at", "linear_decay", lr_linear_decay,
     "Decayed linearly from lr to min_lr instead of along half a cosine."),
    ("check_lr_at", "one_minus_cos", lr_one_minus_cos,
     "Used 0.5 * (1 - cos) instead of 0.5 * (1 + cos), so after warmup the rate drops to min_lr and climbs back to lr."),
]

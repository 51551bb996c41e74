"""Held-out learner slips for chapter 7 (positions): sinusoidal table and RoPE (paper layout)."""
import math

import torch

f64 = torch.float64

# ---------------------------------------------- check_sinusoidal_encoding: sinusoidal_encoding(T, d_model)


def _table(p, omega_sin, omega_cos, T, d_model, dtype=f64):
    pe = torch.zeros(T, d_model, dtype=dtype)
    pe[:, 0::2] = torch.sin(p * omega_sin)
    pe[:, 1::2] = torch.cos(p * omega_cos)
    return pe


def sin_base_1000(T, d_model):
    p = torch.arange(T, dtype=f64)[:, None]
    omega = 1000.0 ** (-torch.arange(0, d_model, 2, dtype=f64) / d_model)
    return _table(p, omega, omega, T, d_model)


def sin_positive_exponent(T, d_model):
    p = torch.arange(T, dtype=f64)[:, None]
    omega = 10000.0 ** (torch.arange(0, d_model, 2, dtype=f64) / d_model)
    return _table(p, omega, omega, T, d_model)


def sin_two_counted_twice(T, d_model):
    p = torch.arange(T, dtype=f64)[:, None]
    i2 = torch.arange(0, d_model, 2, dtype=f64)  # already 2i
    omega = 10000.0 ** (-2 * i2 / d_model)  # … and multiplied by 2 again
    return _table(p, omega, omega, T, d_model)


def sin_per_column_omega(T, d_model):
    p = torch.arange(T, dtype=f64)[:, None]
    omega = 10000.0 ** (-torch.arange(d_model, dtype=f64) / d_model)  # one per column j
    return _table(p, omega[0::2], omega[1::2], T, d_model)


def sin_int_table(T, d_model):
    p = torch.arange(T)[:, None]  # int64
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=f64) / d_model)
    pe = torch.zeros(T, d_model, dtype=p.dtype)  # int64 table: values truncated
    pe[:, 0::2] = torch.sin(p * omega)
    pe[:, 1::2] = torch.cos(p * omega)
    return pe


def sin_log10(T, d_model):
    p = torch.arange(T, dtype=f64)[:, None]
    omega = torch.exp(torch.arange(0, d_model, 2, dtype=f64) * (-math.log10(10000.0) / d_model))
    return _table(p, omega, omega, T, d_model)


def sin_linspace_positions(T, d_model):
    p = torch.linspace(0, T, T, dtype=f64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=f64) / d_model)
    return _table(p, omega, omega, T, d_model)


# ----------------------------------------------------------------- check_rotate: rotate(x, positions)


def _angles(x, positions, two=1.0):
    d = x.shape[-1]
    theta = 10000.0 ** (-two * torch.arange(0, d, 2, dtype=f64) / d)
    a = positions.to(f64)[:, None] * theta
    return a.cos().to(x.dtype), a.sin().to(x.dtype)


def rot_reverse_direction(x, positions):
    cos, sin = _angles(x, positions)
    xe, xo = x[..., 0::2], x[..., 1::2]
    ye = xe * cos + xo * sin
    yo = -xe * sin + xo * cos
    return torch.stack([ye, yo], dim=-1).flatten(-2)


def rot_ignores_positions(x, positions):
    cos, sin = _angles(x, torch.arange(x.shape[-2]))
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], dim=-1).flatten(-2)


def rot_two_counted_twice(x, positions):
    cos, sin = _angles(x, positions, two=2.0)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], dim=-1).flatten(-2)


def rot_sequential_update(x, positions):
    cos, sin = _angles(x, positions)
    y = x.clone()
    y[..., 0::2] = y[..., 0::2] * cos - y[..., 1::2] * sin
    y[..., 1::2] = y[..., 0::2] * sin + y[..., 1::2] * cos  # reads the already-rotated evens
    return y


def rot_in_place_on_input(x, positions):
    cos, sin = _angles(x, positions)
    xe, xo = x[..., 0::2].clone(), x[..., 1::2].clone()
    x[..., 0::2] = xe * cos - xo * sin
    x[..., 1::2] = xe * sin + xo * cos
    return x


def rot_angles_transposed(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=f64) / d)
    a = theta[:, None] * positions.to(f64)[None, :]  # (d/2, T)
    cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], dim=-1).flatten(-2)


def rot_returns_float64(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=f64) / d)
    a = positions.to(f64)[:, None] * theta
    cos, sin = a.cos(), a.sin()  # float64, never cast back
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], dim=-1).flatten(-2)


SLIPS = [
    ("check_sinusoidal_encoding", "base_1000", sin_base_1000,
     "Used 1000 instead of 10000 as the base of the frequencies."),
    ("check_sinusoidal_encoding", "positive_exponent", sin_positive_exponent,
     "Dropped the minus sign: omega_i = 10000^(+2i/d), so the frequencies grow instead of shrink."),
    ("check_sinusoidal_encoding", "two_counted_twice", sin_two_counted_twice,
     "Took arange(0, d, 2) (already 2i) and multiplied by 2 again, giving exponent 4i/d."),
    ("check_sinusoidal_encoding", "per_column_omega", sin_per_column_omega,
     "Computed one frequency per column j (10000^(-j/d)), so each cosine uses the next column's frequency instead of its pair's."),
    ("check_sinusoidal_encoding", "int_table", sin_int_table,
     "Allocated the table with the integer dtype of arange(T), so every sine and cosine is truncated to an integer."),
    ("check_sinusoidal_encoding", "log10", sin_log10,
     "Wrote the exp form with math.log10(10000) instead of the natural log."),
    ("check_sinusoidal_encoding", "linspace_positions", sin_linspace_positions,
     "Made positions with linspace(0, T, T), so they are spaced T/(T-1) apart instead of 0, 1, ..., T-1."),

    ("check_rotate", "reverse_direction", rot_reverse_direction,
     "Rotated by -p*theta (signs of the sine terms swapped), turning the pairs clockwise."),
    ("check_rotate", "ignores_positions", rot_ignores_positions,
     "Ignored the positions argument and used arange(T), so positions that do not start at 0 are wrong."),
    ("check_rotate", "two_counted_twice", rot_two_counted_twice,
     "Took theta_i = 10000^(-2*(2i)/d), multiplying arange(0, d, 2) by 2 again."),
    ("check_rotate", "sequential_update", rot_sequential_update,
     "Overwrote the even features first and then computed the odd ones from the already-rotated evens."),
    ("check_rotate", "in_place_on_input", rot_in_place_on_input,
     "Wrote the rotated pairs back into x itself, so the caller's tensor is modified."),
    ("check_rotate", "angles_transposed", rot_angles_transposed,
     "Built the angle table as (d/2, T) instead of (T, d/2), so it does not line up with x."),
    ("check_rotate", "returns_float64", rot_returns_float64,
     "Computed cos/sin in float64 and never cast back, so a float32 input gives a float64 output."),
]

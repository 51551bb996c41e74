"""Chapter 8's checker for ``block_forward(x, ln1, attn, ln2, mlp)``: see :mod:`kqvlib.exercises.ch08`."""
from __future__ import annotations

import torch

from kqvlib.block import MLP, LayerNorm
from kqvlib.checks import CheckResult, Mistake, Property, Trial, close
from kqvlib.exercises.diagnose import checked as check
from kqvlib.exercises.common import explain_error
from kqvlib.multihead import MultiHeadAttention

__all__ = ["check_block_forward"]

F64 = torch.float64

B, T, C, H = 2, 5, 12, 3  # every size different; head size 4


@torch.no_grad()
def _randomise(module: torch.nn.Module, g: torch.Generator) -> torch.nn.Module:
    """float64 copies of the parameters drawn from ``g``: gains near 1, biases and weights of order 1/√fan_in."""
    module = module.to(F64).eval()
    for name, p in module.named_parameters():
        if isinstance(module, LayerNorm):
            p.copy_((1.0 if name == "weight" else 0.0) + 0.4 * torch.randn(p.shape, generator=g, dtype=F64))
        elif p.dim() == 2:
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / p.shape[1] ** 0.5)
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=F64))
    return module


def _block_inputs(g: torch.Generator):
    x = 1.5 + 2.0 * torch.randn(B, T, C, generator=g, dtype=F64)  # (B, T, C): far from normalised
    ln1, ln2 = _randomise(LayerNorm(C), g), _randomise(LayerNorm(C), g)
    attn = _randomise(MultiHeadAttention(C, H, causal=True), g)
    mlp = _randomise(MLP(C), g)
    return x, ln1, attn, ln2, mlp


def _block(x, ln1, attn, ln2, mlp):
    x = x + attn(ln1(x))  # (B, T, C): attention reads the normalised stream, its output is added
    return x + mlp(ln2(x))  # (B, T, C): the same for the MLP


def _post_ln(x, ln1, attn, ln2, mlp):
    x = ln1(x + attn(x))
    return ln2(x + mlp(x))


def _residual_around_norm(x, ln1, attn, ln2, mlp):
    h = ln1(x)
    x = h + attn(h)
    h = ln2(x)
    return h + mlp(h)


def _mlp_first(first, second):
    def fn(x, ln1, attn, ln2, mlp):
        norms = {"ln1": ln1, "ln2": ln2}
        x = x + mlp(norms[first](x))
        return x + attn(norms[second](x))
    return fn


def _block_with(norm_a, norm_b):
    """The right block, with other norms: ``norm_a(ln1, ln2)`` before attention, ``norm_b`` before the MLP."""
    def fn(x, ln1, attn, ln2, mlp):
        x = x + attn(norm_a(ln1, ln2)(x))
        return x + mlp(norm_b(ln1, ln2)(x))
    return fn


_FIRST, _SECOND, _NONE = (lambda a, b: a), (lambda a, b: b), (lambda a, b: (lambda x: x))


_MLP_FIRST_HINT = ("the MLP runs before attention. Attention comes first (the positions exchange "
                   "information), then the MLP works on each position: x = x + attn(ln1(x)), then "
                   "x + mlp(ln2(x)).")

_BLOCK_MISTAKES = [
    Mistake("post-LN", _post_ln,
            "you normalised *after* adding the residual, x = LN(x + attn(x)): that is the original "
            "Transformer's post-LN block. This chapter's block (GPT-2's pre-LN) normalises the branch's input "
            "and leaves the residual stream alone: x = x + attn(ln1(x)), then x + mlp(ln2(x))."),
    Mistake("residual around the norm", _residual_around_norm,
            "your residual adds the *normalised* x, h + attn(h) with h = ln1(x), so the block's input is lost "
            "and every block re-normalises the stream. Add the branch to x itself: x = x + attn(ln1(x))."),
    Mistake("no residual", lambda x, ln1, attn, ln2, mlp: mlp(ln2(attn(ln1(x)))),
            "there is no residual connection: you returned mlp(ln2(attn(ln1(x)))). Add each branch's output "
            "to its input: x = x + attn(ln1(x)), then x + mlp(ln2(x))."),
    Mistake("no attention residual", lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln2(h)))(attn(ln1(x))),
            "the attention branch has no residual: x = attn(ln1(x)) replaces x instead of adding to it. "
            "Write x = x + attn(ln1(x))."),
    Mistake("no MLP residual", lambda x, ln1, attn, ln2, mlp: (lambda h: mlp(ln2(h)))(x + attn(ln1(x))),
            "the MLP branch has no residual: you returned mlp(ln2(x)). Return x + mlp(ln2(x))."),
    Mistake("attention output dropped",
            lambda x, ln1, attn, ln2, mlp: x + mlp(ln2(x + attn(ln1(x)))),
            "the MLP's residual adds the block's *input* x, so the attention output only reaches the MLP and "
            "is not kept in the stream. Update x first, x = x + attn(ln1(x)), then return x + mlp(ln2(x))."),
    Mistake("parallel branches", lambda x, ln1, attn, ln2, mlp: x + attn(ln1(x)) + mlp(ln2(x)),
            "both branches read the block's input x, so the MLP never sees what attention found (a 'parallel' "
            "block, as in GPT-J, is another design). Here the MLP reads the updated stream: "
            "x = x + attn(ln1(x)); return x + mlp(ln2(x))."),
    Mistake("no MLP", lambda x, ln1, attn, ln2, mlp: x + attn(ln1(x)),
            "the MLP half is missing: after x = x + attn(ln1(x)), return x + mlp(ln2(x))."),
    Mistake("no attention", lambda x, ln1, attn, ln2, mlp: x + mlp(ln2(x)),
            "the attention half is missing: first x = x + attn(ln1(x)), then x + mlp(ln2(x))."),
    Mistake("MLP first", _mlp_first("ln2", "ln1"), _MLP_FIRST_HINT),
    Mistake("MLP first", _mlp_first("ln1", "ln2"), _MLP_FIRST_HINT),
    Mistake("norms swapped", _block_with(_SECOND, _FIRST),
            "ln1 and ln2 are swapped: ln1 belongs to attention and ln2 to the MLP (each has its own gain "
            "and bias)."),
    Mistake("one norm twice", _block_with(_FIRST, _FIRST),
            "you used ln1 for both halves. Each half has its own norm: attn(ln1(x)), then mlp(ln2(x))."),
    Mistake("one norm twice", _block_with(_SECOND, _SECOND),
            "you used ln2 for both halves. Each half has its own norm: attn(ln1(x)), then mlp(ln2(x))."),
    Mistake("no norms", _block_with(_NONE, _NONE),
            "the norms are missing: you added attn(x) and mlp(x). Normalise each branch's input: "
            "x = x + attn(ln1(x)), then x + mlp(ln2(x))."),
    Mistake("no attention norm", _block_with(_NONE, _SECOND),
            "attention reads x without its norm: write attn(ln1(x))."),
    Mistake("no MLP norm", _block_with(_FIRST, _NONE),
            "the MLP reads x without its norm: write mlp(ln2(x))."),
    Mistake("norm on the output",
            lambda x, ln1, attn, ln2, mlp: (lambda h: h + ln2(mlp(h)))(x + ln1(attn(x))),
            "you normalised the branches' *outputs*, x + ln1(attn(x)). The norm goes on their inputs: "
            "x = x + attn(ln1(x)), then x + mlp(ln2(x))."),
    Mistake("indexed the attention output",
            lambda x, ln1, attn, ln2, mlp: (lambda h: h + mlp(ln2(h)))(x + attn(ln1(x))[0]),
            "attn(ln1(x))[0] takes the first *example* of the batch: this attention returns one tensor "
            "(B, T, C), not the pair (output, weights) that nn.MultiheadAttention returns. Use "
            "attn(ln1(x)) as it is."),
    Mistake("returned the input", lambda x, ln1, attn, ln2, mlp: x,
            "your block returned x unchanged. Compute x = x + attn(ln1(x)), then return x + mlp(ln2(x))."),
]


def _parts(x, ln1, attn, ln2, mlp):
    """The pieces a block is made of, to write a wrong output as a sum of them."""
    a = attn(ln1(x))
    return {"x": x, "attn(ln1(x))": a, "mlp(ln2(x + attn(ln1(x))))": mlp(ln2(x + a)),
            "mlp(ln2(x))": mlp(ln2(x)), "mlp(ln2(attn(ln1(x))))": mlp(ln2(a))}


def _as_sum(args, got, expected):
    """Write a wrong output as c₁·x + c₂·attn(ln1(x)) + c₃·mlp(…) with whole numbers: name what is missing or doubled."""
    if got.shape != expected.shape:
        return None
    with torch.no_grad():
        parts = _parts(*args)
    A = torch.stack([p.flatten() for p in parts.values()], 1)  # (N, 5)
    coef = torch.linalg.lstsq(A, got.flatten()[:, None]).solution[:, 0]
    if not close(A @ coef, got.flatten(), atol=1e-7) or not close(coef, coef.round(), atol=1e-6):
        return None
    terms = [f"{'' if c == 1 else ('−' if c == -1 else f'{c:g}·')}{n}" for n, c in zip(parts, coef.round().tolist()) if c]
    want = "x + attn(ln1(x)) + mlp(ln2(x + attn(ln1(x))))"
    return "sum of the wrong parts", (f"your output is {' + '.join(terms) or '0'}, but the block is {want}: "
                                      f"x' = x + attn(ln1(x)), then x' + mlp(ln2(x')). Each residual adds its "
                                      f"branch once, to the stream as it is at that point.")


def _explain(e: BaseException) -> tuple[str, str] | None:
    if "cross-attention" in str(e):
        return "attention arguments", ("attn takes one argument, the normalised stream: attn(ln1(x)). A second "
                                       "argument is a *context* to attend to (cross-attention), and query, "
                                       "key and value are not passed separately as in nn.MultiheadAttention.")
    return explain_error(e)


def check_block_forward(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(x: (B, T, C), ln1, attn, ln2, mlp) → (B, T, C): x' = x + attn(ln1(x)), then x' + mlp(ln2(x'))."""
    return check("block_forward", fn, _block, [Trial(_block_inputs)], _BLOCK_MISTAKES, explain=_explain,
                 properties=[Property("parts", _as_sum)], axes=("batch", "position", "feature"),
                 seed=seed, quiet=quiet)

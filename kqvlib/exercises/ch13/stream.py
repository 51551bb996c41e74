"""Chapter 13's checker of the online softmax over a stream of chunks, read once."""
from __future__ import annotations

import math
import weakref

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial, check, close
from kqvlib.exercises.common import explain_error

F64 = torch.float64


class ReturnedError(Exception):
    """What the learner's function returned is not the pair or triple the exercise asks for."""

    def __init__(self, key: str, hint: str):
        super().__init__(hint)
        self.key, self.hint = key, hint


def returned_values(r: object, n: int, key: str, what: str) -> tuple:
    """The learner's return value as ``n`` values, or a ReturnedError that says how many came back."""
    if isinstance(r, torch.Tensor) or not isinstance(r, (tuple, list)) or len(r) != n:
        got = 1 if isinstance(r, torch.Tensor) else len(r) if isinstance(r, (tuple, list)) else "no"
        raise ReturnedError(key, f"return {what}: you returned {got} value(s).")
    return tuple(r)


# --- the stream -----------------------------------------------------------------------------

class _Stream:
    """Chunks (B, n_i) that can be read once per pass, in order. It notes how many chunks a reader still
    holds (by reference) when it asks for the next one: a streaming reader holds at most the last."""

    def __init__(self, chunks):
        self._chunks = [c.clone() for c in chunks]
        self.most_kept = 0

    def __iter__(self):
        refs = []
        for c in self._chunks:
            alive = sum(r() is not None for r in refs[:-1])  # the reader's loop variable may hold the last
            self.most_kept = max(self.most_kept, alive)
            chunk = c.clone()
            refs.append(weakref.ref(chunk))
            yield chunk
            del chunk

    def __repr__(self):
        return f"<a stream of {len(self._chunks)} chunks>"

    def all(self) -> torch.Tensor:
        return torch.cat(self._chunks, dim=-1)  # (B, N)


def _pack(pair):  # (m, l) → one (2, B) tensor, so that the checker's properties can read it
    return torch.stack([torch.as_tensor(t, dtype=F64) for t in pair])


def _stream_reference(stream):
    x = stream.all()  # (B, N)
    m = x.amax(dim=-1)  # (B,)
    return _pack((m, torch.exp(x - m[:, None]).sum(dim=-1)))


def _as_pair(fn):
    def run(stream):
        r = fn(stream)
        if r is None:
            return None
        r = returned_values(r, 2, "not a pair", "the pair (m, l), each of shape (B,)")
        m, l = (torch.as_tensor(t) for t in r)
        B = stream._chunks[0].shape[0]
        if m.shape != (B,) or l.shape != (B,):
            raise ReturnedError("pair shape", f"m and l should each have shape ({B},), one number per row; "
                                              f"yours are {tuple(m.shape)} and {tuple(l.shape)} (a keepdim=True "
                                              f"left in, or a max over the whole chunk?).")
        return _pack((m, l))
    return run


def _stream_loop(stream, *, rescale=True, sign=1.0, m0=-math.inf, reset=False, one_max=False):
    m = l = None
    for c in stream:
        mx = c.amax() * torch.ones(c.shape[0], dtype=c.dtype) if one_max else c.amax(dim=-1)
        if m is None:
            m = mx if m0 is None else torch.full_like(mx, m0)  # None: start at the first chunk's max
            l = torch.zeros_like(mx)
        m_new = torch.maximum(m, mx)
        a = torch.exp(sign * (m - m_new)) if rescale else 1.0
        l = (0.0 if reset else a * l) + torch.exp(c - m_new[:, None]).sum(dim=-1)
        m = m_new
    return m, l


_STREAM_SLIPS = [
    ("sum not rescaled", lambda s: _stream_loop(s, rescale=False),
     "when the running max grows from m to m_new, the sum l so far was taken relative to the old m: "
     "multiply it by exp(m − m_new) before adding the new chunk's terms."),
    ("rescaled the wrong way", lambda s: _stream_loop(s, sign=-1.0, m0=None),
     "you rescaled by exp(m_new − m). The old terms were exp(x − m); relative to the new, larger max they "
     "are exp(x − m) · exp(m − m_new), a factor ≤ 1."),
    ("sum reset", lambda s: _stream_loop(s, reset=True),
     "your l counts only the last chunk: l is overwritten (or set to 0) inside the loop. Start it before "
     "the loop and update it: l = l · exp(m − m_new) + Σ exp(chunk − m_new)."),
]


def _stream_property(args, got, expected):
    """Reads a wrong (m, l) pair: swapped, a shared max, the right total with another m, one chunk only."""
    (stream,) = args
    m, l = got
    em, el = expected
    x = stream.all()
    if close(m, el) and close(l, em):
        return "swapped", "your pair is (l, m): return the max first, then the sum, as (m, l)."
    if m.shape == em.shape and close(m, torch.full_like(em, float(x.amax()))) and not close(m, em):
        return "one max for the batch", ("your m is the largest entry of the whole batch, the same for every "
                                        "row. Each row is its own softmax: take the max over the last axis "
                                        "only, chunk.amax(dim=-1), so m has one entry per row.")
    if m.shape == em.shape and l.shape == el.shape and bool((l > 0).all()):
        same_total = close(m + torch.log(l), em + torch.log(el))
        if same_total and close(m, torch.clamp(em, min=0.0)):
            return "m started at 0", ("your m and l describe the right total, but m is max(0, the row's max): "
                                     "you started m at 0. Start it at −inf, so a row of negative numbers "
                                     "gets its own max.")
        if same_total:
            return "m not the max", ("your m and l describe the right total Σ exp(x), but your m is not "
                                    "the row's max. Keep m = max(m, chunk max) at every step.")
    if l.shape == el.shape and close(m, em) and close(torch.exp(l), el):
        return "returned log l", ("your l is log of the sum: return l = Σ exp(x − m) itself (m + log l is "
                                  "the log-sum-exp).")
    first = stream._chunks[0]
    if close(l, torch.exp(first - em[:, None]).sum(-1)) or close(l, torch.exp(first - m[:, None]).sum(-1)):
        return "first chunk only", "only the first chunk counts: the loop stopped after one chunk (a return inside it?)."
    if close(m, first.amax(-1)) and not close(m, em):
        return "m never updated", ("your m is the first chunk's max: it is never updated. After each chunk, "
                                   "m = m_new.")
    last = stream._chunks[-1]
    if close(m, last.amax(-1)) and not close(m, em):
        return "m of the last chunk", ("your m is the max of the last chunk only: update it with "
                                      "m = torch.maximum(m, chunk.amax(dim=-1)), never replace it.")
    return None


def _stream_inputs(B, lengths, scale=1.0, shift=0.0, row_scales=None):
    def make(g):
        n = [int(x) for x in torch.randint(lengths[0], lengths[1] + 1, (5,), generator=g)]
        chunks = [torch.randn(B, k, generator=g, dtype=F64) * scale + shift for k in n]
        if row_scales is not None:
            chunks = [c * torch.tensor(row_scales, dtype=F64)[:, None] for c in chunks]
        return (_Stream(chunks),)
    return make


def _explain_stream(e):
    if isinstance(e, ReturnedError):
        return e.key, e.hint
    msg = str(e)
    if "has no len()" in msg or "not subscriptable" in msg:
        return "indexed the stream", ("a stream has no length and no indices: read it once, in order, with "
                                      "`for chunk in chunks:`.")
    return explain_error(e)


def check_stream_softmax(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(chunks: an iterable of (B, n_i) tensors, read once) → (m: (B,), l: (B,))."""
    trials = [
        Trial(_stream_inputs(3, (1, 6))),
        Trial(_stream_inputs(2, (1, 4), shift=-20.0), "all negative",
              "right on ordinary numbers, wrong when every entry is negative: did m start at 0 instead of −inf?"),
        Trial(_stream_inputs(3, (2, 5), scale=300.0), "huge values",
              "right on ordinary numbers, but NaN or inf when they reach the hundreds: exponentiate x − m_new, "
              "never x itself."),
        Trial(_stream_inputs(3, (1, 4), row_scales=[0.1, 5.0, 40.0]), "rows of different sizes",
              "right when the rows look alike, wrong when they differ: each row needs its own max and sum "
              "(dim=-1 everywhere, no max over the whole chunk)."),
    ]
    result = check("online softmax over a stream", _as_pair(fn), _stream_reference, trials,
                   [Mistake(k, lambda s, f=f: _pack(f(s)), h) for k, f, h in _STREAM_SLIPS],
                   nan_hint="exp(x − m) with m = −inf gives inf: on the first chunk use m_new, "
                            "exp(chunk − m_new) and exp(m − m_new) (which is 0 then).",
                   properties=[Property("stream", _stream_property)], explain=_explain_stream,
                   seed=seed, quiet=True)
    if result.passed:  # right values: was the stream read as a stream?
        stream = _stream_inputs(2, (2, 3))(torch.Generator().manual_seed(0))[0]
        try:
            fn(stream)
        except Exception:
            pass
        if stream.most_kept > 0:
            result = CheckResult(False, "kept the chunks", "✗ online softmax over a stream: right values, but "
                                 "you kept the chunks (a list, torch.cat, list(chunks)): a stream may be "
                                 "longer than memory. Keep only m and l between chunks.")
    if not quiet:
        print(result.message)
    return result

"""Chapter 9 checkers for learning merges from counts (``train_merges``) and undoing them (``expand``).
The chapter's docstring is in :mod:`kqvlib.exercises.ch09`.

``train_merges`` is checked by its method, not only its answer: the learner's merges are replayed one by
one on the ids, and the first one that is not the most frequent pair of the ids *as they are at that
step* (ties to the smaller pair) is named, with the counts that show why.
"""
from __future__ import annotations

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial
from kqvlib.exercises.diagnose import checked as check
from kqvlib.tokenizers import get_pair_counts, merge

FIRST = 256  # merge k becomes id 256 + k


class WrongType(TypeError):
    """The learner returned the wrong kind of object; ``hint`` says what to return."""

    def __init__(self, hint: str):
        super().__init__("your function returned the wrong kind of object")
        self.hint = hint


_Shape = WrongType


def _best(counts, key=lambda c, p: (-c, p)):
    return min(counts, key=lambda p: key(counts[p], p))


def _train(ids, n, pick=_best, update_counts=True, update_ids=True, first=FIRST):
    ids, merges = list(ids), []
    counts = get_pair_counts(ids)
    for k in range(n):
        if update_counts:
            counts = get_pair_counts(ids)
        else:
            counts = {p: c for p, c in counts.items() if p not in merges}
        if not counts:
            break
        pair = pick(counts)
        merges.append(pair)
        if update_ids:
            ids = merge(ids, pair, first + k)
    return merges


def _pairs_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[-1] == 2 and not out.is_floating_point():
        return out.long()
    if not isinstance(out, (list, tuple)):
        raise _Shape(f"return a list of pairs [(a, b), …], not a {type(out).__name__}.")
    rows = []
    for p in out:
        if isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], (tuple, list)):
            raise _Shape(f"return the pairs only, [(a, b), …]: one of your entries is {p!r}. The new id of "
                         f"merge k is 256 + k, its place in the list.")
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise _Shape(f"each merge is a pair (a, b); one of yours is {p!r}.")
        rows.append((int(p[0]), int(p[1])))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)


def _as_table(f):
    return lambda ids, n: _pairs_tensor(f(ids, n))


def _learner(fn):
    def run(ids, n):
        out = fn(list(ids), n)
        return None if out is None else _pairs_tensor(out)
    return run


_TRAIN_MISTAKES = [
    Mistake("counts not updated", _as_table(lambda ids, n: _train(ids, n, update_counts=False)),
            "your merges are the most frequent pairs of the *original* ids, taken in order: the counts were "
            "computed once. After each merge the ids change (new pairs appear, old ones vanish), so count the "
            "pairs again on the merged ids before choosing the next merge."),
    Mistake("ids not updated", _as_table(lambda ids, n: _train(ids, n, update_ids=False)),
            "you merge the same pair again and again: merge() returns a new list, and yours was not kept. Write "
            "ids = merge(ids, pair, 256 + k) so the next counts see the merged ids."),
    Mistake("ties to the first seen", _as_table(lambda ids, n: _train(
        ids, n, pick=lambda c: max(c, key=c.get))),
            "right counts, but ties go to the pair met first in the text (max(counts, key=counts.get) or "
            "most_common keep the first of equal counts). Here ties go to the smaller pair: "
            "min(counts, key=lambda p: (-counts[p], p))."),
    Mistake("ties to the larger pair", _as_table(lambda ids, n: _train(ids, n, pick=lambda c: _best(
        c, key=lambda n_, p: (-n_, tuple(-i for i in p))))),
            "right counts, but ties go to the *larger* pair (max over (count, pair)). Ties go to the smaller "
            "pair: min(counts, key=lambda p: (-counts[p], p))."),
    Mistake("least frequent", _as_table(lambda ids, n: _train(ids, n, pick=lambda c: _best(
        c, key=lambda n_, p: (n_, p)))),
            "you merged the *least* frequent pair. BPE merges the most frequent one: the largest count."),
    Mistake("new ids from 257", _as_table(lambda ids, n: _train(ids, n, first=FIRST + 1)),
            "your new ids start at 257: merge k becomes id 256 + k, so the first merge is 256 (k = 0)."),
    Mistake("new ids from 255", _as_table(lambda ids, n: _train(ids, n, first=FIRST - 1)),
            "your new ids start at 255, which is a byte: merge k becomes id 256 + k."),
]


def _replay(args, got, expected):
    """Replay the learner's merges; name the first that does not follow the counts of the ids at that step."""
    ids, n = list(args[0]), args[1]
    mine = [tuple(int(i) for i in p) for p in got.long().tolist()]
    first = get_pair_counts(ids)
    if len(mine) > 1 and all(p in first for p in mine) and len(set(mine)) == len(mine):
        kept = sorted(first.values(), reverse=True)[:len(mine)]
        if [first[p] for p in mine] == kept and _tied_only(ids, mine) is None:
            return "counts not updated", _TRAIN_MISTAKES[0].hint
    tie = _tied_only(ids, mine)
    if tie is not None:
        return "ties", tie
    for k, pair in enumerate(mine):
        counts = get_pair_counts(ids)
        if not counts:
            return "too many merges", (f"after {k} merges no pair is left (the ids are {ids}), but you return "
                                       f"{len(mine)}: stop when there is nothing to merge.")
        best = _best(counts)
        if pair != best:
            top = counts[best]
            if pair not in counts:
                return "pair not in the ids", (
                    f"merge {k} is {pair}, which does not occur in the ids at that step (after your earlier "
                    f"merges): count the pairs of the merged ids each time, ids = merge(ids, pair, 256 + k).")
            if counts[pair] == top:
                return "ties", (f"merge {k}: {pair} and {best} both occur {top} times at that step; ties go to "
                                f"the smaller pair, {best}: min(counts, key=lambda p: (-counts[p], p)).")
            return "not the most frequent", (
                f"merge {k} is {pair}, which occurs {counts[pair]} times at that step, but {best} occurs {top} "
                f"times. Each merge takes the most frequent pair of the ids as they are after the earlier merges.")
        ids = merge(ids, pair, FIRST + k)
    if len(mine) < len(expected):
        return "too few merges", (f"your {len(mine)} merges are right, but {len(expected)} were asked for and "
                                  f"possible: loop n_merges times (stop early only when no pair is left).")
    return None


def _tied_only(ids, mine):
    """The hint when each of the learner's merges has the top count at its step but a tie went the wrong way."""
    ids, wrong = list(ids), None
    for k, pair in enumerate(mine):
        counts = get_pair_counts(ids)
        if not counts or counts.get(pair, -1) != max(counts.values()):
            return None
        best = _best(counts)
        if pair != best and wrong is None:
            wrong = (f"merge {k}: {pair} and {best} both occur {counts[best]} times at that step; ties go to the "
                     f"smaller pair, {best}: min(counts, key=lambda p: (-counts[p], p)).")
        ids = merge(ids, pair, FIRST + k)
    return wrong


def _train_inputs(g: torch.Generator, n_ids: int = 40, n_merges: int = 6):
    ids = torch.randint(4, (n_ids,), generator=g).tolist()
    return ids, n_merges


def _train_explain(e: BaseException):
    if isinstance(e, IndexError):
        return "index", ("an index ran past the end of the ids: the last pair starts at len(ids) - 2, so test "
                         "i + 1 < len(ids) before reading ids[i + 1] (in the counts and in the merge).")
    return _explain(e)


def check_train_merges(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(ids: list[int], n_merges: int) → [(a, b), …]: merge k is the most frequent pair of the ids after the
    earlier merges (ties to the smaller pair) and becomes id 256 + k."""
    return check(
        "train_merges", _learner(fn), _as_table(_train),
        trials=[Trial(_train_inputs),
                Trial(lambda g: (torch.randint(3, (4,), generator=g).tolist(), 5), "runs out of pairs",
                      "right on long inputs, but with 4 ids and 5 merges asked for, the ids run out of pairs: "
                      "stop when get_pair_counts(ids) is empty (one id left).")],
        mistakes=_TRAIN_MISTAKES, properties=[Property("replay", _replay)], explain=_train_explain,
        seed=seed, quiet=quiet)


# --- expand(ids, merges) -------------------------------------------------------------------------------------

def _expand(ids, merges, first=FIRST, swap=False, depth=None, lowest=FIRST):
    out = []
    for i in ids:
        if i >= lowest and (depth is None or depth > 0):
            a, b = merges[i - first]
            a, b = (b, a) if swap else (a, b)
            out += _expand([a, b], merges, first, swap, None if depth is None else depth - 1, lowest)
        else:
            out.append(i)
    return out


def _ids_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor) and out.dim() == 1 and not out.is_floating_point():
        return out.long()
    if not isinstance(out, (list, tuple)):
        raise _Shape(f"return a list of ids, not a {type(out).__name__}.")
    flat = []
    for i in out:
        if isinstance(i, (list, tuple)):
            raise _Shape(f"return one flat list of ids; one of your entries is {i!r}: add its ids to the list "
                         f"(out += expand(pair, merges)) rather than appending the list itself.")
        flat.append(int(i))
    return torch.tensor(flat, dtype=torch.long)


def _as_ids(f):
    return lambda ids, merges: _ids_tensor(f(ids, merges))


def _expand_learner(fn):
    def run(ids, merges):
        out = fn(list(ids), [tuple(p) for p in merges])
        return None if out is None else _ids_tensor(out)
    return run


_EXPAND_MISTAKES = [
    Mistake("one level", _as_ids(lambda ids, m: _expand(ids, m, depth=1)),
            "you replaced each merged id by its pair once, but a pair may itself hold merged ids (≥ 256): "
            "expand those too, recursively (or loop until every id is < 256)."),
    Mistake("pair reversed", _as_ids(lambda ids, m: _expand(ids, m, swap=True)),
            "your pairs come out backwards: merges[k] = (a, b) means a then b."),
    Mistake("index off by one", _as_ids(lambda ids, m: _expand(ids, m, first=FIRST - 1)),
            "you looked up merges[id - 255]: id 256 + k is merges[k], so the index is id - 256."),
    Mistake("id 256 kept", _as_ids(lambda ids, m: _expand(ids, m, lowest=FIRST + 1)),
            "id 256, the first merge, stayed as it is: expand every id ≥ 256 (i >= 256, not i > 256)."),
    Mistake("merged ids dropped", _as_ids(lambda ids, m: [i for i in ids if i < FIRST]),
            "the merged ids vanished: replace each id ≥ 256 by the ids of its pair, keep the others."),
]


def _expand_inputs(g: torch.Generator):
    base = torch.randint(5, (30,), generator=g).tolist()
    merges = _train(base, 6)
    ids = base
    for k, p in enumerate(merges):
        ids = merge(ids, p, FIRST + k)
    return ids, merges


def _explain(e: BaseException):
    if isinstance(e, _Shape):
        return "wrong type", e.hint
    if isinstance(e, RecursionError):
        return "endless recursion", ("your recursion never stops: expand a merged id (≥ 256) into its pair, but "
                                     "return an id < 256 as it is.")
    if isinstance(e, IndexError):
        return "index", ("an index ran past the end: merges[k] is id 256 + k, so look up merges[i - 256], and only "
                         "for i ≥ 256 (an id < 256 is a byte and stays).")
    return None


def check_expand(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(ids: list[int], merges: [(a, b), …]) → ids with every id ≥ 256 replaced by its pair, recursively."""
    return check("expand", _expand_learner(fn), _as_ids(_expand), trials=[Trial(_expand_inputs)],
                 mistakes=_EXPAND_MISTAKES, explain=_explain, seed=seed, quiet=quiet)


__all__ = ["check_train_merges", "check_expand"]

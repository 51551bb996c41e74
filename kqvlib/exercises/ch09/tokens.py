"""Chapter 9 checkers for pair counts and one merge. The chapter's docstring is in
:mod:`kqvlib.exercises.ch09`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import torch

from kqvlib.checks import CheckResult, Mistake, Property, Trial
from kqvlib.exercises.diagnose import checked as check
from kqvlib.tokenizers import get_pair_counts, merge

__all__ = ["check_pair_counts", "check_merge"]


class _Shape(TypeError):
    """The learner returned the wrong kind of object; the message is the hint."""


class ListChangedWhileWalked(Exception):
    """The learner's merge changed the list it was walking and returned a wrong answer."""


def _explain(e: BaseException):
    if isinstance(e, ListChangedWhileWalked) or getattr(e, "kqv_mutated", False):
        return "mutates the list it walks", _MUTATED_HINT
    if isinstance(e, _Shape):
        return "wrong type", str(e)
    if isinstance(e, IndexError):
        return "index past the end", (
            "an index ran past the end of the list: the last pair starts at len(ids) - 2, so ids[i + 1] "
            "fails at i = len(ids) - 1. Loop over range(len(ids) - 1), or over zip(ids, ids[1:]), or test "
            "i + 1 < len(ids) before reading ids[i + 1].")
    return None


# --- pair counts ---------------------------------------------------------------------------------------------

def _table(counts) -> torch.Tensor:
    """{(a, b): c} → rows (a, b, c), sorted, as a (n, 3) long tensor; raises _Shape for anything else."""
    if not isinstance(counts, Mapping):
        raise _Shape(f"return a dict mapping each pair (a, b) to its count, not a {type(counts).__name__} "
                     "(collections.Counter is a dict too).")
    rows = []
    for k, v in counts.items():
        if not (isinstance(k, tuple) and len(k) == 2):
            raise _Shape(f"the keys must be pairs of ids, tuples like (a, b); one of yours is {k!r}. "
                         "A list cannot be a dict key: use tuple(...) or zip(ids, ids[1:]).")
        rows.append((int(k[0]), int(k[1]), int(v)))
    return torch.tensor(sorted(rows), dtype=torch.long).reshape(-1, 3)


def _pairs_of(fn):
    def run(ids):
        out = fn(list(ids))
        return None if out is None else _table(out)
    return run


def _ids_with_runs(g: torch.Generator, n: int = 23, alphabet: int = 5) -> list[int]:
    """n random ids from a small alphabet, with a run of three equal ids inside."""
    ids = torch.randint(alphabet, (n,), generator=g).tolist()
    i = int(torch.randint(2, n - 5, (1,), generator=g))
    ids[i:i + 3] = [ids[i]] * 3
    return ids


def _pairs_differ(args, got, expected):
    """Name one pair whose count is wrong, or one pair that should (not) be there."""
    g = {(int(a), int(b)): int(c) for a, b, c in got.long().tolist()}
    e = {(int(a), int(b)): int(c) for a, b, c in expected.long().tolist()}
    unordered = {}
    for p_, c in e.items():
        unordered[tuple(sorted(p_))] = unordered.get(tuple(sorted(p_)), 0) + c
    if g == unordered and g != e:
        return "pairs sorted", ("you counted (a, b) and (b, a) as one pair (sorted or a set): order matters, 'th' "
                                "is not 'ht'. Key each pair as (ids[i], ids[i + 1]) as it is.")
    if set(g) == set(e) and g and len({g[p] - e[p] for p in g}) == 1 and next(g[p] - e[p] for p in g) != 0:
        k = next(g[p] - e[p] for p in g)
        return "counts off by a constant", (f"every count is {k:+d} off: a pair seen for the first time counts 1, so "
                                            f"start from 0 and add 1 each time, counts.get(pair, 0) + 1.")
    for p in sorted(set(g) | set(e)):
        if g.get(p) != e.get(p):
            ids = args[0]
            return "wrong counts", (
                f"for ids = {ids} your count of pair {p} is {g.get(p, 'missing')}, but it occurs "
                f"{e.get(p, 0)} time(s). Count every adjacent pair (ids[i], ids[i + 1]) for i = 0 … len(ids) - 2.")
    return None


_COUNT_MISTAKES = [
    Mistake("non-overlapping", lambda ids: _table(_count(zip(ids[::2], ids[1::2]))),
            "you counted pairs two by two, (ids[0], ids[1]), (ids[2], ids[3]), …, so half the pairs are missing. "
            "Pairs overlap: step by one, zip(ids, ids[1:])."),
    Mistake("reversed pairs", lambda ids: _table(_count(list(zip(ids[1:], ids)))),
            "your pairs are backwards, (ids[i + 1], ids[i]). The key is (left id, right id): (ids[i], ids[i + 1])."),
    Mistake("wrap-around", lambda ids: _table(_count(list(zip(ids, ids[1:] + ids[:1])))),
            "you counted one pair too many, (last id, first id): the text does not wrap around. "
            "Stop at the last real pair (zip(ids, ids[1:]), not ids[i + 1 - len(ids)] or ids[:1] appended)."),
    Mistake("presence only", lambda ids: _table({p: 1 for p in zip(ids, ids[1:])}),
            "every count is 1: you recorded which pairs occur, not how often. Add one each time you meet a pair: "
            "counts[pair] = counts.get(pair, 0) + 1."),
    Mistake("last pair missing", lambda ids: _table(_count(list(zip(ids[:-1], ids[1:-1])))),
            "the last pair is missing: range(len(ids) - 2) stops one early. The pairs start at i = 0 … len(ids) - 2, "
            "which is range(len(ids) - 1)."),
    Mistake("first pair missing", lambda ids: _table(_count(list(zip(ids[1:], ids[2:])))),
            "the first pair (ids[0], ids[1]) is missing: start at i = 0."),
    Mistake("runs counted once", lambda ids: _table(_count(_no_overlap(ids))),
            "in a run like [7, 7, 7] the pair (7, 7) occurs twice (at 0 and at 1): counting is not merging, "
            "so do not skip ahead after a pair; count every i."),
]


def _count(pairs) -> dict:
    return dict(Counter(pairs))


def _no_overlap(ids):
    """The pairs a left-to-right merge would see: after a pair of two equal ids, skip one."""
    pairs, i = [], 0
    while i < len(ids) - 1:
        pairs.append((ids[i], ids[i + 1]))
        i += 2 if ids[i] == ids[i + 1] else 1
    return pairs


def check_pair_counts(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(ids: list[int]) → {(a, b): count} for every pair of adjacent ids."""
    return check(
        "pair_counts", _pairs_of(fn), lambda ids: _table(get_pair_counts(ids)),
        trials=[Trial(lambda g: (_ids_with_runs(g),)),
                Trial(lambda g: ([int(torch.randint(9, (1,), generator=g))],), "one id",
                      "a list with a single id has no pairs: return an empty dict (and [] too)."),
                Trial(lambda g: ([],), "no ids", "an empty list has no pairs: return an empty dict.")],
        mistakes=_COUNT_MISTAKES, properties=[Property("wrong counts", _pairs_differ)],
        explain=_explain, seed=seed, quiet=quiet)


# --- merge ---------------------------------------------------------------------------------------------------

def _ids_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.long().flatten()
    if not isinstance(out, (list, tuple)):
        raise _Shape(f"return a list of ids, not a {type(out).__name__}.")
    if not all(isinstance(i, int) for i in out):
        raise _Shape("return a flat list of ints: one of your entries is "
                     f"{next(i for i in out if not isinstance(i, int))!r}. Append new_id itself, not the pair.")
    return torch.tensor(out, dtype=torch.long)


_MUTATED_HINT = (
    "your loop changes the list it walks (ids[i] = new_id, del ids[i + 1], ids.pop, ids.insert): after each "
    "replacement the list is shorter, so the indices range(len(ids) - 1) computed at the start run past its end "
    "or skip ids. Leave ids alone and build a new list: out = [], append new_id or ids[i], return out.")


def _merge_of(fn):
    """The learner's merge, its result as ids; an error or a wrong answer from code that changed the list it
    was given is marked so that it gets the hint for a loop that mutates what it walks."""
    def run(ids, pair, new_id):
        mine = list(ids)
        try:
            out = fn(mine, tuple(pair), new_id)
        except NotImplementedError:
            raise
        except Exception as e:
            if mine != list(ids):
                e.kqv_mutated = True
            raise
        if mine != list(ids) and out is not None:
            raise ListChangedWhileWalked("the list you were given changed while your loop walked it")
        return None if out is None else _ids_tensor(out)
    return run


def _as_ids(f):
    return lambda ids, pair, new_id: torch.tensor(f(ids, pair, new_id), dtype=torch.long)  # (n,)


def _no_skip(ids, pair, new_id):  # a pair replaced, but its second id is looked at again
    out = [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:])]
    return out + ids[-1:]


def _no_skip_no_last(ids, pair, new_id):
    return _no_skip(ids, pair, new_id)[:-1] if ids else []


def _last_dropped(ids, pair, new_id):  # while i < len(ids) - 1 and nothing after the loop
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _first_id_only(ids, pair, new_id):  # merged wherever ids[i] == pair[0], whatever follows
    out, i = [], 0
    while i < len(ids):
        hit = i + 1 < len(ids) and ids[i] == pair[0]
        out.append(new_id if hit else ids[i])
        i += 2 if hit else 1
    return out


def _first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def _right_to_left(ids, pair, new_id):
    return merge(ids[::-1], pair[::-1], new_id)[::-1]


def _last_pair_missed(ids, pair, new_id):  # for i in range(len(ids) - 2): the end is never tested
    out = merge(ids[:-1], pair, new_id)
    return out + ids[-1:]


_MERGE_MISTAKES = [
    Mistake("no skip", _as_ids(_no_skip),
            "after replacing a pair you looked at its second id again, so it is kept (or merged a second "
            "time). When (ids[i], ids[i + 1]) matches, append new_id and jump ahead by two: i += 2."),
    Mistake("no skip, last dropped", _as_ids(_no_skip_no_last),
            "you walked over zip(ids, ids[1:]) and appended one id per pair: that keeps the second id of every "
            "merged pair and loses the last id. Use a while loop with an index: on a match append new_id and "
            "i += 2, else append ids[i] and i += 1, until i reaches len(ids)."),
    Mistake("last id dropped", _as_ids(_last_dropped),
            "the last id is missing when it is not part of a merged pair: `while i < len(ids) - 1` ends one "
            "early. Loop while i < len(ids) and test i + 1 < len(ids) before comparing the pair."),
    Mistake("second id not compared", _as_ids(lambda ids, pair, new_id: _first_id_only(ids, pair, new_id)),
            "you merged wherever ids[i] == pair[0], without checking that ids[i + 1] == pair[1]: both ids of the "
            "pair must match."),
    Mistake("matched as text", _as_ids(lambda ids, pair, new_id: [int(t) for t in " ".join(map(str, ids)).replace(
        f"{pair[0]} {pair[1]}", str(new_id)).split()]),
            "you replaced the pair in the ids written as text: '1 2' also matches inside '11 2' or '1 21'. Compare "
            "the ids themselves, ids[i] == pair[0] and ids[i + 1] == pair[1], in a left-to-right loop."),
    Mistake("first only", _as_ids(_first_only),
            "only the first occurrence was replaced. Replace every occurrence in one left-to-right pass."),
    Mistake("reversed pair", _as_ids(lambda ids, pair, new_id: merge(ids, pair[::-1], new_id)),
            "you matched (b, a) instead of pair = (a, b): compare ids[i] with pair[0] and ids[i + 1] with pair[1]."),
    Mistake("right to left", _as_ids(_right_to_left),
            "in a run like [7, 7, 7] the merge must take the FIRST two: [new_id, 7], scanning left to right, as "
            "training and encoding both do. Yours scans from the right ([7, new_id])."),
    Mistake("last pair missed", _as_ids(_last_pair_missed),
            "a pair at the very end of the list is not merged: range(len(ids) - 2) stops one pair early. The last "
            "pair starts at len(ids) - 2."),
]


def _merge_inputs(g: torch.Generator, equal: bool = False, at_end: bool = False, lone_first: bool = False):
    """ids from a small alphabet that contain the pair at the start and twice more; new_id ≥ 256."""
    a = int(torch.randint(5, (1,), generator=g))
    b = a if equal else (a + 1 + int(torch.randint(4, (1,), generator=g))) % 5
    ids = torch.randint(5, (19,), generator=g).tolist()
    ids[0:2] = [a, b]
    ids[6:8] = [a, b]
    ids[11:14] = [a, a, a] if equal else [a, b, b]
    if equal:
        ids[15:17] = [b, b]  # a run of two more equal ids (b == a) before the end
    ids[-2:] = [a, b] if at_end else [b if equal else a, 9]  # 9 is never part of the pair
    if lone_first:
        ids[-2:] = [9, a]  # the list ends with pair[0] alone: ids[i + 1] does not exist there
    digits = {0: 1, 1: 2, 2: 11, 3: 21, 4: 12, 9: 22}  # ids whose digits overlap: matching text fails
    ids, a, b = [digits[i] for i in ids], digits[a], digits[b]
    return ids, (a, b), 256 + int(torch.randint(100, (1,), generator=g))


def _length_differs(args, got, expected):
    if got.shape != expected.shape:
        return "wrong length", (f"your list has {got.numel()} ids, expected {expected.numel()}: each merged "
                                "pair becomes ONE id, and every other id is kept once, in order.")
    return None


def check_merge(fn, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """fn(ids: list[int], pair: (a, b), new_id: int) → list[int] with each (a, b) replaced left to right."""
    return check(
        "merge", _merge_of(fn), _as_ids(merge),
        trials=[Trial(_merge_inputs),
                Trial(lambda g: _merge_inputs(g, at_end=True), "pair at the end",
                      "a pair in the last two places is not merged: test every i up to len(ids) - 2."),
                Trial(lambda g: _merge_inputs(g, equal=True), "runs",
                      "right when the pair's two ids differ, wrong when they are equal: in [7, 7, 7] merge the "
                      "first two and go on after them, giving [new_id, 7]."),
                Trial(lambda g: _merge_inputs(g, lone_first=True), "ends with pair[0]",
                      "wrong when the list ends with pair[0] alone: at i = len(ids) - 1 there is no ids[i + 1]. "
                      "Test i + 1 < len(ids) before reading ids[i + 1].")],
        mistakes=_MERGE_MISTAKES, properties=[Property("wrong length", _length_differs)],
        explain=_explain, seed=seed, quiet=quiet)

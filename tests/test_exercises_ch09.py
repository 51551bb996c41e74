"""Chapter 9 checkers: the reference passes, a stub is "not attempted", each likely mistake gets its own
hint, and a function that raises does not crash the checker.

The wrong variants are written the way a learner would write them, independently of the Mistake
functions inside kqvlib.exercises.ch09.
"""
import pytest
import torch

from kqvlib.exercises import ch09


def stub(*args):
    raise NotImplementedError


def crash(*args):
    raise RuntimeError("boom")


# --- pair counts ---------------------------------------------------------------------------------------------

def counts_ok(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def counts_index_error(ids):
    counts = {}
    for i in range(len(ids)):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def counts_skip_runs(ids):  # skips ahead after a pair of equal ids, as if merging
    counts, i = {}, 0
    while i < len(ids) - 1:
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def counts_first_missing(ids):
    counts = {}
    for i in range(1, len(ids) - 1):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def counts_single_fails(ids):
    counts = {(ids[0], ids[1]): 1}
    for pair in zip(ids[1:], ids[2:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


COUNT_MISTAKES = {
    "non-overlapping": lambda ids: counts_ok([]) | {
        p: sum(1 for q in zip(ids[0::2], ids[1::2]) if q == p) for p in zip(ids[0::2], ids[1::2])},
    "reversed pairs": lambda ids: counts_ok(ids[::-1]),
    "wrap-around": lambda ids: counts_ok(ids + ids[:1]),
    "presence only": lambda ids: {p: 1 for p in zip(ids, ids[1:])},
    "last pair missing": lambda ids: counts_ok(ids[:-1]),
    "first pair missing": counts_first_missing,
    "runs counted once": counts_skip_runs,
    "index past the end": counts_index_error,
    "wrong type": lambda ids: list(zip(ids, ids[1:])),
    "one id": counts_single_fails,
    "wrong counts": lambda ids: {**counts_ok(ids), (99, 99): 1},
}


def test_pair_counts_reference():
    r = ch09.check_pair_counts(counts_ok, quiet=True)
    assert r.passed and r.key == "ok"
    from collections import Counter
    assert ch09.check_pair_counts(lambda ids: Counter(zip(ids, ids[1:])), quiet=True).passed


@pytest.mark.parametrize("key", list(COUNT_MISTAKES))
def test_pair_counts_mistakes(key):
    r = ch09.check_pair_counts(COUNT_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


def test_pair_counts_list_keys():
    r = ch09.check_pair_counts(lambda ids: {str([a, b]): 1 for a, b in zip(ids, ids[1:])}, quiet=True)
    assert r.key == "wrong type" and "tuple" in r.message


# --- merge ---------------------------------------------------------------------------------------------------

def merge_ok(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_no_skip(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i < len(ids) - 1 and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
    return out


def merge_zip(ids, pair, new_id):
    return [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:])]


def merge_last_dropped(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_first_only(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
            break
    return ids


def merge_reversed(ids, pair, new_id):
    return merge_ok(ids, (pair[1], pair[0]), new_id)


def merge_right_to_left(ids, pair, new_id):
    out, i = [], len(ids) - 1
    while i >= 0:
        if i > 0 and (ids[i - 1], ids[i]) == pair:
            out.append(new_id)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]


def merge_range_short(ids, pair, new_id):
    out, skip = [], False
    for i in range(len(ids) - 2):
        if skip:
            skip = False
            continue
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            skip = True
        else:
            out.append(ids[i])
    return out + [x for x in ids[len(ids) - 2 + skip:]]


def merge_index_error(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_in_place(ids, pair, new_id):
    ids[:] = merge_ok(ids, pair, new_id)


def merge_appends_pair(ids, pair, new_id):
    out = merge_ok(ids, pair, -1)
    return [pair if i == -1 else i for i in out]


def merge_drops_pairs(ids, pair, new_id):  # the pair deleted, new_id never appended
    return [i for i in merge_ok(ids, pair, -1) if i != -1]


MERGE_MISTAKES = {
    "no skip": merge_no_skip,
    "no skip, last dropped": merge_zip,
    "last id dropped": merge_last_dropped,
    "first only": merge_first_only,
    "reversed pair": merge_reversed,
    "right to left": merge_right_to_left,
    "last pair missed": merge_range_short,
    "index past the end": merge_index_error,
    "returned None": merge_in_place,
    "wrong type": merge_appends_pair,
    "wrong length": merge_drops_pairs,
}


def test_merge_reference():
    assert ch09.check_merge(merge_ok, quiet=True).passed
    assert ch09.check_merge(lambda ids, p, n: torch.tensor(merge_ok(ids, p, n)), quiet=True).passed


@pytest.mark.parametrize("key", list(MERGE_MISTAKES))
def test_merge_mistakes(key):
    r = ch09.check_merge(MERGE_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


# --- batches -------------------------------------------------------------------------------------------------

def batch_ok(data, starts, T):
    x = torch.stack([data[s:s + T] for s in starts])  # (B, T)
    y = torch.stack([data[s + 1:s + T + 1] for s in starts])  # (B, T)
    return x, y


BATCH_MISTAKES = {
    "no shift": lambda d, s, T: (batch_ok(d, s, T)[0], batch_ok(d, s, T)[0]),
    "shifted the wrong way": lambda d, s, T: (batch_ok(d, s, T)[0], batch_ok(d, s - 1, T)[0]),
    "swapped": lambda d, s, T: batch_ok(d, s, T)[::-1],
    "roll": lambda d, s, T: (batch_ok(d, s, T)[0], batch_ok(d, s, T)[0].roll(-1, 1)),
    "next block": lambda d, s, T: (batch_ok(d, s, T)[0], batch_ok(d, s + T, T)[0]),
    "transposed": lambda d, s, T: tuple(t.T for t in batch_ok(d, s, T)),
    "starts ignored": lambda d, s, T: batch_ok(d, range(len(s)), T),
    "one too long": lambda d, s, T: batch_ok(d, s, T + 1),
    "one too long, y from it": lambda d, s, T: (batch_ok(d, s, T)[0],
                                                torch.stack([d[i:i + T + 1] for i in s])),
}


def test_batch_reference():
    assert ch09.check_batch(batch_ok, quiet=True).passed


@pytest.mark.parametrize("key", list(BATCH_MISTAKES))
def test_batch_mistakes(key):
    r = ch09.check_batch(BATCH_MISTAKES[key], quiet=True, seed=1)
    assert not r.passed
    assert r.key == key, r.message


# --- every checker -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("checker", [ch09.check_pair_counts, ch09.check_merge, ch09.check_batch])
def test_stub_and_crash(checker, capsys):
    r = checker(stub)
    assert not r.passed and r.key == "not attempted"
    assert "not attempted yet" in capsys.readouterr().out
    r = checker(crash, quiet=True)
    assert not r.passed and "RuntimeError: boom" in r.message
    assert r.message.index("boom") > r.message.index(":")  # the hint comes before the raw error


def test_hint_before_error_text():
    r = ch09.check_pair_counts(counts_index_error, quiet=True)
    assert r.key == "index past the end"
    assert r.message.index("range(len(ids) - 1)") < r.message.index("IndexError")


# --- train_merges and expand (learned from counts, undone recursively) ------------------------------------------

def train_merges_ok(ids, n_merges):
    merges = []
    for k in range(n_merges):
        counts = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, ties to the smaller pair
        merges.append(pair)
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(256 + k)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return merges


def train_merges_sorted(ids, n_merges):  # ties broken by sorting: a correct variant
    from kqvlib.tokenizers import get_pair_counts, merge
    merges = []
    for k in range(n_merges):
        counts = get_pair_counts(ids)
        if not counts:
            return merges
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        merges.append(best)
        ids = merge(ids, best, 256 + k)
    return merges


def _train_with(pick, recount=True, keep=True, first=256):
    from kqvlib.tokenizers import get_pair_counts, merge

    def train(ids, n_merges):
        merges, counts = [], get_pair_counts(ids)
        for k in range(n_merges):
            if recount:
                counts = get_pair_counts(ids)
            counts = {p: c for p, c in counts.items() if recount or p not in merges}
            if not counts:
                break
            pair = pick(counts)
            merges.append(pair)
            if keep:
                ids = merge(ids, pair, first + k)
        return merges
    return train


@pytest.mark.parametrize("fn", [train_merges_ok, train_merges_sorted])
def test_train_merges_accepts_right_answers(fn):
    assert ch09.check_train_merges(fn, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (_train_with(lambda c: max(c, key=c.get)), "ties to the first seen"),
    (_train_with(lambda c: max(c, key=lambda p: (c[p], p))), "ties to the larger pair"),
    (_train_with(lambda c: min(c, key=lambda p: (-c[p], p)), recount=False), "counts not updated"),
    (_train_with(lambda c: min(c, key=lambda p: (-c[p], p)), keep=False), "ids not updated"),
    (_train_with(lambda c: min(c, key=lambda p: (c[p], p))), "least frequent"),
    (_train_with(lambda c: min(c, key=lambda p: (-c[p], p)), first=257), "new ids from 257"),
    (lambda ids, n: [(p, 256 + k) for k, p in enumerate(train_merges_ok(ids, n))], "wrong type"),
    (lambda ids, n: train_merges_ok(ids, n)[:-1], "too few merges"),
])
def test_train_merges_slips(fn, key):
    for seed in range(3):
        r = ch09.check_train_merges(fn, seed=seed, quiet=True)
        assert not r.passed and r.key == key, r.message


def test_train_merges_replays_the_method():
    """A merge that is not the most frequent pair at its step is named with the counts of that step."""
    def second_best(ids, n):
        from kqvlib.tokenizers import get_pair_counts, merge
        merges = []
        for k in range(n):
            c = get_pair_counts(ids)
            ranked = sorted(c, key=lambda p: (-c[p], p))
            pair = ranked[1] if k == 2 and len(ranked) > 1 and c[ranked[1]] < c[ranked[0]] else ranked[0]
            merges.append(pair)
            ids = merge(ids, pair, 256 + k)
        return merges
    r = ch09.check_train_merges(second_best, seed=0, quiet=True)
    assert not r.passed and r.key == "not the most frequent" and "merge 2" in r.message, r.message


def test_train_merges_runs_out_of_pairs():
    def no_stop(ids, n):
        from collections import Counter
        from kqvlib.tokenizers import merge
        merges = []
        for k in range(n):
            c = Counter(zip(ids, ids[1:]))
            pair = max(c, key=lambda p: (c[p], (-p[0], -p[1])))
            merges.append(pair)
            ids = merge(ids, pair, 256 + k)
        return merges
    r = ch09.check_train_merges(no_stop, seed=1, quiet=True)
    assert not r.passed and r.key == "runs out of pairs", r.message


def expand_ok(ids, merges):
    out = []
    for i in ids:
        if i < 256:
            out.append(i)
        else:
            a, b = merges[i - 256]
            out += expand_ok([a, b], merges)
    return out


def expand_loop(ids, merges):  # a correct variant: expand until nothing ≥ 256 is left
    ids = list(ids)
    while any(i >= 256 for i in ids):
        ids = [j for i in ids for j in (merges[i - 256] if i >= 256 else (i,))]
    return ids


def test_expand_accepts_right_answers():
    assert ch09.check_expand(expand_ok, quiet=True) and ch09.check_expand(expand_loop, quiet=True)


@pytest.mark.parametrize("fn, key", [
    (lambda ids, m: [j for i in ids for j in (m[i - 256] if i >= 256 else (i,))], "one level"),
    (lambda ids, m: [j for i in expand_ok(ids, [(b, a) for a, b in m]) for j in [i]], "pair reversed"),
    (lambda ids, m: [i for i in ids if i < 256], "merged ids dropped"),
    (lambda ids, m: expand_ok(ids, m)[::-1], "reversed"),
    (lambda ids, m: [expand_ok([i], m) for i in ids], "wrong type"),
    (lambda ids, m: expand_ok(ids, m)[:-1], "off by one"),
])
def test_expand_slips(fn, key):
    r = ch09.check_expand(fn, seed=0, quiet=True)
    assert not r.passed and r.key == key, r.message


def test_expand_errors_are_named():
    def no_base_case(ids, merges):
        return [j for i in ids for j in no_base_case(list(merges[i - 256]), merges)]
    r = ch09.check_expand(no_base_case, seed=0, quiet=True)
    assert not r.passed and r.key in ("endless recursion", "index"), r.message


def test_merge_that_mutates_its_list_gets_its_own_hint():
    def in_place(ids, pair, new_id):
        for i in range(len(ids) - 1):
            if ids[i] == pair[0] and ids[i + 1] == pair[1]:
                ids[i] = new_id
                del ids[i + 1]
        return ids

    def in_place_quiet(ids, pair, new_id):
        for i in range(len(ids) - 1):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                ids[i] = new_id
                del ids[i + 1]
        return ids[:-1]

    def in_place_right(ids, pair, new_id):  # changes its input: right here, but the caller's list is changed
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                ids[i:i + 2] = [new_id]
            i += 1
        return ids
    for fn in (in_place, in_place_quiet):
        r = ch09.check_merge(fn, seed=0, quiet=True)
        assert not r.passed and r.key == "mutates the list it walks", r.message
    r = ch09.check_merge(in_place_right, seed=0, quiet=True)
    assert not r.passed and r.key == "mutates the list it walks", r.message

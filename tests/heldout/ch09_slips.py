"""Held-out learner slips for chapter 9 (tokens): make_batch, pair_counts, merge."""
import torch

# ------------------------------------------------ check_batch: make_batch(data, starts, block_size)


def batch_shift_backwards(data, starts, block_size):
    pos = starts[:, None] + torch.arange(block_size)
    return data[pos], data[pos - 1]


def batch_returns_y_x(data, starts, block_size):
    pos = starts[:, None] + torch.arange(block_size)
    return data[pos + 1], data[pos]


def batch_x_too_long(data, starts, block_size):
    pos = starts[:, None] + torch.arange(block_size + 1)
    return data[pos], data[pos + 1]


def batch_ids_plus_one(data, starts, block_size):
    pos = starts[:, None] + torch.arange(block_size)
    return data[pos], data[pos] + 1  # adds 1 to the ids, not to the positions


def batch_starts_not_column(data, starts, block_size):
    pos = starts + torch.arange(block_size)  # (B,) + (T,)
    return data[pos], data[pos + 1]


def batch_transposed(data, starts, block_size):
    pos = starts[None, :] + torch.arange(block_size)[:, None]  # (T, B)
    return data[pos], data[pos + 1]


def batch_roll_targets(data, starts, block_size):
    x = torch.stack([data[s:s + block_size] for s in starts.tolist()])
    return x, x.roll(-1, dims=1)  # last target wraps round to x[:, 0]


# --------------------------------------------------------------- check_pair_counts: my_pair_counts(ids)


def pairs_presence_only(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = 1
    return counts


def pairs_misses_last(ids):
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def pairs_unordered(ids):
    counts = {}
    for a, b in zip(ids, ids[1:]):
        key = tuple(sorted((a, b)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def pairs_cyclic(ids):
    counts = {}
    for pair in zip(ids, ids[1:] + ids[:1]):  # wraps the last id round to the first
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def pairs_start_at_one(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 1) + 1
    return counts


def pairs_reversed(ids):
    counts = {}
    for pair in zip(ids[1:], ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def pairs_crash_on_empty(ids):
    counts = {}
    prev = ids[0]
    for cur in ids[1:]:
        counts[(prev, cur)] = counts.get((prev, cur), 0) + 1
        prev = cur
    return counts


def pairs_string_keys(ids):
    counts = {}
    for a, b in zip(ids, ids[1:]):
        key = f"{a},{b}"
        counts[key] = counts.get(key, 0) + 1
    return counts


# ------------------------------------------------------------- check_merge: my_merge(ids, pair, new_id)


def merge_no_skip(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1  # one step even after a merge: the pair's second id stays
    return out


def merge_checks_first_only(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_first_occurrence(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def merge_mutates_input(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            ids[i] = new_id
            del ids[i + 1]
        i += 1
    return ids


def merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_string_replace(ids, pair, new_id):
    s = " ".join(map(str, ids))
    s = s.replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in s.split()] if s else []


def merge_reversed_pair(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[1] and ids[i + 1] == pair[0]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


SLIPS = [
    ("check_batch", "shift_backwards", batch_shift_backwards,
     "Shifted the targets the wrong way: y = data[positions - 1] instead of + 1."),
    ("check_batch", "returns_y_x", batch_returns_y_x,
     "Returned the pair in the wrong order, (targets, inputs)."),
    ("check_batch", "x_too_long", batch_x_too_long,
     "Took block_size + 1 positions for both x and y, so each window is one id too long."),
    ("check_batch", "ids_plus_one", batch_ids_plus_one,
     "Wrote data[positions] + 1, adding one to the ids instead of to the positions."),
    ("check_batch", "starts_not_column", batch_starts_not_column,
     "Added starts (B,) to arange(T) without making starts a column (B, 1)."),
    ("check_batch", "transposed", batch_transposed,
     "Built the position table as (T, B) (starts as a row, offsets as a column) instead of (B, T)."),
    ("check_batch", "roll_targets", batch_roll_targets,
     "Made y with x.roll(-1, dims=1), so each window's last target wraps round to its first id instead of the next id in data."),

    ("check_pair_counts", "presence_only", pairs_presence_only,
     "Set counts[pair] = 1 instead of incrementing, so every pair counts once."),
    ("check_pair_counts", "misses_last_pair", pairs_misses_last,
     "Looped over range(len(ids) - 2), missing the last adjacent pair."),
    ("check_pair_counts", "unordered_pairs", pairs_unordered,
     "Keyed the pairs by sorted(a, b), so (a, b) and (b, a) are counted together."),
    ("check_pair_counts", "cyclic", pairs_cyclic,
     "Zipped ids with ids[1:] + ids[:1], adding a pair from the last id back to the first."),
    ("check_pair_counts", "start_at_one", pairs_start_at_one,
     "Used counts.get(pair, 1) + 1, so every count is one too high."),
    ("check_pair_counts", "reversed_pairs", pairs_reversed,
     "Zipped ids[1:] with ids, so each key is (b, a) instead of (a, b)."),
    ("check_pair_counts", "crash_on_empty", pairs_crash_on_empty,
     "Started with prev = ids[0], which raises IndexError on an empty list."),
    ("check_pair_counts", "string_keys", pairs_string_keys,
     "Used strings 'a,b' as keys instead of tuples (a, b)."),

    ("check_merge", "no_skip", merge_no_skip,
     "Moved on by one id after a merge instead of two, so the pair's second id is kept (and can start another merge)."),
    ("check_merge", "checks_first_only", merge_checks_first_only,
     "Compared only ids[i] with pair[0], never checking that ids[i + 1] is pair[1]."),
    ("check_merge", "first_occurrence", merge_first_occurrence,
     "Replaced only the first occurrence of the pair and returned."),
    ("check_merge", "mutates_input", merge_mutates_input,
     "Edited the input list in place while walking it (ids[i] = new_id; del ids[i + 1]) and returned it."),
    ("check_merge", "drops_last", merge_drops_last,
     "Looped while i < len(ids) - 1, so a last id that is not part of a pair is lost."),
    ("check_merge", "string_replace", merge_string_replace,
     "Joined the ids into a string and used str.replace, which also matches inside multi-digit ids."),
    ("check_merge", "reversed_pair", merge_reversed_pair,
     "Looked for (pair[1], pair[0]) instead of (pair[0], pair[1])."),
]

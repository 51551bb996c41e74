"""Checkers for chapter 9: text as numbers. Learners write plain Python on lists of ids, and PyTorch for
batches.

* ``check_pair_counts(fn)``: fn(ids: list[int]) → dict {(a, b): count} of adjacent pairs (overlapping
  pairs count: [7, 7, 7] holds (7, 7) twice).
* ``check_merge(fn)``: fn(ids: list[int], pair: (a, b), new_id: int) → list[int], each occurrence of the
  pair replaced by new_id, scanning left to right ([7, 7, 7] with (7, 7) → [new_id, 7]).
* ``check_batch(fn)``: fn(data: (N,) long, starts: (B,) long, block_size: T) → (x, y), both (B, T):
  x[b] = data[s : s + T], y[b] = data[s + 1 : s + T + 1] with s = starts[b].

Dicts and lists become tensors before they are compared (a pair table: sorted rows (a, b, count)), so
:mod:`kqvlib.checks` applies unchanged; the learner gets a copy of every list.

Two more exercises learn and undo merges (module ``bpe``):

* ``check_train_merges(fn)``: fn(ids: list[int], n_merges: int) → the list of merged pairs, in order:
  merge k replaces the most frequent adjacent pair (ties to the smaller pair, as ``BPETokenizer.train``)
  by the new id 256 + k, and the counts are taken again on the merged ids before the next merge.
* ``check_expand(fn)``: fn(ids: list[int], merges: list[(a, b)]) → the ids with every merged id (≥ 256)
  replaced by the pair it stands for, recursively, down to ids < 256.

One module per group: ``tokens`` (pair counts, merge), ``batch`` and ``bpe`` (train_merges, expand).
"""
from kqvlib.exercises.ch09.bpe import check_expand, check_train_merges
from kqvlib.exercises.ch09.batch import check_batch
from kqvlib.exercises.ch09.tokens import check_merge, check_pair_counts

__all__ = ["check_pair_counts", "check_merge", "check_batch", "check_train_merges", "check_expand"]

"""Text as numbers (chapter 9): tokenizers turn a string into integer ids and back.

Two tokenizers: :class:`CharTokenizer` (one id per character of a fixed alphabet; the book's GPT uses
it) and :class:`BPETokenizer`, byte-pair encoding built from scratch on UTF-8 bytes, so that *any*
string round-trips exactly. BPE starts from the 256 byte values and learns merges: the most frequent
pair of adjacent ids becomes a new id, again and again, until the vocabulary has the size asked for.
"""
from __future__ import annotations

import codecs
import heapq
import re
from collections import Counter

import torch

from kqvlib._common import is_int, require, require_ids, require_int, require_str

# GPT-2's pre-tokenizer rule, in Python's `re`: merges never cross these chunk boundaries. Chunks are
# contractions, words with one leading space, numbers, punctuation runs and whitespace runs.
SPLIT_PATTERN = r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"


class CharTokenizer:
    """Characters ↔ integer ids. The vocabulary is the sorted set of characters of ``text``.
    Built in chapter 9."""

    def __init__(self, text: str):
        require_str("CharTokenizer", "text", text)
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        """str of length n → n ids."""
        require_str("CharTokenizer.encode", "s", s)
        unknown = sorted(set(s) - self.stoi.keys())
        require(not unknown, lambda: f"CharTokenizer.encode: s holds characters not in the vocabulary: {unknown!r}")
        return [self.stoi[c] for c in s]

    def decode(self, ids) -> str:
        """Ids (list or 1-D tensor of length n) → str of length n."""
        ids = _id_list("CharTokenizer.decode", ids)
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        require(not bad, lambda: f"CharTokenizer.decode: ids out of range 0..{len(self.chars) - 1}: {bad[:5]}")
        return "".join(self.chars[i] for i in ids)


def _id_list(func: str, ids, name: str = "ids") -> list[int]:
    """A list or tuple of ints, or a 1-D integer tensor, as a list of ints (anything else: a clear error)."""
    if isinstance(ids, torch.Tensor):
        require_ids(func, name, ids, dim=1)
        ids = ids.tolist()
    elif hasattr(ids, "tolist") and getattr(ids, "ndim", None) == 1:  # a NumPy array of ids
        ids = ids.tolist()
    require(isinstance(ids, (list, tuple, range)), lambda: (
        f"{func}: {name} must be a list of ints or a 1-D integer tensor, got {type(ids).__name__}"))
    ids = list(ids)
    require(all(type(i) is int for i in ids) or all(is_int(i) for i in ids), lambda: (  # the first is fast
        f"{func}: {name} must hold ints only, got {[i for i in ids if not is_int(i)][:5]!r}"))
    require(not ids or min(ids) >= 0, lambda: f"{func}: {name} out of range (ids are ≥ 0): {[i for i in ids if i < 0][:5]}")
    return ids


def get_pair_counts(ids, counts: Counter | None = None, weight: int = 1) -> Counter:
    """How often each pair of adjacent ids occurs: ``[1, 1, 1, 2]`` → ``{(1, 1): 2, (1, 2): 1}``.
    Overlapping pairs count (``1 1 1`` holds ``(1, 1)`` twice). Adds ``weight`` per pair into
    ``counts`` when given. Built in chapter 9."""
    ids = _id_list("get_pair_counts", ids)
    require(counts is None or isinstance(counts, dict),
            lambda: f"get_pair_counts: counts must be a Counter or None, got {type(counts).__name__}")
    require_int("get_pair_counts", "weight", weight, lo=1)
    return _pair_counts(ids, Counter() if counts is None else counts, weight)


def _pair_counts(ids: list[int], counts: Counter, weight: int) -> Counter:
    """:func:`get_pair_counts` without the checks (training calls it once per distinct chunk)."""
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
    return counts


def merge(ids, pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right, so
    overlapping occurrences are merged once: ``merge([5, 5, 5], (5, 5), 9)`` → ``[9, 5]``.
    Built in chapter 9."""
    ids = _id_list("merge", ids)
    require(isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_int(p) for p in pair),
            lambda: f"merge: pair must be two ints (a, b), got {pair!r}")
    require_int("merge", "new_id", new_id, lo=0)
    return _merge(ids, tuple(pair), new_id)


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """:func:`merge` without the checks (training and encoding call it many times on their own lists)."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-pair encoding on UTF-8 bytes: ids 0–255 are the bytes, id ``256 + k`` is merge ``k``.
    Train it with :meth:`BPETokenizer.train`; ``BPETokenizer(merges)`` rebuilds one from its merges
    (the first ``k`` merges of a trained tokenizer are the tokenizer trained to ``256 + k``).
    Built in chapter 9."""

    def __init__(self, merges, pattern: str | None = SPLIT_PATTERN):
        require(isinstance(merges, (list, tuple)), lambda: (
            f"BPETokenizer: merges must be a list of (a, b) id pairs, got {type(merges).__name__}"))
        bad = [p for p in merges if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(i) for i in p))]
        require(not bad, lambda: f"BPETokenizer: merges must be (a, b) pairs of ints, got {bad[:3]!r}")
        self.merges = [tuple(p) for p in merges]  # merges[k] = (a, b) became id 256 + k
        for k, (a, b) in enumerate(self.merges):
            require(0 <= a < 256 + k and 0 <= b < 256 + k,
                    lambda: f"BPETokenizer: merges[{k}] = {(a, b)} uses an id not yet defined (< {256 + k})")
        self.pattern = pattern
        self._split = _compile("BPETokenizer", pattern)
        self.ranks = {p: k for k, p in enumerate(self.merges)}
        self.vocab = [bytes([i]) for i in range(256)]  # id → the bytes it stands for
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = SPLIT_PATTERN) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text``. Ties go to the smaller pair, so training is
        deterministic. Each distinct chunk is counted once with its frequency, and only the chunks
        that hold the merged pair are updated after a merge (an incremental pair count).
        Built in chapter 9."""
        require_str("BPETokenizer.train", "text", text)
        require_int("BPETokenizer.train", "vocab_size", vocab_size, lo=256)
        _compile("BPETokenizer.train", pattern)
        chunks = Counter(re.findall(pattern, text) if pattern else [text])
        words = [list(c.encode("utf-8")) for c in chunks]  # each distinct chunk as byte ids
        freq = list(chunks.values())
        counts: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}  # pair → the chunks that (may) hold it
        for w, ids in enumerate(words):
            _pair_counts(ids, counts, freq[w])
            for pair in zip(ids, ids[1:]):
                where.setdefault(pair, set()).add(w)
        heap = [(-c, p) for p, c in counts.items()]
        heapq.heapify(heap)
        merges = []
        while len(merges) < vocab_size - 256 and heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) != -neg or neg == 0:
                continue  # a stale heap entry: this pair's count changed since it was pushed
            new_id = 256 + len(merges)
            merges.append(pair)
            changed = set()
            for w in where.pop(pair, ()):
                old = words[w]
                new = _merge(old, pair, new_id)
                if len(new) == len(old):
                    continue
                for p in zip(old, old[1:]):
                    counts[p] -= freq[w]
                    changed.add(p)
                for p in zip(new, new[1:]):
                    counts[p] += freq[w]
                    changed.add(p)
                    where.setdefault(p, set()).add(w)
                words[w] = new
            for p in changed:
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    del counts[p]
        return cls(merges, pattern)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            # the pair that was merged earliest in training goes first, as it did in training
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = _merge(ids, pair, 256 + self.ranks[pair])
        return ids

    def encode(self, s: str) -> list[int]:
        """Any str → ids (each distinct chunk is encoded once and remembered)."""
        require_str("BPETokenizer.encode", "s", s)
        out: list[int] = []
        for chunk in (self._split.findall(s) if self._split else [s]):
            if chunk not in self._cache:
                self._cache[chunk] = self._encode_chunk(chunk)
            out.extend(self._cache[chunk])
        return out

    def decode(self, ids, errors: str = "replace") -> str:
        """Ids → str. The bytes of all tokens are joined *first* and decoded once: one character may be
        split over several tokens. An id sequence that is not valid UTF-8 (a model may sample one)
        gets U+FFFD where it breaks; pass ``errors="strict"`` to raise instead."""
        ids = _id_list("BPETokenizer.decode", ids)
        try:
            codecs.lookup_error(errors)  # bytes.decode looks the handler up only when it meets bad bytes
        except (LookupError, TypeError):
            raise ValueError(f"BPETokenizer.decode: errors must be a codecs error handler such as 'replace' "
                             f"or 'strict', got {errors!r}") from None
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        require(not bad, lambda: f"BPETokenizer.decode: ids out of range 0..{len(self.vocab) - 1}: {bad[:5]}")
        data = b"".join(self.vocab[i] for i in ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:  # errors="strict": say which ids broke it
            raise UnicodeDecodeError(e.encoding, e.object, e.start, e.end,
                                     f"{e.reason}; ids {ids[:8]}{'…' if len(ids) > 8 else ''} are not whole UTF-8 characters") from None

    def token_str(self, i: int) -> str:
        """What id ``i`` stands for, printable (bytes that are not whole UTF-8 show as escapes)."""
        if isinstance(i, torch.Tensor) and i.dim() == 0 and i.dtype in (torch.int64, torch.int32) \
                and i.device.type != "meta":
            i = int(i)
        require(is_int(i) and 0 <= i < len(self.vocab), lambda: (
            f"BPETokenizer.token_str: i must be a token id in 0..{len(self.vocab) - 1}, got {i!r}"))
        return self.vocab[i].decode("utf-8", errors="backslashreplace")


def _compile(func: str, pattern: str | None):
    """The split rule as a compiled regular expression (None: no split); a bad one is a clear error."""
    if pattern is None or pattern == "":
        return None
    require(isinstance(pattern, str), lambda: f"{func}: pattern must be a str or None, got {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{func}: pattern {pattern!r} is not a valid regular expression ({e})") from None

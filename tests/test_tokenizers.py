"""Tokenizers (chapter 9): the character tokenizer's errors, and byte-pair encoding built from scratch:
exact round trips on arbitrary text (unicode and emoji included), deterministic merges, and the
properties encoding must have."""
import random
from collections import Counter

import pytest
import torch

from kqvlib.tokenizers import BPETokenizer, CharTokenizer, get_pair_counts, merge

SAMPLES = [
    "",
    "a",
    "aaaaaaa",
    "hello world, hello there!\n\n  indented\tand tabbed",
    "naïve café — Ærø, Straße; Ünïcödé",
    "日本語のテキストと中文",
    "emoji 🤖🚀👩‍👩‍👧 and flags 🇬🇧🇫🇷",
    "mixed: x² + y² = z², ∑ᵢ αᵢ → ∞ ; 12345 67.89",
    "\x00\x01 control \r\n chars \u200b zero-width",
]
TRAIN_TEXT = " ".join(SAMPLES) * 5 + " the cat sat on the mat with the hat " * 20


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TRAIN_TEXT, 256 + 60)


def _random_text(rng: random.Random, n: int) -> str:
    pools = [range(32, 127), range(0xC0, 0x250), range(0x3040, 0x30FF), range(0x1F600, 0x1F650),
             [0x0A, 0x09, 0x20, 0x20, 0x20]]
    return "".join(chr(rng.choice(rng.choice(pools))) for _ in range(n))


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_samples(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids, errors="strict") == text


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_random_text(bpe, seed):
    rng = random.Random(seed)
    text = _random_text(rng, rng.randint(0, 200))
    assert bpe.decode(bpe.encode(text), errors="strict") == text
    assert len(bpe.encode(text)) <= len(text.encode("utf-8"))  # never longer than the bytes


@pytest.mark.parametrize("pattern", [None, r"\S+|\s+"])
def test_round_trip_other_split_rules(pattern):
    tok = BPETokenizer.train(TRAIN_TEXT, 300, pattern=pattern)
    for s in SAMPLES:
        assert tok.decode(tok.encode(s), errors="strict") == s


def test_trained_on_random_unicode_round_trips():
    rng = random.Random(0)
    text = _random_text(rng, 3000)
    tok = BPETokenizer.train(text, 400)
    other = _random_text(rng, 500)
    assert tok.decode(tok.encode(text), errors="strict") == text
    assert tok.decode(tok.encode(other), errors="strict") == other


def test_merges_deterministic_and_prefix_consistent(bpe):
    again = BPETokenizer.train(TRAIN_TEXT, 256 + 60)
    assert again.merges == bpe.merges
    smaller = BPETokenizer.train(TRAIN_TEXT, 256 + 25)
    assert smaller.merges == bpe.merges[:25]  # training longer only appends merges


def test_first_merge_is_the_most_frequent_pair():
    text = "abababab cdcd ab"
    tok = BPETokenizer.train(text, 257, pattern=None)
    counts = get_pair_counts(list(text.encode()))
    best = max(counts.values())
    assert tok.merges == [min(p for p, c in counts.items() if c == best)]
    assert tok.encode("ab") == [256] and tok.token_str(256) == "ab"


def test_training_matches_naive_bpe():
    """The incremental pair count gives the merges of the slow recount-everything algorithm."""
    text = "low lower lowest newer wider " * 7 + "aaaa bbb aaa"
    chunks = [list(c.encode()) for c in __import__("re").findall(BPETokenizer(()).pattern, text)]
    merges = []
    for k in range(40):
        counts = Counter()
        for ids in chunks:
            get_pair_counts(ids, counts)
        if not counts:
            break
        best = max(counts.values())
        pair = min(p for p, c in counts.items() if c == best)
        merges.append(pair)
        chunks = [merge(ids, pair, 256 + k) for ids in chunks]
    assert BPETokenizer.train(text, 256 + len(merges)).merges == merges


def test_encode_of_training_text_compresses(bpe):
    ids = bpe.encode(TRAIN_TEXT)
    assert len(ids) < 0.6 * len(TRAIN_TEXT.encode())


def _encode_in_rank_order(tok: BPETokenizer, text: str) -> list[int]:
    """The straightforward encoder: in each chunk, apply merge 0 everywhere, then merge 1, … (a merge can
    only create pairs of a later rank, so this is what encoding must give)."""
    out = []
    for chunk in __import__("re").findall(tok.pattern, text):
        ids = list(chunk.encode("utf-8"))
        for k, pair in enumerate(tok.merges):
            ids = merge(ids, pair, 256 + k)
        out.extend(ids)
    return out


def test_encode_applies_merges_in_rank_order(bpe):
    # The smallest case where the order matters: "abc" with merges ab → 256 (first), bc → 257 (second).
    tok = BPETokenizer([(ord("a"), ord("b")), (ord("b"), ord("c"))])
    assert tok.encode("abc") == [256, ord("c")], "the earliest merge wins, not the latest"
    rng = random.Random(0)
    for text in [TRAIN_TEXT, *SAMPLES, *(_random_text(rng, 300) for _ in range(5))]:
        assert bpe.encode(text) == _encode_in_rank_order(bpe, text)
    # the token count of a fixed text: latest-first encodes TRAIN_TEXT into more tokens
    assert len(bpe.encode(TRAIN_TEXT)) == len(_encode_in_rank_order(bpe, TRAIN_TEXT))


def test_vocab_is_bytes_of_merges(bpe):
    for k, (a, b) in enumerate(bpe.merges):
        assert bpe.vocab[256 + k] == bpe.vocab[a] + bpe.vocab[b]
    assert bpe.vocab_size == 256 + len(bpe.merges)


def test_decode_joins_bytes_before_decoding():
    tok = BPETokenizer([])  # bytes only: "é" is two tokens
    ids = tok.encode("é")
    assert ids == [0xC3, 0xA9] and tok.decode(ids) == "é"
    assert tok.decode(ids[:1]) == "\ufffd"  # half a character: replaced, not an exception
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids[:1], errors="strict")


def test_decode_accepts_tensors_and_rejects_bad_ids(bpe):
    ids = bpe.encode("the cat")
    assert bpe.decode(torch.tensor(ids)) == "the cat"
    with pytest.raises(ValueError, match=str(bpe.vocab_size - 1)):
        bpe.decode([bpe.vocab_size])
    with pytest.raises(ValueError):
        bpe.decode([-1])


def test_train_and_constructor_errors():
    with pytest.raises(ValueError, match="256"):
        BPETokenizer.train("abc", 100)
    with pytest.raises(ValueError, match="not yet defined"):
        BPETokenizer([(300, 1)])
    assert BPETokenizer.train("ab", 1000).vocab_size == 257  # stops when no pair is left


def test_merge_and_pair_counts():
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]
    assert merge([1, 2, 1, 2, 3], (1, 2), 7) == [7, 7, 3]
    assert merge([], (1, 2), 7) == [] and merge([1], (1, 2), 7) == [1]
    assert get_pair_counts([1, 1, 1, 2]) == {(1, 1): 2, (1, 2): 1}
    assert get_pair_counts([3]) == {}


# --- the character tokenizer ---------------------------------------------------------------------------------

def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == len(set("hello world"))
    assert tok.decode(tok.encode("low hold")) == "low hold"
    assert tok.decode(torch.tensor(tok.encode("hello"))) == "hello"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("zoo")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([-1])

"""Tiny Shakespeare, the train/validation split and random training batches (chapter 9).

The text (1,115,394 characters) is downloaded once from the char-rnn repository, checked against
its SHA-256, and cached. To use a copy you already have, point ``KQV_TINYSHAKESPEARE`` at it::

    export KQV_TINYSHAKESPEARE=/path/to/tinyshakespeare.txt

The cache folder is ``$KQV_CACHE_DIR``, else ``$XDG_CACHE_HOME/kqv``, else ``~/.cache/kqv``.
Downloading, checking and caching is pooch's ``retrieve``: it streams into a temporary file beside
the cache, checks the hash, and only then moves the file into place, so a reader never sees a
partial or corrupt copy; a cached copy with the wrong hash is downloaded again.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

import pooch
import torch

from kqvlib._common import as_device, require, require_generator, require_ids, require_int, require_real, require_str
from kqvlib.tokenizers import CharTokenizer

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
FILENAME = "tinyshakespeare.txt"
ENV_FILE = "KQV_TINYSHAKESPEARE"
ENV_CACHE = "KQV_CACHE_DIR"


class DatasetError(RuntimeError, ValueError):
    """The dataset is missing, corrupt or unreadable; the message says how to get a good copy. It is also a
    ``ValueError``, like every other error kqvlib raises for what it was given. Built in chapter 9."""


def cache_dir() -> Path:
    """Where downloads are kept: $KQV_CACHE_DIR, else $XDG_CACHE_HOME/kqv, else ~/.cache/kqv.
    Built in chapter 9."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kqv"


def _how_to_get(path: Path, url: str) -> str:
    return (
        f"Download it by hand from {url} and either save it as {path} "
        f"or set {ENV_FILE}=/path/to/the/file."
    )


@contextlib.contextmanager
def _pooch_quiet():
    """pooch logs each download to stderr; keep notebook outputs the same whether or not it downloaded."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(url: str, dest: Path, sha256: str, timeout: float) -> Path:
    """pooch.retrieve: download into dest's folder, verify, move into place; raise DatasetError if not."""
    try:
        with _pooch_quiet():
            return Path(pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=dest.name, path=dest.parent,
                                       downloader=pooch.HTTPDownloader(progressbar=False, timeout=timeout)))
    except ValueError as e:  # pooch: the hash does not match; the temporary file is already deleted
        got = re.search(r"but got (\w+)", str(e))
        raise DatasetError(
            f"The file downloaded from {url} is corrupt (sha256 {got.group(1) if got else '?'}, expected "
            f"{sha256}); nothing was saved. " + _how_to_get(dest, url)
        ) from e
    except OSError as e:  # requests' errors (refused, timed out, HTTP 404) are OSErrors
        raise DatasetError(f"Tiny Shakespeare is not at {dest} and could not be downloaded ({e}). "
                           + _how_to_get(dest, url)) from e


def load_tinyshakespeare(url: str = URL, sha256: str = SHA256, timeout: float = 30.0) -> str:
    """The Tiny Shakespeare text, verified. Built in chapter 9.

    Order: the file named by $KQV_TINYSHAKESPEARE (must exist and match the checksum), then the
    cache, then a download into the cache. A cached file with the wrong checksum is deleted and
    downloaded again. Raises :class:`DatasetError` with instructions when no good copy can be had
    (also when the file or the cache folder cannot be read), ``ValueError`` for a bad argument.
    """
    require_str("load_tinyshakespeare", "url", url)
    require(isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256) is not None,
            lambda: f"load_tinyshakespeare: sha256 must be 64 lowercase hex digits, got {sha256!r}")
    require_real("load_tinyshakespeare", "timeout", timeout, lo=0, lo_open=True)
    try:
        return _load(url, sha256, timeout)
    except PermissionError as e:  # a file or folder this process may not read or write
        where = f"{ENV_FILE}={os.environ[ENV_FILE]}" if os.environ.get(ENV_FILE) else \
            f"the cache folder {cache_dir()} (set by {ENV_CACHE}, else XDG_CACHE_HOME, else ~/.cache)"
        raise DatasetError(f"Tiny Shakespeare cannot be read or saved: permission denied for {e.filename or where} "
                           f"({where}). Make it readable, or point {ENV_CACHE} at a folder you may write to, "
                           f"or {ENV_FILE} at a copy of the file.") from e


def _load(url: str, sha256: str, timeout: float) -> str:
    env = os.environ.get(ENV_FILE)
    if env:
        p = Path(env)
        if not p.is_file():
            raise DatasetError(f"{ENV_FILE} points at {p}, which does not exist. " + _how_to_get(p, url))
        got = pooch.file_hash(str(p))
        if got != sha256:
            raise DatasetError(f"{p} (from {ENV_FILE}) is not Tiny Shakespeare: its sha256 is {got}, "
                               f"expected {sha256}. " + _how_to_get(p, url))
        return p.read_bytes().decode("utf-8")
    dest = cache_dir() / FILENAME
    if dest.is_file() and pooch.file_hash(str(dest)) != sha256:
        dest.unlink()  # a corrupt cached copy is never kept, even if the new download fails
    return _download(url, dest, sha256, timeout).read_bytes().decode("utf-8")


def train_val_split(data: torch.Tensor, train_fraction: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D tensor of N ids into the first ⌊fN⌋ (train) and the rest (val). Built in chapter 9."""
    require_ids("train_val_split", "data", data)
    require(data.dim() == 1, lambda: f"train_val_split: data must be 1-D, got shape {tuple(data.shape)}")
    require_real("train_val_split", "train_fraction", train_fraction, lo=0, hi=1)
    n = int(train_fraction * len(data))
    return data[:n], data[n:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows from a 1-D id tensor: x (B, T) and the next-token targets y (B, T), y = x shifted
    by one. Built in chapter 9."""
    require_ids("get_batch", "data", data)
    require(data.dim() == 1, lambda: f"get_batch: data must be 1-D, got shape {tuple(data.shape)}")
    require_int("get_batch", "batch_size", batch_size, lo=0)
    require_int("get_batch", "block_size", block_size, lo=1)
    require_generator("get_batch", "generator", generator)
    device = as_device("get_batch", "device", device) or torch.device("cpu")
    require(len(data) > block_size,
            lambda: f"get_batch: data has {len(data)} tokens, need more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    x = data[starts[:, None] + offsets]  # (B, T)
    y = data[starts[:, None] + offsets + 1]  # (B, T)
    return x.to(device), y.to(device)


def load_dataset() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """Tiny Shakespeare ready to train on: (tokenizer, train ids, val ids), a 90/10 split.
    Built in chapter 9."""
    text = load_tinyshakespeare()
    tok = CharTokenizer(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = train_val_split(data)
    return tok, train, val

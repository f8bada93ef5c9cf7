"""Lesson 07 (evaluation, deepfakes, bias): every family of the course on one league table, a
real-versus-generated detector and how it fails, and a generator trained on skewed data.

Where the models come from: lessons 02-05 leave their trained models under ``data/models/``; the
``get_*`` functions load them when they are there and usable, and otherwise train a compact version
here (cached under ``data/models/eval-*.pt``, so a second run loads it). Each returns a ``Trained``:
the model, the training seconds (None for a model loaded from another lesson) and one sentence that
says which it did.

The autoregressive model is new here: a MADE (masked autoencoder for distribution estimation) over
the pixels of 14x14 binarised digits. Its likelihood is exact: log p(x) = sum_i log p(x_i | x_<i).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .runtime import DATA_DIR, is_fast
from .train import progress


# --------------------------------------------------------------------------- caching compact models

@dataclass
class Trained:
    model: nn.Module
    train_seconds: float | None   # None: loaded from an earlier lesson, whose training was not timed here
    how: str                      # one sentence: loaded, or trained here


def eval_model_path(name: str, data, steps: int) -> Path:
    """Where this lesson caches a compact model: one file per model, data set (name, size) and budget."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in data.name.lower()).strip("-")
    return Path(DATA_DIR) / "models" / f"eval-{name}-{slug}-n{len(data.x_train)}-steps{steps}{'-fast' if is_fast() else ''}.pt"


def load_or_fit(path: Path, model: nn.Module, fit, what: str) -> Trained:
    """``model`` with the weights cached at ``path``, or trained by ``fit(model)`` and cached there.

    A damaged or mismatched file is trained again, not raised. The cache keeps the training seconds.
    """
    path = Path(path)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["weights"])
            seconds = float(saved["train_seconds"])
            return Trained(model.eval(), seconds, f"The {what} was loaded from this lesson's cache {path.name} "
                                                  f"(it took {seconds:.0f} s to train).")
        except Exception as exc:   # truncated, foreign or stale file
            print(f"The cached {what} {path.name} could not be used ({type(exc).__name__}), so it is trained again.")
    start = time.perf_counter()
    fit(model)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save({"weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "train_seconds": seconds}, partial)
    partial.replace(path)
    return Trained(model.eval(), seconds, f"The {what} was trained here in {seconds:.0f} s and cached as {path.name}.")


# --------------------------------------------------------------------------- the families

def lesson_or_compact(load, path_of, data, cfg, lesson_steps: int, said: str, cache: Path, make, fit,
                      compact: str) -> Trained:
    """The model an earlier lesson saved (``load(path_of(data, cfg, lesson_steps))``, used when it has the
    config ``cfg``), else a compact one, ``fit(make())``, cached at ``cache``. ``load`` and ``path_of`` may be
    None (an older copy of the course without them)."""
    if load is not None and path_of is not None:
        path = path_of(data, cfg, lesson_steps)
        model = load(path, verbose=False)
        if model is not None and model.cfg == cfg:
            return Trained(model, None, f"The {said}, loaded from {path.name}.")
    torch.manual_seed(0)
    return load_or_fit(cache, make(), fit, compact)


def autoencoder_codes_sampler(ae: nn.Module, x_train: torch.Tensor):
    """An autoencoder made generative: fit one Gaussian (full covariance) to its training codes, then
    decode draws from it. Returns ``sample(n, seed) -> images (n, 1, H, W)``."""
    from .autoencoders import decode_images, encode_all

    codes = encode_all(ae, x_train).double()                                          # (N, latent)
    cov = torch.cov(codes.T) + 1e-5 * torch.eye(codes.shape[1], dtype=codes.dtype)
    gaussian = torch.distributions.MultivariateNormal(codes.mean(0), covariance_matrix=cov)

    def sample(n: int, seed: int = 0) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            z = gaussian.sample((n,)).float()
        return decode_images(ae, z)
    return sample


def fit_vae(model: nn.Module, x: torch.Tensor, steps: int, batch_size: int = 128, lr: float = 1e-3,
            seed: int = 0, weights: torch.Tensor | None = None, desc: str = "VAE") -> list[float]:
    """Train a VAE on the negative ELBO (dynamically binarised batches) for ``steps`` steps.

    ``weights`` (N,) draws training images with those relative probabilities (re-weighting);
    None draws them uniformly. Returns the loss per step.
    """
    from .vae import binarize, elbo_loss

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in progress(range(steps), desc=desc, leave=False):
        idx = (torch.multinomial(weights, batch_size, replacement=True, generator=gen) if weights is not None
               else torch.randint(len(x), (batch_size,), generator=gen))
        xb = binarize(x[idx], generator=gen)
        logits, mu, logvar = model(xb)
        loss = elbo_loss(logits, xb, mu, logvar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def get_autoencoder(data, steps: int) -> Trained:
    """Lesson 02's autoencoder (hidden 400, latent 16): its saved file, or trained now with its recipe."""
    from . import autoencoders

    cfg = autoencoders.AEConfig(hidden=(400,), latent=16)
    path = autoencoders.cache_path(cfg, data.name, steps)
    existed = path.is_file()
    start = time.perf_counter()
    ae = autoencoders.load_or_train(cfg, data.x_train, data.name, steps)
    seconds = time.perf_counter() - start
    if existed and path.is_file():
        return Trained(ae, None, f"The autoencoder is lesson 02's, loaded from {path.name}.")
    return Trained(ae, seconds, f"The autoencoder was trained here with lesson 02's recipe in {seconds:.0f} s.")


def get_vae(data, lesson_steps: int, steps: int) -> Trained:
    """Lesson 03's VAE (hidden 400, latent 20) when it saved one, else a compact one trained here."""
    from . import vae

    cfg = vae.VAEConfig(hidden=400, latent=20)
    return lesson_or_compact(getattr(vae, "load_vae", None), getattr(vae, "vae_path", None), data, cfg, lesson_steps,
                             "VAE is lesson 03's", eval_model_path("vae", data, steps), lambda: vae.VAE(cfg),
                             lambda m: fit_vae(m, data.x_train, steps), "compact VAE")


def get_gan(data, steps: int) -> Trained:
    """An unconditional MLP GAN with lesson 04's plain recipe (lesson 04 keeps only its conditional GAN)."""
    from . import gan

    cfg = gan.GANConfig(arch="mlp", g_hidden=(256, 512), d_hidden=(256,))
    torch.manual_seed(0)
    G, D = gan.build_gan(cfg)

    def fit(G):
        gan.train_gan(G, D, data.x_train, data.y_train, gan.TrainConfig(steps=steps), desc="GAN")
    return load_or_fit(eval_model_path("gan", data, steps), G, fit, "unconditional GAN")


def get_cgan(data, steps: int) -> Trained:
    """Lesson 04's conditional GAN (its EMA generator) when saved, else a compact one trained here."""
    from dataclasses import replace

    from . import gan

    loaded = gan.load_gan(gan.cgan_path(data), gan.CGAN_CONFIG, verbose=False)
    if loaded is not None:
        G, _, G_ema = loaded
        return Trained(G_ema if G_ema is not None else G, None,
                       f"The conditional GAN is lesson 04's, loaded from {gan.cgan_path(data).name}.")
    torch.manual_seed(0)
    G, D = gan.build_gan(gan.CGAN_CONFIG)
    recipe = replace(gan.CGAN_TRAIN, steps=steps)

    def fit(G):
        *_, G_ema = gan.train_gan(G, D, data.x_train, data.y_train, recipe, desc="conditional GAN")
        G.load_state_dict(G_ema.state_dict())   # keep the averaged generator, as lesson 04 does
    return load_or_fit(eval_model_path("cgan", data, steps), G, fit, "compact conditional GAN")


def fit_unet(model: nn.Module, x: torch.Tensor, y: torch.Tensor, schedule, steps: int, batch_size: int = 40,
             lr: float = 2e-3, p_uncond: float = 0.1, seed: int = 0) -> list[float]:
    """Train a noise-prediction U-Net with the simple DDPM loss; a share ``p_uncond`` of labels is
    replaced by the "no label" class so that the model also learns to draw without one."""
    from . import diffusion

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses = []
    model.train()
    for _ in progress(range(steps), desc="diffusion", leave=False):
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        x0, yb = diffusion.to_model_range(x[idx]), y[idx].clone()
        yb[torch.rand(batch_size, generator=gen) < p_uncond] = model.cfg.n_classes
        t = torch.randint(schedule.T, (batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = diffusion.diffusion_loss(model, x0, t, noise, yb, schedule)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def get_unet(data, schedule, lesson_steps: int, steps: int) -> Trained | None:
    """Lesson 05's U-Net when saved, else a compact one trained here; None when ``utils.diffusion`` has
    no U-Net (an older copy of the course)."""
    from . import diffusion

    if not hasattr(diffusion, "UNet"):
        return None
    cfg = diffusion.UNetConfig(n_classes=len(data.classes))
    return lesson_or_compact(getattr(diffusion, "load_unet", None), getattr(diffusion, "unet_path", None), data, cfg,
                             lesson_steps, "diffusion model is lesson 05's", eval_model_path("unet", data, steps),
                             lambda: diffusion.UNet(cfg),
                             lambda m: fit_unet(m, data.x_train, data.y_train, schedule, steps), "compact diffusion model")


def diffusion_sampler(model: nn.Module, schedule, n_classes: int, method: str = "ddim", ddim_steps: int = 20):
    """``sample(n, seed) -> (images in [0, 1], labels)`` for a class-conditional U-Net (labels cycle 0..9)."""
    from . import diffusion

    def sample(n: int, seed: int = 0):
        y = torch.arange(n) % n_classes
        if method == "ddim":
            x = diffusion.sample_ddim(model, y, schedule, steps=ddim_steps, w=1.0, seed=seed)
        else:
            x = diffusion.sample_ddpm(model, y, schedule, w=1.0, seed=seed)
        return diffusion.to_pixels(x), y
    return sample


# --------------------------------------------------------------------------- the autoregressive model: MADE

def to_binary_small(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Downsample (average over ``factor`` x ``factor`` blocks) and binarise at 0.5: (B, 1, H/f, W/f) in {0, 1}."""
    return (F.avg_pool2d(x, factor) > 0.5).to(x.dtype)


def made_masks(n_in: int, hidden: tuple) -> list[torch.Tensor]:
    """The connectivity masks of a MADE with the natural pixel order, one (out, in) mask per layer.

    Input i has degree i + 1 (1..D); hidden unit k of a layer has degree (k mod (D - 1)) + 1. A hidden
    unit sees the inputs whose degree is at most its own; output i sees hidden units of degree at most i,
    so output i depends only on pixels 0..i-1.
    """
    degrees = [torch.arange(1, n_in + 1)]                                    # inputs: 1..D
    degrees += [torch.arange(h) % max(1, n_in - 1) + 1 for h in hidden]       # hidden: 1..D-1, cycling
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((degrees[0][:, None] > degrees[-1][None, :]).float())        # outputs: strictly greater
    return masks


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor):
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


@dataclass
class MADEConfig:
    side: int = 14
    hidden: tuple = (500,)

    @property
    def n_in(self) -> int:
        return self.side * self.side


class MADE(nn.Module):
    """x (B, D) binary pixels -> logits (B, D): logit i is log-odds of p(x_i = 1 | x_0 .. x_{i-1})."""

    def __init__(self, cfg: MADEConfig = MADEConfig()):
        super().__init__()
        self.cfg = cfg
        sizes = [cfg.n_in, *cfg.hidden, cfg.n_in]
        masks = made_masks(cfg.n_in, tuple(cfg.hidden))
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(sizes[:-1], sizes[1:], masks))

    def forward(self, x):                   # x: (B, D)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))             # (B, hidden)
        return self.layers[-1](x)            # (B, D) logits


def made_nll(model: MADE, x: torch.Tensor) -> torch.Tensor:
    """Exact negative log-likelihood of binary images (B, 1, s, s) in nats: (B,)."""
    flat = x.reshape(len(x), -1)
    return F.binary_cross_entropy_with_logits(model(flat), flat, reduction="none").sum(dim=1)


def fit_made(model: MADE, x_binary: torch.Tensor, steps: int, batch_size: int = 128, lr: float = 2e-3,
             seed: int = 0) -> list[float]:
    """Maximum likelihood: minimise the mean exact NLL of batches of binary images."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in progress(range(steps), desc="MADE", leave=False):
        loss = made_nll(model, x_binary[torch.randint(len(x_binary), (batch_size,), generator=gen)]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def made_sample(model: MADE, n: int, seed: int = 0) -> torch.Tensor:
    """Draw n binary images (n, 1, s, s), one pixel at a time: D forward passes."""
    gen = torch.Generator().manual_seed(seed)
    d = model.cfg.n_in
    x = torch.zeros(n, d)
    for i in range(d):
        p = torch.sigmoid(model(x)[:, i])                                  # (n,) p(x_i = 1 | x_<i)
        x[:, i] = (torch.rand(n, generator=gen) < p).float()
    return x.view(n, 1, model.cfg.side, model.cfg.side)


def upsample(x: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Small images back to ``size`` x ``size`` (bilinear) so the course classifier can score them."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


# --------------------------------------------------------------------------- scoring one family

@dataclass
class Reference:
    """What every family is compared with, computed once: the real test set's features, the real-vs-real
    Fréchet baseline (with its spread over draws of training images), and test-to-train distances."""
    classifier: nn.Module
    x_train: torch.Tensor
    features: torch.Tensor                    # (N, F) of the real test images
    baseline: float
    baseline_spread: float
    test_nn: torch.Tensor                     # (N,) distance from each test image to its nearest training image
    real_spread: float                        # within-class pixel spread of real test images
    n: int = field(init=False)

    def __post_init__(self):
        self.n = len(self.features)


def make_reference(classifier, data, draws: int = 3, seed: int = 0) -> Reference:
    """The real-vs-real yardsticks, with as many real test images as samples will be scored."""
    n = len(data.x_test)
    features = metrics.classifier_features(classifier, data.x_test)
    gen = torch.Generator().manual_seed(seed)
    baselines = []
    for _ in range(draws):   # different draws of n training images against the same test set
        idx = torch.randperm(len(data.x_train), generator=gen)[:n]
        baselines.append(metrics.frechet_distance(metrics.classifier_features(classifier, data.x_train[idx]), features))
    mean, spread = metrics.mean_and_spread(baselines)
    return Reference(classifier, data.x_train, features, mean, spread,
                     metrics.nearest_neighbour_distances(data.x_test, data.x_train),
                     metrics.within_class_spread(data.x_test, data.y_test))


def bootstrap_frechet(features: torch.Tensor, reference: torch.Tensor, draws: int = 5, seed: int = 0) -> tuple[float, float]:
    """Fréchet distance of ``features`` to ``reference``, and its spread over bootstrap resamples of the samples."""
    gen = torch.Generator().manual_seed(seed)
    value = metrics.frechet_distance(features, reference)
    resampled = [metrics.frechet_distance(features[torch.randint(len(features), (len(features),), generator=gen)],
                                          reference) for _ in range(draws)]
    return value, float(np.std(resampled, ddof=1)) if draws > 1 else 0.0


def inception_score_spread(probs: torch.Tensor, splits: int = 5) -> tuple[float, float]:
    """The Inception Score's mean and spread over ``splits`` equal parts of the samples (the usual recipe)."""
    parts = [metrics.inception_score(p) for p in torch.as_tensor(probs).chunk(splits) if len(p)]
    return metrics.mean_and_spread(parts)


def copy_share(nn_dist: torch.Tensor, test_nn: torch.Tensor, quantile: float = 0.01) -> float:
    """Share of samples closer to a training image than all but ``quantile`` of real test images are:
    about ``quantile`` for a model that does not copy, near 1 for one that copies its training set."""
    threshold = torch.quantile(test_nn.double(), quantile)
    return (nn_dist.double() <= threshold).double().mean().item()


def score_family(ref: Reference, samples: torch.Tensor, labels: torch.Tensor | None = None,
                 seconds_per_image: float | None = None, train_seconds: float | None = None,
                 bits_per_dim: float | None = None) -> dict:
    """Every league-table figure for one family's samples (N, 1, H, W) in [0, 1]. ``labels``: the classes
    a conditional model was asked for (None: unconditional). Each figure comes with its uncertainty."""
    n = len(samples)
    probs = metrics.class_probabilities(ref.classifier, samples)                   # (N, K)
    pred = probs.argmax(dim=1)
    shares = torch.bincount(pred, minlength=probs.shape[1]).double() / n
    smallest = shares.min().item()
    feats = metrics.classifier_features(ref.classifier, samples)
    fd, fd_spread = (bootstrap_frechet(feats, ref.features) if n == ref.n else (float("nan"), float("nan")))
    inception, inception_spread = inception_score_spread(probs)
    nn_dist = metrics.nearest_neighbour_distances(samples, ref.x_train)
    copies = copy_share(nn_dist, ref.test_nn)
    row = {
        "class_accuracy": float("nan"), "class_accuracy_se": float("nan"),
        "frechet_ratio": fd / ref.baseline,
        "frechet_ratio_spread": (fd / ref.baseline) * math.hypot(fd_spread / fd if fd else 0.0,
                                                                   ref.baseline_spread / ref.baseline),
        "inception_score": inception, "inception_score_spread": inception_spread,
        "smallest_class_share": smallest, "smallest_class_share_se": math.sqrt(smallest * (1 - smallest) / n),
        "nn_distance_ratio": (nn_dist.median() / ref.test_nn.median()).item(),
        "copy_share": copies, "copy_share_se": math.sqrt(max(copies * (1 - copies), 1e-12) / n),
        "diversity": _relative_spread(samples, pred, ref.real_spread),
        "class_evenness": metrics.class_evenness(shares),
        "ms_per_image": float("nan") if seconds_per_image is None else 1000 * seconds_per_image,
        "train_seconds": float("nan") if train_seconds is None else train_seconds,
        "bits_per_dim": float("nan") if bits_per_dim is None else bits_per_dim,
        "n_samples": n,
    }
    if labels is not None:
        acc = (pred == labels.cpu()).double().mean().item()
        row["class_accuracy"], row["class_accuracy_se"] = acc, math.sqrt(acc * (1 - acc) / n)
    return row


def _relative_spread(samples: torch.Tensor, pred: torch.Tensor, real_spread: float) -> float:
    """Within-class pixel spread of the samples relative to real digits, capped at 1 (NaN when no
    predicted class has two samples, as for a handful of slow samples)."""
    if torch.bincount(pred).max() < 2:
        return float("nan")
    return min(1.0, metrics.within_class_spread(samples, pred) / real_spread)


def slug(name: str) -> str:
    """A family's name as part of a metric name: "diffusion (DDIM)" -> "diffusion_ddim"."""
    return "_".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())


def timed(sample, n: int, seed: int = 0):
    """Run ``sample(n, seed)`` and return (its result, seconds per image)."""
    start = time.perf_counter()
    out = sample(n, seed)
    return out, (time.perf_counter() - start) / n


LEAGUE_COLUMNS = {   # column -> (heading, format); every figure with its spread when it has one
    "class_accuracy": ("class acc.", "{:.1%}"),
    "frechet_ratio": ("Fréchet ratio", "{:.2f}"),
    "inception_score": ("IS", "{:.2f}"),
    "smallest_class_share": ("smallest class", "{:.1%}"),
    "copy_share": ("copies", "{:.1%}"),
    "nn_distance_ratio": ("NN dist. ratio", "{:.2f}"),
    "bits_per_dim": ("bits/dim", "{:.3f}"),
    "train_seconds": ("train s", "{:.0f}"),
    "ms_per_image": ("ms/image", "{:.2f}"),
}
SPREADS = {"class_accuracy": "class_accuracy_se", "frechet_ratio": "frechet_ratio_spread",
           "inception_score": "inception_score_spread", "smallest_class_share": "smallest_class_share_se",
           "copy_share": "copy_share_se"}


def format_cell(row: dict, column: str) -> str:
    """One table cell: the value with ± its spread, or a dash when the model has no such figure."""
    value, fmt = row.get(column, float("nan")), LEAGUE_COLUMNS[column][1]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = fmt.format(value)
    spread = row.get(SPREADS.get(column, ""), float("nan"))
    if spread is not None and not math.isnan(spread):
        text += " ± " + fmt.format(spread).rstrip("%") + ("%" if fmt.endswith("%}") else "")
    return text


def league_table(rows: dict):
    """The league table as a pandas DataFrame of formatted cells, one row per family."""
    import pandas as pd

    return pd.DataFrame({LEAGUE_COLUMNS[c][0]: [format_cell(r, c) for r in rows.values()] for c in LEAGUE_COLUMNS},
                        index=list(rows))


# --------------------------------------------------------------------------- quality / diversity / speed

def tradeoff_axes(rows: dict) -> dict:
    """Each family's position on three axes in [0, 1], higher is better:
    quality = 1 / Fréchet ratio (1: as close to the test set as other real images), capped at 1;
    diversity = within-class spread of the samples relative to real digits, times the evenness of the
    class histogram (its entropy over log K); speed = -log10(ms per image), rescaled so that the
    slowest family is 0 and the fastest 1."""
    logs = {name: -math.log10(max(r["ms_per_image"], 1e-6)) for name, r in rows.items()}
    low, high = min(logs.values()), max(logs.values())
    axes = {}
    for name, r in rows.items():
        evenness = r.get("class_evenness", 1.0)
        axes[name] = {"quality": min(1.0, 1.0 / r["frechet_ratio"]),
                      "diversity": r["diversity"] * evenness,
                      "speed": (logs[name] - low) / (high - low) if high > low else 1.0}
    return axes


def tradeoff_ranking(rows: dict, quality: float = 1.0, diversity: float = 1.0, speed: float = 1.0) -> list:
    """Families ranked by the weighted mean of their three axes: [(name, score)], best first."""
    total = quality + diversity + speed
    if total <= 0 or min(quality, diversity, speed) < 0:
        raise ValueError("the weights must be non-negative and not all zero.")
    axes = tradeoff_axes(rows)
    scores = {name: (quality * a["quality"] + diversity * a["diversity"] + speed * a["speed"]) / total
              for name, a in axes.items()}
    return sorted(scores.items(), key=lambda item: -item[1])


def tradeoff_view(rows: dict, quality: float = 1.0, diversity: float = 1.0, speed: float = 1.0):
    """The explorer: families on the quality/diversity plane (marker size = speed) and the ranking for
    these weights."""
    import matplotlib.pyplot as plt

    axes, ranking = tradeoff_axes(rows), tradeoff_ranking(rows, quality, diversity, speed)
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.1, 1]})
    for name, a in axes.items():
        ax.scatter(a["diversity"], a["quality"], s=40 + 400 * a["speed"], alpha=0.6)
        ax.annotate(name, (a["diversity"], a["quality"]), fontsize=8, ha="center", va="bottom")
    ax.set(xlabel="diversity", ylabel="quality (1 / Fréchet ratio)", xlim=(-0.05, 1.1), ylim=(-0.05, 1.1),
           title="marker size = speed")
    names, scores = zip(*reversed(ranking))
    bar.barh(names, scores, color="tab:blue")
    bar.set(xlim=(0, 1), xlabel="weighted score",
            title=f"ranking: quality {quality:g}, diversity {diversity:g}, speed {speed:g}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- deepfake detection

class Detector(nn.Module):
    """A small CNN that scores an image (B, 1, 28, 28): a logit, high for "generated"."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),               # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),       # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * width * 49, 1),                           # (B, 1)
        )

    def forward(self, x):
        return self.body(x).squeeze(1)   # (B,) logits


def detector_step(model: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor) -> float:
    """One training step of a real-vs-generated detector: binary cross-entropy on the logits, real
    images labelled 0 and generated ones 1; returns the loss as a float."""
    logits = model(torch.cat([real, fake]))                                        # (B_real + B_fake,)
    targets = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def detector_auc(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve: the probability that a random generated image scores higher than a random
    real one, ties counting one half. 1: perfect; 0.5: chance; 0: perfectly backwards. A 0-d tensor."""
    diff = fake_scores.reshape(-1, 1) - real_scores.reshape(1, -1)                 # (N_fake, N_real)
    return (diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()


def train_detector(real: torch.Tensor, fake: torch.Tensor, steps: int, batch_size: int = 64, lr: float = 2e-3,
                   seed: int = 0, augment=None, step=detector_step) -> Detector:
    """A fresh detector trained on ``real`` vs ``fake`` images for ``steps`` steps with ``step`` (the
    reference ``detector_step`` or the learner's). ``augment(x, generator)``, when given, post-processes
    half of each batch (both real and fake), so the detector cannot rely on what it removes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Detector()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        r = real[torch.randint(len(real), (batch_size,), generator=gen)]
        f = fake[torch.randint(len(fake), (batch_size,), generator=gen)]
        if augment is not None:
            half = batch_size // 2
            r = torch.cat([augment(r[:half], gen), r[half:]])
            f = torch.cat([augment(f[:half], gen), f[half:]])
        step(model, opt, r, f)
    return model.eval()


@torch.no_grad()
def detector_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The detector's logit (N,) for each image."""
    return model(x)


def blur(x: torch.Tensor, generator=None) -> torch.Tensor:
    """A 3x3 binomial blur (weights 1-2-1 in each direction)."""
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :] / 16).to(x)[None, None]                      # (1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)


def add_noise(x: torch.Tensor, generator=None, std: float = 0.1) -> torch.Tensor:
    """Gaussian pixel noise of standard deviation ``std``, clipped to [0, 1]."""
    return (x + std * torch.randn(x.shape, generator=generator).to(x)).clamp(0, 1)


def down_up(x: torch.Tensor, generator=None, factor: int = 2) -> torch.Tensor:
    """Downsample by ``factor`` (average) and back up (bilinear): what re-encoding at a low resolution does."""
    return F.interpolate(F.avg_pool2d(x, factor), size=x.shape[-2:], mode="bilinear", align_corners=False)


def threshold(x: torch.Tensor, generator=None, level: float = 0.5) -> torch.Tensor:
    """Black and white: every pixel above ``level`` becomes 1, the rest 0 (a scan, a fax, a sticker)."""
    return (x > level).to(x.dtype)


POSTPROCESSING = {"blur": blur, "noise": add_noise, "down-up": down_up, "black and white": threshold}


def generalisation_matrix(detectors: dict, real_test: torch.Tensor, fakes_test: dict, auc=detector_auc) -> dict:
    """AUC of every detector (trained on one family) against every family's held-out samples:
    {trained_on: {tested_on: auc}}."""
    out = {}
    for trained_on, model in detectors.items():
        real_scores = detector_scores(model, real_test)
        out[trained_on] = {name: float(auc(real_scores, detector_scores(model, fake)))
                           for name, fake in fakes_test.items()}
    return out


def matrix_figure(matrix: dict, title: str = "detector AUC: trained on (rows), tested on (columns)"):
    import matplotlib.pyplot as plt

    rows, cols = list(matrix), list(next(iter(matrix.values())))
    values = np.array([[matrix[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2, 0.6 * len(rows) + 1.5))
    ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- bias: a skewed training set

def class_shares(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Share of each class among ``labels``: (n_classes,) summing to 1."""
    return torch.bincount(labels.reshape(-1).long().cpu(), minlength=n_classes)[:n_classes].double() / labels.numel()


def skew_ratio(sample_labels: torch.Tensor, train_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per class: its share among the generated samples divided by its share in the training set,
    (n_classes,). 1: reproduced; below 1: under-produced (the skew amplified for a rare class); above 1:
    over-produced."""
    return class_shares(sample_labels, n_classes) / class_shares(train_labels, n_classes)


def skewed_subset(labels: torch.Tensor, digit: int, keep: float, seed: int = 0) -> torch.Tensor:
    """Indices of a training set in which ``digit`` keeps only a share ``keep`` of its images."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.arange(len(labels))
    rare = idx[labels == digit]
    rare = rare[torch.randperm(len(rare), generator=gen)[:max(1, round(keep * len(rare)))]]
    return torch.cat([idx[labels != digit], rare]).sort().values


def balancing_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-image sampling weights (N,) that make every class equally likely in a batch: 1 / class count."""
    counts = torch.bincount(labels.long(), minlength=n_classes).double()
    return (1.0 / counts)[labels.long()]


def share_ratio_se(sample_shares: torch.Tensor, train_shares: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Standard error of ``skew_ratio`` from the binomial noise of the sample shares (the training shares are exact)."""
    return (sample_shares * (1 - sample_shares) / n_samples).sqrt() / train_shares


def shares_figure(shares: dict, digit: int, title: str = "class shares"):
    """Grouped bars: one group per class, one bar per set of shares ({name: (shares, se or None)})."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = 0.8 / len(shares)
    for i, (name, (values, se)) in enumerate(shares.items()):
        x = np.arange(len(values)) + (i - (len(shares) - 1) / 2) * width
        ax.bar(x, np.asarray(values), width, yerr=None if se is None else np.asarray(se), label=name, capsize=2)
    ax.set_xticks(range(len(values)))
    ax.set(xlabel="digit", ylabel="share", title=f"{title} (digit {digit} made rare)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

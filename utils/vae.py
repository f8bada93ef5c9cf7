"""Lesson 03 (variational autoencoders): the model, reference answers, evaluation and explorers.

Lesson 03 saves its trained 20-D VAE with ``save_vae(vae_path(data, cfg, steps), model)``; later lessons
load it with ``load_vae(path)``, which returns None when the file is missing, damaged or mismatched.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .autoencoders import decode_code, decode_images
from .nn import MLPDecoder, MLPEncoder
from .plots import image_grid


@dataclass
class VAEConfig:
    image_shape: tuple = (1, 28, 28)
    hidden: int = 400
    latent: int = 20


class VAE(nn.Module):
    """The encoder outputs a Gaussian over codes, (mu, logvar); the decoder maps a code to pixel logits."""

    def __init__(self, cfg: VAEConfig = VAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = MLPEncoder(cfg.image_shape, (cfg.hidden,), 2 * cfg.latent)
        self.decoder = MLPDecoder(cfg.latent, (cfg.hidden,), cfg.image_shape)

    def encode(self, x):                             # x: (B, 1, H, W) in [0, 1]
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar                            # (B, latent) each

    def decode(self, z):                             # z: (B, latent)
        return self.decoder(z)                       # (B, 1, H, W) logits, not probabilities

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# --------------------------------------------------------------------------- reference answers

def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) and sigma = exp(logvar / 2): differentiable in mu and logvar."""
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + std * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions: shape (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood (BCE on logits) summed over pixels: shape (B,), in nats."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def elbo_loss(logits, x, mu, logvar, beta: float = 1.0) -> torch.Tensor:
    """Negative ELBO averaged over the batch: mean of [BCE summed over pixels + beta * KL]. A scalar."""
    return (reconstruction_nll(logits, x) + beta * kl_divergence(mu, logvar)).mean()


def vae_step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, beta: float = 1.0) -> float:
    """One optimiser step on the negative ELBO of the batch x; returns that loss (before the step) as a float."""
    logits, mu, logvar = model(x)                    # (B, 1, H, W), (B, latent), (B, latent)
    loss = elbo_loss(logits, x, mu, logvar, beta)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary images drawn pixel by pixel: each pixel is 1 with probability its grey level in [0, 1].

    Drawn afresh for every batch this is "dynamic binarisation"; drawn once with a fixed seed it gives a
    fixed binary test set. Either way the Bernoulli decoder's -log p(x | z) is a real likelihood, in nats.
    """
    if x.min() < 0 or x.max() > 1:
        raise ValueError("binarize expects grey levels in [0, 1].")
    noise = torch.rand(x.shape, generator=generator).to(x.device)
    return (noise < x).to(x.dtype)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> dict:
    """Test negative ELBO per image in nats with its two parts (one z sample per image, fixed seed).

    Returns {"neg_elbo", "recon", "kl"} as floats, plus "kl_per_dim" (latent,) as a tensor.
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    recon, kl, kl_dims = [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        mu, logvar = model.encode(xb)
        eps = torch.randn(mu.shape, generator=gen).to(device)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon.append(reconstruction_nll(model.decode(z), xb).cpu())
        kl_dims.append((-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).cpu())  # (B, latent)
    recon, kl_dims = torch.cat(recon), torch.cat(kl_dims)
    kl = kl_dims.sum(dim=1)
    return {"neg_elbo": (recon + kl).mean().item(), "recon": recon.mean().item(), "kl": kl.mean().item(),
            "kl_per_dim": kl_dims.mean(dim=0)}


@torch.no_grad()
def sample_prior(model: nn.Module, n: int, latent: int, seed: int = 0) -> torch.Tensor:
    """Decode n codes drawn from N(0, I): images (n, 1, H, W) in [0, 1]. Works for an AE too."""
    z = torch.randn(n, latent, generator=torch.Generator().manual_seed(seed))
    return decode_images(model, z)


# --------------------------------------------------------------------------- saving and loading

def vae_path(data, cfg: VAEConfig, steps: int) -> Path:
    """Where a VAE trained on ``data`` for ``steps`` steps is saved: under ``data/models/``, one file per
    data set (name and training size), architecture and budget."""
    from .runtime import DATA_DIR

    slug = re.sub(r"[^a-z0-9]+", "-", data.name.lower()).strip("-")
    return (Path(DATA_DIR) / "models"
            / f"vae-{slug}-n{len(data.x_train)}-h{cfg.hidden}-z{cfg.latent}-steps{steps}.pt")


def save_vae(path, model: VAE) -> bool:
    """Save ``model``'s weights at ``path`` and its config beside it (same name, .json), once: an existing
    file is kept. Written to ``.part`` files and renamed, so an interrupted run leaves no half file.
    True when it wrote the files."""
    path = Path(path)
    if path.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    config, weights = path.with_suffix(".json"), path.with_name(path.name + ".part")
    config_part = config.with_name(config.name + ".part")
    config_part.write_text(json.dumps(asdict(model.cfg), indent=1))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    config_part.replace(config)
    weights.replace(path)        # last: the .pt file exists only once both are complete
    return True


def load_vae(path, verbose: bool = True) -> VAE | None:
    """The VAE that ``save_vae`` wrote at ``path``, on the CPU in eval mode; None (with one sentence when
    ``verbose``) when the file is missing, damaged or does not match its config."""
    path = Path(path)
    if not path.is_file():
        if verbose:
            print(f"No saved VAE at {path}.")
        return None
    try:
        saved = json.loads(path.with_suffix(".json").read_text())
        cfg = VAEConfig(**{**saved, "image_shape": tuple(saved["image_shape"])})
        model = VAE(cfg)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:   # truncated, foreign or stale files
        if verbose:
            print(f"The saved VAE {path.name} could not be used ({type(exc).__name__}).")
        return None
    return model.eval()


# --------------------------------------------------------------------------- explorers (pure functions)

def latent_map_view(model: VAE, z1: float, z2: float, points=None, labels=None, span: float = 3.0):
    """The 2-D latent plane with the test codes, a movable point at (z1, z2) and what it decodes to."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 4.0))
    ax_map, ax_img = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    if points is not None:
        pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
        colors = None if labels is None else np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        sc = ax_map.scatter(pts[:, 0], pts[:, 1], c=colors, cmap="tab10", s=4, alpha=0.5, vmin=-0.5, vmax=9.5)
        if colors is not None:
            fig.colorbar(sc, ax=ax_map, ticks=range(10), label="digit")
    ax_map.plot([z1], [z2], marker="X", color="black", markersize=12, markeredgecolor="white")
    ax_map.set(xlim=(-span, span), ylim=(-span, span), xlabel="z1", ylabel="z2", title="latent plane")
    ax_map.set_aspect("equal")
    ax_img.imshow(decode_code(model, [z1, z2]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_img.set_axis_off()
    ax_img.set_title(f"decoded at ({z1:.2f}, {z2:.2f})")
    fig.tight_layout()
    return fig


def decode_with_dims(model: VAE, base, dims, values) -> np.ndarray:
    """Set the chosen latent dimensions of a base code to ``values`` and decode: (H, W) in [0, 1]."""
    z = torch.as_tensor(np.asarray(base, dtype=np.float32)).clone().reshape(-1)
    for d, v in zip(dims, values):
        z[int(d)] = float(v)
    return decode_code(model, z)


def active_dims(kl_per_dim: torch.Tensor, k: int) -> list:
    """The k latent dimensions with the largest average KL (the ones the model actually uses)."""
    return torch.argsort(torch.as_tensor(kl_per_dim), descending=True)[:k].tolist()


def prior_grid(model: nn.Module, latent: int, n: int = 32, nrow: int = 16, seed: int = 0) -> np.ndarray:
    return image_grid(sample_prior(model, n, latent, seed), nrow=nrow)

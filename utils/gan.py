"""Lesson 04 (GANs): reference losses, toy 2-D data and its mode-coverage measures, training
snapshots and the pure functions behind the lesson's explorers.

The models and training loops are written in the notebook; this module holds what the checks,
the tests and the widgets need.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F


# --------------------------------------------------------------------------- reference losses (exercise answers)

def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: BCE-with-logits pushing real logits to label 1 and fake ones to label 0,
    each averaged over its batch, the two terms added."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z)), i.e. BCE-with-logits of the fakes against label 1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def g_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The original minimax generator loss log(1 - D(G(z))) (to be minimised): it saturates when D wins."""
    return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def gan_step(G, D, opt_g, opt_d, real, z, d_loss=d_loss, g_loss=g_loss) -> dict:
    """One GAN update: D on real vs detached fakes, then G through D with the non-saturating loss."""
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake.detach())   # detach: the D step must not reach G
    loss_d = d_loss(real_logits, fake_logits)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = g_loss(D(fake))                                # fresh pass through the updated D, with gradients to G
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "D(x)": torch.sigmoid(real_logits).mean().item(), "D(G(z))": torch.sigmoid(fake_logits).mean().item()}


def condition_on_label(h: torch.Tensor, y: torch.Tensor, embedding: torch.nn.Embedding) -> torch.Tensor:
    """Append each row's label embedding: h (B, D), y (B,) int64 -> (B, D + E)."""
    return torch.cat([h, embedding(y)], dim=1)


# --------------------------------------------------------------------------- toy data: a ring of Gaussians

def ring_centres(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The (modes, 2) centres of the ring, evenly spaced on a circle."""
    angles = 2 * math.pi * torch.arange(modes) / modes
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def ring_of_gaussians(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """n points (n, 2): a mode picked uniformly, plus isotropic Gaussian noise of ``std``."""
    k = torch.randint(0, modes, (n,), generator=generator)
    return ring_centres(modes, radius)[k] + std * torch.randn(n, 2, generator=generator)


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float = 0.05, radius_stds: float = 3.0,
                  min_share: float = 0.01) -> dict:
    """How well samples cover the modes of a mixture.

    quality:  the share of samples within ``radius_stds`` standard deviations of some centre;
    counts:   how many of those good samples each mode received;
    coverage: the fraction of modes that received at least ``min_share`` of all samples.
    """
    samples = samples.detach().float().cpu()
    dist, nearest = torch.cdist(samples, centres.float()).min(dim=1)
    good = dist < radius_stds * std
    counts = torch.bincount(nearest[good], minlength=len(centres))
    covered = counts >= max(1, math.ceil(min_share * len(samples)))
    return {"coverage": covered.float().mean().item(), "quality": good.float().mean().item(),
            "modes_covered": int(covered.sum()), "counts": counts}


# --------------------------------------------------------------------------- snapshots and the step scrubber

@torch.no_grad()
def take_snapshot(step: int, G, D, z_fixed: torch.Tensor, z_grid: torch.Tensor, extent: float = 3.0,
                  resolution: int = 60, losses: dict | None = None) -> dict:
    """What the scrubber shows at one training step, as plain tensors (cheap to keep a few dozen).

    fake:    G(z_fixed), (N, 2) generated points;
    heat:    D's probability "real" on a resolution x resolution grid over [-extent, extent]^2;
    grid:    G(z_grid) for a (g*g, 2) grid of latent points, to draw how G bends the latent plane.
    """
    was = G.training, D.training
    G.eval(), D.eval()
    axis = torch.linspace(-extent, extent, resolution)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    plane = torch.stack([xx.flatten(), yy.flatten()], dim=1)                       # (R*R, 2)
    heat = torch.sigmoid(D(plane)).view(resolution, resolution)                    # (R, R)
    snap = {"step": step, "fake": G(z_fixed).cpu(), "heat": heat.cpu(), "grid": G(z_grid).cpu(),
            "extent": extent, "losses": dict(losses or {})}
    G.train(was[0]), D.train(was[1])
    return snap


def latent_grid(side: int = 15, span: float = 2.0) -> torch.Tensor:
    """A (side*side, 2) square grid of latent points in [-span, span]^2, row by row."""
    axis = torch.linspace(-span, span, side)
    zy, zx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([zx.flatten(), zy.flatten()], dim=1)


def draw_snapshot(snapshots: list, index: int, real: torch.Tensor | None = None, title: str = ""):
    """The scrubber's picture for ``snapshots[index]``: D's heat map with real and generated points,
    and the latent grid as G bends it. Returns a matplotlib Figure (not shown)."""
    from matplotlib.figure import Figure

    if not snapshots:
        raise ValueError("draw_snapshot needs at least one snapshot.")
    index = int(np.clip(index, 0, len(snapshots) - 1))
    snap = snapshots[index]
    e = snap["extent"]
    fig = Figure(figsize=(10.5, 4.6))
    ax_heat, ax_grid = fig.subplots(1, 2)
    im = ax_heat.imshow(snap["heat"].numpy(), origin="lower", extent=(-e, e, -e, e), cmap="RdBu", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax_heat, fraction=0.046, pad=0.04, label="D(x): probability 'real'")
    for ax in (ax_heat, ax_grid):
        if real is not None:
            ax.scatter(*real[:500].T.numpy(), s=4, c="black", alpha=0.5, label="real")
        ax.set(xlim=(-e, e), ylim=(-e, e), aspect="equal")
    ax_heat.scatter(*snap["fake"].T.numpy(), s=4, c="orange", alpha=0.7, label="generated")
    ax_heat.legend(loc="upper right", fontsize=8, markerscale=3)
    ax_heat.set_title(f"step {snap['step']}: D's belief and the samples")
    g = snap["grid"].numpy()
    side = int(round(math.sqrt(len(g))))
    mesh = g[: side * side].reshape(side, side, 2)
    for i in range(side):
        ax_grid.plot(mesh[i, :, 0], mesh[i, :, 1], color="tab:green", lw=0.8)
        ax_grid.plot(mesh[:, i, 0], mesh[:, i, 1], color="tab:green", lw=0.8)
    ax_grid.set_title("where G sends a square grid of z")
    if snap["losses"]:
        ax_grid.text(0.02, 0.02, "  ".join(f"{k} {v:.2f}" for k, v in snap["losses"].items()),
                     transform=ax_grid.transAxes, fontsize=8, va="bottom")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- MNIST explorers

def _images_figure(images: torch.Tensor, nrow: int, title: str, scale: float = 0.9):
    from matplotlib.figure import Figure

    from .plots import image_grid

    grid = image_grid(images, nrow=nrow)
    fig = Figure(figsize=(scale * grid.shape[1] / 29 + 0.4, scale * grid.shape[0] / 29 + 0.7))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


@torch.no_grad()
def _generate(G, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    was = G.training
    G.eval()
    device = next(G.parameters()).device
    out = G(z.to(device)) if y is None else G(z.to(device), y.to(device))
    G.train(was)
    return out.cpu()


def class_samples(G, digit: int, seed: int = 0, temperature: float = 1.0, n: int = 16, z_dim: int = 64,
                  class_names=None):
    """Explorer: ``n`` samples of one class from a conditional generator ``G(z, y)``, with the noise
    scaled by ``temperature`` (below 1: the truncation trick); a Figure."""
    z = float(temperature) * torch.randn(n, z_dim, generator=torch.Generator().manual_seed(int(seed)))
    images = _generate(G, z, torch.full((n,), int(digit), dtype=torch.long))
    name = class_names[int(digit)] if class_names else str(int(digit))
    return _images_figure(images, nrow=8, title=f"class {name}, noise seed {int(seed)}, temperature {float(temperature):.2f}")


def slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps the norm typical of Gaussian noise (a straight line passes near 0)."""
    a, b = z_a / z_a.norm(dim=-1, keepdim=True), z_b / z_b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * z_a + (torch.sin(t * omega) / so) * z_b


def interpolation(G, digit: int, t: float, seed_a: int = 0, seed_b: int = 1, steps: int = 9, z_dim: int = 64):
    """Explorer: with the class fixed, walk the noise from seed_a to seed_b; the image at ``t`` (0..1)
    is shown large beside the whole path. Returns a Figure."""
    from matplotlib.figure import Figure

    from .plots import image_grid

    t = float(np.clip(t, 0.0, 1.0))
    z_a = torch.randn(1, z_dim, generator=torch.Generator().manual_seed(int(seed_a)))
    z_b = torch.randn(1, z_dim, generator=torch.Generator().manual_seed(int(seed_b)))
    ts = torch.linspace(0, 1, steps).view(-1, 1)
    path = torch.cat([slerp(z_a, z_b, float(s)) for s in ts] + [slerp(z_a, z_b, t)])    # (steps + 1, z_dim)
    images = _generate(G, path, torch.full((len(path),), int(digit), dtype=torch.long))
    fig = Figure(figsize=(9, 2.6))
    ax_path, ax_one = fig.subplots(1, 2, gridspec_kw={"width_ratios": [steps, 2.2]})
    ax_path.imshow(image_grid(images[:steps], nrow=steps), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_path.set_title(f"class {int(digit)}: noise seed {int(seed_a)} -> seed {int(seed_b)}")
    ax_one.imshow(images[-1, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_one.set_title(f"t = {t:.2f}")
    for ax in (ax_path, ax_one):
        ax.set_axis_off()
    fig.tight_layout()
    return fig

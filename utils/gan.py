"""Lesson 04 (GANs): reference losses, toy 2-D data and its mode-coverage measures, the MNIST
generators and discriminators (MLP and convolutional, one dataclass config), their training loop,
saving and loading, and the pure functions behind the lesson's explorers.

Later lessons load the trained models with ``load_gan(path)``, or ``pretrained_cgan(data)``, which
retrains when the file under ``data/models/`` is missing, damaged or made for another config.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
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


# --------------------------------------------------------------------------- MNIST models: one config, two architectures

@dataclass
class GANConfig:
    """Both networks of an image GAN. ``arch`` picks MLPs or small convolutional networks."""
    image_size: int = 28
    z_dim: int = 64
    n_classes: int = 0                       # 0: unconditional; 10: conditional on the digit
    arch: str = "conv"                       # "mlp" or "conv"
    g_hidden: tuple = (256, 512, 1024)       # mlp: G's hidden widths
    d_hidden: tuple = (512, 256)             # mlp: D's hidden widths
    g_channels: int = 32                     # conv: G's base width (2x at H/4, 1x at H/2, 1/2 at H)
    d_channels: int = 16                     # conv: D's base width (1x at H/2, 2x at H/4)
    spectral_norm: bool = True               # conv: every layer of D has spectral norm (at most) 1
    dropout: float = 0.3                     # mlp: D's dropout

    def __post_init__(self):
        self.g_hidden, self.d_hidden = tuple(self.g_hidden), tuple(self.d_hidden)   # lists from JSON
        if self.arch not in ("mlp", "conv"):
            raise ValueError(f"GANConfig.arch must be 'mlp' or 'conv', not {self.arch!r}.")
        if self.arch == "conv" and self.image_size % 4:
            raise ValueError(f"the convolutional GAN halves the image twice: image_size must be a multiple of 4, "
                             f"not {self.image_size}.")


class MLPGenerator(nn.Module):
    """z (B, z_dim) [+ label] -> image (B, 1, H, W) in [0, 1], through BatchNorm'd ReLU layers."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.n_classes, cfg.z_dim) if cfg.n_classes else None
        d, layers = cfg.z_dim * (2 if cfg.n_classes else 1), []
        for width in cfg.g_hidden:
            layers += [nn.Linear(d, width), nn.BatchNorm1d(width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, cfg.image_size ** 2))

    def forward(self, z, y=None):                          # z: (B, z_dim), y: (B,) labels
        if self.embed is not None:
            z = condition_on_label(z, y, self.embed)       # (B, 2 * z_dim)
        x = torch.sigmoid(self.net(z))                     # (B, H * W) in [0, 1]
        return x.view(-1, 1, self.cfg.image_size, self.cfg.image_size)


class MLPDiscriminator(nn.Module):
    """image -> logit (B,); with labels, a projection discriminator: logit + <e_D(y), h(x)>."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        d, layers = cfg.image_size ** 2, []
        for width in cfg.d_hidden:
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2), nn.Dropout(cfg.dropout)]
            d = width
        self.features = nn.Sequential(nn.Flatten(), *layers)
        self.out = nn.Linear(d, 1)
        self.embed = nn.Embedding(cfg.n_classes, d) if cfg.n_classes else None   # the projection

    def forward(self, x, y=None):                          # x: (B, 1, H, W) in [0, 1]
        return _project(self, self.features(2 * x - 1), y) # pixels centred on 0


def _project(D, h, y):
    """The logit from D's features h (B, F): w^T h, plus <e_D(y), h> when D knows the labels."""
    logit = D.out(h).squeeze(1)                            # (B,)
    if D.embed is not None:
        logit = logit + (D.embed(y) * h).sum(dim=1)
    return logit


class ConvGenerator(nn.Module):
    """z [+ label] -> a (2c, H/4, W/4) map -> two transposed convolutions -> image (B, 1, H, W)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        c, s = cfg.g_channels, cfg.image_size // 4
        self.embed = nn.Embedding(cfg.n_classes, cfg.z_dim) if cfg.n_classes else None
        z_in = cfg.z_dim * (2 if cfg.n_classes else 1)
        self.project = nn.Sequential(nn.Linear(z_in, 2 * c * s * s), nn.BatchNorm1d(2 * c * s * s), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),             # (B, c, H/2, W/2)
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.BatchNorm2d(c // 2), nn.ReLU(),     # (B, c/2, H, W)
            nn.Conv2d(c // 2, 1, 3, padding=1),                                                            # (B, 1, H, W)
        )

    def forward(self, z, y=None):                          # z: (B, z_dim), y: (B,) labels
        if self.embed is not None:
            z = condition_on_label(z, y, self.embed)       # (B, 2 * z_dim)
        c, s = self.cfg.g_channels, self.cfg.image_size // 4
        h = self.project(z).view(-1, 2 * c, s, s)          # (B, 2c, H/4, W/4)
        return torch.sigmoid(self.up(h))                   # (B, 1, H, W) in [0, 1]


class ConvDiscriminator(nn.Module):
    """Two strided convolutions (LeakyReLU, spectral norm) and a projection head: logit (B,)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        c, s = cfg.d_channels, cfg.image_size // 4
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda layer: layer)
        self.features = nn.Sequential(
            sn(nn.Conv2d(1, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),       # (B, c, H/2, W/2)
            sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),   # (B, 2c, H/4, W/4)
            nn.Flatten(),                                                         # (B, 2c * H/4 * W/4)
        )
        d = 2 * c * s * s
        self.out = sn(nn.Linear(d, 1))
        self.embed = nn.Embedding(cfg.n_classes, d) if cfg.n_classes else None    # the projection

    def forward(self, x, y=None):                          # x: (B, 1, H, W) in [0, 1]
        return _project(self, self.features(2 * x - 1), y)


def build_gan(cfg: GANConfig):
    """A fresh (G, D) pair for ``cfg``."""
    if cfg.arch == "mlp":
        return MLPGenerator(cfg), MLPDiscriminator(cfg)
    return ConvGenerator(cfg), ConvDiscriminator(cfg)


# --------------------------------------------------------------------------- the conditional GAN's losses and step

def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D is pushed only while real logits are below +1 or fake ones above -1."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mao et al.'s mode-seeking term: the two halves of the batch ask for the same labels with
    different noise; large when the images differ much less than their noise does."""
    fake_1, fake_2 = fake.chunk(2)                                                        # (B/2, 1, H, W) each
    z_1, z_2 = z.chunk(2)                                                                 # (B/2, z_dim) each
    ratio = (fake_1 - fake_2).abs().mean(dim=(1, 2, 3)) / (z_1 - z_2).abs().mean(dim=1)   # (B/2,)
    return 1 / (ratio.mean() + 1e-5)


def cgan_step(G, D, opt_g, opt_d, real, y_real, z, y_fake, diversity: float = 0.0) -> dict:
    """One hinge-loss update of a conditional GAN (D first, then G), with an optional mode-seeking term.

    Returns the losses and D's mean raw logits on the real and the fake batch (what the hinge loss learns)."""
    fake = G(z, y_fake)                                                    # (B, 1, H, W)
    real_logits, fake_logits = D(real, y_real), D(fake.detach(), y_fake)   # (B,) each
    loss_d = hinge_d_loss(real_logits, fake_logits)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = hinge_g_loss(D(fake, y_fake))
    if diversity:
        loss_g = loss_g + diversity * mode_seeking_loss(fake, z)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "real logit": real_logits.mean().item(), "fake logit": fake_logits.mean().item()}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for the weights; buffers (BatchNorm statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# --------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    steps: int
    batch: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4                       # D learns faster, as in the toy
    betas: tuple = (0.5, 0.999)
    diversity: float = 0.0                   # weight of the mode-seeking term (conditional GAN only)
    ema_decay: float = 0.0                   # > 0: also keep an exponential moving average of G's weights
    seed: int = 0


def train_gan(G, D, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, step_fn=None, desc: str = "GAN",
              verbose: bool = True):
    """Train G and D on images ``x`` (N, 1, H, W) in [0, 1] with labels ``y`` (N,) for ``cfg.steps`` steps.

    A conditional G (``G.cfg.n_classes > 0``) is trained with ``step_fn(G, D, opt_g, opt_d, real, y_real,
    z, y_fake, diversity)`` (default: ``cgan_step``); an unconditional one with ``step_fn(G, D, opt_g,
    opt_d, real, z)`` (default: ``gan_step``). Both learning rates decay linearly to 0.

    Returns (losses, logits, G_ema): two LossHistory records and the averaged generator (None without EMA).
    """
    from .train import LossHistory, batches, progress

    conditional = bool(G.cfg.n_classes)
    step_fn = step_fn or (cgan_step if conditional else gan_step)
    device = next(G.parameters()).device
    torch.manual_seed(cfg.seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / cfg.steps) for opt in (opt_g, opt_d)]
    G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.ema_decay else None
    losses = LossHistory(title=f"{desc}: losses")
    outputs = LossHistory(title=f"{desc}: what D says", ylabel="mean D output")
    x, y = x.to(device), y.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    bar, step = progress(total=cfg.steps, desc=desc, disable=not verbose), 0
    while step < cfg.steps:
        for real, y_real in batches(x, y, batch_size=cfg.batch, generator=generator, drop_last=True):
            z = torch.randn(cfg.batch, G.cfg.z_dim, device=device)                         # (B, z_dim)
            if conditional:
                y_half = torch.randint(0, G.cfg.n_classes, (cfg.batch // 2,), device=device)
                y_fake = y_half.repeat(2)                   # (B,) digits to draw; both halves ask for the same
                stats = step_fn(G, D, opt_g, opt_d, real, y_real, z, y_fake, cfg.diversity)
            else:
                stats = step_fn(G, D, opt_g, opt_d, real, z)
            for scheduler in schedulers:
                scheduler.step()
            if G_ema is not None:
                ema_update(G_ema, G, min(cfg.ema_decay, (1 + step) / (10 + step)))   # short warm-up
            losses.log(step, loss_d=stats["loss_d"], loss_g=stats["loss_g"])
            outputs.log(step, **{k: v for k, v in stats.items() if not k.startswith("loss")})
            step += 1
            bar.update(1)
            if step == cfg.steps:
                break
    bar.close()
    return losses, outputs, G_ema


# --------------------------------------------------------------------------- noise: temperature and truncation

def scaled_noise(n: int, z_dim: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise (n, z_dim) multiplied by ``temperature``: below 1 every sample moves towards z = 0."""
    return float(temperature) * torch.randn(n, z_dim, generator=generator)


def truncated_noise(n: int, z_dim: int, threshold: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """BigGAN's truncation trick: standard Gaussian noise (n, z_dim) whose components beyond
    ``threshold`` in absolute value are drawn again, until every one is inside [-threshold, threshold]."""
    if threshold <= 0:
        raise ValueError(f"the truncation threshold must be positive, not {threshold}.")
    z = torch.randn(n, z_dim, generator=generator)
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > threshold
    return z


@torch.no_grad()
def sample(G, n: int, y: torch.Tensor | None = None, seed: int = 0, temperature: float = 1.0,
           truncation: float | None = None) -> torch.Tensor:
    """n images (n, 1, H, W) on the CPU, in eval mode (BatchNorm uses its running statistics).

    The noise is scaled by ``temperature``, or truncated at ``truncation`` (BigGAN) when that is given."""
    gen = torch.Generator().manual_seed(int(seed))
    z = (truncated_noise(n, G.cfg.z_dim, truncation, gen) if truncation is not None
         else scaled_noise(n, G.cfg.z_dim, temperature, gen))
    return _generate(G, z, y)


# --------------------------------------------------------------------------- saving and loading

def models_dir() -> Path:
    from .runtime import DATA_DIR

    return Path(DATA_DIR) / "models"


def save_gan(path, G, D, G_ema=None) -> Path:
    """Weights to ``path`` (.pt) and the config beside it (same name, .json); written atomically."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {"G": G.state_dict(), "D": D.state_dict()}
    if G_ema is not None:
        weights["G_ema"] = G_ema.state_dict()
    weights = {name: {k: v.detach().cpu() for k, v in sd.items()} for name, sd in weights.items()}
    partial = path.with_name(path.name + ".part")
    torch.save(weights, partial)
    partial.replace(path)
    path.with_suffix(".json").write_text(json.dumps(asdict(G.cfg), indent=1))
    return path


def load_gan(path, cfg: GANConfig | None = None, verbose: bool = True):
    """(G, D, G_ema or None) from ``save_gan``'s files, on the CPU in eval mode; None (with one sentence)
    when they are missing, damaged, or were saved for a config other than ``cfg``."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = GANConfig(**json.loads(path.with_suffix(".json").read_text()))
        if cfg is not None and saved != cfg:
            raise ValueError("it was saved for another config")
        weights = torch.load(path, map_location="cpu", weights_only=True)
        G, D = build_gan(saved)
        G.load_state_dict(weights["G"])
        D.load_state_dict(weights["D"])
        G_ema = None
        if "G_ema" in weights:
            G_ema = copy.deepcopy(G)
            G_ema.load_state_dict(weights["G_ema"])
            G_ema.requires_grad_(False).eval()
    except Exception as exc:   # truncated, foreign or stale files
        if verbose:
            print(f"The saved GAN {path.name} could not be used ({type(exc).__name__}: {exc}), so it is trained again.")
        return None
    return G.eval(), D.eval(), G_ema


# The conditional GAN that lesson 04 trains, and later lessons reuse.
CGAN_CONFIG = GANConfig(n_classes=10, arch="conv", g_channels=32, d_channels=16, spectral_norm=True)
# Spectral norm keeps D smooth enough for faster learning rates; beta_1 = 0 (no momentum) as in SNGAN.
CGAN_TRAIN = TrainConfig(steps=2500, lr_g=5e-4, lr_d=1e-3, betas=(0.0, 0.9), diversity=0.2, ema_decay=0.999)


def cgan_path(data) -> Path:
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", data.name.lower()).strip("-")
    return models_dir() / f"cgan-{slug}-n{len(data.x_train)}.pt"


def pretrained_cgan(data, device=None, verbose: bool = True):
    """Lesson 04's conditional GAN for ``data``: (G, D, G_ema) loaded from ``data/models/``, or trained
    with ``CGAN_CONFIG`` and ``CGAN_TRAIN`` and saved there when the file is missing or unusable."""
    from .runtime import get_device

    path = cgan_path(data)
    loaded = load_gan(path, CGAN_CONFIG, verbose=verbose)
    if loaded is not None:
        return loaded
    device = device or get_device()
    G, D = (net.to(device) for net in build_gan(CGAN_CONFIG))
    *_, G_ema = train_gan(G, D, data.x_train, data.y_train, CGAN_TRAIN, desc="conditional GAN", verbose=verbose)
    save_gan(path, G, D, G_ema)
    return G.eval(), D.eval(), G_ema.eval()


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
                  class_names=None, truncation: float | None = None):
    """Explorer: ``n`` samples of one class from a conditional generator ``G(z, y)``; a Figure.

    The noise is multiplied by ``temperature`` (below 1 every z moves towards 0), or, when ``truncation``
    is given, drawn with BigGAN's truncation trick (components beyond +-truncation drawn again)."""
    gen = torch.Generator().manual_seed(int(seed))
    if truncation is not None:
        z, how = truncated_noise(n, z_dim, float(truncation), gen), f"truncated at {float(truncation):.2f}"
    else:
        z, how = scaled_noise(n, z_dim, temperature, gen), f"temperature {float(temperature):.2f}"
    images = _generate(G, z, torch.full((n,), int(digit), dtype=torch.long))
    name = class_names[int(digit)] if class_names else str(int(digit))
    return _images_figure(images, nrow=8, title=f"class {name}, noise seed {int(seed)}, {how}")


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

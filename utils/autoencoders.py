"""Lesson 02 (autoencoders), reused by lessons 03 and 07: the model, reference answers, training, metrics, explorers.

Every explorer is a pure function (parameters -> image array or matplotlib Figure) so the tests can
call it directly; the notebooks only wire sliders to it with ``utils.widgets.explore``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .nn import in_batches
from .plots import image_grid


# --------------------------------------------------------------------------- the model

@dataclass
class AEConfig:
    image_shape: tuple = (1, 28, 28)
    hidden: int = 400       # the width of the one hidden layer on each side
    latent: int = 16        # the bottleneck: numbers per code

    def __post_init__(self):
        if isinstance(self.hidden, (tuple, list)):  # the older spelling, hidden=(400,)
            if len(self.hidden) != 1:
                raise ValueError(f"The autoencoder has one hidden layer on each side: give hidden as one number "
                                 f"(e.g. 400), not {tuple(self.hidden)}.")
            self.hidden = int(self.hidden[0])
        self.image_shape = tuple(self.image_shape)


class Autoencoder(nn.Module):
    """x (B, 1, H, W) -> code z (B, latent) -> reconstruction (B, 1, H, W) in [0, 1].

    Lesson 02's learners write this class; its four layers have names, so that the check can load these
    weights into theirs, and lessons 03 and 07 can load the model that lesson 02 trained and cached.
    """

    def __init__(self, cfg: AEConfig = AEConfig()):
        super().__init__()
        self.cfg = cfg
        pixels = math.prod(cfg.image_shape)
        self.enc_hidden = nn.Linear(pixels, cfg.hidden)
        self.enc_code = nn.Linear(cfg.hidden, cfg.latent)
        self.dec_hidden = nn.Linear(cfg.latent, cfg.hidden)
        self.dec_pixels = nn.Linear(cfg.hidden, pixels)

    def encode(self, x):                                   # x: (B, 1, H, W)
        h = torch.relu(self.enc_hidden(x.flatten(1)))      # (B, hidden)
        return self.enc_code(h)                            # (B, latent)

    def decode(self, z):                                   # z: (B, latent)
        h = torch.relu(self.dec_hidden(z))                 # (B, hidden)
        return self.dec_pixels(h).view(-1, *self.cfg.image_shape)  # (B, 1, H, W) logits

    def forward(self, x):
        return torch.sigmoid(self.decode(self.encode(x)))  # (B, 1, H, W) in [0, 1]


@torch.no_grad()
def decode_images(model: nn.Module, z) -> torch.Tensor:
    """Codes (B, latent) -> images (B, 1, H, W) in [0, 1], for any model with ``decode(z) -> logits``."""
    model.eval()
    z = torch.as_tensor(z, dtype=torch.float32, device=next(model.parameters()).device)
    return torch.sigmoid(model.decode(z.reshape(-1, z.shape[-1]))).cpu()


@torch.no_grad()
def encode_all(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Codes for a whole image set, in batches: (N, latent). For a VAE, the means."""
    model.eval()
    device = next(model.parameters()).device

    def codes(xb):
        out = model.encode(xb.to(device))
        return (out[0] if isinstance(out, tuple) else out).cpu()

    return in_batches(codes, x, batch_size)


@torch.no_grad()
def reconstruct_all(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    return in_batches(lambda xb: model(xb.to(device)).cpu(), x, batch_size)


# --------------------------------------------------------------------------- reference answers

def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the pixels of each image, averaged over the batch: a scalar."""
    return (x_hat - x).pow(2).flatten(1).sum(dim=1).mean()


def add_noise(x: torch.Tensor, noise_level) -> torch.Tensor:
    """Add Gaussian noise with standard deviation ``noise_level`` and clip back into [0, 1]."""
    return (x + noise_level * torch.randn_like(x)).clamp(0.0, 1.0)


def anomaly_score(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One score per image, higher = more unusual: squared reconstruction error summed over pixels."""
    with torch.no_grad():
        x_hat = model(x)
    return (x_hat - x).pow(2).flatten(1).sum(dim=1)


# --------------------------------------------------------------------------- training

def train_autoencoder(model: nn.Module, x: torch.Tensor, steps: int, corrupt=None, desc: str = "autoencoder",
                      seed: int = 0, batch_size: int = 128, lr: float = 1e-3, optimizer=torch.optim.Adam):
    """Adam (or ``optimizer``) on the reconstruction loss for ``steps`` steps; returns the LossHistory ("train").

    ``corrupt(clean) -> input``, when given, makes the model's input (a denoising autoencoder); the target
    is always the clean batch. Lesson 02's learners write this loop's body; lesson 03 trains with it too.
    """
    from .train import LossHistory, progress

    gen = torch.Generator().manual_seed(seed)
    opt = optimizer(model.parameters(), lr=lr)
    history = LossHistory(title=desc, ylabel="squared error per image")
    model.train()
    for step in progress(range(steps), desc=desc):
        clean = x[torch.randint(len(x), (batch_size,), generator=gen)]   # (B, 1, H, W): the targets
        inputs = clean if corrupt is None else corrupt(clean)
        loss = reconstruction_loss(model(inputs), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.log(step, train=loss)
    model.eval()
    return history


def fit(model: nn.Module, x_train: torch.Tensor, steps: int, batch_size: int = 128, lr: float = 1e-3,
        seed: int = 0, desc: str = "autoencoder") -> list:
    """``train_autoencoder`` on clean images; returns the loss per step as a list."""
    return train_autoencoder(model, x_train, steps, desc=desc, seed=seed, batch_size=batch_size, lr=lr).values["train"]


def cache_path(cfg: AEConfig, data_name: str, steps: int) -> Path:
    """Where a trained autoencoder is cached under ``data/``: one file per config, data set and budget."""
    from .runtime import DATA_DIR

    slug = "".join(ch if ch.isalnum() else "_" for ch in data_name.lower()).strip("_")
    return Path(DATA_DIR) / "models" / f"ae_{slug}_h{cfg.hidden}_z{cfg.latent}_steps{steps}.pt"


def _load_into_reference(cfg: AEConfig, state, device="cpu") -> Autoencoder:
    """The reference Autoencoder(cfg) holding ``state``; raises when the weights do not fit it."""
    model = Autoencoder(cfg).to(device)
    model.load_state_dict(state)
    return model.eval()


def _cache_loads(path: Path, cfg: AEConfig) -> bool:
    try:
        _load_into_reference(cfg, torch.load(path, map_location="cpu", weights_only=True))
        return True
    except Exception:  # damaged, stale (an older layout) or another model's file
        return False


def save(model: nn.Module, path: Path) -> bool:
    """Cache ``model`` at ``path`` once: a cache that loads is kept and reused. True when it wrote the file.

    Only the reference architecture is saved (a learner's Autoencoder that passed its check has the same
    layers); a file that no longer loads (damaged, or an older layout) is replaced. Written to a ``.part``
    file and renamed, so an interrupted run never leaves a half-written cache.
    """
    path = Path(path)
    cfg = getattr(model, "cfg", None)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        _load_into_reference(cfg, state)
    except Exception:
        raise ValueError(f"Only lesson 02's autoencoder (utils.autoencoders.Autoencoder, with its cfg) can be cached "
                         f"as {path.name}; this {type(model).__name__} has other layers.") from None
    if path.is_file() and _cache_loads(path, cfg):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(state, partial)
    partial.replace(path)
    return True


def load_or_train(cfg: AEConfig, x_train: torch.Tensor, data_name: str, steps: int, device="cpu",
                  seed: int = 0) -> Autoencoder:
    """Lesson 02's autoencoder: from the cache lesson 02 wrote when there is one, else trained now."""
    path = cache_path(cfg, data_name, steps)
    if path.is_file():
        try:
            model = _load_into_reference(cfg, torch.load(path, map_location=device, weights_only=True), device)
            print(f"Loaded lesson 02's autoencoder from {path}.")
            return model
        except Exception as exc:  # a stale, damaged or foreign file: train afresh
            print(f"The cached autoencoder {path.name} could not be loaded ({exc.__class__.__name__}); training it.")
            path.unlink(missing_ok=True)
    torch.manual_seed(seed)
    model = Autoencoder(cfg).to(device)
    fit(model, x_train, steps, seed=seed, desc=f"autoencoder (latent {cfg.latent})")
    save(model, path)
    return model


# --------------------------------------------------------------------------- metrics

def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB: 10 log10(max^2 / mean squared error). Shape (B,)."""
    mse = (x_hat - x).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(max_value ** 2 / mse)


def roc_auc(scores, is_anomaly):
    """Area under the ROC curve and the curve itself: (auc, false_positive_rate, true_positive_rate)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = _numpy(scores).ravel()
    labels = _numpy(is_anomaly).astype(int).ravel()
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores)), fpr, tpr


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# --------------------------------------------------------------------------- explorers (pure functions)

def decode_grid(model: nn.Module, n: int = 15, low: float = -3.0, high: float = 3.0,
                low_y: float | None = None, high_y: float | None = None) -> np.ndarray:
    """Decode an n x n grid of codes over a 2-D latent plane into one image array in [0, 1].

    Columns run over z1 from ``low`` to ``high``; rows over z2 from ``high_y`` (top) to ``low_y``.
    Shape: (n * (H + 1) + 1, n * (W + 1) + 1), one pixel of padding between tiles.
    """
    low_y = low if low_y is None else low_y
    high_y = high if high_y is None else high_y
    z1 = torch.linspace(low, high, n)
    z2 = torch.linspace(high_y, low_y, n)                   # top row = largest z2, as on a plot
    zz = torch.stack(torch.meshgrid(z2, z1, indexing="ij"), dim=-1).flip(-1).reshape(-1, 2)  # (n*n, 2)
    return image_grid(decode_images(model, zz), nrow=n)


def decode_code(model: nn.Module, z) -> np.ndarray:
    """One code (latent,) -> one image (H, W) in [0, 1]: the latent-slider explorer."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(1, -1)
    return decode_images(model, z)[0, 0].numpy()


def interpolate_codes(z_a: torch.Tensor, z_b: torch.Tensor, t) -> torch.Tensor:
    """Straight line between two codes: (1 - t) z_a + t z_b, for a number t or a 1-D tensor of them."""
    t = torch.as_tensor(t, dtype=z_a.dtype).reshape(-1, 1)  # (T, 1)
    return (1 - t) * z_a.reshape(1, -1) + t * z_b.reshape(1, -1)  # (T, latent)


def interpolate(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, t: float) -> np.ndarray:
    """Encode two images, walk a fraction t of the way from A's code to B's, decode: (H, W) in [0, 1]."""
    z = encode_all(model, torch.stack([x_a.reshape(x_a.shape[-3:]), x_b.reshape(x_b.shape[-3:])]))  # (2, latent)
    return decode_images(model, interpolate_codes(z[0], z[1], t))[0, 0].numpy()


def interpolation_view(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, t: float) -> np.ndarray:
    """Image A | the decoded point a fraction t of the way from A's code to B's | image B: one array in [0, 1]."""
    frames = [x_a.detach().cpu().reshape(x_a.shape[-2:]).numpy(), interpolate(model, x_a, x_b, t),
              x_b.detach().cpu().reshape(x_b.shape[-2:]).numpy()]
    return np.concatenate([np.pad(np.clip(f, 0, 1), 1, constant_values=1.0) for f in frames], axis=1)


def interpolation_strip(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> np.ndarray:
    """The whole A-to-B path as one row of ``steps`` images, an array in [0, 1]."""
    z = encode_all(model, torch.stack([x_a.reshape(x_a.shape[-3:]), x_b.reshape(x_b.shape[-3:])]))
    return image_grid(decode_images(model, interpolate_codes(z[0], z[1], torch.linspace(0, 1, steps))), nrow=steps)


def denoise_view(model: nn.Module, x: torch.Tensor, noise_level: float, seed: int = 0):
    """Noisy, denoised and clean versions of a few images at one noise level, with PSNRs: a Figure.

    The noise is drawn from a fixed seed, so moving the slider changes only the level.
    """
    from matplotlib.figure import Figure

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen)
    noisy = (x + noise_level * noise).clamp(0, 1)
    denoised = reconstruct_all(model, noisy)
    rows = {"noisy": noisy, "denoised": denoised, "clean": x}
    fig = Figure(figsize=(0.9 * len(x), 3.4))
    axes = fig.subplots(3, 1)
    for ax, (label, images) in zip(axes, rows.items()):
        ax.imshow(image_grid(images, nrow=len(x)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        text = label if label == "clean" else f"{label}\n{psnr(images, x).mean().item():.1f} dB"
        ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"noise level (std) = {noise_level:.2f}")
    fig.tight_layout()
    return fig


def latent_ranges(codes: torch.Tensor, margin: float = 0.25):
    """Per-dimension slider ranges (low, high) covering the training codes with a margin: lists of floats."""
    lo, hi = codes.min(dim=0).values, codes.max(dim=0).values
    pad = margin * (hi - lo)
    return [round(v, 2) for v in (lo - pad).tolist()], [round(v, 2) for v in (hi + pad).tolist()]


def reconstructions_figure(model: nn.Module, x: torch.Tensor, title: str = ""):
    """Originals above their reconstructions, as a Figure: the bottleneck-size explorer."""
    from matplotlib.figure import Figure

    x = x.detach().cpu()
    x_hat = reconstruct_all(model, x)
    fig = Figure(figsize=(0.9 * len(x), 2.4))
    for ax, (label, images) in zip(fig.subplots(2, 1), (("original", x), ("reconstruction", x_hat))):
        ax.imshow(image_grid(images, nrow=len(x)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    err = (x_hat - x).pow(2).flatten(1).sum(1).mean().item()
    fig.suptitle(f"{title + ': ' if title else ''}squared error per image {err:.1f}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- a linear baseline

_PCA_CACHE: dict = {}


def pca_basis(x_train: torch.Tensor):
    """Mean (D,) and principal directions (D, D), largest variance first, of the training images."""
    # the same tensor as last time (its address, shape and a fingerprint of its values)?
    key = (x_train.data_ptr(), tuple(x_train.shape), str(x_train.device), float(x_train.flatten()[::97].sum()))
    if key not in _PCA_CACHE:
        flat = x_train.detach().flatten(1)
        mean = flat.double().mean(dim=0).cpu()                     # (D,)
        cov = torch.zeros(len(mean), len(mean), dtype=torch.float64)
        for i in range(0, len(flat), 5000):                        # in chunks: full MNIST stays small in memory
            chunk = flat[i:i + 5000].double().cpu() - mean
            cov += chunk.T @ chunk
        _, vectors = torch.linalg.eigh(cov / (len(flat) - 1))      # ascending eigenvalues
        _PCA_CACHE.clear()
        _PCA_CACHE[key] = (mean, vectors.flip(-1))
    return _PCA_CACHE[key]


def pca_reconstruct(x_train: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """Project x onto the top-k principal directions of x_train and back: the best linear k-D autoencoder."""
    mean, vectors = pca_basis(x_train)
    u = vectors[:, :k]                                             # (D, k)
    flat = x.detach().flatten(1).double().cpu() - mean             # (N, D)
    return ((flat @ u) @ u.T + mean).float().view(x.shape)


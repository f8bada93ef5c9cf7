"""Lesson 05 (diffusion): noise schedules, the reference answers to the exercises, and the pure
functions behind the timestep scrubbers.

Index conventions, used everywhere in the lesson (prose, formulas, code, figure titles):

- Images live in [-1, 1]. ``x_0`` is the clean image; ``x_k`` is the image after k noising steps, so
  x_T is (almost) pure noise and sampling starts there.
- The T steps are numbered like Python's ``range(T)``: step ``t`` (t = 0 .. T-1) has ``betas[t]`` and
  turns x_t into x_{t+1}: q(x_{t+1} | x_t) = N(sqrt(1 - beta_t) x_t, beta_t I).
- ``alpha_bars[t]`` = alpha_0 * ... * alpha_t is the signal left after steps 0..t, i.e. in x_{t+1}:
  x_{t+1} = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps. ``q_sample(x0, t, ...)`` returns x_{t+1}.
- The network sees (x_{t+1}, t). Reverse step t turns x_{t+1} back into x_t; the last one (t = 0)
  returns x_0 and adds no noise.
- The DDPM paper numbers the steps 1..T instead: its beta_t is our ``betas[t - 1]``.

Guidance: eps = eps_uncond + w (eps_cond - eps_uncond), so w = 0 ignores the label and w = 1 is the
plain conditional model.

The model is a small class-conditional U-Net (``UNet``, configured by ``UNetConfig``); label
``cfg.n_classes`` means "no label". Lesson 05 saves its trained (EMA) U-Net and its schedule with
``save_unet`` at ``unet_path(data, cfg, steps)``; later lessons load it with ``load_unet`` and sample with
``sample_ddim(model, y, model.schedule, steps=50)``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- schedules

@dataclass
class Schedule:
    """A noise schedule: T betas and everything derived from them, as float32 tensors of length T."""
    name: str
    betas: torch.Tensor

    def __post_init__(self):
        self.betas = self.betas.float()
        self.alphas = 1.0 - self.betas                       # (T,)
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)  # (T,) signal left in x_{t+1}
        self.alpha_bars_prev = torch.cat([torch.ones(1), self.alpha_bars[:-1]])   # signal left in x_t (1 for x_0)
        # beta tilde, the variance of q(x_t | x_{t+1}, x_0): 0 at t = 0, where x_0 is known
        self.posterior_variance = self.betas * (1 - self.alpha_bars_prev) / (1 - self.alpha_bars)

    def to(self, device) -> "Schedule":
        """The same schedule with its tensors on ``device`` (so a GPU batch can index it directly)."""
        return Schedule(self.name, self.betas.to(device))

    @property
    def T(self) -> int:
        return len(self.betas)

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) for every t: (T,)."""
        return self.alpha_bars / (1 - self.alpha_bars)

    def __repr__(self) -> str:
        return f"Schedule({self.name}, T={self.T}, alpha_bar from {self.alpha_bars[0]:.4f} to {self.alpha_bars[-1]:.2e})"


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Betas rising linearly (Ho et al., 2020). The ends are given for T = 1000 and rescaled for
    other T so that the total amount of noise stays about the same."""
    scale = 1000 / T
    betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    return Schedule("linear", betas.clamp(max=0.999))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """alpha_bar follows a squared cosine (Nichol & Dhariwal, 2021): noise arrives more gently."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bars = f / f[0]
    betas = (1 - alpha_bars[1:] / alpha_bars[:-1]).clamp(max=max_beta)
    return Schedule("cosine", betas)


def make_schedule(kind: str = "linear", T: int = 1000) -> Schedule:
    if kind == "linear":
        return linear_schedule(T)
    if kind == "cosine":
        return cosine_schedule(T)
    raise ValueError(f"kind must be 'linear' or 'cosine', not {kind!r}.")


def per_example(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, 1), ready to broadcast against a batch of images."""
    return values.to(t.device)[t].view(-1, 1, 1, 1)


def to_model_range(x01: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> [-1, 1], the range the diffusion works in."""
    return 2 * x01 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped (for plots and the course classifier)."""
    return ((x + 1) / 2).clamp(0, 1)


# --------------------------------------------------------------------------- exercise references

def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_{t+1} ~ q(x_{t+1} | x_0) in closed form: the image after steps 0..t. x0, noise: (B, C, H, W); t: (B,) ints."""
    ab = per_example(schedule.alpha_bars, t)              # (B, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise       # (B, C, H, W)


def diffusion_loss(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, y: torch.Tensor,
                   schedule: Schedule) -> torch.Tensor:
    """The simple DDPM loss: mean squared error between the true noise and the model's prediction."""
    x_t = q_sample(x0, t, noise, schedule)
    return ((model(x_t, t, y) - noise) ** 2).mean()


def p_sample(x_t: torch.Tensor, t: int, eps: torch.Tensor, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """Reverse step t: x_{t+1} (the argument ``x_t``, the current image) -> x_t, given the predicted
    noise ``eps`` and fresh ``noise``.

    Uses sigma_t^2 = beta_t; at t = 0 it returns the mean (no noise is added at the last step).
    For the posterior's beta tilde, pass ``noise * reverse_noise_scale(schedule, t, "posterior")``.
    """
    beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    if t == 0:
        return mean
    return mean + beta.sqrt() * noise


def reverse_noise_scale(schedule: Schedule, t: int, variance: str = "beta") -> torch.Tensor:
    """sigma_t / sqrt(beta_t) for the two variances DDPM allows: 1 for sigma_t^2 = beta_t ("beta"),
    sqrt(beta_tilde_t / beta_t) for the posterior's ("posterior"). ``p_sample`` adds sqrt(beta_t) * noise,
    so noise multiplied by this gives the chosen sigma_t."""
    if variance == "beta":
        return torch.ones(())
    if variance == "posterior":
        return (schedule.posterior_variance[t] / schedule.betas[t]).sqrt()
    raise ValueError(f"variance must be 'beta' or 'posterior', not {variance!r}.")


def train_step(model, opt, x0: torch.Tensor, y: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """One training step on a batch of clean images x0 (B, C, H, W) in [-1, 1] with labels y (B,):
    a random step t in 0..T-1 and fresh noise for each image, the loss, one optimiser step.
    Returns the loss (detached)."""
    t = torch.randint(0, schedule.T, (len(x0),), device=x0.device)   # (B,): one step per image
    noise = torch.randn_like(x0)                                    # (B, C, H, W): fresh every call
    loss = diffusion_loss(model, x0, t, noise, y, schedule)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: start from the unconditional estimate and move w times along
    the direction the label adds."""
    return eps_uncond + w * (eps_cond - eps_uncond)


# --------------------------------------------------------------------------- the network: a small U-Net

@dataclass
class UNetConfig:
    image_channels: int = 1
    image_size: int = 28            # the samplers draw x_T of this size (any size works in forward)
    unshuffle: int = 2              # look at 28x28 as 14x14x4: four times fewer positions, same pixels
    channels: tuple = (32, 64, 64)  # width at 14x14, 7x7 and 4x4
    emb_dim: int = 128              # time + class embedding
    n_classes: int = 10             # label n_classes means "no label" (for classifier-free guidance)
    groups: int = 8

    def __post_init__(self):
        self.channels = tuple(self.channels)   # a list when read back from JSON

    @property
    def image_shape(self) -> tuple:
        return (self.image_channels, self.image_size, self.image_size)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps, as in transformers: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)  # (half,)
    angles = t.float()[:, None] * freqs[None]                                         # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)                             # (B, dim)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with the time/class embedding added in between, plus a skip."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(cfg.groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(cfg.emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(cfg.groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):                                  # x: (B, c_in, H, W), emb: (B, emb_dim)
        h = self.conv1(F.silu(self.norm1(x)))                   # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]         # the step and label enter here
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """Predicts the noise in x_{t+1} from (x_{t+1}, t, label): three resolutions joined by skip connections."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.image_channels * cfg.unshuffle ** 2
        c1, c2, c3 = cfg.channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.emb_dim, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim))
        self.label_emb = nn.Embedding(cfg.n_classes + 1, cfg.emb_dim)
        self.inp = nn.Conv2d(c0, c1, 3, padding=1)
        self.down1, self.pool1 = ResBlock(c1, c1, cfg), nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.down2, self.pool2 = ResBlock(c2, c2, cfg), nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.mid1, self.mid2 = ResBlock(c3, c3, cfg), ResBlock(c3, c3, cfg)
        self.up2, self.up1 = ResBlock(c3 + c2, c2, cfg), ResBlock(c2 + c1, c1, cfg)
        self.out = nn.Sequential(nn.GroupNorm(cfg.groups, c1), nn.SiLU(), nn.Conv2d(c1, c0, 3, padding=1))

    @staticmethod
    def upsample(h, like):           # nearest-neighbour x2, cropped to the skip's size (7 is odd)
        return F.interpolate(h, scale_factor=2, mode="nearest")[..., :like.shape[-2], :like.shape[-1]]

    def forward(self, x, t, y):                      # x: (B, 1, H, W), t: (B,), y: (B,)
        emb = self.time_mlp(timestep_embedding(t, self.cfg.emb_dim)) + self.label_emb(y)  # (B, emb)
        h1 = self.down1(self.inp(F.pixel_unshuffle(x, self.cfg.unshuffle)), emb)       # (B, c1, H/2, W/2)
        h2 = self.down2(self.pool1(h1), emb)                                           # (B, c2, H/4, W/4)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)                             # (B, c3, H/8, W/8)
        h = self.up2(torch.cat([self.upsample(h, h2), h2], dim=1), emb)                # (B, c2, H/4, W/4)
        h = self.up1(torch.cat([self.upsample(h, h1), h1], dim=1), emb)                # (B, c1, H/2, W/2)
        return F.pixel_shuffle(self.out(h), self.cfg.unshuffle)                        # (B, 1, H, W): the noise


# --------------------------------------------------------------------------- samplers

@torch.no_grad()
def predict_eps(model, x: torch.Tensor, t: int, y: torch.Tensor, w: float) -> torch.Tensor:
    """Guided noise estimate at step t (an int) for the current image x = x_{t+1}: (B, C, H, W).
    Both passes (with and without the label) run as one batch of 2B images."""
    t_vec = torch.full((len(x),), t, dtype=torch.long, device=x.device)
    null = torch.full_like(y, model.cfg.n_classes)        # the "no label" class
    if w == 0 or w == 1:                                  # unconditional or plain conditional: one pass is enough
        return model(x, t_vec, null if w == 0 else y)
    eps = model(torch.cat([x, x]), torch.cat([t_vec, t_vec]), torch.cat([y, null]))  # (2B, C, H, W)
    eps_cond, eps_uncond = eps.chunk(2)
    return guidance(eps_cond, eps_uncond, w)


def start_noise(model, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x_T: pure noise, one image per label, drawn on the CPU from ``gen`` (the same on every device)."""
    return torch.randn(len(y), *model.cfg.image_shape, generator=gen).to(y.device)


@torch.no_grad()
def sample_ddpm(model, y: torch.Tensor, schedule: Schedule, w: float = 1.0, seed: int = 0, record=None,
                variance: str = "beta", step=p_sample) -> torch.Tensor:
    """Ancestral sampling: all T reverse steps, fresh noise at every step but the last. Images in [-1, 1].

    variance: "beta" (sigma_t^2 = beta_t, as in p_sample) or "posterior" (beta tilde).
    step: the reverse step, ``p_sample`` or the learner's. ``record``, a list, gets (label, x) 20 times.
    """
    from .train import progress

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = start_noise(model, y, gen)                                          # x_T: pure noise
    for t in progress(reversed(range(schedule.T)), total=schedule.T, desc="DDPM", leave=False):   # x is x_{t+1}
        eps = predict_eps(model, x, t, y, w)
        scale = reverse_noise_scale(schedule, t, variance)                   # sigma_t / sqrt(beta_t)
        x = step(x, t, eps, schedule, noise=scale * torch.randn(x.shape, generator=gen).to(x.device))  # x_t
        if record is not None and t % max(1, schedule.T // 20) == 0:
            record.append((f"x_{t}", x.cpu()))
    return x


@torch.no_grad()
def sample_ddim(model, y: torch.Tensor, schedule: Schedule, steps: int = 50, w: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Deterministic DDIM: ``steps`` jumps from x_T to x_0 through the predicted clean image, visiting the
    steps ``torch.linspace(T - 1, 0, steps)`` rounded (T-1 first, 0 last). Images in [-1, 1]."""
    x = start_noise(model, y, torch.Generator(device="cpu").manual_seed(seed))   # x_T: (B, C, H, W)
    ts = torch.linspace(schedule.T - 1, 0, steps).round().long().tolist()     # e.g. 499, 489, ..., 0
    for i, t in enumerate(ts):                                                # x is x_{t+1}
        ab = schedule.alpha_bars[t]
        ab_next = schedule.alpha_bars[ts[i + 1]] if i + 1 < len(ts) else torch.ones_like(ab)   # 1: x_0 is clean
        eps = predict_eps(model, x, t, y, w)
        x0_hat = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)    # where the model thinks we go
        eps = (x - ab.sqrt() * x0_hat) / (1 - ab).sqrt()                     # the noise consistent with it
        x = ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps              # the next x_{s+1}, no new noise
    return x


# --------------------------------------------------------------------------- saving and loading the U-Net

def unet_path(data, cfg: UNetConfig, steps: int) -> Path:
    """Where lesson 05 keeps its trained U-Net under ``data/models/``: one file per data set, size and budget."""
    from .runtime import DATA_DIR

    slug = re.sub(r"[^a-z0-9]+", "-", data.name.lower()).strip("-")
    width = "-".join(str(c) for c in cfg.channels)
    return Path(DATA_DIR) / "models" / f"unet-{slug}-n{len(data.x_train)}-c{width}-e{cfg.emb_dim}-steps{steps}.pt"


def save_unet(path, model: UNet, schedule: Schedule | None = None) -> bool:
    """Weights to ``path`` (a state dict, for torch.load(weights_only=True)) and, beside it as ``.json``, the
    config and the noise schedule it was trained with (its name and T), which sampling needs.

    An existing file that loads with the same config and schedule is kept (returns False); a missing,
    damaged or mismatched one is written (returns True), each file to a ``.part`` first and then renamed,
    so an interrupted run never leaves a half-written file.
    """
    path = Path(path)
    meta = {"config": asdict(model.cfg),
            "schedule": None if schedule is None else {"name": schedule.name, "T": schedule.T}}
    found = load_unet(path, verbose=False)
    if found is not None and found.cfg == model.cfg and _schedule_meta(found.schedule) == meta["schedule"]:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, config = path.with_name(path.name + ".part"), path.with_name(path.stem + ".json.part")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    config.write_text(json.dumps(meta, indent=1) + "\n")
    config.replace(path.with_suffix(".json"))
    weights.replace(path)
    return True


def _schedule_meta(schedule: Schedule | None):
    return None if schedule is None else {"name": schedule.name, "T": schedule.T}


def load_unet(path, verbose: bool = True) -> UNet | None:
    """The U-Net saved by ``save_unet``, on the CPU in eval mode, with ``.schedule`` the noise schedule it
    was trained with (None when it was saved without one); None, with one sentence, when the files are
    missing, damaged or do not match (the caller trains afresh)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise FileNotFoundError("no such file")
        meta = json.loads(path.with_suffix(".json").read_text())
        model = UNet(UNetConfig(**meta["config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        saved = meta.get("schedule")
        model.schedule = None if saved is None else make_schedule(saved["name"], int(saved["T"]))
    except Exception as exc:   # missing, truncated, foreign or stale files
        if verbose:
            print(f"No usable U-Net at {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
        return None
    return model.eval()


# --------------------------------------------------------------------------- explorers (pure functions)

def forward_process_grid(x0: torch.Tensor, schedule: Schedule, ts, seed: int = 0) -> np.ndarray:
    """Rows = images, columns = the given timesteps of the forward process (same noise for every t).

    Returns an image array in [0, 1] for ``utils.plots``: (rows*H, len(ts)*W) with 1-pixel gaps.
    """
    from .plots import image_grid

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen)
    frames = []
    for img, eps in zip(x0, noise):
        for t in ts:
            t_vec = torch.full((1,), int(t), dtype=torch.long)
            frames.append(q_sample(img[None], t_vec, eps[None], schedule)[0])
    return image_grid(to_pixels(torch.stack(frames)), nrow=len(ts))


def forward_scrubber(x0: torch.Tensor, t: int, schedule_name: str = "linear", T: int = 1000, seed: int = 0):
    """The forward-process view for the scrubber: the digits ``x0`` (in [-1, 1]) after steps 0..t of the
    chosen schedule, i.e. x_{t+1} (``t`` from 0, almost clean, to T-1: x_T, almost pure noise). Returns a Figure."""
    from matplotlib.figure import Figure

    schedule = make_schedule(schedule_name, T)
    t = int(min(max(t, 0), T - 1))
    grid = forward_process_grid(x0, schedule, [t], seed=seed)  # one column; reshape to a row
    n, h = len(x0), x0.shape[-2]
    row = np.concatenate([grid[1 + i * (h + 1): 1 + i * (h + 1) + h, 1:-1] for i in range(n)], axis=1)
    ab = schedule.alpha_bars[t].item()
    fig = Figure(figsize=(1.1 * n, 1.7))
    ax = fig.add_subplot()
    ax.imshow(row, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{schedule_name} schedule, t = {t}: x_{t + 1}, signal sqrt(alpha_bar) = {math.sqrt(ab):.3f}, "
                 f"noise sqrt(1 - alpha_bar) = {math.sqrt(1 - ab):.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def reverse_scrubber(trajectory: torch.Tensor, steps, k: int):
    """The reverse-process view: frame ``k`` of a recorded sampling run.

    trajectory: (K, N, 1, H, W) in [-1, 1], frame 0 = pure noise, frame K-1 = the final samples;
    steps: the K timestep labels. Returns a Figure showing the N images at frame k.
    """
    from matplotlib.figure import Figure
    from .plots import image_grid

    k = int(min(max(k, 0), len(trajectory) - 1))
    frame = to_pixels(trajectory[k])
    grid = image_grid(frame, nrow=len(frame))
    fig = Figure(figsize=(1.1 * len(frame), 1.7))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"frame {k} of {len(trajectory) - 1}: {steps[k]}", fontsize=9)
    fig.tight_layout()
    return fig


def guidance_view(sample_fn, w: float, digit: int, n: int = 8, seed: int = 0):
    """The guidance-slider view: ``n`` samples of ``digit`` at guidance scale ``w``.

    sample_fn(y, w, seed) -> images (n, 1, H, W) in [-1, 1] (the lesson passes a short DDIM run).
    The same seed for every w, so moving the slider changes only the guidance. Returns a Figure.
    """
    from matplotlib.figure import Figure
    from .plots import image_grid

    y = torch.full((n,), int(digit), dtype=torch.long)
    images = to_pixels(sample_fn(y, float(w), seed).detach().cpu())
    fig = Figure(figsize=(1.1 * n, 1.7))
    ax = fig.add_subplot()
    ax.imshow(image_grid(images, nrow=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"digit {int(digit)}, guidance scale w = {float(w):g}"
                 + (" (label ignored)" if w == 0 else " (plain conditional)" if w == 1 else ""), fontsize=9)
    fig.tight_layout()
    return fig


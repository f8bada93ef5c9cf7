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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


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


def guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: start from the unconditional estimate and move w times along
    the direction the label adds."""
    return eps_uncond + w * (eps_cond - eps_uncond)


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


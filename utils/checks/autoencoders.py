"""Checks for lesson 02: the reconstruction loss, the corruption function and the anomaly score."""
from __future__ import annotations

import torch
from torch import nn

from .core import exercise_check


def _images(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    x_hat = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x_hat, x


# --------------------------------------------------------------------------- reconstruction loss

@exercise_check
def check_reconstruction_loss(c, fn):
    x_hat, x = _images()
    out = c.finite(c.call(fn, x_hat.clone(), x.clone()))
    if out.ndim == 1 and len(out) == len(x):
        c.fail("you returned one value per image: average them over the batch (`.mean()`) to get one scalar.")
    c.shape(out, (), "the loss is one number (a scalar): sum over each image's pixels, then average over images.")
    sq = (x_hat - x).pow(2).flatten(1)
    expected = sq.sum(1).mean()
    c.close(out, expected, mistakes={
        "that is the mean over every pixel (F.mse_loss's default): sum the squared errors over the pixels of "
        "each image, then average over the images.": sq.mean(),
        "you summed over the whole batch: divide by the number of images (average over the batch).": sq.sum(),
        "you used the absolute error: square the differences instead.": (x_hat - x).abs().flatten(1).sum(1).mean(),
        "you took a square root (an RMSE or a norm): keep the plain sum of squared errors.":
            sq.sum(1).sqrt().mean(),
        "you forgot to square the differences (and positive and negative errors cancel out).":
            (x_hat - x).flatten(1).sum(1).mean(),
    }, hint="sum over pixels of (x_hat - x)**2 for each image, then the mean over the batch.")
    # a second case with another batch size, so a hard-coded divisor is caught
    x_hat, x = _images(n=3, seed=1)
    out = c.call(fn, x_hat, x)
    c.close(out, (x_hat - x).pow(2).flatten(1).sum(1).mean(),
            hint="with a batch of 3 the answer is off: do not hard-code the batch size.")
    c.close(c.call(fn, x, x.clone()), torch.tensor(0.0), hint="a perfect reconstruction must have zero loss.")


# --------------------------------------------------------------------------- add_noise

@exercise_check
def check_add_noise(c, fn):
    torch.manual_seed(0)
    # 1) mid-grey images: the clipping almost never acts at 0.1, so the noise statistics show through
    x = torch.full((200, 1, 28, 28), 0.5)
    x_before = x.clone()
    out = c.finite(c.call(fn, x, 0.1))
    c.shape(out, tuple(x.shape), "return a noisy image of the same shape as the input.")
    if not torch.equal(x, x_before):
        c.fail("your function changed its input in place (e.g. `x += ...` or `x.add_(...)`): "
               "build a new tensor so the clean images stay clean.")
    diff = out.detach().double() - 0.5
    std, mean = diff.std().item(), diff.mean().item()
    if std < 1e-6:
        c.fail("the output equals the input: no noise was added. Draw it with torch.randn_like(x).")
    stats = torch.tensor([mean, std])
    c.close(stats, torch.tensor([0.0, 0.1]), atol=0.004, rtol=0.04, mistakes={
        "the spread of the noise is noise_level**2: noise_level is the standard deviation, so multiply "
        "torch.randn_like(x) by noise_level itself.": torch.tensor([0.0, 0.01]),
        "the spread of the noise is sqrt(noise_level): noise_level is the standard deviation, not the "
        "variance.": lambda st: 0.18 < st[1] < 0.4,  # sqrt(0.1) = 0.32, a little less after clipping
        "the noise looks uniform on [0, noise_level] (torch.rand): use Gaussian noise, torch.randn_like(x).":
            torch.tensor([0.05, 0.1 / 12 ** 0.5]),
        "the noise looks uniform on [-noise_level, noise_level]: use Gaussian noise, torch.randn_like(x).":
            torch.tensor([0.0, 0.2 / 12 ** 0.5]),
        "the noise is multiplied by the image (x * noise): add it instead, x + noise_level * noise.":
            torch.tensor([0.0, 0.05]),
        "the noisy images are shifted or squashed (their average brightness moved): add zero-mean noise and "
        "clip with .clamp(0, 1); do not rescale or squash the result (e.g. with a sigmoid).":
            lambda st: abs(st[0]) > 0.02,
    }, hint="use x + noise_level * torch.randn_like(x), then clip into [0, 1].")
    # 2) black and white pixels with strong noise: the result must stay a valid image
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 7:21, 7:21] = 1.0
    out = c.tensor(c.call(fn, x, 0.5)).detach()
    if out.min() < 0 or out.max() > 1:
        c.fail(f"the result leaves the pixel range [0, 1] (it spans {out.min().item():.2f} to {out.max().item():.2f}): "
               f"clip it with .clamp(0, 1).")
    black = out[:, :, :7].double()
    if black.max() == 0:
        c.fail("black pixels stay black: the noise must be added to the image, not multiplied by it.")
    if black.mean() > 0.3:
        c.fail("black pixels turned mid-grey: add zero-mean noise (torch.randn_like) and clip with .clamp(0, 1); "
               "do not rescale or squash the result (e.g. with a sigmoid).")
    # 3) no noise means no change, and two calls give different noise
    x = torch.rand(8, 1, 28, 28)
    c.close(c.call(fn, x, 0.0), x, hint="with noise_level = 0 the images must come back unchanged.")
    a, b = c.tensor(c.call(fn, x, 0.3)), c.tensor(c.call(fn, x, 0.3))
    if torch.equal(a, b):
        c.fail("two calls gave exactly the same noise: draw fresh noise each call (no fixed seed inside).")


# --------------------------------------------------------------------------- anomaly score

class _Blur(nn.Module):
    """A stand-in autoencoder: its reconstruction is a blurred, slightly dimmed copy of the input.

    Like the lesson's model it has encode (images -> codes) and decode (codes -> logits) too,
    and forward(x) = sigmoid(decode(encode(x))).
    """

    def encode(self, x):
        return x.flatten(1)

    def decode(self, z):
        blurred = 0.9 * torch.nn.functional.avg_pool2d(z.view(-1, 1, 28, 28), 3, stride=1, padding=1)
        return torch.logit(blurred.clamp(1e-6, 1 - 1e-6))

    def forward(self, x):
        return torch.sigmoid(self.decode(self.encode(x)))


@exercise_check
def check_anomaly_score(c, fn):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 28, 28, generator=gen) * torch.linspace(0.2, 1.0, 5).view(5, 1, 1, 1)
    model = _Blur()
    out = c.call(fn, model, x)
    out = c.finite(c.tensor(out).detach())
    if out.ndim == 0:
        c.fail("you returned one number for the whole batch: return one score per image, shape (B,) "
               "(sum over each image's pixels only: `.flatten(1).sum(dim=1)`).")
    if tuple(out.shape) != (5,):
        c.fail(f"the result has shape {tuple(out.shape)}, expected (5,): reduce over the pixels of each image "
               f"(dim=1 after .flatten(1)), and keep the batch dimension.")
    err = (model(x) - x).flatten(1)
    expected = err.pow(2).sum(1)
    per_pixel_mean = err.pow(2).mean(1)
    if torch.allclose(out.double(), per_pixel_mean.double(), rtol=1e-4, atol=1e-7):
        return  # the mean over pixels ranks images exactly like the sum: also correct
    c.close(out, expected, mistakes={
        "the scores have the wrong sign: a larger reconstruction error must give a larger (more anomalous) score.":
            -expected,
        "you used the absolute error: use the squared error, as in the reconstruction loss.": err.abs().sum(1),
        "all scores are zero: compare x with the model's reconstruction model(x), not with itself.":
            torch.zeros(5),
        "you took a square root (a norm): use the plain sum of squared errors.": expected.sqrt(),
    }, hint="score = ((model(x) - x) ** 2) summed over each image's pixels.")

"""Checks for lesson 02: the reconstruction loss, the corruption function and the anomaly score."""
from __future__ import annotations

import torch
from torch import nn

from .core import exercise_check
from .. import autoencoders as ref

# ------------------------------------------------------------------ hints, shared with the tests
LOSS_PER_IMAGE = "you returned one value per image: average them over the batch (`.mean()`) to get one scalar."
LOSS_NOT_SCALAR = "the loss is one number (a scalar): sum over each image's pixels, then average over images."
LOSS_PIXEL_MEAN = ("that is the mean over every pixel (F.mse_loss's default): sum the squared errors over the "
                   "pixels of each image, then average over the images.")
LOSS_BATCH_SUM = "you summed over the whole batch: divide by the number of images (average over the batch)."
LOSS_ABS = "you used the absolute error: square the differences instead."
LOSS_SQRT = "you took a square root (an RMSE or a norm): keep the plain sum of squared errors."
LOSS_NOT_SQUARED = "you forgot to square the differences (and positive and negative errors cancel out)."
LOSS_HINT = "sum over pixels of (x_hat - x)**2 for each image, then the mean over the batch."
LOSS_NO_GRAD = ("the loss carries no gradient: keep it a tensor built from x_hat (no .item(), .detach() or "
                "torch.tensor(...)), so that loss.backward() can train the model.")
LOSS_HARD_CODED_PIXELS = ("on 14x14 images the loss is off by a constant factor: do not hard-code 784 "
                          "(28 * 28); sum over however many pixels the images have (.flatten(1).sum(1)).")
LOSS_HARD_CODED_BATCH = "with a batch of 3 the answer is off: do not hard-code the batch size, use .mean()."
LOSS_OTHER_SIZES = "it should work for any batch size and image size."
LOSS_ZERO = "a perfect reconstruction must have zero loss."

NOISE_SHAPE = "return a noisy image of the same shape as the input."
NOISE_NONE = "the output equals the input: no noise was added. Draw it with torch.randn_like(x)."
NOISE_VARIANCE = ("the spread of the noise is noise_level**2: noise_level is the standard deviation, so multiply "
                  "torch.randn_like(x) by noise_level itself.")
NOISE_SQRT = "the spread of the noise is sqrt(noise_level): noise_level is the standard deviation, not the variance."
NOISE_UNIFORM_POSITIVE = "the noise looks uniform on [0, noise_level] (torch.rand): use Gaussian noise, torch.randn_like(x)."
NOISE_UNIFORM = "the noise looks uniform on [-noise_level, noise_level]: use Gaussian noise, torch.randn_like(x)."
NOISE_MULTIPLIED = "the noise is multiplied by the image (x * noise): add it instead, x + noise_level * noise."
NOISE_SHIFTED = ("the noisy images are shifted or squashed (their average brightness moved): add zero-mean noise "
                 "and clip with .clamp(0, 1); do not rescale or squash the result (e.g. with a sigmoid).")
NOISE_HINT = "use x + noise_level * torch.randn_like(x), then clip into [0, 1]."
NOISE_PER_IMAGE = ("every pixel of an image got the same noise value: draw one independent value per pixel, "
                   "torch.randn_like(x), not one per image.")
NOISE_SHARED_BATCH = ("every image got the same noise pattern: draw noise for the whole batch, "
                      "torch.randn_like(x), not one image's worth broadcast over it.")
NOISE_CORRELATED = ("neighbouring pixels got correlated noise: each pixel needs its own independent value, "
                    "torch.randn_like(x).")
NOISE_RANGE = "the result leaves the pixel range [0, 1]: clip it with .clamp(0, 1)."
NOISE_BLACK_STAYS = "black pixels stay black: the noise must be added to the image, not multiplied by it."
NOISE_BLACK_GREY = ("black pixels turned mid-grey: add zero-mean noise (torch.randn_like) and clip with "
                    ".clamp(0, 1); do not rescale or squash the result (e.g. with a sigmoid).")
NOISE_IMAGE_MISSING = "the result does not follow the image: return x plus the noise, not the noise alone."
NOISE_LEVEL_ZERO = "with noise_level = 0 the images must come back unchanged."
NOISE_FIXED_SEED = "two calls gave exactly the same noise: draw fresh noise each call (no fixed seed inside)."

SCORE_SCALAR = ("you returned one number for the whole batch: return one score per image, shape (B,) "
                "(sum over each image's pixels only: `.flatten(1).sum(dim=1)`).")
SCORE_KEEPDIM = "the scores have shape (B, 1): return a flat vector of one score per image, shape (B,)."
SCORE_OVER_BATCH = "you reduced over the batch, not the pixels: flatten each image and sum over dim=1."
SCORE_SHAPE = "reduce over the pixels of each image (dim=1 after .flatten(1)), and keep the batch dimension."
SCORE_SIGN = "the scores have the wrong sign: a larger reconstruction error must give a larger (more anomalous) score."
SCORE_ABS = "you used the absolute error: use the squared error, as in the reconstruction loss."
SCORE_ZERO = "all scores are zero: compare x with the model's reconstruction model(x), not with itself."
SCORE_SQRT = "you took a square root (a norm): use the plain sum of squared errors."
SCORE_LOGITS = ("you compared x with the decoder's logits: the reconstruction is model(x), which applies the "
                "sigmoid, in [0, 1] like x.")
SCORE_HINT = "score = ((model(x) - x) ** 2) summed over each image's pixels."


def _images(n: int = 6, seed: int = 0, side: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, side, side, generator=gen)
    x_hat = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x_hat.requires_grad_(True), x


# --------------------------------------------------------------------------- reconstruction loss

@exercise_check
def check_reconstruction_loss(c, fn):
    x_hat, x = _images()
    out = c.finite(c.shape(c.call(fn, x_hat, x), (), LOSS_NOT_SCALAR, mistakes={(len(x),): LOSS_PER_IMAGE}))
    c.true(out.requires_grad, LOSS_NO_GRAD)
    sq = (x_hat - x).detach().pow(2).flatten(1)
    c.close(out, ref.reconstruction_loss(x_hat, x), mistakes={
        LOSS_PIXEL_MEAN: sq.mean(),
        LOSS_BATCH_SUM: sq.sum(),
        LOSS_ABS: (x_hat - x).abs().flatten(1).sum(1).mean(),
        LOSS_SQRT: sq.sum(1).sqrt().mean(),
        LOSS_NOT_SQUARED: (x_hat - x).flatten(1).sum(1).mean(),
    }, hint=LOSS_HINT)
    x_hat, x = _images(n=3, seed=1)  # another batch size: a hard-coded divisor shows
    c.close(c.call(fn, x_hat, x), ref.reconstruction_loss(x_hat, x), hint=LOSS_HARD_CODED_BATCH)
    x_hat, x = _images(n=4, seed=2, side=14)  # another image size: a hard-coded 784 shows
    expected = ref.reconstruction_loss(x_hat, x)
    c.close(c.call(fn, x_hat, x), expected, hint=LOSS_OTHER_SIZES,
            mistakes={LOSS_HARD_CODED_PIXELS: lambda out: abs(out.item() / expected.item() - 784 / 196) < 0.01 or
                      abs(out.item() / expected.item() - 196 / 784) < 0.01})
    c.close(c.call(fn, x, x.clone()), torch.tensor(0.0), hint=LOSS_ZERO)


# --------------------------------------------------------------------------- add_noise

def _noise_stats(noise: torch.Tensor) -> dict:
    """Spread and dependence of noise (B, C, H, W) measured where the clipping does not act."""
    flat = noise.flatten(1)                                             # (B, P)
    within = flat.std(dim=1).mean()                                     # spread across one image's pixels
    across = flat[0] - flat[1]                                          # two images' noise differ?
    right = noise[..., 1:].flatten(), noise[..., :-1].flatten()         # horizontal neighbours
    neighbours = torch.corrcoef(torch.stack(right))[0, 1] if within > 1e-9 else torch.tensor(0.0)
    return {"within": within.item(), "across": across.abs().max().item(), "neighbours": neighbours.item()}


@exercise_check
def check_add_noise(c, fn):
    torch.manual_seed(0)
    # 1) real-looking images: the result follows the image
    x = torch.rand(8, 1, 28, 28)
    out = c.tensor(c.shape(c.call(fn, x, 0.1), tuple(x.shape), NOISE_SHAPE)).detach().double()
    c.true(torch.corrcoef(torch.stack([out.flatten(), x.double().flatten()]))[0, 1] > 0.5, NOISE_IMAGE_MISSING)
    # 2) mid-grey images: the clipping almost never acts at 0.1, so the noise statistics show through
    x = torch.full((64, 1, 28, 28), 0.5)
    out = c.finite(c.shape(c.call(fn, x, 0.1), tuple(x.shape), NOISE_SHAPE))
    diff = out.detach().double() - 0.5
    c.true(diff.std() > 1e-6, NOISE_NONE)
    noise = _noise_stats(diff)
    c.true(noise["within"] > 0.5 * diff.std().item(), NOISE_PER_IMAGE)
    c.true(noise["across"] > 1e-6, NOISE_SHARED_BATCH)
    c.true(abs(noise["neighbours"]) < 0.05, NOISE_CORRELATED)
    stats = torch.tensor([diff.mean().item(), diff.std().item()])
    reference = ref.add_noise(x, 0.1).double() - 0.5
    c.close(stats, torch.tensor([reference.mean().item(), reference.std().item()]), atol=0.004, rtol=0.04, mistakes={
        NOISE_VARIANCE: torch.tensor([0.0, 0.01]),
        NOISE_SQRT: lambda st: 0.18 < st[1] < 0.4,  # sqrt(0.1) = 0.32, a little less after clipping
        NOISE_UNIFORM_POSITIVE: torch.tensor([0.05, 0.1 / 12 ** 0.5]),
        NOISE_UNIFORM: torch.tensor([0.0, 0.2 / 12 ** 0.5]),
        NOISE_MULTIPLIED: torch.tensor([0.0, 0.05]),
        NOISE_SHIFTED: lambda st: abs(st[0]) > 0.02,
    }, hint=NOISE_HINT)
    # 3) black and white pixels with strong noise: the result must stay a valid image
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 7:21, 7:21] = 1.0
    out = c.tensor(c.call(fn, x, 0.5)).detach()
    c.true(out.min() >= 0 and out.max() <= 1, NOISE_RANGE)
    black = out[:, :, :7].double()
    c.true(black.max() > 0, NOISE_BLACK_STAYS)
    c.true(black.mean() <= 0.3, NOISE_BLACK_GREY)
    # 4) no noise means no change; fresh noise each call
    x = torch.rand(8, 1, 28, 28)
    c.close(c.call(fn, x, 0.0), x, hint=NOISE_LEVEL_ZERO)
    a, b = c.tensor(c.call(fn, x, 0.3)), c.tensor(c.call(fn, x, 0.3))
    c.true(not torch.equal(a, b), NOISE_FIXED_SEED)


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
    out = c.tensor(c.call(fn, model, x)).detach()
    out = c.finite(c.shape(out, (5,), SCORE_SHAPE, mistakes={(): SCORE_SCALAR, (5, 1): SCORE_KEEPDIM,
                                                              (784,): SCORE_OVER_BATCH, (1, 28, 28): SCORE_OVER_BATCH}))
    expected = ref.anomaly_score(model, x)
    err = (model(x) - x).flatten(1)
    if torch.allclose(out.double(), expected.double() / err.shape[1], rtol=1e-4, atol=1e-7):
        return  # the mean over pixels ranks images exactly like the sum: also correct
    c.close(out, expected, mistakes={
        SCORE_SIGN: -expected,
        SCORE_ABS: err.abs().sum(1),
        SCORE_ZERO: torch.zeros(5),
        SCORE_SQRT: expected.sqrt(),
        SCORE_LOGITS: (model.decode(model.encode(x)).view_as(x) - x).pow(2).flatten(1).sum(1),
    }, hint=SCORE_HINT)

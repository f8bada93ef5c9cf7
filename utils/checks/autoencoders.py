"""Checks for lesson 02: the autoencoder module, its training loop, the reconstruction loss, the corruption
function and the anomaly score."""
from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn

from .core import Hint, PlainSGD, exercise_check
from .. import autoencoders as ref

# ------------------------------------------------------------------ hints, shared with the tests
LOSS_PER_IMAGE = Hint("you returned one value per image, not one number for the batch.",
                      more="sum each image's squared errors, then average those sums over the batch with .mean().")
LOSS_NOT_SCALAR = Hint("the loss should be one number (a scalar).",
                       more="square the differences, sum over each image's pixels (.flatten(1).sum(dim=1)), "
                            "then .mean() over the images.")
LOSS_PIXEL_MEAN = Hint("your loss is the reference's divided by the number of pixels: an average over every pixel.",
                       more="F.mse_loss averages over every pixel by default; sum over each image's pixels instead, "
                            "then average over the images.")
LOSS_BATCH_SUM = Hint("your loss grows with the batch size: it is the reference's times the number of images.",
                      more="average over the images (.mean() over the batch) instead of summing over them.")
LOSS_ABS = Hint("your loss treats an error of 0.2 as twice an error of 0.1, not four times.",
                more="that is the absolute error; square the differences instead: (x_hat - x) ** 2.")
LOSS_SQRT = Hint("your loss is the square root of what it should be (a distance, not a squared error).",
                 more="an RMSE or .norm() takes a square root; keep the plain sum of squared errors.")
LOSS_NOT_SQUARED = Hint("your loss can be negative or zero while the images differ: errors of opposite signs cancel.",
                        more="square each difference before summing: (x_hat - x) ** 2.")
LOSS_HINT = Hint("the loss is not the summed squared error per image, averaged over the batch.",
                 more="(x_hat - x).pow(2).flatten(1).sum(dim=1).mean()")
LOSS_NO_GRAD = Hint("the loss carries no gradient, so the backward pass could not train the model.",
                    more="keep it a tensor built from x_hat: no .item(), .detach(), .numpy() or torch.tensor(...).")
LOSS_HARD_CODED_PIXELS = Hint("on 14x14 images the loss is off by a constant factor: it assumes 28x28 images.",
                              more="do not hard-code 784 (28 * 28); sum over however many pixels the images have, "
                                   "with .flatten(1).sum(dim=1).")
LOSS_HARD_CODED_BATCH = Hint("with a batch of 3 images the answer is off: the batch size seems fixed in your code.",
                             more="do not type the batch size; average over the batch with .mean().")
LOSS_OTHER_SIZES = Hint("the loss is wrong for another batch size or image size.",
                        more="write it for any shape (B, 1, H, W): .flatten(1).sum(dim=1).mean().")
LOSS_ZERO = Hint("a perfect reconstruction does not give zero loss.",
                 more="the loss compares x_hat with x, and must be 0 when they are equal: (x_hat - x) ** 2.")

NOISE_SHAPE = Hint("the noisy images do not have the shape of the input.",
                   more="add noise of x's own shape, torch.randn_like(x), and return a tensor shaped like x.")
NOISE_NONE = Hint("the output equals the input: no noise was added.",
                  more="draw Gaussian noise with torch.randn_like(x) and add noise_level times it.")
NOISE_VARIANCE = Hint("at noise level 0.1 the noise spreads far too little: about 0.01 instead of 0.1.",
                      more="noise_level is the standard deviation, so multiply torch.randn_like(x) by noise_level "
                           "itself, not by its square.")
NOISE_SQRT = Hint("at noise level 0.1 the noise spreads about three times too much.",
                  more="noise_level is the standard deviation, not the variance: no square root.")
NOISE_UNIFORM_POSITIVE = Hint("the noise only ever brightens the pixels, and spreads too little.",
                              more="that is uniform noise on [0, noise_level] (torch.rand); use Gaussian noise, "
                                   "torch.randn_like(x).")
NOISE_UNIFORM = Hint("the noise never goes beyond plus or minus noise_level: it is not Gaussian.",
                     more="that is uniform noise (torch.rand scaled); use Gaussian noise, torch.randn_like(x).")
NOISE_MULTIPLIED = Hint("the noise scales with the pixel: dark pixels hardly get any.",
                        more="the noise is multiplied by the image; add it instead: x + noise_level * noise.")
NOISE_SHIFTED = Hint("the noisy images are shifted or squashed: their average brightness moved.",
                     more="add zero-mean noise and clip with .clamp(0, 1); do not rescale or squash the result "
                          "(e.g. with a sigmoid).")
NOISE_HINT = Hint("the noise does not have the right size or kind.",
                  more="x + noise_level * torch.randn_like(x), then clip into [0, 1].")
NOISE_PER_IMAGE = Hint("every pixel of an image got the same noise value.",
                       more="draw one independent value per pixel, torch.randn_like(x), not one per image.")
NOISE_SHARED_BATCH = Hint("every image in the batch got the same noise pattern.",
                          more="draw noise for the whole batch, torch.randn_like(x), not one image's worth broadcast "
                               "over it.")
NOISE_CORRELATED = Hint("neighbouring pixels got correlated noise.",
                        more="each pixel needs its own independent value: torch.randn_like(x).")
NOISE_RANGE = Hint("the result leaves the pixel range [0, 1].",
                   more="clip it with .clamp(0, 1) after adding the noise.")
NOISE_BLACK_STAYS = Hint("black pixels stay black under strong noise.",
                         more="the noise must be added to the image, not multiplied by it.")
NOISE_BLACK_GREY = Hint("black pixels turned mid-grey on average.",
                        more="add zero-mean noise (torch.randn_like) and clip with .clamp(0, 1); do not rescale or "
                             "squash the result (e.g. with a sigmoid).")
NOISE_IMAGE_MISSING = Hint("the result does not follow the image: it looks like noise alone.",
                           more="return x plus the noise, not the noise alone.")
NOISE_LEVEL_ZERO = Hint("with noise level 0 the images do not come back unchanged.",
                        more="the noise is noise_level times a standard normal: zero when noise_level is 0.")
NOISE_FIXED_SEED = Hint("two calls gave exactly the same noise.",
                        more="draw fresh noise each call: no fixed seed or saved generator inside the function.")

SCORE_SCALAR = Hint("you returned one number for the whole batch, not one score per image.",
                    more="sum over each image's pixels only, .flatten(1).sum(dim=1), to get shape (B,).")
SCORE_KEEPDIM = Hint("the scores have shape (B, 1): one score per image, but with an extra dimension.",
                     more="drop keepdim=True (or .squeeze(1)): the scores should be a flat vector of shape (B,).")
SCORE_OVER_BATCH = Hint("your scores have one value per pixel: you reduced over the images, not over the pixels.",
                        more="flatten each image and sum over dim=1: .flatten(1).sum(dim=1).")
SCORE_SHAPE = Hint("the scores should be one number per image, shape (B,).",
                   more="reduce over the pixels of each image (dim=1 after .flatten(1)), and keep the batch dimension.")
SCORE_SIGN = Hint("the worse an image is reconstructed, the lower your score: it is upside down.",
                  more="a larger reconstruction error must give a larger (more anomalous) score: no minus sign.")
SCORE_ABS = Hint("your scores treat a pixel error of 0.2 as twice an error of 0.1, not four times.",
                 more="use the squared error, as in the reconstruction loss, not the absolute error.")
SCORE_ZERO = Hint("all scores are zero.",
                  more="compare x with the model's reconstruction, model(x), not with itself.")
SCORE_SQRT = Hint("your scores are the square roots of the expected ones (a distance).",
                  more="use the plain sum of squared errors, without .norm() or .sqrt().")
SCORE_LOGITS = Hint("your scores are far too large: x was compared with something outside the pixel range.",
                    more="the reconstruction is model(x), which applies the sigmoid; model.decode gives logits.")
SCORE_HINT = Hint("the scores are not the summed squared reconstruction errors.",
                  more="((model(x) - x) ** 2) summed over each image's pixels.")

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


# --------------------------------------------------------------------------- the autoencoder module (build exercise)

AE_NO_SUPER = Hint("building your model failed before any layer existed: the nn.Module machinery was not set up.",
                   more="the first line of __init__ must be super().__init__(), before any self.<layer> = ...")
AE_NO_CFG = Hint("your model does not keep its config as `self.cfg`, which saving and reshaping need.",
                 more="keep the stub's line self.cfg = cfg at the top of __init__.")
AE_BOTTLENECK = Hint("the bottleneck has the wrong size: the code does not have cfg.latent numbers.",
                     more="enc_code maps cfg.hidden -> cfg.latent and dec_hidden maps cfg.latent -> cfg.hidden.")
AE_HARD_CODED_PIXELS = Hint("on 12x12 images your first or last layer still has 784 pixels: it assumes 28x28 images.",
                            more="size the input of enc_hidden and the output of dec_pixels with pixels = "
                                 "math.prod(cfg.image_shape), not 784.")
AE_LAYER_WIDTH = Hint("a layer does not fit the next one: the vectors have the wrong length on the way through.",
                      more="encode flattens each image, x.flatten(1) gives (B, pixels), then enc_hidden, ReLU, "
                           "enc_code; decode feeds the code to dec_hidden, ReLU, dec_pixels.")
AE_VIEW_SIZE = Hint("a reshape assumes a size that this configuration does not have (see the sizes in the message).",
                    more="take sizes from the tensor or the config: x.flatten(1) in encode, "
                         ".view(-1, *self.cfg.image_shape) in decode; never a typed 784 or 28.")
AE_CODE_SHAPE = Hint("encode does not give one code of cfg.latent numbers per image.",
                     more="encode returns enc_code's output, shape (B, latent); flatten with x.flatten(1), which keeps "
                          "the batch dimension.")
AE_CODE_IS_HIDDEN = Hint("encode gives back vectors of the hidden layer's width: the code layer is skipped.",
                         more="after enc_hidden and the ReLU, apply enc_code: return self.enc_code(h).")
AE_CODE_RELU = Hint("your codes are never negative, while the reference's are.",
                    more="no ReLU after enc_code: the code is the layer's raw output, any real number.")
AE_LINEAR = Hint("with the reference's weights your network behaves as if there were no nonlinearity between layers.",
                 more="apply torch.relu to the hidden layer's output, on both sides: relu(enc_hidden(...)) and "
                      "relu(dec_hidden(z)).")
AE_ENCODE_VALUES = Hint("with the reference's weights loaded, your codes differ from the reference's.",
                        more="encode: h = torch.relu(self.enc_hidden(x.flatten(1))); return self.enc_code(h).")
AE_DECODE_FLAT = Hint("decode gives flat vectors: the reconstruction does not have the images' shape.",
                      more="reshape dec_pixels' output to the images' shape: .view(-1, *self.cfg.image_shape).")
AE_DECODE_SHAPE = Hint("decode does not give one image of cfg.image_shape per code.",
                       more="reshape dec_pixels' output with .view(-1, *self.cfg.image_shape), not a fixed 28x28.")
AE_DECODE_SQUASHED = Hint("decode's output always lies between 0 and 1: it should be logits, any real number.",
                          more="leave the sigmoid out of decode; forward applies it once, and lesson 03's tools "
                               "expect decode to give logits.")
AE_DECODE_VALUES = Hint("with the reference's weights loaded, decode's logits differ from the reference's.",
                        more="decode: h = torch.relu(self.dec_hidden(z)); return self.dec_pixels(h) reshaped to "
                             "(B, *cfg.image_shape).")
AE_FORWARD_TUPLE = Hint("forward gives back several things: the lesson expects the reconstruction alone.",
                        more="return only the images in [0, 1]: torch.sigmoid(self.decode(self.encode(x))).")
AE_FORWARD_SHAPE = Hint("forward does not give back images of the input's shape.",
                        more="forward returns the reconstruction, shape (B, 1, H, W): decode the code of x.")
AE_NOT_SQUASHED = Hint("the reconstructions go outside the pixel range [0, 1].",
                       more="squash decode's logits with torch.sigmoid in forward.")
AE_DOUBLE_SQUASH = Hint("every reconstructed pixel lies between 0.5 and 0.74: the output is squashed twice.",
                        more="apply the sigmoid once, in forward; decode returns logits.")
AE_RELU_ON_OUTPUT = Hint("no reconstructed pixel goes below 0.5, so black backgrounds come out grey.",
                         more="no ReLU after dec_pixels: the sigmoid alone turns the logits into pixels.")
AE_FORWARD_VALUES = Hint("with the reference's weights loaded, forward's reconstructions differ from the reference's.",
                         more="forward: torch.sigmoid(self.decode(self.encode(x))).")
AE_TRAIN_MODE = Hint("in training mode your model gives other reconstructions than in eval mode: something random "
                     "is inside it.",
                     more="the reference has no dropout or noise inside the model; remove it, or the check cannot "
                          "compare your outputs.")
AE_LEARNS = Hint("a few gradient steps on one small batch do not lower the reconstruction loss.",
                 more="forward must return sigmoid(decode(encode(x))) built from the layers, with nothing detached "
                      "and no torch.no_grad().")

_SGD_LR = 0.1


# two configurations: the lesson's image size, and another (a hard-coded 784, 28 or 16 shows)
_AE_CASES = ((ref.AEConfig(image_shape=(1, 28, 28), hidden=24, latent=2), 4),
             (ref.AEConfig(image_shape=(1, 12, 12), hidden=10, latent=3), 3))


def _digits(cfg, n: int, seed: int) -> torch.Tensor:
    """Sparse images in [0, 1] (mostly black, like MNIST), shape (n, *cfg.image_shape)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *cfg.image_shape, generator=gen) > 0.75).float() * torch.rand(n, 1, 1, 1, generator=gen)


def _layer_sizes(c, mine: nn.Module, cfg) -> None:
    """Name a bottleneck or image size that ignores the config before comparing every layer's shape."""
    state = mine.state_dict()
    pixels = math.prod(cfg.image_shape)
    code_out = state.get("enc_code.weight", torch.empty(cfg.latent, 0)).shape[0]
    code_in = state.get("dec_hidden.weight", torch.empty(0, cfg.latent)).shape[-1]
    c.true(code_out == cfg.latent and code_in == cfg.latent, AE_BOTTLENECK)
    first = state.get("enc_hidden.weight", torch.empty(0, pixels)).shape[-1]
    last = state.get("dec_pixels.weight", torch.empty(pixels, 0)).shape[0]
    c.true(pixels == 784 or 784 not in (first, last), AE_HARD_CODED_PIXELS)


def _as_module_output(c, out, hint: str) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        c.fail(hint)
    return c.tensor(out)


_ERRORS = {"cannot assign module before Module.__init__": AE_NO_SUPER,
           "mat1 and mat2 shapes cannot be multiplied": AE_LAYER_WIDTH,
           "has no attribute 'cfg'": AE_NO_CFG,
           "is invalid for input of size": AE_VIEW_SIZE}


@exercise_check
def check_Autoencoder(c, cls):
    for n, (cfg, batch) in enumerate(_AE_CASES):
        torch.manual_seed(n)
        mine = c.module(cls, cfg, error_hints=_ERRORS)
        reference = ref.Autoencoder(cfg).eval()
        _layer_sizes(c, mine, cfg)
        c.same_weights(mine, reference)
        mine.eval()
        x = _digits(cfg, batch, seed=n)
        with torch.no_grad():
            z_ref, logits_ref, x_hat_ref = reference.encode(x), reference.decode(reference.encode(x)), reference(x)
            h_ref = reference.enc_hidden(x.flatten(1))

            z = _as_module_output(c, c.call(mine.encode, x, error_hints=_ERRORS), AE_CODE_SHAPE)
            c.shape(z, (batch, cfg.latent), AE_CODE_SHAPE, mistakes={(batch, cfg.hidden): AE_CODE_IS_HIDDEN})
            c.close(z, z_ref, mistakes={
                AE_CODE_RELU: lambda out: bool((out >= 0).all()) and bool((z_ref < 0).any()),
                AE_LINEAR: reference.enc_code(h_ref),
            }, hint=AE_ENCODE_VALUES)

            logits = c.call(mine.decode, z_ref, error_hints=_ERRORS)
            logits = c.shape(_as_module_output(c, logits, AE_DECODE_SHAPE), (batch, *cfg.image_shape),
                             AE_DECODE_SHAPE, mistakes={(batch, math.prod(cfg.image_shape)): AE_DECODE_FLAT})
            c.close(logits, logits_ref, mistakes={
                AE_DECODE_SQUASHED: lambda out: bool(((out >= 0) & (out <= 1)).all()),
                AE_LINEAR: reference.dec_pixels(reference.dec_hidden(z_ref)).view_as(logits_ref),
            }, hint=AE_DECODE_VALUES)

            x_hat = _as_module_output(c, c.call(mine, x, error_hints=_ERRORS), AE_FORWARD_TUPLE)
            x_hat = c.finite(c.shape(x_hat, tuple(x.shape), AE_FORWARD_SHAPE))
            c.close(x_hat, x_hat_ref, mistakes={
                AE_DOUBLE_SQUASH: torch.sigmoid(x_hat_ref),
                AE_RELU_ON_OUTPUT: torch.sigmoid(logits_ref.clamp_min(0)),
                AE_NOT_SQUASHED: lambda out: bool((out < 0).any() or (out > 1).any()),
            }, hint=AE_FORWARD_VALUES)

        mine.train()  # the lesson trains in this mode: the same reconstructions, and gradients everywhere
        x_hat = c.tensor(c.call(mine, x))
        c.close(x_hat, x_hat_ref, hint=AE_TRAIN_MODE)
        c.gradients_reach(mine, ref.reconstruction_loss(x_hat, x))

    # a few plain gradient steps on one small batch lower the loss
    cfg, _ = _AE_CASES[1]
    torch.manual_seed(2)
    mine = c.module(cls, cfg)
    x = _digits(cfg, 16, seed=2)
    opt = PlainSGD(mine.parameters(), lr=_SGD_LR)
    losses = []
    for _ in range(12):
        loss = ref.reconstruction_loss(c.tensor(mine(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    c.learns(losses, AE_LEARNS)


# --------------------------------------------------------------------------- the training loop (build exercise)

TRAIN_ACCUMULATES = Hint("the gradients of each step add onto those of the steps before: they are never reset.",
                         more="call opt.zero_grad() once per step, before loss.backward().")
TRAIN_NO_BACKWARD = Hint("no gradient ever reaches the weights, so Adam has nothing to follow.",
                         more="after computing the loss, call loss.backward(), then opt.step().")
TRAIN_NO_STEP = Hint("the gradients are computed, but the weights never change.",
                     more="call opt.step() after loss.backward() (and clear the gradients before the backward pass, "
                          "not between it and the step).")
TRAIN_NO_GRAD = Hint("the loss carries no gradient, so backward cannot run.",
                     more="compute the loss from model(inputs) directly: not .item(), not reconstruct_all (which runs "
                          "under torch.no_grad), not .detach().")
TRAIN_LOSS_NUMBER = Hint("`loss` is a plain number, not a tensor, so it cannot be differentiated.",
                         more="keep loss = reconstruction_loss(...) a tensor; history.log turns it into a number.")
TRAIN_TARGET_CORRUPTED = Hint("with a corruption given, your loss compares the output with the corrupted input: the "
                              "model would learn to reproduce the noise.",
                              more="the target is always the clean batch: reconstruction_loss(model(inputs), clean).")
TRAIN_IGNORES_CORRUPT = Hint("with a corruption given, the model still sees the clean images.",
                             more="inputs = clean if corrupt is None else corrupt(clean), and feed inputs to the model.")
TRAIN_PIXEL_MEAN = Hint("the logged loss is the reference's divided by the number of pixels.",
                        more="use the lesson's reconstruction_loss, summed over pixels and averaged over images, "
                             "not F.mse_loss's mean over every pixel.")
TRAIN_OTHER_DATA = Hint("the first step's loss is not the loss on the stub's first batch.",
                        more="use the batch `clean` that the stub draws, and log that batch's loss in `loss`.")
TRAIN_CURVE = Hint("the loss curve differs from the reference's for the same seed, batches and model.",
                   more="one step: inputs, loss = reconstruction_loss(model(inputs), clean), opt.zero_grad(), "
                        "loss.backward(), opt.step(), in that order, once per batch.")
TRAIN_NO_HISTORY = Hint("the loop did not log one loss per step.",
                        more="keep the stub's lines: history.log(step, train=loss) after your body, return history.")

_TRAIN_CFG = ref.AEConfig(image_shape=(1, 8, 8), hidden=16, latent=2)
_TRAIN_STEPS, _TRAIN_BATCH = 12, 8


def _corrupt(clean: torch.Tensor) -> torch.Tensor:
    """A fixed corruption for the check (no randomness, so the runs compare exactly): dim and brighten."""
    return 0.5 * clean + 0.25


@contextlib.contextmanager
def _quiet_progress():
    """No progress bar while the check runs the learner's loop (it would flash in the notebook)."""
    import utils
    from utils import train as train_module

    saved = utils.progress, train_module.progress
    quiet = lambda iterable=None, **kwargs: iterable  # noqa: E731
    utils.progress = train_module.progress = quiet
    try:
        yield
    finally:
        utils.progress, train_module.progress = saved


class _GradSpy:
    """Watches a model's first layer: did a gradient arrive, did it land on an old one, did the weights move?"""

    def __init__(self, model: nn.Module):
        self.param = next(model.parameters())
        self.before = self.param.detach().clone()
        self.backwards, self.accumulated = 0, False
        self._incoming = None
        self._hooks = [self.param.register_hook(self._arrive),
                       self.param.register_post_accumulate_grad_hook(self._stored)]

    def _arrive(self, grad):
        self._incoming = grad.detach().clone()

    def _stored(self, param):
        self.backwards += 1
        if self._incoming is not None and not torch.allclose(param.grad, self._incoming):
            self.accumulated = True

    def moved(self) -> bool:
        return not torch.equal(self.param.detach(), self.before)

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def _run_loop(c, fn, corrupt, x, seed: int = 0):
    """The learner's loop and the reference's from the same initial model: (history, spy, reference history, model0)."""
    torch.manual_seed(seed)
    model = ref.Autoencoder(_TRAIN_CFG)
    start = ref.Autoencoder(_TRAIN_CFG)
    start.load_state_dict(model.state_dict())
    spy = _GradSpy(model)
    kwargs = dict(corrupt=corrupt, desc="check", seed=seed, batch_size=_TRAIN_BATCH, lr=_SGD_LR, optimizer=PlainSGD)
    try:
        with _quiet_progress():
            history = c.call(fn, model, x, _TRAIN_STEPS, **kwargs,
                             error_hints={"does not require grad": TRAIN_NO_GRAD,
                                          "has no attribute 'backward'": TRAIN_LOSS_NUMBER})
            reference = ref.train_autoencoder(copy.deepcopy(start), x, _TRAIN_STEPS, **kwargs)
    finally:
        spy.remove()
    return history, spy, reference, start.eval()


@exercise_check
def check_train_autoencoder(c, fn):
    x = _digits(_TRAIN_CFG, 32, seed=5)
    for corrupt in (None, _corrupt):
        history, spy, reference, start = _run_loop(c, fn, corrupt, x)
        c.true(spy.backwards > 0, TRAIN_NO_BACKWARD)
        c.true(not spy.accumulated, TRAIN_ACCUMULATES)
        c.true(spy.moved(), TRAIN_NO_STEP)
        losses = getattr(history, "values", {}).get("train", []) if history is not None else []
        c.true(len(losses) == _TRAIN_STEPS, TRAIN_NO_HISTORY)
        expected = reference.values["train"]
        # the first step's loss says what was compared with what (the same first batch, the same model)
        clean = x[torch.randint(len(x), (_TRAIN_BATCH,), generator=torch.Generator().manual_seed(0))]
        inputs = clean if corrupt is None else corrupt(clean)
        with torch.no_grad():
            wrong_target = ref.reconstruction_loss(start(inputs), inputs).item()
            no_corruption = ref.reconstruction_loss(start(clean), clean).item()
        c.close(torch.tensor(losses[0]), torch.tensor(expected[0]), mistakes={
            TRAIN_TARGET_CORRUPTED: torch.tensor(wrong_target),
            TRAIN_IGNORES_CORRUPT: torch.tensor(no_corruption),
            TRAIN_PIXEL_MEAN: torch.tensor(expected[0] / math.prod(_TRAIN_CFG.image_shape)),
        }, hint=TRAIN_OTHER_DATA)
        c.close(torch.tensor(losses), torch.tensor(expected), hint=TRAIN_CURVE, rtol=1e-3, atol=1e-3)


SECOND_HINTS = {
    "Autoencoder": "four named layers (enc_hidden: pixels -> hidden, enc_code: hidden -> latent, dec_hidden: "
                   "latent -> hidden, dec_pixels: hidden -> pixels); encode = enc_code(relu(enc_hidden(x.flatten(1)))); "
                   "decode = dec_pixels(relu(dec_hidden(z))).view(-1, *cfg.image_shape), logits; "
                   "forward = torch.sigmoid(self.decode(self.encode(x))).",
    "train_autoencoder": "one step: inputs = clean if corrupt is None else corrupt(clean); "
                         "loss = reconstruction_loss(model(inputs), clean); opt.zero_grad(); loss.backward(); "
                         "opt.step().",
    "reconstruction_loss": "(x_hat - x).pow(2).flatten(1).sum(dim=1).mean(): square, sum over each image's pixels, "
                           "average over the batch.",
    "add_noise": "(x + noise_level * torch.randn_like(x)).clamp(0, 1): fresh Gaussian noise of standard deviation "
                 "noise_level on every pixel, then back into the pixel range.",
    "anomaly_score": "with torch.no_grad(): x_hat = model(x); then (x_hat - x).pow(2).flatten(1).sum(dim=1), one "
                     "score per image.",
}

"""Checks for lesson 03: the reparameterisation trick, the KL term and the ELBO loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import exercise_check
from .. import vae as ref

# ------------------------------------------------------------------ hints, shared with the tests
Z_SHAPE = "z has the same shape as mu: one sample per example and dimension."
Z_NO_NOISE = "you returned mu with no noise: add sigma * eps with eps = torch.randn_like(mu)."
Z_CONSTANT = "z does not vary at all: add sigma * eps with fresh eps = torch.randn_like(mu)."
Z_SAME_FOR_BATCH = ("every example got the same noise: draw one eps per example and dimension, "
                    "eps = torch.randn_like(mu), not torch.randn(latent).")
Z_SHARED_DIMS = ("the latent dimensions share one noise value: their samples are correlated. Draw an independent "
                 "eps for every dimension, eps = torch.randn_like(mu).")
Z_LOGVAR_AS_STD = "you used logvar as the standard deviation: sigma = exp(0.5 * logvar)."
Z_VAR_AS_STD = "you forgot the 0.5: exp(logvar) is the variance; sigma = exp(0.5 * logvar)."
Z_SQRT_TWICE = "you took the square root twice: sigma = exp(0.5 * logvar) already is the square root of the variance."
Z_UNIFORM = "the noise is not standard normal (torch.rand is uniform on [0, 1]): use eps = torch.randn_like(mu)."
Z_SPREAD_HINT = "z should spread like sigma = exp(0.5 * logvar) around mu, with eps ~ N(0, I) from torch.randn_like."
Z_NOT_CENTRED = "z is not centred on mu: add the noise to mu, z = mu + sigma * eps."
Z_MEAN_HINT = "the samples should average to mu: z = mu + sigma * eps with zero-mean eps."
Z_NO_GRAD = ("no gradient flows through z: build it as mu + sigma * eps (not with .sample(), torch.no_grad "
             "or .detach()), so the encoder can learn.")
Z_GRAD_MU = "dz/dmu should be 1: compute z = mu + sigma * eps, with eps independent of mu."
Z_GRAD_LOGVAR = ("no gradient reaches logvar: sigma must be computed from logvar inside the function, "
                 "sigma = exp(0.5 * logvar).")

KL_SCALAR = ("you returned one number for the whole batch: return one KL per example, shape (B,), by "
             "summing over the latent dimensions only (dim=1).")
KL_OVER_BATCH = "you summed over the batch (dim=0): sum over the latent dimensions (dim=1), one value per example."
KL_KEEPDIM = "the result has shape (B, 1): sum over dim=1 without keepdim, one KL value per example."
KL_SHAPE = "one KL value per example: sum over dim=1 (the latent dimensions)."
KL_SIGN = "the sign is wrong: a KL divergence is never negative (mind the -0.5 in front)."
KL_HALF = "you forgot the 0.5 in front of the sum."
KL_STD_FOR_VAR = "you used the standard deviation exp(0.5 * logvar) where the formula needs the variance exp(logvar)."
KL_STD_FOR_LOGVAR = ("you used the standard deviation where the formula needs the log-variance: the '1 + logvar' "
                     "term takes logvar itself.")
KL_LOGVAR_AS_STD = ("you treated logvar as the standard deviation (var = logvar**2): logvar is log(sigma**2), so "
                    "sigma**2 = exp(logvar).")
KL_MEAN_OVER_DIMS = "you took the mean over the latent dimensions: sum over them (dim=1) instead."
KL_MU_NOT_SQUARED = "mu must be squared: the term is mu**2."
KL_LOGVAR_FOR_VAR = "the variance term is exp(logvar), not logvar itself."
KL_NO_ONE = "the constant 1 inside the sum is missing: with mu = 0 and logvar = 0 the KL must be 0."
KL_HINT = "KL(q || N(0, I)) per example sums, over the latent dimensions, -0.5 (1 + logvar - mu^2 - exp(logvar))."
KL_ZERO = "when q is already N(0, I) (mu = 0, logvar = 0) the KL must be 0."

ELBO_PER_EXAMPLE = "you returned one loss per example: average over the batch (.mean()) to get a scalar."
ELBO_SCALAR = "the loss is one number (a scalar)."
ELBO_NO_GRAD = ("the loss carries no gradient: keep it a tensor built from the logits (no .item(), .detach() "
                "or torch.tensor(...)), so that loss.backward() can train the VAE.")
ELBO_PIXEL_MEAN = ("the reconstruction term is averaged over pixels (the default reduction='mean'): sum the BCE "
                   "over the pixels of each image, reduction='none' then .flatten(1).sum(1).")
ELBO_BATCH_SUM = "you summed over the batch: average over the examples (.mean()) so the loss does not grow with the batch size."
ELBO_NO_BETA = "beta is missing: the loss is reconstruction + beta * KL."
ELBO_BETA_ON_RECON = "beta multiplies the reconstruction term: it belongs on the KL, reconstruction + beta * KL."
ELBO_KL_SIGN = "the KL term has the wrong sign: the loss adds it, reconstruction + beta * KL (KL >= 0)."
ELBO_NO_KL = "the KL term is missing: the loss is reconstruction + beta * KL."
ELBO_MSE = ("you used a squared error: the reconstruction term is the Bernoulli negative log-likelihood, "
            "F.binary_cross_entropy_with_logits(logits, x, reduction='none').")
ELBO_SIGMOID_TWICE = "you applied a sigmoid twice: binary_cross_entropy_with_logits takes the logits themselves."
ELBO_ARGS_SWAPPED = ("the arguments of binary_cross_entropy_with_logits are swapped: the logits come first, "
                     "the target images x second.")
ELBO_HARD_CODED_PIXELS = ("on 14x14 images the loss is off: do not hard-code 784 (28 * 28); sum the BCE over "
                          "however many pixels the images have (.flatten(1).sum(1)).")
ELBO_KL_PREFIX = "the KL part is off"
ELBO_HINT = "loss = mean over the batch of [BCE summed over pixels + beta * KL]."
ELBO_DEFAULT_BETA = "give beta a default value of 1.0: def elbo_loss(logits, x, mu, logvar, beta=1.0)."
ELBO_DEFAULT_HINT = "with the default beta = 1 the loss is BCE + KL."

# Per-dimension log-variances chosen so that every typical mistake gives a different spread.
_LOGVAR = torch.tensor([-2.0, 0.5, 1.5])
_MU = torch.tensor([1.0, -0.5, 2.0])


def kl_cases():
    """A small batch (B=4, latent 3) with positive and negative means and log-variances."""
    mu = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.2, -0.7], [0.0, 0.0, 0.0], [-2.0, 0.8, 1.1]])
    logvar = torch.tensor([[-1.0, 0.4, 0.2], [0.7, -0.3, -2.0], [0.3, -0.6, 1.2], [-0.5, 1.3, 0.6]])
    return mu, logvar


def kl_mistakes(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """hint -> the value each typical KL mistake produces (one value per example)."""
    std, var = (0.5 * logvar).exp(), logvar.exp()
    expected = ref.kl_divergence(mu, logvar)
    terms = 1 + logvar - mu.pow(2) - var
    return {
        KL_SIGN: -expected,
        KL_HALF: 2 * expected,
        KL_STD_FOR_VAR: -0.5 * (1 + logvar - mu.pow(2) - std).sum(1),
        KL_STD_FOR_LOGVAR: -0.5 * (1 + std - mu.pow(2) - var).sum(1),
        KL_LOGVAR_AS_STD: -0.5 * (1 + (logvar.pow(2) + 1e-12).log() - mu.pow(2) - logvar.pow(2)).sum(1),
        KL_MEAN_OVER_DIMS: -0.5 * terms.mean(1),
        KL_MU_NOT_SQUARED: -0.5 * (1 + logvar - mu - var).sum(1),
        KL_LOGVAR_FOR_VAR: -0.5 * (1 + logvar - mu.pow(2) - logvar).sum(1),
        KL_NO_ONE: expected + 0.5 * mu.shape[1],
    }


# --------------------------------------------------------------------------- reparameterize

@exercise_check
def check_reparameterize(c, fn):
    torch.manual_seed(0)
    n = 20_000
    mu = _MU.repeat(n, 1).requires_grad_(True)          # (n, 3)
    logvar = _LOGVAR.repeat(n, 1).requires_grad_(True)  # (n, 3)
    z = c.finite(c.shape(c.call(fn, mu, logvar), (n, 3), Z_SHAPE))
    zd = z.detach().double()
    if zd.std(dim=0).max() < 1e-6:
        c.fail(Z_NO_NOISE if torch.allclose(zd, mu.detach().double()) else Z_SAME_FOR_BATCH)
    reference = ref.reparameterize(mu, logvar).detach().double()  # the same distribution, sampled by the course
    c.close(zd.std(dim=0), reference.std(dim=0), rtol=0.03, atol=0.01, mistakes={
        Z_LOGVAR_AS_STD: _LOGVAR.abs(),
        Z_VAR_AS_STD: _LOGVAR.exp(),
        Z_SQRT_TWICE: _LOGVAR.mul(0.25).exp(),
        Z_UNIFORM: reference.std(dim=0) / 12 ** 0.5,
    }, hint=Z_SPREAD_HINT)
    c.close(zd.mean(dim=0), reference.mean(dim=0), atol=0.06, rtol=0.0, mistakes={Z_NOT_CENTRED: torch.zeros(3)},
            hint=Z_MEAN_HINT)
    correlation = torch.corrcoef(zd.T)                   # (3, 3): independent dimensions are uncorrelated
    c.true((correlation - torch.eye(3, dtype=torch.float64)).abs().max() < 0.05, Z_SHARED_DIMS)
    # the point of the trick: gradients reach mu and logvar through z
    c.true(z.requires_grad, Z_NO_GRAD)
    z[:4].sum().backward()
    c.true(mu.grad is not None and torch.allclose(mu.grad[:4].double(), torch.ones(4, 3, dtype=torch.float64)),
           Z_GRAD_MU)
    c.true(logvar.grad is not None and logvar.grad[:4].abs().sum() > 0, Z_GRAD_LOGVAR)


# --------------------------------------------------------------------------- KL divergence

@exercise_check
def check_kl_divergence(c, fn):
    mu, logvar = kl_cases()
    out = c.finite(c.shape(c.call(fn, mu, logvar), (4,), KL_SHAPE,
                           mistakes={(): KL_SCALAR, (3,): KL_OVER_BATCH, (4, 1): KL_KEEPDIM}))
    c.close(out, ref.kl_divergence(mu, logvar), mistakes=kl_mistakes(mu, logvar), hint=KL_HINT)
    zero = torch.zeros(2, 5)
    c.close(c.call(fn, zero, zero.clone()), ref.kl_divergence(zero, zero), hint=KL_ZERO)


# --------------------------------------------------------------------------- ELBO loss

def elbo_cases(seed: int = 0, batch: int = 5, latent: int = 3, side: int = 28):
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, 1, side, side, generator=gen)
    x = torch.rand(batch, 1, side, side, generator=gen)
    mu = torch.randn(batch, latent, generator=gen)
    logvar = 0.5 * torch.randn(batch, latent, generator=gen)
    return logits.requires_grad_(True), x, mu, logvar


def elbo_mistakes(logits, x, mu, logvar, beta: float) -> dict:
    logits = logits.detach()
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)  # (B, D)
    rec, kl = ref.reconstruction_nll(logits, x), ref.kl_divergence(mu, logvar)
    mse = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    mistakes = {
        ELBO_PIXEL_MEAN: bce.mean() + beta * kl.mean(),
        ELBO_BATCH_SUM: (rec + beta * kl).sum(),
        ELBO_NO_BETA: (rec + kl).mean(),
        ELBO_BETA_ON_RECON: (beta * rec + kl).mean(),
        ELBO_KL_SIGN: (rec - beta * kl).mean(),
        ELBO_NO_KL: rec.mean(),
        ELBO_MSE: (mse + beta * kl).mean(),
        ELBO_SIGMOID_TWICE: ref.elbo_loss(torch.sigmoid(logits), x, mu, logvar, beta),
        ELBO_ARGS_SWAPPED: (F.binary_cross_entropy_with_logits(x, logits, reduction="none").flatten(1).sum(1)
                            + beta * kl).mean(),
    }
    for hint, value in kl_mistakes(mu, logvar).items():  # a wrong KL inside the loss, named as such
        mistakes[f"{ELBO_KL_PREFIX} ({hint})"] = (rec + beta * value).mean()
    return mistakes


@exercise_check
def check_elbo_loss(c, fn):
    for seed, batch, beta, side in ((0, 5, 4.0, 28), (1, 3, 0.5, 28), (3, 4, 2.0, 14)):
        logits, x, mu, logvar = elbo_cases(seed, batch, side=side)
        out = c.shape(c.call(fn, logits, x, mu, logvar, beta), (), ELBO_SCALAR, mistakes={(batch,): ELBO_PER_EXAMPLE})
        c.finite(out)
        c.true(out.requires_grad, ELBO_NO_GRAD)
        expected = ref.elbo_loss(logits, x, mu, logvar, beta)
        mistakes = elbo_mistakes(logits, x, mu, logvar, beta)
        if side != 28:
            rec = ref.reconstruction_nll(logits.detach(), x)
            mistakes[ELBO_HARD_CODED_PIXELS] = (rec * 784 / (side * side) + beta * ref.kl_divergence(mu, logvar)).mean()
        c.close(out, expected, mistakes=mistakes, hint=ELBO_HINT)
    logits, x, mu, logvar = elbo_cases(2, 4)  # the default beta is 1
    out = c.call(fn, logits, x, mu, logvar, error_hints={"beta": ELBO_DEFAULT_BETA})
    c.close(out, ref.elbo_loss(logits, x, mu, logvar), hint=ELBO_DEFAULT_HINT)

"""Checks for lesson 03: the reparameterisation trick, the KL term and the ELBO loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import exercise_check

# Per-dimension log-variances chosen so that every typical mistake gives a different spread.
_LOGVAR = torch.tensor([-2.0, 0.5, 1.5])
_MU = torch.tensor([1.0, -0.5, 2.0])


def kl_cases():
    """A small batch (B=4, latent 3) with positive and negative means and log-variances."""
    mu = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.2, -0.7], [0.0, 0.0, 0.0], [-2.0, 0.8, 1.1]])
    logvar = torch.tensor([[-1.0, 0.4, 0.2], [0.7, -0.3, -2.0], [0.3, -0.6, 1.2], [-0.5, 1.3, 0.6]])
    return mu, logvar


def kl_mistakes(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """hint -> the value each typical KL mistake produces (one value per example unless noted)."""
    std, var = (0.5 * logvar).exp(), logvar.exp()
    terms = 1 + logvar - mu.pow(2) - var
    return {
        "the sign is wrong: KL(q || p) = -0.5 * sum(1 + logvar - mu**2 - exp(logvar)) is never negative.":
            0.5 * terms.sum(1),
        "you forgot the 0.5 in front of the sum.": -terms.sum(1),
        "you used the standard deviation exp(0.5 * logvar) where the formula needs the variance exp(logvar).":
            -0.5 * (1 + logvar - mu.pow(2) - std).sum(1),
        "you used the standard deviation where the formula needs the log-variance: the '1 + logvar' term "
        "takes logvar itself.": -0.5 * (1 + std - mu.pow(2) - var).sum(1),
        "you treated logvar as the standard deviation (var = logvar**2): logvar is log(sigma**2), so "
        "sigma**2 = exp(logvar).": -0.5 * (1 + (logvar.pow(2) + 1e-12).log() - mu.pow(2) - logvar.pow(2)).sum(1),
        "you took the mean over the latent dimensions: sum over them (dim=1) instead.": -0.5 * terms.mean(1),
        "mu must be squared: the term is mu**2.": -0.5 * (1 + logvar - mu - var).sum(1),
        "the term is exp(logvar), not logvar: the variance is exp(logvar).": -0.5 * (1 + logvar - mu.pow(2) - logvar).sum(1),
    }


# --------------------------------------------------------------------------- reparameterize

@exercise_check
def check_reparameterize(c, fn):
    torch.manual_seed(0)
    n = 40_000
    mu = _MU.repeat(n, 1).requires_grad_(True)          # (n, 3)
    logvar = _LOGVAR.repeat(n, 1).requires_grad_(True)  # (n, 3)
    z = c.call(fn, mu, logvar)
    z = c.finite(c.shape(z, (n, 3), "z has the same shape as mu: one sample per example and dimension."))
    zd = z.detach().double()
    spread = zd.std(dim=0)
    if spread.max() < 1e-6:
        if torch.allclose(zd, mu.detach().double()):
            c.fail("you returned mu with no noise: add sigma * eps with eps = torch.randn_like(mu).")
        c.fail("z does not vary at all: add sigma * eps with fresh eps = torch.randn_like(mu).")
    std = (0.5 * _LOGVAR).exp()
    c.close(spread, std, rtol=0.03, atol=0.01, mistakes={
        "you used logvar as the standard deviation: sigma = exp(0.5 * logvar).": _LOGVAR.abs(),
        "you forgot the 0.5: exp(logvar) is the variance; sigma = exp(0.5 * logvar).": _LOGVAR.exp(),
        "you took the square root twice: sigma = exp(0.5 * logvar) already is the square root of the variance.": _LOGVAR.mul(0.25).exp(),
        "the noise is not standard normal (torch.rand is uniform on [0, 1]): use eps = torch.randn_like(mu).":
            std / 12 ** 0.5,
    }, hint="z = mu + exp(0.5 * logvar) * eps with eps ~ N(0, I) drawn with torch.randn_like.")
    c.close(zd.mean(dim=0), _MU, atol=0.06, rtol=0.0, mistakes={
        "z is not centred on mu: add the noise to mu, z = mu + sigma * eps.": torch.zeros(3),
    }, hint="the samples should average to mu: z = mu + sigma * eps with zero-mean eps.")
    # the point of the trick: gradients reach mu and logvar through z
    if not z.requires_grad:
        c.fail("no gradient flows through z: build it as mu + sigma * eps (not with .sample(), torch.no_grad "
               "or .detach()), so the encoder can learn.")
    z[:4].sum().backward()
    if mu.grad is None or not torch.allclose(mu.grad[:4], torch.ones(4, 3)):
        c.fail("dz/dmu should be 1: compute z = mu + sigma * eps, with eps independent of mu.")
    if logvar.grad is None or logvar.grad[:4].abs().sum() == 0:
        c.fail("no gradient reaches logvar: sigma must be computed from logvar inside the function, "
               "sigma = exp(0.5 * logvar).")


# --------------------------------------------------------------------------- KL divergence

@exercise_check
def check_kl_divergence(c, fn):
    mu, logvar = kl_cases()
    out = c.finite(c.call(fn, mu.clone(), logvar.clone()))
    expected = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    if out.ndim == 0:
        c.fail("you returned one number for the whole batch: return one KL per example, shape (B,), by "
               "summing over the latent dimensions only (dim=1).")
    if tuple(out.shape) == (3,):
        c.fail("you summed over the batch (dim=0): sum over the latent dimensions (dim=1), one value per example.")
    c.shape(out, (4,), "one KL value per example: sum over dim=1 (the latent dimensions).")
    c.close(out, expected, mistakes=kl_mistakes(mu, logvar),
            hint="KL = -0.5 * (1 + logvar - mu**2 - exp(logvar)).sum(dim=1).")
    zero = c.call(fn, torch.zeros(2, 5), torch.zeros(2, 5))
    c.close(zero, torch.zeros(2), hint="when q is already N(0, I) (mu = 0, logvar = 0) the KL must be 0.")


# --------------------------------------------------------------------------- ELBO loss

def elbo_cases(seed: int = 0, batch: int = 5, latent: int = 3):
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, 1, 28, 28, generator=gen)
    x = torch.rand(batch, 1, 28, 28, generator=gen)
    mu = torch.randn(batch, latent, generator=gen)
    logvar = 0.5 * torch.randn(batch, latent, generator=gen)
    return logits, x, mu, logvar


def elbo_mistakes(logits, x, mu, logvar, beta: float) -> dict:
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)  # (B, D)
    rec = bce.sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    mse = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    return {
        "the reconstruction term is averaged over pixels (the default reduction='mean'): sum the BCE over the "
        "pixels of each image, reduction='none' then .flatten(1).sum(1).": (bce.mean() + beta * kl.mean()),
        "you summed over the batch: average over the examples (.mean()) so the loss does not grow with the "
        "batch size.": (rec + beta * kl).sum(),
        "beta is missing: the loss is reconstruction + beta * KL.": (rec + kl).mean(),
        "beta multiplies the reconstruction term: it belongs on the KL, reconstruction + beta * KL.":
            (beta * rec + kl).mean(),
        "the KL term has the wrong sign: the loss adds it, reconstruction + beta * KL (KL >= 0).":
            (rec - beta * kl).mean(),
        "the KL term is missing: the loss is reconstruction + beta * KL.": rec.mean(),
        "you used a squared error: the reconstruction term is the Bernoulli negative log-likelihood, "
        "F.binary_cross_entropy_with_logits(logits, x, reduction='none').": (mse + beta * kl).mean(),
        "you applied a sigmoid twice: binary_cross_entropy_with_logits takes the logits themselves.":
            (F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1)
             + beta * kl).mean(),
    }


@exercise_check
def check_elbo_loss(c, fn):
    for seed, batch, beta in ((0, 5, 4.0), (1, 3, 0.5)):
        logits, x, mu, logvar = elbo_cases(seed, batch)
        out = c.finite(c.call(fn, logits.clone(), x.clone(), mu.clone(), logvar.clone(), beta))
        if c.tensor(out).ndim == 1:
            c.fail("you returned one loss per example: average over the batch (.mean()) to get a scalar.")
        c.shape(out, (), "the loss is one number (a scalar).")
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        expected = (rec + beta * kl).mean()
        mistakes = elbo_mistakes(logits, x, mu, logvar, beta)
        for hint, value in kl_mistakes(mu, logvar).items():  # a wrong KL inside the loss, named as such
            mistakes[f"the KL part is off ({hint})"] = (rec + beta * value).mean()
        c.close(out, expected, mistakes=mistakes,
                hint="loss = mean over the batch of [BCE summed over pixels + beta * KL].")
    # the default beta is 1
    logits, x, mu, logvar = elbo_cases(2, 4)
    try:
        out = fn(logits, x, mu, logvar)
    except TypeError:
        c.fail("give beta a default value of 1.0: def elbo_loss(logits, x, mu, logvar, beta=1.0).")
    except Exception as exc:
        c.fail(f"your code raised {type(exc).__name__}: {exc}")
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    c.close(out, (rec + kl).mean(), hint="with the default beta = 1 the loss is BCE + KL.")

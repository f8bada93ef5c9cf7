"""Checks for lesson 01 (discriminative vs generative): a Gaussian density, Bayes' rule, a sampler."""
from __future__ import annotations

import math

import torch

from .core import exercise_check
from .. import generative as ref

# ------------------------------------------------------------------ hints, shared with the tests
DENSITY_PER_DIMENSION = "the result has one value per dimension: sum over the last axis (dim=-1), one log-density per row."
DENSITY_SCALAR = "the result is a single number: keep one log-density per row of x (sum over dim=-1 only)."
DENSITY_KEEPDIM = "the result has shape (N, 1): sum over dim=-1 without keepdim, one log-density per row."
DENSITY_SIGN = "the sign is flipped: a log-density is -0.5 * (...), so it is usually negative here."
DENSITY_HALF = "the factor 0.5 is missing in front of the sum."
DENSITY_VAR_AS_STD = "var is the variance, not the standard deviation: do not square it again."
DENSITY_DIVIDED_BY_STD = "you divided by the standard deviation: the squared distance is divided by the variance var."
DENSITY_NO_NORMALISER = "the normalising term is missing: each dimension contributes log(2*pi*var) too."
DENSITY_NO_2PI = "the 2*pi is missing from the normalising term log(2*pi*var)."
DENSITY_MEAN_OVER_DIMS = "you averaged over the dimensions: a product of densities is a SUM of log-densities (dim=-1)."
DENSITY_NOT_LOG = "that looks like the density itself (exp of the answer): return the log-density."
DENSITY_LOG_STD = "the normalising term uses log(std): it is log(2*pi*var) with the variance."
DENSITY_HINT = "log N(x; m, v) sums one term per dimension: -0.5 * (log(2 pi v_d) + (x_d - m_d)^2 / v_d)."
DENSITY_OTHER_SIZES = "it should work for any number of rows and dimensions."

POSTERIOR_UNDERFLOW = ("the result has NaN or -inf: exp() of log-likelihoods near -800 underflows to 0. "
                       "Stay in log space and normalise with torch.logsumexp.")
POSTERIOR_UNNORMALISED = "the result is not normalised: subtract logsumexp over the classes so each row's probabilities sum to 1."
POSTERIOR_NO_PRIOR = "the prior is missing: add log_prior to the log-likelihoods before normalising."
POSTERIOR_DIM0 = "you normalised over the examples (dim=0); normalise over the classes (dim=1)."
POSTERIOR_PROBS = "return log-probabilities, not probabilities (no exp at the end)."
POSTERIOR_PRIOR_SUBTRACTED = "the prior was subtracted: Bayes' rule multiplies by p(y), so add log_prior."
POSTERIOR_MAX = ("you subtracted the largest joint log-probability, not the log of the sum: "
                 "use torch.logsumexp over the classes.")
POSTERIOR_PRIOR_AS_PROB = "log_prior is already a logarithm: add it as it is (do not exp() it)."
POSTERIOR_NORMALISED_BEFORE_PRIOR = "normalise after adding the prior: the prior changes each row's total."
POSTERIOR_TRANSPOSED = "the result is transposed: keep one row per example and one column per class, (N, K)."
POSTERIOR_HINT = "log p(y|x) = log p(x|y) + log p(y), minus the logsumexp of that over the classes."
POSTERIOR_ROWS = "each row's probabilities should sum to 1."

SAMPLES_TRANSPOSED = "put one sample per row: the result should have shape (n, D)."
SAMPLES_IDENTICAL = "every sample is the same: draw fresh z ~ N(0, I) and noise for each sample (torch.randn(n, ...))."
SAMPLES_GENERATOR = ("two calls with the same seeded `generator` gave different samples: pass generator=generator "
                     "to every torch.randn, so the figures are reproducible.")
SAMPLES_NO_MEAN = "the mean is missing: add `mean` to every sample."
SAMPLES_UNIFORM = "the samples' average is shifted: draw z and eps from N(0, I) with torch.randn, not torch.rand."
SAMPLES_MEAN_HINT = "the samples should average to `mean`."
SAMPLES_NO_NOISE = "the isotropic noise is missing: every sample also gets noise_std * eps with eps ~ N(0, I_D)."
SAMPLES_NOISE_VARIANCE = "noise_std is a standard deviation: multiply eps by noise_std, not noise_std**2."
SAMPLES_NOISE_SQRT = "noise_std is a standard deviation: multiply eps by noise_std itself, not its square root."
SAMPLES_NO_LOW_RANK = "the low-rank part is missing: add W z with z ~ N(0, I_q), i.e. z @ components.T."
SAMPLES_SHARED_Z = "the low-rank directions look independent of each other: use one z ~ N(0, I_q) per sample, W z = z @ components.T."
SAMPLES_MATMUL = "components has shape (D, q): with z of shape (n, q), the low-rank part is z @ components.T, shape (n, D)."
SAMPLES_COV_HINT = "the covariance should be W W^T + noise_std^2 I."


@exercise_check
def check_gaussian_log_density(c, fn):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, generator=g)
    mean = torch.rand(3, generator=g)
    var = 0.05 + torch.rand(3, generator=g)  # some variances below 1, some above, so std != var matters
    expected = ref.gaussian_log_density(x, mean, var)
    out = c.shape(c.call(fn, x, mean, var), (5,), "one log-density per row of x",
                  mistakes={(3,): DENSITY_PER_DIMENSION, (): DENSITY_SCALAR, (5, 1): DENSITY_KEEPDIM})
    std = var.sqrt()
    quad = (x - mean) ** 2 / var
    log_norm = torch.log(2 * math.pi * var)
    c.close(out, expected, mistakes={
        DENSITY_SIGN: -expected,
        DENSITY_HALF: 2 * expected,
        DENSITY_VAR_AS_STD: ref.gaussian_log_density(x, mean, var ** 2),
        DENSITY_DIVIDED_BY_STD: -0.5 * (log_norm + (x - mean) ** 2 / std).sum(-1),
        DENSITY_NO_NORMALISER: -0.5 * quad.sum(-1),
        DENSITY_NO_2PI: -0.5 * (torch.log(var) + quad).sum(-1),
        DENSITY_MEAN_OVER_DIMS: expected / x.shape[1],
        DENSITY_NOT_LOG: expected.exp(),
        DENSITY_LOG_STD: -0.5 * (torch.log(2 * math.pi * std) + quad).sum(-1),
    }, hint=DENSITY_HINT)
    x2 = torch.randn(7, 4, generator=g)  # a larger batch, more dimensions, variances above 1
    mean2, var2 = torch.zeros(4), torch.full((4,), 2.0)
    c.close(c.call(fn, x2, mean2, var2), ref.gaussian_log_density(x2, mean2, var2), hint=DENSITY_OTHER_SIZES)


@exercise_check
def check_log_posterior(c, fn):
    g = torch.Generator().manual_seed(2)
    log_lik = -50 * torch.rand(6, 4, generator=g) - 800  # realistic magnitudes: exp() underflows to 0
    log_prior = torch.tensor([0.1, 0.2, 0.3, 0.4]).log()
    expected = ref.log_posterior(log_lik, log_prior)
    out = c.shape(c.call(fn, log_lik, log_prior), (6, 4), "one log-probability per example and class",
                  mistakes={(4, 6): POSTERIOR_TRANSPOSED})
    if not torch.isfinite(out).all():
        c.fail(POSTERIOR_UNDERFLOW)
    joint = log_lik + log_prior
    c.close(out, expected, mistakes={
        POSTERIOR_UNNORMALISED: joint,
        POSTERIOR_NO_PRIOR: ref.log_posterior(log_lik, torch.zeros_like(log_prior)),
        POSTERIOR_DIM0: joint - torch.logsumexp(joint, dim=0, keepdim=True),
        POSTERIOR_PROBS: expected.exp(),
        POSTERIOR_PRIOR_SUBTRACTED: ref.log_posterior(log_lik, -log_prior),
        POSTERIOR_MAX: joint - joint.max(dim=1, keepdim=True).values,
        POSTERIOR_PRIOR_AS_PROB: ref.log_posterior(log_lik, log_prior.exp()),
        POSTERIOR_NORMALISED_BEFORE_PRIOR: ref.log_posterior(log_lik, torch.zeros_like(log_prior)) + log_prior,
    }, hint=POSTERIOR_HINT)
    c.close(out.exp().sum(1), torch.ones(6), hint=POSTERIOR_ROWS)


@exercise_check
def check_sample_low_rank_gaussian(c, fn):
    g = torch.Generator().manual_seed(3)
    d, q, n = 6, 2, 40000
    mean = torch.linspace(-1, 1, d)
    components = 0.7 * torch.randn(d, q, generator=g)
    noise_std = 0.6  # far enough from 1 that std, variance and square root give clearly different covariances
    matmul_hints = {"cannot be multiplied": SAMPLES_MATMUL}
    samples = c.call(fn, mean, components, noise_std, n, generator=torch.Generator().manual_seed(4),
                     error_hints=matmul_hints)
    samples = c.finite(c.shape(samples, (n, d), "n samples, one per row", mistakes={(d, n): SAMPLES_TRANSPOSED}))
    if samples.std(0).max() < 1e-6:
        c.fail(SAMPLES_IDENTICAL)
    # the reproducibility the lesson's figures rely on: the same seed gives the same samples
    again = [c.tensor(c.call(fn, mean, components, noise_std, 50, generator=torch.Generator().manual_seed(5),
                             error_hints=matmul_hints)) for _ in range(2)]
    if not torch.equal(again[0], again[1]):
        c.fail(SAMPLES_GENERATOR)
    samples = samples.double()
    reference = ref.sample_low_rank_gaussian(mean, components, noise_std, n, generator=torch.Generator().manual_seed(6))
    c.close(samples.mean(0), reference.mean(0), atol=0.05, rtol=0.05, mistakes={
        SAMPLES_NO_MEAN: lambda m: m.abs().max() < 0.05,
        SAMPLES_UNIFORM: lambda m: ((m - mean) - 0.5 * (components.sum(1) + noise_std)).abs().max() < 0.05,
    }, hint=SAMPLES_MEAN_HINT)
    cov, low_rank = torch.cov(samples.T), components.double() @ components.double().T
    eye = torch.eye(d, dtype=torch.float64)

    def has_cov(target):
        return lambda _: torch.allclose(cov, target, atol=0.05, rtol=0.03)

    c.close(cov, torch.cov(reference.double().T), atol=0.05, rtol=0.03, mistakes={
        SAMPLES_NO_NOISE: has_cov(low_rank),
        SAMPLES_NOISE_VARIANCE: has_cov(low_rank + noise_std ** 4 * eye),
        SAMPLES_NOISE_SQRT: has_cov(low_rank + noise_std * eye),
        SAMPLES_NO_LOW_RANK: has_cov(noise_std ** 2 * eye),
        SAMPLES_SHARED_Z: has_cov(torch.diag(low_rank.diagonal()) + noise_std ** 2 * eye),
    }, hint=SAMPLES_COV_HINT)

"""Checks for lesson 01 (discriminative vs generative)."""
from __future__ import annotations

import math

import torch

from .core import exercise_check
from .. import generative as ref


@exercise_check
def check_gaussian_log_density(c, fn):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, generator=g)
    mean = torch.rand(3, generator=g)
    var = 0.05 + torch.rand(3, generator=g)  # some variances below 1, some above, so std != var matters
    expected = ref.gaussian_log_density(x, mean, var)
    out = c.call(fn, x.clone(), mean.clone(), var.clone())
    out = c.tensor(out)
    if out.shape == (3,):
        c.fail("the result has one value per dimension: sum over the last axis (dim=-1), one log-density per row.")
    if out.shape == ():
        c.fail("the result is a single number: keep one log-density per row of x (sum over dim=-1 only).")
    std = var.sqrt()
    quad = (x - mean) ** 2 / var
    log_norm = torch.log(2 * math.pi * var)
    c.close(out, expected, mistakes={
        "the sign is flipped: a log-density is -0.5 * (...), so it is usually negative here.": -expected,
        "the factor 0.5 is missing in front of the sum.": -(log_norm + quad).sum(-1),
        "var is the variance, not the standard deviation: divide by var (not var**2) and take log(2*pi*var).":
            -0.5 * (torch.log(2 * math.pi * var ** 2) + (x - mean) ** 2 / var ** 2).sum(-1),
        "you divided by the standard deviation: the squared distance is divided by the variance var.":
            -0.5 * (log_norm + (x - mean) ** 2 / std).sum(-1),
        "the normalising term is missing: add log(2*pi*var) for each dimension.": -0.5 * quad.sum(-1),
        "the 2*pi is missing from the normalising term log(2*pi*var).": -0.5 * (torch.log(var) + quad).sum(-1),
    }, hint="log N(x; m, v) = -0.5 * sum_d [log(2 pi v_d) + (x_d - m_d)^2 / v_d].")
    # a second case with broadcasting over a larger batch
    x2 = torch.randn(7, 4, generator=g)
    mean2, var2 = torch.zeros(4), torch.full((4,), 2.0)
    c.close(c.call(fn, x2, mean2, var2), ref.gaussian_log_density(x2, mean2, var2),
            hint="it should work for any number of rows and dimensions.")


@exercise_check
def check_log_posterior(c, fn):
    g = torch.Generator().manual_seed(2)
    log_lik = -50 * torch.rand(6, 4, generator=g) - 800  # realistic magnitudes: exp() underflows to 0
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4])
    log_prior = prior.log()
    expected = ref.log_posterior(log_lik, log_prior)
    out = c.call(fn, log_lik.clone(), log_prior.clone())
    out = c.shape(out, (6, 4), "one log-probability per example and class")
    if not torch.isfinite(out).all():
        c.fail("the result has NaN or -inf: exp() of log-likelihoods near -800 underflows to 0. "
               "Stay in log space and normalise with torch.logsumexp.")
    joint = log_lik + log_prior
    c.close(out, expected, mistakes={
        "the result is not normalised: subtract logsumexp over the classes so each row's probabilities sum to 1.":
            joint,
        "the prior is missing: add log_prior to the log-likelihoods before normalising.":
            log_lik - torch.logsumexp(log_lik, dim=1, keepdim=True),
        "you normalised over the examples (dim=0); normalise over the classes (dim=1).":
            joint - torch.logsumexp(joint, dim=0, keepdim=True),
        "return log-probabilities, not probabilities (no exp at the end).": expected.exp(),
        "the prior was subtracted: Bayes' rule multiplies by p(y), so add log_prior.":
            (log_lik - log_prior) - torch.logsumexp(log_lik - log_prior, dim=1, keepdim=True),
    }, hint="log p(y|x) = log p(x|y) + log p(y) - logsumexp_y'[log p(x|y') + log p(y')].")
    c.true(torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-4),
           "each row's probabilities should sum to 1.")


@exercise_check
def check_sample_low_rank_gaussian(c, fn):
    g = torch.Generator().manual_seed(3)
    d, q, n = 6, 2, 40000
    mean = torch.linspace(-1, 1, d)
    components = 0.7 * torch.randn(d, q, generator=g)
    noise_std = 0.8  # far enough from 1 that std and variance give clearly different covariances
    samples = c.call(fn, mean, components, noise_std, n, generator=torch.Generator().manual_seed(4))
    samples = c.tensor(samples)
    if samples.shape == (d, n):
        c.fail(f"the result has shape {tuple(samples.shape)}: put one sample per row, shape (n, D) = ({n}, {d}).")
    c.shape(samples, (n, d), "n samples, one per row")
    c.finite(samples)
    emp_mean = samples.mean(0)
    if samples.std(0).max() < 1e-6:
        c.fail("every sample is the same: draw fresh z ~ N(0, I) and noise for each sample (torch.randn).")
    c.close(emp_mean, mean, atol=0.05, rtol=0.05,
            mistakes={"the mean is missing: add `mean` to every sample.": lambda m: m.abs().max() < 0.05},
            hint="the samples should average to `mean`.")
    emp_cov = torch.cov(samples.T.double()).float()
    true_cov = components @ components.T + noise_std ** 2 * torch.eye(d)
    c.close(emp_cov, true_cov, atol=0.05, rtol=0.03, mistakes={
        "the isotropic noise is missing: add noise_std * eps with eps ~ N(0, I_D) to every sample.":
            lambda cov: torch.allclose(cov, components @ components.T, atol=0.05, rtol=0.03),
        "noise_std is a standard deviation: multiply eps by noise_std, not noise_std**2.":
            lambda cov: torch.allclose(cov, components @ components.T + noise_std ** 4 * torch.eye(d), atol=0.05, rtol=0.03),
        "the low-rank part is missing: add W z with z ~ N(0, I_q), i.e. z @ components.T.":
            lambda cov: torch.allclose(cov, noise_std ** 2 * torch.eye(d), atol=0.05, rtol=0.03),
    }, hint="x = mean + z @ components.T + noise_std * eps has covariance W W^T + noise_std^2 I.")

"""Checks for lesson 01 (discriminative vs generative): fitting the class Gaussians, a Gaussian density,
Bayes' rule, a sampler."""
from __future__ import annotations

import math
import warnings

import torch

from .core import NO_RETURN as _NO_RETURN, Hint, exercise_check
from .. import generative as ref

# ------------------------------------------------------------------ hints, shared with the tests
# Each Hint prints its symptom; utils.checks.hint("<exercise>") prints its `more`, the stronger hint.
FIT_NOT_MODEL = Hint("the result is not a DiagonalGaussians, and the rest of the lesson needs one.",
                     more="end with return generative.DiagonalGaussians(means, variances, log_prior): means and "
                          "variances of shape (K, D), log_prior of shape (K,).")
FIT_N_CLASSES = Hint("asked for 3 classes, your model has 10.",
                     more="loop over range(n_classes) and count with torch.bincount(y, minlength=n_classes), "
                          "rather than a fixed 10.")
FIT_NOT_FLAT = Hint("given images of shape (N, 1, H, W), your means are images too, not rows of D pixels.",
                    more="start with x = x.flatten(1), so that each image is one row of D pixels.")
FIT_RAGGED = Hint("the classes' results have different lengths, one per image of the class instead of one per pixel.",
                  more="average over the images, dim=0 of x[y == k], so every class gets one value per pixel (D,).")
FIT_EMPTY_CLASS = Hint("some means are NaN: the mean of a class that has no images.",
                       more="the labels run from 0 to n_classes - 1: loop with range(n_classes) and select with y == k.")
FIT_ZERO_VARIANCE = Hint("some variances are 0 (a pixel that never changes within a class), so its log-density is "
                         "infinite for any other value.",
                         more="add var_floor to every variance: variances = per-class variance + var_floor.")
FIT_FLOOR_AS_MIN = Hint("the smallest variances all equal var_floor exactly, and the larger ones got nothing added.",
                        more="add var_floor to every variance, rather than clamping the variances at var_floor.")
FIT_FLOOR_FIXED = Hint("changing var_floor does not change your variances.",
                       more="add the var_floor argument, not a fixed number.")
FIT_UNBIASED = Hint("the variances are a little too large: by N_k / (N_k - 1) for a class of N_k images.",
                    more="maximum likelihood divides by N_k, not N_k - 1: x_k.var(dim=0, unbiased=False), "
                         "or the mean of (x_k - mean_k) ** 2 over the images.")
FIT_STD = Hint("the variances look like standard deviations: far too large for pixels that barely vary.",
               more="the variance is the mean squared deviation, var(dim=0, unbiased=False), not std.")
FIT_POOLED_MEAN = Hint("every class has the same mean image: it was averaged over all the images.",
                       more="select class k's images first, x_k = x[y == k], and average those.")
FIT_POOLED_VAR = Hint("every class has the same variances: they were computed over all the images.",
                      more="compute the variance from class k's images only, x_k = x[y == k].")
FIT_MEAN_HINT = Hint("the class means are not the average image of each class.",
                     more="select class k's rows with the mask y == k and average them over dim=0, pixel by pixel; "
                          "stack the K means to (K, D).")
FIT_VAR_HINT = Hint("the variances are not each class's per-pixel variances plus the floor.",
                    more="for class k's rows, the mean of the squared deviations from the class mean over dim=0 "
                         "(divide by N_k), plus var_floor; stack the K results to (K, D).")
FIT_PRIOR_UNIFORM = Hint("every class gets the same prior, but the classes are not equally common here.",
                         more="the prior is each class's share of the examples: torch.bincount(y, minlength=n_classes) "
                              "divided by the total, then the log.")
FIT_PRIOR_NOT_LOG = Hint("log_prior holds probabilities (positive, summing to 1), not their logarithms.",
                         more="take torch.log of the shares: log_prior = torch.log(counts / counts.sum()).")
FIT_PRIOR_UNNORMALISED = Hint("the prior's probabilities sum to the number of examples, not to 1.",
                              more="divide the counts by their total before the log.")
FIT_PRIOR_HINT = Hint("log_prior is not the log of each class's share of the examples.",
                      more="count the images of each class (torch.bincount with minlength=n_classes), divide by "
                           "the total number of images, and take the log.")
FIT_OTHER_CASE = Hint("right on the first case, wrong on images with 4 classes and the default floor.",
                      more="nothing may depend on the first case's sizes: flatten the images, use n_classes and var_floor.")

DENSITY_PER_DIMENSION = Hint("the result has one value per dimension (D,), not one per row of x (N,).",
                             more="sum the per-dimension terms over the last axis, dim=-1.")
DENSITY_SCALAR = Hint("the result is a single number, not one log-density per row of x.",
                      more="sum over dim=-1 only, not over everything.")
DENSITY_KEEPDIM = Hint("the result has shape (N, 1), not (N,).", more="sum over dim=-1 without keepdim=True.")
DENSITY_SIGN = Hint("your answer is exactly minus the right log-density: the sign is flipped.",
                    more="a log-density is -0.5 * (log(2 pi var) + (x - mean)^2 / var), summed over the dimensions.")
DENSITY_HALF = Hint("your answer is exactly twice the right log-density.",
                    more="the factor 0.5 is missing: -0.5 * (...), summed over the dimensions.")
DENSITY_VAR_AS_STD = Hint("your answer treats var as a standard deviation, as if the variance were var squared.",
                          more="var is already the variance: use log(2 pi var) and (x - mean)^2 / var, no squaring.")
DENSITY_DIVIDED_BY_STD = Hint("the squared distance is scaled by the standard deviation, not by the variance.",
                              more="divide (x - mean)^2 by var itself, not by its square root.")
DENSITY_NO_NORMALISER = Hint("the normalising term is missing: at x = mean your log-density is 0, whatever the variance.",
                             more="each dimension also contributes log(2 pi var_d) inside the -0.5 * (...).")
DENSITY_NO_2PI = Hint("every row is off by the same amount, about 0.92 nats per dimension.",
                      more="the normalising term is log(2 pi var), not log(var): the 2 pi is missing.")
DENSITY_MEAN_OVER_DIMS = Hint("your answer is the right one divided by the number of dimensions.",
                              more="a product of independent densities is a SUM of log-densities: sum over dim=-1, "
                                   "do not average.")
DENSITY_NOT_LOG = Hint("your answer is the density itself (positive, tiny), not its logarithm.",
                       more="return the log-density: no exp() at the end.")
DENSITY_LOG_STD = Hint("the normalising term is computed with the standard deviation, not the variance.",
                       more="the term is log(2 pi var) with the variance var, not log(2 pi std).")
DENSITY_HINT = Hint("the log-densities are not those of a diagonal Gaussian.",
                    more="log N(x; m, v) = sum over d of -0.5 * (log(2 pi v_d) + (x_d - m_d)^2 / v_d).")
DENSITY_OTHER_SIZES = Hint("right on the first case, wrong on a larger batch with 4 dimensions and variance 2.",
                           more="nothing may depend on the first case's sizes: no fixed shapes or constants.")

POSTERIOR_UNDERFLOW = Hint("the result has NaN or -inf: exp() of log-likelihoods near -800 underflows to 0.",
                           more="stay in log space and normalise with torch.logsumexp over the classes.")
POSTERIOR_UNNORMALISED = Hint("each row's probabilities do not sum to 1.",
                              more="subtract the logsumexp over the classes, torch.logsumexp(joint, dim=1, keepdim=True).")
POSTERIOR_NO_PRIOR = Hint("the prior changes nothing: your posterior is the one for equal priors.",
                          more="add log_prior to the log-likelihoods before normalising.")
POSTERIOR_DIM0 = Hint("each column sums to 1, instead of each row.",
                      more="normalise over the classes, dim=1, not over the examples.")
POSTERIOR_PROBS = Hint("the result holds probabilities between 0 and 1, not log-probabilities.",
                       more="no exp() at the end: return the joint minus its logsumexp.")
POSTERIOR_PRIOR_SUBTRACTED = Hint("the prior pushes the wrong way: a common class becomes less likely.",
                                  more="Bayes' rule multiplies by p(y): add log_prior, do not subtract it.")
POSTERIOR_MAX = Hint("the rows do not sum to 1: the most likely class gets log-probability exactly 0.",
                     more="subtract the log of the sum, torch.logsumexp over dim=1, not the max.")
POSTERIOR_PRIOR_AS_PROB = Hint("the prior has almost no effect, as if it were used as a probability.",
                               more="log_prior is already a logarithm: add it as it is, no exp().")
POSTERIOR_NORMALISED_BEFORE_PRIOR = Hint("the rows do not sum to 1: the prior came in after normalising.",
                                         more="add log_prior first, then subtract the logsumexp of the joint.")
POSTERIOR_TRANSPOSED = Hint("the result is (K, N), one row per class; expected (N, K), one row per example.",
                            more="keep the examples on dim 0 and the classes on dim 1: no transpose.")
POSTERIOR_HINT = Hint("the log-posteriors are not what Bayes' rule gives.",
                      more="log p(y|x) = log p(x|y) + log p(y), minus the logsumexp of that sum over the classes.")
POSTERIOR_ROWS = Hint("each row's probabilities should sum to 1, and they do not.",
                      more="subtract torch.logsumexp(joint, dim=1, keepdim=True) from the joint.")

CLASSIFY_SCORES = Hint("the result has one score per class for every image (N, K), not one label per image (N,).",
                       more="return the index of the largest log p(x | y) + log p(y) in each row: argmax over dim=1.")
CLASSIFY_DIM0 = Hint("the result has one value per class (K,), not one label per image (N,).",
                     more="take the argmax over the classes, dim=1, not over the images, dim=0.")
CLASSIFY_NO_PRIOR = Hint("the prior changes nothing: your decisions are those of a model with equal priors.",
                         more="add model.log_prior to the log-likelihoods before the argmax.")
CLASSIFY_PRIOR_AS_PROB = Hint("the prior barely changes your decisions, as if it were added as a probability.",
                              more="model.log_prior is already a logarithm: add it as it is, no exp().")
CLASSIFY_PRIOR_SUBTRACTED = Hint("the prior pushes the wrong way: a rare class wins where the common one should.",
                                 more="Bayes' rule multiplies by p(y): add model.log_prior, do not subtract it.")
CLASSIFY_ARGMIN = Hint("your labels are the least probable classes, not the most probable.",
                       more="take the argmax of log p(x | y) + log p(y), not the argmin.")
CLASSIFY_NEAREST_MEAN = Hint("your decisions ignore the variances: they pick the nearest class mean.",
                             more="use the model's own log-likelihood, which weighs each pixel by its variance, "
                                  "plus its log prior.")
CLASSIFY_DIAGONAL_ONLY = Hint("it works for the diagonal model, not for the low-rank one that the lesson also classifies.",
                              more="use model.log_likelihood(x) and model.log_prior: every model in the lesson has both.")
CLASSIFY_HINT = Hint("some labels differ from Bayes' rule's decisions.",
                     more="add the model's log prior (K,) to its log-likelihoods (N, K), and take the index of the "
                          "largest value in each row.")

SAMPLES_TRANSPOSED = Hint("the result is (D, n), one sample per column; expected (n, D).",
                          more="draw z as (n, q) and eps as (n, D), so that every row is a sample.")
SAMPLES_IDENTICAL = Hint("every sample is the same.",
                         more="draw fresh z and eps for each sample: torch.randn(n, ...).")
SAMPLES_GENERATOR = Hint("two calls with the same seeded generator gave different samples, so the figures "
                         "are not reproducible.", more="pass generator=generator to every torch.randn.")
SAMPLES_NO_MEAN = Hint("the samples average to 0, not to the mean.", more="add mean to every sample.")
SAMPLES_UNIFORM = Hint("the samples' average is shifted away from the mean.",
                       more="draw z and eps from N(0, I) with torch.randn, not torch.rand (uniform, with mean 0.5).")
SAMPLES_MEAN_HINT = Hint("the samples do not average to the mean.",
                         more="x = mean + z @ components.T + noise_std * eps averages to mean, since z and eps average 0.")
SAMPLES_NO_NOISE = Hint("the samples vary only along the q directions: the isotropic part of the covariance is missing.",
                        more="add noise_std * eps with eps ~ N(0, I_D) to every sample.")
SAMPLES_NOISE_VARIANCE = Hint("the isotropic noise is too weak: its variance is noise_std to the fourth power.",
                              more="multiply eps by noise_std, not noise_std**2.")
SAMPLES_NOISE_SQRT = Hint("the isotropic noise is too strong: its variance is noise_std, not noise_std squared.",
                          more="multiply eps by noise_std itself, not its square root.")
SAMPLES_NO_LOW_RANK = Hint("the pixels of a sample are uncorrelated: only the isotropic noise is there.",
                           more="add W z with z ~ N(0, I_q): z @ components.T.")
SAMPLES_SHARED_Z = Hint("each pixel has the right variance, but the pixels do not vary together.",
                        more="use one z ~ N(0, I_q) per sample, shared by all its pixels: z @ components.T.")
SAMPLES_MATMUL = Hint("the shapes in the product of z and components do not fit.",
                      more="components has shape (D, q): with z of shape (n, q), the low-rank part is "
                           "z @ components.T, shape (n, D).")
SAMPLES_COV_HINT = Hint("the samples' covariance is not the model's.",
                        more="the covariance should be W W^T + noise_std^2 I: x = mean + z @ components.T + noise_std * eps.")

SECOND_HINTS = {
    "fit_diagonal_gaussians": "flatten x to rows (N, D). For each class k, select its rows with the mask y == k; "
                              "average them over dim=0 for the mean, and take their variance over dim=0 dividing by "
                              "N_k (unbiased=False), plus var_floor. Stack the K results to (K, D). For the prior, count "
                              "each label (torch.bincount with minlength), divide by the total, take the log. Wrap the "
                              "three in generative.DiagonalGaussians.",
    "gaussian_log_density": "sum over the dimensions (dim=-1) of -0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var).",
    "log_posterior": "joint = log_likelihood + log_prior, then joint - torch.logsumexp(joint, dim=1, keepdim=True).",
    "classify": "the joint log p(x, y) is the model's log-likelihood (N, K) plus its log prior (K,); the label is "
                "the class where it is largest, over dim=1. Bayes' denominator is the same for every class, so no "
                "normalising is needed.",
    "sample_low_rank_gaussian": "z = torch.randn(n, q, generator=generator), eps = torch.randn(n, D, generator=generator), "
                                "then mean + z @ components.T + noise_std * eps.",
}


@exercise_check
def check_fit_diagonal_gaussians(c, fn):
    g = torch.Generator().manual_seed(0)
    # 3 classes of 7 pixels, shuffled and skewed 9 : 5 : 2, so that uniform priors and N_k - 1 both show
    y = torch.tensor([0] * 9 + [1] * 5 + [2] * 2)[torch.randperm(16, generator=g)]
    x = torch.rand(16, 7, generator=g)
    x[:, 0] = 0.0                         # a pixel that is black in every image: its variance is 0
    x[y == 2, 3] = 0.5                    # a pixel that never changes within class 2 but does elsewhere
    floor = 0.02
    expected = ref.fit_diagonal_gaussians(x, y, 3, floor)
    model = _fitted(c, fn, x, y, 3, floor, 7)
    c.close(model.means, expected.means, mistakes={
        FIT_POOLED_MEAN: x.mean(0).expand(3, -1),
    }, hint=FIT_MEAN_HINT)
    per_class = [x[y == k] for k in range(3)]
    c.close(model.variances, expected.variances, mistakes={
        FIT_FLOOR_AS_MIN: (expected.variances - floor).clamp_min(floor),
        FIT_FLOOR_FIXED: ref.fit_diagonal_gaussians(x, y, 3, 0.01).variances,
        FIT_UNBIASED: torch.stack([x_k.var(0) for x_k in per_class]) + floor,
        FIT_STD: lambda out: any(torch.allclose(out, torch.stack([x_k.std(0, unbiased=u) for x_k in per_class]) + floor)
                                 for u in (False, True)),
        FIT_POOLED_VAR: (x.var(0, unbiased=False) + floor).expand(3, -1),
    }, hint=FIT_VAR_HINT)
    c.close(model.log_prior, expected.log_prior, mistakes={
        FIT_PRIOR_UNIFORM: torch.full((3,), -math.log(3)),
        FIT_PRIOR_NOT_LOG: expected.log_prior.exp(),
        FIT_PRIOR_UNNORMALISED: expected.log_prior + math.log(16),
    }, hint=FIT_PRIOR_HINT)
    # another case: images (N, 1, H, W), 4 classes, the default floor
    y2 = torch.arange(20) % 4
    x2 = torch.rand(20, 1, 2, 3, generator=g)
    expected = ref.fit_diagonal_gaussians(x2, y2, 4)
    model = _fitted(c, fn, x2, y2, 4, None, 6)
    for mine, theirs in ((model.means, expected.means), (model.variances, expected.variances),
                         (model.log_prior, expected.log_prior)):
        c.close(mine, theirs, hint=FIT_OTHER_CASE)


def _fitted(c, fn, x, y, n_classes, floor, d):
    """The learner's model for one case, its shapes and finiteness checked; ``floor=None`` uses the default."""
    args = (x, y, n_classes) if floor is None else (x, y, n_classes, floor)
    with warnings.catch_warnings():  # an empty class makes torch warn; the check says what is wrong instead
        warnings.simplefilter("ignore")
        model = c.call(fn, *args, error_hints={"stack expects each tensor to be equal size": FIT_RAGGED})
    if model is None:
        c.fail(f"the result {_NO_RETURN}")
    if not isinstance(model, ref.DiagonalGaussians):
        c.fail(FIT_NOT_MODEL)
    image = tuple(x.shape[1:])
    means = c.shape(model.means, (n_classes, d), "one mean per class and pixel, (K, D)",
                    mistakes={(10, d): FIT_N_CLASSES, (n_classes, *image): FIT_NOT_FLAT})
    variances = c.shape(model.variances, (n_classes, d), "one variance per class and pixel, (K, D)",
                        mistakes={(10, d): FIT_N_CLASSES, (n_classes, *image): FIT_NOT_FLAT})
    c.shape(model.log_prior, (n_classes,), "one log-probability per class, (K,)", mistakes={(10,): FIT_N_CLASSES})
    if torch.isnan(means).any() or torch.isnan(variances).any():
        c.fail(FIT_EMPTY_CLASS)
    if not (variances > 0).all():
        c.fail(FIT_ZERO_VARIANCE)
    return model


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


def classify_cases():
    """Two small models to classify with, diagonal and low-rank, and points where the prior and the variances matter."""
    g = torch.Generator().manual_seed(8)
    diagonal = ref.DiagonalGaussians(means=torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                                     variances=torch.tensor([[1.0, 1.0], [0.05, 0.05], [2.0, 0.5]]),
                                     log_prior=torch.tensor([0.6, 0.3, 0.1]).log())
    x = 3 * torch.rand(40, 2, generator=g) - 1                        # (40, 2) around all three means
    y = torch.arange(60) % 2
    low_rank = ref.fit_low_rank_gaussians(torch.rand(60, 5, generator=g) + y[:, None] * 0.3, y, rank=2, n_classes=2)
    return diagonal, x, low_rank, torch.rand(9, 5, generator=g) + 0.15


@exercise_check
def check_classify(c, fn):
    diagonal, x, low_rank, x_low = classify_cases()
    expected = ref.classify(diagonal, x)
    out = c.shape(c.call(fn, diagonal, x), (40,), "one label per image",
                  mistakes={(40, 3): CLASSIFY_SCORES, (3,): CLASSIFY_DIM0})
    log_lik = diagonal.log_likelihood(x)
    nearest = torch.cdist(x, diagonal.means).argmin(dim=1)
    c.close(out, expected, mistakes={
        CLASSIFY_NO_PRIOR: log_lik.argmax(1),
        CLASSIFY_PRIOR_AS_PROB: (log_lik + diagonal.log_prior.exp()).argmax(1),
        CLASSIFY_PRIOR_SUBTRACTED: (log_lik - diagonal.log_prior).argmax(1),
        CLASSIFY_ARGMIN: (log_lik + diagonal.log_prior).argmin(1),
        CLASSIFY_NEAREST_MEAN: nearest,
    }, hint=CLASSIFY_HINT)
    out = c.call(fn, low_rank, x_low, error_hints={"has no attribute": CLASSIFY_DIAGONAL_ONLY})
    c.close(c.shape(out, (9,), "one label per image"), ref.classify(low_rank, x_low), hint=CLASSIFY_DIAGONAL_ONLY)


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

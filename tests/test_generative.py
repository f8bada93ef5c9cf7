"""Lesson 01: references, the generative classifier, explorers and the exercise checks (both ways)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils import generative as g
from checking import fails_with, in_float64, passes
from utils.checks import (check_classify, check_fit_diagonal_gaussians, check_gaussian_log_density, check_log_posterior,
                          check_sample_low_rank_gaussian)
from utils.checks import generative as H
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED, NO_RETURN, RAISED, Hint


# --------------------------------------------------------------------------- references

def test_gaussian_log_density_matches_torch_distributions():
    x, mean, var = torch.randn(8, 5), torch.randn(5), torch.rand(5) + 0.1
    expected = torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(-1)
    assert torch.allclose(g.gaussian_log_density(x, mean, var), expected, atol=1e-5)


def test_log_posterior_is_normalised_and_stable():
    log_lik = torch.tensor([[-1000.0, -1001.0], [-5.0, -5.0]])
    post = g.log_posterior(log_lik, torch.log(torch.tensor([0.5, 0.5])))
    assert torch.isfinite(post).all()
    assert torch.allclose(post.exp().sum(1), torch.ones(2), atol=1e-4)
    assert torch.allclose(post[1].exp(), torch.tensor([0.5, 0.5]))
    assert post[0, 0] > post[0, 1]


def test_low_rank_log_likelihood_matches_full_covariance():
    torch.manual_seed(0)
    x = torch.rand(300, 6)
    y = torch.arange(300) % 2
    model = g.fit_low_rank_gaussians(x, y, rank=2, n_classes=2)
    w, s2 = model.components[0], model.noise_var[0]
    cov = w @ w.T + s2 * torch.eye(6)
    full = torch.distributions.MultivariateNormal(model.means[0], covariance_matrix=cov).log_prob(x[:5])
    assert torch.allclose(model.log_likelihood(x[:5])[:, 0], full, atol=1e-3)


@pytest.mark.filterwarnings("ignore:var\\(\\)")  # the empty class
def test_fit_diagonal_gaussians_counts_means_variances_and_shares():
    x = torch.tensor([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0], [4.0, 0.0]])
    y = torch.tensor([0, 0, 0, 2])
    model = g.fit_diagonal_gaussians(x.view(4, 1, 1, 2), y, n_classes=3, var_floor=0.5)  # images are flattened
    assert torch.allclose(model.means[0], torch.tensor([0.0, 2.0]))
    assert torch.allclose(model.variances[0], torch.tensor([0.5, 2 / 3 + 0.5]))   # divides by N_k, then the floor
    assert torch.allclose(model.variances[2], torch.tensor([0.5, 0.5]))           # one image: only the floor
    assert torch.isnan(model.means[1]).all()                                       # an empty class has no mean
    assert torch.allclose(model.log_prior.exp(), torch.tensor([0.75, 0.0, 0.25]))
    assert model.log_prior.dtype == torch.float32
    assert g.fit_diagonal_gaussians(x.double(), y, 3).means.dtype == torch.float64


def test_generative_classifier_beats_chance_on_digits():
    from utils.data import load_digits8x8
    d = load_digits8x8(verbose=False)
    diag = g.fit_diagonal_gaussians(d.x_train, d.y_train)
    acc_diag = g.accuracy(g.log_posterior(diag.log_likelihood(d.x_test.flatten(1)), diag.log_prior), d.y_test)
    ppca = g.fit_low_rank_gaussians(d.x_train, d.y_train, rank=8)
    acc_ppca = g.accuracy(ppca.log_likelihood(d.x_test), d.y_test)
    assert acc_diag > 0.7 and acc_ppca > 0.85


def test_samples_have_image_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(100, 1, 4, 4)
    y = torch.arange(100) % 2
    model = g.fit_low_rank_gaussians(x, y, rank=3, n_classes=2)
    s = model.sample(1, 7, generator=torch.Generator().manual_seed(0))
    assert s.shape == (7, 1, 4, 4) and s.min() >= 0 and s.max() <= 1


def test_principal_direction_image_range_ends_and_errors():
    x = torch.rand(60, 1, 4, 4)
    y = torch.arange(60) % 3
    model = g.fit_low_rank_gaussians(x, y, rank=3, n_classes=3)
    for coeffs in ([-3, -3, -3], [3, 3, 3], [0, 0, 0]):
        img = g.principal_direction_image(model, 2, coeffs)
        assert img.shape == (4, 4) and img.min() >= 0 and img.max() <= 1
    assert np.allclose(g.principal_direction_image(model, 0, [0, 0]), model.means[0].clamp(0, 1).view(4, 4).numpy())
    with pytest.raises(ValueError, match="principal directions"):
        g.principal_direction_image(model, 0, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="does not exist"):
        g.principal_direction_image(model, 3, [0])


# --------------------------------------------------------------------------- checks accept correct answers

def _sample_via_matmul(mean, components, noise_std, n, generator=None):
    z = torch.randn(components.shape[1], n, generator=generator)
    return (mean[:, None] + components @ z).T + noise_std * torch.randn(n, len(mean), generator=generator)


def _fit_vectorised(x, y, n_classes=10, var_floor=0.01):
    x = x.reshape(len(x), -1)
    one_hot = F.one_hot(y, n_classes).to(x.dtype)                  # (N, K)
    counts = one_hot.sum(0)                                        # (K,)
    means = one_hot.T @ x / counts[:, None]                        # (K, D)
    variances = one_hot.T @ x ** 2 / counts[:, None] - means ** 2 + var_floor
    return g.DiagonalGaussians(means, variances, counts.log() - counts.sum().log())


def _fit_in_float64(x, y, n_classes=10, var_floor=0.01):
    model = g.fit_diagonal_gaussians(x.double(), y, n_classes, var_floor)
    return g.DiagonalGaussians(model.means, model.variances, model.log_prior.double())


@pytest.mark.parametrize("check, fn", [
    (check_fit_diagonal_gaussians, g.fit_diagonal_gaussians),
    (check_fit_diagonal_gaussians, _fit_vectorised),
    (check_fit_diagonal_gaussians, _fit_in_float64),
    (check_classify, g.classify),
    (check_classify, lambda model, x: g.log_posterior(model.log_likelihood(x), model.log_prior).argmax(dim=1)),
    (check_classify, lambda model, x: (model.log_prior + model.log_likelihood(x)).max(dim=-1).indices),
    (check_classify, in_float64(g.classify)),
    (check_gaussian_log_density, g.gaussian_log_density),
    (check_gaussian_log_density, lambda x, m, v: torch.distributions.Normal(m, v.sqrt()).log_prob(x).sum(-1)),
    (check_gaussian_log_density, lambda x, m, v: (-0.5 * math.log(2 * math.pi) * x.shape[1] - 0.5 * v.log().sum()
                                                  - 0.5 * ((x - m) ** 2 / v).sum(1))),
    (check_gaussian_log_density, in_float64(g.gaussian_log_density)),
    (check_gaussian_log_density, lambda x, m, v: g.gaussian_log_density(x.double(), m.double(), v.double())),
    (check_log_posterior, g.log_posterior),
    (check_log_posterior, lambda ll, lp: torch.log_softmax(ll + lp, dim=1)),
    (check_log_posterior, in_float64(g.log_posterior)),
    (check_sample_low_rank_gaussian, g.sample_low_rank_gaussian),
    (check_sample_low_rank_gaussian, _sample_via_matmul),
    (check_sample_low_rank_gaussian, in_float64(g.sample_low_rank_gaussian)),
])
def test_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


# --------------------------------------------------------------------------- checks name typical mistakes

def _fit(flatten=True, classes=None, mean=None, variance=None, floor=None, prior=None, wrap=True):
    """fit_diagonal_gaussians with one piece swapped for a learner's mistake (each a function of the pieces)."""
    def fit(x, y, n_classes=10, var_floor=0.01):
        x = x.flatten(1) if flatten else x
        ks = classes(n_classes) if classes else range(n_classes)
        per_class = [x[y == k] for k in ks]
        means = torch.stack([(mean or (lambda x_k, x: x_k.mean(0)))(x_k, x) for x_k in per_class])
        spread = torch.stack([(variance or (lambda x_k, x: x_k.var(0, unbiased=False)))(x_k, x) for x_k in per_class])
        variances = (floor or (lambda v, f: v + f))(spread, var_floor)
        counts = torch.bincount(y, minlength=len(per_class)).float()
        log_prior = (prior or (lambda n: torch.log(n / n.sum())))(counts)
        return g.DiagonalGaussians(means, variances, log_prior) if wrap else (means, variances, log_prior)
    return fit


def _fit_ragged(x, y, n_classes=10, var_floor=0.01):
    x = x.flatten(1)
    means = torch.stack([x[y == k].mean(1) for k in range(n_classes)])   # averages each image, not each pixel
    return g.DiagonalGaussians(means, means, means)


FIT_MISTAKES = {
    H.FIT_NOT_MODEL: _fit(wrap=False),
    H.FIT_N_CLASSES: _fit(classes=lambda n: range(10)),
    H.FIT_NOT_FLAT: _fit(flatten=False),
    H.FIT_RAGGED: _fit_ragged,
    H.FIT_EMPTY_CLASS: _fit(classes=lambda n: range(1, n + 1)),   # labels counted from 1
    H.FIT_ZERO_VARIANCE: _fit(floor=lambda v, f: v),
    H.FIT_FLOOR_AS_MIN: _fit(floor=lambda v, f: v.clamp_min(f)),
    H.FIT_FLOOR_FIXED: _fit(floor=lambda v, f: v + 0.01),
    H.FIT_UNBIASED: _fit(variance=lambda x_k, x: x_k.var(0)),
    H.FIT_STD: _fit(variance=lambda x_k, x: x_k.std(0)),
    H.FIT_POOLED_MEAN: _fit(mean=lambda x_k, x: x.mean(0)),
    H.FIT_POOLED_VAR: _fit(variance=lambda x_k, x: x.var(0, unbiased=False)),
    H.FIT_MEAN_HINT: _fit(mean=lambda x_k, x: x_k.median(0).values),
    H.FIT_VAR_HINT: _fit(variance=lambda x_k, x: (x_k - x_k.mean(0)).abs().mean(0)),
    H.FIT_PRIOR_UNIFORM: _fit(prior=lambda n: torch.full_like(n, -math.log(len(n)))),
    H.FIT_PRIOR_NOT_LOG: _fit(prior=lambda n: n / n.sum()),
    H.FIT_PRIOR_UNNORMALISED: _fit(prior=lambda n: torch.log(n)),
    H.FIT_PRIOR_HINT: _fit(prior=lambda n: torch.log((n + 1) / (n + 1).sum())),   # add-one smoothing
    H.FIT_OTHER_CASE: _fit(floor=lambda v, f: v + (f if f != 0.01 else 0.02)),     # ignores the default floor
    IN_PLACE.format("x"): lambda x, y, n_classes=10, var_floor=0.01: g.fit_diagonal_gaussians(x.clamp_(0, 0.9), y, n_classes, var_floor),
    NO_RETURN: lambda x, y, n_classes=10, var_floor=0.01: None,
}


@pytest.mark.parametrize("hint", FIT_MISTAKES)
def test_fit_check_names_each_mistake(hint, capsys):
    fails_with(check_fit_diagonal_gaussians, FIT_MISTAKES[hint], capsys, hint)


def test_fit_check_falls_back_to_the_reference_model(capsys):
    import utils.checks
    assert utils.checks.fit_diagonal_gaussians(FIT_MISTAKES[H.FIT_UNBIASED]) is g.fit_diagonal_gaussians
    assert "goes on with the reference" in capsys.readouterr().out


def test_every_hint_has_a_stronger_one_and_every_exercise_a_second_hint():
    hints = [v for k, v in vars(H).items() if k.isupper() and not k.startswith("_") and isinstance(v, str)]
    assert hints and all(isinstance(h, Hint) and h.more for h in hints)
    assert set(H.SECOND_HINTS) == {"fit_diagonal_gaussians", "gaussian_log_density", "log_posterior", "classify",
                                   "sample_low_rank_gaussian"}


def test_classify_follows_the_prior_when_the_likelihoods_tie():
    model = g.DiagonalGaussians(torch.zeros(3, 2), torch.ones(3, 2), torch.tensor([0.2, 0.5, 0.3]).log())
    assert g.classify(model, torch.randn(5, 2)).tolist() == [1] * 5


def _classify_diagonal_only(model, x):
    log_lik = torch.stack([g.gaussian_log_density(x, m, v) for m, v in zip(model.means, model.variances)], dim=1)
    return (log_lik + model.log_prior).argmax(dim=1)


CLASSIFY_MISTAKES = {
    H.CLASSIFY_SCORES: lambda model, x: model.log_likelihood(x) + model.log_prior,
    H.CLASSIFY_DIM0: lambda model, x: (model.log_likelihood(x) + model.log_prior).argmax(dim=0),
    H.CLASSIFY_NO_PRIOR: lambda model, x: model.log_likelihood(x).argmax(dim=1),
    H.CLASSIFY_PRIOR_AS_PROB: lambda model, x: (model.log_likelihood(x) + model.log_prior.exp()).argmax(dim=1),
    H.CLASSIFY_PRIOR_SUBTRACTED: lambda model, x: (model.log_likelihood(x) - model.log_prior).argmax(dim=1),
    H.CLASSIFY_ARGMIN: lambda model, x: (model.log_likelihood(x) + model.log_prior).argmin(dim=1),
    H.CLASSIFY_NEAREST_MEAN: lambda model, x: torch.cdist(x, model.means).argmin(dim=1),
    H.CLASSIFY_DIAGONAL_ONLY: _classify_diagonal_only,
    H.CLASSIFY_HINT: lambda model, x: (model.log_likelihood(x) + 3 * model.log_prior).argmax(dim=1),
    NO_RETURN: lambda model, x: None,
}


@pytest.mark.parametrize("hint", CLASSIFY_MISTAKES)
def test_classify_check_names_each_mistake(hint, capsys):
    fails_with(check_classify, CLASSIFY_MISTAKES[hint], capsys, hint)


def _density_in_place(x, m, v):
    x -= m                                      # edits the caller's data: later classes see shifted pixels
    return -0.5 * (torch.log(2 * math.pi * v) + x ** 2 / v).sum(-1)


DENSITY_MISTAKES = {
    H.DENSITY_SIGN: lambda x, m, v: -g.gaussian_log_density(x, m, v),
    H.DENSITY_HALF: lambda x, m, v: -(torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(-1),
    H.DENSITY_VAR_AS_STD: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v**2) + (x - m) ** 2 / v**2).sum(-1),
    H.DENSITY_DIVIDED_BY_STD: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v.sqrt()).sum(-1),
    H.DENSITY_NO_NORMALISER: lambda x, m, v: -0.5 * ((x - m) ** 2 / v).sum(-1),
    H.DENSITY_NO_2PI: lambda x, m, v: -0.5 * (torch.log(v) + (x - m) ** 2 / v).sum(-1),
    H.DENSITY_PER_DIMENSION: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(0),
    H.DENSITY_SCALAR: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(),
    H.DENSITY_KEEPDIM: lambda x, m, v: g.gaussian_log_density(x, m, v)[:, None],
    H.DENSITY_MEAN_OVER_DIMS: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v).mean(-1),
    H.DENSITY_NOT_LOG: lambda x, m, v: g.gaussian_log_density(x, m, v).exp(),
    H.DENSITY_LOG_STD: lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v.sqrt()) + (x - m) ** 2 / v).sum(-1),
    IN_PLACE.format("x"): _density_in_place,
    NOT_IMPLEMENTED: lambda x, m, v: (_ for _ in ()).throw(NotImplementedError()),
    f"{RAISED} RuntimeError: boom": lambda x, m, v: (_ for _ in ()).throw(RuntimeError("boom")),
    NO_RETURN: lambda x, m, v: None,
}


@pytest.mark.parametrize("hint", DENSITY_MISTAKES)
def test_density_check_names_each_mistake(hint, capsys):
    fails_with(check_gaussian_log_density, DENSITY_MISTAKES[hint], capsys, hint)


def _log_normalised_by_exp(ll, lp):
    joint = ll + lp
    return torch.log(joint.exp() / joint.exp().sum(1, keepdim=True))


POSTERIOR_MISTAKES = {
    H.POSTERIOR_UNNORMALISED: lambda ll, lp: ll + lp,
    H.POSTERIOR_NO_PRIOR: lambda ll, lp: torch.log_softmax(ll, dim=1),
    H.POSTERIOR_DIM0: lambda ll, lp: torch.log_softmax(ll + lp, dim=0),
    H.POSTERIOR_PROBS: lambda ll, lp: torch.softmax(ll + lp, dim=1),
    H.POSTERIOR_PRIOR_SUBTRACTED: lambda ll, lp: torch.log_softmax(ll - lp, dim=1),
    H.POSTERIOR_UNDERFLOW: _log_normalised_by_exp,
    H.POSTERIOR_TRANSPOSED: lambda ll, lp: torch.log_softmax(ll + lp, dim=1).T,
    H.POSTERIOR_MAX: lambda ll, lp: (ll + lp) - (ll + lp).max(dim=1, keepdim=True).values,
    H.POSTERIOR_PRIOR_AS_PROB: lambda ll, lp: torch.log_softmax(ll + lp.exp(), dim=1),
    H.POSTERIOR_NORMALISED_BEFORE_PRIOR: lambda ll, lp: torch.log_softmax(ll, dim=1) + lp,
    IN_PLACE.format("log_likelihood"): lambda log_likelihood, log_prior: torch.log_softmax(log_likelihood.add_(log_prior), 1),
}


@pytest.mark.parametrize("hint", POSTERIOR_MISTAKES)
def test_posterior_check_names_each_mistake(hint, capsys):
    fails_with(check_log_posterior, POSTERIOR_MISTAKES[hint], capsys, hint)


def _sampler(noise_power=1, with_mean=True, with_low_rank=True, transpose=False, same=False, draw=torch.randn,
             use_generator=True, matmul_untransposed=False):
    def sample(mean, components, noise_std, n, generator=None):
        gen = generator if use_generator else None
        z = draw(1 if same else n, components.shape[1], generator=gen).expand(n, -1)
        eps = draw(1 if same else n, len(mean), generator=gen).expand(n, -1)
        x = noise_std ** noise_power * eps
        if with_low_rank:
            x = x + (z @ components if matmul_untransposed else z @ components.T)
        if with_mean:
            x = x + mean
        return x.T if transpose else x
    return sample


SAMPLING_MISTAKES = {
    H.SAMPLES_NO_NOISE: _sampler(noise_power=float("inf")),  # 0.6**inf == 0: no noise
    H.SAMPLES_NOISE_VARIANCE: _sampler(noise_power=2),
    H.SAMPLES_NOISE_SQRT: _sampler(noise_power=0.5),
    H.SAMPLES_NO_MEAN: _sampler(with_mean=False),
    H.SAMPLES_NO_LOW_RANK: _sampler(with_low_rank=False),
    H.SAMPLES_TRANSPOSED: _sampler(transpose=True),
    H.SAMPLES_IDENTICAL: _sampler(same=True),
    H.SAMPLES_UNIFORM: _sampler(draw=torch.rand),
    H.SAMPLES_GENERATOR: _sampler(use_generator=False),
    H.SAMPLES_MATMUL: _sampler(matmul_untransposed=True),
}


@pytest.mark.parametrize("hint", SAMPLING_MISTAKES)
def test_sampling_check_names_each_mistake(hint, capsys):
    fails_with(check_sample_low_rank_gaussian, SAMPLING_MISTAKES[hint], capsys, hint)


def test_checks_raise_only_on_misuse():
    with pytest.raises(TypeError, match="expects your function"):
        check_gaussian_log_density(torch.zeros(3))

"""Lesson 01: references, the generative classifier, explorers and the exercise checks (both ways)."""
import math

import numpy as np
import pytest
import torch

from utils import generative as g
from utils.checks import check_gaussian_log_density, check_log_posterior, check_sample_low_rank_gaussian


def run(check, fn, capsys):
    ok = check(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"a check prints exactly one line, got: {out!r}"
    return ok, out


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

def test_density_check_accepts_reference_and_variants(capsys):
    assert run(check_gaussian_log_density, g.gaussian_log_density, capsys)[0]
    via_torch = lambda x, m, v: torch.distributions.Normal(m, v.sqrt()).log_prob(x).sum(-1)
    assert run(check_gaussian_log_density, via_torch, capsys)[0]
    expanded = lambda x, m, v: (-0.5 * math.log(2 * math.pi) * x.shape[1] - 0.5 * v.log().sum()
                                - 0.5 * ((x - m) ** 2 / v).sum(1))
    assert run(check_gaussian_log_density, expanded, capsys)[0]


def test_posterior_check_accepts_reference_and_variants(capsys):
    assert run(check_log_posterior, g.log_posterior, capsys)[0]
    assert run(check_log_posterior, lambda ll, lp: torch.log_softmax(ll + lp, dim=1), capsys)[0]


def test_sampling_check_accepts_reference_and_variant(capsys):
    assert run(check_sample_low_rank_gaussian, g.sample_low_rank_gaussian, capsys)[0]

    def via_matmul(mean, components, noise_std, n, generator=None):
        z = torch.randn(components.shape[1], n, generator=generator)
        return (mean[:, None] + components @ z).T + noise_std * torch.randn(n, len(mean), generator=generator)
    assert run(check_sample_low_rank_gaussian, via_matmul, capsys)[0]


# --------------------------------------------------------------------------- checks reject typical mistakes

DENSITY_MISTAKES = {
    "sign is flipped": lambda x, m, v: -g.gaussian_log_density(x, m, v),
    "0.5 is missing": lambda x, m, v: -(torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(-1),
    "not the standard deviation": lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v**2) + (x - m) ** 2 / v**2).sum(-1),
    "divided by the standard deviation": lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v.sqrt()).sum(-1),
    "normalising term is missing": lambda x, m, v: -0.5 * ((x - m) ** 2 / v).sum(-1),
    "2*pi is missing": lambda x, m, v: -0.5 * (torch.log(v) + (x - m) ** 2 / v).sum(-1),
    "one value per dimension": lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(0),
    "single number": lambda x, m, v: -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v).sum(),
    "not implemented yet": lambda x, m, v: (_ for _ in ()).throw(NotImplementedError()),
    "raised RuntimeError: boom": lambda x, m, v: (_ for _ in ()).throw(RuntimeError("boom")),
    "forget a `return`": lambda x, m, v: None,
}


@pytest.mark.parametrize("hint", DENSITY_MISTAKES)
def test_density_check_rejects_mistakes_with_hint(hint, capsys):
    ok, out = run(check_gaussian_log_density, DENSITY_MISTAKES[hint], capsys)
    assert not ok and hint in out


POSTERIOR_MISTAKES = {
    "not normalised": lambda ll, lp: ll + lp,
    "prior is missing": lambda ll, lp: torch.log_softmax(ll, dim=1),
    "over the examples (dim=0)": lambda ll, lp: torch.log_softmax(ll + lp, dim=0),
    "not probabilities": lambda ll, lp: torch.softmax(ll + lp, dim=1),
    "prior was subtracted": lambda ll, lp: torch.log_softmax(ll - lp, dim=1),
    "logsumexp": lambda ll, lp: torch.log((ll + lp).exp() / (ll + lp).exp().sum(1, keepdim=True)),
    "shape": lambda ll, lp: torch.log_softmax(ll + lp, dim=1).T,
}


@pytest.mark.parametrize("hint", POSTERIOR_MISTAKES)
def test_posterior_check_rejects_mistakes_with_hint(hint, capsys):
    ok, out = run(check_log_posterior, POSTERIOR_MISTAKES[hint], capsys)
    assert not ok and hint in out


def _sampler(noise_power=1, with_mean=True, with_low_rank=True, transpose=False, same=False):
    def sample(mean, components, noise_std, n, generator=None):
        z = torch.randn(1 if same else n, components.shape[1], generator=generator).expand(n, -1)
        eps = torch.randn(1 if same else n, len(mean), generator=generator).expand(n, -1)
        x = noise_std ** noise_power * eps
        if with_low_rank:
            x = x + z @ components.T
        if with_mean:
            x = x + mean
        return x.T if transpose else x
    return sample


SAMPLING_MISTAKES = {
    "isotropic noise is missing": _sampler(noise_power=float("inf")),  # 0.5**inf == 0: no noise
    "not noise_std**2": _sampler(noise_power=2),
    "mean is missing": _sampler(with_mean=False),
    "low-rank part is missing": _sampler(with_low_rank=False),
    "one sample per row": _sampler(transpose=True),
    "every sample is the same": _sampler(same=True),
}


@pytest.mark.parametrize("hint", SAMPLING_MISTAKES)
def test_sampling_check_rejects_mistakes_with_hint(hint, capsys):
    ok, out = run(check_sample_low_rank_gaussian, SAMPLING_MISTAKES[hint], capsys)
    assert not ok and hint in out


def test_checks_raise_only_on_misuse():
    with pytest.raises(TypeError, match="expects your function"):
        check_gaussian_log_density(torch.zeros(3))

"""Lesson 03: reference answers, checks (both directions, with the specific hints) and explorers."""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils
from checking import fails_with, in_float64, passes
from utils import autoencoders as ae
from utils import vae
from utils.checks import vae as H
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED
from utils.checks.vae import elbo_cases, kl_cases, kl_mistakes


@pytest.fixture(scope="module")
def model2d():
    torch.manual_seed(0)
    return vae.VAE(vae.VAEConfig(hidden=32, latent=2)).eval()


# --------------------------------------------------------------------------- model and references

def test_vae_shapes(model2d):
    x = torch.rand(3, 1, 28, 28)
    logits, mu, logvar = model2d(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 2)


def test_kl_matches_torch_distributions():
    mu, logvar = kl_cases()
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(vae.kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-5)


def test_kl_mistakes_are_distinct_from_the_answer_and_each_other():
    mu, logvar = kl_cases()
    right = vae.kl_divergence(mu, logvar)
    values = list(kl_mistakes(mu, logvar).values())
    for i, v in enumerate(values):
        assert not torch.allclose(v, right, atol=1e-3)
        for w in values[i + 1:]:
            assert not torch.allclose(v, w, atol=1e-3)


def test_elbo_reference_matches_bce():
    logits, x, mu, logvar = elbo_cases()
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    assert torch.allclose(vae.elbo_loss(logits, x, mu, logvar, beta=0.0), bce)


def test_evaluate_parts_add_up(model2d):
    res = vae.evaluate(model2d, torch.rand(10, 1, 28, 28), batch_size=4)
    assert abs(res["neg_elbo"] - res["recon"] - res["kl"]) < 1e-3
    assert res["kl"] >= 0 and res["kl_per_dim"].shape == (2,)
    x = torch.rand(10, 1, 28, 28)
    assert vae.evaluate(model2d, x)["neg_elbo"] == vae.evaluate(model2d, x)["neg_elbo"]  # seeded: reproducible


def test_sample_prior_is_seeded(model2d):
    a, b = vae.sample_prior(model2d, 6, 2, seed=3), vae.sample_prior(model2d, 6, 2, seed=3)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    grid = vae.prior_grid(model2d, 2, n=8, nrow=4)
    assert grid.shape == (2 * 29 + 1, 4 * 29 + 1)


# --------------------------------------------------------------------------- saving and loading

def _tiny_data(name="MNIST (offline subset)", n=40):
    return utils.data.ImageData(torch.rand(n, 1, 28, 28), torch.zeros(n, dtype=torch.long),
                                torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), name, "test")


def test_vae_path_names_data_size_architecture_and_steps():
    cfg = vae.VAEConfig(hidden=400, latent=20)
    path = vae.vae_path(_tiny_data(), cfg, 3000)
    assert path.parent.name == "models" and path.suffix == ".pt"
    assert path.name == "vae-mnist-offline-subset-n40-h400-z20-steps3000.pt"
    others = {vae.vae_path(_tiny_data("Fashion-MNIST"), cfg, 3000), vae.vae_path(_tiny_data(n=50), cfg, 3000),
              vae.vae_path(_tiny_data(), vae.VAEConfig(latent=2), 3000), vae.vae_path(_tiny_data(), cfg, 150)}
    assert path not in others and len(others) == 4


def test_save_and_load_vae_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig(hidden=16, latent=3))
    path = tmp_path / "models" / "vae.pt"
    assert vae.save_vae(path, model) is True
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(path.parent.glob("*.part"))                       # nothing half-written left behind
    loaded = vae.load_vae(path)
    assert isinstance(loaded, vae.VAE) and not loaded.training and loaded.cfg == model.cfg
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x)[0]), model.decode(model.encode(x)[0]))
    other = vae.VAE(vae.VAEConfig(hidden=16, latent=3))
    assert vae.save_vae(path, other) is False                           # an existing file is kept
    assert torch.equal(vae.load_vae(path).decoder.net[0].weight, model.decoder.net[0].weight)
    assert capsys.readouterr().out == ""


def test_load_vae_returns_none_for_a_missing_file(tmp_path, capsys):
    assert vae.load_vae(tmp_path / "absent.pt") is None
    assert "No saved VAE" in capsys.readouterr().out
    assert vae.load_vae(tmp_path / "absent.pt", verbose=False) is None
    assert capsys.readouterr().out == ""


def test_load_vae_returns_none_for_a_damaged_file(tmp_path, capsys):
    path = tmp_path / "vae.pt"
    vae.save_vae(path, vae.VAE(vae.VAEConfig(hidden=16, latent=3)))
    path.write_bytes(path.read_bytes()[:100])                           # truncated
    assert vae.load_vae(path) is None
    out = capsys.readouterr().out
    assert "could not be used" in out and out.count("\n") == 1


def test_load_vae_returns_none_when_weights_and_config_disagree(tmp_path, capsys):
    path = tmp_path / "vae.pt"
    vae.save_vae(path, vae.VAE(vae.VAEConfig(hidden=16, latent=3)))
    path.with_suffix(".json").write_text(json.dumps({"image_shape": [1, 28, 28], "hidden": 16, "latent": 5}))
    assert vae.load_vae(path) is None
    assert "could not be used" in capsys.readouterr().out
    path.with_suffix(".json").write_text("{not json")
    assert vae.load_vae(path) is None
    path.with_suffix(".json").unlink()
    assert vae.load_vae(path) is None


# --------------------------------------------------------------------------- explorers

def test_decode_grid_on_a_vae(model2d):
    grid = ae.decode_grid(model2d, n=4)
    assert grid.shape == (4 * 29 + 1, 4 * 29 + 1) and grid.min() >= 0 and grid.max() <= 1


@pytest.mark.parametrize("z1, z2", [(-3.0, -3.0), (0.0, 0.0), (3.0, 3.0)])
def test_latent_map_view_slider_ends(model2d, z1, z2):
    pts, labels = torch.randn(50, 2), torch.randint(0, 10, (50,))
    fig = vae.latent_map_view(model2d, z1, z2, pts, labels)
    assert len(fig.axes) >= 2
    vae.latent_map_view(model2d, z1, z2)  # without points too


def test_interpolation_endpoints_on_a_vae(model2d):
    x = torch.rand(2, 1, 28, 28)
    mu = ae.encode_all(model2d, x)                       # the means, not samples
    assert np.allclose(ae.interpolate(model2d, x[0], x[1], 0.0), ae.decode_code(model2d, mu[0]), atol=1e-6)
    assert np.allclose(ae.interpolate(model2d, x[0], x[1], 1.0), ae.decode_code(model2d, mu[1]), atol=1e-6)


@pytest.mark.parametrize("value", [-3.0, 3.0])
def test_decode_with_dims_slider_ends(value):
    torch.manual_seed(0)
    m = vae.VAE(vae.VAEConfig(hidden=16, latent=5)).eval()
    img = vae.decode_with_dims(m, torch.zeros(5), [4, 1], [value, -value])
    assert img.shape == (28, 28) and img.min() >= 0 and img.max() <= 1
    assert np.allclose(vae.decode_with_dims(m, torch.zeros(5), [], []), ae.decode_code(m, torch.zeros(5)))


def test_active_dims():
    assert vae.active_dims(torch.tensor([0.1, 3.0, 0.0, 2.0]), 2) == [1, 3]


# --------------------------------------------------------------------------- checks accept correct answers

def _kl_via_distributions(mu, logvar):
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(dim=1)


def _elbo_via_probabilities(logits, x, mu, logvar, beta=1.0):
    rec = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
    return (rec + beta * vae.kl_divergence(mu, logvar).sum()) / x.shape[0]


@pytest.mark.parametrize("check, fn", [
    (utils.checks.check_reparameterize, vae.reparameterize),
    (utils.checks.check_reparameterize, lambda mu, logvar: mu + torch.randn_like(mu) * torch.exp(logvar).sqrt()),
    (utils.checks.check_reparameterize,
     lambda mu, logvar: torch.distributions.Normal(mu, (logvar / 2).exp()).rsample()),
    (utils.checks.check_reparameterize, in_float64(vae.reparameterize)),
    (utils.checks.check_kl_divergence, vae.kl_divergence),
    (utils.checks.check_kl_divergence,
     lambda mu, logvar: 0.5 * torch.sum(mu ** 2 + torch.exp(logvar) - logvar - 1, dim=-1)),
    (utils.checks.check_kl_divergence, _kl_via_distributions),
    (utils.checks.check_kl_divergence, in_float64(vae.kl_divergence)),
    (utils.checks.check_elbo_loss, vae.elbo_loss),
    (utils.checks.check_elbo_loss, _elbo_via_probabilities),
    (utils.checks.check_elbo_loss, lambda logits, x, mu, logvar, beta=1.0:
     vae.elbo_loss(logits.double(), x.double(), mu.double(), logvar.double(), beta)),
])
def test_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


def test_checks_report_not_implemented(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for check in (utils.checks.check_reparameterize, utils.checks.check_kl_divergence,
                  utils.checks.check_elbo_loss):
        fails_with(check, stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- checks name typical mistakes

def _sigma(logvar):
    return (0.5 * logvar).exp()


Z_MISTAKES = {
    H.Z_LOGVAR_AS_STD: lambda mu, logvar: mu + logvar * torch.randn_like(mu),
    H.Z_VAR_AS_STD: lambda mu, logvar: mu + logvar.exp() * torch.randn_like(mu),
    H.Z_NO_NOISE: lambda mu, logvar: mu,
    H.Z_SQRT_TWICE: lambda mu, logvar: mu + _sigma(logvar).sqrt() * torch.randn_like(mu),
    H.Z_UNIFORM: lambda mu, logvar: mu + _sigma(logvar) * torch.rand_like(mu),
    H.Z_NOT_CENTRED: lambda mu, logvar: _sigma(logvar) * torch.randn_like(mu),
    H.Z_NO_GRAD: lambda mu, logvar: torch.distributions.Normal(mu, _sigma(logvar)).sample(),
    H.Z_NO_GRAD + " ": lambda mu, logvar: (mu + _sigma(logvar) * torch.randn_like(mu)).detach(),
    H.Z_GRAD_LOGVAR: lambda mu, logvar: mu + _sigma(logvar.detach()) * torch.randn_like(mu),
    H.Z_GRAD_MU: lambda mu, logvar: mu.detach() + _sigma(logvar) * torch.randn_like(mu),
    H.Z_SHAPE: lambda mu, logvar: mu[:, :2],
    H.Z_SAME_FOR_BATCH: lambda mu, logvar: mu + _sigma(logvar) * torch.randn(mu.shape[1]),
    H.Z_SHARED_DIMS: lambda mu, logvar: mu + _sigma(logvar) * torch.randn(mu.shape[0], 1),
    IN_PLACE.format("mu"): lambda mu, logvar: mu.data.add_(_sigma(logvar) * torch.randn_like(mu)),
}


@pytest.mark.parametrize("hint", Z_MISTAKES)
def test_check_reparameterize_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_reparameterize, Z_MISTAKES[hint], capsys, hint.strip())


KL_MISTAKES = {
    H.KL_SIGN: lambda mu, lv: 0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1),
    H.KL_HALF: lambda mu, lv: -(1 + lv - mu ** 2 - lv.exp()).sum(1),
    H.KL_STD_FOR_VAR: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - (0.5 * lv).exp()).sum(1),
    H.KL_STD_FOR_LOGVAR: lambda mu, lv: -0.5 * (1 + (0.5 * lv).exp() - mu ** 2 - lv.exp()).sum(1),
    H.KL_LOGVAR_AS_STD: lambda mu, lv: -0.5 * (1 + torch.log(lv ** 2) - mu ** 2 - lv ** 2).sum(1),
    H.KL_MEAN_OVER_DIMS: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).mean(1),
    H.KL_SCALAR: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(),
    H.KL_SCALAR + " ": lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).mean(),
    H.KL_OVER_BATCH: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(0),
    H.KL_KEEPDIM: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1, keepdim=True),
    H.KL_MU_NOT_SQUARED: lambda mu, lv: -0.5 * (1 + lv - mu - lv.exp()).sum(1),
    H.KL_LOGVAR_FOR_VAR: lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv).sum(1),
    H.KL_NO_ONE: lambda mu, lv: -0.5 * (lv - mu ** 2 - lv.exp()).sum(1),
    IN_PLACE.format("mu"): lambda mu, logvar: -0.5 * (1 + logvar - mu.pow_(2) - logvar.exp()).sum(1),
}


@pytest.mark.parametrize("hint", KL_MISTAKES)
def test_check_kl_divergence_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_kl_divergence, KL_MISTAKES[hint], capsys, hint.strip())


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


ELBO_MISTAKES = {
    H.ELBO_PIXEL_MEAN: lambda l, x, mu, lv, beta=1.0:
        F.binary_cross_entropy_with_logits(l, x) + beta * vae.kl_divergence(mu, lv).mean(),
    H.ELBO_BATCH_SUM: lambda l, x, mu, lv, beta=1.0: (_bce(l, x) + beta * vae.kl_divergence(mu, lv)).sum(),
    H.ELBO_NO_BETA: lambda l, x, mu, lv, beta=1.0: (_bce(l, x) + vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_BETA_ON_RECON: lambda l, x, mu, lv, beta=1.0: (beta * _bce(l, x) + vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_KL_SIGN: lambda l, x, mu, lv, beta=1.0: (_bce(l, x) - beta * vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_NO_KL: lambda l, x, mu, lv, beta=1.0: _bce(l, x).mean(),
    H.ELBO_MSE: lambda l, x, mu, lv, beta=1.0:
        ((torch.sigmoid(l) - x).pow(2).flatten(1).sum(1) + beta * vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_SIGMOID_TWICE: lambda l, x, mu, lv, beta=1.0:
        (_bce(torch.sigmoid(l), x) + beta * vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_ARGS_SWAPPED: lambda l, x, mu, lv, beta=1.0: (_bce(x, l) + beta * vae.kl_divergence(mu, lv)).mean(),
    H.ELBO_PER_EXAMPLE: lambda l, x, mu, lv, beta=1.0: _bce(l, x) + beta * vae.kl_divergence(mu, lv),
    H.ELBO_NO_GRAD: lambda l, x, mu, lv, beta=1.0: vae.elbo_loss(l, x, mu, lv, beta).item(),
    H.ELBO_HARD_CODED_PIXELS: lambda l, x, mu, lv, beta=1.0:
        (F.binary_cross_entropy_with_logits(l, x, reduction="none").view(-1, 784).sum(1)
         + beta * vae.kl_divergence(mu, lv)).mean(),
    f"{H.ELBO_KL_PREFIX} ({H.KL_MEAN_OVER_DIMS}": lambda l, x, mu, lv, beta=1.0:
        (_bce(l, x) - beta * 0.5 * (1 + lv - mu ** 2 - lv.exp()).mean(1)).mean(),
    f"{H.ELBO_KL_PREFIX} ({H.KL_STD_FOR_VAR}": lambda l, x, mu, lv, beta=1.0:
        (_bce(l, x) - beta * 0.5 * (1 + lv - mu ** 2 - (0.5 * lv).exp()).sum(1)).mean(),
    H.ELBO_DEFAULT_BETA: lambda l, x, mu, lv, beta: (_bce(l, x) + beta * vae.kl_divergence(mu, lv)).mean(),
    IN_PLACE.format("x"): lambda l, x, mu, lv, beta=1.0: vae.elbo_loss(l, x.clamp_(0.1, 0.9), mu, lv, beta),
}


@pytest.mark.parametrize("hint", ELBO_MISTAKES)
def test_check_elbo_loss_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_elbo_loss, ELBO_MISTAKES[hint], capsys, hint)


def test_binarize_draws_each_pixel_on_with_its_grey_level():
    grey = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    b = vae.binarize(grey, torch.Generator().manual_seed(1))
    assert b.shape == grey.shape and b.dtype == grey.dtype and set(b.unique().tolist()) <= {0.0, 1.0}
    assert abs(b.mean().item() - grey.mean().item()) < 0.01
    assert torch.equal(b, vae.binarize(grey, torch.Generator().manual_seed(1)))       # fixed seed: fixed test set
    assert not torch.equal(b, vae.binarize(grey, torch.Generator().manual_seed(2)))   # dynamic: new draw
    assert torch.equal(vae.binarize(torch.ones(4, 4)), torch.ones(4, 4))
    assert torch.equal(vae.binarize(torch.zeros(4, 4)), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="grey levels"):
        vae.binarize(torch.full((2, 2), 255.0))


# --------------------------------------------------------------------------- build exercise: the VAE module

class _VAE(vae.VAE):
    """The reference with one method overridden per mistake below."""


class _VAEOwnWords(torch.nn.Module):
    """A correct VAE written differently: slices instead of chunk, the sample inline."""

    def __init__(self, cfg=vae.VAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = vae.MLPEncoder(cfg.image_shape, [cfg.hidden], cfg.latent * 2)
        self.decoder = vae.MLPDecoder(cfg.latent, [cfg.hidden], cfg.image_shape)

    def encode(self, x):
        h = self.encoder(x)
        return h[:, :self.cfg.latent], h[:, self.cfg.latent:]

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        return self.decode(z), mu, logvar


def _override(**methods):
    return type("Mistake", (_VAE,), methods)


def _half_encoder_init(self, cfg=vae.VAEConfig()):
    torch.nn.Module.__init__(self)
    self.cfg = cfg
    self.encoder = vae.MLPEncoder(cfg.image_shape, (cfg.hidden,), cfg.latent)
    self.decoder = vae.MLPDecoder(cfg.latent, (cfg.hidden,), cfg.image_shape)


def _no_cfg_init(self, cfg=vae.VAEConfig()):
    vae.VAE.__init__(self, cfg)
    del self.cfg


def _sampled(sample):
    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(sample(mu, logvar)), mu, logvar
    return forward


VAE_MISTAKES = {
    H.VAE_NO_CFG: _override(__init__=_no_cfg_init),
    H.VAE_ENCODER_HALF: _override(__init__=_half_encoder_init),
    H.VAE_ENCODE_PAIR: _override(encode=lambda self, x: self.encoder(x)),
    H.VAE_SPLIT_BATCH: _override(encode=lambda self, x: self.encoder(x).chunk(2, dim=0)),
    H.VAE_SWAPPED: _override(encode=lambda self, x: self.encoder(x).chunk(2, dim=-1)[::-1]),
    H.VAE_INTERLEAVED: _override(encode=lambda self, x: (self.encoder(x)[:, 0::2], self.encoder(x)[:, 1::2])),
    H.VAE_LOGVAR_EXP: _override(encode=lambda self, x: (self.encoder(x).chunk(2, -1)[0],
                                                          self.encoder(x).chunk(2, -1)[1].exp())),
    H.VAE_DECODE_SHAPE: _override(decode=lambda self, z: self.decoder.net(z)),
    H.VAE_DECODE_SIGMOID: _override(decode=lambda self, z: torch.sigmoid(self.decoder(z))),
    H.VAE_DECODE_SIGMOID + " ": _override(forward=lambda self, x: (
        torch.sigmoid(vae.VAE.forward(self, x)[0]), *vae.VAE.forward(self, x)[1:])),
    H.VAE_FORWARD_TRIPLE: _override(forward=lambda self, x: vae.VAE.forward(self, x)[0]),
    H.VAE_FORWARD_ORDER: _override(forward=lambda self, x: vae.VAE.forward(self, x)[::-1]),
    H.VAE_FORWARD_ORDER + " ": _override(forward=lambda self, x: (lambda l, m, v: (l, v, m))(*vae.VAE.forward(self, x))),
    H.VAE_NO_SAMPLE: _override(forward=_sampled(lambda mu, logvar: mu)),
    H.VAE_NO_GRAD_TO_ENCODER: _override(forward=_sampled(
        lambda mu, logvar: torch.distributions.Normal(mu, (0.5 * logvar).exp()).sample())),
    H.VAE_NO_GRAD_TO_ENCODER + " ": _override(forward=_sampled(lambda mu, logvar: vae.reparameterize(mu, logvar).detach())),
    H.VAE_LOGVAR_AS_STD: _override(forward=_sampled(lambda mu, logvar: mu + logvar * torch.randn_like(mu))),
}


@pytest.mark.parametrize("cls", [vae.VAE, in_float64(vae.VAE), _VAEOwnWords], ids=["reference", "float64", "own words"])
def test_check_VAE_accepts_correct_modules(cls, capsys):
    passes(utils.checks.check_VAE, cls, capsys)


@pytest.mark.parametrize("hint", VAE_MISTAKES)
def test_check_VAE_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_VAE, VAE_MISTAKES[hint], capsys, hint.strip())


def test_check_VAE_reports_not_implemented(capsys):
    class Stub(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            raise NotImplementedError()

    fails_with(utils.checks.check_VAE, Stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- build exercise: one training step

def _step(zero="before", beta_used=True, sample=True, returns="item", step=True):
    def vae_step(model, opt, x, beta=1.0):
        mu, logvar = model.encode(x)
        z = vae.reparameterize(mu, logvar) if sample else mu
        loss = vae.elbo_loss(model.decode(z), x, mu, logvar, beta if beta_used else 1.0)
        if zero == "before":
            opt.zero_grad()
        loss.backward()
        if zero == "after":
            opt.zero_grad()
        if step:
            opt.step()
        return {"item": loss.item(), "tensor": loss, "per-pixel": loss.item() / x[0].numel()}[returns]
    return vae_step


STEP_MISTAKES = {
    H.STEP_STALE_GRADS: _step(zero=None),
    H.STEP_NO_UPDATE: _step(zero="after"),
    H.STEP_NO_UPDATE + " ": _step(step=False),
    H.STEP_NO_BETA: _step(beta_used=False),
    H.STEP_NOT_SAMPLED: _step(sample=False),
    H.STEP_RETURNS_TENSOR: _step(returns="tensor"),
    H.STEP_RETURNED_VALUE: _step(returns="per-pixel"),
}


@pytest.mark.parametrize("fn", [vae.vae_step, in_float64(vae.vae_step), _step()], ids=["reference", "float64", "own words"])
def test_check_vae_step_accepts_correct_steps(fn, capsys):
    passes(utils.checks.check_vae_step, fn, capsys)


@pytest.mark.parametrize("hint", STEP_MISTAKES)
def test_check_vae_step_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_vae_step, STEP_MISTAKES[hint], capsys, hint.strip())


def test_check_vae_step_reports_not_implemented(capsys):
    def stub(model, opt, x, beta=1.0):
        raise NotImplementedError()

    fails_with(utils.checks.check_vae_step, stub, capsys, NOT_IMPLEMENTED)


def test_check_VAE_names_a_missing_method_without_raising(capsys):
    class NoMethods(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.encoder = vae.MLPEncoder(cfg.image_shape, (cfg.hidden,), 2 * cfg.latent)
            self.decoder = vae.MLPDecoder(cfg.latent, (cfg.hidden,), cfg.image_shape)

    fails_with(utils.checks.check_VAE, NoMethods, capsys, "no `encode` method")

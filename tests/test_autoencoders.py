"""Lesson 02: reference answers, checks (both directions, with the specific hints) and explorers."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils
from checking import fails_with, in_float64, passes
from utils import autoencoders as ae
from utils.checks import autoencoders as H
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED, NO_RETURN


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ae.Autoencoder(ae.AEConfig(latent=2, hidden=(32,))).eval()


# --------------------------------------------------------------------------- model and references

def test_model_shapes(model):
    x = torch.rand(4, 1, 28, 28)
    assert model.encode(x).shape == (4, 2)
    assert model.decode(torch.zeros(4, 2)).shape == (4, 1, 28, 28)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_reference_answers_agree_with_torch(model):
    x_hat, x = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    assert torch.allclose(ae.reconstruction_loss(x_hat, x), F.mse_loss(x_hat, x, reduction="sum") / 5)
    noisy = ae.add_noise(torch.zeros(3, 1, 28, 28), 0.7)
    assert noisy.min() >= 0 and noisy.max() <= 1 and noisy.max() > 0
    scores = ae.anomaly_score(model, x)
    assert scores.shape == (5,) and (scores >= 0).all()


def test_psnr_and_auc():
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(ae.psnr(x + 0.1, x), torch.full((3,), 20.0), atol=1e-3)  # MSE 0.01 -> 20 dB
    auc, fpr, tpr = ae.roc_auc(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert auc == 1.0 and fpr[0] == 0 and tpr[-1] == 1
    assert ae.roc_auc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])[0] == 0.0


def test_fit_lowers_the_loss_and_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setattr(utils.runtime, "DATA_DIR", tmp_path)
    x = torch.rand(64, 1, 28, 28)
    cfg = ae.AEConfig(latent=3, hidden=(16,))
    torch.manual_seed(0)
    m = ae.Autoencoder(cfg)
    losses = ae.fit(m, x, steps=30, batch_size=16)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    path = ae.cache_path(cfg, "MNIST (offline subset)", 30)
    assert path.parent.parent == tmp_path and " " not in path.name
    first = ae.load_or_train(cfg, x, "MNIST (offline subset)", steps=5)        # trains and saves
    assert ae.cache_path(cfg, "MNIST (offline subset)", 5).is_file()
    again = ae.load_or_train(cfg, x, "MNIST (offline subset)", steps=5)        # loads
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_save_writes_the_cache_once_and_keeps_it(tmp_path):
    cfg = ae.AEConfig(latent=3, hidden=(16,))
    path = tmp_path / "models" / "ae.pt"
    torch.manual_seed(0)
    first, second = ae.Autoencoder(cfg), ae.Autoencoder(cfg)
    assert ae.save(first, path) is True
    written = path.stat().st_mtime_ns
    assert ae.save(second, path) is False, "a second run must reuse the cache, not rewrite it"
    assert path.stat().st_mtime_ns == written and not list(tmp_path.rglob("*.part"))
    kept = torch.load(path, weights_only=True)
    assert all(torch.equal(kept[k], v) for k, v in first.state_dict().items())


# --------------------------------------------------------------------------- explorers

def test_decode_grid_shape_and_range(model):
    grid = ae.decode_grid(model, n=5, low=-2, high=2)
    assert grid.shape == (5 * 29 + 1, 5 * 29 + 1)
    assert grid.min() >= 0 and grid.max() <= 1


def test_decode_grid_orientation(model):
    """Top-left tile is (low, high_y); bottom-right is (high, low_y)."""
    grid = ae.decode_grid(model, n=3, low=-1, high=1)
    top_left = ae.decode_code(model, [-1.0, 1.0])
    bottom_right = ae.decode_code(model, [1.0, -1.0])
    assert np.allclose(grid[1:29, 1:29], top_left, atol=1e-6)
    assert np.allclose(grid[-29:-1, -29:-1], bottom_right, atol=1e-6)


@pytest.mark.parametrize("z", [[-50.0, -50.0], [0.0, 0.0], [50.0, 50.0]])
def test_latent_slider_ends(model, z):
    img = ae.decode_code(model, z)
    assert img.shape == (28, 28) and np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1


def test_latent_ranges_cover_codes():
    codes = torch.tensor([[0.0, -1.0], [2.0, 3.0]])
    low, high = ae.latent_ranges(codes)
    assert low[0] < 0 < 2 < high[0] and low[1] < -1 and high[1] > 3


def test_interpolation_endpoints(model):
    x = torch.rand(2, 1, 28, 28)
    z = ae.encode_all(model, x)
    for t, k in ((0.0, 0), (1.0, 1)):
        assert np.allclose(ae.interpolate(model, x[0], x[1], t), ae.decode_code(model, z[k]), atol=1e-6)
    strip = ae.interpolation_strip(model, x[0], x[1], steps=6)
    assert strip.shape == (30, 6 * 29 + 1) and 0 <= strip.min() and strip.max() <= 1
    for t in (0.0, 1.0):
        view = ae.interpolation_view(model, x[0], x[1], t)
        assert view.shape == (30, 90) and 0 <= view.min() and view.max() <= 1
        assert np.allclose(view[1:29, 31:59], ae.decode_code(model, z[int(t)]), atol=1e-6)
        assert np.allclose(view[1:29, 1:29], x[0, 0].numpy())
    mid = ae.interpolate_codes(z[0], z[1], 0.5)
    assert torch.allclose(mid[0], (z[0] + z[1]) / 2)


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_denoise_view_slider_ends(model, level):
    fig = ae.denoise_view(model, torch.rand(4, 1, 28, 28), level)
    assert len(fig.axes) == 3


# --------------------------------------------------------------------------- checks accept correct answers

@pytest.mark.parametrize("check, fn", [
    (utils.checks.check_reconstruction_loss, ae.reconstruction_loss),
    (utils.checks.check_reconstruction_loss, lambda x_hat, x: F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]),
    (utils.checks.check_reconstruction_loss, lambda x_hat, x: ((x - x_hat) ** 2).sum(dim=(1, 2, 3)).mean()),
    (utils.checks.check_reconstruction_loss, in_float64(ae.reconstruction_loss)),
    (utils.checks.check_add_noise, ae.add_noise),
    (utils.checks.check_add_noise, lambda x, s: torch.clip(x + torch.randn(x.shape) * s, 0, 1)),
    (utils.checks.check_add_noise, lambda x, s: (x + torch.normal(0.0, 1.0, size=x.shape) * s).clamp(0, 1)),
    (utils.checks.check_add_noise, in_float64(ae.add_noise)),
    (utils.checks.check_anomaly_score, ae.anomaly_score),
    (utils.checks.check_anomaly_score, lambda m, x: F.mse_loss(m(x), x, reduction="none").mean(dim=(1, 2, 3))),
    (utils.checks.check_anomaly_score, lambda m, x: ((x - m(x)) ** 2).sum(dim=(1, 2, 3))),
    (utils.checks.check_anomaly_score,  # through the model's own encode/decode
     lambda m, x: (torch.sigmoid(m.decode(m.encode(x))) - x).pow(2).flatten(1).sum(1)),
    (utils.checks.check_anomaly_score, in_float64(ae.anomaly_score)),
])
def test_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


def test_checks_report_not_implemented(capsys):
    def stub(*args):
        raise NotImplementedError()

    for check in (utils.checks.check_reconstruction_loss, utils.checks.check_add_noise,
                  utils.checks.check_anomaly_score):
        fails_with(check, stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- checks name typical mistakes

LOSS_MISTAKES = {
    H.LOSS_PIXEL_MEAN: lambda x_hat, x: F.mse_loss(x_hat, x),
    H.LOSS_BATCH_SUM: lambda x_hat, x: F.mse_loss(x_hat, x, reduction="sum"),
    H.LOSS_ABS: lambda x_hat, x: (x_hat - x).abs().sum() / len(x),
    H.LOSS_SQRT: lambda x_hat, x: (x_hat - x).flatten(1).norm(dim=1).mean(),
    H.LOSS_NOT_SQUARED: lambda x_hat, x: (x_hat - x).sum() / len(x),
    H.LOSS_PER_IMAGE: lambda x_hat, x: (x_hat - x).pow(2).flatten(1).sum(1),
    H.LOSS_HARD_CODED_BATCH: lambda x_hat, x: (x_hat - x).pow(2).sum() / 6,
    H.LOSS_NO_GRAD: lambda x_hat, x: ae.reconstruction_loss(x_hat, x).item(),
    H.LOSS_NO_GRAD + " ": lambda x_hat, x: ae.reconstruction_loss(x_hat, x).detach(),
    H.LOSS_HARD_CODED_PIXELS: lambda x_hat, x: F.mse_loss(x_hat, x) * 784,
    H.LOSS_HARD_CODED_PIXELS + " ": lambda x_hat, x: (x_hat - x).pow(2).view(-1, 784).sum(1).mean(),
    IN_PLACE.format("x_hat"): lambda x_hat, x: x_hat.data.sub_(x).pow(2).flatten(1).sum(1).mean(),
    NO_RETURN: lambda x_hat, x: None,
}


@pytest.mark.parametrize("hint", LOSS_MISTAKES)
def test_check_reconstruction_loss_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_reconstruction_loss, LOSS_MISTAKES[hint], capsys, hint.strip())


def _in_place(x, s):
    x += s * torch.randn_like(x)
    return x.clamp_(0, 1)


def _fixed_seed(x, s):
    g = torch.Generator().manual_seed(0)
    return (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _correlated(x, s):
    noise = torch.randn_like(x)
    return (x + s * (noise + noise.roll(1, dims=-1)) / 2 ** 0.5).clamp(0, 1)


NOISE_MISTAKES = {
    H.NOISE_RANGE: lambda x, s: x + s * torch.randn_like(x),
    H.NOISE_NONE: lambda x, s: x.clone(),
    H.NOISE_VARIANCE: lambda x, s: (x + s ** 2 * torch.randn_like(x)).clamp(0, 1),
    H.NOISE_SQRT: lambda x, s: (x + s ** 0.5 * torch.randn_like(x)).clamp(0, 1),
    H.NOISE_UNIFORM_POSITIVE: lambda x, s: (x + s * torch.rand_like(x)).clamp(0, 1),
    H.NOISE_UNIFORM: lambda x, s: (x + s * (2 * torch.rand_like(x) - 1)).clamp(0, 1),
    H.NOISE_MULTIPLIED: lambda x, s: (x * (1 + s * torch.randn_like(x))).clamp(0, 1),
    H.NOISE_SHIFTED: lambda x, s: torch.sigmoid(x + s * torch.randn_like(x)),
    H.NOISE_PER_IMAGE: lambda x, s: (x + s * torch.randn(len(x), 1, 1, 1)).clamp(0, 1),
    H.NOISE_SHARED_BATCH: lambda x, s: (x + s * torch.randn_like(x[:1])).clamp(0, 1),
    H.NOISE_CORRELATED: _correlated,
    H.NOISE_IMAGE_MISSING: lambda x, s: (s * torch.randn_like(x)).clamp(0, 1),
    H.NOISE_FIXED_SEED: _fixed_seed,
    H.NOISE_SHAPE: lambda x, s: (x + s * torch.randn_like(x)).clamp(0, 1)[0],
    IN_PLACE.format("x"): _in_place,
}


@pytest.mark.parametrize("hint", NOISE_MISTAKES)
def test_check_add_noise_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_add_noise, NOISE_MISTAKES[hint], capsys, hint)


SCORE_MISTAKES = {
    H.SCORE_SCALAR: lambda m, x: (m(x) - x).pow(2).mean(),
    H.SCORE_SHAPE: lambda m, x: (m(x) - x).pow(2),
    H.SCORE_OVER_BATCH: lambda m, x: (m(x) - x).pow(2).sum(0),
    H.SCORE_KEEPDIM: lambda m, x: (m(x) - x).pow(2).flatten(1).sum(1, keepdim=True),
    H.SCORE_SIGN: lambda m, x: -(m(x) - x).pow(2).flatten(1).sum(1),
    H.SCORE_ABS: lambda m, x: (m(x) - x).abs().flatten(1).sum(1),
    H.SCORE_ZERO: lambda m, x: (x - x).pow(2).flatten(1).sum(1),
    H.SCORE_SQRT: lambda m, x: (m(x) - x).flatten(1).norm(dim=1),
    H.SCORE_LOGITS: lambda m, x: (m.decode(m.encode(x)).view_as(x) - x).pow(2).flatten(1).sum(1),
    IN_PLACE.format("x"): lambda m, x: (m(x) - x.clamp_(0, 0.5)).pow(2).flatten(1).sum(1),
}


@pytest.mark.parametrize("hint", SCORE_MISTAKES)
def test_check_anomaly_score_names_each_mistake(hint, capsys):
    fails_with(utils.checks.check_anomaly_score, SCORE_MISTAKES[hint], capsys, hint)


def test_checks_refuse_a_non_function():
    with pytest.raises(TypeError):
        utils.checks.check_add_noise(torch.zeros(3))


def test_pca_reconstruct_is_exact_at_full_rank_and_improves_with_k():
    torch.manual_seed(0)
    x_train, x = torch.rand(50, 1, 4, 4), torch.rand(7, 1, 4, 4)
    assert torch.allclose(ae.pca_reconstruct(x_train, x, 16), x, atol=1e-5)
    errors = [ae.reconstruction_loss(ae.pca_reconstruct(x_train, x_train, k), x_train).item() for k in (1, 4, 8)]
    assert errors[0] > errors[1] > errors[2]


def test_reconstructions_figure(model):
    fig = ae.reconstructions_figure(model, torch.rand(5, 1, 28, 28), title="latent 2")
    assert len(fig.axes) == 2 and "latent 2" in fig._suptitle.get_text()



def test_pca_in_chunks_matches_one_shot():
    """More rows than one chunk (as on full MNIST): the chunked covariance gives the same projection."""
    torch.manual_seed(0)
    x_train = torch.rand(12_000, 1, 3, 3)
    flat = x_train.flatten(1).double()
    centred = flat - flat.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred / (len(flat) - 1))
    u = vectors.flip(-1)[:, :4]
    expected = ((centred[:5] @ u) @ u.T + flat.mean(0)).float().view(5, 1, 3, 3)
    assert torch.allclose(ae.pca_reconstruct(x_train, x_train[:5], 4), expected, atol=1e-5)

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


# --------------------------------------------------------------------------- the build: the Autoencoder module

class _Good(torch.nn.Module):
    """A learner's correct Autoencoder, written differently from the reference; the mistakes below override it."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        pixels = int(np.prod(cfg.image_shape))
        self.enc_hidden = torch.nn.Linear(pixels, cfg.hidden)
        self.enc_code = torch.nn.Linear(cfg.hidden, cfg.latent)
        self.dec_hidden = torch.nn.Linear(cfg.latent, cfg.hidden)
        self.dec_pixels = torch.nn.Linear(cfg.hidden, pixels)
        self.act = torch.nn.ReLU()

    def hidden(self, x):
        return self.act(self.enc_hidden(x.view(len(x), -1)))

    def encode(self, x):
        return self.enc_code(self.hidden(x))

    def decode(self, z):
        return self.dec_pixels(F.relu(self.dec_hidden(z))).reshape(z.shape[0], *self.cfg.image_shape)

    def forward(self, x):
        return torch.nn.Sigmoid()(self.decode(self.encode(x)))


class _Float64(_Good):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.double()

    def encode(self, x):
        return super().encode(x.double())

    def decode(self, z):
        return super().decode(z.double())


def _variant(**methods):
    return type("Autoencoder", (_Good,), methods)


class _NoSuper(torch.nn.Module):
    def __init__(self, cfg):
        self.cfg = cfg
        self.enc_hidden = torch.nn.Linear(784, cfg.hidden)


class _NoCfg(_Good):
    def __init__(self, cfg):
        super().__init__(cfg)
        del self.cfg


def _layers(**sizes):
    """An __init__ that builds the four layers with some sizes replaced (given as functions of cfg)."""
    def __init__(self, cfg):
        _Good.__init__(self, cfg)
        pixels = int(np.prod(cfg.image_shape))
        shapes = {"enc_hidden": (pixels, cfg.hidden), "enc_code": (cfg.hidden, cfg.latent),
                  "dec_hidden": (cfg.latent, cfg.hidden), "dec_pixels": (cfg.hidden, pixels)}
        for name, size in sizes.items():
            setattr(self, name, torch.nn.Linear(*size(cfg)))
        del shapes
    return __init__


class _Reverse(torch.autograd.Function):
    """Identity forward, negated gradient backward: a model that climbs its loss."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def _with_dropout(self, x):
    return torch.nn.functional.dropout(self.act(self.enc_hidden(x.flatten(1))), 0.3, self.training)


AE_MISTAKES = {
    "no super": (_NoSuper, H.AE_NO_SUPER),
    "no cfg": (_NoCfg, H.AE_NO_CFG),
    "bottleneck 16": (_variant(__init__=_layers(enc_code=lambda c: (c.hidden, 16), dec_hidden=lambda c: (16, c.hidden))),
                      H.AE_BOTTLENECK),
    "784 typed": (_variant(__init__=_layers(enc_hidden=lambda c: (784, c.hidden), dec_pixels=lambda c: (c.hidden, 784))),
                  H.AE_HARD_CODED_PIXELS),
    "flatten everything": (_variant(hidden=lambda self, x: F.relu(self.enc_hidden(x.flatten()))), H.AE_LAYER_WIDTH),
    "view 784": (_variant(hidden=lambda self, x: F.relu(self.enc_hidden(x.view(-1, 784)))), H.AE_VIEW_SIZE),
    "code is hidden": (_variant(encode=lambda self, x: self.hidden(x)), H.AE_CODE_IS_HIDDEN),
    "code relu": (_variant(encode=lambda self, x: F.relu(self.enc_code(self.hidden(x)))), H.AE_CODE_RELU),
    "no relu": (_variant(hidden=lambda self, x: self.enc_hidden(x.flatten(1)),
                         decode=lambda self, z: self.dec_pixels(self.dec_hidden(z)).view(-1, *self.cfg.image_shape)),
                H.AE_LINEAR),
    "sigmoid hidden": (_variant(hidden=lambda self, x: torch.sigmoid(self.enc_hidden(x.flatten(1)))), H.AE_ENCODE_VALUES),
    "decode flat": (_variant(decode=lambda self, z: self.dec_pixels(F.relu(self.dec_hidden(z)))), H.AE_DECODE_FLAT),
    "decode 28x28": (_variant(decode=lambda self, z: self.dec_pixels(F.relu(self.dec_hidden(z))).view(-1, 1, 28, 28)),
                     H.AE_VIEW_SIZE),
    "sigmoid in decode": (_variant(decode=lambda self, z: torch.sigmoid(_Good.decode(self, z))), H.AE_DECODE_SQUASHED),
    "decode no relu": (_variant(decode=lambda self, z: self.dec_pixels(self.dec_hidden(z)).view(-1, *self.cfg.image_shape)),
                       H.AE_LINEAR),
    "decode tanh": (_variant(decode=lambda self, z: self.dec_pixels(torch.tanh(self.dec_hidden(z))).view(
        -1, *self.cfg.image_shape)), H.AE_DECODE_VALUES),
    "forward tuple": (_variant(forward=lambda self, x: (torch.sigmoid(self.decode(self.encode(x))), self.encode(x))),
                      H.AE_FORWARD_TUPLE),
    "forward code": (_variant(forward=lambda self, x: self.encode(x)), H.AE_FORWARD_SHAPE),
    "no sigmoid": (_variant(forward=lambda self, x: self.decode(self.encode(x))), H.AE_NOT_SQUASHED),
    "sigmoid twice": (_variant(forward=lambda self, x: torch.sigmoid(torch.sigmoid(self.decode(self.encode(x))))),
                      H.AE_DOUBLE_SQUASH),
    "relu then sigmoid": (_variant(forward=lambda self, x: torch.sigmoid(F.relu(self.decode(self.encode(x))))),
                          H.AE_RELU_ON_OUTPUT),
    "inverted": (_variant(forward=lambda self, x: 1 - torch.sigmoid(self.decode(self.encode(x)))), H.AE_FORWARD_VALUES),
    "dropout": (_variant(hidden=_with_dropout), H.AE_TRAIN_MODE),
    "detached code": (_variant(forward=lambda self, x: torch.sigmoid(self.decode(self.encode(x).detach()))),
                      "no gradient reaches `enc_hidden.weight`"),
    "extra layer": (_variant(__init__=lambda self, cfg: (_Good.__init__(self, cfg),
                                                         setattr(self, "norm", torch.nn.LayerNorm(cfg.hidden)))[0]),
                    "it has a `norm.weight` that the reference has not"),
    "climbs its loss": (_variant(forward=lambda self, x: torch.sigmoid(_Reverse.apply(self.decode(self.encode(x))))),
                        H.AE_LEARNS),
}


@pytest.mark.parametrize("cls", [ae.Autoencoder, _Good, _Float64], ids=["reference", "other-spelling", "float64"])
def test_check_autoencoder_accepts_correct_builds(cls, capsys):
    passes(utils.checks.check_Autoencoder, cls, capsys)


def test_check_autoencoder_returns_the_learners_class_when_right(capsys):
    assert utils.checks.Autoencoder(_Good) is _Good
    assert utils.checks.Autoencoder(AE_MISTAKES["no sigmoid"][0]) is ae.Autoencoder
    capsys.readouterr()


@pytest.mark.parametrize("name", AE_MISTAKES)
def test_check_autoencoder_names_each_mistake(name, capsys):
    cls, hint = AE_MISTAKES[name]
    fails_with(utils.checks.check_Autoencoder, cls, capsys, hint)


def test_check_autoencoder_not_attempted(capsys):
    class Stub(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            raise NotImplementedError()

    fails_with(utils.checks.check_Autoencoder, Stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- the build: the training loop

def _loop(body):
    """A learner's train_autoencoder whose step is ``body(model, opt, clean, corrupt) -> loss``; the rest is the stub."""
    def train_autoencoder(model, x, steps, corrupt=None, desc="autoencoder", seed=0, batch_size=128, lr=1e-3,
                          optimizer=torch.optim.Adam):
        gen = torch.Generator().manual_seed(seed)
        opt = optimizer(model.parameters(), lr=lr)
        history = utils.LossHistory(title=desc)
        model.train()
        for step in utils.progress(range(steps), desc=desc):
            clean = x[torch.randint(len(x), (batch_size,), generator=gen)]
            loss = body(model, opt, clean, corrupt, x=x, batch_size=batch_size)
            history.log(step, train=loss)
        model.eval()
        return history
    return train_autoencoder


def _step(inputs=lambda clean, corrupt: clean if corrupt is None else corrupt(clean),
          target=lambda clean, inputs: clean, loss_fn=ae.reconstruction_loss, order=("zero", "backward", "step"),
          batch=None):
    def body(model, opt, clean, corrupt, x=None, batch_size=None):
        if batch is not None:
            clean = batch(x, batch_size)
        fed = inputs(clean, corrupt)
        loss = loss_fn(model(fed), target(clean, fed))
        for what in order:
            {"zero": opt.zero_grad, "backward": loss.backward, "step": opt.step}[what]()
        return loss
    return body


def _zero_first(model, opt, clean, corrupt, **_):
    model.zero_grad()
    x_hat = model(clean if corrupt is None else corrupt(clean))
    loss = F.mse_loss(x_hat, clean, reduction="sum") / len(clean)
    loss.backward()
    opt.step()
    return loss


def _no_history(model, x, steps, **kwargs):
    _loop(_step())(model, x, steps, **kwargs)
    return None


def _no_grad_loss(model, opt, clean, corrupt, **_):
    loss = ae.reconstruction_loss(ae.reconstruct_all(model, clean), clean)   # reconstruct_all runs under no_grad
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _item_loss(model, opt, clean, corrupt, **_):
    loss = ae.reconstruction_loss(model(clean), clean).item()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


TRAIN_MISTAKES = {
    "no zero_grad": (_loop(_step(order=("backward", "step"))), H.TRAIN_ACCUMULATES),
    "no backward": (_loop(_step(order=("zero", "step"))), H.TRAIN_NO_BACKWARD),
    "no step": (_loop(_step(order=("zero", "backward"))), H.TRAIN_NO_STEP),
    "zero_grad before step": (_loop(_step(order=("backward", "zero", "step"))), H.TRAIN_NO_STEP),
    "loss without gradient": (_loop(_no_grad_loss), H.TRAIN_NO_GRAD),
    "loss as a number": (_loop(_item_loss), H.TRAIN_LOSS_NUMBER),
    "target corrupted": (_loop(_step(target=lambda clean, inputs: inputs)), H.TRAIN_TARGET_CORRUPTED),
    "corruption ignored": (_loop(_step(inputs=lambda clean, corrupt: clean)), H.TRAIN_IGNORES_CORRUPT),
    "pixel mean": (_loop(_step(loss_fn=F.mse_loss)), H.TRAIN_PIXEL_MEAN),
    "its own batch": (_loop(_step(batch=lambda x, b: x[:b])), H.TRAIN_OTHER_DATA),
    "two steps per batch": (_loop(_step(order=("zero", "backward", "step", "step"))), H.TRAIN_CURVE),
    "no history": (_no_history, H.TRAIN_NO_HISTORY),
}


@pytest.mark.parametrize("fn", [ae.train_autoencoder, _loop(_step()), _loop(_zero_first),
                                in_float64(ae.train_autoencoder)],
                         ids=["reference", "stub-answered", "zero-first", "float64-wrapper"])
def test_check_train_accepts_correct_loops(fn, capsys):
    passes(utils.checks.check_train_autoencoder, fn, capsys)


@pytest.mark.parametrize("name", TRAIN_MISTAKES)
def test_check_train_names_each_mistake(name, capsys):
    fn, hint = TRAIN_MISTAKES[name]
    fails_with(utils.checks.check_train_autoencoder, fn, capsys, hint)


def test_check_train_shows_no_progress_bar_and_restores_it(capsys):
    before = utils.progress
    utils.checks.check_train_autoencoder(ae.train_autoencoder)
    assert utils.progress is before and utils.train.progress is before
    assert capsys.readouterr().err == ""


def test_train_autoencoder_is_fit_and_denoises_towards_the_clean_target():
    torch.manual_seed(0)
    cfg = ae.AEConfig(image_shape=(1, 8, 8), hidden=16, latent=2)
    x = (torch.rand(40, 1, 8, 8) > 0.7).float()
    a, b = ae.Autoencoder(cfg), ae.Autoencoder(cfg)
    b.load_state_dict(a.state_dict())
    history = ae.train_autoencoder(a, x, 20, batch_size=8)
    assert history.values["train"] == ae.fit(b, x, 20, batch_size=8)
    assert not a.training and np.mean(history.values["train"][-5:]) < np.mean(history.values["train"][:5])


def test_aeconfig_takes_the_older_tuple_and_refuses_two_layers():
    assert ae.AEConfig(hidden=(400,)).hidden == 400
    with pytest.raises(ValueError, match="one hidden layer"):
        ae.AEConfig(hidden=(400, 200))


def test_only_the_reference_architecture_is_cached_and_a_stale_cache_is_replaced(tmp_path):
    cfg = ae.AEConfig(image_shape=(1, 8, 8), hidden=16, latent=2)
    path = tmp_path / "models" / "ae.pt"
    with pytest.raises(ValueError, match="Only lesson 02's autoencoder"):
        ae.save(torch.nn.Linear(3, 3), path)
    learner = _Good(cfg)  # a learner's build that passed its check: the same layers
    path.parent.mkdir()
    torch.save({"encoder.net.1.0.weight": torch.zeros(3)}, path)   # the layout before the layers had names
    assert ae.save(learner, path) is True
    loaded = ae._load_into_reference(cfg, torch.load(path, weights_only=True))
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(loaded(x), learner.eval()(x))

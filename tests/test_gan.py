"""Lesson 04 (GANs): reference functions, checks (both directions, with their hints), explorers."""
import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from utils import checks, gan

bce = F.binary_cross_entropy_with_logits


def _hint(capsys):
    return capsys.readouterr().out


# --------------------------------------------------------------------------- losses

def test_reference_losses_have_known_values():
    zero = torch.zeros(4, 1)
    assert gan.d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert gan.g_loss(zero).item() == pytest.approx(math.log(2))
    big = torch.full((3,), 20.0)
    # D certain the fakes are fake: the saturating loss is flat, the non-saturating one is not
    x = (-big).requires_grad_()
    gan.g_loss_saturating(x).backward()
    assert x.grad.abs().max() < 1e-6
    x = (-big).requires_grad_()
    gan.g_loss(x).backward()
    assert x.grad.abs().min() > 0.3


def d_loss_averaged(r, f):
    return 0.5 * gan.d_loss(r, f)


def d_loss_concatenated(r, f):   # a single mean over both batches: a different objective when sizes differ
    logits = torch.cat([r, f])
    return 2 * bce(logits, torch.cat([torch.ones_like(r), torch.zeros_like(f)]))


@pytest.mark.parametrize("fn", [
    gan.d_loss,
    lambda r, f: -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean(),
    lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
    lambda r, f: nn.BCEWithLogitsLoss()(r, torch.ones_like(r)) + nn.BCEWithLogitsLoss()(f, torch.zeros_like(f)),
])
def test_check_d_loss_accepts_correct_variants(fn, capsys):
    assert checks.check_d_loss(fn)
    assert "correct" in _hint(capsys)


@pytest.mark.parametrize("fn, hint", [
    (lambda r, f: bce(r, torch.zeros_like(r)) + bce(f, torch.ones_like(f)), "swapped"),
    (lambda r, f: bce(torch.sigmoid(r), torch.ones_like(r)) + bce(torch.sigmoid(f), torch.zeros_like(f)),
     "applies the sigmoid itself"),
    (d_loss_averaged, "averaged"),
    (lambda r, f: bce(r, torch.ones_like(r)), "only the real term"),
    (lambda r, f: bce(r, torch.ones_like(r), reduction="sum") + bce(f, torch.zeros_like(f), reduction="sum"),
     "not the sum"),
    (lambda r, f: torch.tensor(gan.d_loss(r, f).item()), "no gradient"),
    (lambda r, f: bce(r, torch.ones_like(r), reduction="none") + bce(f, torch.zeros_like(f), reduction="none"),
     "single number"),
    (d_loss_concatenated, "separately"),
    (lambda r, f: None, "forget a `return`"),
])
def test_check_d_loss_rejects_mistakes_with_their_hint(fn, hint, capsys):
    assert not checks.check_d_loss(fn)
    assert hint in _hint(capsys)


def test_check_d_loss_reports_not_implemented(capsys):
    def stub(r, f):
        raise NotImplementedError()
    assert not checks.check_d_loss(stub)
    assert "not implemented" in _hint(capsys)


@pytest.mark.parametrize("fn", [
    gan.g_loss,
    lambda f: -torch.log(torch.sigmoid(f)).mean(),
    lambda f: F.softplus(-f).mean(),
])
def test_check_g_loss_accepts_correct_variants(fn, capsys):
    assert checks.check_g_loss(fn)


@pytest.mark.parametrize("fn, hint", [
    (gan.g_loss_saturating, "saturating"),
    (lambda f: torch.log(1 - torch.sigmoid(f)).mean(), "saturating"),
    (lambda f: bce(f, torch.zeros_like(f)), "target 0"),
    (lambda f: bce(torch.sigmoid(f), torch.ones_like(f)), "applies the sigmoid itself"),
    (lambda f: -bce(f, torch.ones_like(f)), "sign is flipped"),
])
def test_check_g_loss_rejects_mistakes_with_their_hint(fn, hint, capsys):
    assert not checks.check_g_loss(fn)
    assert hint in _hint(capsys)


# --------------------------------------------------------------------------- the training step

def _result(loss_d, loss_g, real_logits, fake_logits):
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "D(x)": torch.sigmoid(real_logits).mean().item(), "D(G(z))": torch.sigmoid(fake_logits).mean().item()}


def step_without_detach(G, D, opt_g, opt_d, real, z):
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake)
    loss_d = gan.d_loss(real_logits, fake_logits)
    opt_d.zero_grad(); loss_d.backward(retain_graph=True); opt_d.step()
    loss_g = gan.g_loss(D(fake))
    opt_g.zero_grad(); loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


def step_reusing_detached_logits(G, D, opt_g, opt_d, real, z):
    fake = G(z).detach()
    real_logits, fake_logits = D(real), D(fake)
    loss_d = gan.d_loss(real_logits, fake_logits)
    opt_d.zero_grad(); loss_d.backward(); opt_d.step()
    loss_g = gan.g_loss(D(fake))
    opt_g.zero_grad(); loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


def step_no_zero_grad_d(G, D, opt_g, opt_d, real, z):
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake.detach())
    loss_d = gan.d_loss(real_logits, fake_logits)
    loss_d.backward(); opt_d.step()
    loss_g = gan.g_loss(D(fake))
    opt_g.zero_grad(); loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


def step_g_first(G, D, opt_g, opt_d, real, z):
    fake = G(z)
    loss_g = gan.g_loss(D(fake))
    opt_g.zero_grad(); loss_g.backward(); opt_g.step()
    real_logits, fake_logits = D(real), D(fake.detach())
    loss_d = gan.d_loss(real_logits, fake_logits)
    opt_d.zero_grad(); loss_d.backward(); opt_d.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


def step_saturating(G, D, opt_g, opt_d, real, z):
    return gan.gan_step(G, D, opt_g, opt_d, real, z, g_loss=gan.g_loss_saturating)


def step_zero_grad_everything_first(G, D, opt_g, opt_d, real, z):   # a correct variant: zero both up front
    opt_d.zero_grad(); opt_g.zero_grad()
    fake = G(z)
    real_logits = D(real)
    fake_logits = D(fake.detach())
    loss_d = gan.d_loss(real_logits, fake_logits)
    loss_d.backward(); opt_d.step()
    opt_g.zero_grad()
    loss_g = gan.g_loss(D(G(z)))
    loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


@pytest.mark.parametrize("fn", [gan.gan_step, step_zero_grad_everything_first])
def test_check_gan_step_accepts_correct_steps(fn, capsys):
    assert checks.check_gan_step(fn)


@pytest.mark.parametrize("fn, hint", [
    (step_without_detach, "detach"),
    (step_reusing_detached_logits, "G did not change"),
    (step_no_zero_grad_d, "zero_grad"),
    (step_g_first, "update D first"),
    (step_saturating, "saturating"),
])
def test_check_gan_step_rejects_mistakes_with_their_hint(fn, hint, capsys):
    assert not checks.check_gan_step(fn)
    assert hint in _hint(capsys)


# --------------------------------------------------------------------------- label conditioning

@pytest.mark.parametrize("fn", [
    gan.condition_on_label,
    lambda h, y, emb: torch.cat([emb(y), h], dim=1),
    lambda h, y, emb: torch.hstack([h, emb.weight[y]]),
])
def test_check_condition_on_label_accepts_both_orders(fn, capsys):
    assert checks.check_condition_on_label(fn)


@pytest.mark.parametrize("fn, hint", [
    (lambda h, y, emb: h + emb(y), "rather than adding"),
    (lambda h, y, emb: torch.cat([h, emb(y)], dim=0), "dim=0"),
    (lambda h, y, emb: torch.cat([h, y.float().unsqueeze(1)], dim=1), "raw label"),
    (lambda h, y, emb: torch.cat([h, F.one_hot(y, 10).float()], dim=1), "one-hot"),
    (lambda h, y, emb: torch.cat([h, emb(y).detach()], dim=1), "no gradient"),
    (lambda h, y, emb: torch.cat([h, emb(y[:1]).expand(len(y), -1)], dim=1), "first label"),
])
def test_check_condition_on_label_rejects_mistakes_with_their_hint(fn, hint, capsys):
    assert not checks.check_condition_on_label(fn)
    assert hint in _hint(capsys)


def test_checks_refuse_a_non_function():
    with pytest.raises(TypeError):
        checks.check_d_loss(3)


# --------------------------------------------------------------------------- toy data and coverage

def test_ring_data_and_perfect_coverage():
    g = torch.Generator().manual_seed(0)
    x = gan.ring_of_gaussians(4000, generator=g)
    assert x.shape == (4000, 2)
    assert x.norm(dim=1).mean().item() == pytest.approx(2.0, abs=0.02)
    m = gan.mode_coverage(x, gan.ring_centres())
    assert m["coverage"] == 1.0 and m["modes_covered"] == 8
    assert m["quality"] > 0.98                                 # 3 std in 2-D holds ~98.9 %
    assert m["counts"].sum() == round(m["quality"] * 4000)


def test_mode_coverage_of_a_collapsed_and_a_blurry_generator():
    centres = gan.ring_centres()
    collapsed = centres[2] + 0.01 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    m = gan.mode_coverage(collapsed, centres)
    assert m["coverage"] == pytest.approx(1 / 8) and m["quality"] == 1.0
    blurry = torch.zeros(1000, 2)                              # everything at the centre of the ring
    m = gan.mode_coverage(blurry, centres)
    assert m["coverage"] == 0.0 and m["quality"] == 0.0


def test_mode_coverage_min_share():
    centres = gan.ring_centres(4)
    pts = torch.cat([centres[0].expand(995, 2), centres[1].expand(5, 2)])
    assert gan.mode_coverage(pts, centres, min_share=0.01)["modes_covered"] == 1   # 5 < 10 samples
    assert gan.mode_coverage(pts, centres, min_share=0.005)["modes_covered"] == 2


# --------------------------------------------------------------------------- snapshots and explorers

def _toy_nets():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))


def test_snapshot_contents_and_scrubber_range_ends():
    G, D = _toy_nets()
    z_grid = gan.latent_grid(side=5)
    snaps = [gan.take_snapshot(s, G, D, torch.randn(50, 2), z_grid, resolution=20, losses={"loss_d": 1.2})
             for s in (0, 10, 20)]
    assert snaps[0]["fake"].shape == (50, 2) and snaps[0]["heat"].shape == (20, 20) and snaps[0]["grid"].shape == (25, 2)
    assert ((snaps[0]["heat"] >= 0) & (snaps[0]["heat"] <= 1)).all()
    real = gan.ring_of_gaussians(100)
    for index in (0, 2, 99, -5):                               # slider ends and beyond: clipped, never an error
        fig = gan.draw_snapshot(snaps, index, real=real)
        assert isinstance(fig, Figure)
    assert "step 20" in gan.draw_snapshot(snaps, 2).axes[0].get_title()
    assert "step 0" in gan.draw_snapshot(snaps, -5).axes[0].get_title()
    with pytest.raises(ValueError):
        gan.draw_snapshot([], 0)


def test_snapshot_leaves_training_mode_alone():
    G, D = _toy_nets()
    G.train(), D.eval()
    gan.take_snapshot(0, G, D, torch.randn(5, 2), gan.latent_grid(3), resolution=4)
    assert G.training and not D.training


class _FakeConditionalG(nn.Module):
    """Image brightness = digit / 9, plus a tiny dependence on z: easy to test."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, z, y):
        base = (y.float() / 9).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
        return (base + 0.01 * z[:, :1].view(-1, 1, 1, 1) * self.w).clamp(0, 1)


def test_class_samples_and_interpolation_explorers_at_range_ends():
    G = _FakeConditionalG()
    for digit, temperature in ((0, 0.0), (9, 1.5)):
        fig = gan.class_samples(G, digit, seed=0, temperature=temperature, n=16)
        assert isinstance(fig, Figure) and f"class {digit}" in fig.axes[0].get_title()
    for t in (0.0, 1.0, 1.5):
        fig = gan.interpolation(G, 9, t, seed_a=0, seed_b=1, steps=5)
        assert isinstance(fig, Figure)
    assert "t = 1.00" in gan.interpolation(G, 3, 1.5).axes[1].get_title()


def test_slerp_ends_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 64, generator=g), torch.randn(1, 64, generator=g)
    assert torch.allclose(gan.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(gan.slerp(a, b, 1.0), b, atol=1e-5)
    mid = gan.slerp(a, b, 0.5)
    assert mid.norm() > 0.9 * min(a.norm(), b.norm())     # a straight line would dip towards 0


# --------------------------------------------------------------------------- MNIST models, training, noise, files

@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("n_classes, size", [(0, 28), (10, 28), (10, 8)])
def test_build_gan_shapes(arch, n_classes, size):
    cfg = gan.GANConfig(image_size=size, n_classes=n_classes, arch=arch)
    G, D = gan.build_gan(cfg)
    z, y = torch.randn(6, cfg.z_dim), torch.arange(6) % 10
    x = G(z, y if n_classes else None)
    assert x.shape == (6, 1, size, size) and 0 <= x.min() and x.max() <= 1
    assert D(x, y if n_classes else None).shape == (6,)


def test_gan_config_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="arch"):
        gan.GANConfig(arch="transformer")
    with pytest.raises(ValueError, match="multiple of 4"):
        gan.GANConfig(image_size=30, arch="conv")


def test_projection_discriminator_uses_the_label():
    cfg = gan.GANConfig(n_classes=10)
    G, D = gan.build_gan(cfg)
    x = torch.rand(4, 1, 28, 28)
    D.eval()
    assert not torch.allclose(D(x, torch.zeros(4, dtype=torch.long)), D(x, torch.full((4,), 7)))


def test_spectral_norm_bounds_every_layer_of_the_conv_discriminator():
    _, D = gan.build_gan(gan.GANConfig(d_channels=8))
    for _ in range(30):                                    # power iterations run in training mode
        D(torch.rand(8, 1, 28, 28))
    D.eval()
    weights = [m.weight for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weights) == 3
    for w in weights:
        assert torch.linalg.matrix_norm(w.detach().flatten(1), ord=2) < 1.05
    _, D_plain = gan.build_gan(gan.GANConfig(d_channels=8, spectral_norm=False))
    assert not any(hasattr(m, "parametrizations") for m in D_plain.modules())


def test_hinge_losses_and_their_margins():
    assert gan.hinge_d_loss(torch.tensor([2.0, 1.0]), torch.tensor([-3.0, -1.0])).item() == 0.0  # beyond the margins
    assert gan.hinge_d_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2.0)         # D undecided
    assert gan.hinge_d_loss(torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(1.5)
    assert gan.hinge_g_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_mode_seeking_loss_known_values():
    z = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])          # |z_1 - z_2| = 1 per component
    a = torch.zeros(2, 1, 2, 2)
    fake = torch.cat([a, a + 0.5])                                # images differ by 0.5 per pixel
    assert gan.mode_seeking_loss(fake, z).item() == pytest.approx(1 / (0.5 + 1e-5), rel=1e-6)
    assert gan.mode_seeking_loss(torch.cat([a, a]), z).item() > 1e4   # identical images: a huge penalty


def test_cgan_step_updates_both_networks_and_reports_raw_logits():
    torch.manual_seed(0)
    G, D = gan.build_gan(gan.GANConfig(n_classes=10, image_size=8, g_channels=8, d_channels=4, z_dim=8))
    opt_g, opt_d = torch.optim.Adam(G.parameters(), lr=1e-2), torch.optim.Adam(D.parameters(), lr=1e-2)
    before_g = [p.detach().clone() for p in G.parameters()]
    before_d = [p.detach().clone() for p in D.parameters()]
    y = torch.arange(8) % 4
    stats = gan.cgan_step(G, D, opt_g, opt_d, torch.rand(8, 1, 8, 8), y, torch.randn(8, 8), y.repeat(1), 0.2)
    assert set(stats) == {"loss_d", "loss_g", "real logit", "fake logit"}
    assert any(not torch.equal(a, b) for a, b in zip(before_g, G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, D.parameters()))


def test_ema_update_ends_and_buffers():
    a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        b.weight.fill_(3.0)
        b.running_mean.fill_(2.0)
    gan.ema_update(a, b, decay=1.0)
    assert torch.equal(a.weight, torch.ones(3)) and torch.equal(a.running_mean, b.running_mean)
    gan.ema_update(a, b, decay=0.5)
    assert torch.allclose(a.weight, torch.full((3,), 2.0))
    gan.ema_update(a, b, decay=0.0)
    assert torch.equal(a.weight, b.weight)


def _tiny_cfg(**kw):
    return gan.GANConfig(**{"image_size": 8, "z_dim": 8, "g_channels": 8, "d_channels": 4, **kw})


@pytest.mark.parametrize("n_classes", [0, 10])
def test_train_gan_runs_its_steps_and_keeps_an_ema(n_classes):
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 10
    G, D = gan.build_gan(_tiny_cfg(n_classes=n_classes))
    losses, outputs, G_ema = gan.train_gan(G, D, x, y, gan.TrainConfig(steps=7, batch=8, ema_decay=0.9), verbose=False)
    assert len(losses.values["loss_d"]) == 7
    keys = {"real logit", "fake logit"} if n_classes else {"D(x)", "D(G(z))"}
    assert set(outputs.values) == keys
    assert G_ema is not None and any(not torch.equal(a, b) for a, b in zip(G_ema.parameters(), G.parameters()))
    assert gan.train_gan(G, D, x, y, gan.TrainConfig(steps=2, batch=8), verbose=False)[2] is None


def test_truncated_noise_is_inside_the_threshold_and_reproducible():
    z = gan.truncated_noise(2000, 16, threshold=0.5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2000, 16) and z.abs().max() <= 0.5
    assert z.std() > 0.25                 # resampled, not clipped: values spread over the whole interval
    assert (z.abs() > 0.45).float().mean() < 0.2
    again = gan.truncated_noise(2000, 16, threshold=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    with pytest.raises(ValueError, match="positive"):
        gan.truncated_noise(3, 4, threshold=0.0)


def test_sample_is_reproducible_and_leaves_training_mode_alone():
    G, _ = gan.build_gan(_tiny_cfg(n_classes=10))
    y = torch.arange(5)
    a, b = gan.sample(G, 5, y, seed=3), gan.sample(G, 5, y, seed=3)
    assert torch.equal(a, b) and a.shape == (5, 1, 8, 8) and G.training
    assert not torch.equal(a, gan.sample(G, 5, y, seed=3, truncation=0.5))
    zero = gan.sample(G, 5, torch.zeros(5, dtype=torch.long), seed=3, temperature=0.0)
    assert torch.allclose(zero, zero[:1].expand_as(zero))     # temperature 0: the same image every time


def test_class_samples_names_its_noise():
    G = _FakeConditionalG()
    assert "truncated at 0.50" in gan.class_samples(G, 2, truncation=0.5).axes[0].get_title()
    assert "temperature 0.70" in gan.class_samples(G, 2, temperature=0.7).axes[0].get_title()


def test_save_and_load_round_trip(tmp_path):
    G, D = gan.build_gan(_tiny_cfg(n_classes=10))
    G_ema = gan.train_gan(G, D, torch.rand(16, 1, 8, 8), torch.arange(16) % 10,
                          gan.TrainConfig(steps=2, batch=8, ema_decay=0.5), verbose=False)[2]
    path = gan.save_gan(tmp_path / "m.pt", G, D, G_ema)
    assert path.with_suffix(".json").exists()
    G2, D2, E2 = gan.load_gan(path, G.cfg)
    y = torch.arange(4)
    assert torch.equal(gan.sample(G, 4, y), gan.sample(G2, 4, y))
    assert torch.equal(gan.sample(G_ema, 4, y), gan.sample(E2, 4, y))
    x = torch.rand(4, 1, 8, 8)
    D.eval()
    assert torch.allclose(D(x, y), D2(x, y))


def test_load_gan_refuses_damaged_missing_or_mismatched_files(tmp_path, capsys):
    assert gan.load_gan(tmp_path / "none.pt") is None
    G, D = gan.build_gan(_tiny_cfg())
    path = gan.save_gan(tmp_path / "m.pt", G, D)
    assert gan.load_gan(path, _tiny_cfg(z_dim=16)) is None
    assert "another config" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])
    assert gan.load_gan(path) is None
    assert "trained again" in capsys.readouterr().out


def test_pretrained_cgan_retrains_a_damaged_file_and_then_loads_it(tmp_path, monkeypatch, capsys):
    import utils.runtime
    from utils.data import ImageData

    monkeypatch.setattr(utils.runtime, "DATA_DIR", tmp_path)
    monkeypatch.setattr(gan, "CGAN_CONFIG", _tiny_cfg(n_classes=10))
    monkeypatch.setattr(gan, "CGAN_TRAIN", gan.TrainConfig(steps=2, batch=8, ema_decay=0.9))
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    data = ImageData(x, y, x, y, name="tiny", source="test")
    path = gan.cgan_path(data)
    assert path.parent == tmp_path / "models"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    path.with_suffix(".json").write_text("{}")
    G, D, G_ema = gan.pretrained_cgan(data, verbose=False)
    G2, _, E2 = gan.pretrained_cgan(data, verbose=False)             # now loaded, not trained
    assert torch.equal(gan.sample(G_ema, 4, y[:4]), gan.sample(E2, 4, y[:4]))

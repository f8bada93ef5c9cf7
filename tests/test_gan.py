"""Lesson 04 (GANs): reference functions, checks (both directions, with their hints), explorers."""
import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from checking import fails_with, in_float64, passes
from utils import checks, gan
from utils.checks import gan as H
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED, NO_RETURN

bce = F.binary_cross_entropy_with_logits


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


@pytest.mark.parametrize("check, fn", [
    (checks.check_d_loss, gan.d_loss),
    (checks.check_d_loss, lambda r, f: -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean()),
    (checks.check_d_loss, lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean()),
    (checks.check_d_loss, lambda r, f: nn.BCEWithLogitsLoss()(r, torch.ones_like(r))
     + nn.BCEWithLogitsLoss()(f, torch.zeros_like(f))),
    (checks.check_d_loss, in_float64(gan.d_loss)),
    (checks.check_g_loss, gan.g_loss),
    (checks.check_g_loss, lambda f: -torch.log(torch.sigmoid(f)).mean()),
    (checks.check_g_loss, lambda f: F.softplus(-f).mean()),
    (checks.check_g_loss, in_float64(gan.g_loss)),
])
def test_loss_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


D_MISTAKES = {
    H.D_SWAPPED: lambda r, f: bce(r, torch.zeros_like(r)) + bce(f, torch.ones_like(f)),
    H.SIGMOID_TWICE: lambda r, f: bce(torch.sigmoid(r), torch.ones_like(r)) + bce(torch.sigmoid(f), torch.zeros_like(f)),
    H.D_SWAPPED_AND_SIGMOID: lambda r, f: bce(torch.sigmoid(r), torch.zeros_like(r)) + bce(torch.sigmoid(f), torch.ones_like(f)),
    H.D_AVERAGED: d_loss_averaged,
    H.D_ONLY_REAL: lambda r, f: bce(r, torch.ones_like(r)),
    H.D_ONLY_FAKE: lambda r, f: bce(f, torch.zeros_like(f)),
    H.D_SUM: lambda r, f: bce(r, torch.ones_like(r), reduction="sum") + bce(f, torch.zeros_like(f), reduction="sum"),
    H.D_SIGN: lambda r, f: -gan.d_loss(r, f),
    H.NO_GRAD: lambda r, f: torch.tensor(gan.d_loss(r, f).item()),
    H.NO_GRAD + " ": lambda r, f: gan.d_loss(r, f).item(),
    H.NOT_SCALAR: lambda r, f: bce(r, torch.ones_like(r), reduction="none") + bce(f, torch.zeros_like(f), reduction="none"),
    H.D_SEPARATELY: d_loss_concatenated,
    IN_PLACE.format("fake_logits"): lambda real_logits, fake_logits: gan.d_loss(real_logits, fake_logits.data.neg_()),
    NO_RETURN: lambda r, f: None,
}


@pytest.mark.parametrize("hint", D_MISTAKES)
def test_check_d_loss_names_each_mistake(hint, capsys):
    fails_with(checks.check_d_loss, D_MISTAKES[hint], capsys, hint.strip())


def test_check_d_loss_reports_not_implemented(capsys):
    def stub(r, f):
        raise NotImplementedError()
    fails_with(checks.check_d_loss, stub, capsys, NOT_IMPLEMENTED)


G_MISTAKES = {
    H.G_SATURATING: gan.g_loss_saturating,
    H.G_SATURATING + " ": lambda f: torch.log(1 - torch.sigmoid(f)).mean(),
    H.G_TARGET_ZERO: lambda f: bce(f, torch.zeros_like(f)),
    H.SIGMOID_TWICE: lambda f: bce(torch.sigmoid(f), torch.ones_like(f)),
    H.G_SIGN: lambda f: -bce(f, torch.ones_like(f)),
    H.G_SUM: lambda f: bce(f, torch.ones_like(f), reduction="sum"),
    H.NO_GRAD: lambda f: gan.g_loss(f).detach(),
    IN_PLACE.format("fake_logits"): lambda fake_logits: gan.g_loss(fake_logits.data.clamp_(-1, 1)),
}


@pytest.mark.parametrize("hint", G_MISTAKES)
def test_check_g_loss_names_each_mistake(hint, capsys):
    fails_with(checks.check_g_loss, G_MISTAKES[hint], capsys, hint.strip())


# --------------------------------------------------------------------------- the training step

def _result(loss_d, loss_g, real_logits, fake_logits):
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "D(x)": torch.sigmoid(real_logits).mean().item(), "D(G(z))": torch.sigmoid(fake_logits).mean().item()}


def _step(G, D, opt_g, opt_d, real, z, detach=True, zero_d=True, zero_g=True, zero_d_twice=False, g_first=False,
          reuse_logits=False, detach_logits=False, detach_all=False, g_loss=gan.g_loss, tensors=False):
    """The reference step written out, with one of the learner's mistakes switched on."""
    fake = G(z).detach() if detach_all else G(z)

    def update_d():
        real_logits = D(real)
        fake_logits = D(fake).detach() if detach_logits else D(fake.detach() if detach else fake)
        loss_d = gan.d_loss(real_logits, fake_logits)
        if zero_d:
            opt_d.zero_grad()
        loss_d.backward(retain_graph=True)
        opt_d.step()
        return loss_d, real_logits, fake_logits

    def update_g(fake_logits):
        loss_g = g_loss(fake_logits if reuse_logits else D(fake))
        if zero_d_twice:
            opt_d.zero_grad()
        elif zero_g:
            opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_g

    if g_first:
        loss_g = update_g(None)
        loss_d, real_logits, fake_logits = update_d()
    else:
        loss_d, real_logits, fake_logits = update_d()
        loss_g = update_g(fake_logits)
    if tensors:
        return {"loss_d": loss_d, "loss_g": loss_g}
    return _result(loss_d, loss_g, real_logits, fake_logits)


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


def step_with_module_zero_grad(G, D, opt_g, opt_d, real, z):   # a correct variant: the modules' own zero_grad
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake.detach())
    loss_d = gan.d_loss(real_logits, fake_logits)
    D.zero_grad(); loss_d.backward(); opt_d.step()
    loss_g = gan.g_loss(D(fake))
    G.zero_grad(); loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


@pytest.mark.parametrize("fn", [gan.gan_step, step_zero_grad_everything_first, step_with_module_zero_grad,
                                lambda *a: _step(*a, tensors=True), in_float64(lambda *a: _step(*a, tensors=True))])
def test_check_gan_step_accepts_correct_steps(fn, capsys):
    passes(checks.check_gan_step, fn, capsys)


def _stale_logits_step(G, D, opt_g, opt_d, real, z):   # D(fake) once, reused for G after D has changed
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake)
    loss_d = gan.d_loss(real_logits, fake_logits.detach())
    opt_d.zero_grad(); loss_d.backward(); opt_d.step()
    loss_g = gan.g_loss(fake_logits)
    opt_g.zero_grad(); loss_g.backward(); opt_g.step()
    return _result(loss_d, loss_g, real_logits, fake_logits)


STEP_MISTAKES = {
    H.STEP_NO_DETACH: lambda *a: _step(*a, detach=False),
    H.STEP_G_UNCHANGED: lambda *a: _step(*a, detach_all=True),
    H.STEP_CUT_OFF: lambda *a: _step(*a, g_loss=lambda logits: gan.g_loss(logits.detach())),
    H.STEP_STALE_LOGITS: _stale_logits_step,
    H.STEP_STALE_LOGITS + " ": lambda *a: _step(*a, reuse_logits=True),
    H.STEP_D_GRADS_KEPT: lambda *a: _step(*a, zero_d=False),
    H.STEP_G_GRADS_KEPT: lambda *a: _step(*a, zero_g=False),
    H.STEP_G_GRADS_KEPT + " ": lambda *a: _step(*a, zero_d_twice=True),
    H.STEP_DETACHED_LOGITS: lambda *a: _step(*a, detach_logits=True),
    H.STEP_ORDER: lambda *a: _step(*a, g_first=True),
    H.STEP_SATURATING: lambda *a: _step(*a, g_loss=gan.g_loss_saturating),
    H.STEP_COUNTS: lambda G, D, opt_g, opt_d, real, z: [_step(G, D, opt_g, opt_d, real, z) for _ in range(2)][-1],
    H.STEP_RETURN: lambda *a: _step(*a)["loss_d"],
    H.STEP_LOSSES: lambda *a: {**_step(*a), "loss_g": 0.0},
    NOT_IMPLEMENTED: lambda *a: (_ for _ in ()).throw(NotImplementedError()),
}


@pytest.mark.parametrize("hint", STEP_MISTAKES)
def test_check_gan_step_names_each_mistake(hint, capsys):
    fails_with(checks.check_gan_step, STEP_MISTAKES[hint], capsys, hint.strip())


def test_check_gan_step_is_fast_on_its_first_call_in_a_fresh_process():
    import subprocess
    import sys
    from pathlib import Path
    code = ("import time, utils.checks, utils.gan; t = time.perf_counter(); "
            "ok = utils.checks.check_gan_step(utils.gan.gan_step); print(ok, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert out[-2] == "True" and float(out[-1]) < 1.0, out


# --------------------------------------------------------------------------- label conditioning

@pytest.mark.parametrize("fn", [
    gan.condition_on_label,
    lambda h, y, emb: torch.cat([emb(y), h], dim=1),
    lambda h, y, emb: torch.hstack([h, emb.weight[y]]),
    in_float64(gan.condition_on_label),
    lambda h, y, emb: torch.cat([h.double(), emb(y)], dim=1),
])
def test_check_condition_on_label_accepts_both_orders_and_float64(fn, capsys):
    passes(checks.check_condition_on_label, fn, capsys)


COND_MISTAKES = {
    H.COND_WIDTH_OF_H: lambda h, y, emb: h + emb(y),
    H.COND_DIM0: lambda h, y, emb: torch.cat([h, emb(y)], dim=0),
    H.COND_RAW_LABEL: lambda h, y, emb: torch.cat([h, y.float().unsqueeze(1)], dim=1),
    H.COND_ONE_HOT: lambda h, y, emb: torch.cat([h, F.one_hot(y, 10).float()], dim=1),
    H.COND_NO_GRAD: lambda h, y, emb: torch.cat([h, emb(y).detach()], dim=1),
    H.COND_FIRST_LABEL: lambda h, y, emb: torch.cat([h, emb(y[:1]).expand(len(y), -1)], dim=1),
    H.COND_STACKED: lambda h, y, emb: torch.stack([h, emb(y)], dim=1),
    IN_PLACE.format("h"): lambda h, y, emb: torch.cat([h.mul_(1.0).add_(1.0), emb(y)], dim=1),
}


@pytest.mark.parametrize("hint", COND_MISTAKES)
def test_check_condition_on_label_names_each_mistake(hint, capsys):
    fails_with(checks.check_condition_on_label, COND_MISTAKES[hint], capsys, hint)


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


# --------------------------------------------------------------------------- the build: the conditional networks

class LearnerGenerator(nn.Module):
    """A learner's ConvGenerator, written out as in the notebook; ``mistake`` names one typical error."""

    def __init__(self, cfg, mistake=""):
        super().__init__()
        if mistake != "no cfg":
            self.cfg = cfg
        self.mistake = mistake
        c, s = cfg.g_channels, cfg.image_size // 4
        self.embed = nn.Embedding(cfg.n_classes, cfg.z_dim) if cfg.n_classes else None
        z_in = cfg.z_dim * (2 if cfg.n_classes and mistake != "no room for the label" else 1)
        self.project = nn.Sequential(nn.Linear(z_in, 2 * c * s * s), nn.BatchNorm1d(2 * c * s * s), nn.ReLU())
        act = nn.LeakyReLU(0.2) if mistake == "leaky" else nn.ReLU()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), act,
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1),
            *([] if mistake == "no batch norm" else [nn.BatchNorm2d(c // 2)]), nn.ReLU(),
            nn.Conv2d(c // 2, 1, 3, padding=1))

    def forward(self, z, y=None):
        m = self.mistake
        if m == "eval inside":
            self.eval()
        if m == "frozen batch norm":
            self.project.eval()
        if self.embed is not None and m not in ("no room for the label", "label not fed"):
            if m == "label first":
                z = torch.cat([self.embed(y), z], dim=1)
            else:
                z = gan.condition_on_label(z, torch.zeros_like(y) if m == "label ignored" else y, self.embed)
        c, s = self.cfg.g_channels, self.cfg.image_size // 4
        x = self.up(self.project(z).view(-1, 2 * c, s, s))               # (B, 1, H, W)
        if m == "flat":
            return torch.sigmoid(x).flatten(1)
        return {"tanh": torch.tanh, "no sigmoid": lambda t: t}.get(m, torch.sigmoid)(x)


class LearnerGenerator64(LearnerGenerator):
    def forward(self, z, y=None):
        return super().forward(z, y).double()


@pytest.mark.parametrize("cls", [gan.ConvGenerator, LearnerGenerator, LearnerGenerator64])
def test_check_ConvGenerator_accepts_the_reference_and_a_learners_own_class(cls, capsys):
    passes(checks.check_ConvGenerator, cls, capsys)


def _learner(cls, mistake):
    return lambda cfg: cls(cfg, mistake)


G_BUILD_MISTAKES = {
    H.G_NO_CFG: "no cfg",
    H.G_NO_LABEL: "no room for the label",
    H.G_LABEL_NOT_FED: "label not fed",
    H.G_IGNORES_LABEL: "label ignored",
    H.G_LABEL_FIRST: "label first",
    H.G_RANGE: "tanh",
    H.G_RANGE + " ": "no sigmoid",
    H.G_SHAPE: "flat",
    H.G_VALUES: "leaky",
    H.LAYOUT: "no batch norm",
    H.MODE_CHANGED: "eval inside",
    H.TRAIN_MODE: "frozen batch norm",
}


@pytest.mark.parametrize("hint", G_BUILD_MISTAKES)
def test_check_ConvGenerator_names_each_mistake(hint, capsys):
    fails_with(checks.check_ConvGenerator, _learner(LearnerGenerator, G_BUILD_MISTAKES[hint]), capsys, hint.strip())


def test_check_ConvGenerator_names_frozen_layers_and_a_generator_that_does_not_learn(capsys):
    class Frozen(LearnerGenerator):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.up.requires_grad_(False)

    class HidesItsParameters(LearnerGenerator):      # an optimiser given parameters() would update nothing
        def parameters(self, recurse=True):
            return iter(())

    fails_with(checks.check_ConvGenerator, Frozen, capsys, H.FROZEN)
    fails_with(checks.check_ConvGenerator, HidesItsParameters, capsys, H.NOT_LEARNING)


def test_check_ConvGenerator_unattempted_or_not_a_module(capsys):
    class Stub(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            raise NotImplementedError()

    fails_with(checks.check_ConvGenerator, Stub, capsys, NOT_IMPLEMENTED)
    fails_with(checks.check_ConvGenerator, lambda cfg: "a generator", capsys, "not an nn.Module")


class LearnerDiscriminator(nn.Module):
    """A learner's ConvDiscriminator; ``mistake`` names one typical error."""

    def __init__(self, cfg, mistake=""):
        super().__init__()
        self.mistake = mistake
        c, s = cfg.d_channels, cfg.image_size // 4
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda layer: layer)
        if mistake == "old spectral norm":
            sn = nn.utils.spectral_norm if cfg.spectral_norm else sn
        if mistake == "spectral norm always":
            sn = nn.utils.parametrizations.spectral_norm
        act = nn.ReLU if mistake == "relu" else (lambda: nn.LeakyReLU(0.2))
        self.features = nn.Sequential(sn(nn.Conv2d(1, c, 4, stride=2, padding=1)), act(),
                                      sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), act(), nn.Flatten())
        d = 2 * c * s * s
        self.out = nn.Linear(d, 1) if mistake == "no spectral norm on out" else sn(nn.Linear(d, 1))
        self.embed = nn.Embedding(cfg.n_classes, d) if cfg.n_classes else None

    def forward(self, x, y=None):
        m = self.mistake
        if m == "train inside":
            self.train()
        x = x if m == "not centred" else 2 * x - 1
        h = self.features(x.detach() if m == "detached input" else x)         # (B, F)
        if m == "dropout":
            h = F.dropout(h, 0.3, self.training)
        logit = self.out(h) if m == "no squeeze" else self.out(h).squeeze(1)   # (B,)
        if self.embed is not None and m != "label ignored":
            logit = logit + (self.embed(y) * h).sum(dim=1)
        if m == "column":
            logit = logit.unsqueeze(1)
        return torch.sigmoid(logit) if m == "sigmoid" else logit


class LearnerDiscriminator64(LearnerDiscriminator):
    def forward(self, x, y=None):
        return super().forward(x, y).double()


@pytest.mark.parametrize("cls", [gan.ConvDiscriminator, LearnerDiscriminator, LearnerDiscriminator64])
def test_check_ConvDiscriminator_accepts_the_reference_and_a_learners_own_class(cls, capsys):
    passes(checks.check_ConvDiscriminator, cls, capsys)


D_BUILD_MISTAKES = {
    H.D_NO_SN: "no spectral norm on out",
    H.D_OLD_SN: "old spectral norm",
    H.D_SN_WHEN_OFF: "spectral norm always",
    H.D_SIGMOID: "sigmoid",
    H.D_TABLE: "no squeeze",
    H.D_COLUMN: "column",
    H.D_NOT_CENTRED: "not centred",
    H.D_IGNORES_LABEL: "label ignored",
    H.D_RANDOM: "dropout",
    H.D_INPUT_DETACHED: "detached input",
    H.D_VALUES: "relu",
    H.MODE_CHANGED: "train inside",
}


@pytest.mark.parametrize("hint", D_BUILD_MISTAKES)
def test_check_ConvDiscriminator_names_each_mistake(hint, capsys):
    fails_with(checks.check_ConvDiscriminator, _learner(LearnerDiscriminator, D_BUILD_MISTAKES[hint]), capsys, hint)


def test_the_learners_networks_train_like_the_references_and_save_in_its_format(tmp_path):
    cfg = _tiny_cfg(n_classes=10)
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
    runs = []
    for make_g, make_d in ((gan.ConvGenerator, gan.ConvDiscriminator), (LearnerGenerator, LearnerDiscriminator)):
        torch.manual_seed(0)
        G, D = make_g(cfg), make_d(cfg)
        losses, *_ = gan.train_gan(G, D, x, y, gan.TrainConfig(steps=4, batch=8), verbose=False)
        runs.append((G, D, losses.values["loss_d"]))
    assert runs[0][2] == pytest.approx(runs[1][2], abs=1e-5)        # same init, same steps, same losses
    path = gan.save_gan(tmp_path / "learner.pt", runs[1][0], runs[1][1])
    G2, _, _ = gan.load_gan(path, cfg)                               # lesson 07 loads it with the reference classes
    runs[1][0].eval()
    assert torch.allclose(gan.sample(G2, 4, y[:4]), gan.sample(runs[1][0], 4, y[:4]), atol=1e-6)


def test_check_ConvDiscriminator_names_frozen_layers_and_a_discriminator_that_does_not_learn(capsys):
    class Frozen(LearnerDiscriminator):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.out.requires_grad_(False)

    class HidesItsParameters(LearnerDiscriminator):
        def parameters(self, recurse=True):
            return iter(())

    fails_with(checks.check_ConvDiscriminator, Frozen, capsys, H.FROZEN)
    fails_with(checks.check_ConvDiscriminator, HidesItsParameters, capsys, H.NOT_LEARNING)

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

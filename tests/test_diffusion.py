"""Lesson 05 (diffusion): schedules, reference answers, checks (both ways) and the scrubber functions."""
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

import utils
from utils import diffusion as D
from checking import fails_with, in_float64, passes
from utils.checks import diffusion as CD
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED, VALUES_OFF


# --------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_are_valid(kind):
    s = D.make_schedule(kind, 1000)
    assert s.T == 1000 and s.betas.shape == (1000,)
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all()          # noise only grows
    assert s.alpha_bars[0] > 0.99 and s.alpha_bars[-1] < 1e-3     # clean at the start, noise at the end
    snr = s.snr()
    assert (snr[1:] < snr[:-1]).all()
    assert s.posterior_variance[0] == 0


def test_cosine_keeps_more_signal_in_the_middle():
    lin, cos = D.make_schedule("linear"), D.make_schedule("cosine")
    assert cos.alpha_bars[500] > lin.alpha_bars[500]


def test_short_linear_schedule_stays_valid():
    for T in (10, 50, 100):
        s = D.linear_schedule(T)
        assert (s.betas < 1).all() and s.alpha_bars[-1] < 0.05


def test_make_schedule_rejects_unknown_kind():
    with pytest.raises(ValueError, match="linear"):
        D.make_schedule("quadratic")


# --------------------------------------------------------------------------- references

def test_q_sample_ends():
    s = D.make_schedule("linear", 1000)
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    noise = torch.randn(2, 1, 4, 4)
    early = D.q_sample(x0, torch.tensor([0, 0]), noise, s)
    late = D.q_sample(x0, torch.tensor([999, 999]), noise, s)
    assert torch.allclose(early, x0, atol=0.05)
    assert torch.allclose(late, noise, atol=0.01)


def test_q_sample_has_the_right_variance():
    s = D.make_schedule("cosine", 1000)
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    t = torch.full((20000,), 400)
    xt = D.q_sample(x0, t, torch.randn_like(x0), s)
    ab = s.alpha_bars[400].item()
    assert abs(xt.mean().item() - 0.5 * math.sqrt(ab)) < 0.02
    assert abs(xt.var().item() - (1 - ab)) < 0.03


def test_p_sample_inverts_q_with_the_true_noise_at_t0():
    """At t = 0 with the exact noise, one reverse step recovers x_0 exactly."""
    s = D.make_schedule("linear", 100)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    eps = torch.randn_like(x0)
    x1 = D.q_sample(x0, torch.zeros(3, dtype=torch.long), eps, s)
    back = D.p_sample(x1, 0, eps, s, noise=torch.randn_like(x0))
    assert torch.allclose(back, x0, atol=1e-5)


def test_guidance_endpoints():
    c, u = torch.randn(3), torch.randn(3)
    assert torch.allclose(D.guidance(c, u, 0.0), u)
    assert torch.allclose(D.guidance(c, u, 1.0), c)
    assert torch.allclose(D.guidance(c, u, 3.0), u + 3 * (c - u))


def test_loss_is_zero_for_a_perfect_noise_predictor():
    s = D.make_schedule("linear", 50)
    x0 = torch.rand(4, 1, 3, 3)
    noise = torch.randn_like(x0)
    t = torch.tensor([1, 5, 20, 49])

    class Oracle(torch.nn.Module):
        def forward(self, x, t_, y):
            return noise

    assert D.diffusion_loss(Oracle(), x0, t, noise, torch.zeros(4, dtype=torch.long), s).item() == 0.0


# --------------------------------------------------------------------------- checks accept correct answers

def _q_with_gather(x0, t, noise, schedule):
    ab = schedule.alpha_bars.gather(0, t)[:, None, None, None]
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise


def _q_with_reshape(x0, t, noise, schedule):
    ab = schedule.alpha_bars[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return ab ** 0.5 * x0 + (1 - ab) ** 0.5 * noise


def _q_with_cumprod(x0, t, noise, schedule):  # recomputes alpha_bar from the alphas, in float64
    ab = torch.cumprod(schedule.alphas.double(), 0)[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def _p_mean(x_t, t, eps, s):
    return (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()


def _p_posterior_variance(x_t, t, eps, s, noise):  # sigma^2 = beta tilde, also in the DDPM paper
    return _p_mean(x_t, t, eps, s) + s.posterior_variance[t].sqrt() * noise


def _p_always_mask(x_t, t, eps, s, noise):  # noise multiplied by (t > 0)
    return _p_mean(x_t, t, eps, s) + float(t > 0) * s.betas[t].sqrt() * noise


def _p_via_x0(x_t, t, eps, s, noise):  # predicted x0, then the posterior mean (same value)
    ab, ab_prev, a, b = s.alpha_bars[t], s.alpha_bars_prev[t], s.alphas[t], s.betas[t]
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    mean = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    return mean + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)


@pytest.mark.parametrize("check, fn", [
    (utils.checks.check_q_sample, D.q_sample),
    (utils.checks.check_q_sample, _q_with_gather),
    (utils.checks.check_q_sample, _q_with_reshape),
    (utils.checks.check_q_sample, _q_with_cumprod),
    (utils.checks.check_q_sample, in_float64(D.q_sample)),
    (utils.checks.check_diffusion_loss, D.diffusion_loss),
    (utils.checks.check_diffusion_loss, lambda model, x0, t, noise, y, s:
     torch.nn.functional.mse_loss(model(D.q_sample(x0, t, noise, s), t, y), noise)),
    (utils.checks.check_diffusion_loss, in_float64(D.diffusion_loss)),
    (utils.checks.check_p_sample, D.p_sample),
    (utils.checks.check_p_sample, _p_posterior_variance),
    (utils.checks.check_p_sample, _p_always_mask),
    (utils.checks.check_p_sample, _p_via_x0),
    (utils.checks.check_p_sample, in_float64(D.p_sample)),
    (utils.checks.check_guidance, D.guidance),
    (utils.checks.check_guidance, lambda c, u, w: (1 - w) * u + w * c),
    (utils.checks.check_guidance, lambda c, u, w: u + w * c - w * u),
    (utils.checks.check_guidance, lambda c, u, w: torch.lerp(u, c, w)),
    (utils.checks.check_guidance, in_float64(D.guidance)),
])
def test_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


def test_checks_report_not_implemented(capsys):
    def stub(*args):
        raise NotImplementedError()

    for check in (utils.checks.check_q_sample, utils.checks.check_diffusion_loss, utils.checks.check_p_sample,
                  utils.checks.check_guidance):
        fails_with(check, stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- checks name typical mistakes

def _q_wrong(kind):
    def fn(x0, t, noise, s):
        ab = s.alpha_bars[t].view(-1, 1, 1, 1)
        a = s.alphas[t].view(-1, 1, 1, 1)
        if kind == "alpha":
            return a.sqrt() * x0 + (1 - a).sqrt() * noise
        if kind == "betas":   # 1 - beta_t is alpha_t: the same mistake written another way
            b = s.betas[t].view(-1, 1, 1, 1)
            return (1 - b).sqrt() * x0 + b.sqrt() * noise
        if kind == "nosqrt":
            return ab * x0 + (1 - ab) * noise
        if kind == "nosqrt_signal":
            return ab * x0 + (1 - ab).sqrt() * noise
        if kind == "nosqrt_noise":
            return ab.sqrt() * x0 + (1 - ab) * noise
        if kind == "swap":
            return (1 - ab).sqrt() * x0 + ab.sqrt() * noise
        if kind == "off_by_one":
            prev = s.alpha_bars_prev[t].view(-1, 1, 1, 1)
            return prev.sqrt() * x0 + (1 - prev).sqrt() * noise
        if kind == "broadcast":
            return s.alpha_bars[t].sqrt() * x0 + (1 - s.alpha_bars[t]).sqrt() * noise
        if kind == "own_noise":
            return ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn_like(x0)
        if kind == "in_place":
            return noise.mul_((1 - ab).sqrt()).add_(ab.sqrt() * x0)
        if kind == "random":
            return x0 + 0.1
    return fn


@pytest.mark.parametrize("kind, hint", [
    ("alpha", CD.Q_ALPHA),
    ("betas", CD.Q_ALPHA),
    ("nosqrt", CD.Q_NO_SQRTS),
    ("nosqrt_signal", CD.Q_NO_SQRT_SIGNAL),
    ("nosqrt_noise", CD.Q_NO_SQRT_NOISE),
    ("swap", CD.Q_SWAPPED),
    ("off_by_one", CD.Q_OFF_BY_ONE),
    ("broadcast", CD.BROADCAST_HINT),
    ("own_noise", CD.Q_OWN_NOISE),
    ("in_place", IN_PLACE.format("noise")),
    ("random", VALUES_OFF),
])
def test_q_sample_mistakes_are_named(kind, hint, capsys):
    fails_with(utils.checks.check_q_sample, _q_wrong(kind), capsys, hint)


def _loss_wrong(kind):
    def fn(model, x0, t, noise, y, s):
        x_t = D.q_sample(x0, t, noise, s)
        pred = model(x_t, t, y)
        if kind == "x0_target":
            return ((pred - x0) ** 2).mean()
        if kind == "xt_target":
            return ((pred - x_t) ** 2).mean()
        if kind == "clean_input":
            return ((model(x0, t, y) - noise) ** 2).mean()
        if kind == "sum":
            return ((pred - noise) ** 2).sum()
        if kind == "l1":
            return (pred - noise).abs().mean()
        if kind == "per_example":
            return ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        if kind == "item":
            return ((pred - noise) ** 2).mean().item()
        if kind == "no_label":
            return ((model(x_t, t) - noise) ** 2).mean()
        if kind == "args_order":
            return ((model(x_t, y, t) - noise) ** 2).mean()
        if kind == "alpha":
            a = s.alphas[t].view(-1, 1, 1, 1)
            return ((model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, y) - noise) ** 2).mean()
        if kind == "own_noise":
            fresh = torch.randn_like(x0)
            return ((model(D.q_sample(x0, t, fresh, s), t, y) - fresh) ** 2).mean()
        if kind == "in_place":
            return ((model(x0.mul_(s.alpha_bars[t].sqrt().view(-1, 1, 1, 1)).add_(
                (1 - s.alpha_bars[t]).sqrt().view(-1, 1, 1, 1) * noise), t, y) - noise) ** 2).mean()
    return fn


@pytest.mark.parametrize("kind, hint", [
    ("x0_target", CD.LOSS_X0_TARGET),
    ("xt_target", CD.LOSS_XT_TARGET),
    ("clean_input", CD.LOSS_CLEAN_INPUT),
    ("sum", CD.LOSS_SUM),
    ("l1", CD.LOSS_ABS),
    ("per_example", CD.LOSS_NOT_SCALAR),
    ("item", CD.LOSS_NO_GRAD),
    ("no_label", CD.LOSS_LABEL_ARGUMENT),
    ("args_order", CD.LOSS_ARGS_ORDER),
    ("alpha", CD.LOSS_ALPHA),
    ("own_noise", CD.LOSS_OWN_NOISE),
    ("in_place", IN_PLACE.format("x0")),
])
def test_loss_mistakes_are_named(kind, hint, capsys):
    fails_with(utils.checks.check_diffusion_loss, _loss_wrong(kind), capsys, hint)


def _p_wrong(kind):
    def fn(x_t, t, eps, s, noise):
        b, a, ab = s.betas[t], s.alphas[t], s.alpha_bars[t]
        sigma = b.sqrt()
        if kind == "sign":
            mean = (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt()
        elif kind == "alpha_bar":
            mean = (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt()
        elif kind == "nosqrt_alpha":
            mean = (x_t - b / (1 - ab).sqrt() * eps) / a
        elif kind == "nosqrt":
            mean = (x_t - b / (1 - ab) * eps) / a.sqrt()
        elif kind == "coef_alpha":
            mean = (x_t - b / (1 - a).sqrt() * eps) / a.sqrt()
        else:
            mean = _p_mean(x_t, t, eps, s)
        if kind == "sigma_beta":
            sigma = b
        if kind == "noise_at_0":
            return mean + sigma * noise
        if kind == "no_noise":
            return mean
        if kind == "own_noise":
            return mean + sigma * torch.randn_like(x_t) if t > 0 else mean
        if kind == "in_place":
            return x_t.sub_(b / (1 - ab).sqrt() * eps).div_(a.sqrt()).add_(sigma * noise if t > 0 else 0)
        return mean + sigma * noise if t > 0 else mean
    return fn


@pytest.mark.parametrize("kind, hint", [
    ("sign", CD.P_SIGN),
    ("alpha_bar", CD.P_ALPHA_BAR),
    ("nosqrt_alpha", CD.P_NO_SQRT_ALPHA),
    ("nosqrt", CD.P_NO_SQRT_COEF),
    ("coef_alpha", CD.P_COEF_ALPHA),
    ("sigma_beta", CD.P_SIGMA),
    ("noise_at_0", CD.P_NOISE_AT_ZERO),
    ("no_noise", CD.P_NO_NOISE),
    ("own_noise", CD.P_OWN_NOISE),
    ("in_place", IN_PLACE.format("x_t")),
])
def test_p_sample_mistakes_are_named(kind, hint, capsys):
    fails_with(utils.checks.check_p_sample, _p_wrong(kind), capsys, hint)


@pytest.mark.parametrize("fn, hint", [
    (lambda c, u, w: c + w * (u - c), CD.W_SWAPPED),
    (lambda c, u, w: c + w * (c - u), CD.W_PLUS_ONE),
    (lambda c, u, w: u + w * c, CD.W_SCALES_COND),
    (lambda c, u, w: w * c, CD.W_NO_START),
    (lambda c, u, w: w * (c - u), CD.W_DIRECTION_ONLY),
    (lambda c, u, w: c, CD.W_HINT),
    (lambda eps_cond, eps_uncond, w: eps_uncond.add_(w * (eps_cond - eps_uncond)), IN_PLACE.format("eps_uncond")),
])
def test_guidance_mistakes_are_named(fn, hint, capsys):
    fails_with(utils.checks.check_guidance, fn, capsys, hint)


def test_check_rejects_a_non_function():
    with pytest.raises(TypeError):
        utils.checks.check_guidance(3.0)


# --------------------------------------------------------------------------- explorers

@pytest.fixture
def digits():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 1, 8, 8, generator=g) * 2 - 1


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_forward_grid_ends(digits, kind):
    s = D.make_schedule(kind, 100)
    grid = D.forward_process_grid(digits, s, [0, 99])
    assert grid.shape == (3 * 9 + 1, 2 * 9 + 1)
    assert grid.min() >= 0 and grid.max() <= 1
    first = grid[1:9, 1:9]                       # first digit at t = 0: nearly the original
    assert np.abs(first - D.to_pixels(digits[0, 0]).numpy()).max() < 0.1
    last = grid[1:9, 10:18]                      # at t = T-1: unrelated to the digit
    assert np.abs(last - D.to_pixels(digits[0, 0]).numpy()).mean() > 0.2


@pytest.mark.parametrize("t", [0, 500, 999, -5, 5000])
def test_forward_scrubber_range_ends(digits, t):
    fig = D.forward_scrubber(digits, t, "cosine", T=1000)
    title = fig.axes[0].get_title()
    assert "t = " in title
    clamped = min(max(t, 0), 999)
    assert f"t = {clamped}:" in title


def test_reverse_scrubber_ends(digits):
    traj = torch.stack([torch.randn(3, 1, 8, 8), digits.clamp(-1, 1)])
    labels = ["x_T (pure noise)", "final"]
    first = D.reverse_scrubber(traj, labels, 0)
    last = D.reverse_scrubber(traj, labels, 1)
    assert "pure noise" in first.axes[0].get_title()
    assert "final" in last.axes[0].get_title()
    assert "final" in D.reverse_scrubber(traj, labels, 99).axes[0].get_title()   # clamped
    img = last.axes[0].images[0].get_array()
    assert img.shape == (9 + 1, 3 * 9 + 1)
    assert np.allclose(np.asarray(img)[1:9, 1:9], D.to_pixels(digits[0, 0]).numpy(), atol=1e-6)


def test_pixel_range_round_trip():
    x = torch.rand(5, 1, 4, 4)
    assert torch.allclose(D.to_pixels(D.to_model_range(x)), x, atol=1e-6)


@pytest.mark.parametrize("w", [0.0, 1.0, 6.0])
def test_guidance_view_range_ends(w):
    calls = []

    def fake_sampler(y, w_, seed):
        calls.append((y.clone(), w_, seed))
        return torch.zeros(len(y), 1, 8, 8)

    fig = D.guidance_view(fake_sampler, w, digit=7, n=4)
    y, w_seen, seed = calls[0]
    assert (y == 7).all() and len(y) == 4 and w_seen == w
    title = fig.axes[0].get_title()
    assert f"w = {w:g}" in title and "digit 7" in title
    assert ("label ignored" in title) == (w == 0)




def test_schedule_to_device_keeps_values():
    s = D.make_schedule("cosine", 100)
    moved = s.to("cpu")
    assert moved.name == "cosine" and torch.equal(moved.alpha_bars, s.alpha_bars)


# --------------------------------------------------------------------------- index convention, posterior variance

def test_forward_scrubber_title_names_the_image_after_step_t(digits):
    assert "t = 0: x_1," in D.forward_scrubber(digits, 0, "linear", T=50).axes[0].get_title()
    assert "t = 49: x_50," in D.forward_scrubber(digits, 49, "linear", T=50).axes[0].get_title()


def test_q_sample_at_step_t_is_the_forward_chain_after_steps_0_to_t():
    s = D.linear_schedule(20)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 3, 3, generator=g) * 2 - 1
    mean_factor = 1.0
    for t in range(6):                                   # step t: x_t -> x_{t+1}, without noise the mean shrinks
        mean_factor *= (1 - s.betas[t]).sqrt().item()
    t = torch.tensor([5])
    assert torch.allclose(D.q_sample(x0, t, torch.zeros_like(x0), s), mean_factor * x0, atol=1e-6)


def test_posterior_variance_formula_and_reverse_noise_scale():
    s = D.linear_schedule(30)
    for t in (0, 1, 17, 29):
        ab_prev = 1.0 if t == 0 else s.alpha_bars[t - 1].item()
        expected = (1 - ab_prev) / (1 - s.alpha_bars[t].item()) * s.betas[t].item()
        assert s.posterior_variance[t].item() == pytest.approx(expected, rel=1e-5)
        assert s.posterior_variance[t] <= s.betas[t]
        scale = D.reverse_noise_scale(s, t, "posterior")
        assert (scale * s.betas[t].sqrt()).item() == pytest.approx(expected ** 0.5, rel=1e-5, abs=1e-9)
        assert D.reverse_noise_scale(s, t, "beta").item() == 1.0
    assert D.reverse_noise_scale(s, 0, "posterior").item() == 0.0
    with pytest.raises(ValueError, match="variance"):
        D.reverse_noise_scale(s, 3, "learned")


def test_p_sample_with_scaled_noise_uses_beta_tilde():
    s = D.linear_schedule(30)
    g = torch.Generator().manual_seed(1)
    x, eps, noise = (torch.randn(2, 1, 2, 2, generator=g) for _ in range(3))
    t = 10
    mean = D.p_sample(x, t, eps, s, torch.zeros_like(noise))
    out = D.p_sample(x, t, eps, s, D.reverse_noise_scale(s, t, "posterior") * noise)
    assert torch.allclose(out, mean + s.posterior_variance[t].sqrt() * noise, atol=1e-6)


# --------------------------------------------------------------------------- the U-Net, the samplers, saving

def _small_unet(**kw):
    cfg = D.UNetConfig(**{"channels": (8, 16, 16), "emb_dim": 16, "groups": 4, **kw})
    torch.manual_seed(0)
    return D.UNet(cfg)


@pytest.mark.parametrize("size, channels", [(28, 1), (8, 1), (12, 3)])
def test_unet_predicts_noise_of_the_image_shape(size, channels):
    model = _small_unet(image_channels=channels, image_size=size)
    x = torch.randn(3, channels, size, size)
    out = model(x, torch.tensor([0, 5, 9]), torch.tensor([1, 2, model.cfg.n_classes]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_output_depends_on_step_and_label():
    model = _small_unet()
    x = torch.randn(2, 1, 28, 28)
    base = model(x, torch.tensor([3, 3]), torch.tensor([1, 1]))
    assert not torch.allclose(base, model(x, torch.tensor([40, 40]), torch.tensor([1, 1])))
    assert not torch.allclose(base, model(x, torch.tensor([3, 3]), torch.tensor([2, 2])))


def test_timestep_embedding_shape_and_range():
    emb = D.timestep_embedding(torch.tensor([0, 1, 499]), 16)
    assert emb.shape == (3, 16) and emb.abs().max() <= 1
    assert torch.equal(emb[0], torch.cat([torch.zeros(8), torch.ones(8)]))   # sin 0, cos 0


class _Recorder(torch.nn.Module):
    """A noise predictor that records every (t, y) it is called with; its guess is a fixed fraction of x."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.cfg = D.UNetConfig(image_size=4, n_classes=n_classes)
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append((t.clone(), y.clone()))
        return 0.5 * x + 0.01 * y.view(-1, 1, 1, 1).float()


@pytest.mark.parametrize("w, passes_per_step", [(0.0, 1), (1.0, 1), (3.0, 2)])
def test_predict_eps_uses_one_pass_or_both(w, passes_per_step):
    model = _Recorder()
    x, y = torch.randn(3, 1, 4, 4), torch.tensor([1, 2, 3])
    eps = D.predict_eps(model, x, 7, y, w)
    (t, labels), = model.calls
    assert len(labels) == passes_per_step * 3 and (t == 7).all()
    if w == 0:
        assert (labels == 10).all()
    cond, uncond = 0.5 * x + 0.01 * y.view(-1, 1, 1, 1), 0.5 * x + 0.1
    assert torch.allclose(eps, D.guidance(cond, uncond, w))


def test_sample_ddim_visits_the_steps_from_T_minus_1_down_to_0():
    model, s = _Recorder(), D.linear_schedule(20)
    out = D.sample_ddim(model, torch.tensor([0, 1]), s, steps=5, seed=1)
    steps = [int(t[0]) for t, _ in model.calls]
    assert steps == [19, 14, 10, 5, 0] and out.shape == (2, 1, 4, 4)
    assert torch.equal(out, D.sample_ddim(model, torch.tensor([0, 1]), s, steps=5, seed=1))   # deterministic
    assert out.abs().max() <= 1 + 1e-6     # the last jump lands on the clamped x0_hat


def test_sample_ddpm_visits_every_step_and_records():
    model, s = _Recorder(), D.linear_schedule(20)
    record = []
    out = D.sample_ddpm(model, torch.tensor([0, 1, 2]), s, seed=0, record=record)
    assert [int(t[0]) for t, _ in model.calls] == list(range(19, -1, -1))
    assert out.shape == (3, 1, 4, 4) and [name for name, _ in record][-1] == "x_0"
    assert not torch.equal(out, D.sample_ddpm(model, torch.tensor([0, 1, 2]), s, seed=1))


def test_sample_ddpm_uses_the_step_it_is_given():
    model, s = _Recorder(), D.linear_schedule(10)
    seen = []

    def step(x, t, eps, schedule, noise):
        seen.append(t)
        return D.p_sample(x, t, eps, schedule, noise)

    D.sample_ddpm(model, torch.tensor([0]), s, step=step)
    assert seen == list(range(9, -1, -1))


def test_unet_path_names_data_size_and_budget(tmp_path):
    data = utils.data.load_digits8x8(verbose=False)
    cfg = D.UNetConfig(image_size=8)
    a, b = D.unet_path(data, cfg, 100), D.unet_path(data, cfg, 200)
    assert a != b and a.parent.name == "models" and a.suffix == ".pt"
    assert D.unet_path(data, D.UNetConfig(image_size=8, channels=(16, 32, 32)), 100) != a
    assert D.unet_path(data.subset(n_train=100, n_test=10), cfg, 100) != a


def test_save_then_load_round_trip(tmp_path):
    model = _small_unet(image_size=8)
    path = tmp_path / "models" / "unet.pt"
    assert D.save_unet(path, model) is True
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(path.parent.glob("*.part"))
    loaded = D.load_unet(path)
    assert loaded.cfg == model.cfg and not loaded.training
    x = torch.randn(2, 1, 8, 8)
    t, y = torch.tensor([1, 2]), torch.tensor([3, 4])
    assert torch.equal(loaded(x, t, y), model.eval()(x, t, y))


def test_save_keeps_an_existing_file(tmp_path):
    path = tmp_path / "unet.pt"
    first = _small_unet()
    assert D.save_unet(path, first)
    before = path.stat().st_mtime_ns, path.read_bytes()
    torch.manual_seed(1)
    assert D.save_unet(path, D.UNet(first.cfg)) is False
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_save_replaces_a_damaged_or_mismatched_file(tmp_path):
    path = tmp_path / "unet.pt"
    path.write_bytes(b"not a checkpoint")
    assert D.save_unet(path, _small_unet())
    assert D.load_unet(path, verbose=False) is not None
    assert D.save_unet(path, _small_unet(channels=(16, 16, 16)))
    assert D.load_unet(path, verbose=False).cfg.channels == (16, 16, 16)


def test_load_returns_none_with_one_sentence(tmp_path, capsys):
    path = tmp_path / "unet.pt"
    assert D.load_unet(path) is None                      # missing
    D.save_unet(path, _small_unet())
    path.write_bytes(path.read_bytes()[:100])             # truncated
    assert D.load_unet(path) is None
    D.save_unet(path, _small_unet())
    cfg = D.load_unet(path, verbose=False).cfg
    path.with_suffix(".json").write_text(json.dumps({"config": {**asdict(cfg), "emb_dim": 32}}))   # another size
    assert D.load_unet(path) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("No usable U-Net at") for line in lines)
    assert D.load_unet(path, verbose=False) is None and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- build exercise 1: the training step

def _step(t_range=(0, None), shared_t=False, float_t=False, noise="randn", reseed=False, target="noise",
          clean=False, zero_grad="before", optimiser_steps=1, label=None, passes=1, detach=False):
    """A training step as a learner might write it; every keyword is one way to get it wrong."""
    def train_step(model, opt, x0, y, schedule):
        if reseed:
            torch.manual_seed(0)
        low, high = t_range[0], schedule.T if t_range[1] is None else t_range[1](schedule.T)
        if float_t:
            t = torch.rand(len(x0)) * schedule.T
        elif shared_t:
            t = torch.randint(low, high, (1,)).expand(len(x0))
        else:
            t = torch.randint(low, high, (len(x0),))
        eps = {"randn": lambda: torch.randn_like(x0), "rand": lambda: torch.rand_like(x0),
               "shared": lambda: torch.randn(1, *x0.shape[1:]).expand_as(x0)}[noise]()
        x_noisy = x0 if clean else D.q_sample(x0, t, eps, schedule)
        labels = y if label is None else torch.full_like(y, label)
        for _ in range(passes):
            pred = model(x_noisy, t, labels)
        loss = ((pred - (x0 if target == "x0" else eps)) ** 2).mean()
        if detach:
            loss = torch.tensor(loss.item())
        if zero_grad == "before":
            opt.zero_grad()
        loss.backward()
        if zero_grad == "after":
            opt.zero_grad()
        for _ in range(optimiser_steps):
            opt.step()
        return loss.detach()
    return train_step


def _step_inline(model, opt, x0, y, schedule):   # the loss written out, opt.zero_grad without set_to_none, a float
    t = torch.randint(schedule.T, size=(x0.shape[0],), device=x0.device)
    noise = torch.randn(x0.shape, device=x0.device)
    ab = schedule.alpha_bars[t][:, None, None, None]
    loss = torch.nn.functional.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, y), noise)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("fn", [D.train_step, in_float64(D.train_step), _step(), _step_inline])
def test_train_step_check_accepts_correct_steps(fn, capsys):
    passes(utils.checks.check_train_step, fn, capsys)


@pytest.mark.parametrize("fn, hint", [
    (_step(t_range=(1, lambda T: T + 1)), CD.STEP_T_OUT_OF_RANGE),     # the paper's 1..T
    (_step(t_range=(1, None)), CD.STEP_T_NEVER_ZERO),
    (_step(t_range=(0, lambda T: T - 1)), CD.STEP_T_NEVER_LAST),
    (_step(shared_t=True), CD.STEP_T_SHARED),
    (_step(float_t=True), CD.STEP_T_NOT_INTEGER),
    (_step(noise="rand"), CD.STEP_NOISE_NOT_GAUSSIAN),
    (_step(noise="shared"), CD.STEP_NOISE_SHARED),
    (_step(reseed=True), CD.STEP_NOISE_REUSED),
    (_step(target="x0"), CD.STEP_X0_TARGET),
    (_step(clean=True), CD.STEP_CLEAN_INPUT),
    (_step(label=10), CD.STEP_LABELS),
    (_step(passes=2), CD.STEP_TWO_PASSES),
    (_step(detach=True), CD.STEP_DETACHED),
    (_step(zero_grad=None), CD.STEP_STALE_GRADIENTS),
    (_step(zero_grad="after"), CD.STEP_NO_UPDATE),
    (_step(optimiser_steps=0), CD.STEP_NO_UPDATE),
    (_step(optimiser_steps=2), CD.STEP_WRONG_UPDATE),
], ids=lambda v: getattr(v, "__name__", None) or str(v)[:30])
def test_train_step_mistakes_are_named(fn, hint, capsys):
    fails_with(utils.checks.check_train_step, fn, capsys, hint)


def test_train_step_check_names_a_step_that_stops_learning(capsys):
    calls = []

    def ascends_later(model, opt, x0, y, schedule):   # right the first times, then climbs the loss
        calls.append(1)
        loss = D.train_step(model, opt, x0, y, schedule)
        if len(calls) > 3:
            for p in model.parameters():
                p.data += 4 * opt.lr * p.grad if p.grad is not None else 0
        return loss

    fails_with(utils.checks.check_train_step, ascends_later, capsys, CD.STEP_NOT_LEARNING)


def test_train_step_lowers_the_loss_of_a_real_unet():
    torch.manual_seed(0)
    model, s = _small_unet(image_size=8), D.linear_schedule(50)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x0, y = torch.rand(32, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (32,))
    losses = [float(D.train_step(model, opt, x0, y, s)) for _ in range(40)]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


# --------------------------------------------------------------------------- build exercise 2: the DDIM loop

def _ddim(first=lambda T: T - 1, last=0, extra_steps=0, upwards=False, fixed_w=None, eta=False, clamp=True,
          final="one", nxt="visited", current="t", swapped=False, pixels=False, keep_eps=False):
    """A DDIM sampler as a learner might write it; every keyword is one way to get it wrong."""
    @torch.no_grad()
    def sample_ddim(model, y, schedule, steps=50, w=1.0, seed=0):
        x = D.start_noise(model, y, torch.Generator().manual_seed(seed))
        ts = torch.linspace(first(schedule.T), last, steps + extra_steps).round().long().tolist()
        ts = ts[::-1] if upwards else ts
        for i, t in enumerate(ts):
            ab = {"t": schedule.alpha_bars[t], "t-1": schedule.alpha_bars[t - 1], "prev": schedule.alpha_bars_prev[t]}[current]
            if i + 1 < len(ts):
                ab_next = {"visited": schedule.alpha_bars[ts[i + 1]], "consecutive": schedule.alpha_bars[t - 1],
                           "prev": schedule.alpha_bars_prev[ts[i + 1]]}[nxt]
            else:
                ab_next = torch.tensor(1.0) if final == "one" else schedule.alpha_bars[0]
            eps = D.predict_eps(model, x, t, y, w if fixed_w is None else fixed_w)
            x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
            if clamp:
                x0_hat = x0_hat.clamp(-1, 1)
                if not keep_eps:
                    eps = (x - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
            a, b = (eps, x0_hat) if swapped else (x0_hat, eps)
            x = ab_next.sqrt() * a + (1 - ab_next).sqrt() * b
            if eta and i + 1 < len(ts):
                x = x + 0.1 * torch.randn_like(x)
        return D.to_pixels(x) if pixels else x
    return sample_ddim


@pytest.mark.parametrize("fn", [D.sample_ddim, in_float64(D.sample_ddim), _ddim(), _ddim(keep_eps=True)])
def test_sample_ddim_check_accepts_correct_samplers(fn, capsys):
    passes(utils.checks.check_sample_ddim, fn, capsys)


@pytest.mark.parametrize("fn, hint", [
    (_ddim(first=lambda T: T), CD.DDIM_STEPS_PAST_END),
    (_ddim(last=1), CD.DDIM_WRONG_STEPS),
    (_ddim(upwards=True), CD.DDIM_UPWARDS),
    (_ddim(extra_steps=1), CD.DDIM_CALLS),
    (_ddim(fixed_w=1.0), CD.DDIM_IGNORES_W),
    (_ddim(eta=True), CD.DDIM_NOT_DETERMINISTIC),
    (_ddim(clamp=False), CD.DDIM_NO_CLAMP),
    (_ddim(final="alpha_bar_0"), CD.DDIM_LAST_NOISY),
    (_ddim(nxt="consecutive"), CD.DDIM_NEXT_CONSECUTIVE),
    (_ddim(nxt="prev"), CD.DDIM_NEXT_OFF_BY_ONE),
    (_ddim(current="t-1"), CD.DDIM_CURRENT_OFF_BY_ONE),
    (_ddim(current="prev"), CD.DDIM_NOT_FINITE),
    (_ddim(swapped=True), CD.DDIM_SWAPPED),
    (_ddim(pixels=True), CD.DDIM_PIXELS),
], ids=lambda v: str(v)[:30])
def test_sample_ddim_mistakes_are_named(fn, hint, capsys):
    fails_with(utils.checks.check_sample_ddim, fn, capsys, hint)


def test_new_checks_run_in_under_a_second_on_their_first_call(capsys):
    import time
    for check in (utils.checks.check_train_step, utils.checks.check_sample_ddim):
        start = time.perf_counter()
        check(check.reference())
        assert time.perf_counter() - start < 1.0
    capsys.readouterr()


def test_save_keeps_the_schedule_for_sampling(tmp_path):
    path, model = tmp_path / "unet.pt", _small_unet(image_size=8)
    assert D.save_unet(path, model, D.make_schedule("cosine", 40))
    loaded = D.load_unet(path)
    assert loaded.schedule.name == "cosine" and loaded.schedule.T == 40
    assert torch.equal(loaded.schedule.betas, D.make_schedule("cosine", 40).betas)
    assert D.save_unet(path, model, D.make_schedule("cosine", 40)) is False
    assert D.save_unet(path, model, D.make_schedule("linear", 40)) is True   # another schedule: rewritten
    assert D.load_unet(path).schedule.name == "linear"
    assert D.save_unet(path, model) is True and D.load_unet(path).schedule is None

"""Lesson 05 (diffusion): schedules, reference answers, checks (both ways) and the scrubber functions."""
import math

import numpy as np
import pytest
import torch

import utils
from utils import diffusion as D
from utils.checks import diffusion as CD


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


# --------------------------------------------------------------------------- checks, both ways

def _passes(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


def test_checks_accept_the_references(capsys):
    for check, fn in [(utils.checks.check_q_sample, D.q_sample), (utils.checks.check_diffusion_loss, D.diffusion_loss),
                      (utils.checks.check_p_sample, D.p_sample), (utils.checks.check_guidance, D.guidance)]:
        ok, out = _passes(check, fn, capsys)
        assert ok, out
        assert "correct" in out


def test_checks_report_not_implemented(capsys):
    def stub(*args):
        raise NotImplementedError()

    for check in (utils.checks.check_q_sample, utils.checks.check_diffusion_loss, utils.checks.check_p_sample,
                  utils.checks.check_guidance):
        ok, out = _passes(check, stub, capsys)
        assert not ok and "not implemented" in out


# q_sample: correct variants
def test_q_sample_variants_pass(capsys):
    def with_gather(x0, t, noise, schedule):
        ab = schedule.alpha_bars.gather(0, t)[:, None, None, None]
        return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise

    def with_reshape(x0, t, noise, schedule):
        ab = schedule.alpha_bars[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return ab ** 0.5 * x0 + (1 - ab) ** 0.5 * noise

    def with_cumprod(x0, t, noise, schedule):  # recomputes alpha_bar from the alphas
        ab = torch.cumprod(schedule.alphas, 0)[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    for fn in (with_gather, with_reshape, with_cumprod):
        ok, out = _passes(utils.checks.check_q_sample, fn, capsys)
        assert ok, out


def _q_wrong(kind):
    def fn(x0, t, noise, s):
        ab = s.alpha_bars[t].view(-1, 1, 1, 1)
        a = s.alphas[t].view(-1, 1, 1, 1)
        if kind == "alpha":
            return a.sqrt() * x0 + (1 - a).sqrt() * noise
        if kind == "nosqrt":
            return ab * x0 + (1 - ab) * noise
        if kind == "nosqrt_noise":
            return ab.sqrt() * x0 + (1 - ab) * noise
        if kind == "swap":
            return (1 - ab).sqrt() * x0 + ab.sqrt() * noise
        if kind == "broadcast":
            return s.alpha_bars[t].sqrt() * x0 + (1 - s.alpha_bars[t]).sqrt() * noise
        if kind == "random":
            return x0 + 0.1
    return fn


@pytest.mark.parametrize("kind, phrase", [
    ("alpha", "alpha_t where alpha_bar_t belongs"),
    ("nosqrt", "a square root is missing"),
    ("nosqrt_noise", "square root on the noise term"),
    ("swap", "swapped"),
    ("broadcast", "(B, 1, 1, 1)"),
    ("random", "values are off"),
])
def test_q_sample_mistakes_are_named(kind, phrase, capsys):
    ok, out = _passes(utils.checks.check_q_sample, _q_wrong(kind), capsys)
    assert not ok
    assert phrase in out, out


# diffusion_loss
def _loss_wrong(kind):
    def fn(model, x0, t, noise, y, s):
        x_t = D.q_sample(x0, t, noise, s)
        pred = model(x_t, t, y)
        if kind == "x0_target":
            return ((pred - x0) ** 2).mean()
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
    return fn


@pytest.mark.parametrize("kind, phrase", [
    ("x0_target", "predict the noise eps, not the clean image"),
    ("clean_input", "feed the model the noisy image"),
    ("sum", "not the sum"),
    ("l1", "not its absolute value"),
    ("per_example", "return one number"),
    ("item", "attached to the graph"),
])
def test_loss_mistakes_are_named(kind, phrase, capsys):
    ok, out = _passes(utils.checks.check_diffusion_loss, _loss_wrong(kind), capsys)
    assert not ok
    assert phrase in out, out


def test_loss_variant_with_mse_loss_passes(capsys):
    def fn(model, x0, t, noise, y, s):
        return torch.nn.functional.mse_loss(model(D.q_sample(x0, t, noise, s), t, y), noise)

    ok, out = _passes(utils.checks.check_diffusion_loss, fn, capsys)
    assert ok, out


# p_sample
def _p_ref_body(x_t, t, eps, s):
    return (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()


def test_p_sample_variants_pass(capsys):
    def posterior_variance(x_t, t, eps, s, noise):  # sigma^2 = beta tilde, also in the DDPM paper
        mean = _p_ref_body(x_t, t, eps, s)
        return mean + s.posterior_variance[t].sqrt() * noise

    def always_mask(x_t, t, eps, s, noise):  # noise multiplied by (t > 0)
        return _p_ref_body(x_t, t, eps, s) + float(t > 0) * s.betas[t].sqrt() * noise

    def via_x0(x_t, t, eps, s, noise):  # predicted x0, then the posterior mean (same value)
        ab, ab_prev, a, b = s.alpha_bars[t], s.alpha_bars_prev[t], s.alphas[t], s.betas[t]
        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        mean = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
        return mean + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)

    for fn in (posterior_variance, always_mask, via_x0):
        ok, out = _passes(utils.checks.check_p_sample, fn, capsys)
        assert ok, out


def _p_wrong(kind):
    def fn(x_t, t, eps, s, noise):
        b, a, ab = s.betas[t], s.alphas[t], s.alpha_bars[t]
        sigma = b.sqrt()
        if kind == "sign":
            mean = (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt()
        elif kind == "alpha_bar":
            mean = (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt()
        elif kind == "nosqrt":
            mean = (x_t - b / (1 - ab) * eps) / a.sqrt()
        else:
            mean = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
        if kind == "sigma_beta":
            sigma = b
        if kind == "noise_at_0":
            return mean + sigma * noise
        if kind == "no_noise":
            return mean
        return mean + sigma * noise if t > 0 else mean
    return fn


@pytest.mark.parametrize("kind, phrase", [
    ("sign", "wrong sign in the reverse mean"),
    ("alpha_bar", "not sqrt(alpha_bar_t)"),
    ("nosqrt", "noise coefficient is beta_t / sqrt(1 - alpha_bar_t)"),
    ("sigma_beta", "sqrt(beta_t), not beta_t"),
    ("noise_at_0", "at the final step (t = 0) add no noise"),
    ("no_noise", "must add fresh noise"),
])
def test_p_sample_mistakes_are_named(kind, phrase, capsys):
    ok, out = _passes(utils.checks.check_p_sample, _p_wrong(kind), capsys)
    assert not ok
    assert phrase in out, out


# guidance
def test_guidance_variants_pass(capsys):
    for fn in (lambda c, u, w: (1 - w) * u + w * c, lambda c, u, w: u + w * c - w * u,
               lambda c, u, w: torch.lerp(u, c, w)):
        ok, out = _passes(utils.checks.check_guidance, fn, capsys)
        assert ok, out


@pytest.mark.parametrize("fn, phrase", [
    (lambda c, u, w: c + w * (u - c), "terms are swapped"),
    (lambda c, u, w: c + w * (c - u), "(1 + w) convention"),
    (lambda c, u, w: u + w * c, "not eps_cond alone"),
    (lambda c, u, w: w * c, "starting point"),
    (lambda c, u, w: c, "values are off"),
])
def test_guidance_mistakes_are_named(fn, phrase, capsys):
    ok, out = _passes(utils.checks.check_guidance, fn, capsys)
    assert not ok
    assert phrase in out, out


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


def test_loss_check_hints_at_the_missing_label(capsys):
    ok, out = _passes(utils.checks.check_diffusion_loss,
                      lambda m, x0, t, n, y, s: ((m(D.q_sample(x0, t, n, s), t) - n) ** 2).mean(), capsys)
    assert not ok and "model(x_t, t, y)" in out


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

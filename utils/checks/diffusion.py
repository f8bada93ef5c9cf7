"""Checks for lesson 05 (diffusion): q_sample, diffusion_loss, p_sample, guidance.

Each check runs the learner's function on a small made-up schedule whose betas are large enough
that every typical mistake changes the answer visibly, and names the mistake it recognises.
"""
from __future__ import annotations

import torch

from .core import exercise_check
from ..diffusion import Schedule, diffusion_loss, guidance, p_sample, q_sample

# ------------------------------------------------------------------ hints, shared with the tests
BROADCAST_HINT = ("Hint: alpha_bar[t] has shape (B,); reshape it to (B, 1, 1, 1) so it multiplies "
                  "each image (for example with .view(-1, 1, 1, 1)).")
SHAPE_ERROR_HINTS = {"size of tensor": BROADCAST_HINT, "broadcast": BROADCAST_HINT}

Q_SHAPE = "the noisy image has the shape of x_0"
Q_OWN_NOISE = ("two calls with the same inputs gave different noisy images: use the `noise` argument as eps, do not draw "
               "your own with torch.randn.")
Q_ALPHA = ("you used alpha_t where alpha_bar_t belongs: the closed form needs the product of all alphas "
           "up to t (schedule.alpha_bars), not the single step's alpha.")
Q_NO_SQRTS = ("a square root is missing: the coefficients of x_0 and eps are standard deviations, "
              "not variances.")
Q_NO_SQRT_SIGNAL = "the square root on the signal term is missing: x_0 is scaled by sqrt(alpha_bar_t)."
Q_NO_SQRT_NOISE = "the square root on the noise term is missing: eps is scaled by sqrt(1 - alpha_bar_t)."
Q_SWAPPED = "the two coefficients are swapped: x_0 gets sqrt(alpha_bar_t) and the noise gets sqrt(1 - alpha_bar_t)."
Q_OFF_BY_ONE = "off by one step: alpha_bar[t] already includes step t, so do not use alpha_bar[t - 1]."

LOSS_X0_TARGET = "the model is trained to predict the noise eps, not the clean image x_0: compare its output with `noise`."
LOSS_XT_TARGET = "the target is the noise eps, not the noisy image."
LOSS_CLEAN_INPUT = "feed the model the noisy image from q_sample(x0, t, noise, schedule), not the clean x_0."
LOSS_SUM = "take the mean of the squared error over the batch and the pixels, not the sum."
LOSS_ABS = "square the error (mean squared error), not its absolute value."
LOSS_NO_LABEL = "the label y is not reaching the model: it takes the noisy image, t and y."
LOSS_ARGS_ORDER = "the model's inputs are in the wrong order: the noisy image first, then t, then y."
LOSS_ALPHA = "your noisy image looks built with alpha_t instead of alpha_bar_t: does q_sample pass its check?"
LOSS_LABEL_ARGUMENT = "Hint: the model takes three inputs: the noisy image, t and y."
LOSS_NOT_SCALAR = "return one number (a 0-dim tensor), the mean over batch and pixels"
LOSS_NO_GRAD = "the loss must stay attached to the graph: do not call .item() or .detach() inside."
LOSS_OWN_NOISE = ("two calls with the same inputs gave different losses: use the `noise` argument, do not draw "
                  "your own with torch.randn.")

P_SHAPE = "the less noisy image has the shape of the input x"
P_SIGN = ("wrong sign in the reverse mean: it SUBTRACTS the scaled predicted noise from the input x "
          "before dividing by sqrt(alpha_t).")
P_ALPHA_BAR = "divide by sqrt(alpha_t) (this one step), not sqrt(alpha_bar_t)."
P_NO_SQRT_ALPHA = "a square root is missing: divide by sqrt(alpha_t), not alpha_t."
P_NO_SQRT_COEF = "a square root is missing: the noise coefficient is beta_t / sqrt(1 - alpha_bar_t)."
P_COEF_ALPHA = "the noise coefficient uses alpha_bar_t: beta_t / sqrt(1 - alpha_bar_t), not sqrt(1 - alpha_t)."
P_SIGMA = "the standard deviation of the added noise is sqrt(beta_t), not beta_t (a missing square root)."
P_NO_NOISE = "for t > 0 the step must add fresh noise: return mean + sqrt(beta_t) * noise."
P_NOISE_AT_ZERO = ("at the final step (t = 0) add no noise: return the mean, so the finished image is not "
                   "blurred by one last random kick.")
P_OWN_NOISE = ("two calls with the same inputs gave different results: add the `noise` argument, do not draw "
               "your own with torch.randn.")

W_SWAPPED = ("the conditional and unconditional terms are swapped: start from eps_uncond and move w times "
             "towards eps_cond. Swapped, w > 1 pushes AWAY from the label.")
W_PLUS_ONE = ("that is the (1 + w) convention; in this lesson w = 1 must give the plain conditional estimate, "
              "so start from eps_uncond.")
W_SCALES_COND = "guidance scales the difference (eps_cond - eps_uncond), not eps_cond alone."
W_NO_START = "keep the unconditional estimate as the starting point: eps_uncond + w * (difference)."
W_DIRECTION_ONLY = "you returned only the guidance direction w * (eps_cond - eps_uncond): add it to eps_uncond."
W_HINT = "the result moves from eps_uncond w times along (eps_cond - eps_uncond)"
W_ZERO = " (with w = 0 the result must be eps_uncond)"
W_ONE = " (with w = 1 the result must be eps_cond)"


def _test_schedule() -> Schedule:
    """Ten steps with betas from 0.05 to 0.3: alpha_t and alpha_bar_t differ a lot here."""
    return Schedule("test", torch.linspace(0.05, 0.3, 10, dtype=torch.float64))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same_twice(c, fn, *args, hint: str, **kwargs):
    """Call fn twice on the same inputs; fail with ``hint`` when the answers differ (it drew its own noise)."""
    first = c.tensor(c.call(fn, *args, **kwargs))
    second = c.tensor(c.call(fn, *args, **kwargs))
    c.true(first.shape == second.shape and torch.equal(first.detach(), second.detach()), hint)
    return first


# --------------------------------------------------------------------------- q_sample

def q_sample_mistakes(x0, t, noise, s: Schedule) -> dict:
    """What the typical wrong versions of q_sample return (hint -> value)."""
    v = lambda a: a[t].view(-1, 1, 1, 1)
    ab, a = v(s.alpha_bars), v(s.alphas)
    ab_prev = v(s.alpha_bars_prev)
    return {
        Q_ALPHA: a.sqrt() * x0 + (1 - a).sqrt() * noise,
        Q_NO_SQRTS: ab * x0 + (1 - ab) * noise,
        Q_NO_SQRT_SIGNAL: ab * x0 + (1 - ab).sqrt() * noise,
        Q_NO_SQRT_NOISE: ab.sqrt() * x0 + (1 - ab) * noise,
        Q_SWAPPED: q_sample(noise, t, x0, s),
        Q_OFF_BY_ONE: ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * noise,
    }


@exercise_check
def check_q_sample(c, fn):
    s = _test_schedule()
    g = _gen(0)
    x0 = torch.rand(3, 1, 4, 5, generator=g) * 2 - 1
    noise = torch.randn(3, 1, 4, 5, generator=g)
    for t in (torch.tensor([0, 4, 9]), torch.tensor([7, 2, 7])):
        out = _same_twice(c, fn, x0, t, noise, s, hint=Q_OWN_NOISE, error_hints=SHAPE_ERROR_HINTS)
        c.shape(out, x0.shape, Q_SHAPE)
        c.close(out, q_sample(x0, t, noise, s), mistakes=q_sample_mistakes(x0, t, noise, s))


# --------------------------------------------------------------------------- diffusion_loss

class _FakeModel(torch.nn.Module):
    """A stand-in noise predictor whose output depends on x_t, t and y (so every input matters)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, y):
        return self.scale * x + 0.03 * t.view(-1, 1, 1, 1).float() - 0.1 * y.view(-1, 1, 1, 1).float()


def loss_mistakes(model, x0, t, noise, y, s: Schedule) -> dict:
    with torch.no_grad():
        x_t = q_sample(x0, t, noise, s)
        a = s.alphas[t].view(-1, 1, 1, 1)
        pred = model(x_t, t, y)
        return {
            LOSS_X0_TARGET: ((pred - x0) ** 2).mean(),
            LOSS_XT_TARGET: ((pred - x_t) ** 2).mean(),
            LOSS_CLEAN_INPUT: ((model(x0, t, y) - noise) ** 2).mean(),
            LOSS_SUM: ((pred - noise) ** 2).sum(),
            LOSS_ABS: (pred - noise).abs().mean(),
            LOSS_NO_LABEL: diffusion_loss(model, x0, t, noise, torch.zeros_like(y), s),
            LOSS_ARGS_ORDER: ((model(x_t, y, t) - noise) ** 2).mean(),
            LOSS_ALPHA: ((model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, y) - noise) ** 2).mean(),
        }


@exercise_check
def check_diffusion_loss(c, fn):
    s = _test_schedule()
    g = _gen(1)
    model = _FakeModel()
    x0 = torch.rand(4, 1, 3, 3, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0, 3, 6, 9])
    y = torch.tensor([1, 2, 3, 10])
    out = _same_twice(c, fn, model, x0, t, noise, y, s, hint=LOSS_OWN_NOISE,
                      error_hints={"argument: 'y'": LOSS_LABEL_ARGUMENT})
    c.true(out.dim() == 0 or out.numel() == 1, f"{LOSS_NOT_SCALAR}; yours has shape {tuple(out.shape)}.")
    c.true(out.requires_grad, LOSS_NO_GRAD)
    c.close(out.reshape(()), diffusion_loss(model, x0, t, noise, y, s),
            mistakes=loss_mistakes(model, x0, t, noise, y, s))


# --------------------------------------------------------------------------- p_sample

def p_sample_mistakes(x_t, t: int, eps, s: Schedule, noise) -> dict:
    beta, alpha, ab = s.betas[t], s.alphas[t], s.alpha_bars[t]
    coef = beta / (1 - ab).sqrt()
    mean = p_sample(x_t, 0, eps, s, noise) if t == 0 else p_sample(x_t, t, eps, s, torch.zeros_like(noise))
    sigma = beta.sqrt()
    add = (lambda m, sd=sigma: m + sd * noise) if t > 0 else (lambda m, sd=sigma: m)
    hints = {
        P_SIGN: add((x_t + coef * eps) / alpha.sqrt()),
        P_ALPHA_BAR: add((x_t - coef * eps) / ab.sqrt()),
        P_NO_SQRT_ALPHA: add((x_t - coef * eps) / alpha),
        P_NO_SQRT_COEF: add((x_t - beta / (1 - ab) * eps) / alpha.sqrt()),
        P_COEF_ALPHA: add((x_t - beta / (1 - alpha).sqrt() * eps) / alpha.sqrt()),
        P_SIGMA: add(mean, beta),
    }
    if t > 0:
        hints[P_NO_NOISE] = mean
    else:
        hints[P_NOISE_AT_ZERO] = mean + sigma * noise
    return hints


@exercise_check
def check_p_sample(c, fn):
    s = _test_schedule()
    g = _gen(2)
    for t in (6, 1, 0):
        x_t = torch.randn(2, 1, 3, 4, generator=g)
        eps = torch.randn(2, 1, 3, 4, generator=g)
        noise = torch.randn(2, 1, 3, 4, generator=g)
        out = _same_twice(c, fn, x_t, t, eps, s, noise, hint=P_OWN_NOISE)
        c.shape(out, x_t.shape, P_SHAPE)
        expected = p_sample(x_t, t, eps, s, noise)
        # the DDPM paper allows either variance: beta_t or the posterior's beta-tilde (0 at t = 0)
        mean = p_sample(x_t, t, eps, s, torch.zeros_like(noise))
        tilde = mean + s.posterior_variance[t].sqrt() * noise
        if torch.allclose(out.detach().double(), tilde.double(), atol=1e-4, rtol=1e-4):
            continue
        c.close(out, expected, mistakes=p_sample_mistakes(x_t, t, eps, s, noise))


# --------------------------------------------------------------------------- guidance

def guidance_mistakes(eps_c, eps_u, w: float) -> dict:
    return {
        W_SWAPPED: guidance(eps_u, eps_c, w),
        W_PLUS_ONE: guidance(eps_c, eps_u, 1 + w),
        W_SCALES_COND: eps_u + w * eps_c,
        W_NO_START: w * eps_c,
        W_DIRECTION_ONLY: guidance(eps_c, eps_u, w) - eps_u,
    }


@exercise_check
def check_guidance(c, fn):
    g = _gen(3)
    eps_c = torch.randn(2, 1, 3, 3, generator=g)
    eps_u = torch.randn(2, 1, 3, 3, generator=g)
    for w, note in ((3.0, ""), (0.0, W_ZERO), (1.0, W_ONE), (7.5, "")):
        out = c.shape(c.call(fn, eps_c, eps_u, w), eps_c.shape)
        c.close(out, guidance(eps_c, eps_u, w), mistakes=guidance_mistakes(eps_c, eps_u, w), hint=f"{W_HINT}{note}.")

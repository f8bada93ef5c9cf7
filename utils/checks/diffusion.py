"""Checks for lesson 05 (diffusion): q_sample, diffusion_loss, p_sample, guidance.

Each check runs the learner's function on a small made-up schedule whose betas are large enough
that every typical mistake changes the answer visibly, and names the mistake it recognises.
"""
from __future__ import annotations

import torch

from .core import exercise_check
from ..diffusion import Schedule, diffusion_loss, guidance, p_sample, q_sample


def _test_schedule() -> Schedule:
    """Ten steps with betas from 0.05 to 0.3: alpha_t and alpha_bar_t differ a lot here."""
    return Schedule("test", torch.linspace(0.05, 0.3, 10, dtype=torch.float64))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


BROADCAST_HINT = ("Hint: alpha_bar[t] has shape (B,); reshape it to (B, 1, 1, 1) so it multiplies "
                  "each image (for example with .view(-1, 1, 1, 1)).")


SHAPE_ERROR_HINTS = {"size of tensor": BROADCAST_HINT, "broadcast": BROADCAST_HINT}


# --------------------------------------------------------------------------- q_sample

def q_sample_mistakes(x0, t, noise, s: Schedule) -> dict:
    """What the typical wrong versions of q_sample return (hint -> value)."""
    v = lambda a: a[t].view(-1, 1, 1, 1)
    ab, a = v(s.alpha_bars), v(s.alphas)
    ab_prev = v(s.alpha_bars_prev)
    return {
        "you used alpha_t where alpha_bar_t belongs: the closed form needs the product of all alphas "
        "up to t (schedule.alpha_bars), not the single step's alpha.": a.sqrt() * x0 + (1 - a).sqrt() * noise,
        "a square root is missing: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps "
        "(the coefficients are standard deviations, not variances).": ab * x0 + (1 - ab) * noise,
        "the square root on the signal term is missing: it is sqrt(alpha_bar_t) x_0.": ab * x0 + (1 - ab).sqrt() * noise,
        "the square root on the noise term is missing: it is sqrt(1 - alpha_bar_t) eps.": ab.sqrt() * x0 + (1 - ab) * noise,
        "the two coefficients are swapped: x_0 gets sqrt(alpha_bar_t) and the noise gets sqrt(1 - alpha_bar_t).":
            (1 - ab).sqrt() * x0 + ab.sqrt() * noise,
        "off by one step: alpha_bar[t] already includes step t, so do not use alpha_bar[t - 1].":
            ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * noise,
    }


@exercise_check
def check_q_sample(c, fn):
    s = _test_schedule()
    g = _gen(0)
    x0 = torch.rand(3, 1, 4, 5, generator=g) * 2 - 1
    noise = torch.randn(3, 1, 4, 5, generator=g)
    for t in (torch.tensor([0, 4, 9]), torch.tensor([7, 2, 7])):
        out = c.call(fn, x0, t, noise, s, error_hints=SHAPE_ERROR_HINTS)
        c.shape(out, x0.shape, "x_t has the shape of x_0")
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
    x_t = q_sample(x0, t, noise, s)
    a = s.alphas[t].view(-1, 1, 1, 1)
    x_t_alpha = a.sqrt() * x0 + (1 - a).sqrt() * noise
    pred = model(x_t, t, y)
    return {
        "the model is trained to predict the noise eps, not the clean image x_0: compare its output with `noise`.":
            ((pred - x0) ** 2).mean(),
        "the target is the noise eps, not the noisy image x_t.": ((pred - x_t) ** 2).mean(),
        "feed the model the noisy image x_t = q_sample(x0, t, noise, schedule), not the clean x_0.":
            ((model(x0, t, y) - noise) ** 2).mean(),
        "take the mean of the squared error over the batch and the pixels, not the sum.": ((pred - noise) ** 2).sum(),
        "square the error (mean squared error), not its absolute value.": (pred - noise).abs().mean(),
        "the label y is not reaching the model: call model(x_t, t, y).": ((model(x_t, t, torch.zeros_like(y)) - noise) ** 2).mean(),
        "your x_t looks built with alpha_t instead of alpha_bar_t: does q_sample pass its check?":
            ((model(x_t_alpha, t, y) - noise) ** 2).mean(),
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
    out = c.call(fn, model, x0, t, noise, y, s,
                 error_hints={"argument: 'y'": "Hint: the model takes three inputs, model(x_t, t, y)."})
    out = c.tensor(out)
    c.true(out.dim() == 0 or out.numel() == 1,
           f"return one number (a 0-dim tensor), the mean over batch and pixels; yours has shape {tuple(out.shape)}.")
    c.true(out.requires_grad or not any(p.requires_grad for p in model.parameters()),
           "the loss must stay attached to the graph: do not call .item() or .detach() inside.")
    c.close(out.reshape(()), diffusion_loss(model, x0, t, noise, y, s),
            mistakes=loss_mistakes(model, x0, t, noise, y, s))


# --------------------------------------------------------------------------- p_sample

def p_sample_mistakes(x_t, t: int, eps, s: Schedule, noise) -> dict:
    beta, alpha, ab = s.betas[t], s.alphas[t], s.alpha_bars[t]
    coef = beta / (1 - ab).sqrt()
    mean = (x_t - coef * eps) / alpha.sqrt()
    sigma = beta.sqrt()
    add = (lambda m, sd=sigma: m + sd * noise) if t > 0 else (lambda m, sd=sigma: m)
    hints = {
        "wrong sign in the reverse mean: it SUBTRACTS the predicted noise, "
        "mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t).": add((x_t + coef * eps) / alpha.sqrt()),
        "divide by sqrt(alpha_t) (this one step), not sqrt(alpha_bar_t).": add((x_t - coef * eps) / ab.sqrt()),
        "a square root is missing: divide by sqrt(alpha_t), not alpha_t.": add((x_t - coef * eps) / alpha),
        "a square root is missing: the noise coefficient is beta_t / sqrt(1 - alpha_bar_t).":
            add((x_t - beta / (1 - ab) * eps) / alpha.sqrt()),
        "the noise coefficient uses alpha_bar_t: beta_t / sqrt(1 - alpha_bar_t), not sqrt(1 - alpha_t).":
            add((x_t - beta / (1 - alpha).sqrt() * eps) / alpha.sqrt()),
        "the standard deviation of the added noise is sqrt(beta_t), not beta_t (a missing square root).":
            add(mean, beta),
    }
    if t > 0:
        hints["for t > 0 the step must add fresh noise: return mean + sqrt(beta_t) * noise."] = mean
    else:
        hints["at the final step (t = 0) add no noise: return the mean, so the finished image is not "
              "blurred by one last random kick."] = mean + sigma * noise
    return hints


@exercise_check
def check_p_sample(c, fn):
    s = _test_schedule()
    g = _gen(2)
    for t in (6, 1, 0):
        x_t = torch.randn(2, 1, 3, 4, generator=g)
        eps = torch.randn(2, 1, 3, 4, generator=g)
        noise = torch.randn(2, 1, 3, 4, generator=g)
        out = c.call(fn, x_t, t, eps, s, noise)
        c.shape(out, x_t.shape, "x_{t-1} has the shape of x_t")
        # the DDPM paper allows either variance: beta_t or the posterior's beta-tilde (0 at t = 0)
        alt = (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt() \
            + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)
        if torch.allclose(c.tensor(out).double(), alt.double(), atol=1e-4, rtol=1e-4):
            continue
        c.close(out, p_sample(x_t, t, eps, s, noise), mistakes=p_sample_mistakes(x_t, t, eps, s, noise))


# --------------------------------------------------------------------------- guidance

def guidance_mistakes(eps_c, eps_u, w: float) -> dict:
    return {
        "the conditional and unconditional terms are swapped: start from eps_uncond and move w times "
        "towards eps_cond, eps_uncond + w (eps_cond - eps_uncond). Swapped, w > 1 pushes AWAY from the label.":
            eps_c + w * (eps_u - eps_c),
        "that is the (1 + w) convention; in this lesson w = 1 must give the plain conditional estimate: "
        "eps_uncond + w (eps_cond - eps_uncond).": eps_c + w * (eps_c - eps_u),
        "guidance scales the difference (eps_cond - eps_uncond), not eps_cond alone.": eps_u + w * eps_c,
        "keep the unconditional estimate as the starting point: eps_uncond + w (eps_cond - eps_uncond).": w * eps_c,
    }


@exercise_check
def check_guidance(c, fn):
    g = _gen(3)
    eps_c = torch.randn(2, 1, 3, 3, generator=g)
    eps_u = torch.randn(2, 1, 3, 3, generator=g)
    for w, note in ((3.0, ""), (0.0, " (with w = 0 the result must be eps_uncond)"),
                    (1.0, " (with w = 1 the result must be eps_cond)"), (7.5, "")):
        out = c.call(fn, eps_c, eps_u, w)
        c.shape(out, eps_c.shape)
        c.close(out, guidance(eps_c, eps_u, w), mistakes=guidance_mistakes(eps_c, eps_u, w),
                hint=f"eps_uncond + w (eps_cond - eps_uncond){note}.")

"""Checks for lesson 05 (diffusion): q_sample, diffusion_loss, train_step, p_sample, sample_ddim, guidance.

Each check runs the learner's function on a small made-up schedule whose betas are large enough
that every typical mistake changes the answer visibly, and names the mistake it recognises. The first
hint names the symptom; ``Hint.more`` and ``SECOND_HINTS`` hold the stronger ones.
"""
from __future__ import annotations

import torch

from .core import Hint, PlainSGD, exercise_check
from ..diffusion import (Schedule, UNetConfig, diffusion_loss, guidance, p_sample, predict_eps, q_sample,
                         sample_ddim, start_noise, to_pixels, train_step)

# ------------------------------------------------------------------ hints, shared with the tests
BROADCAST_HINT = Hint("Hint: one alpha_bar per image cannot multiply whole images until it has one entry per image "
                      "and size-1 image dimensions.",
                      more="alpha_bar[t] has shape (B,); reshape it to (B, 1, 1, 1), for example with .view(-1, 1, 1, 1).")
SHAPE_ERROR_HINTS = {"size of tensor": BROADCAST_HINT, "broadcast": BROADCAST_HINT}

Q_SHAPE = "the noisy image has the shape of x_0"
Q_OWN_NOISE = Hint("two calls with the same inputs gave different noisy images.",
                   more="use the `noise` argument as eps; do not draw your own with torch.randn.")
Q_ALPHA = Hint("your noisy image keeps far too much of x_0 at late steps, as if only step t had added noise.",
               more="the closed form needs the product of all alphas up to t (schedule.alpha_bars), not the "
                    "single step's alpha.")
Q_NO_SQRTS = Hint("your noisy images do not have variance 1: the coefficients look like variances, not standard deviations.",
                  more="x_0 is scaled by sqrt(alpha_bar_t) and eps by sqrt(1 - alpha_bar_t).")
Q_NO_SQRT_SIGNAL = Hint("the clean image fades too fast: its coefficient is a variance where a standard deviation belongs.",
                        more="x_0 is scaled by sqrt(alpha_bar_t).")
Q_NO_SQRT_NOISE = Hint("too little noise at every step: the noise coefficient is a variance where a standard deviation belongs.",
                       more="eps is scaled by sqrt(1 - alpha_bar_t).")
Q_SWAPPED = Hint("at early steps your image is mostly noise and at late steps mostly x_0: backwards.",
                 more="x_0 gets sqrt(alpha_bar_t) and the noise gets sqrt(1 - alpha_bar_t); yours are swapped.")
Q_OFF_BY_ONE = Hint("your image is one noising step behind: at t = 0 it holds no noise at all.",
                    more="alpha_bar[t] already includes step t (it describes x_{t+1}), so do not use alpha_bar[t - 1].")

LOSS_X0_TARGET = Hint("your loss compares the prediction with the clean image.",
                      more="the model is trained to predict the noise eps, not x_0: compare its output with `noise`.")
LOSS_XT_TARGET = Hint("your loss compares the prediction with the noisy image.",
                      more="the target is the noise eps, not x_{t+1}: compare the model's output with `noise`.")
LOSS_CLEAN_INPUT = Hint("the model is shown the clean image, so there is no noise for it to find.",
                        more="feed the model the noisy image from q_sample(x0, t, noise, schedule), not x0.")
LOSS_SUM = Hint("your loss grows with the batch size and the image size.",
                more="take the mean of the squared error over the batch and the pixels, not the sum.")
LOSS_ABS = Hint("your loss is not a squared error.", more="square the error (mean squared error), not its absolute value.")
LOSS_NO_LABEL = Hint("the label y is not reaching the model.", more="the model takes three inputs: model(x_noisy, t, y).")
LOSS_ARGS_ORDER = Hint("the model receives its inputs in the wrong order.",
                       more="the noisy image first, then t, then y: model(x_noisy, t, y).")
LOSS_ALPHA = Hint("your noisy image looks built with the single step's alpha instead of the product of alphas.",
                  more="does q_sample pass its check? The loss should noise x0 with it.")
LOSS_LABEL_ARGUMENT = Hint("Hint: the model takes three inputs: the noisy image, the step and the label.",
                           more="call it as model(x_noisy, t, y).")
LOSS_NOT_SCALAR = "return one number (a 0-dim tensor), the mean over batch and pixels"
LOSS_NO_GRAD = Hint("your loss carries no gradient, so the model could not learn from it.",
                    more="do not call .item() or .detach() inside, and do not compute it under torch.no_grad().")
LOSS_OWN_NOISE = Hint("two calls with the same inputs gave different losses.",
                      more="use the `noise` argument; do not draw your own with torch.randn.")

STEP_T_OUT_OF_RANGE = Hint("Hint: one of your steps t is past the end of the schedule.",
                           more="the steps run 0..T-1 like Python's range(T) (module docstring); the DDPM paper's "
                                "1..T is shifted by one. torch.randint's upper bound is excluded.")
STEP_T_NEVER_ZERO = Hint("in a batch of 64 images your step t was never 0, so the model never learns the last, "
                         "finest denoising step.",
                         more="draw t from 0..T-1: torch.randint(0, schedule.T, (B,)). 1..T is the DDPM paper's numbering.")
STEP_T_NEVER_LAST = Hint("in a batch of 64 images your step t never reached T - 1, so the model never sees the "
                         "pure noise that sampling starts from.",
                         more="torch.randint excludes its upper bound: torch.randint(0, schedule.T, (B,)) gives 0..T-1.")
STEP_T_SHARED = Hint("every image in the batch got the same step t.",
                     more="draw one step per image, a tensor of shape (B,): torch.randint(0, schedule.T, (len(x0),)).")
STEP_T_NOT_INTEGER = Hint("your steps t are not whole numbers, so they cannot index the schedule.",
                          more="torch.randint gives integers (torch.long); torch.rand gives floats in [0, 1).")
STEP_LABELS = Hint("the model did not receive the labels y you were given.",
                   more="pass y through unchanged: the lesson's loop already replaced some labels with 'no label'.")
STEP_NO_MODEL = Hint("your step never called the model.", more="compute the loss with diffusion_loss(model, x0, t, noise, y, schedule).")
STEP_TWO_PASSES = Hint("your step called the model more than once.",
                       more="one forward pass per step: compute the loss once, then zero_grad, backward, step.")
STEP_CLEAN_INPUT = Hint("the model was shown the clean images, with no noise added.",
                        more="noise x0 first: diffusion_loss does it for you with q_sample.")
STEP_NOISE_NOT_GAUSSIAN = Hint("the noise you added does not look like standard Gaussian noise (mean 0, spread 1).",
                               more="torch.randn_like(x0) draws N(0, 1); torch.rand_like draws uniform numbers in [0, 1).")
STEP_NOISE_SHARED = Hint("every image in the batch got the same noise.",
                         more="draw noise of the batch's full shape: torch.randn_like(x0).")
STEP_NOISE_REUSED = Hint("two steps drew exactly the same t and noise, so the model sees the same few examples forever.",
                         more="draw t and the noise inside the step, from torch's global generator, without re-seeding.")
STEP_X0_TARGET = Hint("the loss you returned compares the model's output with the clean image, not with the noise.",
                      more="the model predicts the noise eps: the target is the noise you drew, as in diffusion_loss.")
STEP_LOSS_VALUE = Hint("the loss you returned is not the mean squared error between the prediction and the noise "
                       "of this batch.",
                       more="return the loss computed before the optimiser step (diffusion_loss's value).")
STEP_NO_UPDATE = Hint("the weights did not change during your step.",
                      more="after the loss: opt.zero_grad(), loss.backward(), opt.step(), in that order "
                           "(zero_grad after backward throws the gradients away).")
STEP_STALE_GRADIENTS = Hint("your update includes gradients left over from an earlier step.",
                            more="call opt.zero_grad() before loss.backward(): PyTorch adds new gradients to the old ones.")
STEP_WRONG_UPDATE = Hint("the weights moved, but not by one optimiser step on this batch's gradient.",
                         more="exactly one opt.step() after one loss.backward(), on a freshly zeroed gradient.")
STEP_DETACHED = Hint("Hint: backward found no gradient to follow.",
                     more="do not detach the loss or call .item() before loss.backward(); return loss.detach() at the end.")
STEP_NOT_LEARNING = Hint("on a fixed batch, your steps do not lower the loss.",
                         more="is the gradient reset between steps, and does opt.step() run after loss.backward()?")
STEP_ERROR_HINTS = {"out of bounds": STEP_T_OUT_OF_RANGE, "does not require grad": STEP_DETACHED,
                    "tensors used as indices": STEP_T_NOT_INTEGER}

P_SHAPE = "the less noisy image has the shape of the input x"
P_SIGN = Hint("your step adds the predicted noise instead of removing it.",
              more="the reverse mean SUBTRACTS beta_t / sqrt(1 - alpha_bar_t) * eps from x, then divides by sqrt(alpha_t).")
P_ALPHA_BAR = Hint("your mean is scaled up far too much at late steps.",
                   more="divide by sqrt(alpha_t) (this one step), not sqrt(alpha_bar_t).")
P_NO_SQRT_ALPHA = Hint("your mean is scaled up a little too much.", more="divide by sqrt(alpha_t), not alpha_t.")
P_NO_SQRT_COEF = Hint("your step removes too much of the predicted noise.",
                      more="the noise coefficient is beta_t / sqrt(1 - alpha_bar_t): a square root is missing.")
P_COEF_ALPHA = Hint("your step removes the wrong amount of predicted noise.",
                    more="the coefficient uses alpha_bar_t: beta_t / sqrt(1 - alpha_bar_t), not sqrt(1 - alpha_t).")
P_SIGMA = Hint("the noise you add back is too small.",
               more="its standard deviation is sqrt(beta_t), not beta_t (a missing square root).")
P_NO_NOISE = Hint("for t > 0 your step adds no fresh noise, so sampling could only ever draw one image per start.",
                  more="return mean + sqrt(beta_t) * noise for t > 0.")
P_NOISE_AT_ZERO = Hint("your last step (t = 0) still adds noise, so the finished image is grainy.",
                       more="at t = 0 return the mean itself.")
P_OWN_NOISE = Hint("two calls with the same inputs gave different results.",
                   more="add the `noise` argument; do not draw your own with torch.randn.")

DDIM_SHAPE = "one image per label, with the model's image shape"
DDIM_NOT_DETERMINISTIC = Hint("two runs with the same seed gave different images, but DDIM is deterministic.",
                              more="add no fresh noise anywhere: the only randomness is x_T, already drawn from the seed.")
DDIM_CALLS = Hint("your sampler did not call the network once per step.",
                  more="one predict_eps per visited step: steps = len(ts), with ts from torch.linspace(T - 1, 0, steps).")
DDIM_STEPS_PAST_END = Hint("Hint: your sampler asked for a step past the end of the schedule.",
                           more="the steps run T-1 down to 0: torch.linspace(schedule.T - 1, 0, steps).round().long().")
DDIM_WRONG_STEPS = Hint("your sampler visited other steps than T-1 down to 0, evenly spaced.",
                        more="ts = torch.linspace(schedule.T - 1, 0, steps).round().long().tolist(): the first "
                             "jump starts at x_T (step T-1), the last at step 0.")
DDIM_UPWARDS = Hint("your sampler walks the steps upwards, from clean to noisy.",
                    more="start at step T-1 (x_T, pure noise) and go down to step 0.")
DDIM_IGNORES_W = Hint("the guidance scale w does not reach the network.",
                      more="ask predict_eps(model, x, t, y, w) for the noise; it runs the unconditional pass when w is not 1.")
DDIM_NO_CLAMP = Hint("some of your samples lie outside the pixel range [-1, 1].",
                     more="clamp the predicted clean image to [-1, 1] before the jump: x0_hat.clamp(-1, 1).")
DDIM_LAST_NOISY = Hint("your last jump does not land on a clean image: a little noise is left in it.",
                       more="after the last step (t = 0) the target is x_0 itself: use alpha_bar = 1 there, not alpha_bar[0].")
DDIM_NEXT_CONSECUTIVE = Hint("your jumps land one schedule step further, not on the next step you visit.",
                             more="jump to the next visited step s = ts[i + 1] with alpha_bar[s], not to alpha_bar[t - 1].")
DDIM_NEXT_OFF_BY_ONE = Hint("each jump lands one step too clean.",
                            more="the image before step s is x_{s+1}, which has alpha_bar[s] (not alpha_bar[s - 1]).")
DDIM_CURRENT_OFF_BY_ONE = Hint("your predicted clean image reads the current image as one step less noisy than it is.",
                               more="at step t the image is x_{t+1}, whose signal is alpha_bar[t], not alpha_bar[t - 1].")
DDIM_SWAPPED = Hint("after each jump your image is mostly the noise estimate instead of mostly the clean estimate.",
                    more="x_next = sqrt(alpha_bar_next) * x0_hat + sqrt(1 - alpha_bar_next) * eps: yours are swapped.")
DDIM_NOT_FINITE = Hint("your samples contain NaN or inf: something divides by zero, most likely at the last step.",
                       more="at step t the current image is x_{t+1}, whose signal is alpha_bar[t]: 1 - alpha_bar[t] "
                            "is never 0, but reading it one step too clean makes it 0 at t = 0.")
DDIM_PIXELS = Hint("your samples are in [0, 1], but the sampler works in [-1, 1].",
                   more="return x as it is; the lesson maps it to pixels with to_pixels when it plots or scores.")

W_SWAPPED = Hint("with w > 1 your estimate moves AWAY from the label.",
                 more="start from eps_uncond and move w times towards eps_cond; yours are swapped.")
W_PLUS_ONE = Hint("with w = 1 your result is not the plain conditional estimate.",
                  more="that is the paper's (1 + w) convention; in this lesson w = 1 gives eps_cond, so start from eps_uncond.")
W_SCALES_COND = Hint("your result grows with w even when the two estimates agree.",
                     more="guidance scales the difference (eps_cond - eps_uncond), not eps_cond alone.")
W_NO_START = Hint("with w = 0 your result is not the unconditional estimate.",
                  more="keep eps_uncond as the starting point: eps_uncond + w * (difference).")
W_DIRECTION_ONLY = Hint("your result is only the guidance direction, without a starting point.",
                        more="add the direction w * (eps_cond - eps_uncond) to eps_uncond.")
W_HINT = "the result moves from eps_uncond w times along the direction the label adds"
W_ZERO = " (with w = 0 the result must be eps_uncond)"
W_ONE = " (with w = 1 the result must be eps_cond)"

SECOND_HINTS = {
    "q_sample": "look up alpha_bar for each image, schedule.alpha_bars[t] with shape (B,), reshape it to (B, 1, 1, 1), "
                "and return sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * noise.",
    "diffusion_loss": "x_noisy = q_sample(x0, t, noise, schedule); return the mean of (model(x_noisy, t, y) - noise) ** 2.",
    "train_step": "t = torch.randint(0, schedule.T, (len(x0),), device=x0.device); noise = torch.randn_like(x0); "
                  "loss = diffusion_loss(model, x0, t, noise, y, schedule); then opt.zero_grad(), loss.backward(), "
                  "opt.step(); return loss.detach().",
    "p_sample": "mean = (x - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t); return the mean at t = 0, "
                "else mean + sqrt(beta_t) * noise.",
    "sample_ddim": "for each t in ts (T-1 down to 0): eps from predict_eps; x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab), "
                   "clamped to [-1, 1]; eps recomputed from x0_hat; x = sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps, "
                   "with ab_next = alpha_bars[next t], or 1 after the last step.",
    "guidance": "eps_uncond + w * (eps_cond - eps_uncond): w = 0 gives eps_uncond, w = 1 gives eps_cond.",
}


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


# --------------------------------------------------------------------------- train_step

STEP_LR, STALE = 0.1, 5.0   # SGD's learning rate in the check; a gradient left over from an "earlier step"


class _RecordingDenoiser(torch.nn.Module):
    """A two-number noise predictor, scale * x + shift, that records the inputs of every call."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.2))
        self.shift = torch.nn.Parameter(torch.tensor(1.5))
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append((x.detach().clone(), t.detach().clone(), y.detach().clone()))
        return self.scale * x + self.shift


def _step_once(c, fn, x0, y, s):
    """Run one learner step on a fresh model whose gradients hold stale values; return what it saw and did."""
    model = _RecordingDenoiser()
    opt = PlainSGD(model.parameters(), lr=STEP_LR)
    for p in model.parameters():
        p.grad = torch.full_like(p, STALE)
    before = [p.detach().clone() for p in model.parameters()]
    out = c.call(fn, model, opt, x0, y, s, error_hints=STEP_ERROR_HINTS)
    c.true(len(model.calls) > 0, STEP_NO_MODEL)
    c.true(len(model.calls) == 1, STEP_TWO_PASSES)
    moved = [(b - p.detach()) / STEP_LR for b, p in zip(before, model.parameters())]
    return out, model.calls[0], before, moved


def _inferred_noise(x_t, x0, t, s):
    """The eps with x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
    ab = s.alpha_bars[t].view(-1, 1, 1, 1).to(x_t.dtype)
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


@exercise_check
def check_train_step(c, fn):
    s = _test_schedule()
    g = _gen(4)
    x0 = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
    y = torch.randint(0, 11, (64,), generator=g)
    torch.manual_seed(0)
    out, (x_t, t, seen_y), before, moved = _step_once(c, fn, x0, y, s)

    c.true(not t.is_floating_point() and not t.is_complex(), STEP_T_NOT_INTEGER)
    c.true(t.numel() == len(x0) and t.unique().numel() > 1, STEP_T_SHARED)
    c.true(int(t.max()) < s.T, STEP_T_OUT_OF_RANGE)
    c.true(int(t.min()) == 0, STEP_T_NEVER_ZERO)
    c.true(int(t.max()) == s.T - 1, STEP_T_NEVER_LAST)
    c.true(seen_y.shape == y.shape and torch.equal(seen_y, y), STEP_LABELS)
    c.true(x_t.shape == x0.shape and not torch.allclose(x_t, x0.to(x_t.dtype)), STEP_CLEAN_INPUT)

    t = t.reshape(-1)
    noise = _inferred_noise(x_t, x0, t, s)
    c.true(noise.mean().abs() < 0.15 and 0.85 < noise.std() < 1.15, STEP_NOISE_NOT_GAUSSIAN)
    c.true(not torch.allclose(noise[0], noise[1]), STEP_NOISE_SHARED)

    # the loss of this batch and its gradient, with the weights as they were before the step
    scale, shift = (b.clone().requires_grad_() for b in before)
    pred = scale * x_t + shift
    expected = ((pred - noise) ** 2).mean()
    expected.backward()
    loss = c.tensor(out, "the loss your step returned").detach()
    c.true(loss.numel() == 1, f"{LOSS_NOT_SCALAR}; yours has shape {tuple(loss.shape)}.")
    loss = loss.double().reshape(1)
    if not torch.allclose(loss, expected.detach().double().reshape(1), rtol=1e-4, atol=1e-5):
        c.true(not torch.allclose(loss, ((pred - x0) ** 2).mean().detach().double().reshape(1), rtol=1e-4),
               STEP_X0_TARGET)
        c.fail(STEP_LOSS_VALUE)

    true_grads = [scale.grad, shift.grad]
    c.true(any(m.abs().max() > 1e-6 for m in moved), STEP_NO_UPDATE)
    if not all(torch.allclose(m, gr, rtol=1e-3, atol=1e-5) for m, gr in zip(moved, true_grads)):
        stale = all(torch.allclose(m, gr + STALE, rtol=1e-3, atol=1e-4) for m, gr in zip(moved, true_grads))
        c.fail(STEP_STALE_GRADIENTS if stale else STEP_WRONG_UPDATE)

    # a second step draws new t and noise; ten steps on this fixed batch lower the loss
    _, (x_t2, t2, _), _, _ = _step_once(c, fn, x0, y, s)
    c.true(not (torch.equal(t2, t.view_as(t2)) and torch.allclose(x_t2, x_t)), STEP_NOISE_REUSED)
    model = _RecordingDenoiser()
    opt = PlainSGD(model.parameters(), lr=STEP_LR)
    losses = [float(c.tensor(c.call(fn, model, opt, x0, y, s)).detach().reshape(-1)[0]) for _ in range(10)]
    c.learns(losses, STEP_NOT_LEARNING)


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


# --------------------------------------------------------------------------- sample_ddim

class _RoughGuesser(torch.nn.Module):
    """A stand-in noise predictor whose guesses are rough enough that the clean-image estimate leaves
    [-1, 1] (so clamping matters); it records the step and batch size of every call."""

    def __init__(self, image_size: int):
        super().__init__()
        self.cfg = UNetConfig(image_size=image_size, n_classes=10)
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append((int(t[0]), len(x)))
        return 0.6 * x + 0.05 * (y.view(-1, 1, 1, 1).to(x.dtype) - 5) + 0.02 * t.view(-1, 1, 1, 1).to(x.dtype)


def _ddim_variant(model, y, s: Schedule, steps, w, seed, clamp=True, recompute=True, current=None, after=None,
                  swapped=False):
    """DDIM as a learner might write it. ``current(t)`` is the alpha_bar read at step t, ``after(ts, i)``
    the one jumped to (None: the reference's choices)."""
    x = start_noise(model, y, _gen(seed))
    ts = torch.linspace(s.T - 1, 0, steps).round().long().tolist()
    ones = torch.ones((), dtype=s.alpha_bars.dtype)
    for i, t in enumerate(ts):
        ab = current(t) if current else s.alpha_bars[t]
        ab_next = after(ts, i) if after else (s.alpha_bars[ts[i + 1]] if i + 1 < len(ts) else ones)
        eps = predict_eps(model, x, t, y, w)
        x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clamp:
            x0_hat = x0_hat.clamp(-1, 1)
            if recompute:
                eps = (x - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
        signal, noise = (eps, x0_hat) if swapped else (x0_hat, eps)
        x = ab_next.sqrt() * signal + (1 - ab_next).sqrt() * noise
    return x


def ddim_mistakes(model, y, s: Schedule, steps, w, seed) -> dict:
    run = lambda **kw: _ddim_variant(model, y, s, steps, w, seed, **kw)
    ones = torch.ones((), dtype=s.alpha_bars.dtype)
    return {
        DDIM_NO_CLAMP: run(clamp=False),
        DDIM_LAST_NOISY: run(after=lambda ts, i: s.alpha_bars[ts[i + 1] if i + 1 < len(ts) else 0]),
        DDIM_NEXT_CONSECUTIVE: run(after=lambda ts, i: s.alpha_bars[ts[i] - 1] if i + 1 < len(ts) else ones),
        DDIM_NEXT_OFF_BY_ONE: run(after=lambda ts, i: s.alpha_bars_prev[ts[i + 1]] if i + 1 < len(ts) else ones),
        DDIM_CURRENT_OFF_BY_ONE: run(current=lambda t: s.alpha_bars[t - 1]),
        DDIM_SWAPPED: run(swapped=True),
        DDIM_PIXELS: to_pixels(sample_ddim(model, y, s, steps, w, seed)),
    }


@exercise_check
def check_sample_ddim(c, fn):
    s = _test_schedule()
    for steps, w, size, y in ((4, 1.0, 4, torch.tensor([0, 3, 7])), (10, 3.0, 6, torch.tensor([2, 9])),
                              (1, 0.0, 4, torch.tensor([5, 5]))):
        seed = steps
        mine, theirs = _RoughGuesser(size), _RoughGuesser(size)
        out = c.tensor(c.call(fn, mine, y, s, steps=steps, w=w, seed=seed,
                              error_hints={"out of bounds": DDIM_STEPS_PAST_END}))
        expected = sample_ddim(theirs, y, s, steps=steps, w=w, seed=seed)
        visited, wanted = [t for t, _ in mine.calls], [t for t, _ in theirs.calls]
        if visited != wanted:
            c.true(len(visited) == len(wanted), f"{DDIM_CALLS} With {steps} steps it called it {len(visited)} times.")
            c.true(len(visited) < 2 or visited[0] > visited[-1], DDIM_UPWARDS)
            c.fail(f"{DDIM_WRONG_STEPS} With {steps} steps of T = {s.T}: yours {visited}, expected {wanted}.",
                   more=DDIM_WRONG_STEPS.more)
        c.true([b for _, b in mine.calls] == [b for _, b in theirs.calls], DDIM_IGNORES_W)
        c.finite(out, DDIM_NOT_FINITE)
        again = c.tensor(c.call(fn, _RoughGuesser(size), y, s, steps=steps, w=w, seed=seed))
        c.true(again.shape == out.shape and torch.equal(again, out), DDIM_NOT_DETERMINISTIC)
        c.shape(out, (len(y), 1, size, size), DDIM_SHAPE)
        # clamping x0_hat and then keeping the network's own eps (not recomputing it) is DDIM too
        kept_eps = _ddim_variant(theirs, y, s, steps, w, seed, recompute=False)
        if torch.allclose(out.detach().double(), kept_eps.double(), atol=1e-4, rtol=1e-4):
            continue
        c.close(out, expected, mistakes=ddim_mistakes(theirs, y, s, steps, w, seed))


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

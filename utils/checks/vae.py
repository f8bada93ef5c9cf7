"""Checks for lesson 03: the reparameterisation trick, the KL term and the ELBO loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import NO_RETURN, Hint, exercise_check
from .. import vae as ref

# ------------------------------------------------------------------ hints, shared with the tests
# The printed first hint names the symptom; ``more`` (utils.checks.hint) names the fix.
Z_SHAPE = Hint("z should have the same shape as mu: one sample per example and latent dimension.",
               more="return mu + sigma * eps, with eps = torch.randn_like(mu) of mu's shape.")
Z_NO_NOISE = Hint("z is exactly mu: nothing random was added, so it is not a sample.",
                  more="add sigma * eps with eps = torch.randn_like(mu) and sigma = exp(0.5 * logvar).")
Z_CONSTANT = Hint("z does not vary at all between calls or examples.",
                  more="add sigma * eps with fresh eps = torch.randn_like(mu) at every call.")
Z_SAME_FOR_BATCH = Hint("every example of the batch got the same noise.",
                        more="draw one eps per example and dimension, eps = torch.randn_like(mu), "
                             "not torch.randn(latent).")
Z_SHARED_DIMS = Hint("the latent dimensions move together: their samples are correlated.",
                     more="draw an independent eps for every dimension, eps = torch.randn_like(mu), "
                          "not one value per example.")
Z_LOGVAR_AS_STD = Hint("the spread of z follows logvar itself, and is even there when logvar is negative.",
                       more="logvar is log(sigma^2), not sigma: sigma = exp(0.5 * logvar).")
Z_VAR_AS_STD = Hint("the spread of z is the variance, not the standard deviation: too wide where "
                    "sigma is above 1, too narrow below.",
                    more="you forgot the 0.5: exp(logvar) is the variance; sigma = exp(0.5 * logvar).")
Z_SQRT_TWICE = Hint("the spread of z is the square root of the standard deviation.",
                    more="you took the square root twice: sigma = exp(0.5 * logvar) already is the square root "
                         "of the variance.")
Z_UNIFORM = Hint("z spreads too little, and only to one side of mu: the noise is not a standard normal.",
                 more="torch.rand is uniform on [0, 1]: use eps = torch.randn_like(mu).")
Z_SPREAD_HINT = Hint("the spread of z around mu is not sigma.",
                     more="z = mu + exp(0.5 * logvar) * eps, with eps ~ N(0, I) from torch.randn_like.")
Z_NOT_CENTRED = Hint("z is centred on 0, not on mu.",
                     more="add the noise to mu: z = mu + sigma * eps.")
Z_MEAN_HINT = Hint("the samples do not average to mu.",
                   more="z = mu + sigma * eps, with zero-mean eps = torch.randn_like(mu).")
Z_NO_GRAD = Hint("no gradient flows back through z, so the encoder could not learn from the loss.",
                 more="build z as mu + sigma * eps (not with .sample(), torch.no_grad or .detach()).")
Z_GRAD_MU = Hint("moving mu does not move z one for one.",
                 more="dz/dmu should be 1: z = mu + sigma * eps, with eps independent of mu (and mu not detached).")
Z_GRAD_LOGVAR = Hint("no gradient reaches logvar: the encoder could never learn how uncertain to be.",
                     more="compute sigma from logvar inside the function, sigma = exp(0.5 * logvar), without detaching it.")

KL_SCALAR = Hint("you returned one number for the whole batch; the loss needs one KL per example, shape (B,).",
                 more="sum over the latent dimensions only: .sum(dim=1).")
KL_OVER_BATCH = Hint("the result has one value per latent dimension, not one per example.",
                     more="you summed over the batch (dim=0): sum over the latent dimensions, dim=1.")
KL_KEEPDIM = Hint("the result has shape (B, 1), not (B,).",
                  more="sum over dim=1 without keepdim=True.")
KL_SHAPE = Hint("the loss needs one KL value per example.",
                more="sum over dim=1, the latent dimensions.")
KL_SIGN = Hint("your KL is negative for some inputs, and a KL divergence never is.",
               more="mind the -0.5 in front of the sum: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).")
KL_HALF = Hint("your KL is exactly twice the right value.",
               more="you forgot the 0.5 in front of the sum.")
KL_STD_FOR_VAR = Hint("your KL is off whenever logvar is not 0, though right for mu alone: the variance term is off.",
                      more="the formula needs the variance exp(logvar), not the standard deviation exp(0.5 * logvar).")
KL_STD_FOR_LOGVAR = Hint("your KL is off whenever logvar is not 0: the log-variance term is off.",
                         more="the '1 + logvar' term takes logvar itself, not the standard deviation.")
KL_LOGVAR_AS_STD = Hint("your KL treats logvar as if it were the standard deviation.",
                        more="logvar is log(sigma^2), so sigma^2 = exp(logvar); not var = logvar**2.")
KL_MEAN_OVER_DIMS = Hint("your KL shrinks when the latent space grows: it is an average over the latent "
                         "dimensions, not their total.",
                         more="sum over the latent dimensions (.sum(dim=1)), do not take the mean.")
KL_MU_NOT_SQUARED = Hint("your KL goes down when mu moves in one direction: the mean term is linear, not squared.",
                         more="the term is mu**2 (mu.pow(2)).")
KL_LOGVAR_FOR_VAR = Hint("your KL does not grow when sigma grows above 1.",
                         more="the variance term is exp(logvar), not logvar itself.")
KL_NO_ONE = Hint("your KL is not zero when q is already N(0, I), with mu and logvar both 0.",
                 more="the constant 1 inside the sum is missing.")
KL_HINT = Hint("the KL values are off: compare yours with the closed form, term by term, the factor 0.5 "
               "in front included.",
               more="KL(q || N(0, I)) per example sums, over the latent dimensions, -0.5 (1 + logvar - mu^2 - exp(logvar)).")
KL_ZERO = Hint("when q is already N(0, I) (mu and logvar both 0) your KL is not 0.",
               more="check the constant 1 and the signs: each term 1 + 0 - 0 - exp(0) is 0.")

ELBO_PER_EXAMPLE = Hint("you returned one loss per example, but an optimiser needs one number.",
                        more="average over the batch with .mean() to get a scalar.")
ELBO_SCALAR = Hint("the loss should be one number (a scalar).",
                   more="the mean over the batch of [reconstruction + beta * KL].")
ELBO_NO_GRAD = Hint("the loss carries no gradient, so backward could not train the VAE.",
                    more="keep it a tensor built from the logits: no .item(), .detach() or torch.tensor(...).")
ELBO_PIXEL_MEAN = Hint("the reconstruction term is hundreds of times too small: it is an average over pixels, "
                       "not the image's total.",
                       more="the default reduction='mean' averages: use reduction='none', then .flatten(1).sum(1).")
ELBO_BATCH_SUM = Hint("the loss grows with the batch size.",
                      more="average over the examples (.mean()), do not sum them.")
ELBO_NO_BETA = Hint("changing beta does not change the loss.",
                    more="the loss is reconstruction + beta * KL.")
ELBO_BETA_ON_RECON = Hint("beta scales the reconstruction term, not the KL.",
                          more="beta belongs on the KL: reconstruction + beta * KL.")
ELBO_KL_SIGN = Hint("a larger KL makes your loss smaller: the KL is subtracted.",
                    more="the loss adds it, reconstruction + beta * KL (KL >= 0).")
ELBO_NO_KL = Hint("the loss does not depend on mu and logvar at all: the KL term is missing.",
                  more="the loss is reconstruction + beta * KL.")
ELBO_MSE = Hint("the reconstruction term is a squared error, not the Bernoulli negative log-likelihood.",
                more="use F.binary_cross_entropy_with_logits(logits, x, reduction='none').")
ELBO_SIGMOID_TWICE = Hint("the reconstruction term squashes the logits twice.",
                          more="binary_cross_entropy_with_logits applies the sigmoid itself: pass the logits as they are.")
ELBO_ARGS_SWAPPED = Hint("the reconstruction term treats the images as logits and the logits as targets.",
                         more="the logits come first, the target images x second.")
ELBO_HARD_CODED_PIXELS = Hint("on 14x14 images the loss is off: it assumes 784 pixels.",
                              more="do not hard-code 784 (28 * 28): sum over however many pixels the images have, "
                                   ".flatten(1).sum(1).")
ELBO_KL_PREFIX = "the KL part is off"
ELBO_HINT = Hint("the loss values are off.",
                 more="loss = mean over the batch of [BCE summed over pixels + beta * KL].")
ELBO_DEFAULT_BETA = Hint("called without beta, the function fails: beta needs a default value.",
                         more="def elbo_loss(logits, x, mu, logvar, beta=1.0).")
ELBO_DEFAULT_HINT = Hint("with the default beta the loss is off.",
                         more="with the default beta = 1 the loss is BCE + KL.")

SECOND_HINTS = {
    "reparameterize": "std = torch.exp(0.5 * logvar); eps = torch.randn_like(std); return mu + std * eps. "
                      "The randomness is all in eps, so z is a differentiable function of mu and logvar.",
    "kl_divergence": "return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1): one value per example, "
                     "zero exactly when mu = 0 and logvar = 0.",
    "elbo_loss": "recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').flatten(1).sum(dim=1); "
                 "return (recon + beta * kl_divergence(mu, logvar)).mean().",
}


# Per-dimension log-variances chosen so that every typical mistake gives a different spread.
_LOGVAR = torch.tensor([-2.0, 0.5, 1.5])
_MU = torch.tensor([1.0, -0.5, 2.0])


def kl_cases():
    """A small batch (B=4, latent 3) with positive and negative means and log-variances."""
    mu = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.2, -0.7], [0.0, 0.0, 0.0], [-2.0, 0.8, 1.1]])
    logvar = torch.tensor([[-1.0, 0.4, 0.2], [0.7, -0.3, -2.0], [0.3, -0.6, 1.2], [-0.5, 1.3, 0.6]])
    return mu, logvar


def kl_mistakes(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """hint -> the value each typical KL mistake produces (one value per example)."""
    std, var = (0.5 * logvar).exp(), logvar.exp()
    expected = ref.kl_divergence(mu, logvar)
    terms = 1 + logvar - mu.pow(2) - var
    return {
        KL_SIGN: -expected,
        KL_HALF: 2 * expected,
        KL_STD_FOR_VAR: -0.5 * (1 + logvar - mu.pow(2) - std).sum(1),
        KL_STD_FOR_LOGVAR: -0.5 * (1 + std - mu.pow(2) - var).sum(1),
        KL_LOGVAR_AS_STD: -0.5 * (1 + (logvar.pow(2) + 1e-12).log() - mu.pow(2) - logvar.pow(2)).sum(1),
        KL_MEAN_OVER_DIMS: -0.5 * terms.mean(1),
        KL_MU_NOT_SQUARED: -0.5 * (1 + logvar - mu - var).sum(1),
        KL_LOGVAR_FOR_VAR: -0.5 * (1 + logvar - mu.pow(2) - logvar).sum(1),
        KL_NO_ONE: expected + 0.5 * mu.shape[1],
    }


# --------------------------------------------------------------------------- reparameterize

@exercise_check
def check_reparameterize(c, fn):
    torch.manual_seed(0)
    n = 20_000
    mu = _MU.repeat(n, 1).requires_grad_(True)          # (n, 3)
    logvar = _LOGVAR.repeat(n, 1).requires_grad_(True)  # (n, 3)
    z = c.finite(c.shape(c.call(fn, mu, logvar), (n, 3), Z_SHAPE))
    zd = z.detach().double()
    if zd.std(dim=0).max() < 1e-6:
        c.fail(Z_NO_NOISE if torch.allclose(zd, mu.detach().double()) else Z_SAME_FOR_BATCH)
    reference = ref.reparameterize(mu, logvar).detach().double()  # the same distribution, sampled by the course
    c.close(zd.std(dim=0), reference.std(dim=0), rtol=0.03, atol=0.01, mistakes={
        Z_LOGVAR_AS_STD: _LOGVAR.abs(),
        Z_VAR_AS_STD: _LOGVAR.exp(),
        Z_SQRT_TWICE: _LOGVAR.mul(0.25).exp(),
        Z_UNIFORM: reference.std(dim=0) / 12 ** 0.5,
    }, hint=Z_SPREAD_HINT)
    c.close(zd.mean(dim=0), reference.mean(dim=0), atol=0.06, rtol=0.0, mistakes={Z_NOT_CENTRED: torch.zeros(3)},
            hint=Z_MEAN_HINT)
    correlation = torch.corrcoef(zd.T)                   # (3, 3): independent dimensions are uncorrelated
    c.true((correlation - torch.eye(3, dtype=torch.float64)).abs().max() < 0.05, Z_SHARED_DIMS)
    # the point of the trick: gradients reach mu and logvar through z
    c.true(z.requires_grad, Z_NO_GRAD)
    z[:4].sum().backward()
    c.true(mu.grad is not None and torch.allclose(mu.grad[:4].double(), torch.ones(4, 3, dtype=torch.float64)),
           Z_GRAD_MU)
    c.true(logvar.grad is not None and logvar.grad[:4].abs().sum() > 0, Z_GRAD_LOGVAR)


# --------------------------------------------------------------------------- KL divergence

@exercise_check
def check_kl_divergence(c, fn):
    mu, logvar = kl_cases()
    out = c.finite(c.shape(c.call(fn, mu, logvar), (4,), KL_SHAPE,
                           mistakes={(): KL_SCALAR, (3,): KL_OVER_BATCH, (4, 1): KL_KEEPDIM}))
    c.close(out, ref.kl_divergence(mu, logvar), mistakes=kl_mistakes(mu, logvar), hint=KL_HINT)
    zero = torch.zeros(2, 5)
    c.close(c.call(fn, zero, zero.clone()), ref.kl_divergence(zero, zero), hint=KL_ZERO)


# --------------------------------------------------------------------------- ELBO loss

def elbo_cases(seed: int = 0, batch: int = 5, latent: int = 3, side: int = 28):
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, 1, side, side, generator=gen)
    x = torch.rand(batch, 1, side, side, generator=gen)
    mu = torch.randn(batch, latent, generator=gen)
    logvar = 0.5 * torch.randn(batch, latent, generator=gen)
    return logits.requires_grad_(True), x, mu, logvar


def elbo_mistakes(logits, x, mu, logvar, beta: float) -> dict:
    logits = logits.detach()
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)  # (B, D)
    rec, kl = ref.reconstruction_nll(logits, x), ref.kl_divergence(mu, logvar)
    mse = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    mistakes = {
        ELBO_PIXEL_MEAN: bce.mean() + beta * kl.mean(),
        ELBO_BATCH_SUM: (rec + beta * kl).sum(),
        ELBO_NO_BETA: (rec + kl).mean(),
        ELBO_BETA_ON_RECON: (beta * rec + kl).mean(),
        ELBO_KL_SIGN: (rec - beta * kl).mean(),
        ELBO_NO_KL: rec.mean(),
        ELBO_MSE: (mse + beta * kl).mean(),
        ELBO_SIGMOID_TWICE: ref.elbo_loss(torch.sigmoid(logits), x, mu, logvar, beta),
        ELBO_ARGS_SWAPPED: (F.binary_cross_entropy_with_logits(x, logits, reduction="none").flatten(1).sum(1)
                            + beta * kl).mean(),
    }
    for hint, value in kl_mistakes(mu, logvar).items():  # a wrong KL inside the loss, named as such
        mistakes[Hint(f"{ELBO_KL_PREFIX} ({hint})", more=hint.more)] = (rec + beta * value).mean()
    return mistakes


@exercise_check
def check_elbo_loss(c, fn):
    for seed, batch, beta, side in ((0, 5, 4.0, 28), (1, 3, 0.5, 28), (3, 4, 2.0, 14)):
        logits, x, mu, logvar = elbo_cases(seed, batch, side=side)
        out = c.shape(c.call(fn, logits, x, mu, logvar, beta), (), ELBO_SCALAR, mistakes={(batch,): ELBO_PER_EXAMPLE})
        c.finite(out)
        c.true(out.requires_grad, ELBO_NO_GRAD)
        expected = ref.elbo_loss(logits, x, mu, logvar, beta)
        mistakes = elbo_mistakes(logits, x, mu, logvar, beta)
        if side != 28:
            rec = ref.reconstruction_nll(logits.detach(), x)
            mistakes[ELBO_HARD_CODED_PIXELS] = (rec * 784 / (side * side) + beta * ref.kl_divergence(mu, logvar)).mean()
        c.close(out, expected, mistakes=mistakes, hint=ELBO_HINT)
    logits, x, mu, logvar = elbo_cases(2, 4)  # the default beta is 1
    out = c.call(fn, logits, x, mu, logvar, error_hints={"beta": ELBO_DEFAULT_BETA})
    c.close(out, ref.elbo_loss(logits, x, mu, logvar), hint=ELBO_DEFAULT_HINT)


# --------------------------------------------------------------------------- the VAE module (build exercise)

VAE_NO_CFG = Hint("your VAE does not keep its config as `self.cfg`, which saving and loading need.",
                  more="keep the line self.cfg = cfg at the top of __init__.")
VAE_ENCODER_HALF = Hint("the encoder gives one number per latent dimension, but a Gaussian needs two: "
                        "a mean and a log-variance.",
                        more="the encoder's output size is 2 * cfg.latent; encode splits it into mu and logvar.")
VAE_ENCODE_PAIR = Hint("encode should give back two tensors, mu and logvar, each of shape (B, latent).",
                       more="split the encoder's output in two along the last dimension: "
                            "mu, logvar = self.encoder(x).chunk(2, dim=-1).")
VAE_SPLIT_BATCH = Hint("mu and logvar come out with half the batch each: the split cuts across the examples.",
                       more="split along the last dimension (dim=-1), where the 2 * latent numbers of each example are.")
VAE_SWAPPED = Hint("your mu holds what the reference's logvar holds, and the other way round.",
                   more="the first half of the encoder's output is mu, the second half logvar: "
                        "mu, logvar = h.chunk(2, dim=-1), in that order.")
VAE_INTERLEAVED = Hint("mu and logvar each mix numbers from both halves of the encoder's output.",
                       more="take the first latent numbers as mu and the last latent as logvar, with .chunk(2, dim=-1), "
                            "not every other number.")
VAE_LOGVAR_EXP = Hint("your logvar is never negative: it looks like a variance or a standard deviation, "
                      "not its logarithm.",
                      more="return the encoder's second half as it is: it is log(sigma^2) already, any real number.")
VAE_DECODE_SHAPE = Hint("decode should give one logit per pixel, shaped like the images (B, 1, H, W).",
                        more="self.decoder (an MLPDecoder) already reshapes its output to cfg.image_shape: return it.")
VAE_DECODE_SIGMOID = Hint("the decoder's output lies between 0 and 1: the loss expects logits, "
                          "which can be any real number.",
                          more="return self.decoder(z) without a sigmoid: binary_cross_entropy_with_logits applies it.")
VAE_FORWARD_TRIPLE = Hint("forward should give back three tensors: the logits, mu and logvar, in that order.",
                          more="return self.decode(z), mu, logvar.")
VAE_FORWARD_ORDER = Hint("forward's three outputs are in the wrong order: the loss reads the logits first, "
                         "then mu, then logvar.",
                         more="return self.decode(z), mu, logvar.")
VAE_NO_SAMPLE = Hint("forward gives the same logits every time for the same image: the code is not sampled.",
                     more="decode a sample z = reparameterize(mu, logvar), not mu itself; mu is for "
                          "reconstructing at test time.")
VAE_NO_GRAD_TO_ENCODER = Hint("the reconstruction loss sends no gradient back to the encoder, so the encoder "
                              "could never learn to encode.",
                              more="sample with the reparameterisation trick, z = reparameterize(mu, logvar): "
                                   "not with .sample(), torch.normal, .detach() or under torch.no_grad().")
VAE_LOGVAR_AS_STD = Hint("the sampled codes spread too much or too little around mu.",
                         more="sigma = exp(0.5 * logvar); simplest is z = reparameterize(mu, logvar).")
VAE_FORWARD_HINT = Hint("the logits are not the decoded sample of the code.",
                        more="forward: mu, logvar = self.encode(x); z = reparameterize(mu, logvar); "
                             "return self.decode(z), mu, logvar.")
VAE_LEARN_HINT = Hint("are the encoder's outputs and the sample wired as the loss expects?",
                      more="forward returns the logits of the sampled code, mu and logvar, all still carrying gradients.")

_VAE_CONFIGS = (ref.VAEConfig(image_shape=(1, 6, 6), hidden=16, latent=3),
                ref.VAEConfig(image_shape=(1, 28, 28), hidden=12, latent=2),
                ref.VAEConfig(image_shape=(1, 5, 7), hidden=8, latent=5))


def _batch(cfg, n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, *cfg.image_shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _pair(c, out, hint) -> tuple:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        c.fail(hint)
    return tuple(c.tensor(o) for o in out)


def _encoder_is_half(mine, reference) -> bool:
    """Whether the learner's encoder ends with latent outputs where the reference has 2 * latent."""
    theirs = reference.state_dict()
    last = [k for k in theirs if k.startswith("encoder.") and k.endswith(".bias")][-1]
    mine = mine.state_dict()
    return last in mine and mine[last].shape[0] * 2 == theirs[last].shape[0]


def _sampler(cls):
    """The reparameterize the learner's forward calls (the notebook's), else the course's."""
    fn = getattr(getattr(cls, "forward", None), "__globals__", {}).get("reparameterize")
    return fn if callable(fn) else ref.reparameterize


def _check_encode_decode(c, mine, reference, cfg, x):
    mu, logvar = _pair(c, c.call(mine.encode, x), VAE_ENCODE_PAIR)
    c.shape(mu, (len(x), cfg.latent), VAE_ENCODE_PAIR, mistakes={(len(x) // 2, 2 * cfg.latent): VAE_SPLIT_BATCH})
    c.shape(logvar, (len(x), cfg.latent), VAE_ENCODE_PAIR)
    h = reference.encoder(x).detach()                              # (B, 2 * latent)
    r_mu, r_logvar = h.chunk(2, dim=-1)
    c.close(mu, r_mu, mistakes={VAE_SWAPPED: r_logvar, VAE_INTERLEAVED: h[:, 0::2]}, hint=VAE_ENCODE_PAIR)
    c.close(logvar, r_logvar, mistakes={VAE_LOGVAR_EXP: lambda out: bool((out >= 0).all() and (r_logvar < 0).any()),
                                        VAE_SWAPPED: r_mu, VAE_INTERLEAVED: h[:, 1::2]}, hint=VAE_ENCODE_PAIR)
    z = torch.randn(len(x), cfg.latent, generator=torch.Generator().manual_seed(5)).to(x)
    out = c.shape(c.call(mine.decode, z), (len(x), *cfg.image_shape), VAE_DECODE_SHAPE)
    expected = reference.decode(z).detach()
    c.close(out, expected, mistakes={VAE_DECODE_SIGMOID: torch.sigmoid(expected)}, hint=VAE_DECODE_SHAPE)


def _forward(c, mine, x, seed):
    torch.manual_seed(seed)
    out = c.call(mine, x)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        c.fail(VAE_FORWARD_TRIPLE)
    return tuple(c.tensor(o) for o in out)


@exercise_check
def check_VAE(c, cls):
    for i, cfg in enumerate(_VAE_CONFIGS):
        torch.manual_seed(i)
        reference = ref.VAE(cfg)
        mine = c.module(cls, cfg)
        c.true(getattr(mine, "cfg", None) == cfg, VAE_NO_CFG)
        for method in ("encode", "decode"):
            c.true(callable(getattr(mine, method, None)), f"your VAE has no `{method}` method: keep the stub's four methods.")
        if _encoder_is_half(mine, reference):
            c.fail(VAE_ENCODER_HALF)
        c.same_weights(mine, reference)
        x = _batch(cfg, 4, seed=i)
        with torch.no_grad():
            _check_encode_decode(c, mine, reference, cfg, x)

        logits, mu, logvar = _forward(c, mine, x, seed=10 + i)
        if logits.shape != x.shape and (mu.shape == x.shape or logvar.shape == x.shape):
            c.fail(VAE_FORWARD_ORDER)
        c.shape(logits, x.shape, VAE_FORWARD_TRIPLE)
        r_mu, r_logvar = (t.detach() for t in reference.encode(x))
        c.close(mu, r_mu, mistakes={VAE_FORWARD_ORDER: r_logvar}, hint=VAE_FORWARD_TRIPLE)
        c.close(logvar, r_logvar, mistakes={VAE_FORWARD_ORDER: r_mu}, hint=VAE_FORWARD_TRIPLE)

        encoder = [p for p in mine.encoder.parameters()]   # the sample must carry the gradient to the encoder
        recon = ref.reconstruction_nll(logits, x).mean() if logits.requires_grad else None
        grads = torch.autograd.grad(recon, encoder, allow_unused=True) if recon is not None else [None]
        if all(g is None or not g.abs().sum() > 0 for g in grads):
            c.fail(VAE_NO_GRAD_TO_ENCODER)

        with torch.no_grad():
            torch.manual_seed(10 + i)
            expected = reference.decode(_sampler(cls)(r_mu, r_logvar))
            torch.manual_seed(10 + i)
            eps = torch.randn_like(r_mu)
            wrong_spreads = [reference.decode(r_mu + r_logvar * eps), reference.decode(r_mu + r_logvar.exp() * eps)]
            mistakes = {VAE_NO_SAMPLE: reference.decode(r_mu),
                        VAE_DECODE_SIGMOID: torch.sigmoid(expected),
                        VAE_LOGVAR_AS_STD: lambda out: any(torch.allclose(out, w, atol=1e-4) for w in wrong_spreads)}
        c.close(logits, expected, mistakes=mistakes, hint=VAE_FORWARD_HINT)

    cfg = _VAE_CONFIGS[0]                                    # float64 works, and a few steps lower the loss
    torch.manual_seed(0)
    reference = ref.VAE(cfg).double()
    mine = c.module(cls, cfg)
    c.same_weights(mine, reference)
    mine.double()
    x = _batch(cfg, 8, seed=7).double()
    logits, mu, logvar = _forward(c, mine, x, seed=3)
    c.true(logits.dtype == torch.float64, "your VAE does not work in float64: keep the input's dtype throughout.")
    c.gradients_reach(mine, ref.elbo_loss(logits, x, mu, logvar))
    opt = torch.optim.Adam(mine.parameters(), lr=1e-2)
    losses = []
    for step in range(25):
        logits, mu, logvar = _forward(c, mine, x, seed=100 + step)
        loss = ref.elbo_loss(logits, x, mu, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    c.learns(losses, VAE_LEARN_HINT)


# --------------------------------------------------------------------------- one training step (build exercise)

STEP_STALE_GRADS = Hint("the update depends on gradients left over from before the call: they add up from one "
                        "step to the next.",
                        more="call opt.zero_grad() before loss.backward() in every step.")
STEP_NO_UPDATE = Hint("the parameters did not change: the step computed a loss but did not move the model.",
                      more="the order is opt.zero_grad(), loss.backward(), opt.step(): zeroing after backward "
                           "throws the gradients away, and without opt.step() nothing moves.")
STEP_NO_BETA = Hint("changing beta changes nothing in the update.",
                    more="pass beta on to the loss: elbo_loss(logits, x, mu, logvar, beta).")
STEP_RETURNS_TENSOR = Hint("the step returns a tensor that still carries the whole graph: a history of them "
                           "would keep every step's graph in memory.",
                           more="return loss.item(), a plain Python number.")
STEP_RETURNED_VALUE = Hint("the number returned is not the batch's loss before the update.",
                           more="return loss.item() of the loss you called backward on.")
STEP_NOT_SAMPLED = Hint("the update is the one you get from decoding mu: no code was sampled during training.",
                        more="use the model's forward, logits, mu, logvar = model(x), which decodes a sample.")
STEP_HINT = Hint("the updated parameters differ from one Adam step on the negative ELBO of the batch.",
                 more="logits, mu, logvar = model(x); loss = elbo_loss(logits, x, mu, logvar, beta); "
                      "opt.zero_grad(); loss.backward(); opt.step(); return loss.item().")
STEP_LEARN_HINT = Hint("repeated steps on one fixed batch should fit it.",
                       more="check the order zero_grad, backward, step, and that the loss is the negative ELBO.")

_STEP_CFG = ref.VAEConfig(image_shape=(1, 6, 6), hidden=16, latent=3)


def _step_setup(seed: int = 0, stale: bool = True):
    """A small VAE with an SGD optimiser, and (when ``stale``) gradients left over from an earlier step."""
    torch.manual_seed(seed)
    model = ref.VAE(_STEP_CFG)
    if stale:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).double()


def _reference_steps(x, beta, seed):
    """{name: parameters after one step} for the right step and each typical mistake, from the same start."""
    def run(step):
        model, opt = _step_setup()
        torch.manual_seed(seed)
        loss = step(model, opt)
        return _flat(model), loss

    def right(model, opt, beta=beta, sample=True, zero=True):
        mu, logvar = model.encode(x)
        z = ref.reparameterize(mu, logvar) if sample else mu
        loss = ref.elbo_loss(model.decode(z), x, mu, logvar, beta)
        if zero:
            opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    expected, loss = run(right)
    return expected, loss, {
        STEP_STALE_GRADS: run(lambda m, o: right(m, o, zero=False))[0],
        STEP_NO_BETA: run(lambda m, o: right(m, o, beta=1.0))[0],
        STEP_NOT_SAMPLED: run(lambda m, o: right(m, o, sample=False))[0],
    }


@exercise_check
def check_vae_step(c, fn):
    x = _batch(_STEP_CFG, 8, seed=1)
    start = _flat(_step_setup()[0])
    for beta, seed in ((4.0, 0), (0.5, 1)):
        expected, expected_loss, mistakes = _reference_steps(x, beta, seed)
        model, opt = _step_setup()
        torch.manual_seed(seed)
        out = c.call(fn, model, opt, x, beta)
        if out is None:
            c.fail(f"the step's loss {NO_RETURN}")
        if isinstance(out, torch.Tensor) and out.requires_grad:
            c.fail(STEP_RETURNS_TENSOR)
        after = _flat(model)
        if torch.allclose(after, start):
            c.fail(STEP_NO_UPDATE)
        c.close(after, expected, mistakes=mistakes, hint=STEP_HINT, atol=1e-5)
        try:
            value = float(out)
        except (TypeError, ValueError):
            c.fail(f"the step returned a {type(out).__name__}, not a number: {STEP_RETURNS_TENSOR}")
        c.close(torch.tensor(value), torch.tensor(expected_loss), hint=STEP_RETURNED_VALUE)

    model, _ = _step_setup(stale=False)                      # repeated steps fit one batch, in float64 too
    model.double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [float(c.call(fn, model, opt, x.double(), 1.0)) for _ in range(25)]
    c.learns(losses, STEP_LEARN_HINT)


SECOND_HINTS |= {
    "VAE": "__init__ builds self.encoder = MLPEncoder(cfg.image_shape, (cfg.hidden,), 2 * cfg.latent) and "
           "self.decoder = MLPDecoder(cfg.latent, (cfg.hidden,), cfg.image_shape); encode splits the encoder's "
           "output with .chunk(2, dim=-1) into mu, logvar; decode returns self.decoder(z) (logits); forward "
           "samples z = reparameterize(mu, logvar) and returns self.decode(z), mu, logvar.",
    "vae_step": "logits, mu, logvar = model(x); loss = elbo_loss(logits, x, mu, logvar, beta); then "
                "opt.zero_grad(), loss.backward(), opt.step(), in that order; return loss.item().",
}

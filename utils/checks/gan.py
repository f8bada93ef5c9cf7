"""Checks for lesson 04 (GANs): the two losses, the training step, label conditioning."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .core import exercise_check
from .. import gan as ref

_bce = F.binary_cross_entropy_with_logits

# ------------------------------------------------------------------ hints, shared with the tests
NOT_SCALAR = "should be a single number (a 0-d tensor): average over the batch."
NO_GRAD = ("carries no gradient: keep it a tensor (no .item(), .detach() or torch.tensor(...) around it) so that "
           "backward() can reach the networks.")
SIGMOID_TWICE = ("binary_cross_entropy_with_logits applies the sigmoid itself: pass the raw logits, "
                 "not torch.sigmoid(logits) (a sigmoid twice squashes every loss towards log 2).")
D_SWAPPED = "the real and fake labels are swapped: real images get target 1, generated ones target 0."
D_SWAPPED_AND_SIGMOID = ("the labels are swapped AND a sigmoid is applied before the loss: real -> 1, fake -> 0, "
                         "and pass raw logits.")
D_AVERAGED = "you averaged the two terms: add them (loss on reals + loss on fakes), each a mean over its batch."
D_ONLY_REAL = "only the real term is there: add the loss on the fakes (target 0)."
D_ONLY_FAKE = "only the fake term is there: add the loss on the real images (target 1)."
D_SUM = "use the mean over the batch, not the sum (reduction='mean', the default)."
D_SIGN = "the sign is flipped: BCE is already a loss to minimise, so no minus sign in front."
D_SEPARATELY = ("compute the real term and the fake term separately (each a mean over its own batch) and add "
                "them: one mean over both batches weighs the larger batch more.")
G_SATURATING = ("that is the saturating minimax loss log(1 - D(G(z))): its gradient vanishes exactly when D spots "
                "the fakes. Use the non-saturating one, -log D(G(z)): BCE of the fake logits against target 1.")
G_TARGET_ZERO = ("with target 0 the generator would help D call its images fake: the generator wants D to say "
                 "'real' (target 1).")
G_SIGN = "the sign is flipped: BCE against target 1 is already the loss to minimise."
G_SUM = "use the mean over the batch, not the sum."

STEP_COUNTS = "call opt_d.step() once and opt_g.step() once per training step"
STEP_ORDER = "update D first (loss_d.backward(), opt_d.step()), then G (loss_g.backward(), opt_g.step())."
STEP_NO_DETACH = ("gradients reached G during the D update: the fakes need .detach() there, D(fake.detach()), "
                  "so that loss_d.backward() stops at the generated images.")
STEP_D_GRADS_KEPT = "D's old gradients were not cleared: call opt_d.zero_grad() before loss_d.backward()."
STEP_G_GRADS_KEPT = ("G's old gradients were not cleared: call opt_g.zero_grad() (not opt_d's a second time) "
                     "before loss_g.backward().")
STEP_D_HINT = "the D update should use d_loss(D(real), D(fake.detach()))."
STEP_G_UNCHANGED = ("G did not change: the G update needs a fresh D(fake) without .detach() (the logits from the "
                    "D step are cut off from G).")
STEP_SATURATING = "the G update uses the saturating loss; use the non-saturating g_loss (target 1)."
STEP_G_HINT = "the G update should be g_loss(D(fake)) with fake = G(z) and D already updated."
STEP_STALE_LOGITS = ("the G loss reuses logits computed before opt_d.step() changed D: compute a fresh D(fake) "
                     "after the D update.")
STEP_CUT_OFF = ("the G loss is cut off from the graph: compute g_loss(D(fake)) with fake = G(z) not detached, "
                "after the D update.")
STEP_DETACHED_LOGITS = ("you detached D's logits instead of the images: D(fake).detach() stops D learning from the "
                        "fakes too. Detach the images, D(fake.detach()).")
STEP_RETURN = "return the dictionary of the template (loss_d, loss_g, D(x), D(G(z)))."
STEP_LOSSES = "loss_d and loss_g should be the losses you called backward() on (as numbers, .item())."

COND_WIDTH_OF_H = ("the result has the width of h alone: concatenate the embedding (torch.cat([h, embedding(y)], "
                   "dim=1)) rather than adding it or leaving it out.")
COND_DIM0 = "you stacked along the batch dimension (dim=0): concatenate along the features, dim=1."
COND_RAW_LABEL = "you appended the raw label number; look it up in the embedding instead: embedding(y)."
COND_ONE_HOT = "you appended a one-hot vector; this exercise uses the learned embedding, embedding(y)."
COND_STACKED = "torch.stack adds a new dimension: join the features with torch.cat([h, embedding(y)], dim=1)."
COND_SHAPE = "h's features followed by the label embedding's"
COND_FIRST_LABEL = "every row got the embedding of the first label: look up embedding(y) for the whole batch."
COND_HINT = "each row should be h[i] followed by embedding(y[i])."
COND_NO_GRAD = ("no gradient reaches the embedding: do not detach it or wrap it in torch.no_grad(), the class "
                "vectors are learned with the networks.")


def _logits():
    real = torch.tensor([[2.0], [-1.0], [0.5], [3.0], [-2.5]], requires_grad=True)   # (B, 1), like D's output
    fake = torch.tensor([[-2.0], [1.5], [0.0], [-0.5], [4.0]], requires_grad=True)
    return real, fake


def _scalar(c, out, what):
    out = c.tensor(out, what)
    c.true(out.dim() == 0, f"{what} {NOT_SCALAR} (It has shape {tuple(out.shape)}.)")
    c.true(out.requires_grad, f"{what} {NO_GRAD}")
    return out


@exercise_check
def check_d_loss(c, fn):
    real, fake = _logits()
    out = _scalar(c, c.call(fn, real, fake), "the discriminator loss")
    r, f = real.detach(), fake.detach()
    ones, zeros = torch.ones_like(r), torch.zeros_like(r)
    expected = ref.d_loss(r, f)
    c.close(out, expected, mistakes={
        D_SWAPPED: ref.d_loss(f, r),
        SIGMOID_TWICE: ref.d_loss(torch.sigmoid(r), torch.sigmoid(f)),
        D_SWAPPED_AND_SIGMOID: ref.d_loss(torch.sigmoid(f), torch.sigmoid(r)),
        D_AVERAGED: 0.5 * expected,
        D_ONLY_REAL: _bce(r, ones),
        D_ONLY_FAKE: _bce(f, zeros),
        D_SUM: _bce(r, ones, reduction="sum") + _bce(f, zeros, reduction="sum"),
        D_SIGN: -expected,
    })
    # a batch of reals and a batch of fakes with different sizes: each term is its own mean
    out2 = _scalar(c, c.call(fn, real[:2], fake), "the discriminator loss")
    c.close(out2, ref.d_loss(r[:2], f), hint=D_SEPARATELY)


@exercise_check
def check_g_loss(c, fn):
    _, fake = _logits()
    out = _scalar(c, c.call(fn, fake), "the generator loss")
    f = fake.detach()
    c.close(out, ref.g_loss(f), mistakes={
        G_SATURATING: ref.g_loss_saturating(f),
        G_TARGET_ZERO: -ref.g_loss_saturating(f),
        SIGMOID_TWICE: ref.g_loss(torch.sigmoid(f)),
        G_SIGN: -ref.g_loss(f),
        G_SUM: ref.g_loss(f) * len(f),
    })


# --------------------------------------------------------------------------- the training step

class _SGD:
    """Plain SGD (lr 0.1) with the two methods a training step uses, zero_grad() and step().

    Not a torch.optim.Optimizer: the first step() of one of those imports torch._dynamo, which alone
    takes longer than a check may. ``log`` records each step's name and whether ``watch``, the other
    network, held gradients of its own making at that moment.
    """

    def __init__(self, params, name: str = "", log: list | None = None, watch=None, lr: float = 0.1):
        self.params, self.name, self.log, self.watch, self.lr = list(params), name, log, watch, lr
        self.param_groups = [{"params": self.params, "lr": lr}]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        if self.log is not None:
            self.log.append((self.name, self.watch is not None and any(_fresh_grad(p) for p in self.watch)))
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


_STALE = 5.0  # the gradient every parameter holds before the step, as if left over from the last one


def _fresh_grad(p) -> bool:
    """Whether p holds a gradient computed during this step (not None, zero or the stale pre-fill)."""
    return p.grad is not None and bool(p.grad.abs().sum() > 0) and not bool((p.grad == _STALE).all())


def _tiny_gan(seed=0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3))     # z (B, 2) -> "image" (B, 3)
    D = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1))  # (B, 3) -> logit (B, 1)
    real = torch.randn(6, 3) + 1.0
    z = torch.randn(6, 2)
    return G, D, real, z


def _with_stale_grads(*models):
    for model in models:
        for p in model.parameters():
            p.grad = torch.full_like(p, _STALE)


class _KeepGrads(_SGD):
    """An optimiser whose zero_grad() does nothing: the step as written by someone who never calls it."""

    def zero_grad(self, set_to_none: bool = True):
        pass


def _step_result(G0, D0, real, z, g_loss=ref.g_loss, zero_d=True, zero_g=True):
    """G and D after the reference step from stale gradients, done right or with one mistake."""
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    _with_stale_grads(G, D)
    ref.gan_step(G, D, (_SGD if zero_g else _KeepGrads)(G.parameters()),
                 (_SGD if zero_d else _KeepGrads)(D.parameters()), real, z, g_loss=g_loss)
    return G, D


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@exercise_check
def check_gan_step(c, fn):
    G, D, real, z = _tiny_gan()
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    log = []
    opt_g = _SGD(G.parameters(), "G", log)
    opt_d = _SGD(D.parameters(), "D", log, watch=list(G.parameters()))
    _with_stale_grads(G, D)   # gradients left from an earlier step: each update must clear its own
    out = c.call(fn, G, D, opt_g, opt_d, real, z, error_hints={
        "modified by an inplace operation": STEP_STALE_LOGITS,
        "does not require grad": STEP_CUT_OFF,
        "Trying to backward through the graph a second time": STEP_STALE_LOGITS})
    names = [name for name, _ in log]
    c.true(names.count("D") == 1 and names.count("G") == 1, f"{STEP_COUNTS} (they were called {names or 'never'}).")
    c.true(names == ["D", "G"], STEP_ORDER)
    c.true(not log[0][1], STEP_NO_DETACH)
    ref_G, ref_D = _step_result(G0, D0, real, z)
    c.close(_flat(D), _flat(ref_D), atol=1e-5, mistakes={
        STEP_D_GRADS_KEPT: _flat(_step_result(G0, D0, real, z, zero_d=False)[1]),
        STEP_DETACHED_LOGITS: lambda d: not torch.allclose(d, _flat(D0)) and _only_real_moved(d, G0, D0, real),
    }, hint=STEP_D_HINT)
    c.close(_flat(G), _flat(ref_G), atol=1e-5, mistakes={
        STEP_G_UNCHANGED: _flat(G0),
        STEP_G_GRADS_KEPT: _flat(_step_result(G0, D0, real, z, zero_g=False)[0]),
        STEP_SATURATING: _flat(_step_result(G0, D0, real, z, g_loss=ref.g_loss_saturating)[0]),
    }, hint=STEP_G_HINT)
    c.true(isinstance(out, dict) and {"loss_d", "loss_g"} <= set(out), STEP_RETURN)
    with torch.no_grad():
        fake = G0(z)
        expected = [ref.d_loss(D0(real), D0(fake)).item(), ref.g_loss(ref_D(fake)).item()]
    try:
        losses = [float(torch.as_tensor(out[key]).detach()) for key in ("loss_d", "loss_g")]
    except (TypeError, ValueError, RuntimeError):
        c.fail(STEP_LOSSES)
    c.close(torch.tensor(losses), torch.tensor(expected), atol=1e-5, hint=STEP_LOSSES)


def _only_real_moved(d_params, G0, D0, real) -> bool:
    """Whether D's new parameters are what the D step gives when only the real term reaches D."""
    D = copy.deepcopy(D0)
    D.zero_grad()
    _bce(D(real), torch.ones(len(real), 1)).backward()
    with torch.no_grad():
        for p in D.parameters():
            p.add_(p.grad, alpha=-0.1)
    return torch.allclose(d_params, _flat(D), atol=1e-5)


# --------------------------------------------------------------------------- label conditioning

@exercise_check
def check_condition_on_label(c, fn):
    torch.manual_seed(0)
    y = torch.tensor([3, 0, 7, 3])
    b = len(y)
    for width, emb_dim in ((6, 6), (5, 3)):   # equal widths first, so adding or dim=0 is caught by its hint
        h = torch.randn(b, width)
        embedding = nn.Embedding(10, emb_dim)
        out = c.shape(c.call(fn, h, y, embedding), (b, width + emb_dim), COND_SHAPE, mistakes={
            (b, width): COND_WIDTH_OF_H, (2 * b, width): COND_DIM0, (b, width + 1): COND_RAW_LABEL,
            (b, width + 10): COND_ONE_HOT, (b, 2, width): COND_STACKED, (2, b, width): COND_STACKED})
        expected = ref.condition_on_label(h, y, embedding).detach()
        swapped = torch.cat([expected[:, width:], expected[:, :width]], dim=1)
        if not torch.allclose(out.detach().double(), swapped.double()):   # either order conditions the network
            c.close(out, expected, mistakes={
                COND_FIRST_LABEL: ref.condition_on_label(h, y[:1].expand(b), embedding).detach(),
            }, hint=COND_HINT)
        if out.requires_grad:
            out.sum().backward()
        c.true(embedding.weight.grad is not None and embedding.weight.grad.abs().sum() > 0, COND_NO_GRAD)

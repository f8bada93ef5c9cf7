"""Checks for lesson 04 (GANs): the two losses, the training step, label conditioning."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .core import exercise_check

_bce = F.binary_cross_entropy_with_logits


def _logits():
    real = torch.tensor([[2.0], [-1.0], [0.5], [3.0], [-2.5]], requires_grad=True)   # (B, 1), like D's output
    fake = torch.tensor([[-2.0], [1.5], [0.0], [-0.5], [4.0]], requires_grad=True)
    return real, fake


def _scalar(c, out, what):
    out = c.tensor(out, what)
    c.true(out.dim() == 0, f"{what} should be a single number (a 0-d tensor), but it has shape {tuple(out.shape)}: "
                           f"average over the batch.")
    c.true(out.requires_grad, f"{what} carries no gradient: keep it a tensor (no .item(), .detach() or "
                              f"torch.tensor(...) around it) so that backward() can reach the networks.")
    return out


SIGMOID_HINT = ("binary_cross_entropy_with_logits applies the sigmoid itself: pass the raw logits, "
                "not torch.sigmoid(logits) (a sigmoid twice squashes every loss towards log 2).")


@exercise_check
def check_d_loss(c, fn):
    real, fake = _logits()
    out = _scalar(c, c.call(fn, real, fake), "the discriminator loss")
    r, f = real.detach(), fake.detach()
    ones, zeros = torch.ones_like(r), torch.zeros_like(r)
    expected = _bce(r, ones) + _bce(f, zeros)
    c.close(out, expected, mistakes={
        "the real and fake labels are swapped: real images get target 1, generated ones target 0.":
            _bce(r, zeros) + _bce(f, ones),
        SIGMOID_HINT: _bce(torch.sigmoid(r), ones) + _bce(torch.sigmoid(f), zeros),
        "the labels are swapped AND a sigmoid is applied before the loss: real -> 1, fake -> 0, and pass raw logits.":
            _bce(torch.sigmoid(r), zeros) + _bce(torch.sigmoid(f), ones),
        "you averaged the two terms: add them (loss on reals + loss on fakes), each a mean over its batch.":
            0.5 * expected,
        "only the real term is there: add the loss on the fakes (target 0).": _bce(r, ones),
        "only the fake term is there: add the loss on the real images (target 1).": _bce(f, zeros),
        "use the mean over the batch, not the sum (reduction='mean', the default).":
            _bce(r, ones, reduction="sum") + _bce(f, zeros, reduction="sum"),
        "the sign is flipped: BCE is already a loss to minimise, so no minus sign in front.": -expected,
    })
    # a batch of reals and a batch of fakes with different sizes: each term is its own mean
    out2 = _scalar(c, c.call(fn, real[:2], fake), "the discriminator loss")
    c.close(out2, _bce(r[:2], ones[:2]) + _bce(f, zeros),
            hint="compute the real term and the fake term separately (each a mean over its own batch) and add them.")


@exercise_check
def check_g_loss(c, fn):
    _, fake = _logits()
    out = _scalar(c, c.call(fn, fake), "the generator loss")
    f = fake.detach()
    ones, zeros = torch.ones_like(f), torch.zeros_like(f)
    c.close(out, _bce(f, ones), mistakes={
        "that is the saturating minimax loss log(1 - D(G(z))): its gradient vanishes exactly when D spots the fakes. "
        "Use the non-saturating one, -log D(G(z)): BCE of the fake logits against target 1.": -_bce(f, zeros),
        "with target 0 the generator would help D call its images fake: the generator wants D to say 'real' (target 1).":
            _bce(f, zeros),
        SIGMOID_HINT: _bce(torch.sigmoid(f), ones),
        "the sign is flipped: BCE against target 1 is already the loss to minimise.": -_bce(f, ones),
        "use the mean over the batch, not the sum.": _bce(f, ones, reduction="sum"),
    })


# --------------------------------------------------------------------------- the training step

class _SpyOptimizer(torch.optim.SGD):
    """SGD that records, at each step(), its name and whether the *other* network holds gradients."""

    def __init__(self, params, name, log, watch=None):
        super().__init__(params, lr=0.1)
        self.name, self.log, self.watch = name, log, watch

    def step(self, closure=None):
        dirty = self.watch is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in self.watch())
        self.log.append((self.name, dirty))
        return super().step(closure)


def _tiny_gan(seed=0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3))     # z (B, 2) -> "image" (B, 3)
    D = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1))  # (B, 3) -> logit (B, 1)
    real = torch.randn(6, 3) + 1.0
    z = torch.randn(6, 2)
    return G, D, real, z


def _reference_step(G, D, real, z, g_objective, zero_d=True, detach=True):
    """The step done right (SGD, lr 0.1), or with one mistake; returns the updated copies."""
    from ..gan import d_loss

    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1)
    for p in D.parameters():
        p.grad = torch.full_like(p, 5.0) if not zero_d else None
    fake = G(z)
    loss_d = d_loss(D(real), D(fake.detach() if detach else fake))
    if zero_d:
        opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = g_objective(D(fake))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return G, D, loss_d.item(), loss_g.item()


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@exercise_check
def check_gan_step(c, fn):
    from ..gan import g_loss, g_loss_saturating

    G, D, real, z = _tiny_gan()
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    log = []
    opt_g = _SpyOptimizer(G.parameters(), "G", log)
    opt_d = _SpyOptimizer(D.parameters(), "D", log, watch=G.parameters)
    for p in D.parameters():        # stale gradients from an earlier step: the D update must clear them
        p.grad = torch.full_like(p, 5.0)
    out = c.call(fn, G, D, opt_g, opt_d, real, z)
    names = [name for name, _ in log]
    c.true(names.count("D") == 1 and names.count("G") == 1,
           f"call opt_d.step() once and opt_g.step() once per training step (they were called {names or 'never'}).")
    c.true(names == ["D", "G"], "update D first (on real images and detached fakes), then G.")
    c.true(not log[0][1], "gradients reached G during the D update: the fakes need .detach() there, "
                          "D(fake.detach()), so that loss_d.backward() stops at the generated images.")
    ref_G, ref_D, ref_ld, ref_lg = _reference_step(G0, D0, real, z, g_loss)
    c.close(_flat(D), _flat(ref_D), atol=1e-5, mistakes={
        "D's old gradients were not cleared: call opt_d.zero_grad() before loss_d.backward().":
            _flat(_reference_step(G0, D0, real, z, g_loss, zero_d=False)[1]),
    }, hint="the D update should use d_loss(D(real), D(fake.detach())).")
    c.close(_flat(G), _flat(ref_G), atol=1e-5, mistakes={
        "G did not change: the G update needs a fresh D(fake) without .detach() (the logits from the D step "
        "are cut off from G).": _flat(G0),
        "the G update uses the saturating loss; use the non-saturating g_loss (target 1).":
            _flat(_reference_step(G0, D0, real, z, g_loss_saturating)[0]),
    }, hint="the G update should be g_loss(D(fake)) with fake = G(z) and D already updated.")
    c.true(isinstance(out, dict) and {"loss_d", "loss_g"} <= set(out),
           "return the dictionary of the template (loss_d, loss_g, D(x), D(G(z))).")
    c.close(torch.tensor([out["loss_d"], out["loss_g"]]), torch.tensor([ref_ld, ref_lg]), atol=1e-5,
            hint="loss_d and loss_g should be the losses you called backward() on.")


# --------------------------------------------------------------------------- label conditioning

@exercise_check
def check_condition_on_label(c, fn):
    torch.manual_seed(0)
    y = torch.tensor([3, 0, 7, 3])
    for width, emb_dim in ((6, 6), (5, 3)):   # equal widths first, so adding or dim=0 is caught by its hint
        h = torch.randn(4, width)
        embedding = nn.Embedding(10, emb_dim)
        out = c.tensor(c.call(fn, h, y, embedding))
        e = embedding(y).detach()
        b = len(y)
        shape_hints = {
            (b, width): "the result has the width of h alone: concatenate the embedding "
                        "(torch.cat([h, embedding(y)], dim=1)) rather than adding it or leaving it out.",
            (2 * b, width): "you stacked along the batch dimension (dim=0): concatenate along the features, dim=1.",
            (b, width + 1): "you appended the raw label number; look it up in the embedding instead: embedding(y).",
            (b, width + 10): "you appended a one-hot vector; this exercise uses the learned embedding, embedding(y).",
        }
        if tuple(out.shape) != (b, width + emb_dim) and tuple(out.shape) in shape_hints:
            c.fail(shape_hints[tuple(out.shape)])
        c.shape(out, (b, width + emb_dim), "h's features followed by the label embedding's")
        swapped = torch.cat([e, h], dim=1)
        if not torch.allclose(out.detach(), swapped):   # either order conditions the network equally well
            c.close(out, torch.cat([h, e], dim=1), mistakes={
                "every row got the embedding of the first label: look up embedding(y) for the whole batch.":
                    torch.cat([h, embedding(y[:1]).detach().expand(b, -1)], dim=1),
            }, hint="each row should be h[i] followed by embedding(y[i]).")
        out.sum().backward() if out.requires_grad else None
        c.true(embedding.weight.grad is not None and embedding.weight.grad.abs().sum() > 0,
               "no gradient reaches the embedding: do not detach it or wrap it in torch.no_grad(), "
               "the class vectors are learned with the networks.")

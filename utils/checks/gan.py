"""Checks for lesson 04 (GANs): the two losses, the training step, label conditioning."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .core import Hint, PlainSGD, exercise_check
from .. import gan as ref

_bce = F.binary_cross_entropy_with_logits

# ------------------------------------------------------------------ hints, shared with the tests
# Each first hint names the symptom; ``more`` (printed by utils.checks.hint) says what to change.
NOT_SCALAR = Hint("should be a single number, but it holds one value per example.",
                  more="average over the batch: BCE-with-logits with its default reduction='mean' gives a 0-d tensor.")
NO_GRAD = Hint("carries no gradient, so backward() could not reach the networks.",
               more="keep it a tensor: no .item(), .detach() or torch.tensor(...) around the loss.")
SIGMOID_TWICE = Hint("your loss hardly moves however confident the logits are: each term stays between 0.3 and 0.7.",
                     more="binary_cross_entropy_with_logits applies the sigmoid itself: pass the raw logits, not "
                          "torch.sigmoid(logits) (a sigmoid twice squashes every loss towards log 2).")
D_SWAPPED = Hint("your loss is small when D calls the real images fake and the generated ones real.",
                 more="real images get target 1, generated ones target 0.")
D_SWAPPED_AND_SIGMOID = Hint("two things are off: the loss rewards D for calling real images fake, and it hardly "
                             "moves with the logits.",
                             more="real -> target 1, fake -> target 0, and pass the raw logits (no sigmoid before "
                                  "BCE-with-logits).")
D_AVERAGED = Hint("your loss is exactly half the expected value.",
                  more="add the two terms (loss on reals + loss on fakes), each a mean over its batch; do not average them.")
D_ONLY_REAL = Hint("your loss does not change when the fake logits change: only the real images count.",
                   more="add the loss on the fakes: BCE of the fake logits against target 0.")
D_ONLY_FAKE = Hint("your loss does not change when the real logits change: only the fakes count.",
                   more="add the loss on the real images: BCE of the real logits against target 1.")
D_SUM = Hint("your loss is as many times too large as there are examples in the batch.",
             more="use the mean over the batch (reduction='mean', the default), not the sum.")
D_SIGN = Hint("your loss is negative, which a cross-entropy never is.",
              more="BCE is already a loss to minimise: no minus sign in front.")
D_SEPARATELY = Hint("your loss is right when both batches have the same size, but off when there are fewer real "
                    "images than fakes.",
                    more="compute the real term and the fake term separately, each a mean over its own batch, and add "
                         "them: one mean over both batches weighs the larger batch more.")
G_SATURATING = Hint("your generator loss is flat (no gradient) exactly when D confidently rejects the fakes, which "
                    "is when the generator needs a push most.",
                    more="that is the saturating minimax loss log(1 - D(G(z))). Use the non-saturating one, "
                         "-log D(G(z)): BCE of the fake logits against target 1.")
G_TARGET_ZERO = Hint("your loss goes down as D becomes surer that the fakes are fake: it helps D, not the generator.",
                     more="the generator wants D to say 'real': BCE of the fake logits against target 1, not 0.")
G_SIGN = Hint("your generator loss is negative, which a cross-entropy never is.",
              more="BCE against target 1 is already the loss to minimise: no minus sign in front.")
G_SUM = Hint("your generator loss is as many times too large as there are fakes in the batch.",
             more="use the mean over the batch, not the sum.")

STEP_COUNTS = Hint("each optimiser should step exactly once per training step",
                   more="call opt_d.step() once and opt_g.step() once, D's first.")
STEP_ORDER = Hint("the generator was updated before the discriminator.",
                  more="update D first (loss_d.backward(), opt_d.step()), then G (loss_g.backward(), opt_g.step()).")
STEP_NO_DETACH = Hint("gradients reached the generator's parameters during the discriminator's update.",
                      more="the fakes need .detach() in the D update, D(fake.detach()), so that loss_d.backward() "
                           "stops at the generated images.")
STEP_D_GRADS_KEPT = Hint("D moved as if the gradients of the previous step were still there.",
                         more="call opt_d.zero_grad() before loss_d.backward().")
STEP_G_GRADS_KEPT = Hint("G moved as if the gradients of the previous step were still there.",
                         more="call opt_g.zero_grad() (not opt_d's a second time) before loss_g.backward().")
STEP_D_HINT = Hint("D's update is not the expected one.",
                   more="the D update should use d_loss(D(real), D(fake.detach())).")
STEP_G_UNCHANGED = Hint("the generator's parameters did not change during the step.",
                        more="the G update needs a fresh D(fake) without .detach() (the logits from the D step are "
                             "cut off from G).")
STEP_SATURATING = Hint("G moved the way the saturating minimax loss would move it.",
                       more="use the non-saturating g_loss (target 1) in the G update.")
STEP_G_HINT = Hint("G's update is not the expected one.",
                   more="the G update should be g_loss(D(fake)) with fake = G(z) and D already updated.")
STEP_STALE_LOGITS = Hint("the generator's loss used logits computed before the discriminator's update.",
                         more="compute a fresh D(fake) after opt_d.step() has changed D.")
STEP_CUT_OFF = Hint("the generator's loss is cut off from the graph, so its backward() has nothing to reach.",
                    more="compute g_loss(D(fake)) with fake = G(z) not detached, after the D update.")
STEP_DETACHED_LOGITS = Hint("D learned from the real images only: the fakes' term sent it no gradient.",
                            more="detach the images, D(fake.detach()), not D's logits: D(fake).detach() stops D "
                                 "learning from the fakes too.")
STEP_RETURN = Hint("the step does not return the dictionary of the template.",
                   more="keep the template's return line: a dict with loss_d, loss_g, D(x) and D(G(z)).")
STEP_LOSSES = Hint("the loss_d and loss_g you return are not this step's losses.",
                   more="return the losses you called backward() on, as numbers (.item()).")

COND_WIDTH_OF_H = Hint("the result is as wide as h alone: the label's features are not in it.",
                       more="concatenate the embedding (torch.cat([h, embedding(y)], dim=1)) rather than adding it "
                            "or leaving it out.")
COND_DIM0 = Hint("the result has twice as many rows as the batch: the labels became extra examples.",
                 more="concatenate along the features, dim=1, not along the batch, dim=0.")
COND_RAW_LABEL = Hint("each row gained a single number, the label itself, rather than a learned vector.",
                      more="look the label up in the embedding instead: embedding(y).")
COND_ONE_HOT = Hint("each row gained ten 0-or-1 numbers rather than the embedding's learned vector.",
                    more="this exercise uses the learned embedding, embedding(y), not a one-hot vector.")
COND_STACKED = Hint("the result has an extra dimension: the two parts were stacked rather than joined.",
                    more="torch.stack adds a new dimension: join the features with torch.cat([h, embedding(y)], dim=1).")
COND_SHAPE = Hint("h's features followed by the label embedding's",
                  more="torch.cat([h, embedding(y)], dim=1): one row per example, D + E features.")
COND_FIRST_LABEL = Hint("every row got the same label features, those of the first label.",
                        more="look up embedding(y) for the whole batch, not only its first label.")
COND_HINT = Hint("row i should be h[i] followed by the embedding of y[i].",
                 more="torch.cat([h, embedding(y)], dim=1).")
COND_NO_GRAD = Hint("no gradient reaches the embedding, so the class vectors would never be learned.",
                    more="do not detach the embedding or compute it under torch.no_grad(): it is learned with the networks.")

def _require(c, condition: bool, hint: Hint, message: str = "") -> None:
    """Fail with ``message`` (default: the hint itself) unless ``condition``, keeping the hint's stronger one."""
    if not condition:
        c.fail(message or hint, more=getattr(hint, "more", ""))


def _logits():
    real = torch.tensor([[2.0], [-1.0], [0.5], [3.0], [-2.5]], requires_grad=True)   # (B, 1), like D's output
    fake = torch.tensor([[-2.0], [1.5], [0.0], [-0.5], [4.0]], requires_grad=True)
    return real, fake


def _scalar(c, out, what):
    out = c.tensor(out, what)
    _require(c, out.dim() == 0, NOT_SCALAR, f"{what} {NOT_SCALAR} (It has shape {tuple(out.shape)}.)")
    _require(c, out.requires_grad, NO_GRAD, f"{what} {NO_GRAD}")
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

class _SGD(PlainSGD):
    """Plain SGD that also records, in ``log``, each step's name and whether ``watch``, the other network,
    held gradients of its own making at that moment."""

    def __init__(self, params, name: str = "", log: list | None = None, watch=None, lr: float = 0.1):
        super().__init__(params, lr)
        self.name, self.log, self.watch = name, log, watch

    @torch.no_grad()
    def step(self, closure=None):
        if self.log is not None:
            self.log.append((self.name, self.watch is not None and any(_fresh_grad(p) for p in self.watch)))
        super().step()


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
    _require(c, names.count("D") == 1 and names.count("G") == 1, STEP_COUNTS,
             f"{STEP_COUNTS} (they were called {names or 'never'}).")
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


# --------------------------------------------------------------------------- the build: the conditional networks

G_NO_CFG = Hint("your generator does not keep its config, and the training loop reads the noise size from it.",
                more="keep the stub's first lines: super().__init__(), then self.cfg = cfg.")
G_NO_LABEL = Hint("your generator's first layer has room for the noise only: the digit asked for cannot get in.",
                  more="with labels, the first Linear reads 2 * z_dim numbers: the noise followed by the label's "
                       "embedding (condition_on_label(z, y, self.embed)); without labels, z_dim.")
G_LABEL_NOT_FED = Hint("the first layer received fewer numbers than it was built for.",
                       more="in forward, append the label's embedding to z with condition_on_label(z, y, self.embed) "
                            "before self.project, whenever self.embed is not None.")
G_IGNORES_LABEL = Hint("your generator draws the same images whatever digits it is asked for.",
                       more="feed the label in: z = condition_on_label(z, y, self.embed) at the start of forward.")
G_LABEL_FIRST = Hint("your images are the reference's only once the noise and the label's features swap places.",
                     more="the saved models (lesson 07 loads them) read the noise first, then the label's embedding: "
                          "condition_on_label(z, y, self.embed) with the reference's order, [z, e(y)].")
G_RANGE = Hint("some of your pixels lie outside [0, 1], the range of the training images.",
               more="end forward with a sigmoid on the last convolution's output (not tanh, and not nothing).")
G_SHAPE = Hint("a batch of images: (batch, 1 channel, height, width)",
               more="unpack the projected vector into a (B, 2c, s, s) map, run self.up on it: (B, 1, H, W).")
G_VALUES = Hint("with the reference's weights loaded, your images differ from the reference's.",
                more="check forward in order: label appended to z, self.project, a view to (B, 2c, H/4, W/4), "
                     "self.up, a sigmoid; and the activations (ReLU in the generator).")
LAYOUT = "compare your layers with the list in the class's docstring, one by one and in that order"
MODE_CHANGED = Hint("calling your network changed its train/eval mode.",
                    more="leave the mode to the caller: no self.train() or self.eval() inside forward.")
TRAIN_MODE = Hint("your network matches the reference in eval mode but not in training mode.",
                  more="let the layers handle the mode: BatchNorm uses batch statistics in train() and its running "
                       "averages in eval(); no functional batch_norm with a fixed training flag, no dropout.")

D_NO_SN = Hint("a layer of your discriminator is not spectrally normalised although the config asks for it",
               more="wrap both Conv2d layers and the out Linear with the stub's sn(...).")
D_SN_WHEN_OFF = Hint("your discriminator is spectrally normalised even when the config turns it off.",
                     more="use the stub's sn(...) rather than calling spectral_norm yourself: sn leaves the layer as "
                          "it is when cfg.spectral_norm is False.")
D_OLD_SN = Hint("your layers hold spectral norm in the older hook form (weight_orig, weight_u), which the saved "
                "models do not use.",
                more="use nn.utils.parametrizations.spectral_norm (the stub's sn), not nn.utils.spectral_norm.")
D_SIGMOID = Hint("all your discriminator's outputs lie between 0 and 1, like probabilities; the losses expect raw "
                 "logits, any real number.",
                 more="return the logit itself: the BCE-with-logits and hinge losses take raw scores (a sigmoid here "
                      "would be applied twice).")
D_COLUMN = Hint("your discriminator returns a column, shape (B, 1), rather than one number per image.",
                more="squeeze the last dimension: self.out(h).squeeze(1) has shape (B,).")
D_TABLE = Hint("your discriminator returns a (B, B) table: a column and a row were added together.",
               more="squeeze self.out(h) to shape (B,) before adding the projection term (B,).")
D_SHAPE = Hint("one logit per image", more="the logit has shape (B,): self.out(h).squeeze(1) plus the projection.")
D_NOT_CENTRED = Hint("your logits are the reference's for images whose pixels were moved from [-1, 1] to [0, 1] "
                     "first: your network reads the pixels off-centre.",
                     more="map the pixels to [-1, 1] before the features: self.features(2 * x - 1).")
D_IGNORES_LABEL = Hint("your discriminator gives the same logits whatever labels come with the images.",
                       more="add the projection to the logit: (self.embed(y) * h).sum(dim=1), the inner product of "
                            "the label's embedding with the features h.")
D_INPUT_DETACHED = Hint("no gradient flows from your discriminator's logits back to the images, so the generator "
                        "could learn nothing from it.",
                        more="do not detach x, or rebuild it with torch.tensor(...), inside forward.")
D_VALUES = Hint("with the reference's weights loaded, your logits differ from the reference's.",
                more="check forward: pixels to [-1, 1], self.features, self.out(h).squeeze(1), plus "
                     "(self.embed(y) * h).sum(dim=1) with labels; LeakyReLU(0.2) after each convolution.")
D_RANDOM = Hint("in training mode your discriminator's logits differ from the reference's, as if something random "
                "were inside.",
                more="this discriminator has no dropout: spectral normalisation already keeps it from overfitting.")
FROZEN = Hint("some of your layers are frozen: their parameters do not ask for gradients, so they would never learn.",
              more="leave requires_grad on: no requires_grad_(False) and no torch.no_grad() around building the layers.")
NOT_LEARNING = "a network that matches the reference should learn: is something detached, or a layer unused?"


def _build_cases():
    """Two small configurations: conditional with spectral norm, and unconditional without, other sizes."""
    return [(ref.GANConfig(image_size=8, z_dim=6, n_classes=10, g_channels=8, d_channels=4), 5),
            (ref.GANConfig(image_size=12, z_dim=5, n_classes=0, g_channels=4, d_channels=2, spectral_norm=False), 3)]


def _labels(cfg, b, shift=0):
    return (torch.arange(b) * 3 + 1 + shift) % cfg.n_classes if cfg.n_classes else None


def _sgd(module, loss_fn, steps=8, lr=0.05):
    """Plain SGD steps (torch.optim's first step imports too much for a check); the losses along the way."""
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        module.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in module.parameters():
                if p.grad is not None:
                    p.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return losses


def _trainable(c, net):
    frozen = [name for name, p in net.named_parameters() if not p.requires_grad]
    _require(c, not frozen, FROZEN, f"{FROZEN} (`{frozen[0]}`)" if frozen else "")


def _call_in_mode(c, net, training, *args, **kwargs):
    net.train(training)
    out = c.call(net, *args, **kwargs)
    _require(c, net.training == training, MODE_CHANGED)
    return c.tensor(out, "the output")


@exercise_check
def check_ConvGenerator(c, cls):
    for cfg, b in _build_cases():
        torch.manual_seed(0)
        reference = ref.ConvGenerator(cfg)
        G = c.module(cls, cfg)
        _require(c, getattr(G, "cfg", None) is cfg, G_NO_CFG)
        first = getattr(getattr(G, "project", None), "0", None) if isinstance(getattr(G, "project", None), nn.Sequential) else None
        if cfg.n_classes and isinstance(first, nn.Linear):
            _require(c, first.in_features != cfg.z_dim, G_NO_LABEL)
        c.same_weights(G, reference, hint=LAYOUT)
        _trainable(c, G)
        z, y = torch.randn(b, cfg.z_dim), _labels(cfg, b)
        shape = (b, 1, cfg.image_size, cfg.image_size)
        for training in (False, True):                 # eval first: BatchNorm's running averages are still fresh
            errors = {"mat1 and mat2": G_LABEL_NOT_FED}
            out = c.shape(_call_in_mode(c, G, training, z, y, error_hints=errors), shape, G_SHAPE)
            other = _call_in_mode(c, G, training, z, _labels(cfg, b, shift=1)) if cfg.n_classes and not training else None
            reference.train(training)
            with torch.no_grad():
                expected = reference(z, y)
                swapped = _label_first(reference, z, y) if cfg.n_classes and not training else None
            c.close(out, expected, mistakes={
                G_RANGE: lambda o: bool(o.min() < -1e-6 or o.max() > 1 + 1e-6),
                G_IGNORES_LABEL: lambda o: other is not None and torch.allclose(o, other.detach().float(), atol=1e-6),
                G_LABEL_FIRST: lambda o: swapped is not None and torch.allclose(o, swapped, atol=1e-4),
                TRAIN_MODE: lambda o: training,
            }, hint=G_VALUES)
        c.gradients_reach(G, c.call(G, z, y).mean())
        if cfg.n_classes:                              # a few steps on a fixed batch, in one configuration
            target = torch.rand(shape, generator=torch.Generator().manual_seed(1))
            c.learns(_sgd(G, lambda: F.mse_loss(G(z, y), target), lr=0.5), NOT_LEARNING, factor=0.98)


def _label_first(G, z, y):
    """What the reference's layers give when the label's embedding comes before the noise, [e(y), z]."""
    c, s = G.cfg.g_channels, G.cfg.image_size // 4
    h = G.project(torch.cat([G.embed(y), z], dim=1)).view(-1, 2 * c, s, s)   # (B, 2c, H/4, W/4)
    return torch.sigmoid(G.up(h))


def _random_inside(D, x, y) -> bool:
    """Whether two copies of D in training mode, from the same state, give different logits."""
    with torch.no_grad():
        a, b = (copy.deepcopy(D).train()(x, y) for _ in range(2))
    return not torch.allclose(a, b)


def _spectral_norm_problem(D, cfg):
    """The hint for a discriminator whose spectral norm is missing, of the old kind, or there when off."""
    keys = list(D.state_dict())
    if any(k.endswith("weight_orig") for k in keys):
        return D_OLD_SN, ""
    normed = [k.split(".parametrizations")[0] for k in keys if ".parametrizations.weight.original" in k]
    if not cfg.spectral_norm:
        return (D_SN_WHEN_OFF, "") if normed else (None, "")
    plain = [k[: -len(".weight")] for k in keys if k.endswith(".weight") and not k.startswith("embed")]
    return (D_NO_SN, f"{D_NO_SN}: `{plain[0]}`.") if plain else (None, "")


@exercise_check
def check_ConvDiscriminator(c, cls):
    for cfg, b in _build_cases():
        torch.manual_seed(0)
        reference = ref.ConvDiscriminator(cfg)
        D = c.module(cls, cfg)
        hint, message = _spectral_norm_problem(D, cfg)
        if hint is not None:
            c.fail(message or hint, more=hint.more)
        c.same_weights(D, reference, hint=LAYOUT)
        _trainable(c, D)
        x = torch.rand(b, 1, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2))
        y = _labels(cfg, b)
        shape_mistakes = {(b, 1): D_COLUMN, (b, b): D_TABLE}
        out = c.shape(_call_in_mode(c, D, False, x, y), (b,), D_SHAPE, mistakes=shape_mistakes)
        reference.eval()                               # eval first: spectral norm's power iteration stays put
        with torch.no_grad():
            expected = reference(x, y)
            off_centre = reference((x + 1) / 2, y)
            no_projection = reference.out(reference.features(2 * x - 1)).squeeze(1)
            other = D(x, _labels(cfg, b, shift=1)) if cfg.n_classes else None
        c.close(out, expected, mistakes={
            D_SIGMOID: torch.sigmoid(expected),
            D_NOT_CENTRED: off_centre,
            D_IGNORES_LABEL: lambda o: other is not None and (torch.allclose(o, other.float(), atol=1e-6)
                                                              or torch.allclose(o, no_projection, atol=1e-4)),
        }, hint=D_VALUES)
        out = c.shape(_call_in_mode(c, D, True, x, y), (b,), D_SHAPE, mistakes=shape_mistakes)
        reference.train()
        with torch.no_grad():
            expected = reference(x, y)
        c.close(out, expected, mistakes={
            D_RANDOM: lambda o: _random_inside(D, x, y),
            TRAIN_MODE: lambda o: True,
        })
        x_in = x.clone().requires_grad_()
        logits = c.tensor(c.call(D, x_in, y))
        if logits.requires_grad:
            logits.sum().backward()
        _require(c, x_in.grad is not None and bool(x_in.grad.abs().sum() > 0), D_INPUT_DETACHED)
        c.gradients_reach(D, c.call(D, x, y).mean())
        if cfg.n_classes:                              # a few steps on a fixed batch, in one configuration
            fake = torch.rand(b, 1, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(3))
            real = (x > 0.5).to(x.dtype)               # sharp strokes against grey noise: easy to tell apart
            c.learns(_sgd(D, lambda: ref.hinge_d_loss(D(real, y), D(fake, y)), lr=0.2), NOT_LEARNING)


SECOND_HINTS = {
    "d_loss": "D is a binary classifier: BCE-with-logits of the real logits against 1, plus BCE-with-logits of the "
              "fake logits against 0, each averaged over its own batch, the two added; pass raw logits.",
    "g_loss": "the non-saturating loss -log D(G(z)) is BCE-with-logits of the fake logits against target 1, "
              "averaged over the batch.",
    "gan_step": "fake = G(z); D step: d_loss(D(real), D(fake.detach())), opt_d.zero_grad(), backward, opt_d.step(); "
                "G step: g_loss(D(fake)) through the updated D, opt_g.zero_grad(), backward, opt_g.step().",
    "condition_on_label": "look every label up in the embedding, embedding(y) of shape (B, E), and join it to h "
                          "along the features: torch.cat([h, embedding(y)], dim=1).",
    "ConvGenerator": "follow the docstring's list: embed (or None), project = Linear, BatchNorm1d, ReLU; up = "
                     "ConvTranspose2d, BatchNorm2d, ReLU, ConvTranspose2d, BatchNorm2d, ReLU, Conv2d. forward: "
                     "condition_on_label(z, y, self.embed) when there are labels, self.project(z).view(-1, 2 * c, s, "
                     "s), self.up, then torch.sigmoid.",
    "ConvDiscriminator": "features = sn(Conv2d), LeakyReLU(0.2), sn(Conv2d), LeakyReLU(0.2), Flatten; out = "
                         "sn(Linear(2c*s*s, 1)); embed (or None). forward: h = self.features(2 * x - 1); logit = "
                         "self.out(h).squeeze(1), plus (self.embed(y) * h).sum(dim=1) with labels; no sigmoid.",
}

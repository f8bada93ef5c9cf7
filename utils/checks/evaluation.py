"""Checks for lesson 07: the detector's training step, its AUC, and the skew of a generator's classes."""
from __future__ import annotations

import copy

import torch

from .core import Hint, exercise_check
from .. import evaluation as ref

# ------------------------------------------------------------------ hints, shared with the tests
STEP_LABELS_SWAPPED = Hint(
    "your step teaches the detector the opposite: after it, real images would get the high scores.",
    more="label real images 0 and generated ones 1: torch.zeros(len(real)) then torch.ones(len(fake)).")
STEP_SUMMED = Hint(
    "your loss grows with the batch size: twice the images give twice the loss.",
    more="average over the images, F.binary_cross_entropy_with_logits(logits, targets) (reduction='mean').")
STEP_SIGMOID_TWICE = Hint(
    "your loss cannot go below about 0.31 even for a perfect detector: the scores are squashed twice.",
    more="binary_cross_entropy_with_logits takes the raw logits: do not apply torch.sigmoid first.")
STEP_NO_UPDATE = Hint(
    "the detector's weights did not change after a step.",
    more="after the loss: opt.zero_grad(), loss.backward(), opt.step().")
STEP_ACCUMULATES = Hint(
    "the first step is right, but the second moves the weights too far: the gradients pile up across steps.",
    more="call opt.zero_grad() before loss.backward() in every step.")
STEP_WRONG_MOVE = Hint(
    "the weights moved, but not by one gradient step on the loss you returned.",
    more="compute one loss on both batches together, then zero_grad, backward and step once.")
STEP_NOT_FLOAT = Hint(
    "the step should return the loss as one number.",
    more="return loss.item() (a Python float), computed before or after the step.")
STEP_HINT = Hint("the loss is off for this batch.",
                 more="logits = model(torch.cat([real, fake])); targets 0 for real, 1 for fake; "
                      "F.binary_cross_entropy_with_logits(logits, targets).")

AUC_BACKWARDS = Hint(
    "a detector that gives every generated image the higher score should get an AUC of 1; yours gets 0.",
    more="count the pairs where the fake score is above the real score, not below.")
AUC_ABOVE_ONE = Hint(
    "your AUC is above 1, but it is a probability.",
    more="divide the number of (fake, real) pairs won by the fake image by the number of pairs, N_fake * N_real.")
AUC_TIES_LOST = Hint(
    "a detector that gives every image the same score should be at chance, 0.5; yours is below.",
    more="a tie counts one half: mean of (diff > 0) plus 0.5 times mean of (diff == 0).")
AUC_TIES_WON = Hint(
    "a detector that gives every image the same score should be at chance, 0.5; yours is above.",
    more="a tie counts one half, not a full win: mean of (diff > 0) plus 0.5 times mean of (diff == 0).")
AUC_PAIRED = Hint(
    "your AUC needs as many real as generated scores: it pairs them up one to one.",
    more="compare every fake score with every real score: fake_scores[:, None] - real_scores[None, :] is (N_fake, N_real).")
AUC_HINT = Hint("the AUC is off.",
                more="AUC = share of (fake, real) pairs in which the fake image scores higher, ties counting 1/2.")

SKEW_SHAPE = Hint(
    "a class that the generator never drew is missing from your result: there should be one ratio per class.",
    more="count with torch.bincount(labels, minlength=n_classes).")
SKEW_COUNTS = Hint(
    "your ratios change when the generator draws more samples with the same shares.",
    more="divide each count by its set's size first: shares, not counts.")
SKEW_INVERTED = Hint(
    "a class that the generator never draws should get a ratio of 0, and yours does not.",
    more="the ratio is output share / training share (samples on top).")
SKEW_DIFFERENCE = Hint(
    "a class drawn exactly as often as in training should get 1, and yours gives 0.",
    more="divide the shares, do not subtract them: sample share / training share.")
SKEW_HINT = Hint("the ratios are off.", more="share of class k among the samples / its share among the training labels.")

SECOND_HINTS = {
    "detector_step": "score real and generated images in one batch, targets 0 (real) and 1 (generated), "
                     "mean binary cross-entropy on the logits, then zero_grad, backward, step; return loss.item().",
    "detector_auc": "make the (N_fake, N_real) table of score differences; AUC = mean of (diff > 0) + "
                    "0.5 * mean of (diff == 0).",
    "skew_ratio": "shares = torch.bincount(labels, minlength=n_classes) / len(labels) for both sets; return "
                  "sample shares / training shares.",
}


# ------------------------------------------------------------------ detector_step

class _NoResetSGD(torch.optim.SGD):
    """An SGD whose zero_grad does nothing: the reference stepped with it shows a missing reset."""

    def zero_grad(self, set_to_none: bool = True):
        pass


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _two_steps(step, model, opt_class, batches) -> tuple[list, torch.Tensor, torch.Tensor]:
    opt = opt_class(model.parameters(), lr=0.5)
    before = _flat(model)
    losses, after = [], []
    for real, fake in batches:
        losses.append(step(model, opt, real, fake))
        after.append(_flat(model))
    return losses, before, after


@exercise_check
def check_detector_step(c, fn):
    gen = torch.Generator().manual_seed(7)
    batches = [(torch.rand(6, 1, 28, 28, generator=gen), torch.rand(6, 1, 28, 28, generator=gen) ** 2)
               for _ in range(2)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ref.Detector(width=4)
    with torch.no_grad():
        model.body[-1].bias.fill_(0.5)                                  # scores away from 0: each mistake shows
    twin, no_reset = copy.deepcopy(model), copy.deepcopy(model)
    expected, start, after = _two_steps(ref.detector_step, twin, torch.optim.SGD, batches)
    _, _, piled = _two_steps(ref.detector_step, no_reset, _NoResetSGD, batches)

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = c.call(fn, model, opt, *batches[0])
    if isinstance(loss, (list, tuple, dict)) or (isinstance(loss, torch.Tensor) and loss.numel() != 1):
        c.fail(STEP_NOT_FLOAT)
    loss = c.tensor(loss, "the loss your step returned").detach().reshape(())
    c.close(loss, torch.tensor(expected[0]), mistakes=_step_mistakes(start, batches[0]), hint=STEP_HINT)
    now = _flat(model)
    c.true(not torch.equal(now, start), STEP_NO_UPDATE)
    c.true(torch.allclose(now, after[0], atol=1e-5), STEP_WRONG_MOVE)
    c.call(fn, model, opt, *batches[1])
    now = _flat(model)
    if not torch.allclose(now, after[1], atol=1e-5):
        c.fail(STEP_ACCUMULATES if torch.allclose(now, piled[1], atol=1e-5) else STEP_WRONG_MOVE)


def _step_mistakes(start: torch.Tensor, batch) -> dict:
    """The first loss each known mistake gives, from the starting weights."""
    import torch.nn.functional as F

    probe = ref.Detector(width=4)
    torch.nn.utils.vector_to_parameters(start, probe.parameters())
    real, fake = batch
    with torch.no_grad():
        logits = probe(torch.cat([real, fake]))
    targets = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
    return {STEP_LABELS_SWAPPED: F.binary_cross_entropy_with_logits(logits, 1 - targets),
            STEP_SUMMED: F.binary_cross_entropy_with_logits(logits, targets, reduction="sum"),
            STEP_SIGMOID_TWICE: F.binary_cross_entropy_with_logits(torch.sigmoid(logits), targets)}


# ------------------------------------------------------------------ detector_auc

@exercise_check
def check_detector_auc(c, fn):
    gen = torch.Generator().manual_seed(3)
    real = torch.randint(0, 6, (7,), generator=gen).float()           # integer scores: plenty of ties
    fake = torch.randint(2, 8, (5,), generator=gen).float()
    perfect_real, perfect_fake = torch.zeros(4), torch.ones(6)
    for r, f in ((perfect_real, perfect_fake), (real, fake)):
        out = c.call(fn, r, f, error_hints={"size of tensor": AUC_PAIRED, "must match": AUC_PAIRED})
        expected = ref.detector_auc(r, f)
        c.close(torch.as_tensor(out).reshape(()), expected, hint=AUC_HINT, mistakes={
            AUC_BACKWARDS: 1 - expected,
            AUC_ABOVE_ONE: lambda o: o.item() > 1 + 1e-6,
            AUC_TIES_LOST: expected - 0.5 * (f[:, None] == r[None, :]).double().mean(),
            AUC_TIES_WON: expected + 0.5 * (f[:, None] == r[None, :]).double().mean(),
        })
    same = torch.full((5,), 0.3)
    c.close(torch.as_tensor(c.call(fn, same, same.clone())).reshape(()), ref.detector_auc(same, same),
            mistakes={AUC_TIES_LOST: lambda o: o.item() < 0.5, AUC_TIES_WON: lambda o: o.item() > 0.5})


# ------------------------------------------------------------------ skew_ratio

@exercise_check
def check_skew_ratio(c, fn):
    gen = torch.Generator().manual_seed(1)
    train = torch.randint(0, 4, (80,), generator=gen)
    train[:4] = torch.arange(4)                                         # every class in the training set
    samples = torch.randint(0, 3, (50,), generator=gen)                 # class 3 never drawn
    out = c.call(fn, samples, train, 4)
    out = c.shape(out, (4,), "one ratio per class", mistakes={(3,): SKEW_SHAPE})
    expected = ref.skew_ratio(samples, train, 4)
    counts = lambda labels: torch.bincount(labels, minlength=4).double()
    c.close(out, expected, hint=SKEW_HINT, mistakes={
        SKEW_COUNTS: counts(samples) / counts(train),
        SKEW_DIFFERENCE: ref.class_shares(samples, 4) - ref.class_shares(train, 4),
        SKEW_INVERTED: lambda o: o[3].item() != 0,
    })
    doubled = torch.cat([samples, samples])                             # same shares, twice the samples
    c.close(c.call(fn, doubled, train, 4), expected, mistakes={SKEW_COUNTS: lambda o: True}, hint=SKEW_HINT)

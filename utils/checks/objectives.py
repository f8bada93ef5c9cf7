"""Checks for lesson 08 (training methods): bits per dimension, the completion loss, the policy-gradient
loss and the per-token KL penalty."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .core import Hint, exercise_check
from ..objectives import (bits_per_dim as _bits_per_dim, completion_loss as _completion_loss,
                          kl_penalty as _kl_penalty, policy_gradient_loss as _policy_gradient_loss)

# ------------------------------------------------------------------ hints, shared with the tests
STILL_NATS = Hint("your number is about 1.44 times too small: it is still in nats per dimension, not bits.",
                  more="one bit is ln 2 nats, so divide the nats by math.log(2).")
TIMES_LN2 = Hint("your number is about 2.1 times too small: the conversion between nats and bits went the "
                 "wrong way.", more="bits = nats / ln 2; you multiplied by math.log(2) instead of dividing.")
PER_EXAMPLE = Hint("your number is the bits for a whole example, hundreds of times larger than bits per "
                   "dimension.", more="divide by the number of dimensions `dims` too, as well as averaging "
                                      "over the examples.")
SUMMED_EXAMPLES = Hint("your number grows with the number of examples in the batch: it is a total, not an "
                       "average.", more="average over the examples: nll_nats.mean(), not nll_nats.sum().")
NOT_AVERAGED = Hint("you returned one number per example; the exercise asks for one number, the mean over "
                    "the examples.", more="take the mean over the batch as well: nll_nats.mean() / (dims * ln 2).")

COUNTS_PROMPT = Hint("your loss also counts the prompt's tokens, which the model is not asked to learn.",
                     more="weight each position by completion_mask[:, 1:] and divide by how many completion "
                          "tokens there are, not by the number of positions.")
NO_SHIFT = Hint("your loss asks each position to predict the token it already sees: the targets are not "
                "shifted.", more="position t predicts token t + 1: compare logits[:, :-1] with ids[:, 1:].")
MASK_NOT_SHIFTED = Hint("the targets are shifted, but the mask is not: your loss counts the last prompt token and "
                        "drops the last completion token.", more="the mask must line up with the targets: use "
                                                                 "completion_mask[:, 1:] beside ids[:, 1:].")
SHIFT_BACKWARDS = Hint("your loss asks each position to predict the token before it: the shift goes the wrong "
                       "way.", more="logits[:, :-1] (positions 0..T-2) predict ids[:, 1:] (tokens 1..T-1).")
PER_SEQUENCE = Hint("a token's weight depends on the length of its completion: short completions count more "
                    "than long ones.", more="divide the sum over every completion token of the batch by their "
                                            "total count, not the mean of per-sequence means.")
LOSS_SUMMED = Hint("your loss grows with the number of completion tokens: it is a sum, not a mean.",
                   more="divide the masked sum by the number of completion tokens, mask[:, 1:].sum().")
NO_GRAD = Hint("the loss carries no gradient back to the logits, so training would not change the model.",
               more="do not detach the logits or use .item() / torch.no_grad() inside the loss.")

PG_SIGN = Hint("minimising your loss makes high-reward samples less likely: it points the wrong way.",
               more="gradient descent minimises, so the loss is minus (reward - baseline) times log-probability.")
PG_NO_BASELINE = Hint("your loss does not change when the baseline changes.",
                      more="weight each sequence's log-probability by its advantage, rewards - baseline.")
PG_MEAN_TOKENS = Hint("your loss is N times too small for N tokens: a sequence's log-probability is counted "
                      "as an average over its tokens.", more="log p(sequence) is the sum of its tokens' "
                                                             "log-probabilities: logprobs.sum(dim=1).")
PG_SUM_BATCH = Hint("your loss grows with the batch size: it is a total over the sequences, not an average.",
                    more="take .mean() over the batch after weighting each sequence.")
PG_REWARD_GRAD = Hint("gradients flow into the rewards (and the baseline): the loss would also try to change "
                      "the rewards themselves.", more="treat the advantage as a constant weight: "
                                                      "(rewards - baseline).detach().")
PG_NO_GRAD = Hint("no gradient reaches the log-probabilities, so the policy would not learn.",
                  more="keep logprobs attached: no .detach(), .item() or torch.no_grad() on them.")

KL_DIRECTION = Hint("your KL measures the reference against the policy: the direction is reversed.",
                    more="KL(policy || reference) = sum_v p(v) (log p(v) - log q(v)), weighted by the policy's p.")
KL_SUMMED = Hint("your penalty grows with the number of positions: it is a sum, where the mean over positions "
                 "is asked for.", more="sum over the vocabulary, then .mean() over batch and positions.")
KL_MEAN_VOCAB = Hint("your penalty is V times too small for a vocabulary of V: the vocabulary was averaged.",
                     more="at each position, sum p(v) (log p(v) - log q(v)) over the vocabulary (dim=-1).")
KL_RAW_LOGITS = Hint("your penalty changes when a constant is added to all the logits of a position, which "
                     "does not change the distribution.", more="turn logits into log-probabilities first: "
                                                                 "logits.log_softmax(-1).")
KL_NEGATIVE = Hint("your KL is negative for some inputs; a KL divergence never is.",
                   more="weight log p - log q by the policy's probabilities p (exp of its log-softmax), then sum.")

SECOND_HINTS = {
    "bits_per_dim": "average the nats over the examples, divide by the number of dimensions, then by ln 2.",
    "completion_loss": "cross-entropy of logits[:, :-1] against ids[:, 1:] with reduction='none', times "
                       "completion_mask[:, 1:], summed, divided by the number of completion tokens.",
    "policy_gradient_loss": "loss = -((rewards - baseline).detach() * logprobs.sum(dim=1)).mean().",
    "kl_penalty": "log_p, log_q = log_softmax of each; (log_p.exp() * (log_p - log_q)).sum(-1).mean().",
}


def _case(seed: int, *shape, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@exercise_check
def check_bits_per_dim(c, fn):
    ln2 = math.log(2)
    for nll, dims in [(torch.tensor([540.0, 610.0, 575.0, 498.0]), 784),
                      (300 + 40 * _case(1, 7).abs(), 64)]:
        out = c.call(fn, nll, dims)
        c.shape(out, (), "one number: the mean over the examples", mistakes={tuple(nll.shape): NOT_AVERAGED})
        expected = _bits_per_dim(nll, dims)
        c.close(out, expected, mistakes={STILL_NATS: expected * ln2, TIMES_LN2: expected * ln2 * ln2,
                                         PER_EXAMPLE: expected * dims,
                                         SUMMED_EXAMPLES: expected * len(nll)})


def _completion_case(seed: int, B: int, T: int, V: int, prompts, ends):
    """Logits that need gradients, ids, and a mask with prompts of different lengths and end padding."""
    logits = _case(seed, B, T, V, scale=2.0).requires_grad_()
    ids = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(seed + 1))
    positions = torch.arange(T)
    mask = (positions >= torch.tensor(prompts)[:, None]) & (positions < torch.tensor(ends)[:, None])
    return logits, ids, mask


@exercise_check
def check_completion_loss(c, fn):
    for logits, ids, mask in [_completion_case(0, 3, 9, 6, [2, 4, 3], [9, 7, 5]),
                              _completion_case(5, 2, 7, 4, [1, 3], [6, 7])]:
        out = c.call(fn, logits, ids, mask)
        c.shape(out, (), "one number: the mean over every completion token of the batch")
        with torch.no_grad():
            expected = _completion_loss(logits, ids, mask)
            not_padding = torch.arange(ids.size(1)) < mask.long().cumsum(1).argmax(1, keepdim=True) + 1
            shifted_mask = F.pad(mask[:, :-1], (1, 0))             # mask[:, :-1] beside ids[:, 1:]
            unshifted = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")  # (B, T)
            backwards = F.cross_entropy(logits[:, 1:].transpose(1, 2), ids[:, :-1], reduction="none")
            per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            learn = mask[:, 1:].float()
            mistakes = {
                COUNTS_PROMPT: lambda o: any(torch.allclose(o.double(), _completion_loss(logits, ids, m).double(),
                                                            atol=1e-4)
                                             for m in (torch.ones_like(mask), not_padding)),
                NO_SHIFT: (unshifted * mask).sum() / mask.sum(),
                MASK_NOT_SHIFTED: _completion_loss(logits, ids, shifted_mask),
                SHIFT_BACKWARDS: lambda o: any(torch.allclose(o.double(), ((backwards * m).sum() / m.sum()).double(),
                                                              atol=1e-4) for m in (mask[:, 1:], mask[:, :-1])),
                PER_SEQUENCE: ((per_token * learn).sum(1) / learn.sum(1)).mean(),
                LOSS_SUMMED: (per_token * learn).sum(),
            }
        c.close(out, expected, mistakes=mistakes)
        c.true(isinstance(out, torch.Tensor) and out.requires_grad, NO_GRAD)


@exercise_check
def check_policy_gradient_loss(c, fn):
    for seed, B, N, use_mean in [(0, 4, 6, True), (3, 5, 3, False)]:
        logprobs = (-_case(seed, B, N).abs() - 0.1).requires_grad_()          # (B, N), log-probabilities < 0
        rewards = _case(seed + 1, B).sigmoid().requires_grad_()               # (B,): could carry gradients
        baseline = rewards.mean() if use_mean else 0.3                        # from the rewards, or a number
        out = c.call(fn, logprobs, rewards, baseline)
        c.shape(out, (), "one number to minimise")
        with torch.no_grad():
            expected = _policy_gradient_loss(logprobs, rewards, baseline)
            no_baseline = _policy_gradient_loss(logprobs, rewards, 0.0)
        c.close(out, expected, mistakes={PG_SIGN: -expected, PG_NO_BASELINE: no_baseline,
                                         PG_MEAN_TOKENS: expected / N, PG_SUM_BATCH: expected * B})
        c.true(isinstance(out, torch.Tensor) and out.requires_grad, PG_NO_GRAD)
        out.backward()
        c.true(rewards.grad is None or not rewards.grad.abs().sum() > 0, PG_REWARD_GRAD)
        c.true(logprobs.grad is not None and logprobs.grad.abs().sum() > 0, PG_NO_GRAD)


@exercise_check
def check_kl_penalty(c, fn):
    for seed, shape in [(0, (2, 5, 7)), (4, (3, 2, 5))]:
        logits = _case(seed, *shape, scale=2.0).requires_grad_()
        ref_logits = _case(seed + 1, *shape, scale=2.0)
        out = c.call(fn, logits, ref_logits)
        c.shape(out, (), "one number: the mean over the positions")
        with torch.no_grad():
            expected = _kl_penalty(logits, ref_logits)
            positions = shape[0] * shape[1]
            shifted = _kl_penalty(logits + _case(seed + 2, *shape[:2], 1), ref_logits)  # same distributions
        c.close(out, expected, mistakes={
            KL_DIRECTION: _kl_penalty(ref_logits, logits), KL_SUMMED: expected * positions,
            KL_MEAN_VOCAB: expected / shape[-1],
            KL_RAW_LOGITS: (logits.softmax(-1) * (logits - ref_logits)).sum(-1).mean(),
            KL_NEGATIVE: lambda o: o < -1e-6})
        c.true(isinstance(out, torch.Tensor) and out.requires_grad, NO_GRAD)
        again = c.call(fn, logits + _case(seed + 2, *shape[:2], 1), ref_logits)   # a constant per position
        c.true(torch.allclose(c.tensor(again).detach().double(), shifted.double(), atol=1e-4), KL_RAW_LOGITS)
    same = _case(9, 2, 3, 4)
    c.close(c.call(fn, same, same.clone()), torch.tensor(0.0), hint=KL_NEGATIVE)

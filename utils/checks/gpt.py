"""Checks for lesson 06 (transformers): attention, the causal mask, next-token probabilities."""
from __future__ import annotations

import math
import warnings

import torch

from .core import exercise_check
from ..gpt import attention as _attention, causal_mask as _causal_mask, next_token_probs as _next_token_probs

# ------------------------------------------------------------------ hints, shared with the tests
NO_SCALE = ("the weights are too sharp: divide the scores q @ k^T by sqrt(d_k) (d_k = q.size(-1)) "
            "before the softmax.")
SCALE_BY_DK = "you divided by d_k; scaled dot-product attention divides by sqrt(d_k)."
SCALE_BY_DV = "you scaled by the values' size: d_k is the size of the queries and keys, q.size(-1), not v.size(-1)."
SCALE_BY_T = "you scaled by the sequence length: d_k is the last dimension of q, q.size(-1), not q.size(-2)."
K_DOT_T = "`.T` reverses all dimensions of batched keys; swap only the last two with `k.transpose(-2, -1)`."
K_TRANSPOSE_1_2 = ("transpose(1, 2) swaps the wrong axes of 4-D keys (batch, heads, T, d): swap the last two with "
                   "`k.transpose(-2, -1)`.")
SWAPPED_PAIR = "the output and the weights are swapped: return the output first, `return weights @ v, weights`."
WRONG_AXIS = ("the softmax runs over the wrong axis: each query's weights over the keys must sum to 1, "
              "so use softmax(dim=-1) on scores of shape (..., T_q, T_k).")
MASK_AFTER = ("the mask was applied after the softmax, so the weights left no longer sum to 1: "
              "fill the blocked scores with -inf before the softmax.")
MASK_AFTER_INF = ("some weights are negative or -inf: filling blocked scores (with -inf or a large negative "
                  "number) belongs before the softmax, which turns them into weights of exactly 0.")
NAN_WEIGHTS = ("some weights are NaN: a row where every key is blocked gets NaN from the softmax. Is the mask "
               "used the wrong way round? True means 'may attend'.")
MASK_IGNORED = "the mask was ignored: fill the scores where mask is False with -inf before the softmax."
MASK_INVERTED = ("the mask is used the wrong way round: True means 'may attend', so block where the mask "
                 "is False (scores.masked_fill(~mask, float('-inf'))).")
NOT_A_PAIR = "return two things, the output and the weights: `return weights @ v, weights`."
ROWS_NOT_ONE = "each query's weights should sum to 1 over the keys (the last axis)."

FUTURE_UPPER = ("your mask lets each position see the future and hides the past: position i may attend to "
                "j <= i, the lower triangle (torch.tril), not the upper one.")
FUTURE_ONE_AHEAD = ("your mask lets each position see one step into the future (tril with diagonal=1): "
                    "use the default diagonal=0.")
FUTURE_ANY = "your mask lets a position see the future: entry (i, j) must be False whenever j > i."
NO_SELF = ("a position must be allowed to attend to itself: keep the diagonal (torch.tril with diagonal=0); "
           "otherwise the first position has nothing to look at.")
BLOCKED_CONVENTION = ("this marks the blocked positions with True (the nn.Transformer convention); here True "
                      "means 'may attend', so return the lower triangle instead.")
NOT_BOOL = ("the pattern is right; return a bool tensor (dtype=torch.bool) so that `~mask` and "
            "masked_fill work with it.")

TEMP_AFTER = ("the temperature was applied after the softmax, so the probabilities no longer sum to 1: "
              "divide the logits by the temperature, then softmax.")
TEMP_NO_EFFECT = ("the temperature changes nothing in your version: dividing probabilities by T and "
                  "renormalising cancels out. Divide the logits by T before the softmax.")
TEMP_MULTIPLIED = ("you multiplied the logits by the temperature: divide by it, so that a low temperature "
                   "sharpens the distribution and a high one flattens it.")
TOPK_SMALLEST = ("top-k kept the k least likely tokens: keep the k largest logits "
                 "(torch.topk returns the largest by default).")
TOPK_FIRST = ("top-k kept the first k tokens of the vocabulary: keep the k tokens with the largest logits, "
              "wherever they are.")
TOPK_OFF_BY_ONE = ("top-k kept the wrong number of tokens: keep exactly the k largest logits (block the "
                   "logits strictly below the k-th largest).")
TOPK_ZERO = ("the dropped tokens still get probability: set their logits to -inf (not 0) before the "
             "softmax, so their probability is exactly 0.")
TOPK_PER_BATCH = ("the top-k threshold was taken over the whole batch: each row has its own k-th largest logit, "
                  "torch.topk(logits, k, dim=-1).values[:, [-1]].")
TOPK_OFF = ("top_k = 0 (or None) means no top-k filtering: keep every token, e.g. with `if top_k:` rather than "
            "`if top_k is not None:`.")
TOPK_NO_RENORM = ("after dropping tokens the probabilities no longer sum to 1: drop them by setting logits "
                  "to -inf before the softmax (or renormalise).")
PROBS_WRONG_AXIS = ("the softmax runs over the wrong axis: each row (one per sequence) is a distribution over "
                    "the vocabulary, so use softmax(dim=-1).")
PROBS_NOT_ONE = "each row of probabilities should sum to 1: did you return logits or forget the softmax?"
PROBS_SHAPE = "one probability per token, for each row of logits."
PROBS_HINT = "divide the logits by the temperature, keep the top_k largest (others -inf), then softmax."
ATTENTION_WEIGHTS_HINT = "compare your weights with softmax(q @ k^T / sqrt(d_k)) over the last axis."
ATTENTION_OUTPUT_HINT = "the weights are right; the output is weights @ v."
MASK_SHAPE = "one row per query position, one column per key position."
PAST_HIDDEN = "your mask hides the past: position i may attend to every j <= i, not only to itself."


def _rows_not_one(t: torch.Tensor) -> bool:
    return not torch.allclose(t.sum(-1).double(), torch.ones((), dtype=torch.float64), atol=1e-4)


def _error_of(compute) -> str | None:
    """The message PyTorch gives for a wrong computation, so the learner's same error can be named."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # `.T` on a 3-D tensor warns before it fails
            compute()
    except RuntimeError as exc:
        return str(exc)
    return None


def _transpose_hints(q, k) -> dict:
    hints = {}
    for message, hint in ((_error_of(lambda: q @ k.transpose(1, 2)), K_TRANSPOSE_1_2),  # right for 3-D keys
                          (_error_of(lambda: q @ k.T), K_DOT_T)):
        if message and message not in hints:
            hints[message] = hint
    return hints


def _call_attention(c, fn, q, k, v, mask):
    hints = _transpose_hints(q, k)
    out = c.call(fn, q, k, v, mask, error_hints=hints) if mask is not None else c.call(fn, q, k, v, error_hints=hints)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        c.fail(NOT_A_PAIR)
    return c.tensor(out[0], "the output"), c.tensor(out[1], "the weights")


def _wrong_attention(q, k, v, mask=None, scale=None, axis=-1, mask_mode="before"):
    """One of the typical mistakes, computed explicitly."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale is None else scale)
    if mask is not None and mask_mode == "before":
        scores = scores.masked_fill(~mask, float("-inf"))
    if mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, float("-inf"))
    weights = scores.softmax(dim=axis)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    return weights @ v, weights


def _attention_mistakes(q, k, v, mask):
    d = q.size(-1)
    wrong = {NO_SCALE: _wrong_attention(q, k, v, mask, scale=1.0),
             SCALE_BY_DK: _wrong_attention(q, k, v, mask, scale=float(d)),
             SCALE_BY_DV: _wrong_attention(q, k, v, mask, scale=math.sqrt(v.size(-1))),
             SCALE_BY_T: _wrong_attention(q, k, v, mask, scale=math.sqrt(q.size(-2))),
             WRONG_AXIS: _wrong_attention(q, k, v, mask, axis=-2)}
    if mask is not None:
        wrong[MASK_AFTER] = _wrong_attention(q, k, v, mask, mask_mode="after")
        wrong[MASK_IGNORED] = _wrong_attention(q, k, v, mask, mask_mode="none")
        wrong[MASK_INVERTED] = _wrong_attention(q, k, v, mask, mask_mode="inverted")
    return wrong


@exercise_check
def check_attention(c, fn):
    g = torch.Generator().manual_seed(6)
    pad = torch.tensor([[1, 1, 1, 0, 0, 0]] * 6, dtype=torch.bool)  # half the keys hidden, like padding
    pad[:3] = ~pad[:3]                                               # (every row keeps some keys either way)
    cases = [  # (q, k, v, mask): batch and head axes, T_q != T_k, d_v != d_k; scores big enough to tell
        (2 * torch.randn(2, 6, 4, generator=g), 2 * torch.randn(2, 6, 4, generator=g),   # 3-D first: k.T shows
         torch.randn(2, 6, 5, generator=g), _causal_mask(6)),
        (2 * torch.randn(2, 3, 5, 8, generator=g), 2 * torch.randn(2, 3, 7, 8, generator=g),
         torch.randn(2, 3, 7, 6, generator=g), None),
        (2 * torch.randn(1, 2, 6, 16, generator=g), 2 * torch.randn(1, 2, 6, 16, generator=g),
         torch.randn(1, 2, 6, 3, generator=g), pad),
    ]
    for q, k, v, mask in cases:
        out, weights = _call_attention(c, fn, q, k, v, mask)
        ref_out, ref_weights = _attention(q, k, v, mask)
        if out.shape == ref_weights.shape and weights.shape == ref_out.shape and out.shape != weights.shape:
            c.fail(SWAPPED_PAIR)
        wrong = _attention_mistakes(q, k, v, mask)
        if weights.is_floating_point() and torch.isnan(weights).any():
            inverted = wrong[MASK_INVERTED][1].double() if mask is not None else None
            if inverted is not None and weights.shape == inverted.shape and \
                    torch.allclose(weights.detach().double(), inverted, atol=1e-4, equal_nan=True):
                c.fail(MASK_INVERTED)
            c.fail(NAN_WEIGHTS)
        if weights.is_floating_point() and (weights < -1e-6).any():
            c.fail(MASK_AFTER_INF)
        c.finite(out)
        c.close(weights, ref_weights, mistakes={**{h: w for h, (_, w) in wrong.items()}, ROWS_NOT_ONE: _rows_not_one},
                hint=ATTENTION_WEIGHTS_HINT)
        c.close(out, ref_out, mistakes={h: o for h, (o, _) in wrong.items()},
                hint=ATTENTION_OUTPUT_HINT)


def _mask_mistakes(T: int) -> dict:
    ones = torch.ones(T, T, dtype=torch.bool)
    return {FUTURE_UPPER: torch.triu(ones), FUTURE_ONE_AHEAD: torch.tril(ones, diagonal=1),
            NO_SELF: torch.tril(ones, diagonal=-1), BLOCKED_CONVENTION: torch.triu(ones, diagonal=1),
            FUTURE_ANY: lambda m: bool(torch.triu(m != 0, diagonal=1).any()),
            PAST_HIDDEN: lambda m: bool(torch.tril(m == 0, diagonal=-1).any())}


@exercise_check
def check_causal_mask(c, fn):
    for T in (7, 1, 4):
        mask = c.tensor(c.call(fn, T), "the mask")
        expected = _causal_mask(T)
        c.shape(mask, (T, T), MASK_SHAPE)
        if mask.dtype != torch.bool:
            if torch.equal(mask.to(torch.float64), expected.to(torch.float64)):
                c.fail(NOT_BOOL)
            mask = mask != 0  # compare the pattern, to name the mistake
        c.close(mask, expected, mistakes=_mask_mistakes(T), atol=0, rtol=0)


def _probs_mistakes(logits, temperature, top_k):
    wrong = {}
    if temperature != 1:
        p = logits.softmax(-1)
        wrong[TEMP_AFTER] = p / temperature
        wrong[TEMP_NO_EFFECT] = _next_token_probs(logits, 1.0, top_k)
        wrong[TEMP_MULTIPLIED] = _next_token_probs(logits * temperature * temperature, temperature, top_k)
    if top_k:
        scaled = logits / temperature
        V = logits.size(-1)

        def keep(index):  # softmax over only the tokens in index (B, k)
            return scaled.masked_fill(~torch.zeros_like(scaled, dtype=torch.bool).scatter(-1, index, True),
                                      float("-inf")).softmax(-1)

        wrong[TOPK_SMALLEST] = keep(torch.topk(scaled, top_k, largest=False).indices)
        wrong[TOPK_FIRST] = keep(torch.arange(top_k).expand(len(scaled), top_k))
        kth = torch.topk(scaled, top_k).values[:, -1:]
        wrong[TOPK_ZERO] = scaled.masked_fill(scaled < kth, 0.0).softmax(-1)
        wrong[TOPK_NO_RENORM] = scaled.softmax(-1).masked_fill(scaled < kth, 0.0)
        off = [_next_token_probs(logits, temperature, k) for k in (top_k - 1, top_k + 1) if 0 < k <= V]
        wrong[TOPK_OFF_BY_ONE] = lambda out: any(torch.allclose(out, o, atol=1e-4) for o in off)
        batch_wide = [scaled.masked_fill(scaled < kth_all, float("-inf")).softmax(-1)  # one threshold for all rows
                      for kth_all in (kth.min(), torch.topk(scaled.flatten(), top_k).values[-1])]
        wrong[TOPK_PER_BATCH] = lambda out: any(torch.allclose(out, b, atol=1e-4, equal_nan=True) for b in batch_wide)
    kept = logits / temperature
    if top_k:
        kept = kept.masked_fill(kept < torch.topk(kept, top_k).values[:, -1:], float("-inf"))
    wrong[PROBS_WRONG_AXIS] = kept.softmax(dim=0)
    wrong[PROBS_NOT_ONE] = _rows_not_one
    return wrong


@exercise_check
def check_next_token_probs(c, fn):
    logits = torch.tensor([[0.1, -1.2, 2.3, 0.7, -0.4, 1.5, -2.0, 0.9],
                           [1.1, 0.3, -0.5, 2.2, 0.0, -1.7, 1.9, -0.8],
                           [-0.6, 2.8, 0.4, -1.1, 1.3, 0.2, -2.4, 0.8],
                           [-3.0, -2.5, -4.0, -2.8, -3.5, -2.2, -5.0, -3.1]])  # a row with its own, low threshold
    V = logits.size(-1)
    for temperature, top_k in [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (0.7, 4), (1.5, V), (1.0, 1)]:
        out = c.call(fn, logits, temperature, top_k)
        c.shape(out, tuple(logits.shape), PROBS_SHAPE)
        c.close(out, _next_token_probs(logits, temperature, top_k), mistakes=_probs_mistakes(logits, temperature, top_k),
                hint=f"with temperature {temperature} and top_k {top_k}: {PROBS_HINT}")
    out = c.shape(c.call(fn, logits, 1.0, 0, error_hints={"": TOPK_OFF}), tuple(logits.shape), PROBS_SHAPE)
    c.close(out, _next_token_probs(logits, 1.0, 0), hint=TOPK_OFF)

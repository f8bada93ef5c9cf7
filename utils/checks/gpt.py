"""Checks for lesson 06 (transformers): attention, the causal mask, next-token probabilities, and the builds:
multi-head causal self-attention, the transformer block and the generation loop."""
from __future__ import annotations

import math
import warnings

from dataclasses import replace

import torch
from torch import nn

from .core import Hint, exercise_check
from ..gpt import (GPT, Block, CausalSelfAttention, GPTConfig, attention as _attention, causal_mask as _causal_mask,
                   generate as _generate, get_batch as _get_batch, next_token_probs as _next_token_probs,
                   sample_next as _sample_next)

# ------------------------------------------------------------------ hints, shared with the tests
NO_SCALE = Hint("your weights are much sharper than they should be: with wide queries and keys, nearly all of a "
                "row's weight lands on one key.",
                more="divide the scores q @ k^T by sqrt(d_k), with d_k = q.size(-1), before the softmax.")
SCALE_BY_DK = Hint("your weights are too flat: the scores are shrunk more than they should be.",
                   more="scaled dot-product attention divides by sqrt(d_k), not by d_k.")
SCALE_BY_DV = Hint("your weights are right only when the values are as wide as the keys: the scale uses the wrong size.",
                   more="d_k is the size of the queries and keys, q.size(-1), not v.size(-1).")
SCALE_BY_T = Hint("your weights change with the length of the sequence: the scale depends on the number of positions.",
                  more="d_k is the last dimension of q, q.size(-1), not q.size(-2).")
K_DOT_T = Hint("with a batch axis in front, the keys are transposed across the wrong axes.",
               more="`.T` reverses all dimensions of batched keys; swap only the last two with k.transpose(-2, -1).")
K_TRANSPOSE_1_2 = Hint("it works for 3-D inputs but not with a head axis, (batch, heads, T, d): the keys are "
                       "transposed across the wrong axes.",
                       more="transpose(1, 2) swaps the wrong axes of 4-D keys: swap the last two with k.transpose(-2, -1).")
SWAPPED_PAIR = Hint("the output and the weights come back in the wrong order.",
                    more="return the output first: return weights @ v, weights.")
WRONG_AXIS = Hint("each key's weights sum to 1 instead of each query's: the softmax runs over the wrong axis.",
                  more="the scores have shape (..., T_q, T_k): softmax(dim=-1), over the keys.")
MASK_AFTER = Hint("with a mask, the weights in a row no longer sum to 1.",
                  more="the mask was applied after the softmax: fill the blocked scores with -inf before the softmax.")
MASK_AFTER_INF = Hint("some of your weights are negative or -inf.",
                      more="filling blocked scores (with -inf or a large negative number) belongs before the "
                           "softmax, which turns them into weights of exactly 0.")
NAN_WEIGHTS = Hint("some weights are NaN: a row where every key is blocked gets NaN from the softmax.",
                   more="is the mask used the wrong way round? True means 'may attend'.")
MASK_IGNORED = Hint("with a mask, the blocked keys still get weight: position 3 can see position 5.",
                    more="fill the scores where the mask is False with -inf before the softmax.")
MASK_INVERTED = Hint("with a mask, your weights fall on exactly the keys the mask blocks, and on none it allows.",
                     more="True means 'may attend': block where the mask is False, scores.masked_fill(~mask, float('-inf')).")
NOT_A_PAIR = Hint("the function should give back two things, the output and the weights.",
                  more="return weights @ v, weights.")
ROWS_NOT_ONE = Hint("each query's weights should sum to 1 over the keys, and yours do not.",
                    more="a softmax over the last axis makes each row of weights sum to 1.")
ATTENTION_WEIGHTS_HINT = Hint("compare your weights with the formula above, one row (one query) at a time.",
                              more="weights = softmax(q @ k^T / sqrt(d_k)) over the last axis, masked before the softmax.")
ATTENTION_OUTPUT_HINT = Hint("the weights are right, but the output is not.", more="the output is weights @ v.")

FUTURE_UPPER = Hint("position 3 can see position 5, and cannot see position 1: the mask is the wrong triangle.",
                    more="position i may attend to j <= i, the lower triangle (torch.tril), not the upper one.")
FUTURE_ONE_AHEAD = Hint("each position can see one step into the future: position 3 can see position 4.",
                        more="use torch.tril with the default diagonal=0, not diagonal=1.")
FUTURE_ANY = Hint("a position can see the future: position 3 can see position 5.",
                  more="entry (i, j) must be False whenever j > i: torch.tril of a matrix of True.")
NO_SELF = Hint("a position cannot see itself, so the first position has nothing to look at.",
               more="keep the diagonal: torch.tril with diagonal=0.")
BLOCKED_CONVENTION = Hint("your mask is True exactly where attending is forbidden: the opposite convention.",
                          more="here True means 'may attend' (nn.Transformer's masks mark the blocked positions "
                               "instead): return the lower triangle.")
NOT_BOOL = Hint("the pattern is right, but the mask is not a bool tensor.",
                more="return dtype=torch.bool, so that ~mask and masked_fill work with it.")
MASK_SHAPE = Hint("one row per query position, one column per key position.",
                  more="causal_mask(T) is a (T, T) tensor.")
PAST_HIDDEN = Hint("your mask hides the past: position 3 cannot see position 1.",
                   more="position i may attend to every j <= i, not only to itself.")

TEMP_AFTER = Hint("with a temperature other than 1, your probabilities no longer sum to 1.",
                  more="divide the logits (not the probabilities) by the temperature, then softmax.")
TEMP_NO_EFFECT = Hint("the temperature changes nothing in your version.",
                      more="dividing probabilities by T and renormalising cancels out: divide the logits by T "
                           "before the softmax.")
TEMP_MULTIPLIED = Hint("a low temperature flattens your distribution and a high one sharpens it: the opposite of "
                       "what it should do.", more="divide the logits by the temperature; do not multiply.")
TOPK_SMALLEST = Hint("top-k kept the k least likely tokens.",
                     more="keep the k largest logits (torch.topk returns the largest by default).")
TOPK_FIRST = Hint("top-k kept the first k tokens of the vocabulary, whatever their logits.",
                  more="keep the k tokens with the largest logits, wherever they are.")
TOPK_OFF_BY_ONE = Hint("top-k kept one token too many or too few.",
                       more="keep exactly the k largest logits: block the logits strictly below the k-th largest.")
TOPK_ZERO = Hint("the tokens that top-k drops still get some probability.",
                 more="set their logits to -inf (not 0) before the softmax, so that their probability is exactly 0.")
TOPK_PER_BATCH = Hint("top-k keeps more or fewer than k tokens in some rows: one threshold serves the whole batch.",
                      more="each row has its own k-th largest logit: torch.topk(logits, k, dim=-1).values[:, [-1]].")
TOPK_OFF = Hint("top_k 0 should mean no filtering at all, and your version fails or filters.",
                more="treat 0 like None, for example with `if top_k:` rather than `if top_k is not None:`.")
TOPK_NO_RENORM = Hint("after top-k, your probabilities no longer sum to 1.",
                      more="drop tokens by setting their logits to -inf before the softmax (or renormalise).")
PROBS_WRONG_AXIS = Hint("each column sums to 1 instead of each row: the softmax runs over the batch.",
                        more="each row is a distribution over the vocabulary: softmax(dim=-1).")
PROBS_NOT_ONE = Hint("your rows of probabilities do not sum to 1.", more="did you return the logits, or forget the softmax?")
PROBS_SHAPE = Hint("one probability per token, for each row of logits.", more="the result has the logits' shape, (B, V).")
PROBS_HINT = Hint("compare your probabilities with the recipe above, one step at a time.",
                  more="divide the logits by the temperature, keep the top_k largest (the others -inf), then softmax.")

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
                hint=Hint(f"with temperature {temperature} and top_k {top_k}: {PROBS_HINT}", more=PROBS_HINT.more))
    out = c.shape(c.call(fn, logits, 1.0, 0, error_hints={"": TOPK_OFF}), tuple(logits.shape), PROBS_SHAPE)
    c.close(out, _next_token_probs(logits, 1.0, 0), hint=TOPK_OFF)


# ------------------------------------------------------------------ multi-head causal self-attention (build exercise)
SEES_FUTURE = Hint("position 3 can see position 5: changing a later token changes the output at an earlier one.",
                   more="the attention must be causal in both paths: is_causal=True in the fused call, and the mask "
                        "self.mask[:T, :T] passed to your attention.")
CSA_NO_SCALE = Hint("the attention weights are too sharp: the scores are not scaled before the softmax.",
                    more="divide by sqrt(head size): your attention does it, and so does F.scaled_dot_product_attention "
                         "unless you pass it a scale.")
CSA_SCALE_WIDTH = Hint("the attention weights are too flat: the scores are scaled by the width of all the heads "
                       "together, not of one head.", more="d_k is one head's size, C // n_head, which is q.size(-1) "
                                                          "after the split.")
HEADS_SPLIT = Hint("your heads cut across positions: one head's 'token' holds pieces of several tokens.",
                   more="split the width first, then move the head axis forward: "
                        "t.view(B, T, n_head, C // n_head).transpose(1, 2) gives (B, nh, T, hs).")
HEADS_MERGE = Hint("the heads come back in the wrong order: the output at one position holds numbers from other "
                   "positions.", more="move the head axis back next to the width before merging: "
                                      "y.transpose(1, 2).reshape(B, T, C).")
QKV_ORDER = Hint("your queries and keys are swapped: every attention pattern comes out transposed.",
                 more="the projection's output splits into q, k, v in that order: self.qkv(x).split(C, dim=2).")
NO_PROJ = Hint("the heads are never mixed: the output skips the layer that follows the attention.",
               more="after merging the heads, return self.drop(self.proj(y)).")
KEEP_WEIGHTS = Hint("with keep_weights on, the layer does not keep its attention weights for the heat maps.",
                    more="in that branch call your attention(q, k, v, self.mask[:T, :T]) and keep what it returns: "
                         "y, self.weights = ...")
WEIGHTS_SHAPE = Hint("the weights the layer keeps do not have one T x T pattern per example and per head.",
                     more="keep the weights of the (B, nh, T, hs) heads: shape (B, nh, T, T).")
DROPOUT_IN_EVAL = Hint("in eval mode your layer gives a different output on every call: dropout is still on.",
                       more="dropout belongs to training only: dropout_p=self.dropout if self.training else 0.0 in "
                            "the fused call, and the module self.drop (it follows train() and eval()) rather than "
                            "F.dropout(y, p).")
NO_DROPOUT = Hint("in training mode with dropout 0.5, your layer's output never changes: dropout is never applied.",
                  more="apply self.drop to the output of the projection (and dropout_p to the fused call in training).")
SIZES_DISAGREE = Hint("it fails when a sequence is shorter than block_size, or two sizes disagree.",
                      more="crop the causal mask to the sequence, self.mask[:T, :T], and check the sizes of each view.")
VIEW_TRANSPOSED = Hint("a view fails: it cannot reshape a slice or a transposed tensor, which is not one block of memory.",
                       more="use .reshape(B, T, C) to merge the heads, or .contiguous().view(B, T, C).")
CSA_HINT = Hint("compare your steps with the reference's: split into heads, attend causally, merge, project.",
                more="q, k, v = self.qkv(x).split(C, dim=2); view each as (B, T, nh, hs) and transpose(1, 2); "
                     "attend (fused, or your attention with the mask when keep_weights); transpose back, reshape "
                     "to (B, T, C); return self.drop(self.proj(y)).")

_CSA_CASES = [  # (config, B, T): several widths and head counts, T below block_size, biases on and off
    (GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), 2, 8),
    (GPTConfig(vocab_size=11, block_size=12, n_layer=1, n_head=4, n_embd=16, bias=True), 3, 9),
    (GPTConfig(vocab_size=11, block_size=7, n_layer=1, n_head=3, n_embd=12), 1, 7),
]


def _heads(t, B, T, nh):
    return t.view(B, T, nh, -1).transpose(1, 2)  # (B, nh, T, hs)


def _csa_variant(ref: CausalSelfAttention, x, split="heads", merge="transpose", causal=True, scale=None,
                 swap_qk=False, proj=True):
    """The reference layer's forward with one typical mistake (eval mode, no dropout)."""
    B, T, C = x.shape
    nh = ref.n_head
    q, k, v = ref.qkv(x).split(C, dim=2)
    if swap_qk:
        q, k = k, q
    if split == "heads":
        q, k, v = (_heads(t, B, T, nh) for t in (q, k, v))
    else:  # a view straight to (B, nh, T, hs): cuts across positions
        q, k, v = (t.reshape(B, nh, T, C // nh) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale is None else scale)
    if causal:
        scores = scores.masked_fill(~_causal_mask(T), float("-inf"))
    y = scores.softmax(dim=-1) @ v                                   # (B, nh, T, hs)
    y = y.transpose(1, 2).reshape(B, T, C) if merge == "transpose" else y.reshape(B, T, C)
    return ref.proj(y) if proj else y


def _csa_mistakes(ref, x) -> dict:
    C = x.size(-1)
    with torch.no_grad():
        return {CSA_NO_SCALE: _csa_variant(ref, x, scale=1.0),
                CSA_SCALE_WIDTH: _csa_variant(ref, x, scale=math.sqrt(C)),
                HEADS_SPLIT: _csa_variant(ref, x, split="view"),
                HEADS_MERGE: _csa_variant(ref, x, merge="view"),
                QKV_ORDER: _csa_variant(ref, x, swap_qk=True),
                NO_PROJ: _csa_variant(ref, x, proj=False)}


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """Weights of a size that makes mistakes show (biases and LayerNorm gains away from 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() < 2 else 0.5) + (1.0 if p.dim() < 2 else 0.0))
    return module


def _sees_future(c, module, x, out) -> bool:
    """Whether changing the tokens after position t changes the output at t (or before)."""
    t = x.size(1) // 2
    later = x.clone()
    later[:, t + 1:] = later[:, t + 1:] + 1.0
    with torch.no_grad():
        moved = module(later)
    return not torch.allclose(moved[:, :t + 1].double(), out[:, :t + 1].double(), atol=1e-5)


def _csa_forward(c, module, x):
    out = c.call(module, x, error_hints={"must match the size": SIZES_DISAGREE,
                                         "view size is not compatible": VIEW_TRANSPOSED})
    return c.shape(out, tuple(x.shape), Hint("the layer's output has the input's shape, (B, T, C).",
                                              more="merge the heads back to (B, T, C) before the projection."))


@exercise_check
def check_CausalSelfAttention(c, cls):
    for i, (cfg, B, T) in enumerate(_CSA_CASES):
        reference = _randomised(CausalSelfAttention(cfg), seed=i)
        mine = c.module(cls, cfg)
        c.same_weights(mine, reference, hint="the stub's __init__ names them: keep it as it is")
        mine.eval(), reference.eval()
        x = torch.randn(B, T, cfg.n_embd, generator=torch.Generator().manual_seed(10 + i))
        with torch.no_grad():
            expected = reference(x)
            out = _csa_forward(c, mine, x)
        c.close(out, expected, mistakes={**_csa_mistakes(reference, x),
                                         SEES_FUTURE: lambda out: _sees_future(c, mine, x, out)}, hint=CSA_HINT)
        mine.keep_weights = reference.keep_weights = True       # the hand-written path, for the heat maps
        with torch.no_grad():
            expected = reference(x)
            out = _csa_forward(c, mine, x)
        c.close(out, expected, mistakes={**_csa_mistakes(reference, x),
                                         SEES_FUTURE: lambda out: _sees_future(c, mine, x, out)}, hint=CSA_HINT)
        weights = getattr(mine, "weights", None)
        c.true(isinstance(weights, torch.Tensor), KEEP_WEIGHTS)
        c.true(tuple(weights.shape) == tuple(reference.weights.shape), WEIGHTS_SHAPE)
        c.close(weights, reference.weights, hint=KEEP_WEIGHTS)
        mine.keep_weights = False

    cfg, B, T = _CSA_CASES[1]                                   # dropout: on in training, off in eval
    cfg = replace(cfg, dropout=0.5)
    mine = c.module(cls, cfg)
    c.same_weights(mine, _randomised(CausalSelfAttention(cfg), seed=5))
    x = torch.randn(B, T, cfg.n_embd, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mine.eval()
        c.true(torch.equal(_csa_forward(c, mine, x), _csa_forward(c, mine, x)), DROPOUT_IN_EVAL)
        mine.train()
        c.true(not torch.equal(_csa_forward(c, mine, x), _csa_forward(c, mine, x)), NO_DROPOUT)

    cfg, B, T = _CSA_CASES[0]                                   # float64, and the gradients reach every weight
    reference = _randomised(CausalSelfAttention(cfg), seed=7).double()
    mine = c.module(cls, cfg)
    c.same_weights(mine, reference)
    mine.double().train()
    x = torch.randn(B, T, cfg.n_embd, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out = _csa_forward(c, mine, x)
    c.true(out.dtype == torch.float64, "your layer does not work in float64: keep the input's dtype throughout.")
    c.close(out.detach(), reference(x).detach(), hint=CSA_HINT)
    c.gradients_reach(mine, out.pow(2).mean())


# ------------------------------------------------------------------ the transformer block (build exercise)
POST_NORM = Hint("the block's output is normalised (mean 0, variance 1 at every position): the LayerNorm comes "
                 "after the residual sum, so the stream is squashed at every block.",
                 more="pre-norm: normalise the input of each branch, not the sum: x = x + self.attn(self.ln1(x)).")
RESIDUAL_FROM_NORM = Hint("the residual path carries the LayerNorm's output instead of the block's input, so the "
                          "input's scale is lost.",
                          more="add each branch to x itself: x = x + self.attn(self.ln1(x)), not h + attn(h) with "
                               "h = ln1(x).")
NO_RESIDUAL = Hint("part of the block's output does not contain its input: a branch has no residual path.",
                   more="both branches are residual: x = x + branch(ln(x)), for the attention and for the MLP.")
SAME_LN = Hint("both branches see the same normalisation: the second LayerNorm is never used.",
               more="the MLP branch has its own LayerNorm: x = x + self.mlp(self.ln2(x)).")
MLP_FIRST = Hint("your block computes before it communicates: the MLP runs before the attention.",
                 more="attention first, then the MLP, each with its own LayerNorm and residual.")
PARALLEL = Hint("the MLP does not see what the attention wrote: both branches read the same input.",
                more="update x with the attention branch first, then run the MLP branch on the new x.")
BLOCK_HINT = Hint("compare your forward with the two formulas above, one branch at a time.",
                  more="x = x + self.attn(self.ln1(x)); x = x + self.mlp(self.ln2(x)); return x.")
BLOCK_LEARN = Hint("a tiny GPT built from your blocks does not learn a fixed batch.",
                   more="is every branch used in forward, and is nothing detached?")


def _block_mistakes(ref: Block, x) -> dict:
    a = lambda h: ref.attn(h)  # noqa: E731
    with torch.no_grad():
        post = ref.ln1(x + a(x))
        h = ref.ln1(x)
        from_norm = h + a(h)
        after_attn = x + a(ref.ln1(x))
        return {POST_NORM: ref.ln2(post + ref.mlp(post)),
                RESIDUAL_FROM_NORM: ref.ln2(from_norm) + ref.mlp(ref.ln2(from_norm)),
                NO_RESIDUAL: lambda out: any(torch.allclose(out, w, atol=1e-4) for w in (
                    ref.mlp(ref.ln2(a(ref.ln1(x)))), ref.mlp(ref.ln2(after_attn)),
                    a(ref.ln1(x)) + ref.mlp(ref.ln2(a(ref.ln1(x)))))),
                SAME_LN: after_attn + ref.mlp(ref.ln1(after_attn)),
                MLP_FIRST: (lambda m: m + a(ref.ln2(m)))(x + ref.mlp(ref.ln1(x))),
                PARALLEL: x + a(ref.ln1(x)) + ref.mlp(ref.ln2(x))}


@exercise_check
def check_Block(c, cls):
    for i, (cfg, B, T) in enumerate(_CSA_CASES):
        reference = _randomised(Block(cfg), seed=20 + i).eval()
        mine = c.module(cls, cfg)
        c.same_weights(mine, reference, hint="name them ln1, attn, ln2 and mlp; a LayerNorm has a bias only "
                                             "when cfg.bias is True")
        mine.eval()
        x = torch.randn(B, T, cfg.n_embd, generator=torch.Generator().manual_seed(30 + i))
        with torch.no_grad():
            out = c.shape(c.call(mine, x), tuple(x.shape), Hint("a block keeps the shape of its input, (B, T, C).",
                                                                 more="return x after the two residual updates."))
            c.close(out, reference(x), mistakes=_block_mistakes(reference, x), hint=BLOCK_HINT)

    cfg = replace(_CSA_CASES[0][0], n_layer=2)                # a tiny GPT of your blocks, in float64, learns
    torch.manual_seed(0)
    model = GPT(cfg, block=cls).double()
    x = torch.randint(cfg.vocab_size, (4, cfg.block_size), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    _, loss = c.call(model, x, y)
    c.true(loss.dtype == torch.float64, "your block does not work in float64: keep the input's dtype throughout.")
    c.gradients_reach(model, loss)
    _learns_a_batch(c, model, x, y, BLOCK_LEARN)


def _learns_a_batch(c, model, x, y, hint):
    """15 plain gradient steps on one fixed batch must lower the loss."""
    losses = []
    for _ in range(15):
        _, loss = model(x, y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
        losses.append(loss.item())
    c.learns(losses, hint)


# ------------------------------------------------------------------ the generation loop (build exercise)
NO_CROP = Hint("it works for short texts, then fails once the text grows past the model's context.",
               more="feed the model at most its last block_size tokens: idx[:, -model.cfg.block_size:].")
CROP_FIRST = Hint("once the text is longer than the model's context, your samples stop following the newest "
                  "characters.", more="keep the last block_size tokens, idx[:, -block_size:], not the first ones.")
ARGMAX = Hint("at temperature 1 your samples are the same whatever the seed: the next token is picked, not drawn.",
              more="draw it from the distribution: torch.multinomial(probs, 1, generator=generator).")
NOT_REPRODUCIBLE = Hint("the same seed gives different samples.",
                        more="draw with the generator you are given: torch.multinomial(probs, 1, generator=generator).")
FIRST_POSITION = Hint("your samples ignore the newest character: the prediction is read at the wrong position.",
                      more="the next token comes from the logits at the last position, logits[:, -1].")
NO_FEEDBACK = Hint("each new token is predicted from the prompt alone: what was sampled is never fed back.",
                   more="append each sampled token to idx (torch.cat along dim 1) and predict from the new idx.")
KNOBS_IGNORED = Hint("temperature and top-k change nothing in your samples.",
                     more="turn the last logits into probabilities with next_token_probs(logits, temperature, top_k).")
PROMPT_DROPPED = Hint("the prompt is missing from the result: only the new tokens came back.",
                      more="return the whole sequence, prompt first: shape (B, T + n_new).")
N_NEW_OFF = Hint("the result has the wrong number of new tokens.", more="add exactly n_new tokens, one per step.")
DROPOUT_WHILE_SAMPLING = Hint("with dropout in the model, your samples differ from the reference's for the same seed: "
                              "dropout is on while sampling.", more="call model.eval() before the loop.")
MODE_CHANGED = Hint("after sampling, the model is not in the mode it was in before: training afterwards would run "
                    "with dropout off, or evaluation with it on.",
                    more="keep was_training = model.training, and call model.train(was_training) at the end.")
GENERATE_HINT = Hint("compare your loop with the steps above: crop, predict, turn into probabilities, draw, append.",
                     more="for each step: logits, _ = model(idx[:, -block_size:]); probs = next_token_probs(logits[:, -1], "
                          "temperature, top_k); idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], 1).")


def _tiny_gpt(dropout: float = 0.0) -> GPT:
    """A small GPT with weights large enough that its next-token distributions are far from uniform."""
    cfg = GPTConfig(vocab_size=9, block_size=6, n_layer=1, n_head=2, n_embd=8, dropout=dropout)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() < 2 else 1.0) + (1.0 if p.dim() < 2 else 0.0))
    return model.eval()


@torch.no_grad()
def _generate_variant(model, idx, n_new, temperature, top_k, seed, crop="last", position=-1, feed=True):
    g = torch.Generator().manual_seed(seed)
    out, context = idx, idx
    for _ in range(n_new):
        window = context[:, -model.cfg.block_size:] if crop == "last" else context[:, :model.cfg.block_size]
        logits, _ = model(window)
        token = _sample_next(logits[:, position], temperature, top_k, g)
        out = torch.cat([out, token], dim=1)
        context = out if feed else context
    return out


def _call_generate(c, fn, model, idx, n_new, temperature, top_k, seed):
    out = c.call(fn, model, idx, n_new, temperature, top_k, torch.Generator().manual_seed(seed),
                 error_hints={"longer than block_size": NO_CROP})
    out = c.tensor(out, "the result")
    B, T = idx.shape
    return c.shape(out, (B, T + n_new), GENERATE_HINT, mistakes={(B, n_new): PROMPT_DROPPED,
                                                                 (B, T + n_new - 1): N_NEW_OFF,
                                                                 (B, T + n_new + 1): N_NEW_OFF})


@exercise_check
def check_generate(c, fn):
    model = _tiny_gpt()
    idx = torch.tensor([[1, 2, 3], [4, 4, 0]])             # two prompts; 3 + 9 tokens overflow block_size 6
    n_new = 9
    for seed, temperature, top_k in [(0, 1.0, None), (1, 1.0, None), (2, 0.7, 3), (3, 1.6, None)]:
        out = _call_generate(c, fn, model, idx, n_new, temperature, top_k, seed)
        expected = _generate(model, idx, n_new, temperature, top_k, torch.Generator().manual_seed(seed))
        mistakes = {ARGMAX: _generate(model, idx, n_new, 0.0, None),
                    NOT_REPRODUCIBLE: lambda out: not torch.equal(
                        out, _call_generate(c, fn, model, idx, n_new, temperature, top_k, seed)),
                    FIRST_POSITION: _generate_variant(model, idx, n_new, temperature, top_k, seed, position=0),
                    NO_FEEDBACK: _generate_variant(model, idx, n_new, temperature, top_k, seed, feed=False),
                    CROP_FIRST: _generate_variant(model, idx, n_new, temperature, top_k, seed, crop="first")}
        if (temperature, top_k) != (1.0, None):
            mistakes[KNOBS_IGNORED] = _generate(model, idx, n_new, 1.0, None, torch.Generator().manual_seed(seed))
        c.close(out, expected, mistakes=mistakes, hint=GENERATE_HINT, atol=0, rtol=0)

    dropped = _tiny_gpt(dropout=0.5)                        # dropout off while sampling, the mode restored after
    for training in (True, False):
        dropped.train(training)
        out = _call_generate(c, fn, dropped, idx, n_new, 1.0, None, 5)
        c.true(dropped.training == training, MODE_CHANGED)
        expected = _generate(dropped, idx, n_new, 1.0, None, torch.Generator().manual_seed(5))
        c.true(torch.equal(out, expected), DROPOUT_WHILE_SAMPLING if training else GENERATE_HINT)


# ------------------------------------------------------------------ the GPT's forward (build exercise)
NO_POSITIONS = Hint("a token gets the same logits at every position: your model does not know where each token stands.",
                    more="add the position embeddings to the token embeddings: "
                         "x = self.tok_emb(idx) + self.pos_emb(torch.arange(T)).")
POSITIONS_FROM_ONE = Hint("each position gets the embedding of the next one: the positions are counted from 1, "
                          "so a window as long as block_size runs out of the table.",
                          more="positions are 0, 1, ..., T-1: torch.arange(T, device=idx.device).")
POSITIONS_LENGTH = Hint("windows shorter than block_size fail: the position embeddings added do not match the "
                        "window's length.",
                        more="embed only the T positions the window has: self.pos_emb(torch.arange(T)), with "
                             "B, T = idx.shape.")
NO_FINAL_LN = Hint("your logits are right in form but off in value: the stream reaches the output layer "
                   "unnormalised.", more="apply the final LayerNorm before the head: logits = self.head(self.ln_f(x)).")
NO_EMB_DROPOUT = Hint("in training mode, with dropout on, your forward draws other dropout masks than the reference's.",
                      more="apply self.drop to the sum of the two embeddings, before the blocks.")
LOGITS_FLAT = Hint("your logits come back flattened, one row per token of the whole batch.",
                   more="return the logits as (B, T, V); flatten them only inside the loss: "
                        "F.cross_entropy(logits.view(-1, V), targets.view(-1)).")
LOGITS_SHAPE = Hint("one row of vocabulary scores per token, for each window of the batch.",
                    more="the logits have shape (B, T, vocab_size).")
NOT_LOGITS_AND_LOSS = Hint("the forward should give back two things, the logits and the loss.",
                           more="return logits, loss; with targets=None, return logits, None.")
LOSS_WITHOUT_TARGETS = Hint("called without targets, your forward should give back the logits and no loss.",
                            more="if targets is None: return logits, None.")
LOSS_NOT_SCALAR = Hint("the loss should be one number, the mean over every token of the batch.",
                       more="F.cross_entropy averages over all B*T tokens and returns a 0-d tensor.")
LOSS_SHIFTED_AGAIN = Hint("your loss compares position t's prediction with the target one step further on: the "
                          "targets are shifted twice.",
                          more="the targets from get_batch are already the next characters: compare logits[:, t] "
                               "with targets[:, t], no slicing.")
LOSS_AGAINST_INPUTS = Hint("your loss scores each position against its own input character, not the next one.",
                           more="compare the logits with targets, not with idx.")
LOSS_SUM = Hint("your loss grows with the batch size and the window length: it is a total, not a mean per character.",
                more="average over all B*T tokens: F.cross_entropy's default reduction='mean'.")
LOSS_PER_SEQUENCE = Hint("your loss grows with the window length: it is averaged over the windows but summed over "
                         "the positions.", more="average over all B*T tokens at once: F.cross_entropy(logits.view(-1, V), "
                                                "targets.view(-1)).")
LOSS_REORDERED = Hint("your loss pairs each position's logits with the target of another position: the logits and "
                      "the targets are flattened in different orders.",
                      more="flatten both the same way: logits.view(-1, V) and targets.view(-1), or keep the "
                           "(B, V, T) layout with logits.transpose(1, 2).")
LOSS_3D = Hint("the loss fails on (B, T, V) logits: cross-entropy reads the second axis as the classes.",
               more="flatten before the loss: F.cross_entropy(logits.view(-1, V), targets.view(-1)).")
GPT_HINT = Hint("compare your forward with the steps above: embed tokens and positions, run the blocks, normalise, "
                "read out.",
                more="x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T))); x = block(x) for each block; "
                     "logits = self.head(self.ln_f(x)).")
GPT_LOSS_HINT = Hint("your logits are right, your loss is not.",
                     more="loss = F.cross_entropy(logits.view(-1, V), targets.view(-1)), the mean over all tokens.")
GPT_LEARN = Hint("a tiny GPT with your forward does not learn a fixed batch.",
                 more="is the loss computed from the logits, and is nothing detached?")

_GPT_CASES = [  # (config, B, T): T below and at block_size, tied and untied, biases on and off
    (GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8), 3, 5),
    (GPTConfig(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=12, bias=True, tie_weights=False), 2, 6),
]


@torch.no_grad()
def _gpt_variant(ref: GPT, idx, positions="right", final_ln=True):
    """The reference GPT's logits with one typical mistake (eval mode)."""
    T = idx.size(1)
    x = ref.tok_emb(idx)
    if positions == "right":
        x = x + ref.pos_emb(torch.arange(T))
    elif positions == "from_one":
        x = x + ref.pos_emb(torch.arange(1, T + 1))
    for block in ref.blocks:
        x = block(x)
    return ref.head(ref.ln_f(x) if final_ln else x)


def _loss_mistakes(logits, idx, targets) -> dict:
    B, T, V = logits.shape
    ce = torch.nn.functional.cross_entropy
    flat = logits.reshape(-1, V)
    return {LOSS_SHIFTED_AGAIN: ce(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1)),
            LOSS_AGAINST_INPUTS: ce(flat, idx.reshape(-1)),
            LOSS_SUM: ce(flat, targets.reshape(-1), reduction="sum"),
            LOSS_PER_SEQUENCE: ce(flat, targets.reshape(-1), reduction="sum") / B,
            LOSS_REORDERED: ce(logits.transpose(0, 1).reshape(-1, V), targets.reshape(-1))}


def _gpt_pair(c, out):
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        c.fail(NOT_LOGITS_AND_LOSS)
    return out


_GPT_ERRORS = {"index out of range": POSITIONS_FROM_ONE, "must match the size of tensor": POSITIONS_LENGTH,
               "Expected target size": LOSS_3D}


@exercise_check
def check_GPT(c, cls):
    for i, (cfg, B, T) in enumerate(_GPT_CASES):
        reference = _randomised(GPT(cfg), seed=40 + i).eval()
        mine = c.module(cls, cfg)
        c.same_weights(mine, reference, hint="keep the GPT's __init__; write only forward")
        mine.eval()
        g = torch.Generator().manual_seed(50 + i)
        idx = torch.randint(cfg.vocab_size, (B, T), generator=g)
        targets = torch.randint(cfg.vocab_size, (B, T), generator=g)   # not idx shifted: a wrong pairing shows
        with torch.no_grad():
            logits, loss = _gpt_pair(c, c.call(mine, idx, targets, error_hints=_GPT_ERRORS))
            logits = c.shape(logits, (B, T, cfg.vocab_size), LOGITS_SHAPE,
                             mistakes={(B * T, cfg.vocab_size): LOGITS_FLAT})
            mistakes = {NO_POSITIONS: _gpt_variant(reference, idx, positions="none"),
                        NO_FINAL_LN: _gpt_variant(reference, idx, final_ln=False)}
            if T < cfg.block_size:                                  # from 1 still fits in the table
                mistakes[POSITIONS_FROM_ONE] = _gpt_variant(reference, idx, positions="from_one")
            c.close(logits, reference(idx)[0], mistakes=mistakes, hint=GPT_HINT)
            loss = c.tensor(loss, "the loss")
            c.true(loss.numel() == 1, LOSS_NOT_SCALAR)
            ref_logits, ref_loss = reference(idx, targets)
            c.close(loss.reshape(()), ref_loss, mistakes=_loss_mistakes(ref_logits, idx, targets), hint=GPT_LOSS_HINT)
            out = _gpt_pair(c, c.call(mine, idx, error_hints=_GPT_ERRORS))
            c.true(out[1] is None, LOSS_WITHOUT_TARGETS)
            c.close(c.tensor(out[0], "the logits"), ref_logits, hint=GPT_HINT)

    cfg = replace(_GPT_CASES[0][0], dropout=0.3)                  # training mode: the same dropout masks
    reference = _randomised(GPT(cfg), seed=45).train()
    mine = c.module(cls, cfg)
    c.same_weights(mine, reference)
    mine.train()
    idx = torch.randint(cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(46))
    with torch.no_grad():
        torch.manual_seed(7)
        logits = c.tensor(_gpt_pair(c, c.call(mine, idx))[0], "the logits")
        torch.manual_seed(7)
        expected = reference(idx)[0]
        c.true(logits.shape == expected.shape and torch.allclose(logits.double(), expected.double(), atol=1e-4),
               NO_EMB_DROPOUT)

    cfg = _GPT_CASES[0][0]                                        # in float64, gradients reach, a batch is learnt
    torch.manual_seed(0)
    model = c.module(cls, cfg).double()
    x = torch.randint(cfg.vocab_size, (4, cfg.block_size), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    _, loss = _gpt_pair(c, c.call(model, x, y))
    c.true(isinstance(loss, torch.Tensor) and loss.dtype == torch.float64,
           "your forward does not work in float64: keep the model's dtype throughout.")
    c.gradients_reach(model, loss)
    _learns_a_batch(c, model, x, y, GPT_LEARN)


# ------------------------------------------------------------------ batches of training windows (exercise)
TARGETS_NOT_SHIFTED = Hint("your targets are the inputs themselves: the model would learn to copy the character it "
                           "already sees.", more="y is x shifted by one: y = data[s + 1 : s + 1 + block_size].")
TARGETS_WRONG_WAY = Hint("your targets are the previous characters, not the next ones: y is shifted the wrong way.",
                         more="x = data[s : s + block_size] and y = data[s + 1 : s + 1 + block_size].")
TARGETS_OTHER_WINDOW = Hint("your targets do not continue your inputs: x and y come from different places in the data.",
                            more="draw the starts once and cut both x and y from the same start s.")
PAST_END = Hint("some windows run past the end of the data: the last start you allow leaves no room for the target.",
                more="a start s needs s + block_size + 1 <= len(data): torch.randint(len(data) - block_size, "
                     "(batch_size,), generator=generator).")
IGNORES_GENERATOR = Hint("the same generator gives different batches: the starts ignore the generator you are given.",
                         more="pass it on: torch.randint(..., generator=generator).")
OTHER_DRAWS = Hint("with the same generator, your windows start at other places than the reference's.",
                   more="draw all starts at once: torch.randint(len(data) - block_size, (batch_size,), "
                        "generator=generator), and take them in order.")
BATCH_TRANSPOSED = Hint("your batch is transposed: one column per window instead of one row.",
                        more="stack the windows as rows: torch.stack(windows), shape (batch_size, block_size).")
BATCH_SHAPE = Hint("x and y hold one row per window, one column per position.",
                   more="both have shape (batch_size, block_size).")
BATCH_DTYPE = Hint("your windows do not hold the data's own values and type: token ids must stay integers.",
                   more="cut the windows from data itself (slicing or indexing keeps its dtype).")
NOT_X_AND_Y = Hint("get_batch should give back two things, the inputs and the targets.", more="return x, y.")

_BATCH_ERRORS = {"stack expects each tensor to be equal size": PAST_END, "out of bounds": PAST_END}


def _windows(data, starts, T, shift=0):
    return torch.stack([data[s + shift:s + shift + T] for s in starts.tolist()])


def _call_get_batch(c, fn, data, T, B, seed):
    out = c.call(fn, data, T, B, torch.Generator().manual_seed(seed), error_hints=_BATCH_ERRORS)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        c.fail(NOT_X_AND_Y)
    x, y = (c.shape(t, (B, T), BATCH_SHAPE, mistakes={(T, B): BATCH_TRANSPOSED}) for t in out)
    return x, y


@exercise_check
def check_get_batch(c, fn):
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randperm(300, generator=g), 8, 5, 0),          # (data, block_size, batch_size, seed)
             (torch.randperm(40, generator=g), 16, 6, 1),
             (torch.randn(50, generator=g, dtype=torch.float64), 4, 3, 2),
             (torch.randperm(9, generator=g), 8, 4, 3)]            # one valid start: 0
    for data, T, B, seed in cases:
        x, y = _call_get_batch(c, fn, data, T, B, seed)
        same = data.is_floating_point() == x.is_floating_point() == y.is_floating_point()
        c.true(same and (data.is_floating_point() or x.dtype == y.dtype == data.dtype), BATCH_DTYPE)
        xd, yd = x.double(), y.double()
        if torch.equal(xd, yd):
            c.fail(TARGETS_NOT_SHIFTED)
        if torch.equal(yd[:, 1:], xd[:, :-1]):
            c.fail(TARGETS_WRONG_WAY)
        if not torch.equal(yd[:, :-1], xd[:, 1:]):
            c.fail(TARGETS_OTHER_WINDOW)
        expected_x, expected_y = _get_batch(data, T, B, torch.Generator().manual_seed(seed))
        mistakes = {IGNORES_GENERATOR: lambda out: not torch.equal(
            out, _call_get_batch(c, fn, data, T, B, seed)[0].to(out.dtype))}
        past_end = []                                  # the starts drawn from a range that runs past the end
        for high in (len(data) - T + 1, len(data)):
            starts = torch.randint(high, (B,), generator=torch.Generator().manual_seed(seed))
            if int(starts.max()) + T <= len(data):
                past_end.append(_windows(data, starts, T).double())
        mistakes[PAST_END] = lambda out: any(torch.allclose(out.double(), w) for w in past_end)
        c.close(x, expected_x, mistakes=mistakes, hint=OTHER_DRAWS, atol=0, rtol=0)
        c.close(y, expected_y, hint=OTHER_DRAWS, atol=0, rtol=0)


SECOND_HINTS = {
    "attention": "scores = q @ k.transpose(-2, -1) / sqrt(q.size(-1)); where the mask is False, fill the scores with "
                 "-inf (before the softmax); weights = scores.softmax(dim=-1); return weights @ v, weights.",
    "causal_mask": "the lower triangle of a T x T matrix of True, diagonal included: "
                   "torch.tril(torch.ones(T, T, dtype=torch.bool)).",
    "next_token_probs": "logits = logits / temperature; if top_k: find each row's k-th largest logit with "
                        "torch.topk(logits, k, dim=-1).values[:, [-1]] and set the logits below it to -inf; "
                        "return logits.softmax(dim=-1).",
    "CausalSelfAttention": CSA_HINT.more,
    "Block": "pre-LayerNorm: normalise the input of each branch, add the branch's output to x itself: "
             "x = x + self.attn(self.ln1(x)); x = x + self.mlp(self.ln2(x)). The layers are ln1, attn, ln2, mlp.",
    "GPT": "B, T = idx.shape; x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))); "
           "x = block(x) for each block in self.blocks; logits = self.head(self.ln_f(x)); without targets return "
           "logits, None; else loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1)).",
    "get_batch": "starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator); for each start "
                 "s, x is data[s : s + block_size] and y is data[s + 1 : s + 1 + block_size]; torch.stack the rows; "
                 "return x, y.",
    "generate": "model.eval(); for each new token: crop to the last block_size tokens, take the logits at the last "
                "position, next_token_probs, torch.multinomial with the generator, torch.cat onto idx; then "
                "model.train(was_training); return idx.",
}

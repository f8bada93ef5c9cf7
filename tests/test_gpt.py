"""Tests for lesson 06: utils.gpt (tokens, attention, the GPT, sampling, explorers) and its checks."""
import math
import os
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import utils
from utils import gpt
from checking import fails_with, in_float64, passes
from utils.checks import gpt as T_
from utils.checks.core import IN_PLACE, NOT_IMPLEMENTED, NO_RETURN

SHAKESPEARE = Path(os.environ.get("GENAI_SHAKESPEARE", Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"))
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


@pytest.fixture(scope="module")
def tok():
    return gpt.CharTokenizer(TEXT)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return gpt.GPT(gpt.GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))


# ------------------------------------------------------------------ tokens and the bigram baseline

def test_tokenizer_round_trip_and_unknown(tok):
    ids = tok.encode("hear me speak")
    assert tok.decode(ids) == "hear me speak" and tok.decode(torch.tensor(ids)) == "hear me speak"
    assert tok.vocab_size == len(set(TEXT))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("xyz{")
    assert tok.decode(tok.encode("he{ar", skip_unknown=True)) == "hear"
    both = gpt.CharTokenizer("ab", "bc")
    assert both.chars == ["a", "b", "c"]


def test_split_is_contiguous():
    train, val = gpt.split(torch.arange(100))
    assert len(train) == 90 and len(val) == 10 and val[0] == 90


def test_bigram_baseline_beats_uniform_and_counts_pairs():
    ids = torch.tensor([0, 1, 0, 1, 0, 2])
    counts = gpt.bigram_counts(ids, 3)
    assert counts[0, 1] == 2 and counts[1, 0] == 2 and counts[0, 2] == 1 and counts.sum() == 5
    tok = gpt.CharTokenizer(TEXT)
    data = torch.tensor(tok.encode(TEXT))
    loss = gpt.bigram_loss(gpt.bigram_counts(data, tok.vocab_size), data)
    assert 0 < loss < math.log(tok.vocab_size)


# ------------------------------------------------------------------ attention by hand

def test_attention_matches_pytorch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    out, w = gpt.attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    out, w = gpt.attention(q, k, v, gpt.causal_mask(5))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (w.triu(1) == 0).all()


def test_causal_mask():
    m = gpt.causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m[3].all() and m[0, 0] and not m[0, 1:].any()


# ------------------------------------------------------------------ the GPT

def test_gpt_shapes_loss_and_tying(model, tok):
    x = torch.randint(tok.vocab_size, (3, 16))
    logits, loss = model(x, x)
    assert logits.shape == (3, 16, tok.vocab_size)
    assert abs(loss.item() - math.log(tok.vocab_size)) < 0.3  # near uniform at initialisation
    assert model.head.weight is model.tok_emb.weight
    untied = gpt.GPT(gpt.GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16,
                                   tie_weights=False))
    assert untied.num_params() == model.num_params() + tok.vocab_size * 16


def test_baby_gpt_size():
    assert 790_000 < gpt.GPT(gpt.GPTConfig(vocab_size=65)).num_params() < 810_000  # nanoGPT: 0.80M


def test_gpt_is_causal_and_fused_equals_hand_written(model, tok):
    model.eval()
    x = torch.randint(tok.vocab_size, (2, 12))
    x2 = x.clone()
    x2[:, 8:] = (x2[:, 8:] + 1) % tok.vocab_size  # change the future only
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x2)
        torch.testing.assert_close(a[:, :8], b[:, :8])
        for blk in model.blocks:
            blk.attn.keep_weights = True
        c, _ = model(x)
        for blk in model.blocks:
            blk.attn.keep_weights, blk.attn.weights = False, None
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_get_batch_targets_are_shifted_inputs():
    data = torch.arange(50)
    x, y = gpt.get_batch(data, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)


def test_estimate_loss_is_deterministic(model, tok):
    model.train()
    data = torch.tensor(tok.encode(TEXT))
    a = gpt.estimate_loss(model, data, windows=20)
    assert a == gpt.estimate_loss(model, data, windows=20) and a > 0
    assert model.training  # the mode is restored


def test_lr_schedule_ends():
    assert gpt.lr_at(0.0, 1e-3, 1e-4, 0.1) < 1e-8
    assert gpt.lr_at(0.1, 1e-3, 1e-4, 0.1) == pytest.approx(1e-3)
    assert gpt.lr_at(1.0, 1e-3, 1e-4, 0.1) == pytest.approx(1e-4)
    assert gpt.lr_at(1.5, 1e-3, 1e-4, 0.1) == pytest.approx(1e-4)


# ------------------------------------------------------------------ sampling

def test_low_temperature_and_top1_are_greedy():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    greedy = F.one_hot(logits.argmax(-1), 10).float()
    torch.testing.assert_close(gpt.next_token_probs(logits, 1e-4), greedy)
    torch.testing.assert_close(gpt.next_token_probs(logits, 0.0), greedy)
    torch.testing.assert_close(gpt.next_token_probs(logits, 1.0, top_k=1), greedy)
    torch.testing.assert_close(gpt.next_token_probs(logits, 1.0, top_k=10), logits.softmax(-1))
    p = gpt.next_token_probs(logits, 1.0, top_k=3)
    assert ((p > 0).sum(-1) == 3).all()


def test_generate_at_temperature_zero_is_greedy_decoding(model, tok):
    start = torch.tensor([tok.encode("Speak")])
    out = gpt.generate(model, start, 10, temperature=0.0)
    idx = start
    with torch.no_grad():
        for _ in range(10):
            logits, _ = model(idx[:, -16:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, idx)
    # longer than block_size works (the context is cropped), and sampling is reproducible by seed
    a = gpt.complete(model, tok, "Speak", 30, temperature=1.0, seed=3)
    assert a == gpt.complete(model, tok, "Speak", 30, temperature=1.0, seed=3) and len(a) == 35


# ------------------------------------------------------------------ explorers (slider ends included)

@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (2.0, 0), (1.0, 1), (0.05, 40), (1.0, 100), (1.0, 5)])
def test_sampling_figure(model, tok, temperature, top_k):
    fig = gpt.sampling_figure(model, tok, "All:", temperature, top_k, n_new=20, show=20)
    bars_ax, text_ax = fig.axes
    heights = torch.tensor([p.get_height() for p in bars_ax.patches])
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode("All:")]))
    probs = gpt.next_token_probs(logits[:, -1], temperature, top_k or None)[0]
    # the bars are the 20 most likely next characters, in order, with their probabilities
    assert len(heights) == min(20, tok.vocab_size)
    torch.testing.assert_close(heights.float(), probs.topk(len(heights)).values, atol=1e-6, rtol=1e-5)
    if top_k and top_k <= 20:
        assert heights.sum().item() == pytest.approx(1.0, abs=1e-5) and (heights[top_k:] == 0).all()
    if temperature == 0.0 or top_k == 1:
        assert heights.max().item() == pytest.approx(1.0)
    # the lower panel shows the sampled continuation, prompt first
    shown = text_ax.texts[0].get_text()
    assert shown.startswith("All:") and len(shown) >= len("All:") + 10
    assert f"top-k {top_k or 'off'}" in bars_ax.get_title()


def test_sampling_figure_odd_prompts(model, tok):
    for prompt in ["", "{{}}", "x" * 100]:
        fig = gpt.sampling_figure(model, tok, prompt, 1.0, 0, n_new=5)
        assert len(fig.axes) == 2 and len(fig.axes[0].patches) == min(20, tok.vocab_size)


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 1), (0, 1)])
def test_attention_figure_and_weights(model, tok, layer, head):
    w = gpt.attention_weights(model, tok, "Speak, speak.")
    assert w.shape == (2, 2, 13, 13)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 13))
    assert (w.triu(1) == 0).all()
    assert all(not b.attn.keep_weights and b.attn.weights is None for b in model.blocks)
    fig = gpt.attention_figure(model, tok, "Speak, speak.", layer, head)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (13, 13)  # one row per query character, one column per key
    np.testing.assert_allclose(np.asarray(image), w[layer, head].numpy(), atol=1e-6)
    assert fig.axes[0].get_title() == f"layer {layer}, head {head}"
    for prompt, size in [("", 1), ("a" * 40, model.cfg.block_size)]:  # empty, and cropped to the block
        image = gpt.attention_figure(model, tok, prompt, layer, head).axes[0].images[0].get_array()
        assert image.shape == (size, size)


def test_attention_figure_rejects_bad_layer(model, tok):
    with pytest.raises(ValueError, match="layer must be"):
        gpt.attention_figure(model, tok, "hear", layer=2, head=0)


# ------------------------------------------------------------------ corpora

def test_python_source_corpus():
    corpus = gpt.load_python_source(max_chars=50_000, verbose=False)
    assert 10_000 < len(corpus.text) <= 50_000
    assert set(corpus.text) <= set(string.printable) - set("\t\r\x0b\x0c")
    assert "def " in corpus.text and "return" in corpus.text


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="Tiny Shakespeare is not available here")
def test_shakespeare_loads_from_a_path():
    corpus = utils.data.load_text(SHAKESPEARE, verbose=False)
    assert corpus.name == "Tiny Shakespeare" and len(corpus.text) > 1_000_000


# ------------------------------------------------------------------ checks: accept the right answers ...

def attention_loop(q, k, v, mask=None):  # a correct variant: -1e9 instead of -inf, torch.where, explicit exp
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(-1e9))
    e = (scores - scores.amax(-1, keepdim=True)).exp()
    w = e / e.sum(-1, keepdim=True)
    return w @ v, w


def attention_renormalised(q, k, v, mask=None):  # correct too: zeroing after softmax, then renormalising
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1)
    if mask is not None:
        w = w * mask
        w = w / w.sum(-1, keepdim=True)
    return w @ v, w


def probs_power(logits, temperature=1.0, top_k=None):  # correct: p ** (1/T) renormalised == softmax(l / T)
    if top_k:
        kth = logits.topk(top_k).values[:, [-1]]
        logits = torch.where(logits >= kth, logits, torch.tensor(float("-inf")))
    p = logits.softmax(-1) ** (1 / temperature)
    return p / p.sum(-1, keepdim=True)


def probs_sorted(logits, temperature=1.0, top_k=None):  # correct: sort-based top-k, applied before temperature
    if top_k:
        values, idx = logits.sort(-1, descending=True)
        logits = torch.full_like(logits, -1e10).scatter(-1, idx[:, :top_k], values[:, :top_k])
    return F.softmax(logits / temperature, dim=-1)


def attention_mT(q, k, v, mask=None):  # correct: .mT transposes the last two dimensions of batched keys
    scores = q @ k.mT / math.sqrt(k.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    return weights @ v, weights


@pytest.mark.parametrize("check,fn", [
    (T_.check_attention, gpt.attention), (T_.check_attention, attention_loop),
    (T_.check_attention, attention_renormalised), (T_.check_attention, attention_mT),
    (T_.check_attention, in_float64(gpt.attention)),
    (T_.check_causal_mask, gpt.causal_mask),
    (T_.check_causal_mask, lambda T: torch.ones(T, T).tril().bool()),
    (T_.check_causal_mask, lambda T: torch.arange(T)[:, None] >= torch.arange(T)[None, :]),
    (T_.check_next_token_probs, gpt.next_token_probs), (T_.check_next_token_probs, probs_power),
    (T_.check_next_token_probs, probs_sorted), (T_.check_next_token_probs, in_float64(gpt.next_token_probs)),
    (T_.check_next_token_probs, lambda logits, temperature=1.0, top_k=None:
     gpt.next_token_probs(logits.double(), temperature, top_k)),
])
def test_checks_accept_correct_answers_in_float32_and_float64(check, fn, capsys):
    passes(check, fn, capsys)


def test_checks_are_exported():
    assert utils.checks.check_attention is T_.check_attention
    assert utils.checks.check_causal_mask is T_.check_causal_mask
    assert utils.checks.check_next_token_probs is T_.check_next_token_probs


# ------------------------------------------------------------------ ... and reject the typical mistakes, with the right hint

def _attn(scale=None, axis=-1, mode="before", fill=float("-inf"), transpose=lambda k: k.transpose(-2, -1)):
    def fn(q, k, v, mask=None):
        s = q @ transpose(k) / (math.sqrt(q.size(-1)) if scale is None else scale(q, k, v))
        if mask is not None and mode == "before":
            s = s.masked_fill(~mask, fill)
        if mask is not None and mode == "inverted":
            s = s.masked_fill(mask, fill)
        w = s.softmax(dim=axis)
        if mask is not None and mode == "after_zero":
            w = w.masked_fill(~mask, 0.0)
        if mask is not None and mode == "after_inf":
            w = w.masked_fill(~mask, fill)
        return (w, w @ v) if mode == "swapped" else (w @ v, w)
    return fn


def _out_only(q, k, v, mask=None):
    return gpt.attention(q, k, v, mask)[0]


def _raises(q, k, v, mask=None):
    raise NotImplementedError()


def _scores_in_place(q, k, v, mask=None):
    q /= math.sqrt(q.size(-1))                     # scales the caller's queries too
    return gpt.attention(q * math.sqrt(q.size(-1)), k, v, mask)


def _k_transpose_1_2(q, k, v, mask=None):          # right for 3-D keys, wrong for (B, heads, T, d)
    return _attn(transpose=lambda k: k.transpose(1, 2))(q, k, v, mask)


@pytest.mark.parametrize("fn,hint", [
    (_attn(scale=lambda q, k, v: 1.0), T_.NO_SCALE),
    (_attn(scale=lambda q, k, v: float(q.size(-1))), T_.SCALE_BY_DK),
    (_attn(scale=lambda q, k, v: math.sqrt(v.size(-1))), T_.SCALE_BY_DV),
    (_attn(scale=lambda q, k, v: math.sqrt(q.size(-2))), T_.SCALE_BY_T),
    (_attn(axis=-2), T_.WRONG_AXIS),
    (_attn(mode="after_zero"), T_.MASK_AFTER),
    (_attn(mode="after_inf"), T_.MASK_AFTER_INF),
    (_attn(mode="after_inf", fill=-1e9), T_.MASK_AFTER_INF),
    (_attn(mode="ignored"), T_.MASK_IGNORED),
    (_attn(mode="inverted"), T_.MASK_INVERTED),
    (_attn(mode="swapped"), T_.SWAPPED_PAIR),
    (_attn(transpose=lambda k: k.T), T_.K_DOT_T),
    (_k_transpose_1_2, T_.K_TRANSPOSE_1_2),
    (_out_only, T_.NOT_A_PAIR),
    (_scores_in_place, IN_PLACE.format("q")),
    (_raises, NOT_IMPLEMENTED),
])
def test_check_attention_names_each_mistake(fn, hint, capsys):
    fails_with(T_.check_attention, fn, capsys, hint)


def test_k_dot_T_is_named_every_time(capsys):  # PyTorch warns about .T on 3-D tensors only once per process
    for _ in range(2):
        fails_with(T_.check_attention, _attn(transpose=lambda k: k.T), capsys, T_.K_DOT_T)


@pytest.mark.parametrize("fn,hint", [
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), T_.FUTURE_UPPER),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(1), T_.FUTURE_ONE_AHEAD),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), T_.NO_SELF),
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), T_.BLOCKED_CONVENTION),
    (lambda T: torch.ones(T, T, dtype=torch.bool), T_.FUTURE_ANY),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(2), T_.FUTURE_ANY),
    (lambda T: torch.eye(T, dtype=torch.bool), T_.PAST_HIDDEN),
    (lambda T: torch.ones(T, T).tril(), T_.NOT_BOOL),
    (lambda T: torch.ones(T, T, dtype=torch.long).tril(), T_.NOT_BOOL),
    (lambda T: torch.ones(T + 1, T + 1, dtype=torch.bool).tril(), T_.MASK_SHAPE),
    (lambda T: None, NO_RETURN),
])
def test_check_causal_mask_names_each_mistake(fn, hint, capsys):
    fails_with(T_.check_causal_mask, fn, capsys, hint)


def _probs(temp_mode="before", topk_mode="largest", in_place=False, zero_is_off=True):
    def fn(logits, temperature=1.0, top_k=None):
        if in_place:
            logits /= temperature
        elif temp_mode == "before":
            logits = logits / temperature
        if temp_mode == "multiplied":
            logits = logits * temperature
        if (top_k if zero_is_off else top_k is not None):
            if topk_mode == "largest":
                keep = logits.topk(top_k).indices
            elif topk_mode == "smallest":
                keep = logits.topk(top_k, largest=False).indices
            elif topk_mode == "first":
                keep = torch.arange(top_k).expand(len(logits), top_k)
            elif topk_mode == "plus_one":
                keep = logits.topk(min(top_k + 1, logits.size(-1))).indices
            elif topk_mode in ("zero", "no_renorm"):
                keep = logits.topk(top_k).indices
            if topk_mode == "batch_min":      # the smallest k-th value of any row, used for every row
                blocked = logits < logits.topk(top_k).values[:, -1].min()
            elif topk_mode == "flattened":    # the k largest logits of the whole batch
                blocked = logits < logits.flatten().topk(top_k).values[-1]
            else:
                blocked = ~torch.zeros_like(logits, dtype=torch.bool).scatter(-1, keep, True)
            if topk_mode == "zero":
                logits = logits.masked_fill(blocked, 0.0)
            elif topk_mode != "no_renorm":
                logits = logits.masked_fill(blocked, float("-inf"))
        p = logits.softmax(-1)
        if top_k and topk_mode == "no_renorm":
            p = p.masked_fill(blocked, 0.0)
        if temp_mode == "after":
            p = p / temperature
        if temp_mode == "after_renorm":
            p = p / temperature
            p = p / p.sum(-1, keepdim=True)
        return p
    return fn


@pytest.mark.parametrize("fn,hint", [
    (_probs(temp_mode="after"), T_.TEMP_AFTER),
    (_probs(temp_mode="after_renorm"), T_.TEMP_NO_EFFECT),
    (_probs(temp_mode="multiplied"), T_.TEMP_MULTIPLIED),
    (_probs(topk_mode="smallest"), T_.TOPK_SMALLEST),
    (_probs(topk_mode="first"), T_.TOPK_FIRST),
    (_probs(topk_mode="plus_one"), T_.TOPK_OFF_BY_ONE),
    (_probs(topk_mode="zero"), T_.TOPK_ZERO),
    (_probs(topk_mode="no_renorm"), T_.TOPK_NO_RENORM),
    (_probs(topk_mode="batch_min"), T_.TOPK_PER_BATCH),
    (_probs(topk_mode="flattened"), T_.TOPK_PER_BATCH),
    (_probs(zero_is_off=False), T_.TOPK_OFF),
    (_probs(in_place=True), IN_PLACE.format("logits")),
    (lambda logits, temperature=1.0, top_k=None: logits / temperature, T_.PROBS_NOT_ONE),
    (lambda logits, temperature=1.0, top_k=None: (logits / temperature).softmax(dim=0), T_.PROBS_WRONG_AXIS),
])
def test_check_next_token_probs_names_each_mistake(fn, hint, capsys):
    fails_with(T_.check_next_token_probs, fn, capsys, hint)


def test_checks_refuse_a_non_function():
    with pytest.raises(TypeError):
        T_.check_attention("attention")


# ------------------------------------------------------------------ validation windows, curves, units, the saved model

def test_estimate_loss_windows_are_spread_over_the_whole_split(model, tok):
    data = torch.tensor(tok.encode(TEXT))
    whole = gpt.estimate_loss(model, data)
    n = (len(data) - 1) // model.cfg.block_size
    manual = sum(model(data[i * 16:(i + 1) * 16][None], data[i * 16 + 1:(i + 1) * 16 + 1][None])[1].item()
                 for i in range(n)) / n
    assert whole == pytest.approx(manual, rel=1e-5)
    a = gpt.estimate_loss(model, data, windows=64, seed=3)
    assert a == gpt.estimate_loss(model, data, windows=64, seed=3)   # the same windows at every call
    assert a != gpt.estimate_loss(model, data, windows=64, seed=4)
    assert abs(a - whole) < 0.1
    # a split whose first half differs from its second: windows drawn across all of it see both halves
    mixed = torch.cat([torch.full((len(data),), tok.stoi["a"]), data])
    whole, head = gpt.estimate_loss(model, mixed), gpt.estimate_loss(model, mixed[:len(data)])
    assert abs(gpt.estimate_loss(model, mixed, windows=200) - whole) < 0.25 * abs(whole - head)


def test_steps_to_reach_interpolates_the_first_crossing():
    assert gpt.steps_to_reach([100, 200, 300], [2.5, 2.0, 1.5], 1.75) == pytest.approx(250)
    assert gpt.steps_to_reach([100, 200, 300], [2.5, 1.9, 2.1], 2.0) == pytest.approx(100 + 100 * 0.5 / 0.6)
    assert gpt.steps_to_reach([100, 200], [2.5, 2.0], 1.9) is None
    assert gpt.steps_to_reach([100, 200], [1.5, 1.0], 2.0) == 100   # already below at the first point


def test_bits_per_char_and_perplexity():
    assert gpt.bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert gpt.perplexity(math.log(65)) == pytest.approx(65)


def test_mlp_layers_are_named_and_get_the_residual_init(model):
    names = [n for n, _ in model.named_parameters()]
    assert "blocks.0.mlp.fc.weight" in names and "blocks.0.mlp.proj.weight" in names
    assert not any(".net." in n for n in names)
    torch.manual_seed(0)
    big = gpt.GPT(gpt.GPTConfig(vocab_size=10, block_size=8, n_layer=8, n_head=2, n_embd=64))
    assert big.blocks[0].mlp.proj.weight.std() < 0.6 * big.blocks[0].mlp.fc.weight.std()


def test_save_and_load_pretrained(model, tok, tmp_path):
    path = gpt.pretrained_path("Tiny Shakespeare", model.cfg, 2000)
    assert path.parent.name == "models" and path.name.startswith("gpt_tiny_shakespeare_") and "steps2000" in path.name
    path = tmp_path / "gpt.pt"
    assert gpt.save_pretrained(model, tok, path, corpus="test", val_loss_nats=1.5)
    assert not gpt.save_pretrained(model, tok, path, corpus="test", val_loss_nats=1.5)   # written once
    loaded, info = gpt.load_pretrained(path, tok)
    assert info == {"corpus": "test", "val_loss_nats": 1.5} and loaded.cfg == model.cfg
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert gpt.load_pretrained(path, gpt.CharTokenizer("xyz"), verbose=False) is None   # another vocabulary
    path.write_bytes(b"not a checkpoint")
    assert gpt.load_pretrained(path, tok, verbose=False) is None                       # damaged: None, no raise
    assert gpt.save_pretrained(model, tok, path, corpus="test", val_loss_nats=1.5)      # and rewritten
    assert gpt.load_pretrained(path, tok) is not None
    assert gpt.load_pretrained(tmp_path / "missing.pt", verbose=False) is None


def test_top_k_zero_none_and_large_all_mean_off():
    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    before = logits.clone()
    plain = logits.softmax(dim=-1)
    for off in (None, 0, 7, 50):
        assert torch.allclose(gpt.next_token_probs(logits, 1.0, off), plain)
    assert torch.equal(logits, before)


# ------------------------------------------------------------------ build exercises: attention layer, block, generation
class _Attn(gpt.CausalSelfAttention):
    """The reference layer's weights, with the learner's forward written below (one mistake per subclass)."""
    split, merge, causal, scale, swap, fused_dropout, keep = "heads", "transpose", True, None, False, "mode", True

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        if self.swap:
            q, k = k, q
        if self.split == "heads":
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        else:
            q, k, v = (t.reshape(B, self.n_head, T, C // self.n_head) for t in (q, k, v))
        if self.keep_weights and self.keep:
            mask = self.mask[:T, :T] if self.causal else None
            if self.scale is not None:
                q = q * math.sqrt(q.size(-1)) / self.scale
            y, self.weights = gpt.attention(q, k, v, mask)
        else:
            p = self.dropout if (self.training or self.fused_dropout == "always") else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=p, scale=None if self.scale
                                               is None else 1 / self.scale)
        if self.merge == "transpose":
            y = y.transpose(1, 2).reshape(B, T, C)
        elif self.merge == "view":
            y = y.transpose(1, 2).view(B, T, C)
        else:
            y = y.reshape(B, T, C)
        return self.drop(self.proj(y)) if self.proj_on else y

    proj_on = True


def _attn_with(**changes):
    return type("Mine", (_Attn,), changes)


class _UncroppedMask(gpt.CausalSelfAttention):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        y, self.weights = gpt.attention(q, k, v, self.mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class _EvalDropout(_Attn):
    def forward(self, x):
        return F.dropout(super().forward(x), self.dropout)   # F.dropout is on unless told the mode


class _RenamedAttn(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_attn = torch.nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = torch.nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)


def _csa_math(self, x):  # a correct answer written out by hand, without the fused call (both paths)
    B, T, C = x.shape
    q, k, v = self.qkv(x).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, T, self.n_head, -1).permute(0, 2, 1, 3) for t in (q, k, v))
    scores = (q @ k.mT) * q.size(-1) ** -0.5
    scores = scores.masked_fill(self.mask[:T, :T] == 0, float("-inf"))
    w = scores.softmax(-1)
    self.weights = w if self.keep_weights else None
    y = torch.nn.functional.dropout(w, self.dropout, self.training) @ v
    return self.drop(self.proj(y.permute(0, 2, 1, 3).contiguous().view(B, T, C)))


_CSAByHand = type("CSAByHand", (gpt.CausalSelfAttention,), {"forward": _csa_math})


@pytest.mark.parametrize("cls", [gpt.CausalSelfAttention, _Attn, _CSAByHand])
def test_check_attention_layer_accepts_correct_answers(cls, capsys):
    passes(T_.check_CausalSelfAttention, cls, capsys)


@pytest.mark.parametrize("cls,hint", [
    (_attn_with(causal=False), T_.SEES_FUTURE),
    (_attn_with(keep=True, causal=False, fused_dropout="mode"), T_.SEES_FUTURE),
    (_attn_with(scale=1.0), T_.CSA_NO_SCALE),
    (_attn_with(split="view"), T_.HEADS_SPLIT),
    (_attn_with(merge="reshape_only"), T_.HEADS_MERGE),
    (_attn_with(merge="view"), T_.VIEW_TRANSPOSED),
    (_attn_with(swap=True), T_.QKV_ORDER),
    (_attn_with(proj_on=False), T_.NO_PROJ),
    (_attn_with(keep=False), T_.KEEP_WEIGHTS),
    (_attn_with(fused_dropout="always"), T_.DROPOUT_IN_EVAL),
    (_EvalDropout, T_.DROPOUT_IN_EVAL),
    (_UncroppedMask, T_.SIZES_DISAGREE),
    (_RenamedAttn, "it has no `qkv.weight`"),
])
def test_check_attention_layer_names_each_mistake(cls, hint, capsys):
    fails_with(T_.check_CausalSelfAttention, cls, capsys, hint)


def test_check_attention_layer_scale_by_the_width(capsys):
    class Wide(_Attn):
        def forward(self, x):
            self.scale = math.sqrt(x.size(-1))
            return super().forward(x)
    fails_with(T_.check_CausalSelfAttention, Wide, capsys, T_.CSA_SCALE_WIDTH)


def test_check_attention_layer_without_any_dropout(capsys):
    class NoDrop(_Attn):
        def forward(self, x):
            self.drop.p, self.dropout = 0.0, 0.0
            return super().forward(x)
    fails_with(T_.check_CausalSelfAttention, NoDrop, capsys, T_.NO_DROPOUT)


def _block(form):
    class Mine(gpt.Block):
        def forward(self, x):
            a, m, ln1, ln2 = self.attn, self.mlp, self.ln1, self.ln2
            if form == "post":
                x = ln1(x + a(x))
                return ln2(x + m(x))
            if form == "from_norm":
                h = ln1(x)
                x = h + a(h)
                h = ln2(x)
                return h + m(h)
            if form == "no_residual":
                return m(ln2(a(ln1(x))))
            if form == "half_residual":
                x = x + a(ln1(x))
                return m(ln2(x))
            if form == "same_ln":
                x = x + a(ln1(x))
                return x + m(ln1(x))
            if form == "mlp_first":
                x = x + m(ln1(x))
                return x + a(ln2(x))
            if form == "parallel":
                return x + a(ln1(x)) + m(ln2(x))
            if form == "detached":
                x = x + a(ln1(x)).detach()
                return x + m(ln2(x))
            x = x + a(ln1(x))
            return x + m(ln2(x))
    return Mine


class _BlockWithBias(gpt.Block):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln1 = torch.nn.LayerNorm(cfg.n_embd)   # bias=True whatever cfg.bias says


@pytest.mark.parametrize("cls", [gpt.Block, _block("right")])
def test_check_block_accepts_correct_answers(cls, capsys):
    passes(T_.check_Block, cls, capsys)


@pytest.mark.parametrize("form,hint", [
    ("post", T_.POST_NORM), ("from_norm", T_.RESIDUAL_FROM_NORM), ("no_residual", T_.NO_RESIDUAL),
    ("half_residual", T_.NO_RESIDUAL), ("same_ln", T_.SAME_LN), ("mlp_first", T_.MLP_FIRST),
    ("parallel", T_.PARALLEL), ("detached", "no gradient reaches"),
])
def test_check_block_names_each_mistake(form, hint, capsys):
    fails_with(T_.check_Block, _block(form), capsys, hint)


def test_check_block_names_a_layer_with_a_bias_it_should_not_have(capsys):
    fails_with(T_.check_Block, _BlockWithBias, capsys, "it has a `ln1.bias`")


def test_gpt_takes_a_block_class_and_keeps_its_weight_names():
    cfg = gpt.GPTConfig(vocab_size=10, block_size=8, n_layer=2, n_head=2, n_embd=16)
    mine = gpt.GPT(cfg, block=_block("right"))
    assert all(type(b).__name__ == "Mine" for b in mine.blocks)
    assert list(mine.state_dict()) == list(gpt.GPT(cfg).state_dict())


@torch.no_grad()
def _gen(pick="sample", crop="last", position=-1, feed=True, knobs=True, eval_mode=True, restore=True,
         use_generator=True, prompt=True, n_extra=0):
    def generate(model, idx, n_new, temperature=1.0, top_k=None, generator=None):
        was_training = model.training
        if eval_mode:
            model.eval()
        out, context = idx, idx
        for _ in range(n_new + n_extra):
            window = {"last": context[:, -model.cfg.block_size:], "first": context[:, :model.cfg.block_size],
                      "none": context}[crop]
            logits, _ = model(window)
            probs = gpt.next_token_probs(logits[:, position], *((temperature, top_k) if knobs else (1.0, None)))
            if pick == "argmax":
                token = probs.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(probs, 1, generator=generator if use_generator else None)
            out = torch.cat([out, token], dim=1)
            context = out if feed else context
        if restore:
            model.train(was_training)
        return out if prompt else out[:, idx.size(1):]
    return generate


def _generate_while(model, idx, n_new, temperature=1.0, top_k=None, generator=None):   # correct: a while loop
    was_training = model.training
    model.eval()
    with torch.no_grad():
        while idx.size(1) < idx.size(1) + n_new and n_new > 0:
            logits = model(idx[:, -model.cfg.block_size:])[0][:, -1, :]
            idx = torch.cat((idx, gpt.sample_next(logits, temperature, top_k, generator)), dim=1)
            n_new -= 1
    model.train(was_training)
    return idx


@pytest.mark.parametrize("fn", [gpt.generate, _gen(), _generate_while])
def test_check_generate_accepts_correct_answers(fn, capsys):
    passes(T_.check_generate, fn, capsys)


@pytest.mark.parametrize("fn,hint", [
    (_gen(crop="none"), T_.NO_CROP),
    (_gen(crop="first"), T_.CROP_FIRST),
    (_gen(pick="argmax"), T_.ARGMAX),
    (_gen(use_generator=False), T_.NOT_REPRODUCIBLE),
    (_gen(position=0), T_.FIRST_POSITION),
    (_gen(feed=False), T_.NO_FEEDBACK),
    (_gen(knobs=False), T_.KNOBS_IGNORED),
    (_gen(prompt=False), T_.PROMPT_DROPPED),
    (_gen(n_extra=1), T_.N_NEW_OFF),
    (_gen(eval_mode=False), T_.DROPOUT_WHILE_SAMPLING),
    (_gen(restore=False), T_.MODE_CHANGED),
])
def test_check_generate_names_each_mistake(fn, hint, capsys):
    fails_with(T_.check_generate, fn, capsys, hint)


def test_generate_check_accepts_float64_models(capsys):   # generation returns token ids: float64 is the model's
    passes(T_.check_generate, lambda model, *a: gpt.generate(model.double(), *a), capsys)


# ------------------------------------------------------------------ the GPT's forward (build exercise)

def _gpt(form):
    class Mine(gpt.GPT):
        def forward(self, idx, targets=None):
            B, T = idx.shape
            pos = {"from_one": torch.arange(1, T + 1), "length": torch.arange(self.cfg.block_size)}.get(
                form, torch.arange(T))
            x = self.tok_emb(idx) if form == "no_pos" else self.tok_emb(idx) + self.pos_emb(pos)
            x = x if form == "no_drop" else self.drop(x)
            for block in self.blocks:
                x = block(x)
            logits = self.head(x if form == "no_ln_f" else self.ln_f(x))
            if targets is None:
                return logits, None
            V = logits.size(-1)
            if form == "shifted_again":
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))
            elif form == "against_inputs":
                loss = F.cross_entropy(logits.reshape(-1, V), idx.reshape(-1))
            elif form == "sum":
                loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="sum")
            elif form == "per_sequence":
                loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="sum") / B
            elif form == "reordered":
                loss = F.cross_entropy(logits.transpose(0, 1).reshape(-1, V), targets.reshape(-1))
            elif form == "no_reshape":
                loss = F.cross_entropy(logits, targets)
            elif form == "transpose_right":   # correct: classes on axis 1
                loss = F.cross_entropy(logits.transpose(1, 2), targets)
            else:
                loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
            if form == "flat":
                return logits.view(-1, V), loss
            if form == "no_none":
                return logits
            return logits, loss
    return Mine


class _GPT64(gpt.GPT):   # correct, computing in float64 whatever the model's dtype
    def forward(self, idx, targets=None):
        logits, loss = super().forward(idx, targets)
        return logits.double(), None if loss is None else loss.double()


@pytest.mark.parametrize("cls", [gpt.GPT, _gpt("right"), _gpt("transpose_right")])
def test_check_gpt_accepts_correct_answers(cls, capsys):
    passes(T_.check_GPT, cls, capsys)


def test_check_gpt_accepts_float64_logits(capsys):
    passes(T_.check_GPT, _GPT64, capsys)


@pytest.mark.parametrize("form,hint", [
    ("no_pos", T_.NO_POSITIONS), ("from_one", T_.POSITIONS_FROM_ONE), ("length", T_.POSITIONS_LENGTH),
    ("no_ln_f", T_.NO_FINAL_LN), ("no_drop", T_.NO_EMB_DROPOUT), ("flat", T_.LOGITS_FLAT),
    ("no_none", T_.NOT_LOGITS_AND_LOSS), ("shifted_again", T_.LOSS_SHIFTED_AGAIN),
    ("against_inputs", T_.LOSS_AGAINST_INPUTS), ("sum", T_.LOSS_SUM), ("per_sequence", T_.LOSS_PER_SEQUENCE),
    ("reordered", T_.LOSS_REORDERED), ("no_reshape", T_.LOSS_3D),
])
def test_check_gpt_names_each_mistake(form, hint, capsys):
    fails_with(T_.check_GPT, _gpt(form), capsys, hint)


def test_check_gpt_names_a_loss_computed_without_targets(capsys):
    class Always(gpt.GPT):
        def forward(self, idx, targets=None):
            logits, _ = super().forward(idx, idx)
            return super().forward(idx, idx if targets is None else targets)
    fails_with(T_.check_GPT, Always, capsys, T_.LOSS_WITHOUT_TARGETS)


# ------------------------------------------------------------------ batches of training windows (exercise)

def _batch(form):
    def get_batch(data, block_size, batch_size, generator=None):
        high = {"past_end": len(data) - block_size + 1, "anywhere": len(data)}.get(form, len(data) - block_size)
        starts = torch.randint(high, (batch_size,), generator=None if form == "no_generator" else generator)
        y_starts = torch.randint(high, (batch_size,), generator=generator) if form == "two_draws" else starts
        offsets = torch.arange(block_size)
        shift = {"not_shifted": 0, "wrong_way": -1}.get(form, 1)
        x = data[starts[:, None] + offsets]
        y = data[y_starts[:, None] + offsets + shift]
        if form == "swapped":
            x, y = y, x
        if form == "transposed":
            return x.T, y.T
        if form == "float":
            return x.float(), y.float()
        if form == "one_thing":
            return torch.stack([x, y])
        return x, y
    return get_batch


def _batch_one_by_one(data, block_size, batch_size, generator=None):   # correct: the same draws, one at a time
    starts = [int(torch.randint(len(data) - block_size, (1,), generator=generator)) for _ in range(batch_size)]
    return (torch.stack([data[s:s + block_size] for s in starts]),
            torch.stack([data[s + 1:s + 1 + block_size] for s in starts]))


def _batch_permuted(data, block_size, batch_size, generator=None):   # distinct starts: other draws
    starts = torch.randperm(len(data) - block_size, generator=generator)[:batch_size].tolist()
    return (torch.stack([data[s:s + block_size] for s in starts]),
            torch.stack([data[s + 1:s + 1 + block_size] for s in starts]))


@pytest.mark.parametrize("fn", [gpt.get_batch, _batch("right"), _batch_one_by_one, in_float64(gpt.get_batch)])
def test_check_get_batch_accepts_correct_answers(fn, capsys):
    passes(T_.check_get_batch, fn, capsys)


@pytest.mark.parametrize("form,hint", [
    ("not_shifted", T_.TARGETS_NOT_SHIFTED), ("wrong_way", T_.TARGETS_WRONG_WAY), ("swapped", T_.TARGETS_WRONG_WAY),
    ("two_draws", T_.TARGETS_OTHER_WINDOW), ("past_end", T_.PAST_END), ("anywhere", T_.PAST_END),
    ("no_generator", T_.IGNORES_GENERATOR), ("transposed", T_.BATCH_TRANSPOSED), ("float", T_.BATCH_DTYPE),
    ("one_thing", T_.NOT_X_AND_Y),
])
def test_check_get_batch_names_each_mistake(form, hint, capsys):
    fails_with(T_.check_get_batch, _batch(form), capsys, hint)


def test_check_get_batch_names_other_draws(capsys):
    fails_with(T_.check_get_batch, _batch_permuted, capsys, T_.OTHER_DRAWS)

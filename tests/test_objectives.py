"""Tests for lesson 08: utils.objectives (bits per dimension, fine-tuning pairs, RL pieces, the explorer)
and its checks."""
import math

import pytest
import torch
from torch.nn import functional as F

from checking import fails_with, in_float64, passes
from utils import gpt
from utils import objectives as O
from utils.checks import objectives as T_
from utils.checks.core import NOT_IMPLEMENTED

PLAY = ("ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me.\n\n"
        "First Citizen:\nWe are accounted poor citizens.\nThe patricians good.\n\n") * 30


# ------------------------------------------------------------------ part 1

def test_bits_per_dim_of_a_uniform_model_is_its_bits():
    d = 16
    nll = torch.full((5,), d * math.log(2))   # a fair coin per dimension: 1 bit each
    assert O.bits_per_dim(nll, d).item() == pytest.approx(1.0)
    assert O.bits_per_dim(nll.double(), d).dtype == torch.float64


def test_bernoulli_classes_give_an_exact_normalised_likelihood():
    x = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.float)
    y = torch.tensor([0, 0, 1, 1])
    model = O.fit_bernoulli_classes(x, y, n_classes=2)
    every = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float)
    assert torch.exp(-model.nll(every)).sum().item() == pytest.approx(1.0, abs=1e-5)  # sums to 1 over all images
    assert model.nll(x).mean() < 3 * math.log(2)                                        # beats a fair coin


def test_autoregressive_pixels_see_only_earlier_pixels_and_normalise():
    torch.manual_seed(0)
    model = O.AutoregressivePixels(3)
    torch.nn.init.normal_(model.weight)
    x = torch.tensor([[1.0, 0.0, 1.0]])
    flipped = x.clone()
    flipped[0, 2] = 0.0
    assert torch.equal(model(x)[0, :3], model(flipped)[0, :3])      # the last pixel changes no logit
    every = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float)
    assert torch.exp(-model.nll(every)).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_vae_bounds_iwae_is_tighter_than_the_elbo():
    from utils.vae import VAE, VAEConfig
    torch.manual_seed(0)
    model = VAE(VAEConfig(image_shape=(1, 4, 4), hidden=8, latent=2))
    x = (torch.rand(6, 16) > 0.5).float()
    elbo, iwae = O.vae_bounds(model, x, samples=64)
    assert elbo.shape == iwae.shape == (6,)
    assert (iwae <= elbo + 1e-4).all() and (iwae > 0).all()


def test_binary_images_threshold():
    x = torch.tensor([[[[0.2, 0.7], [0.5, 0.9]]]])
    assert O.binary_images(x).tolist() == [[0.0, 1.0, 0.0, 1.0]]


# ------------------------------------------------------------------ part 2

def test_dialogue_pairs_from_a_play_and_a_text_without_speakers():
    pairs, kind = O.dialogue_pairs(PLAY, max_len=80, min_pairs=10)
    assert ("ROMEO:\n", "But soft, what light through yonder window breaks?\n") in pairs
    assert ("First Citizen:\n", "We are accounted poor citizens.\n") in pairs
    assert "speaker" in kind and all(len(p) + len(c) <= 80 for p, c in pairs)
    prose = "A first line.\nA second line.\nA third one.\n" * 10
    pairs, kind = O.dialogue_pairs(prose, max_len=80)
    assert pairs[0] == ("A first line.\n", "A second line.\n") and "no speaker dialogue" in kind


def test_pack_pairs_marks_exactly_the_completion():
    tok = gpt.CharTokenizer(PLAY)
    ids, mask = O.pack_pairs([("AB:\n", "hi\n"), ("C:\n", "hello\n")], tok)
    assert ids.shape == mask.shape == (2, 9)
    assert tok.decode(ids[0]) == "AB:\nhi\n\n\n" and tok.decode(ids[0][mask[0]]) == "hi\n"
    assert tok.decode(ids[1][mask[1]]) == "hello\n" and mask.sum().item() == 9


def test_completion_loss_ignores_prompt_and_padding():
    V = 5
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    mask = torch.tensor([[False, False, True, True, False]])
    logits = torch.zeros(1, 5, V)
    logits[0, 1, 2] = logits[0, 2, 3] = 10.0          # confident and right on both completion tokens
    logits[0, 0, 4] = logits[0, 3, 0] = 10.0          # confident and wrong elsewhere: must not count
    assert O.completion_loss(logits, ids, mask).item() < 1e-3


# ------------------------------------------------------------------ part 3

def test_vocabulary_reward_counts_the_share_of_wanted_words():
    r = O.vocabulary_reward(["my love, my sweet heart", "no such words", "", "LOVE love"], words=("love", "sweet", "heart"))
    assert r.tolist() == pytest.approx([0.6, 0.0, 0.0, 1.0])


def test_policy_gradient_gradient_is_minus_advantage_per_token():
    logprobs = torch.full((2, 3), -1.0, requires_grad=True)
    loss = O.policy_gradient_loss(logprobs, torch.tensor([1.0, 0.0]), 0.5)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-0.25] * 3, [0.25] * 3]))


def test_kl_penalty_is_zero_for_equal_and_positive_otherwise():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert O.kl_penalty(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert O.kl_penalty(a, b).item() > 0
    p, q = a.softmax(-1), b.softmax(-1)
    torch.testing.assert_close(O.kl_penalty(a, b), F.kl_div(q.log(), p, reduction="none").sum(-1).mean())


@pytest.fixture(scope="module")
def tiny():
    tok = gpt.CharTokenizer(PLAY)
    torch.manual_seed(0)
    return gpt.GPT(gpt.GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)), tok


def test_sampling_and_logits_line_up(tiny):
    model, tok = tiny
    prompts = torch.tensor([tok.encode("ROMEO:\n")] * 3)
    seq = O.sample(model, prompts, 9, torch.Generator().manual_seed(0))
    assert seq.shape == (3, 16) and torch.equal(seq[:, :7], prompts)
    logits = O.completion_logits(model, seq, 7)
    assert logits.shape == (3, 9, tok.vocab_size) and logits.requires_grad
    full, _ = model(seq)
    torch.testing.assert_close(logits, full[:, 6:15])  # position t predicts token t + 1
    lp = O.token_logprobs(logits, seq[:, 7:])
    assert lp.shape == (3, 9) and (lp <= 0).all()
    assert O.reference_loss(model, seq, 7) == pytest.approx(-lp.mean().item(), rel=1e-5)


def test_cached_sampling_draws_what_generate_draws(tiny):
    model, tok = tiny
    prompts = torch.tensor([tok.encode("\nROMEO:\n"), tok.encode("JULIET:\n")])
    for temperature in (1.0, 0.7):
        fast = O.sample(model, prompts, 9, torch.Generator().manual_seed(3), temperature)
        slow = gpt.generate(model, prompts, 9, temperature=temperature, generator=torch.Generator().manual_seed(3))
        assert torch.equal(fast, slow)
    assert model.training  # left as it was
    with pytest.raises(ValueError, match="do not fit"):
        O.sample(model, prompts, 12)


def test_prompt_batch_pads_on_the_left(tiny):
    _, tok = tiny
    batch = O.prompt_batch(["ROMEO:\n", "All:\n"], tok, 6, torch.Generator().manual_seed(0))
    assert batch.shape == (6, 7)
    assert {tok.decode(row) for row in batch} <= {"ROMEO:\n", "\n\nAll:\n"}


def test_find_pretrained_picks_the_best_usable_model(tmp_path, monkeypatch, tiny):
    import utils.runtime
    model, tok = tiny
    monkeypatch.setattr(utils.runtime, "DATA_DIR", tmp_path)
    assert O.find_pretrained("Tiny Shakespeare", verbose=False) is None
    folder = tmp_path / "models"
    gpt.save_pretrained(model, tok, folder / "gpt_tiny_shakespeare_a_steps2000.pt", corpus="Tiny Shakespeare",
                        val_loss_nats=1.9)
    gpt.save_pretrained(model, tok, folder / "gpt_tiny_shakespeare_b_steps30.pt", corpus="Tiny Shakespeare",
                        val_loss_nats=1.5)
    gpt.save_pretrained(model, tok, folder / "gpt_other_steps2000.pt", corpus="Other", val_loss_nats=1.0)
    (folder / "gpt_tiny_shakespeare_c_steps3000.pt").write_bytes(b"damaged")
    (folder / "gpt_tiny_shakespeare_c_steps3000.json").write_text((folder / "gpt_tiny_shakespeare_a_steps2000.json").read_text().replace("1.9", "1.2"))
    found, found_tok, info = O.find_pretrained("Tiny Shakespeare", min_steps=1000, verbose=False)
    assert info["path"].endswith("a_steps2000.pt") and found_tok.chars == tok.chars
    assert O.find_pretrained("Tiny Shakespeare", verbose=False)[2]["path"].endswith("b_steps30.pt")


def test_distinct_ngrams():
    assert O.distinct_ngrams(["a b c d"], 2) == 1.0
    assert O.distinct_ngrams(["love love love love love"], 2) == pytest.approx(0.25)
    assert O.distinct_ngrams([""], 3) == 0.0


def test_rl_runs_figure_shows_the_nearest_run_and_its_sample():
    runs = {0.0: dict(steps=[0, 10], reward=[0.1, 0.9], kl=[0.0, 2.0], ref_loss=[1.5, 4.0],
                      samples={0: "start", 10: "love love love"}),
            0.2: dict(steps=[0, 10], reward=[0.1, 0.2], kl=[0.0, 0.1], ref_loss=[1.5, 1.6],
                      samples={0: "start", 10: "my gentle love"})}
    for beta, step, text in [(0.0, None, "love love love"), (0.15, 10, "my gentle love"), (1.0, 2, "start")]:
        fig = O.rl_runs_figure(runs, beta, step)
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert text in texts
        thick = [line for line in fig.axes[0].lines if line.get_linewidth() > 2]
        assert len(thick) == 1 and list(thick[0].get_ydata()) == runs[O.nearest_run(runs, beta)[0]]["reward"]
    with pytest.raises(ValueError, match="no saved runs"):
        O.rl_runs_figure({}, 0.1)


# ------------------------------------------------------------------ checks: bits_per_dim

def test_bits_per_dim_check_passes_the_reference(capsys):
    passes(T_.check_bits_per_dim, O.bits_per_dim, capsys)
    passes(T_.check_bits_per_dim, in_float64(O.bits_per_dim), capsys)
    passes(T_.check_bits_per_dim, lambda nll, dims: (nll / dims).mean() / math.log(2), capsys)
    passes(T_.check_bits_per_dim, lambda nll, dims: torch.log2(torch.exp(nll.double() / dims)).mean(), capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda nll, dims: nll.mean() / dims, T_.STILL_NATS),
    (lambda nll, dims: nll.mean() / dims * math.log(2), T_.TIMES_LN2),
    (lambda nll, dims: nll.mean() / math.log(2), T_.PER_EXAMPLE),
    (lambda nll, dims: nll.sum() / (dims * math.log(2)), T_.SUMMED_EXAMPLES),
    (lambda nll, dims: nll / (dims * math.log(2)), T_.NOT_AVERAGED),
])
def test_bits_per_dim_check_names_the_mistake(wrong, hint, capsys):
    fails_with(T_.check_bits_per_dim, wrong, capsys, hint)


# ------------------------------------------------------------------ checks: completion_loss

def _masked_mean(nll, m):
    return (nll * m).sum() / m.sum()


def test_completion_loss_check_passes_correct_answers(capsys):
    passes(T_.check_completion_loss, O.completion_loss, capsys)
    passes(T_.check_completion_loss, in_float64(O.completion_loss), capsys)

    def with_ignore_index(logits, ids, mask):   # another correct answer: -100 targets are ignored
        targets = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1))
    passes(T_.check_completion_loss, with_ignore_index, capsys)


def _ce(logits, targets):
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


@pytest.mark.parametrize("wrong, hint", [
    (lambda logits, ids, mask: _ce(logits[:, :-1], ids[:, 1:]).mean(), T_.COUNTS_PROMPT),
    (lambda logits, ids, mask: _masked_mean(_ce(logits, ids), mask), T_.NO_SHIFT),
    (lambda logits, ids, mask: _masked_mean(_ce(logits[:, :-1], ids[:, 1:]), mask[:, :-1]), T_.MASK_NOT_SHIFTED),
    (lambda logits, ids, mask: _masked_mean(_ce(logits[:, 1:], ids[:, :-1]), mask[:, 1:]), T_.SHIFT_BACKWARDS),
    (lambda logits, ids, mask: ((_ce(logits[:, :-1], ids[:, 1:]) * mask[:, 1:]).sum(1) / mask[:, 1:].sum(1)).mean(),
     T_.PER_SEQUENCE),
    (lambda logits, ids, mask: (_ce(logits[:, :-1], ids[:, 1:]) * mask[:, 1:]).sum(), T_.LOSS_SUMMED),
    (lambda logits, ids, mask: O.completion_loss(logits.detach(), ids, mask), T_.NO_GRAD),
])
def test_completion_loss_check_names_the_mistake(wrong, hint, capsys):
    fails_with(T_.check_completion_loss, wrong, capsys, hint)


# ------------------------------------------------------------------ checks: policy_gradient_loss

def test_policy_gradient_check_passes_correct_answers(capsys):
    passes(T_.check_policy_gradient_loss, O.policy_gradient_loss, capsys)
    passes(T_.check_policy_gradient_loss, in_float64(O.policy_gradient_loss), capsys)
    passes(T_.check_policy_gradient_loss,
           lambda lp, r, b: (lp.sum(1) * (b - r).detach()).sum() / len(r), capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda lp, r, b: ((r - b).detach() * lp.sum(1)).mean(), T_.PG_SIGN),
    (lambda lp, r, b: -(r.detach() * lp.sum(1)).mean(), T_.PG_NO_BASELINE),
    (lambda lp, r, b: -((r - b).detach() * lp.mean(1)).mean(), T_.PG_MEAN_TOKENS),
    (lambda lp, r, b: -((r - b).detach() * lp.sum(1)).sum(), T_.PG_SUM_BATCH),
    (lambda lp, r, b: -((r - b) * lp.sum(1)).mean(), T_.PG_REWARD_GRAD),
    (lambda lp, r, b: -((r - b).detach() * lp.detach().sum(1)).mean(), T_.PG_NO_GRAD),
])
def test_policy_gradient_check_names_the_mistake(wrong, hint, capsys):
    fails_with(T_.check_policy_gradient_loss, wrong, capsys, hint)


# ------------------------------------------------------------------ checks: kl_penalty

def test_kl_penalty_check_passes_correct_answers(capsys):
    passes(T_.check_kl_penalty, O.kl_penalty, capsys)
    passes(T_.check_kl_penalty, in_float64(O.kl_penalty), capsys)
    passes(T_.check_kl_penalty, lambda lg, ref: F.kl_div(ref.log_softmax(-1), lg.log_softmax(-1),
                                                         log_target=True, reduction="none").sum(-1).mean(), capsys)


def _kl(p_logits, q_logits):
    log_p, log_q = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return log_p.exp() * (log_p - log_q)


@pytest.mark.parametrize("wrong, hint", [
    (lambda lg, ref: _kl(ref, lg).sum(-1).mean(), T_.KL_DIRECTION),
    (lambda lg, ref: _kl(lg, ref).sum(), T_.KL_SUMMED),
    (lambda lg, ref: _kl(lg, ref).mean(), T_.KL_MEAN_VOCAB),
    (lambda lg, ref: (lg.softmax(-1) * (lg - ref)).sum(-1).mean(), T_.KL_RAW_LOGITS),
    (lambda lg, ref: (lg.log_softmax(-1) - ref.log_softmax(-1)).sum(-1).mean(), T_.KL_NEGATIVE),
    (lambda lg, ref: O.kl_penalty(lg, ref).detach(), T_.NO_GRAD),
])
def test_kl_penalty_check_names_the_mistake(wrong, hint, capsys):
    fails_with(T_.check_kl_penalty, wrong, capsys, hint)


def test_checks_report_an_unanswered_exercise(capsys):
    def stub(*args):
        raise NotImplementedError()
    for check in (T_.check_bits_per_dim, T_.check_completion_loss, T_.check_policy_gradient_loss, T_.check_kl_penalty):
        assert not check(stub)
        assert NOT_IMPLEMENTED in capsys.readouterr().out

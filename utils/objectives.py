"""Lesson 08 (how generative models are trained): likelihoods in bits, fine-tuning, RL from a reward.

Three parts, each with its reference answers:
- maximum likelihood on one axis: ``bits_per_dim``; three binary-image models whose log-likelihood we can
  compute exactly or bound (a class-conditional Bernoulli model, an autoregressive pixel model, a VAE with
  its ELBO and importance-weighted bound);
- supervised fine-tuning: prompt -> completion pairs (``dialogue_pairs``, ``pack_pairs``) and the loss on the
  completion tokens only (``completion_loss``);
- reinforcement learning from a reward: a rule anyone can read (``vocabulary_reward``), sampling with
  log-probabilities (``sample``, ``token_logprobs``), ``policy_gradient_loss``, the per-token ``kl_penalty`` to
  the frozen reference, measures of degeneration (``reference_loss``, ``distinct_ngrams``) and the explorer over
  saved runs (``rl_runs_figure``).

Conventions: a sequence ``seq`` (B, P + N) is a prompt of P tokens followed by N generated ones; the logits of
position t predict token t + 1, so the N generated tokens are predicted by positions P - 1 ... P + N - 2.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import gpt

# --------------------------------------------------------------------------- part 1: bits per dimension


def bits_per_dim(nll_nats: torch.Tensor, dims: int) -> torch.Tensor:
    """Mean bits per dimension from per-example negative log-likelihoods summed over dimensions, in nats.

    nll_nats: (B,), each -log p(x) in nats for one example of ``dims`` dimensions. Returns a scalar tensor:
    divide by the number of dimensions and by ln 2 (nats to bits), averaged over the examples.
    """
    return nll_nats.mean() / (dims * math.log(2))


def binary_images(images: torch.Tensor) -> torch.Tensor:
    """Grey images (B, 1, H, W) in [0, 1] -> black-and-white (B, H * W) in {0, 1}, thresholded at 0.5."""
    return (images.flatten(1) > 0.5).float()


@dataclass
class BernoulliClasses:
    """Lesson 01's generative classifier for black-and-white pixels: p(y) and independent p(x_i = 1 | y)."""
    log_prior: torch.Tensor  # (K,)
    probs: torch.Tensor      # (K, D)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) = -log sum_y p(y) p(x | y), exactly, in nats: (B,)."""
        log_p, log_not_p = self.probs.log(), (1 - self.probs).log()            # (K, D) each
        log_joint = x @ log_p.T + (1 - x) @ log_not_p.T + self.log_prior      # (B, K): log p(x, y)
        return -torch.logsumexp(log_joint, dim=1)


def fit_bernoulli_classes(x: torch.Tensor, y: torch.Tensor, n_classes: int = 10, smoothing: float = 1.0):
    """Maximum likelihood with add-``smoothing`` counts, so no pixel has probability exactly 0 or 1."""
    counts = torch.bincount(y, minlength=n_classes).float()                   # (K,)
    on = torch.stack([x[y == k].sum(dim=0) for k in range(n_classes)])        # (K, D)
    probs = (on + smoothing) / (counts[:, None] + 2 * smoothing)
    return BernoulliClasses(log_prior=(counts / counts.sum()).log(), probs=probs)


class AutoregressivePixels(nn.Module):
    """p(x) = prod_i p(x_i | x_<i): each pixel's logit is a linear function of the pixels before it.

    GPT's factorisation (next-token prediction, an exact likelihood) with the smallest possible model.
    """

    def __init__(self, dims: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dims, dims))
        self.bias = nn.Parameter(torch.zeros(dims))
        self.register_buffer("mask", torch.tril(torch.ones(dims, dims), diagonal=-1), persistent=False)

    def forward(self, x):                                         # x: (B, D) in {0, 1}
        return x @ (self.weight * self.mask).T + self.bias        # (B, D) logits: pixel i sees pixels j < i

    def nll(self, x):
        return F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(dim=1)  # (B,) nats


@torch.no_grad()
def vae_bounds(model, x: torch.Tensor, samples: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(-ELBO, -IWAE bound) per image in nats, both upper bounds on -log p(x); x: (B, D) in {0, 1}.

    The importance-weighted bound averages ``samples`` codes inside the log, so it is tighter than the ELBO.
    """
    from .vae import reconstruction_nll

    g = torch.Generator().manual_seed(seed)
    images = x.view(len(x), *model.cfg.image_shape)
    mu, logvar = model.encode(images)                                         # (B, Z) each
    std = (0.5 * logvar).exp()
    eps = torch.randn((samples, *mu.shape), generator=g)                      # (S, B, Z)
    z = mu + std * eps
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)           # (S, B)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)      # (S, B)
    log_lik = -torch.stack([reconstruction_nll(model.decode(zs), images) for zs in z])  # (S, B)
    log_w = log_lik + log_prior - log_q                                        # (S, B): log p(x, z) / q(z | x)
    neg_elbo = -log_w.mean(dim=0)                                              # the ELBO: the mean outside the log
    neg_iwae = -(torch.logsumexp(log_w, dim=0) - math.log(samples))            # the mean inside the log
    return neg_elbo, neg_iwae


# --------------------------------------------------------------------------- the pre-trained GPT

def find_pretrained(corpus_name: str, min_steps: int = 0, verbose: bool = True):
    """The best (lowest validation loss) GPT saved under data/models/ for this corpus (by lesson 06, or by
    this lesson), trained for at least ``min_steps`` steps (a fast-mode model is no stand-in for a real one).

    Returns (model, tokenizer, info) or None. The tokenizer is rebuilt from the saved vocabulary, so the
    model reads text exactly as it was trained to.
    """
    from .runtime import DATA_DIR

    found = []
    for meta_file in sorted((Path(DATA_DIR) / "models").glob("gpt_*.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        steps = re.search(r"_steps(\d+)$", meta_file.stem)
        if (meta.get("corpus") == corpus_name and isinstance(meta.get("val_loss_nats"), (int, float))
                and steps and int(steps.group(1)) >= min_steps):
            found.append((meta["val_loss_nats"], meta_file))
    for _, meta_file in sorted(found):
        tok = gpt.CharTokenizer("".join(json.loads(meta_file.read_text())["chars"]))
        loaded = gpt.load_pretrained(meta_file.with_suffix(".pt"), tok, verbose=verbose)
        if loaded is not None:
            return loaded[0], tok, {**loaded[1], "path": str(meta_file.with_suffix(".pt"))}
    return None


# --------------------------------------------------------------------------- part 2: supervised fine-tuning

SPEECH = re.compile(r"^([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)*):\n([^\n]+)$", re.M)  # a speaker, then the speech's first line


def dialogue_pairs(text: str, max_len: int, min_pairs: int = 50) -> tuple[list[tuple[str, str]], str]:
    """Prompt -> completion pairs and a sentence saying what they are.

    From a play: "NAME:\\n" -> the first line that speaker says ("...\\n"). A text without speaker dialogue
    (fewer than ``min_pairs`` speeches) gives each line -> the line that follows it instead. Pairs longer than
    ``max_len`` characters in all are left out.
    """
    pairs = [(f"{name}:\n", f"{line}\n") for name, line in SPEECH.findall(text)]
    kind = "speaker name -> that speaker's first line"
    if len(pairs) < min_pairs:
        lines = [line for line in text.splitlines() if line.strip()]
        pairs = [(f"{a}\n", f"{b}\n") for a, b in zip(lines, lines[1:])]
        kind = ("this corpus has no speaker dialogue, so each pair is one line -> the line after it "
                "(a weaker task than a speaker's style)")
    return [(p, c) for p, c in pairs if len(p) + len(c) <= max_len], kind


def pack_pairs(pairs, tok: gpt.CharTokenizer, pad: str = "\n") -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T): each prompt followed by its completion, padded at the end; completion_mask (B, T) is True
    exactly on the completion's tokens (not on the prompt, not on the padding)."""
    encoded = [(tok.encode(p, skip_unknown=True), tok.encode(c, skip_unknown=True)) for p, c in pairs]
    T = max(len(p) + len(c) for p, c in encoded)
    ids = torch.full((len(encoded), T), tok.stoi.get(pad, 0), dtype=torch.long)
    mask = torch.zeros(len(encoded), T, dtype=torch.bool)
    for i, (p, c) in enumerate(encoded):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p):len(p) + len(c)] = True
    return ids, mask


def completion_loss(logits: torch.Tensor, ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over the completion tokens of the batch, a scalar.

    logits: (B, T, V) from model(ids), position t predicting token t + 1; ids: (B, T); completion_mask: (B, T)
    bool, True on the tokens to learn. Each completion token counts once, whichever sequence it is in.
    """
    targets, learn = ids[:, 1:], completion_mask[:, 1:]                     # (B, T - 1): what position t predicts
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")   # (B, T - 1)
    return (nll * learn).sum() / learn.sum()


@torch.no_grad()
def mean_completion_loss(model, ids, mask, batch_size: int = 256, loss_fn=completion_loss) -> float:
    """completion_loss over many pairs, weighting every completion token the same (eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        x, m = ids[i:i + batch_size], mask[i:i + batch_size]
        n = m[:, 1:].sum().item()
        total += loss_fn(model(x)[0], x, m).item() * n
        count += n
    model.train(was_training)
    return total / count


# --------------------------------------------------------------------------- part 3: RL from a reward

LOVE_WORDS = ("love", "sweet", "dear", "heart", "fair", "gentle", "kind", "joy", "kiss", "happy", "good")


def vocabulary_reward(texts, words=LOVE_WORDS) -> torch.Tensor:
    """The share of a text's words that are in ``words`` (case ignored): (B,) in [0, 1]; 0 for no words."""
    wanted = {w.lower() for w in words}
    rewards = []
    for text in texts:
        found = re.findall(r"[a-z']+", text.lower())
        rewards.append(sum(w.strip("'") in wanted for w in found) / len(found) if found else 0.0)
    return torch.tensor(rewards)


def prompt_batch(prompts: list[str], tok: gpt.CharTokenizer, n: int, generator=None) -> torch.Tensor:
    """n prompts drawn at random from ``prompts``, padded on the left with newlines to one length: (n, P)."""
    chosen = [prompts[i] for i in torch.randint(len(prompts), (n,), generator=generator).tolist()]
    width = max(len(p) for p in prompts)
    return torch.tensor([tok.encode(p.rjust(width, "\n"), skip_unknown=True) for p in chosen])


@torch.no_grad()
def sample(model: gpt.GPT, prompts: torch.Tensor, n_new: int, generator=None, temperature: float = 1.0):
    """prompts (B, P) -> sequences (B, P + n_new), sampled at ``temperature``, a batch at once.

    The same draws as ``gpt.generate``, faster: the keys and values of earlier positions are kept (a "KV
    cache"), so each new token runs through the model alone instead of re-reading the whole sequence.
    """
    B, P = prompts.shape
    cfg = model.cfg
    if P + n_new - 1 > cfg.block_size:
        raise ValueError(f"A prompt of {P} tokens and {n_new} new ones do not fit the model's context of "
                         f"{cfg.block_size}: ask for at most {cfg.block_size - P + 1} new tokens.")
    was_training = model.training
    model.eval()
    hs = cfg.n_embd // cfg.n_head
    cache = [None] * len(model.blocks)                               # per layer: keys, values (B, nh, t, hs)
    seq, ids, start = prompts, prompts, 0
    for _ in range(n_new):
        T = ids.size(1)
        x = model.tok_emb(ids) + model.pos_emb(torch.arange(start, start + T, device=ids.device))  # (B, T, C)
        for i, block in enumerate(model.blocks):
            q, k, v = block.attn.qkv(block.ln1(x)).split(cfg.n_embd, dim=2)                     # (B, T, C) each
            q, k, v = (t.view(B, T, cfg.n_head, hs).transpose(1, 2) for t in (q, k, v))         # (B, nh, T, hs)
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], dim=2), torch.cat([cache[i][1], v], dim=2)
            cache[i] = (k, v)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=start == 0)  # a new token sees all the past
            x = x + block.attn.proj(y.transpose(1, 2).reshape(B, T, cfg.n_embd))
            x = x + block.mlp(block.ln2(x))
        logits = model.head(model.ln_f(x[:, -1]))                                               # (B, V)
        ids = gpt.sample_next(logits, temperature, None, generator)                             # (B, 1)
        seq, start = torch.cat([seq, ids], dim=1), start + T
    model.train(was_training)
    return seq


def completion_logits(model: gpt.GPT, seq: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """The logits (B, N, V) that predicted the N generated tokens of ``seq`` (B, P + N), with gradients."""
    logits, _ = model(seq[:, -model.cfg.block_size - 1:-1])     # position t predicts token t + 1
    return logits[:, -(seq.size(1) - n_prompt):]


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under the logits: logits (B, N, V), tokens (B, N) -> (B, N)."""
    return logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)


def policy_gradient_loss(logprobs: torch.Tensor, rewards: torch.Tensor, baseline) -> torch.Tensor:
    """REINFORCE with a baseline, a scalar to minimise.

    logprobs: (B, N) log-probabilities of the sampled tokens (carrying gradients); rewards: (B,) one per
    sequence; baseline: a number or (B,). A sequence's log-probability is the sum over its tokens; the
    advantage (reward - baseline) is a constant weight, so no gradient flows into the rewards.
    """
    advantage = (rewards - baseline).detach()                  # (B,)
    return -(advantage * logprobs.sum(dim=1)).mean()


def kl_penalty(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(policy || reference) at every position, averaged over the positions: a scalar.

    logits, ref_logits: (B, N, V). At each position KL = sum_v p(v) (log p(v) - log q(v)) with p the policy
    and q the frozen reference, summed over the vocabulary, then the mean over all B * N positions.
    """
    log_p, log_q = logits.log_softmax(-1), ref_logits.log_softmax(-1)   # (B, N, V)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


@torch.no_grad()
def reference_loss(ref_model: gpt.GPT, seq: torch.Tensor, n_prompt: int) -> float:
    """The frozen reference's mean loss (nats/char) on the generated part of ``seq``: how unlike the
    pre-training text the samples have become."""
    logits = completion_logits(ref_model, seq, n_prompt)
    return -token_logprobs(logits, seq[:, n_prompt:]).mean().item()


def distinct_ngrams(texts, n: int = 3) -> float:
    """Distinct word n-grams over all n-grams in ``texts`` (1 = no repeats, near 0 = the same words over and
    over); 0 when there are none."""
    grams = []
    for text in texts:
        words = re.findall(r"[a-z']+", text.lower())
        grams += [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def nearest_run(runs: dict, beta: float):
    """The saved run whose KL coefficient is closest to ``beta``: (its beta, the run)."""
    if not runs:
        raise ValueError("There are no saved runs to show: train at least one first.")
    key = min(runs, key=lambda b: abs(float(b) - beta))
    return key, runs[key]


def rl_runs_figure(runs: dict, beta: float, step: int | None = None):
    """Explorer over saved RL runs. ``runs``: {beta: {"steps", "reward", "kl", "ref_loss": lists,
    "samples": {step: text}}}. Left: reward and KL against steps for the run nearest ``beta`` (the others
    faint); right: that run's sample at the saved step nearest ``step`` (the last one by default)."""
    from matplotlib.figure import Figure

    chosen, run = nearest_run(runs, beta)
    fig = Figure(figsize=(11, 3.6))
    ax_r, ax_kl, ax_t = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.5]})
    for b, r in sorted(runs.items(), key=lambda kv: float(kv[0])):
        style = dict(lw=2.2, alpha=1.0) if b == chosen else dict(lw=1, alpha=0.3)
        ax_r.plot(r["steps"], r["reward"], label=f"beta {float(b):g}", **style)
        ax_kl.plot(r["steps"], r["kl"], **style)
    ax_r.set(xlabel="RL step", ylabel="mean reward", title="reward")
    ax_kl.set(xlabel="RL step", ylabel="KL to the reference (nats/token)", title="KL")
    ax_r.legend(fontsize=7)
    for ax in (ax_r, ax_kl):
        ax.grid(alpha=0.3)
    saved = sorted(int(s) for s in run["samples"])
    at = saved[-1] if step is None else min(saved, key=lambda s: abs(s - step))
    ax_t.axis("off")
    ax_t.set_title(f"beta {float(chosen):g}, sample at step {at}", fontsize=9)
    ax_t.text(0, 1, run["samples"][at] if at in run["samples"] else run["samples"][str(at)],
              family="monospace", fontsize=8, va="top", ha="left", transform=ax_t.transAxes, wrap=True)
    fig.tight_layout()
    return fig

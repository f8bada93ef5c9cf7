"""Lesson 06: a character-level GPT and its pieces, written to be read.

Tokens (CharTokenizer, split, a counting bigram baseline), attention by hand (attention,
causal_mask), the GPT itself (GPTConfig, CausalSelfAttention, Block, GPT: about 100 lines),
training helpers (get_batch, estimate_loss, lr_at, steps_to_reach, bits_per_char, perplexity), the
pre-trained model's file (save_pretrained, load_pretrained), sampling (next_token_probs, sample_next,
generate), the fine-tuning corpus (load_python_source) and the widget explorers
(sampling_figure, attention_figure).
"""
from __future__ import annotations

import inspect
import json
import math
import string
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .data import TextCorpus


# --------------------------------------------------------------------------- tokens

class CharTokenizer:
    """One token per character. The vocabulary is every character of the texts it is built from."""

    def __init__(self, *texts: str):
        self.chars = sorted(set().union(*map(set, texts)))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, skip_unknown: bool = False) -> list[int]:
        if skip_unknown:
            return [self.stoi[ch] for ch in text if ch in self.stoi]
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"These characters are not in the vocabulary: {''.join(unknown)!r}.")
        return [self.stoi[ch] for ch in text]

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.chars[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer({self.vocab_size} characters: {''.join(self.chars)!r})"


def split(ids: torch.Tensor, train_fraction: float = 0.9):
    """The first 90% for training, the rest for validation (a contiguous split, as nanoGPT does)."""
    n = int(train_fraction * len(ids))
    return ids[:n], ids[n:]


def bigram_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """counts[a, b] = how often character b follows character a. Shape (V, V)."""
    pairs = ids[:-1] * vocab_size + ids[1:]
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size).float()


def bigram_loss(counts: torch.Tensor, ids: torch.Tensor, alpha: float = 1.0) -> float:
    """Mean -log p(next | previous) in nats/char, with add-alpha smoothing of the counts."""
    probs = (counts + alpha) / (counts + alpha).sum(dim=1, keepdim=True)  # (V, V), rows sum to 1
    return -probs[ids[:-1], ids[1:]].log().mean().item()


# --------------------------------------------------------------------------- attention by hand

def attention(q, k, v, mask=None):
    """Scaled dot-product attention: softmax(q k^T / sqrt(d_k)) v.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v); mask: bool, True where a query may
    look at a key, broadcastable to (..., T_q, T_k). Returns (output (..., T_q, d_v), weights (..., T_q, T_k)).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))     # before the softmax
    weights = scores.softmax(dim=-1)                          # each query's weights sum to 1
    return weights @ v, weights


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(T, T) bool: True where query i may look at key j, that is j <= i (itself and the past)."""
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))


# --------------------------------------------------------------------------- the GPT

@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64      # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False        # biases in Linear and LayerNorm layers
    tie_weights: bool = True  # the output layer reuses the token embedding matrix


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # all heads' q, k, v at once
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("mask", causal_mask(cfg.block_size), persistent=False)
        self.keep_weights = False  # True: use the hand-written attention() and keep its weights for plots
        self.weights = None        # (B, n_head, T, T) after a forward pass with keep_weights

    def forward(self, x):                                             # x: (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                         # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.keep_weights:
            y, self.weights = attention(q, k, v, self.mask[:T, :T])  # (B, nh, T, hs), (B, nh, T, T)
        else:  # the same maths in one fused, faster call
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)                        # heads side by side: (B, T, C)
        return self.drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):                                    # x: (B, T, C), each position on its own
        return self.drop(self.proj(self.gelu(self.fc(x))))  # (B, T, 4C) inside, (B, T, C) out


class Block(nn.Module):
    """Pre-LayerNorm transformer block: communicate (attention), then compute (MLP), both residual."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):                  # x: (B, T, C)
        x = x + self.attn(self.ln1(x))     # tokens look at earlier tokens
        x = x + self.mlp(self.ln2(x))      # each token thinks on its own
        return x                           # (B, T, C)


class GPT(nn.Module):
    """``block`` is the class of its transformer blocks: another implementation of Block with the same
    layer names (the lesson's own) gives the same parameters and the same saved-weight format."""

    def __init__(self, cfg: GPTConfig, block: type[nn.Module] = Block):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # what each character is
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)  # where it stands (learned)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight  # one (V, C) matrix reads and writes characters
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: smaller init for layers that add to the residual
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):                      # idx: (B, T) token ids
        B, T = idx.shape
        assert T <= self.cfg.block_size, f"context {T} is longer than block_size {self.cfg.block_size}"
        pos = torch.arange(T, device=idx.device)               # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))   # (B, T, C)
        for block in self.blocks:
            x = block(x)                                       # (B, T, C)
        logits = self.head(self.ln_f(x))                       # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))  # nats per character
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a tied matrix is counted once


def param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups as in nanoGPT: weight decay on the matrices (embeddings included), none on gains and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


# --------------------------------------------------------------------------- training helpers

def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator=None):
    """batch_size random windows: inputs x (B, T) and the same windows shifted by one, targets y (B, T)."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts.tolist()])
    y = torch.stack([data[s + 1:s + 1 + block_size] for s in starts.tolist()])
    return x, y


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, block_size: int | None = None,
                  batch_size: int = 64, windows: int | None = None, seed: int = 0) -> float:
    """Mean loss (nats/char) on ``data``, deterministic.

    ``windows`` None: all of it, in consecutive non-overlapping windows. ``windows`` n: n windows whose
    starts are drawn at random across the whole of ``data`` (the same n for a given seed), a cheaper
    estimate of the same number. Like nanoGPT, every position of a window counts (contexts 1 to T).
    """
    block_size = block_size or model.cfg.block_size
    if windows:
        starts = torch.randint(len(data) - block_size, (windows,), generator=torch.Generator().manual_seed(seed))
    else:
        starts = torch.arange(0, (len(data) - 1) // block_size * block_size, block_size)
    offsets = torch.arange(block_size)
    device = next(model.parameters()).device
    x = data[starts[:, None] + offsets].to(device)      # (n, T)
    y = data[starts[:, None] + offsets + 1].to(device)  # (n, T)
    n = len(starts)
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, n, batch_size):
        _, loss = model(x[i:i + batch_size], y[i:i + batch_size])
        total += loss.item() * len(x[i:i + batch_size])
    model.train(was_training)
    return total / n


def lr_at(progress: float, lr: float, min_lr: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of training, then cosine decay to ``min_lr``.

    ``progress`` runs from 0 to 1 (iterations done / iterations planned, or seconds used / seconds allowed).
    """
    if progress < warmup:
        return lr * (progress + 1e-9) / warmup
    ratio = min(1.0, (progress - warmup) / max(1e-9, 1 - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)


def steps_to_reach(steps, losses, target: float) -> float | None:
    """The first step at which a loss curve reaches ``target``, interpolated linearly between its points.

    None when it never does. ``steps`` and ``losses`` are the curve's points, in order.
    """
    prev_step, prev_loss = 0, float("inf")
    for step, loss in zip(steps, losses):
        if loss <= target:
            if not math.isfinite(prev_loss):
                return float(step)
            return prev_step + (step - prev_step) * (prev_loss - target) / (prev_loss - loss)
        prev_step, prev_loss = step, loss
    return None


def bits_per_char(nats: float) -> float:
    """A loss in nats per character in bits per character: divide by ln 2."""
    return nats / math.log(2)


def perplexity(nats: float) -> float:
    """exp(loss): the number of equally likely characters the model is, on average, choosing between."""
    return math.exp(nats)


# --------------------------------------------------------------------------- the pre-trained model's file

def pretrained_path(corpus_name: str, cfg: GPTConfig, iters: int) -> Path:
    """Where lesson 06 keeps its pre-trained GPT under ``data/models/``: one file per corpus, size and budget."""
    from .runtime import DATA_DIR

    slug = "".join(ch if ch.isalnum() else "_" for ch in corpus_name.lower()).strip("_")
    size = f"L{cfg.n_layer}_H{cfg.n_head}_C{cfg.n_embd}_T{cfg.block_size}"
    return Path(DATA_DIR) / "models" / f"gpt_{slug}_{size}_steps{iters}.pt"


def save_pretrained(model: GPT, tok: CharTokenizer, path, overwrite: bool = False, **info) -> bool:
    """Weights to ``path`` (a state dict, for torch.load(weights_only=True)) and, beside it as ``.json``,
    the config, the vocabulary and ``info`` (for example the corpus and the validation loss).

    Written once: a file that already loads with the same config, vocabulary and ``info`` is kept (returns
    False); a missing, damaged or mismatched one is (re)written (returns True).
    """
    path = Path(path)
    if not overwrite:
        found = load_pretrained(path, tok, verbose=False)
        if found is not None and found[0].cfg == model.cfg and found[1] == json.loads(json.dumps(info)):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta = {"config": asdict(model.cfg), "chars": tok.chars, **info}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return True


def load_pretrained(path, tok: CharTokenizer | None = None, device="cpu", verbose: bool = True):
    """(model, info) from save_pretrained's files, or None, with one sentence, when they are missing,
    damaged, or made for another vocabulary than ``tok``'s."""
    path = Path(path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        if tok is not None and meta["chars"] != tok.chars:
            raise ValueError("it was trained with another vocabulary")
        model = GPT(GPTConfig(**meta["config"])).to(device)
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except Exception as exc:  # missing, damaged, or from another version: the caller trains afresh
        if verbose:
            print(f"No usable pre-trained GPT at {path} ({exc.__class__.__name__}: {exc}).")
        return None
    info = {k: v for k, v in meta.items() if k not in ("config", "chars")}
    return model, info


# --------------------------------------------------------------------------- sampling

def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """logits (B, V) -> probabilities (B, V): divide by the temperature, keep the top_k largest, softmax.

    top_k: keep the top_k largest logits of each row (the others get probability 0); None or 0 means
    off, every token kept, and a top_k of V or more keeps every token too. temperature 0 means greedy
    (all mass on the largest logit). The logits passed in are never changed.
    """
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(dim=-1)


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None, generator=None):
    """One token id per row of logits (B, V) -> (B, 1)."""
    probs = next_token_probs(logits, temperature, top_k)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, n_new: int, temperature: float = 1.0, top_k: int | None = None,
             generator=None) -> torch.Tensor:
    """Extend idx (B, T) by n_new tokens, one at a time, feeding each prediction back in."""
    was_training = model.training
    model.eval()
    for _ in range(n_new):
        context = idx[:, -model.cfg.block_size:]               # the model sees at most block_size tokens
        logits, _ = model(context)                             # (B, T, V)
        idx = torch.cat([idx, sample_next(logits[:, -1], temperature, top_k, generator)], dim=1)
    model.train(was_training)
    return idx


def complete(model: GPT, tok: CharTokenizer, prompt: str, n_new: int = 200, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0) -> str:
    """The prompt plus n_new sampled characters, reproducible for a given seed."""
    ids = tok.encode(prompt, skip_unknown=True) or [tok.stoi.get("\n", 0)]
    device = next(model.parameters()).device
    out = generate(model, torch.tensor([ids], device=device), n_new, temperature, top_k,
                   torch.Generator(device=device).manual_seed(seed))
    return tok.decode(out[0])


# --------------------------------------------------------------------------- the fine-tuning corpus

PYTHON_MODULES = ("textwrap", "fractions", "heapq", "bisect", "colorsys", "shlex", "statistics",
                  "calendar", "fnmatch", "glob", "numbers", "queue", "graphlib", "string")


def load_python_source(max_chars: int = 200_000, modules=PYTHON_MODULES, verbose: bool = True) -> TextCorpus:
    """Source code of some of Python's own pure-Python modules (it ships with every Python).

    Tabs become spaces and characters outside printable ASCII are dropped, so the text is plain code.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    allowed = set(string.printable) - set("\t\r\x0b\x0c")
    parts, used = [], []
    for name in modules:
        path = stdlib / f"{name}.py"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:  # no source file on disk (a frozen or zipped standard library): ask inspect
            try:
                text = inspect.getsource(__import__(name))
            except (OSError, TypeError, ImportError):
                continue
        parts.append("".join(ch for ch in text.expandtabs(4) if ch in allowed))
        used.append(name)
    if not parts:
        raise RuntimeError("No Python source files were found in this installation.")
    text = "\n".join(parts)[:max_chars]
    if verbose:
        print(f"Fine-tuning corpus: the source of {len(used)} standard-library modules "
              f"({', '.join(used)}), {len(text):,} characters.")
    return TextCorpus(text, "Python source", f"{stdlib} ({', '.join(used)})")


# --------------------------------------------------------------------------- explorers for the widgets

def sampling_figure(model: GPT, tok: CharTokenizer, prompt: str = "ROMEO:", temperature: float = 1.0,
                    top_k: int = 0, n_new: int = 240, seed: int = 0, show: int = 20):
    """Top: the next-character distribution after the prompt at this temperature and top-k.
    Bottom: a sampled continuation. Returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    ids = tok.encode(prompt, skip_unknown=True) or [tok.stoi.get("\n", 0)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[-model.cfg.block_size:]], device=device))
    model.train(was_training)
    probs = next_token_probs(logits[:, -1].float().cpu(), temperature, top_k or None)[0]  # (V,)
    top = probs.topk(min(show, len(probs)))
    text = complete(model, tok, prompt, n_new, temperature, top_k or None, seed)

    fig = Figure(figsize=(9, 6.2))
    ax, ax_text = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 2.1]})
    labels = [repr(tok.chars[i])[1:-1] or " " for i in top.indices.tolist()]
    ax.bar(range(len(labels)), top.values.numpy(), color="tab:blue")
    ax.set_xticks(range(len(labels)), [f"'{s}'" for s in labels], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="p(next char)",
           title=f"after {prompt[-20:]!r}: temperature {temperature:g}, top-k {top_k or 'off'}")
    ax_text.axis("off")
    lines = [line[i:i + 95] for line in text.splitlines() for i in range(0, max(len(line), 1), 95)]
    wrapped = "\n".join(lines[:18])
    ax_text.text(0, 1, wrapped, family="monospace", fontsize=8.5, va="top", ha="left",
                 transform=ax_text.transAxes)
    fig.tight_layout()
    return fig


def attention_weights(model: GPT, tok: CharTokenizer, prompt: str) -> torch.Tensor:
    """Attention weights for the prompt: (n_layer, n_head, T, T), using the hand-written attention."""
    ids = tok.encode(prompt, skip_unknown=True)[-model.cfg.block_size:] or [0]
    device = next(model.parameters()).device
    layers = [b.attn for b in model.blocks]
    was_training = model.training
    model.eval()
    try:
        for a in layers:
            a.keep_weights = True
        with torch.no_grad():
            model(torch.tensor([ids], device=device))
        return torch.stack([a.weights[0].cpu() for a in layers])
    finally:
        for a in layers:
            a.keep_weights, a.weights = False, None
        model.train(was_training)


def attention_figure(model: GPT, tok: CharTokenizer, prompt: str = "To be, or not to be", layer: int = 0,
                     head: int = 0):
    """Heat map of one head's attention: row i shows where character i looks (columns j <= i)."""
    from matplotlib.figure import Figure

    if not 0 <= layer < model.cfg.n_layer or not 0 <= head < model.cfg.n_head:
        raise ValueError(f"layer must be in 0..{model.cfg.n_layer - 1} and head in 0..{model.cfg.n_head - 1}.")
    w = attention_weights(model, tok, prompt)[layer, head]  # (T, T)
    chars = [{"\n": "\\n", " ": "\u00b7"}.get(c, c) for c in tok.decode(tok.encode(prompt, skip_unknown=True)[-model.cfg.block_size:])]
    size = min(9.0, 2.5 + 0.22 * len(chars))
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    im = ax.imshow(w.numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(chars)), chars, fontsize=8, family="monospace")
    ax.set_yticks(range(len(chars)), chars, fontsize=8, family="monospace")
    ax.set(xlabel="key (looked at)", ylabel="query (looking)", title=f"layer {layer}, head {head}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    return fig

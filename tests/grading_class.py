"""Generated student submissions for the grader's tests, and a whole class for trying the grader.

``python tests/grading_class.py OUT [--size 30]`` writes a class of correct, wrong, blank and broken
notebooks into OUT; then ``python -m course grade OUT`` grades it.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from course import config  # noqa: E402
from course.lesson import replace_regions  # noqa: E402
from course.notebook import source_text  # noqa: E402

# One typical mistake per exercise: the body a student might write instead of the answer.
WRONG = {
    "bits_per_dim": "return nll_nats.mean() / dims",
    "completion_loss": "nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction='none')\n"
                       "return nll.mean()",
    "policy_gradient_loss": "return ((rewards - baseline).detach() * logprobs.sum(dim=1)).mean()",
    "kl_penalty": "log_p, log_q = logits.log_softmax(-1), ref_logits.log_softmax(-1)\n"
                  "return (log_q.exp() * (log_q - log_p)).sum(-1).mean()",
    "fit_diagonal_gaussians": "x = x.flatten(1)\n"
                              "means = torch.stack([x[y == k].mean(0) for k in range(n_classes)])\n"
                              "variances = torch.stack([x[y == k].var(0, unbiased=False) for k in range(n_classes)])\n"
                              "counts = torch.bincount(y, minlength=n_classes).float()\n"
                              "return generative.DiagonalGaussians(means, variances, torch.log(counts / counts.sum()))",
    "gaussian_log_density": "return -(torch.log(2 * math.pi * var) + (x - mean) ** 2 / var).sum(dim=-1)",
    "log_posterior": "return log_likelihood + log_prior",
    "classify": "return model.log_likelihood(x).argmax(dim=1)",
    "sample_low_rank_gaussian": "z = torch.randn(n, components.shape[1], generator=generator)\n"
                                "return mean + z @ components.T",
    "reconstruction_loss": "return (x_hat - x).pow(2).mean()",
    "add_noise": "return x + noise_level * torch.randn_like(x)",
    "anomaly_score": "with torch.no_grad():\n    x_hat = model(x)\nreturn (x_hat - x).pow(2).mean(dim=0).sum()",
    "Autoencoder": ("solution", "solution", "solution", "return self.decode(self.encode(x))"),  # no sigmoid in forward
    "train_autoencoder": "inputs = clean if corrupt is None else corrupt(clean)\n"
                         "loss = reconstruction_loss(model(inputs), clean)\nloss.backward()\nopt.step()",
    "reparameterize": "return mu + logvar * torch.randn_like(mu)",
    "kl_divergence": "return -0.5 * (1 + logvar - mu.pow(2) - (0.5 * logvar).exp()).sum(dim=1)",
    "elbo_loss": "return F.binary_cross_entropy_with_logits(logits, x, reduction='none').flatten(1).sum(dim=1).mean()",
    "VAE": ("self.encoder = MLPEncoder(cfg.image_shape, (cfg.hidden,), 2 * cfg.latent)\n"
            "self.decoder = MLPDecoder(cfg.latent, (cfg.hidden,), cfg.image_shape)",
            "mu, logvar = self.encoder(x).chunk(2, dim=-1)\nreturn mu, logvar",
            "return self.decoder(z)",
            "mu, logvar = self.encode(x)\nreturn self.decode(mu), mu, logvar"),
    "vae_step": "logits, mu, logvar = model(x)\nloss = elbo_loss(logits, x, mu, logvar, beta)\nloss.backward()\n"
                "opt.step()\nreturn loss.item()",
    "d_loss": "return (F.binary_cross_entropy_with_logits(real_logits, torch.zeros_like(real_logits))\n"
              "        + F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits)))",
    "g_loss": "return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
    "gan_step": "fake = G(z)\nreal_logits, fake_logits = D(real), D(fake.detach())\nloss_d = d_loss(real_logits, fake_logits)\n"
                "opt_d.zero_grad()\nloss_d.backward()\nopt_d.step()\nloss_g = g_loss(D(fake.detach()))",
    "condition_on_label": "return h + embedding(y)[:, : h.shape[1]]",
    "ConvGenerator": ("solution",                    # __init__ right; forward ends in tanh: pixels in [-1, 1]
                      "if self.embed is not None:\n    z = condition_on_label(z, y, self.embed)\n"
                      "return torch.tanh(self.up(self.project(z).view(-1, 2 * c, s, s)))"),
    "ConvDiscriminator": ("solution",                # __init__ right; forward returns probabilities
                          "h = self.features(2 * x - 1)\nlogit = self.out(h).squeeze(1)\n"
                          "if self.embed is not None:\n    logit = logit + (self.embed(y) * h).sum(dim=1)\n"
                          "return torch.sigmoid(logit)"),
    "q_sample": "alpha_bar = schedule.alpha_bars[t]\nreturn alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise",
    "diffusion_loss": "x_t = q_sample(x0, t, noise, schedule)\nreturn F.mse_loss(model(x_t, t, y), x0)",
    "p_sample": "beta, alpha, alpha_bar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]\n"
                "mean = (x - beta / (1 - alpha_bar).sqrt() * eps) / alpha.sqrt()\nreturn mean + beta.sqrt() * noise",
    "guidance": "return eps_cond + w * (eps_uncond - eps_cond)",
    "train_step": "t = torch.randint(0, schedule.T, (len(x0),), device=x0.device)\nnoise = torch.randn_like(x0)\n"
                  "loss = diffusion_loss(model, x0, t, noise, y, schedule)\nloss.backward()\nopt.step()\n"
                  "return loss.detach()",                   # no zero_grad: stale gradients pile up
    "sample_ddim": "ts = torch.linspace(schedule.T - 1, 0, steps).round().long().tolist()\n"
                   "for i, t in enumerate(ts):\n"
                   "    ab = schedule.alpha_bars[t]\n"
                   "    ab_next = schedule.alpha_bars[ts[i + 1]] if i + 1 < len(ts) else torch.ones_like(ab)\n"
                   "    eps = predict_eps(model, x, t, y, w)\n"
                   "    x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()\n"
                   "    x = ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps\n"
                   "return x",                               # no clamp: samples leave [-1, 1]
    "attention": "weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)\nreturn weights @ v, weights",
    "causal_mask": "return torch.triu(torch.ones(T, T, dtype=torch.bool))",
    "next_token_probs": "return (logits * temperature).softmax(dim=-1)",
    "CausalSelfAttention": "q, k, v = self.qkv(x).split(C, dim=2)\n"  # the heads merged without moving them back
                           "q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))\n"
                           "y = F.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
                           "self.weights = None\nreturn self.drop(self.proj(y.reshape(B, T, C)))",
    "Block": ("solution", "x = self.ln1(x + self.attn(x))\nx = self.ln2(x + self.mlp(x))\nreturn x"),  # post-norm
    "GPT": "x = self.drop(self.tok_emb(idx))\n"  # no position embeddings
           "for block in self.blocks:\n    x = block(x)\n"
           "logits = self.head(self.ln_f(x))\n"
           "if targets is None:\n    return logits, None\n"
           "return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))",
    "get_batch": "starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)\n"
                 "x = torch.stack([data[s:s + block_size] for s in starts.tolist()])\n"
                 "return x, x",  # targets not shifted
    "generate": "for _ in range(n_new):\n"  # picks the likeliest token instead of drawing one
                "    logits, _ = model(idx[:, -model.cfg.block_size:])\n"
                "    idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)\nreturn idx",
    "detector_step": "logits = model(torch.cat([real, fake]))\n"
                     "targets = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])\n"
                     "loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)\n"
                     "opt.zero_grad()\nloss.backward()\nopt.step()\nreturn loss.item()",
    "detector_auc": "return (fake_scores[:, None] > real_scores[None, :]).double().mean()",
    "skew_ratio": "return torch.bincount(sample_labels, minlength=n_classes) / torch.bincount(train_labels, minlength=n_classes)",
}
SOLVED, BLANK = "solution", "stub"
EXERCISE_DEF = re.compile(r"^(?:def|class) (\w+)\b", re.M)


def lesson_path(lesson: str, folder: Path = config.SOLUTIONS) -> Path:
    return next(folder.glob(f"{lesson}_*.ipynb"))


def solution(lesson: str):
    """The lesson as a student who solved everything hands it in: the answers, no hidden tests."""
    nb = nbformat.read(str(lesson_path(lesson)), as_version=4)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("nbgrader", None)
        if config.BEGIN_HIDDEN in source_text(cell):
            cell.source, _ = replace_regions(source_text(cell), config.BEGIN_HIDDEN, config.END_HIDDEN, None, f"cell {i}")
    return nb


def exercise_of(cell) -> str | None:
    """The exercise an answer cell defines (the cell holds a solution region), else None."""
    text = source_text(cell)
    found = EXERCISE_DEF.search(text)
    return found.group(1) if cell.cell_type == "code" and config.BEGIN_SOLUTION in text and found else None


def answer(nb, answers: dict):
    """``nb`` with each exercise named in ``answers`` answered: SOLVED, BLANK (the stub), or a body."""
    for i, cell in enumerate(nb.cells):
        name = exercise_of(cell)
        if name is None or answers.get(name, SOLVED) == SOLVED:
            continue
        body = answers[name]
        if isinstance(body, tuple):  # a build exercise with several regions (a module's __init__ and forward)
            cell.source = answer_regions(source_text(cell), body, f"cell {i}")
            continue
        lines = config.CODE_STUB if body == BLANK else body.splitlines()
        cell.source, _ = replace_regions(source_text(cell), config.BEGIN_SOLUTION, config.END_SOLUTION,
                                         lines, f"cell {i}")
    return nb


def answer_regions(text: str, bodies: tuple, where: str) -> str:
    """``text`` with its n-th solution region replaced by ``bodies[n]`` (SOLVED keeps that region's answer)."""
    lines, out, n = text.splitlines(), [], 0
    while lines:
        line = lines.pop(0)
        if line.strip() != config.BEGIN_SOLUTION:
            out.append(line)
            continue
        end = next(k for k, rest in enumerate(lines) if rest.strip() == config.END_SOLUTION)
        region, lines = [line] + lines[: end + 1], lines[end + 1:]
        body = bodies[n] if n < len(bodies) else SOLVED
        n += 1
        if body == SOLVED:
            out.extend(region)
        else:
            stub = config.CODE_STUB if body == BLANK else body.splitlines()
            replaced, _ = replace_regions("\n".join(region), config.BEGIN_SOLUTION, config.END_SOLUTION, stub, where)
            out.extend(replaced.splitlines())
    return "\n".join(out)


def cut_after_last_check(nb):
    """Only the cells up to the lesson's last check cell: the exercises, without the training after them."""
    last = max(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "utils.checks." in source_text(c))
    nb.cells = nb.cells[: last + 1]
    return nb


def check_index(nb, exercise: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if f"utils.checks.{exercise}(" in source_text(c))


def insert_after(nb, exercise: str, code: str):
    """A new code cell right after ``exercise``'s check cell."""
    nb.cells.insert(check_index(nb, exercise) + 1, nbformat.v4.new_code_cell(code))
    return nb


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def wrong_everywhere(lesson: str):
    """Every exercise of the lesson answered with its known mistake (cut after the last check)."""
    nb = solution(lesson)
    names = [exercise_of(c) for c in nb.cells if exercise_of(c)]
    return cut_after_last_check(answer(nb, {name: WRONG[name] for name in names}))


# Each bad submission: file name -> (how to write it, a fragment its row's note must contain).
def bad_submissions() -> dict:
    short = lambda: cut_after_last_check(solution("03"))  # noqa: E731  (lesson 03's exercises, quick to run)

    def deleted_and_renamed():
        nb = short()
        nb.cells = [c for c in nb.cells if "reparameterize" not in source_text(c) or c.cell_type == "markdown"]
        for cell in nb.cells:
            if exercise_of(cell) == "elbo_loss":
                cell.source = cell.source.replace("def elbo_loss(", "def my_elbo_loss(")
        return nb

    def syntax_error():
        return answer(short(), {"elbo_loss": "return (F.binary_cross_entropy_with_logits(logits, x).mean("})

    def metadata_lost():  # what some platforms do: the course's notebook metadata is gone, the cells remain
        nb = short()
        nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        return nb

    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Week 3: pandas"),
                                            nbformat.v4.new_code_cell("import math\nprint(math.pi)")])
    return {
        "essay.pdf": (b"%PDF-1.4\n\xff\xfe\xfa binary", "not text"),
        "truncated.ipynb": ('{"cells": [{"cell_type": "code", "source": ["x = 1"', "not valid JSON"),
        "settings.ipynb": (json.dumps({"theme": "dark"}), "not a Jupyter notebook"),
        "other_course.ipynb": (other, "Not a notebook from this course"),
        "deleted_and_renamed.ipynb": (deleted_and_renamed(), "raised NameError"),
        "syntax_error.ipynb": (syntax_error(), "SyntaxError"),
        "metadata_lost.ipynb": (metadata_lost(), ""),
        "endless_loop.ipynb": (insert_after(short(), "kl_divergence", "while True:\n    pass"), "s and was stopped"),
        "kernel_crash.ipynb": (insert_after(short(), "kl_divergence", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                               "the kernel died"),
        "memory_hog.ipynb": (insert_after(short(), "kl_divergence", "hog = torch.ones(2**31)  # 8 GB"), "ran out of memory"),
        "writes_and_moves.ipynb": (insert_after(short(), "kl_divergence",
                                                "import os\nopen('my_answers.txt', 'w').write('42')\n"
                                                "os.makedirs('elsewhere', exist_ok=True)\nos.chdir('elsewhere')"),
                                   "wrote files (my_answers.txt)"),
    }


def write_bad(folder: Path, names=None) -> dict:
    """Write the bad submissions into ``folder``; return path -> the fragment expected in its note."""
    expected = {}
    for name, (content, fragment) in bad_submissions().items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            write(content, path)
        expected[path] = fragment
    return expected


def make_class(folder: Path, size: int = 30, seed: int = 0, quick: bool = False) -> list:
    """A class of ``size`` lesson-03 submissions: correct, partly wrong, blank and broken ones.

    ``quick`` cuts every notebook after its last check (the exercises without the training after them).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = ["reparameterize", "kl_divergence", "elbo_loss"]
    broken = ["truncated.ipynb", "endless_loop.ipynb", "syntax_error.ipynb", "kernel_crash.ipynb",
              "deleted_and_renamed.ipynb", "writes_and_moves.ipynb", "essay.pdf"]
    paths = list(write_bad(folder, broken))
    for i in range(size - len(paths)):
        kind = rng.choices(["correct", "wrong", "blank"], weights=[4, 5, 1])[0]
        if kind == "blank":
            answers = {n: BLANK for n in names}
        elif kind == "correct":
            answers = {}
        else:
            answers = {n: rng.choice([SOLVED, SOLVED, WRONG[n], BLANK]) for n in names}
        nb = answer(solution("03"), answers)
        paths.append(write(cut_after_last_check(nb) if quick else nb, folder / f"student_{i + 1:02d}.ipynb"))
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="cut each notebook after its last check")
    args = parser.parse_args()
    print(f"wrote {len(make_class(args.out, args.size, quick=args.quick))} submissions into {args.out}")

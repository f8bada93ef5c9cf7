"""The bilingual glossary: a complete row for every term, and each term where the glossary says it first appears."""
import re

import pytest

from course import config
from course.notebook import read_notebook, source_text

GLOSSARY = config.ROOT / "docs" / "GLOSSARY.md"
# The words a term is found by in a lesson, where its name is not typed that way in the notebooks.
SEARCH = {"Bayes' rule": "bayes", "DDPM and DDIM": "ddim", "bias (in data and models)": "bias",
          "variational autoencoder (VAE)": "vae", "generative adversarial network (GAN)": "gan",
          "Fréchet distance (FID)": "fréchet", "reparameterisation trick": "reparameteri",
          "maximum likelihood estimation": "maximum likelihood", "multi-head attention": "multi-head",
          "memorisation": "memoris", "denoising": "denois", "overfitting": "overfit", "pre-training": "pre-train",
          "fine-tuning": "fine-tun", "sampling": "sampl", "experiment tracking": "tracking",
          "loss function": "loss", "evaluation metric": "metric", "policy gradient": "policy",
          "adversarial training": "adversarial", "conditional generation": "conditional",
          "noise schedule": "schedules", "reward": "reward ", "KL divergence": "kl", "autoregressive model": "autoregressive",
          "unsupervised learning": "unsupervised", "diffusion model": "diffusion"}


def rows() -> list[list[str]]:
    text = GLOSSARY.read_text(encoding="utf-8")
    table = text.split("<!-- glossary:start", 1)[1].split("<!-- glossary:end -->", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]  # after the header
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines if not line.startswith("|---")]


def lesson_texts() -> dict[str, str]:
    return {p.name[:2]: " ".join(source_text(c) for c in read_notebook(p)["cells"]).lower()
            for p in config.solution_paths()}


def test_every_row_is_complete_and_every_term_is_listed_once():
    table = rows()
    assert len(table) >= 40
    for row in table:
        assert len(row) == 5 and all(row), f"incomplete glossary row: {row}"
        assert row[4] in config.LESSON_SLUGS, f"{row[0]}: lesson {row[4]} does not exist"
    terms = [row[0].lower() for row in table]
    assert len(terms) == len(set(terms))


@pytest.mark.parametrize("row", rows(), ids=lambda row: row[0])
def test_each_term_first_appears_in_the_lesson_the_glossary_names(row):
    term, lesson = row[0], row[4]
    key = SEARCH.get(term, term).lower()
    texts = lesson_texts()
    found = [number for number in sorted(texts) if re.search(r"\b" + re.escape(key), texts[number])]
    assert found, f"{term!r} appears in no lesson"
    assert found[0] == lesson, f"{term!r} first appears in lesson {found[0]}, not {lesson}: fix docs/GLOSSARY.md"

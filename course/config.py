"""The course's constants: where things live, the nbgrader markers, and one name per lesson."""
from __future__ import annotations

from pathlib import Path

# The one place that names the course repository. Forks change these two lines and run `make build`.
REPO = "genai-hands-on/genai-hands-on"
BRANCH = "main"

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, LESSONS, BENCH_DIR = ROOT / "solutions", ROOT / "lessons", ROOT / "benchmarks"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["YOUR ANSWER HERE"]
SETUP_TAG, BADGES_TAG, EXERCISE_TAG = "setup", "badges", "raises-exception"

# One name per lesson: its slug names `utils/<slug>.py`, `utils/checks/<slug>.py` and `tests/test_<slug>.py`
# (tests/test_layout.py enforces it, and docs/AUTHORING.md shows the same table).
LESSON_SLUGS = {
    "01": "generative",
    "02": "autoencoders",
    "03": "vae",
    "04": "gan",
    "05": "diffusion",
    "06": "gpt",
    "07": "evaluation",
    "08": "objectives",
}
# Translated editions that are complete and built (translations/<lang>/, solutions/<lang>/, lessons/<lang>/).
# A language joins once every lesson has its translation: from then on `course check` fails on any gap or drift.
EDITIONS: dict[str, str] = {"id": "Bahasa Indonesia"}
METADATA_KEY = "genai"  # notebook metadata the build stamps: {"lesson": "03", "slug": "vae"}


def solution_paths() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))

"""What nbval collects from the translated editions (lessons/<lang>/, solutions/<lang>/).

Every English notebook runs on every change. Of each edition, one lesson runs per CI run, a different one
each day (the code is the English code, so one lesson proves the edition's setup cell, feedback language and
generated cells; `course check` already holds every translated cell to its English source). The weekly
workflow `.github/workflows/editions.yml` runs them all with GENAI_ALL_EDITIONS=1.
"""
import datetime
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _edition_notebooks() -> list[Path]:
    return sorted(p for folder in ("lessons", "solutions") for p in (ROOT / folder).glob("*/[0-9][0-9]_*.ipynb"))


def sampled_lesson(numbers, today: datetime.date | None = None) -> str:
    """The lesson number whose edition notebooks run today: the lessons in turn, one per day."""
    numbers = sorted(set(numbers))
    return numbers[(today or datetime.date.today()).toordinal() % len(numbers)] if numbers else ""


if os.environ.get("GENAI_ALL_EDITIONS") == "1":
    collect_ignore = []
else:
    _today = sampled_lesson(p.name[:2] for p in _edition_notebooks())
    collect_ignore = [str(p) for p in _edition_notebooks() if p.name[:2] != _today]

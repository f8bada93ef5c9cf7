"""nbgrader cell metadata for the solution notebooks, so they drop into an nbgrader course's source/ unchanged.

Each exercise is graded by its own check, the one that gives the learner feedback: the check cell keeps its
one visible line, and a hidden-tests region around it asserts that the learner's function came back from
the check (``utils.checks.<exercise>`` hands back the reference instead when the answer is wrong). The
build drops the hidden regions from lessons/, and so does nbgrader's ``generate_assignment``.
"""
from __future__ import annotations

import re

from .config import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, SETUP_TAG
from .lesson import replace_regions
from .notebook import has_tag, set_source, source_text

POINTS = 1  # per exercise, in nbgrader and in the GitHub Classroom template alike
SCHEMA_VERSION = 3
CHECK_LINE = re.compile(r"^(\w+) = utils\.checks\.(\w+)\(\1\)$")
EXERCISE_DEF = re.compile(r"^(?:def|class) (\w+)\b", re.M)  # a function, or a module the learner builds
ANSWER = "_learners_answer"


def graded_check(name: str) -> str:
    """The check cell with the hidden assert nbgrader scores (visible part: the learner's one line)."""
    return "\n".join([
        BEGIN_HIDDEN, f"{ANSWER} = {name}", END_HIDDEN,
        f"{name} = utils.checks.{name}({name})",
        BEGIN_HIDDEN, f'assert {name} is {ANSWER}, "{name} did not pass its check: see the line above."', END_HIDDEN,
    ])


def checked_exercise(cell: dict) -> str | None:
    """The exercise a check cell checks (looking only at what learners see), else None."""
    if cell["cell_type"] != "code":
        return None
    visible, _ = replace_regions(source_text(cell), BEGIN_HIDDEN, END_HIDDEN, None, "check cell")
    found = CHECK_LINE.match(visible.strip())
    return found.group(1) if found and found.group(1) == found.group(2) else None


def cell_metadata(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA_VERSION,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def mark(nb: dict) -> dict:
    """Write nbgrader metadata: answer cells, graded check cells (locked, with points), a locked setup cell."""
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)
        text = source_text(cell)
        exercise = checked_exercise(cell)
        if exercise:
            set_source(cell, graded_check(exercise))
            meta = cell_metadata(f"check_{exercise}", grade=True, locked=True, points=POINTS)
        elif cell["cell_type"] == "code" and BEGIN_SOLUTION in text and EXERCISE_DEF.search(text):
            meta = cell_metadata(EXERCISE_DEF.search(text).group(1), solution=True)
        elif has_tag(cell, SETUP_TAG):
            meta = cell_metadata("setup", locked=True)
        else:
            continue
        cell.setdefault("metadata", {})["nbgrader"] = meta
    return nb


def unmark(nb: dict) -> dict:
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)
    return nb

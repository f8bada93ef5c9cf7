"""What grading writes: the CSV a gradebook takes, the class summary an instructor reads, the feedback."""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from .grade import FAILED, NOT_ATTEMPTED, PASSED, Grade, lesson_exercises

FIXED = ["submission", "lesson", "ran"]
TAIL = ["total", "out_of", "note"]


def exercise_columns(grades: list) -> list:
    """Every exercise of every lesson in the class, lesson by lesson, in the notebooks' order."""
    lessons = sorted({g.lesson for g in grades if g.lesson})
    return [name for lesson in lessons for name in lesson_exercises()[lesson]]


def rows(grades: list) -> tuple[list, list]:
    columns = FIXED + exercise_columns(grades) + TAIL
    table = []
    for g in grades:
        row = {"submission": g.submission, "lesson": g.lesson or "", "ran": "yes" if g.ran else "no",
               "total": g.score if g.lesson else "", "out_of": len(g.results) if g.lesson else "",
               "note": g.note}
        row.update({name: result.cell() for name, result in g.results.items()})
        table.append(row)
    return columns, table


def csv_text(grades: list) -> str:
    columns, table = rows(grades)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()


def read_csv(path: Path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_text(grades: list, command: str = "", top: int = 10) -> str:
    """The class summary in Markdown: pass rates, the most common mistakes, the notebooks that did not run."""
    graded = [g for g in grades if g.lesson]
    lines = [f"# Class summary: {len(grades)} submission(s)", ""]
    if command:
        lines += [f"Graded with `{command}` (fast mode, each notebook in a fresh kernel).", ""]
    lines += ["## Pass rate per exercise", "",
              "| lesson | exercise | passed | failed | not attempted | pass rate |", "|---|---|---|---|---|---|"]
    for lesson in sorted({g.lesson for g in graded}):
        of_lesson = [g for g in graded if g.lesson == lesson]
        for name in lesson_exercises()[lesson]:
            counts = Counter(g.results[name].status for g in of_lesson if name in g.results)
            rate = counts[PASSED] / len(of_lesson)
            lines.append(f"| {lesson} | `{name}` | {counts[PASSED]} | {counts[FAILED]} | {counts[NOT_ATTEMPTED]} "
                         f"| {rate:.0%} |")
    lines += ["", "## Most common mistakes", "",
              "From the hint each failing check gave, most frequent first.", ""]
    mistakes = Counter((name, r.message) for g in graded for name, r in g.results.items()
                       if r.status == FAILED and r.from_check)
    if not mistakes:
        lines.append("No check failed.")
    for rank, ((name, message), n) in enumerate(mistakes.most_common(top), 1):
        lines.append(f"{rank}. **{n} submission{'s' * (n != 1)}**, `{name}`: {message}")
    troubled = [g for g in grades if g.problems]
    lines += ["", "## Submissions that did not run cleanly", ""]
    if not troubled:
        lines.append("Every submission ran to the end without an error.")
    else:
        lines += ["| submission | ran | why |", "|---|---|---|"]
        lines += [f"| {_cell(g.submission)} | {'yes' if g.ran else 'no'} | {_cell(g.note)} |" for g in troubled]
    return "\n".join(lines) + "\n"


def feedback_notebook(grade: Grade):
    """The executed notebook with a first cell that tells the student their result, exercise by exercise."""
    import nbformat

    nb = grade.notebook
    lines = [f"**Grade: {grade.score} / {len(grade.results)}**", ""]
    lines += [f"- `{name}`: {r.cell()}" for name, r in grade.results.items()]
    if grade.note:
        lines += ["", f"Note: {grade.note}"]
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("\n".join(lines), metadata={"tags": ["feedback"]}))
    return nb


def write_feedback(grades: list, folder: Path) -> list:
    """One executed notebook per graded submission, named after the submission's path (unique)."""
    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for g in grades:
        if g.notebook is None:
            continue
        stem = Path(g.submission).with_suffix("").as_posix().strip("./").replace("/", "__") or "submission"
        target = folder / f"{stem}.ipynb"
        nbformat.write(feedback_notebook(g), str(target))
        written.append(target)
    return written


def exercise_verdict(table: list, exercise: str) -> tuple[bool, str]:
    """(passed, line) for one exercise over a grades CSV: passed only when every row passed it."""
    if not table:
        return False, f"{exercise}: no graded submission in the file"
    if exercise not in table[0]:
        return False, f"{exercise}: not an exercise of the graded notebook(s)"
    cells = [row[exercise] or "not graded" for row in table]
    failing = [c for c in cells if c != PASSED]
    return not failing, f"{exercise}: {failing[0] if failing else PASSED}"

"""Grade a class's notebooks: each one runs in a fresh kernel, in a temporary folder outside the course.

Results come from the checks themselves: the grader names a file in ``GENAI_CHECK_LOG`` and every check
appends one JSON record there (see ``utils/checks/core.py``). Printed lines are never parsed. A bad
submission (not a notebook, another course's, an endless loop, a crash...) gets its own row and a
one-sentence reason; it never stops the run. ``course.gradebook`` writes the CSV and the class summary.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import config
from .execute import execute
from .notebook import has_tag, read_notebook, source_text

LOG_ENV = "GENAI_CHECK_LOG"  # the variable utils/checks/core.py reads
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
DEFAULT_TIMEOUT = 300   # seconds per notebook (fast-mode lessons take under 30 s)
DEFAULT_MEMORY_MB = 4096  # twice a lesson's 2 GB budget
CHECK_CALL = re.compile(r"\butils\.checks\.(\w+)\(")
SETUP_MARK = "# Setup: stamped from course/setup_cell.txt"

# The submission's own setup cell looks for the course above its working folder, which a graded copy
# does not have; the grader puts the course on PYTHONPATH and runs this in its place.
GRADER_SETUP = ("# Setup (grader): the course is on PYTHONPATH; this copy runs in a temporary folder.\n"
                "%matplotlib inline\n"
                "import utils\n"
                "utils.print_environment()")

# Appended to every submission: checks any exercise whose check cell did not run (deleted, or stopped by
# an error above it) when its function exists, and records where the notebook ended up working.
GRADER_FINAL = """\
import json as _grader_json, os as _grader_os
import utils.checks as _grader_checks
with open({log!r}, "a", encoding="utf-8") as _grader_log:
    pass
with open({log!r}, encoding="utf-8") as _grader_log:
    _grader_done = {{_grader_json.loads(line).get("exercise") for line in _grader_log if line.strip()}}
for _grader_name in {exercises!r}:
    if _grader_name not in _grader_done and callable(globals().get(_grader_name)):
        _grader_checks.CHECKS[_grader_name](globals()[_grader_name])
with open({state!r}, "w", encoding="utf-8") as _grader_state:
    _grader_json.dump({{"cwd": _grader_os.getcwd()}}, _grader_state)"""


@dataclass
class Result:
    status: str                 # passed / failed / not attempted
    message: str = ""           # the check's hint, or why no check ran
    from_check: bool = True     # False when the grader wrote the message (no check ran)

    def cell(self) -> str:
        return f"{FAILED}: {self.message}" if self.status == FAILED else self.status


@dataclass
class Grade:
    submission: str
    lesson: str | None = None             # "03"
    slug: str | None = None               # "vae"
    results: dict = field(default_factory=dict)  # exercise -> Result, in the lesson's order
    ran: bool = False                     # the notebook was executed (to the end or not)
    problems: list = field(default_factory=list)  # one sentence each
    seconds: float = 0.0
    notebook: object = None               # the executed notebook, for --feedback

    @property
    def score(self) -> int:
        return sum(r.status == PASSED for r in self.results.values())

    @property
    def note(self) -> str:
        return " ".join(self.problems)


# ----------------------------------------------------------------------------- what each lesson expects

@lru_cache(maxsize=None)
def lesson_exercises() -> dict:
    """lesson number -> its exercises in order, read from the check cells of lessons/ (or solutions/).

    lessons/ comes first: a GitHub Classroom repository holds the lessons but not the solutions.
    """
    found = {}
    paths = {p.name: p for p in config.solution_paths()}
    paths.update({p.name: p for p in sorted(config.LESSONS.glob("[0-9][0-9]_*.ipynb"))})
    for path in sorted(paths.values(), key=lambda p: p.name):
        names = [m for cell in read_notebook(path)["cells"] if cell["cell_type"] == "code"
                 for m in CHECK_CALL.findall(source_text(cell))]
        found[path.name[:2]] = tuple(dict.fromkeys(names))
    return found


def identify(nb: dict) -> str | None:
    """The lesson a notebook belongs to: its stamped metadata, else the course checks it calls."""
    meta = nb.get("metadata", {}).get(config.METADATA_KEY, {})
    if isinstance(meta, dict) and meta.get("lesson") in config.LESSON_SLUGS:
        return meta["lesson"]
    called = {m for cell in nb.get("cells", []) if cell.get("cell_type") == "code"
              for m in CHECK_CALL.findall(source_text(cell))}
    overlap = {lesson: len(called & set(names)) for lesson, names in lesson_exercises().items()}
    best = max(overlap, key=overlap.get, default=None)
    return best if best and overlap[best] else None


def load_submission(path: Path):
    """The notebook in ``path`` as an nbformat node, or one sentence saying why it is not one."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, "the file is not text, so it is not a notebook (a notebook is a JSON text file)."
    except OSError as exc:
        return None, f"the file could not be read ({exc.strerror or exc})."
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the file is not valid JSON (line {exc.lineno}), so it is not a notebook or it was damaged."
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        return None, "the file is JSON but not a Jupyter notebook (it has no list of cells)."
    try:
        return nbformat.reads(text, as_version=4), None
    except Exception as exc:  # nbformat's own reasons for rejecting a damaged notebook
        return None, f"the notebook is damaged and cannot be read ({type(exc).__name__})."


# ----------------------------------------------------------------------------- preparing and running one

def prepare(nb, exercises: tuple, log: Path, state: Path):
    """The submission with the grader's setup cell in place of its own and the final check cell added."""
    import nbformat

    setup = next((c for c in nb.cells if c.cell_type == "code" and
                  (has_tag(c, config.SETUP_TAG) or source_text(c).startswith(SETUP_MARK))), None)
    if setup is not None:
        setup.source = GRADER_SETUP
    else:
        nb.cells.insert(0, nbformat.v4.new_code_cell(GRADER_SETUP))
    final = GRADER_FINAL.format(log=str(log), state=str(state), exercises=list(exercises))
    nb.cells.append(nbformat.v4.new_code_cell(final, metadata={"tags": ["grader"]}))
    return nb


def cell_error(cell) -> str | None:
    """``SyntaxError: invalid syntax`` when the executed cell shows an error, else None."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}".rstrip(": ")
    return None


def defines(cell, name: str) -> bool:
    """Whether the cell defines the exercise: a function, or a class (a module the learner builds)."""
    return bool(re.search(rf"^\s*(?:def {re.escape(name)}\s*\(|class {re.escape(name)}\b)", source_text(cell), re.M))


def missing_reason(nb, name: str, stopped: str | None) -> str:
    """Why ``name``'s check never ran, in one sentence."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    definition = next((c for c in code if defines(c, name)), None)
    if definition is None:
        kind = "class" if name[:1].isupper() else "function"
        return f"no {kind} named `{name}`: its exercise cell was deleted or renamed."
    if cell_error(definition):
        return f"its exercise cell raised {cell_error(definition)}."
    if stopped:
        return "the notebook stopped before this exercise was checked."
    return "its check never ran."


def collect(log: Path, slug: str, exercises: tuple) -> dict:
    """exercise -> Result from the checks' records (the last record of each exercise counts)."""
    found = {}
    if log.exists():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("lesson") == slug and record.get("exercise") in exercises:
                status = record.get("status")
                if status in (PASSED, FAILED, NOT_ATTEMPTED):
                    found[record["exercise"]] = Result(status, str(record.get("message", "")).strip())
    return found


def kernel_settings(log: Path, threads: int | None) -> dict:
    """What the grader sets in the kernel's environment: the check log, the course on the path, threads."""
    existing = os.environ.get("PYTHONPATH")
    env = {LOG_ENV: str(log), "PYTHONPATH": os.pathsep.join([str(config.ROOT), *([existing] if existing else [])]),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if threads:  # several kernels at once share the cores instead of each taking them all
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def grade_one(path: Path, shown: str, timeout: int = DEFAULT_TIMEOUT, memory_mb: int | None = DEFAULT_MEMORY_MB,
              keep_notebook: bool = False, threads: int | None = None) -> Grade:
    """Grade one submission; every problem becomes a sentence in the grade, never an exception."""
    grade = Grade(submission=shown)
    nb, why = load_submission(path)
    if nb is None:
        grade.problems.append(why[0].upper() + why[1:])
        return grade
    lesson = identify(nb)
    if lesson is None:
        grade.problems.append("Not a notebook from this course: it has neither the course's lesson metadata "
                              "nor any of its check cells.")
        return grade
    grade.lesson, grade.slug = lesson, config.LESSON_SLUGS[lesson]
    exercises = lesson_exercises()[lesson]
    with tempfile.TemporaryDirectory(prefix="genai-grade-") as tmp:
        tmp = Path(tmp)
        work, private = tmp / "work", tmp / "grader"  # the student's folder, and the grader's own files
        work.mkdir()
        private.mkdir()
        log, state = private / "checks.jsonl", private / "state.json"
        copy = work / "submission.ipynb"
        shutil.copyfile(path, copy)
        before = {copy.name}
        prepare(nb, exercises, log, state)
        run = execute(nb, cwd=work, fast=True, allow_errors=True, timeout=timeout, total_timeout=timeout,
                      memory_mb=memory_mb, env=kernel_settings(log, threads))
        grade.ran, grade.seconds = True, run.seconds
        found = collect(log, grade.slug, exercises)
        for name in exercises:
            grade.results[name] = found.get(name) or Result(FAILED, missing_reason(nb, name, run.error), False)
        grade.problems += run_problems(nb, run.error, memory_mb)
        grade.problems += side_effects(work, before, state)
        nb.cells = nb.cells[:-1]  # the grader's own cell is not the student's
    if keep_notebook:
        grade.notebook = nb
    return grade


def run_problems(nb, stopped: str | None, memory_mb: int | None) -> list:
    problems = []
    if stopped:
        problems.append(f"Stopped: {stopped}")
    errors = [(i, cell_error(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code" and cell_error(c)]
    errors = [(i, e) for i, e in errors if not e.startswith("KeyboardInterrupt")]
    if errors:
        i, first = errors[0]
        if "MemoryError" in first or "can't allocate memory" in first or "not enough memory" in first:
            cap = f" (the cap is {memory_mb} MB)" if memory_mb else ""
            problems.append(f"Cell {i} ran out of memory{cap}.")
        else:
            more = f" and {len(errors) - 1} more cell(s) raised errors" if len(errors) > 1 else ""
            problems.append(f"Cell {i} raised {first}{more}.")
    return problems


def side_effects(work: Path, before: set, state: Path) -> list:
    """What the notebook did to its surroundings: files it wrote, the folder it moved to."""
    problems = []
    written = sorted(str(p.relative_to(work)) for p in work.rglob("*")
                     if p.is_file() and str(p.relative_to(work)) not in before
                     and ".ipynb_checkpoints" not in p.parts)
    if written:
        shown = ", ".join(written[:3]) + (f" and {len(written) - 3} more" if len(written) > 3 else "")
        problems.append(f"It wrote files ({shown}); they stayed in its temporary folder.")
    try:
        cwd = json.loads(state.read_text(encoding="utf-8")).get("cwd")
    except (OSError, json.JSONDecodeError):
        cwd = None
    if cwd and Path(cwd).resolve() != work.resolve():
        problems.append(f"It changed its working folder (to {cwd}).")
    return problems


# ----------------------------------------------------------------------------- a whole class

def find_submissions(paths) -> list:
    """(path, shown name) for every file given and every notebook inside every folder given."""
    found = []
    for given in paths:
        given = Path(given)
        if given.is_dir():
            for p in sorted(given.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."):
                    found.append((p, str(p)))
        else:
            found.append((given, str(given)))
    return found


def files_not_graded(paths) -> list:
    """Files directly inside the folders given that a folder search passes over (not notebooks, not hidden):
    a submission handed in as a PDF or a script should be seen, not silently left out."""
    return [p for given in map(Path, paths) if given.is_dir() for p in sorted(given.iterdir())
            if p.is_file() and p.suffix != ".ipynb" and not p.name.startswith(".")]


def _grade_item(path: Path, shown: str, timeout: int, memory_mb: int | None, keep_notebook: bool,
                threads: int) -> Grade:
    """One submission, in a worker process: nothing about it can stop the others."""
    if not path.exists():
        return Grade(submission=shown, problems=["The file does not exist."])
    try:
        return grade_one(path, shown, timeout, memory_mb, keep_notebook, threads)
    except Exception as exc:  # the grader's own failure on this file must not lose the others
        return Grade(submission=shown, problems=[f"The grader could not run it ({type(exc).__name__}: {exc})."])


def grade_all(paths, jobs: int | None = None, timeout: int = DEFAULT_TIMEOUT,
              memory_mb: int | None = DEFAULT_MEMORY_MB, keep_notebooks: bool = False, progress=None) -> list:
    """Grade every submission, ``jobs`` at a time; the grades come back in the submissions' order.

    Each submission is driven from its own worker process (started fresh, not forked): notebook clients
    sharing one process from several threads can lose a kernel's messages and wait for ever.
    """
    submissions = find_submissions(paths)
    jobs = max(1, jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    grades = [None] * len(submissions)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_grade_item, path, shown, timeout, memory_mb, keep_notebooks, threads): i
                   for i, (path, shown) in enumerate(submissions)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                grades[i] = future.result()
            except Exception as exc:  # the worker itself died (killed, out of memory)
                grades[i] = Grade(submission=submissions[i][1],
                                  problems=[f"The grader's worker stopped ({type(exc).__name__}: {exc})."])
            if progress:
                progress(grades[i])
    return grades

"""The grader (``python -m course grade``) on generated submissions: right, untouched, wrong and broken.

Two batches are graded once per session, two notebooks at a time: the real solutions and lessons plus
one wrong answer per exercise, and the bad submissions (cut to lesson 03's exercises, so they are quick).
"""
import copy
import importlib
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import grading_class as gc
from utils.checks import vae as vae_checks
from course import config
from course.execute import memory_cap_supported
from course.grade import FAILED, NOT_ATTEMPTED, PASSED, defines, grade_all, lesson_exercises
from course.gradebook import csv_text, read_csv, summary_text, write_feedback

ROOT = Path(__file__).resolve().parent.parent
JOBS = 2
EX03 = lesson_exercises()["03"]  # the bad submissions are lesson 03's exercises
# a submission stopped right after kl_divergence's check: what came before passed, the rest was never checked
stopped_after_kl = {n: PASSED if EX03.index(n) <= EX03.index("kl_divergence") else FAILED for n in EX03}
BAD_TIMEOUT = 60  # seconds: the endless loop is stopped at this limit, everything else is done well before
MAIN_TIMEOUT = 900  # seconds: generous, for a busy machine; a fast-mode lesson takes under 30 s alone


@pytest.fixture(scope="module")
def wrong_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wrong")
    return {lesson: gc.write(gc.wrong_everywhere(lesson), folder / f"renamed_by_student_{lesson}.ipynb")
            for lesson in config.LESSON_SLUGS}


@pytest.fixture(scope="module")
def untouched_folder(tmp_path_factory):
    """The student notebooks as handed out, cut after their last check (the training after it grades nothing;
    nbval runs the whole notebooks)."""
    folder = tmp_path_factory.mktemp("untouched")
    return {p.name: gc.write(gc.cut_after_last_check(nbformat.read(str(config.LESSONS / p.name), as_version=4)),
                             folder / p.name) for p in config.solution_paths()}


@pytest.fixture(scope="module")
def main_batch(wrong_folder, untouched_folder):
    solutions = config.solution_paths()
    # One at a time, to keep CI's time predictable. Side by side over TCP, kernels in separate worker processes
    # could pick the same port (jupyter_client#487; reproduced as a kernel dying at start, the likely cause of
    # a hang seen here once). course/execute.py now gives each kernel Unix sockets in its own folder;
    # test_course.py starts kernels side by side, and the bad batch below runs two at a time.
    grades = grade_all([*solutions, *untouched_folder.values(), *wrong_folder.values()], jobs=1,
                       timeout=MAIN_TIMEOUT)
    return {Path(g.submission): g for g in grades}


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    expected = gc.write_bad(folder)
    missing = folder / "never_handed_in.ipynb"
    grades = grade_all([*expected, missing], jobs=JOBS, timeout=BAD_TIMEOUT, keep_notebooks=True)
    by_name = {Path(g.submission).name: g for g in grades}
    return by_name, {p.name: fragment for p, fragment in expected.items()}, folder


def test_every_lesson_has_its_exercises_from_the_solution_checks():
    import utils.checks

    found = lesson_exercises()
    assert set(found) == set(config.LESSON_SLUGS)
    for lesson, names in found.items():
        slug = config.LESSON_SLUGS[lesson]
        assert set(names) == {n for n, c in utils.checks.CHECKS.items() if c.lesson == slug}


def test_solutions_get_full_marks(main_batch):
    for path in config.solution_paths():
        grade = main_batch[path]
        assert grade.lesson == path.name[:2] and grade.ran
        assert grade.score == len(grade.results) == len(lesson_exercises()[grade.lesson]), grade.results
        assert grade.problems == [], grade.note


def test_untouched_lessons_are_all_not_attempted(main_batch, untouched_folder):
    for path in config.solution_paths():
        grade = main_batch[untouched_folder[path.name]]
        assert {r.status for r in grade.results.values()} == {NOT_ATTEMPTED}, grade.results
        assert grade.score == 0 and grade.problems == [], grade.note


def expected_hint(lesson: str, name: str, notebook) -> str | None:
    """What the check says, run here in-process, about the wrong answer's cell (its helpers: the references),
    or None when the cell needs the notebook's own earlier cells (a build that uses the lesson's constants)."""
    slug = config.LESSON_SLUGS[lesson]
    reference = importlib.import_module(f"utils.{slug}")
    import utils

    namespace = {"torch": torch, "F": F, "math": math, "nn": nn, "utils": utils, slug: reference}
    namespace.update({n: v for n, v in vars(reference).items() if not n.startswith("_")})
    namespace.update({n: getattr(reference, n) for n in lesson_exercises()[lesson]})
    cell = next(c for c in notebook.cells if c.cell_type == "code" and defines(c, name))
    try:
        exec(cell.source, namespace)
    except NameError:
        return None
    import utils.checks

    status, message = utils.checks.CHECKS[name].run(namespace[name])
    assert status == FAILED, f"the known mistake for {name} passes its check"
    return message


def test_each_known_mistake_fails_with_its_hint(main_batch, wrong_folder):
    for lesson, path in wrong_folder.items():
        grade = main_batch[path]
        assert grade.lesson == lesson, "identified from the notebook, not from its file name"
        notebook = gc.wrong_everywhere(lesson)
        for name in lesson_exercises()[lesson]:
            result = grade.results[name]
            assert (result.status, result.from_check) == (FAILED, True), (name, result)
            expected = expected_hint(lesson, name, notebook)
            assert result.message == expected or (expected is None and result.message), (name, result.message)
        assert grade.score == 0 and grade.problems == []


def test_csv_has_a_row_per_submission_and_a_column_per_exercise(main_batch, untouched_folder, tmp_path):
    grades = list(main_batch.values())
    path = tmp_path / "grades.csv"
    path.write_text(csv_text(grades), encoding="utf-8")
    table = read_csv(path)
    assert len(table) == len(grades)
    every_exercise = [n for lesson in sorted(config.LESSON_SLUGS) for n in lesson_exercises()[lesson]]
    assert list(table[0]) == ["submission", "lesson", "ran", *every_exercise, "total", "out_of", "note"]
    by_path = {Path(row["submission"]): row for row in table}
    solved = by_path[config.solution_paths()[2]]
    assert solved["total"] == solved["out_of"] == str(len(lesson_exercises()["03"])) and solved["kl_divergence"] == PASSED
    assert solved["attention"] == ""  # another lesson's exercise
    assert by_path[untouched_folder[config.solution_paths()[2].name]]["kl_divergence"] == NOT_ATTEMPTED
    wrong = next(row for p, row in by_path.items() if p.name == "renamed_by_student_03.ipynb")
    assert wrong["kl_divergence"] == f"{FAILED}: " + main_batch[Path(wrong["submission"])].results["kl_divergence"].message


def test_summary_ranks_mistakes_and_gives_pass_rates(main_batch):
    text = summary_text(list(main_batch.values()), "python -m course grade class/")
    assert "| 03 | `kl_divergence` | 1 | 1 | 1 | 33% |" in text
    mistakes = text.split("## Most common mistakes")[1].split("##")[0]
    given = {(name, r.message) for g in main_batch.values() for name, r in g.results.items() if r.status == FAILED}
    assert "1. **1 submission**" in mistakes
    assert any(f"`{name}`: {message}" in mistakes for name, message in given), "no listed mistake is a hint given"
    assert "Every submission ran to the end without an error." in text


def test_bad_submissions_each_get_a_row_with_a_reason(bad_batch):
    grades, expected, _ = bad_batch
    assert set(grades) == set(expected) | {"never_handed_in.ipynb"}
    for name, fragment in expected.items():
        assert fragment in grades[name].note, (name, grades[name].note)
    assert grades["never_handed_in.ipynb"].note == "The file does not exist."
    for name in ["essay.pdf", "truncated.ipynb", "settings.ipynb", "other_course.ipynb"]:
        assert not grades[name].ran and grades[name].lesson is None and grades[name].results == {}
        assert grades[name].note.count(".") >= 1 and "\n" not in grades[name].note


def test_deleted_or_renamed_exercise_cells_are_named(bad_batch):
    grade = bad_batch[0]["deleted_and_renamed.ipynb"]
    assert grade.results["reparameterize"].message == "no function named `reparameterize`: its exercise cell was deleted or renamed."
    assert grade.results["elbo_loss"].message == "no function named `elbo_loss`: its exercise cell was deleted or renamed."
    assert grade.results["kl_divergence"].status == PASSED


def test_a_syntax_error_fails_only_its_exercise(bad_batch):
    grade = bad_batch[0]["syntax_error.ipynb"]
    # vae_step trains with elbo_loss, which the broken cell never defined: it fails too, the rest pass
    assert {n: r.status for n, r in grade.results.items()} == {n: FAILED if n in ("elbo_loss", "vae_step") else PASSED
                                                               for n in EX03}
    assert grade.results["elbo_loss"].message.startswith("its exercise cell raised SyntaxError")
    assert not grade.results["elbo_loss"].from_check


def test_lost_metadata_is_recognised_from_its_check_cells(bad_batch):
    grade = bad_batch[0]["metadata_lost.ipynb"]
    assert grade.lesson == "03" and grade.score == len(EX03) and grade.problems == []


def test_endless_loop_is_stopped_and_keeps_what_was_checked(bad_batch):
    grade = bad_batch[0]["endless_loop.ipynb"]
    assert grade.note.startswith(f"Stopped: it ran for more than {BAD_TIMEOUT} s")
    assert grade.seconds < BAD_TIMEOUT + 30
    assert {n: r.status for n, r in grade.results.items()} == stopped_after_kl
    assert grade.results["elbo_loss"].message == "the notebook stopped before this exercise was checked."


def test_kernel_crash_keeps_what_was_checked(bad_batch):
    grade = bad_batch[0]["kernel_crash.ipynb"]
    assert grade.note == "Stopped: the kernel died (a crash, or it ran out of memory)."
    assert {n: r.status for n, r in grade.results.items()} == stopped_after_kl


@pytest.mark.skipif(not memory_cap_supported(), reason="the memory cap needs Linux's RLIMIT_DATA")
def test_memory_cap_stops_a_memory_hog_and_the_notebook_goes_on(bad_batch):
    grade = bad_batch[0]["memory_hog.ipynb"]
    assert "ran out of memory (the cap is 4096 MB)" in grade.note
    assert grade.score == len(EX03)


def test_files_written_and_folder_changes_are_reported_and_stay_outside_the_course(bad_batch):
    grade = bad_batch[0]["writes_and_moves.ipynb"]
    assert grade.score == len(EX03)
    assert "It wrote files (my_answers.txt); they stayed in its temporary folder." in grade.note
    assert "It changed its working folder" in grade.note
    assert not (ROOT / "my_answers.txt").exists() and not (ROOT / "elsewhere").exists()
    assert not (Path.cwd() / "my_answers.txt").exists()


def test_feedback_notebooks_have_outputs_and_the_result_first(bad_batch, tmp_path):
    grades, _, folder = bad_batch
    written = write_feedback(list(grades.values()), tmp_path / "feedback")
    assert len(written) == sum(g.ran for g in grades.values())
    import nbformat

    nb = nbformat.read(str(next(p for p in written if p.name.endswith("syntax_error.ipynb"))), as_version=4)
    assert nb.cells[0].source.startswith(f"**Grade: {len(EX03) - 2} / {len(EX03)}**") and "`elbo_loss`: failed" in nb.cells[0].source
    assert any(out.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for out in c.outputs)
    assert not any("_grader_" in c.source for c in nb.cells)


def test_summary_lists_the_submissions_that_did_not_run(bad_batch):
    text = summary_text(list(bad_batch[0].values()))
    trouble = text.split("## Submissions that did not run cleanly")[1]
    for name in ["essay.pdf", "endless_loop.ipynb", "kernel_crash.ipynb", "other_course.ipynb"]:
        assert name in trouble
    assert "metadata_lost.ipynb" not in trouble


def run_in(repo: Path, command: str) -> subprocess.CompletedProcess:
    assert command.startswith("python -m course ")
    return subprocess.run([sys.executable, *command.split()[1:]], cwd=repo, capture_output=True, text=True,
                          timeout=900)


def test_classroom_workflow_runs_the_grader_and_reports_each_exercise(tmp_path):
    """The exact commands of the GitHub Classroom template, on a student repository with one wrong answer."""
    import yaml

    from course.classroom import workflow

    steps = yaml.safe_load(workflow("03", points=2))["jobs"]["run-autograding-tests"]["steps"]
    grade_step = next(s for s in steps if s["name"] == "Grade the notebook")
    tests = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-command-grader")]
    reporter = steps[-1]
    assert [t["with"]["test-name"] for t in tests] == list(lesson_exercises()["03"])
    assert all(t["with"]["max-score"] == 2 for t in tests)
    assert reporter["with"]["runners"] == ",".join(t["id"] for t in tests)
    assert set(reporter["env"]) == {f"{t['id'].upper()}_RESULTS" for t in tests}

    repo = tmp_path / "student-repo"  # what Classroom checks out: the course, with the student's notebook
    for part in ("utils", "course", "requirements.txt"):
        (repo / part).parent.mkdir(parents=True, exist_ok=True)
        (repo / part).symlink_to(ROOT / part)
    notebook = gc.cut_after_last_check(gc.answer(gc.solution("03"), {"kl_divergence": gc.WRONG["kl_divergence"],
                                                                     "elbo_loss": gc.BLANK}))
    gc.write(notebook, repo / "lessons" / gc.lesson_path("03", config.LESSONS).name)
    graded = run_in(repo, grade_step["run"])
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert (repo / "grades.csv").is_file() and (repo / "grades.md").is_file()
    verdicts = {t["id"]: run_in(repo, t["with"]["command"]) for t in tests}
    assert verdicts["reparameterize"].returncode == 0
    assert verdicts["reparameterize"].stdout == "reparameterize: passed\n"
    assert verdicts["kl_divergence"].returncode == 1
    assert verdicts["kl_divergence"].stdout.startswith(f"kl_divergence: failed: {vae_checks.KL_STD_FOR_VAR}")
    assert (verdicts["elbo_loss"].returncode, verdicts["elbo_loss"].stdout) == (1, "elbo_loss: not attempted\n")
    unknown = run_in(repo, "python -m course result grades.csv no_such_exercise")
    assert unknown.returncode == 1 and "not an exercise" in unknown.stdout


def test_grade_command_names_a_missing_folder_and_exits_nonzero(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_in(ROOT, f"python -m course grade {empty} --out {tmp_path / 'g.csv'}")
    assert run.returncode == 2 and "no submissions found" in run.stdout


def test_grade_command_names_files_in_a_folder_that_are_not_notebooks(tmp_path):
    folder = tmp_path / "handed_in"
    (folder / "nested").mkdir(parents=True)
    (folder / "essay.pdf").write_bytes(b"%PDF-1.4")
    (folder / "answers.py").write_text("x = 1\n")
    (folder / ".DS_Store").write_bytes(b"")
    (folder / "nested" / "data.csv").write_text("a\n")
    from course.grade import files_not_graded
    assert [p.name for p in files_not_graded([folder])] == ["answers.py", "essay.pdf"]
    run = run_in(ROOT, f"python -m course grade {folder} --out {tmp_path / 'g.csv'}")
    assert run.returncode == 2 and "2 file(s) in the folders given are not notebooks" in run.stdout
    assert "essay.pdf" in run.stdout and "answers.py" in run.stdout and ".DS_Store" not in run.stdout

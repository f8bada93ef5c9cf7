"""Real nbgrader in a temporary course: the solution notebooks are its source/ folder, unchanged.

``generate_assignment`` runs on every lesson (it executes nothing); ``autograde`` runs on lesson 03, the
quickest, for a correct, a blank and a one-mistake submission.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grading_class as gc
from course import config
from course.grade import lesson_exercises
from course.nbgrader import POINTS
from course.notebook import read_notebook, source_text

pytest.importorskip("nbgrader", reason="nbgrader is installed by requirements-instructor.txt")
ROOT = Path(__file__).resolve().parent.parent
GRADED = "03"


def nbgrader(course: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENAI_FAST": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A new nbgrader course whose source/ holds every solution notebook, one assignment per lesson."""
    root = tmp_path_factory.mktemp("nbgrader-course")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'genai'\n"
        "c.ExecutePreprocessor.timeout = 600\n", encoding="utf-8")
    (root / "utils").symlink_to(ROOT / "utils")  # the setup cell finds the course above the notebook
    for path in config.solution_paths():
        folder = root / "source" / f"lesson{path.name[:2]}"
        folder.mkdir(parents=True)
        shutil.copyfile(path, folder / path.name)
        nbgrader(root, "generate_assignment", f"lesson{path.name[:2]}", "--force")
    return root


def test_student_versions_match_the_lessons_in_every_cell(course):
    for path in config.solution_paths():
        released = read_notebook(course / "release" / f"lesson{path.name[:2]}" / path.name)
        lesson = read_notebook(config.LESSONS / path.name)
        assert len(released["cells"]) == len(lesson["cells"])
        for ours, theirs in zip(lesson["cells"], released["cells"]):
            if config.BADGES_TAG in ours.get("metadata", {}).get("tags", []):
                continue  # the badges link to the folder a notebook lives in
            assert source_text(theirs) == source_text(ours)
        stubs = sum(config.CODE_STUB[1] in source_text(c) for c in released["cells"])
        assert stubs == sum(config.BEGIN_SOLUTION in source_text(c) for c in read_notebook(path)["cells"]) > 0


def handed_in(released: Path, answers: dict):
    """The released notebook as a student hands it back: nbgrader's metadata kept, answer cells filled in
    (with ``answers`` as in grading_class.answer), cut after the last check to keep autograde quick."""
    nb = gc.nbformat.read(str(released), as_version=4)
    answered = gc.answer(gc.solution(GRADED), answers)
    for ours, theirs in zip(answered.cells, nb.cells):
        if theirs.metadata.get("nbgrader", {}).get("solution"):
            theirs.source = ours.source
    return gc.cut_after_last_check(nb)


@pytest.fixture(scope="module")
def autograded(course):
    solution = gc.lesson_path(GRADED)
    released = course / "release" / f"lesson{GRADED}" / solution.name
    everything = {n: gc.BLANK for n in lesson_exercises()[GRADED]}
    submissions = {"correct": handed_in(released, {}), "blank": handed_in(released, everything),
                   "one_wrong": handed_in(released, {"kl_divergence": gc.WRONG["kl_divergence"]})}
    for student, nb in submissions.items():
        gc.write(nb, course / "submitted" / student / f"lesson{GRADED}" / solution.name)
    nbgrader(course, "autograde", f"lesson{GRADED}", "--force")
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in submissions:
            notebook = gb.find_submission_notebook(solution.stem, f"lesson{GRADED}", student)
            scores[student] = {g.name: g.score for g in notebook.grades}
    return scores


def test_autograde_gives_full_points_to_a_correct_submission(autograded):
    assert autograded["correct"] == {f"check_{n}": POINTS for n in lesson_exercises()[GRADED]}


def test_autograde_gives_zero_to_a_blank_submission(autograded):
    assert set(autograded["blank"].values()) == {0} and len(autograded["blank"]) == len(lesson_exercises()[GRADED])


def test_autograde_takes_off_exactly_the_wrong_exercise(autograded):
    assert autograded["one_wrong"] == {f"check_{n}": 0 if n == "kl_divergence" else POINTS
                                       for n in lesson_exercises()[GRADED]}


def test_solution_notebooks_carry_nbgrader_marks_and_lessons_do_not():
    for path in config.solution_paths():
        cells = read_notebook(path)["cells"]
        marks = [c["metadata"]["nbgrader"] for c in cells if "nbgrader" in c.get("metadata", {})]
        ids = [m["grade_id"] for m in marks]
        assert len(ids) == len(set(ids))
        graded = [m for m in marks if m["grade"]]
        assert graded and all(m["locked"] and m["points"] == POINTS for m in graded)
        assert any(m["solution"] for m in marks)
        lesson = read_notebook(config.LESSONS / path.name)
        assert not any("nbgrader" in c.get("metadata", {}) for c in lesson["cells"])
        assert json.dumps(lesson).count(config.BEGIN_HIDDEN) == 0

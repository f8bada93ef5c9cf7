"""A GitHub Classroom autograding workflow for one lesson, from the template in templates/classroom/.

The workflow grades the student's notebook once with ``python -m course grade``, then reports each
exercise as its own test: ``python -m course result grades.csv <exercise>`` exits 0 only if it passed.
"""
from __future__ import annotations

from pathlib import Path

from . import config
from .grade import lesson_exercises

TEMPLATE = Path(__file__).with_name("templates") / "classroom" / "autograding.yml"
RESULTS = "grades.csv"


def grade_command(notebook: str) -> str:
    return f"python -m course grade {notebook} --out {RESULTS} --jobs 1"


def result_command(exercise: str) -> str:
    return f"python -m course result {RESULTS} {exercise}"


def test_step(exercise: str, points: int) -> str:
    return "\n".join([
        f"      - name: {exercise}",
        f"        id: {exercise}",
        "        uses: classroom-resources/autograding-command-grader@v1",
        "        with:",
        f"          test-name: {exercise}",
        f"          command: {result_command(exercise)}",
        "          timeout: 1",
        f"          max-score: {points}",
    ])


def workflow(lesson: str, points: int = 1) -> str:
    if lesson not in config.LESSON_SLUGS:
        raise SystemExit(f"classroom: no lesson {lesson!r}; the lessons are {', '.join(config.LESSON_SLUGS)}.")
    exercises = lesson_exercises()[lesson]
    notebook = f"lessons/{next(p.name for p in sorted(config.LESSONS.glob(f'{lesson}_*.ipynb')))}"
    env = "\n".join(f"          {e.upper()}_RESULTS: \"${{{{steps.{e}.outputs.result}}}}\"" for e in exercises)
    return (TEMPLATE.read_text(encoding="utf-8")
            .replace("__LESSON__", lesson)
            .replace("__GRADE_COMMAND__", grade_command(notebook))
            .replace("__TESTS__", "\n".join(test_step(e, points) for e in exercises))
            .replace("__REPORTER_ENV__", env)
            .replace("__RUNNERS__", ",".join(exercises)))


def classroom_command(args) -> int:
    text = workflow(args.lesson, args.points)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0

"""The command line: ``python -m course build | check | bench | grade | result | classroom | site``."""
from __future__ import annotations

import argparse
import sys

from . import __doc__ as package_doc


def grade_command(args) -> int:
    import shlex
    import time
    from pathlib import Path

    from .grade import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, files_not_graded, grade_all
    from .gradebook import csv_text, summary_text, write_feedback

    out = Path(args.out)
    summary = Path(args.summary) if args.summary else out.with_suffix(".md")
    memory = DEFAULT_MEMORY_MB if args.memory_mb is None else (args.memory_mb or None)
    timeout = args.timeout or DEFAULT_TIMEOUT
    start = time.perf_counter()

    def progress(grade):
        result = f"{grade.score}/{len(grade.results)}" if grade.lesson else "not graded"
        print(f"{grade.submission}: {result}" + (f" ({grade.note})" if grade.note else ""), flush=True)

    skipped = files_not_graded(args.submissions)
    if skipped:
        print(f"grade: {len(skipped)} file(s) in the folders given are not notebooks and are not graded: "
              + ", ".join(str(p) for p in skipped) + " (ask for the .ipynb, or pass a file by name to get its reason).")
    grades = grade_all(args.submissions, jobs=args.jobs, timeout=timeout, memory_mb=memory,
                       keep_notebooks=bool(args.feedback), progress=progress)
    if not grades:
        print("grade: no submissions found (give notebooks, or folders that hold them).")
        return 2
    command = "python -m course grade " + " ".join(shlex.quote(s) for s in args.submissions)
    for path, text in ((out, csv_text(grades)), (summary, summary_text(grades, command))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if args.feedback:
        write_feedback(grades, Path(args.feedback))
    ran = sum(g.ran for g in grades)
    print(f"grade: {len(grades)} submission(s), {ran} ran, in {time.perf_counter() - start:.0f} s; "
          f"wrote {out} and {summary}" + (f" and feedback in {args.feedback}" if args.feedback else "") + ".")
    return 0


def result_command(args) -> int:
    from .gradebook import exercise_verdict, read_csv

    try:
        table = read_csv(args.csv)
    except OSError as exc:
        print(f"{args.exercise}: the grades file {args.csv} could not be read ({exc.strerror or exc})")
        return 1
    passed, line = exercise_verdict(table, args.exercise)
    print(line)
    return 0 if passed else 1


def translate_command(args) -> int:
    from . import config, translate
    matches = sorted(config.SOLUTIONS.glob(f"{args.lesson}_*.ipynb"))
    if len(matches) != 1:
        print(f"There is no lesson {args.lesson!r}: give its number, e.g. 03.")
        return 2
    stem = matches[0].stem
    try:
        todo = translate.worklist(stem, args.lang)
    except ValueError as exc:
        print(exc)
        return 2
    out = translate.translation_path(stem, args.lang).with_suffix(".todo.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(todo, encoding="utf-8")
    count = len(translate.parse(todo))
    print(f"wrote {out.relative_to(config.ROOT)}: {count} cell(s) to translate; translate them there, then move the "
          f"entries into {out.with_suffix('').with_suffix('.md').name} and run `make build`.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="write lessons/ from solutions/ and stamp badges and setup cells")
    sub.add_parser("check", help="fail if lessons/, setup cells or the README table are stale, or notebooks carry outputs")
    b = sub.add_parser("bench", help="run solution notebooks at full settings and record the numbers")
    b.add_argument("lessons", nargs="*", help="lesson numbers or names, e.g. 01 03 (default: all)")
    b.add_argument("--fast", action="store_true", help="run in fast mode (writes results-fast.json)")
    g = sub.add_parser("grade", help="grade student notebooks (files or folders): a CSV and a class summary")
    g.add_argument("submissions", nargs="+", help="notebooks, or folders searched for *.ipynb")
    g.add_argument("--out", default="grades.csv", help="the CSV to write (default: grades.csv)")
    g.add_argument("--summary", default=None, help="the class summary to write (default: next to --out, .md)")
    g.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: the number of cores)")
    g.add_argument("--timeout", type=int, default=None, help="seconds each notebook may run (default: 300)")
    g.add_argument("--memory-mb", type=int, default=None, help="memory cap per notebook, in MB (Linux; default 4096, 0: none)")
    g.add_argument("--feedback", default=None, help="folder for each student's executed notebook, to hand back")
    r = sub.add_parser("result", help="one exercise's result from a grades CSV; exit status 0 only if it passed")
    r.add_argument("csv", help="a CSV written by `python -m course grade`")
    r.add_argument("exercise", help="an exercise name, e.g. kl_divergence")
    c = sub.add_parser("classroom", help="write a GitHub Classroom autograding workflow for one lesson")
    c.add_argument("lesson", help="the lesson number, e.g. 03")
    c.add_argument("--out", default=None, help="where to write it (default: print it)")
    c.add_argument("--points", type=int, default=1, help="points per exercise (default 1)")
    s = sub.add_parser("site", help="build the course website (_site/full/html, or _site/fast/html with --fast)")
    s.add_argument("--fast", action="store_true", help="execute the notebooks in fast mode (for CI and authors)")
    t = sub.add_parser("translate", help="write the list of cells of a lesson that need (re)translating")
    t.add_argument("lesson", help="the lesson number, e.g. 03")
    t.add_argument("--lang", default="id", help="the edition's language code (default: id, Bahasa Indonesia)")
    args = parser.parse_args(argv)
    if args.command == "translate":
        return translate_command(args)
    if args.command == "build":
        from .build import build
        return build()
    if args.command == "check":
        from .build import check
        return check()
    if args.command == "bench":
        from .bench import bench
        return bench(args.lessons, fast=args.fast)
    if args.command == "site":
        from .site import build_site
        return build_site(fast=args.fast)
    if args.command == "grade":
        return grade_command(args)
    if args.command == "result":
        return result_command(args)
    from .classroom import classroom_command
    return classroom_command(args)


if __name__ == "__main__":
    sys.exit(main())

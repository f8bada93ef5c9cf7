"""Course tooling: ``python -m utils.course build | check | bench``.

build  writes lessons/ from solutions/ (the single source): answers between
       ``### BEGIN SOLUTION`` / ``### END SOLUTION`` become a stub, hidden tests are dropped,
       outputs are stripped, and every notebook gets the same badges and setup cell.
check  fails when lessons/ or a setup cell is stale, or a notebook carries outputs.
bench  runs solution notebooks at full settings and records seconds, peak memory and metrics.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
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

SETUP_TEMPLATE = '''\
# Setup: stamped from utils/course.py by `python -m utils.course build`; edit it there, not here.
import importlib.util, os, subprocess, sys
from pathlib import Path

REPO = "{repo}"
HOSTED = "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ
COURSE_ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "utils" / "course.py").is_file()), None)
if COURSE_ROOT is None and HOSTED:  # Colab or Kaggle: fetch the course once
    COURSE_ROOT = Path("genai-hands-on").resolve()
    if not COURSE_ROOT.exists():
        clone = subprocess.run(["git", "clone", "-q", "--depth", "1", "-b", "{branch}",
                                f"https://github.com/{{REPO}}.git", str(COURSE_ROOT)], capture_output=True,
                               env={{**os.environ, "GIT_TERMINAL_PROMPT": "0"}}, timeout=120)
        if clone.returncode != 0:
            raise SystemExit("Could not download the course from GitHub: on Kaggle, switch Internet on in "
                             "the notebook's Settings panel (it needs a verified phone number), then rerun.")
    missing = [pkg for mod, pkg in [("mlxtend", "mlxtend"), ("tqdm", "tqdm"), ("sklearn", "scikit-learn"),
                                    ("ipywidgets", "ipywidgets")] if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=False)
if COURSE_ROOT is None:
    raise SystemExit("Could not find the course folder: open this notebook from inside the course repository.")
if str(COURSE_ROOT) not in sys.path:
    sys.path.insert(0, str(COURSE_ROOT))
%matplotlib inline
import utils
utils.print_environment()'''

BADGES_TEMPLATE = (
    "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    "(https://colab.research.google.com/github/{repo}/blob/{branch}/{folder}/{name}) "
    "[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
    "(https://kaggle.com/kernels/welcome?src=https://github.com/{repo}/blob/{branch}/{folder}/{name})")


def setup_source() -> str:
    return SETUP_TEMPLATE.format(repo=REPO, branch=BRANCH)


def badges_source(folder: str, name: str) -> str:
    return BADGES_TEMPLATE.format(repo=REPO, branch=BRANCH, folder=folder, name=name)


# --------------------------------------------------------------------------- notebook I/O

def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path} is not a readable notebook ({exc}).") from None


def dumps_notebook(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def source_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def tags(cell: dict) -> list:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def add_tag(cell: dict, tag: str) -> None:
    if tag not in tags(cell):
        tags(cell).append(tag)


def strip_outputs(nb: dict) -> dict:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        if not cell.get("metadata", {}).get("tags"):
            cell.get("metadata", {}).pop("tags", None)
    nb["metadata"] = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def has_outputs(nb: dict) -> bool:
    return any(c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb["cells"])


# --------------------------------------------------------------------------- stamping and stubbing

def stamp(nb: dict, folder: str, name: str) -> dict:
    """Put the generated badges and setup cells in place (after the title), replacing old ones."""
    cells = [c for c in nb["cells"] if not ({SETUP_TAG, BADGES_TAG} & set(c.get("metadata", {}).get("tags", [])))]
    title_at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
    old = {t: c for c in nb["cells"] for t in c.get("metadata", {}).get("tags", []) if t in (SETUP_TAG, BADGES_TAG)}
    badges = {"cell_type": "markdown", "id": old.get(BADGES_TAG, {}).get("id", "badges"),
              "metadata": {"tags": [BADGES_TAG]}, "source": []}
    set_source(badges, badges_source(folder, name))
    setup = {"cell_type": "code", "id": old.get(SETUP_TAG, {}).get("id", "setup"),
             "metadata": {"tags": [SETUP_TAG]}, "source": [], "outputs": [], "execution_count": None}
    set_source(setup, setup_source())
    # setup goes after the "what you will learn" cell when there is one, else right after the badges
    setup_at = title_at + 2 if len(cells) > title_at + 1 and cells[title_at + 1]["cell_type"] == "markdown" else title_at + 1
    cells.insert(setup_at, setup)
    cells.insert(title_at + 1, badges)
    nb["cells"] = cells
    return nb


def _replace_regions(text: str, begin: str, end: str, stub: list | None, where: str) -> tuple[str, int]:
    """Replace each begin..end region (marker lines included) by ``stub`` at the marker's indent."""
    out, count, inside, indent = [], 0, False, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"{where}: '{begin}' inside another region.")
            inside, indent, count = True, line[: len(line) - len(line.lstrip())], count + 1
            out.extend(indent + s for s in (stub or []))
        elif stripped == end:
            if not inside:
                raise ValueError(f"{where}: '{end}' without a '{begin}' before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{begin}' is never closed by '{end}'.")
    return "\n".join(out), count


def make_lesson(solution: dict, name: str) -> dict:
    """The student version of a solution notebook (which must already be stamped and stripped)."""
    nb = copy.deepcopy(solution)
    for i, cell in enumerate(nb["cells"]):
        where = f"{name}, cell {i}"
        text = source_text(cell)
        if SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        text, hidden = _replace_regions(text, BEGIN_HIDDEN, END_HIDDEN, None, where)
        stub = CODE_STUB if cell["cell_type"] == "code" else MARKDOWN_STUB
        text, solved = _replace_regions(text, BEGIN_SOLUTION, END_SOLUTION, stub, where)
        if solved and cell["cell_type"] == "code":
            add_tag(cell, EXERCISE_TAG)
        if solved or hidden:
            set_source(cell, text)
    stamp(nb, "lessons", name)
    return nb


def expected_notebooks() -> dict[Path, str]:
    """Every notebook the build writes, path -> exact text."""
    result = {}
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        solution = stamp(strip_outputs(read_notebook(path)), "solutions", path.name)
        result[path] = dumps_notebook(solution)
        result[LESSONS / path.name] = dumps_notebook(make_lesson(solution, path.name))
    return result


README_START, README_END = "<!-- lesson-table:start (generated by `make build`) -->", "<!-- lesson-table:end -->"


def lesson_table() -> str:
    """The README's lesson table, with badges that follow REPO."""
    rows = ["| # | lesson | student notebook | with answers | run it |", "|---|---|---|---|---|"]
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        nb = read_notebook(path)
        title = next((source_text(c) for c in nb["cells"] if c["cell_type"] == "markdown"), path.stem)
        title = title.splitlines()[0].lstrip("# ").split("·", 1)[-1].strip()
        rows.append(f"| {path.name[:2]} | {title} | [lessons/{path.name}](lessons/{path.name}) | "
                    f"[solutions/{path.name}](solutions/{path.name}) | {badges_source('lessons', path.name)} |")
    return "\n".join(rows)


def expected_readme() -> str | None:
    readme = ROOT / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return text
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{lesson_table()}\n{README_END}{tail}"


def build() -> int:
    LESSONS.mkdir(exist_ok=True)
    written = 0
    readme = expected_readme()
    if readme is not None and readme != (ROOT / "README.md").read_text(encoding="utf-8"):
        (ROOT / "README.md").write_text(readme, encoding="utf-8")
        print("wrote README.md (lesson table)")
    for path, text in expected_notebooks().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
            written += 1
    print(f"build: {written} notebook(s) written, everything else already up to date.")
    return 0


def check() -> int:
    problems = []
    expected = expected_notebooks()
    for path, text in expected.items():
        rel = path.relative_to(ROOT)
        if not path.exists():
            problems.append(f"{rel} is missing: run `make build`.")
            continue
        nb = read_notebook(path)
        if has_outputs(nb):
            problems.append(f"{rel} carries outputs: run `make build` to strip them.")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel} is stale (lesson, badges or setup cell differ from the build): run `make build`.")
    for path in sorted(LESSONS.glob("*.ipynb")):
        if path not in expected:
            problems.append(f"{path.relative_to(ROOT)} has no solution notebook: lessons are generated from solutions/.")
    readme = expected_readme()
    if readme is not None and readme != (ROOT / "README.md").read_text(encoding="utf-8"):
        problems.append("README.md's lesson table is stale: run `make build`.")
    for p in problems:
        print(p)
    print("check: OK" if not problems else f"check: {len(problems)} problem(s).")
    return 1 if problems else 0


# --------------------------------------------------------------------------- benchmark

def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gb = float("nan")
    gpu = "no GPU"
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {gpu}"


BENCH_ENV = ("GENAI_SHAKESPEARE", "GENAI_DEVICE", "GENAI_OFFLINE", "GENAI_DATA_DIR")  # recorded with the command

PEAK_CELL = ("import utils.runtime as _rt\n"
             "_rt.report_metric('_peak_mb', _rt.peak_memory_mb(), 'MB')")


def run_notebook(path: Path, fast: bool, timeout: int = 1800) -> dict:
    """Execute one notebook in a fresh kernel; return seconds, peak MB and reported metrics."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = Path(tmp) / "metrics.json"
        env_backup = dict(os.environ)
        os.environ["GENAI_METRICS_FILE"] = str(metrics_file)
        os.environ.pop("GENAI_FAST", None)
        if fast:
            os.environ["GENAI_FAST"] = "1"
        try:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    peak = metrics.pop("_peak_mb", float("nan"))
    return {"seconds": round(seconds, 1), "peak_mb": round(peak, 1), "metrics": metrics}


def write_results(entries: list, results_path: Path, table_path: Path) -> None:
    results_path.write_text(json.dumps(entries, indent=1) + "\n")
    lines = ["# Benchmark results", "",
             "Written by `python -m utils.course bench`; do not edit by hand. "
             "Each row is one run of a solution notebook at full settings in a fresh kernel.", ""]
    for e in entries:
        lines += [f"## {e['lesson']}", "",
                  f"- {e['seconds']} s wall clock for the whole notebook, peak memory {e['peak_mb']} MB",
                  f"- machine: {e['machine']}; Python {e['python']}, torch {e['torch']}",
                  f"- date: {e['date']}; command: `{e['command']}`", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in e["metrics"].items()]
        lines.append("")
    table_path.write_text("\n".join(lines))


def bench(selection: list, fast: bool = False) -> int:
    import torch

    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
        if not paths:
            raise SystemExit(f"No solution notebook matches {selection}; try e.g. `bench 01`.")
    results_path = BENCH_DIR / ("results-fast.json" if fast else "results.json")
    table_path = BENCH_DIR / ("RESULTS-fast.md" if fast else "RESULTS.md")
    entries = json.loads(results_path.read_text()) if results_path.exists() else []
    settings = "".join(f"{name}={os.environ[name]} " for name in BENCH_ENV if os.environ.get(name))
    command = settings + "python -m utils.course bench" + (" --fast" if fast else "") + "".join(f" {s}" for s in selection)
    for path in paths:
        print(f"bench: running {path.relative_to(ROOT)} at {'fast' if fast else 'full'} settings ...", flush=True)
        result = run_notebook(path, fast)
        entry = {"lesson": path.stem, **result, "machine": machine_description(),
                 "python": platform.python_version(), "torch": torch.__version__,
                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command}
        print(f"bench: {path.stem}: {entry['seconds']} s, peak {entry['peak_mb']} MB, metrics {entry['metrics']}")
        entries = [e for e in entries if e["lesson"] != path.stem] + [entry]
        entries.sort(key=lambda e: e["lesson"])
        BENCH_DIR.mkdir(exist_ok=True)
        write_results(entries, results_path, table_path)
    print(f"bench: wrote {results_path.relative_to(ROOT)} and {table_path.relative_to(ROOT)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="write lessons/ from solutions/ and stamp setup cells")
    sub.add_parser("check", help="fail if lessons/ or setup cells are stale or notebooks carry outputs")
    b = sub.add_parser("bench", help="run solution notebooks at full settings and record the numbers")
    b.add_argument("lessons", nargs="*", help="lesson numbers or names, e.g. 01 03 (default: all)")
    b.add_argument("--fast", action="store_true", help="run in fast mode (writes results-fast.json)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build()
    if args.command == "check":
        return check()
    return bench(args.lessons, fast=args.fast)


if __name__ == "__main__":
    sys.exit(main())

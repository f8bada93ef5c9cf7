"""The course tool: lessons generated from solutions, stale checks, setup cells, the benchmark."""
import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest

from course import bench, config, stamp
from course.build import build, check
from course.lesson import make_lesson

SOLUTION_CODE = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    secret_answer = 2 * x
    return secret_answer
    ### END SOLUTION'''
HIDDEN = "print(double(2))\n### BEGIN HIDDEN TESTS\nassert double(3) == 6  # hidden_marker\n### END HIDDEN TESTS"


def make_solution(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 Demo"),
                nbformat.v4.new_markdown_cell("## What you will learn\n- doubling"),
                nbformat.v4.new_code_cell("import math"),
                nbformat.v4.new_code_cell(SOLUTION_CODE),
                nbformat.v4.new_code_cell(HIDDEN),
                nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause secret_reason.\n### END SOLUTION"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["nbval-ignore-output"]})]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[2].execution_count = 3
    nbformat.write(nb, str(path))


@pytest.fixture
def course_dirs(tmp_path, monkeypatch):
    sol, les = tmp_path / "solutions", tmp_path / "lessons"
    sol.mkdir()
    monkeypatch.setattr(config, "ROOT", tmp_path)
    monkeypatch.setattr(config, "SOLUTIONS", sol)
    monkeypatch.setattr(config, "LESSONS", les)
    monkeypatch.setattr(config, "EDITIONS", {})  # the demo lesson has no translated edition
    make_solution(sol / "99_demo.ipynb")
    return sol, les


def cells(path):
    return json.loads(path.read_text())["cells"]


def test_build_round_trip(course_dirs):
    sol, les = course_dirs
    assert build() == 0
    lesson, solution = cells(les / "99_demo.ipynb"), cells(sol / "99_demo.ipynb")
    assert len(lesson) == len(solution) == 9  # 7 authored + badges + setup
    text = json.dumps(lesson)
    assert "secret_answer" not in text and "secret_reason" not in text and "hidden_marker" not in text
    stub = "".join(lesson[5]["source"])
    assert stub == 'def double(x):\n    """Twice x."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
    assert lesson[5]["metadata"]["tags"] == ["raises-exception"]
    assert "".join(lesson[6]["source"]) == "print(double(2))"
    assert "YOUR ANSWER HERE" in "".join(lesson[7]["source"])
    for i in (0, 2, 4, 8):  # every other cell is identical to the solution's
        assert lesson[i] == solution[i]
    assert "secret_answer" in "".join(solution[5]["source"]), "solutions keep their answers"
    # badges after the title, setup after "what you will learn"; both stamped from one template
    assert lesson[1]["metadata"]["tags"] == ["badges"] and "lessons/99_demo.ipynb" in "".join(lesson[1]["source"])
    assert "solutions/99_demo.ipynb" in "".join(solution[1]["source"])
    assert "".join(lesson[3]["source"]) == "".join(solution[3]["source"]) == stamp.setup_source()
    assert config.REPO in stamp.setup_source() and config.REPO in "".join(lesson[1]["source"])
    # outputs stripped everywhere
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in lesson + solution if c["cell_type"] == "code")


def test_build_is_idempotent_and_check_passes(course_dirs, capsys):
    build()
    capsys.readouterr()
    assert build() == 0 and "0 notebook(s) written" in capsys.readouterr().out
    assert check() == 0


def test_check_fails_on_stale_lesson(course_dirs, capsys):
    sol, les = course_dirs
    build()
    nb = json.loads((sol / "99_demo.ipynb").read_text())
    nb["cells"][4]["source"] = ["print(double(5))"]
    (sol / "99_demo.ipynb").write_text(json.dumps(nb))
    assert check() == 1
    assert "lessons/99_demo.ipynb is stale" in capsys.readouterr().out


def test_check_fails_on_outputs_and_orphans(course_dirs, capsys):
    sol, les = course_dirs
    build()
    nb = json.loads((les / "99_demo.ipynb").read_text())
    nb["cells"][4]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi"]}]
    (les / "99_demo.ipynb").write_text(json.dumps(nb))
    (les / "98_orphan.ipynb").write_text((les / "99_demo.ipynb").read_text())
    assert check() == 1
    out = capsys.readouterr().out
    assert "carries outputs" in out and "98_orphan.ipynb has no solution" in out


def test_check_fails_on_edited_setup_cell(course_dirs, capsys):
    sol, _ = course_dirs
    build()
    nb = json.loads((sol / "99_demo.ipynb").read_text())
    nb["cells"][3]["source"] = ["import utils  # hand-edited"]
    (sol / "99_demo.ipynb").write_text(json.dumps(nb))
    assert check() == 1


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_unbalanced_markers_are_reported(source, message):
    nb = {"cells": [{"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    with pytest.raises(ValueError, match=message):
        make_lesson(nb, "x.ipynb")


def test_repository_notebooks_are_in_sync():
    assert check() == 0, "run `make build`"


def test_bench_records_seconds_memory_and_metrics(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import sys; sys.path.insert(0, %r)\nimport utils\nutils.report_metric('answer', 42)\n"
        "utils.report_metric('fast', float(utils.is_fast()))" % str(config.ROOT))]
    path = tmp_path / "50_tiny.ipynb"
    nbformat.write(nb, str(path))
    result = bench.run_notebook(path, fast=False, timeout=120)
    assert result["metrics"] == {"answer": 42.0, "fast": 0.0}
    assert result["seconds"] > 0 and 10 < result["peak_mb"] < 4000
    entry = {"lesson": "50_tiny", **result, "machine": bench.machine_description(), "python": "3", "torch": "2",
             "date": "today", "command": "python -m course bench 50"}
    bench.write_results([entry], tmp_path / "r.json", tmp_path / "R.md")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert set(saved[0]) >= {"lesson", "seconds", "peak_mb", "metrics", "machine", "python", "torch", "date", "command"}
    assert "| answer | 42 |" in (tmp_path / "R.md").read_text()


# The setup cell's own tests (offline, stalled network, half-cloned folder, ...) are in tests/test_setup_cell.py.


def test_build_stamps_the_lesson_into_notebook_metadata(course_dirs):
    sol, les = course_dirs
    build()
    for path in (sol / "99_demo.ipynb", les / "99_demo.ipynb"):
        assert json.loads(path.read_text())["metadata"][config.METADATA_KEY] == {"lesson": "99"}
    real = json.loads((config.SOLUTIONS / "99_demo.ipynb").read_text())
    assert real["metadata"]["kernelspec"]["name"] == "python3"


def test_bench_command_records_paths_relative_to_the_repository(monkeypatch):
    shared = config.ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    monkeypatch.setenv("GENAI_SHAKESPEARE", str(shared))
    monkeypatch.delenv("GENAI_DEVICE", raising=False)
    assert bench.bench_command(["06"], fast=False) == \
        "GENAI_SHAKESPEARE=../shared/data/tinyshakespeare.txt python -m course bench 06"
    monkeypatch.setenv("GENAI_SHAKESPEARE", "data/x.txt")  # already relative: kept as written
    assert bench.bench_command([], fast=True).startswith("GENAI_SHAKESPEARE=data/x.txt python -m course bench --fast")


def test_execute_runs_with_its_own_environment_and_reports_errors(tmp_path, monkeypatch):
    from course.execute import execute
    monkeypatch.setenv("GENAI_FAST", "1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os; print(os.environ.get('GENAI_FAST'), os.environ['EXTRA'], os.getcwd())"),
                nbformat.v4.new_code_cell("1 / 0")]
    run = execute(nb, cwd=tmp_path, fast=False, env={"EXTRA": "yes"}, timeout=60)
    assert run.error and "ZeroDivisionError" in run.error
    assert nb.cells[0].outputs[0]["text"].split() == ["None", "yes", str(tmp_path)]
    assert __import__("os").environ["GENAI_FAST"] == "1"  # the caller's environment is untouched


def _run_tiny_notebook(i: int):
    from course.execute import execute
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print({i} * 2)")])
    run = execute(nb, cwd=Path(tempfile.gettempdir()), fast=True, timeout=60)
    printed = nb.cells[0].outputs[0].get("text", "").strip() if nb.cells[0].outputs else ""
    return run.error, printed


@pytest.mark.skipif(os.name != "posix", reason="kernels talk over Unix sockets only on POSIX systems")
def test_kernels_started_side_by_side_in_processes_never_collide():
    """Over TCP, managers in separate processes could pick the same free port and a kernel then died at
    start (about 1 in 240 kernels, 8 at a time, on the 2-core machine); grading with --jobs does this."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_run_tiny_notebook, range(16)))
    assert results == [(None, str(i * 2)) for i in range(16)]


def test_execute_uses_unix_sockets_and_reports_a_kernel_that_cannot_start(tmp_path):
    from course.execute import _kernel_manager, execute, memory_cap_supported
    manager = _kernel_manager(str(tmp_path), memory_mb=None)(kernel_name="python3")
    assert manager.transport == ("ipc" if os.name == "posix" else "tcp")
    if memory_cap_supported():  # 1 MB is too little for Python itself: the kernel dies before it answers
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
        run = execute(nb, cwd=tmp_path, fast=True, timeout=60, memory_mb=1)
        assert run.error and "kernel" in run.error


def test_bench_gives_the_kernel_absolute_data_paths(tmp_path, monkeypatch):
    """The kernel runs in solutions/, so a path typed relative to the repository must arrive absolute."""
    monkeypatch.chdir(tmp_path)
    env = {"GENAI_SHAKESPEARE": "../shared/data/tinyshakespeare.txt", "GENAI_DEVICE": "cpu"}
    assert bench.absolute_paths(env) == {"GENAI_SHAKESPEARE": str(tmp_path.parent / "shared/data/tinyshakespeare.txt")}
    assert bench.absolute_paths({"GENAI_DATA_DIR": "/abs/data"}) == {"GENAI_DATA_DIR": "/abs/data"}

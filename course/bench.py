"""The benchmark: each solution notebook at full settings in a fresh kernel, timed, with its metrics.

Notebooks report numbers through ``utils.report_metric``, which appends them to the file named by
``GENAI_METRICS_FILE``; this module sets that variable, runs the notebook and writes
``benchmarks/results.json`` and ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import config
from .execute import execute

BENCH_ENV = ("GENAI_SHAKESPEARE", "GENAI_DEVICE", "GENAI_OFFLINE", "GENAI_DATA_DIR")  # recorded with the command
PATH_ENV = ("GENAI_SHAKESPEARE", "GENAI_DATA_DIR")  # paths: relative to where the command runs, not the notebook
METRICS_ENV = "GENAI_METRICS_FILE"
PEAK_CELL = ("import utils.runtime as _rt\n"
             "_rt.report_metric('_peak_mb', _rt.peak_memory_mb(), 'MB')")


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


def absolute_paths(environ=os.environ) -> dict:
    """The path variables that are set, made absolute: the kernel runs in the notebook's folder, so
    ``GENAI_SHAKESPEARE=../shared/data/tinyshakespeare.txt`` typed at the repository root must not be
    read from ``solutions/``."""
    return {name: os.path.abspath(environ[name]) for name in PATH_ENV if environ.get(name)}


def run_notebook(path: Path, fast: bool, timeout: int = 1800) -> dict:
    """Execute one notebook in a fresh kernel; return seconds, peak MB and reported metrics."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = Path(tmp) / "metrics.json"
        run = execute(nb, cwd=path.parent, fast=fast, env={METRICS_ENV: str(metrics_file), **absolute_paths()}, timeout=timeout)
        if run.error:
            raise SystemExit(f"bench: {path.name}: {run.error}")
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    peak = metrics.pop("_peak_mb", float("nan"))
    return {"seconds": round(run.seconds, 1), "peak_mb": round(peak, 1), "metrics": metrics}


def portable(value: str) -> str:
    """A path inside the repository's parent folder written relative to the repository, so records read alike."""
    try:
        return os.path.relpath(os.path.abspath(value), config.ROOT) if Path(value).is_absolute() else value
    except (OSError, ValueError):
        return value


def bench_command(selection: list, fast: bool) -> str:
    settings = "".join(f"{name}={portable(os.environ[name])} " for name in BENCH_ENV if os.environ.get(name))
    return (settings + "python -m course bench" + (" --fast" if fast else "")
            + "".join(f" {s}" for s in selection))


def load_results(path: Path) -> list:
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict) and "lesson" in e] if isinstance(entries, list) else []


def write_results(entries: list, results_path: Path, table_path: Path) -> None:
    results_path.write_text(json.dumps(entries, indent=1) + "\n")
    lines = ["# Benchmark results", "",
             "Written by `python -m course bench`; do not edit by hand. "
             "Each row is one run of a solution notebook in a fresh kernel.", ""]
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

    paths = config.solution_paths()
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
        if not paths:
            raise SystemExit(f"No solution notebook matches {selection}; try e.g. `bench 01`.")
    results_path = config.BENCH_DIR / ("results-fast.json" if fast else "results.json")
    table_path = config.BENCH_DIR / ("RESULTS-fast.md" if fast else "RESULTS.md")
    entries = load_results(results_path)
    command = bench_command(selection, fast)
    for path in paths:
        print(f"bench: running {path.relative_to(config.ROOT)} at {'fast' if fast else 'full'} settings ...", flush=True)
        result = run_notebook(path, fast)
        entry = {"lesson": path.stem, **result, "machine": machine_description(),
                 "python": platform.python_version(), "torch": torch.__version__,
                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command}
        print(f"bench: {path.stem}: {entry['seconds']} s, peak {entry['peak_mb']} MB, metrics {entry['metrics']}")
        entries = sorted([e for e in entries if e["lesson"] != path.stem] + [entry], key=lambda e: e["lesson"])
        config.BENCH_DIR.mkdir(exist_ok=True)
        write_results(entries, results_path, table_path)
    print(f"bench: wrote {results_path.relative_to(config.ROOT)} and {table_path.relative_to(config.ROOT)}")
    return 0

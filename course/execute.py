"""Run a notebook in a fresh kernel, with its own environment, working folder and time limit.

Shared by the benchmark and by every tool that executes notebooks (grading, the site). The caller's
``os.environ`` is never modified, so several notebooks can run at once from threads.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

FAST_ENV = "GENAI_FAST"


@dataclass
class Execution:
    notebook: object          # the executed nbformat.NotebookNode, outputs included
    seconds: float
    error: str | None = None  # one sentence when the run stopped early, else None


def kernel_env(fast: bool, extra: dict | None = None) -> dict:
    """This process's environment with fast mode switched on or off and ``extra`` laid over it."""
    env = {k: v for k, v in os.environ.items() if k != FAST_ENV}
    if fast:
        env[FAST_ENV] = "1"
    env.update(extra or {})
    return env


def execute(nb, cwd: Path, fast: bool, env: dict | None = None, timeout: int = 1800,
            allow_errors: bool = False, kernel_name: str = "python3") -> Execution:
    """Execute ``nb`` (a NotebookNode, changed in place) with ``cwd`` as its working folder.

    ``timeout`` bounds each cell. With ``allow_errors`` a failing cell is recorded in its output and the
    run goes on; otherwise the first error stops it and ``error`` says which cell and why.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute(env=kernel_env(fast, env))
    except CellTimeoutError:
        error = f"a cell ran for more than {timeout} s and was stopped."
    except DeadKernelError:
        error = "the kernel died (a crash, or it ran out of memory)."
    except CellExecutionError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        error = f"a cell raised an error: {lines[-1] if lines else exc}"
    return Execution(nb, time.perf_counter() - start, error)

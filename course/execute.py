"""Run a notebook in a fresh kernel, with its own environment, working folder and time limit.

Shared by the benchmark and by every tool that executes notebooks (grading, the site). The caller's
``os.environ`` is never modified, so several notebooks can run at once from threads.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FAST_ENV = "GENAI_FAST"

# Runs in place of the kernel command: cap the data segment (heap and anonymous mappings, which is where
# tensors live), then become the kernel itself, so the kernel keeps the process id its manager knows.
_CAP_MEMORY = ("import os, resource, sys; limit = int(sys.argv[1]); "
               "resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)); os.execvp(sys.argv[2], sys.argv[2:])")


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


def memory_cap_supported() -> bool:
    """A per-kernel memory cap needs Linux's RLIMIT_DATA (which counts anonymous mappings since 4.7)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import resource
        return hasattr(resource, "RLIMIT_DATA")
    except ImportError:
        return False


def _kernel_manager(connection_dir: str, memory_mb: int | None):
    """A kernel manager class whose kernels talk over Unix sockets in ``connection_dir``, under a memory cap.

    Over TCP each manager picks five free ports by binding and releasing them, and the kernel binds them
    a moment later; managers in other processes (grading with --jobs) can pick the same port in between,
    and the kernel then dies at start (jupyter_client issue 487). Socket files named after a fresh folder
    cannot collide. ``memory_mb`` caps the kernel's data segment (see ``memory_cap_supported``).
    """
    from jupyter_client import AsyncKernelManager

    class CourseKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if os.name == "posix":
                self.transport = "ipc"
                self.connection_file = os.path.join(connection_dir, "kernel.json")
                self.ip = os.path.join(connection_dir, "kernel-ipc")

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if memory_mb and memory_cap_supported():
                cmd = [sys.executable, "-c", _CAP_MEMORY, str(memory_mb * 2**20), *cmd]
            return cmd

    return CourseKernelManager


def execute(nb, cwd: Path, fast: bool, env: dict | None = None, timeout: int = 1800,
            allow_errors: bool = False, kernel_name: str = "python3", total_timeout: float | None = None,
            memory_mb: int | None = None) -> Execution:
    """Execute ``nb`` (a NotebookNode, changed in place) with ``cwd`` as its working folder.

    ``timeout`` bounds each cell, ``total_timeout`` (seconds) the whole notebook. With ``allow_errors`` a
    failing cell is recorded in its output and the run goes on; otherwise the first error stops it and
    ``error`` says which cell and why. ``memory_mb`` caps the kernel's memory where the platform allows
    it (see ``memory_cap_supported``) and is ignored elsewhere.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    start = time.perf_counter()
    options = {}
    if total_timeout is not None:
        deadline = start + total_timeout
        options["timeout_func"] = lambda cell: max(1, min(timeout, int(deadline - time.perf_counter()) + 1))
    connection_dir = tempfile.mkdtemp(prefix="genai-kernel-")  # short: a socket path has ~100 characters
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}},
                            kernel_manager_class=_kernel_manager(connection_dir, memory_mb), **options)
    error = None
    try:
        client.execute(env=kernel_env(fast, env))
    except CellTimeoutError:
        limit = total_timeout if total_timeout is not None and time.perf_counter() >= deadline else timeout
        error = (f"it ran for more than {limit:g} s and was stopped (an endless loop, or far too much work)."
                 if limit == total_timeout else f"a cell ran for more than {timeout} s and was stopped.")
    except DeadKernelError:
        error = "the kernel died (a crash, or it ran out of memory)."
    except RuntimeError as exc:  # jupyter_client: "Kernel died before replying to kernel_info"
        error = f"the kernel did not start ({exc})."
    except CellExecutionError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        error = f"a cell raised an error: {lines[-1] if lines else exc}"
    finally:
        atexit.unregister(client._cleanup_kernel)  # nbclient leaves it registered when the kernel never started
        shutil.rmtree(connection_dir, ignore_errors=True)
    return Execution(nb, time.perf_counter() - start, error)

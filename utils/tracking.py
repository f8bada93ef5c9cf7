"""Experiment tracking with Weights & Biases, offline by default, and nothing at all without it.

    run = utils.tracking.start("rl-beta-0.1", config={"beta": 0.1})
    run.log(step, reward=0.3, kl=0.02)           # curves
    run.table("samples", ["step", "text"], rows)  # a table of samples
    run.finish()                                  # prints where the run folder is

When ``wandb`` is installed, the run is written to a folder under ``data/wandb/`` in offline mode: nothing
leaves the machine. ``wandb sync <that folder>`` uploads it later, and ``WANDB_MODE=online`` (after
``wandb login``) logs live. When ``wandb`` is not installed, or cannot start, ``start`` says so in one sentence
and returns a run whose methods do nothing, so a lesson runs the same either way.
"""
from __future__ import annotations

import os
from pathlib import Path

from .runtime import DATA_DIR

PROJECT = "genai-hands-on"
MODE_ENV = "WANDB_MODE"        # wandb's own variable: offline (our default), online or disabled
DIR_ENV = "GENAI_WANDB_DIR"    # where run folders go (default data/wandb)
_said_missing = False


class Run:
    """A tracked run. ``active`` is False when nothing is being recorded (then every method does nothing)."""

    def __init__(self, wandb_run=None):
        self._run = wandb_run

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def folder(self) -> Path | None:
        """The run's folder on disk (``.../wandb/offline-run-...``), or None."""
        return Path(self._run.dir).parent if self.active else None

    def log(self, step: int, **metrics: float) -> None:
        if self.active:
            self._run.log({k: float(v) for k, v in metrics.items()}, step=int(step))

    def table(self, name: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        if self.active:
            import wandb

            self._run.log({name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=step)

    def finish(self, quiet: bool = False) -> None:
        if not self.active:
            return
        offline = self._run.settings.mode == "offline"
        folder = self.folder
        self._run.finish()
        self._run = None
        if offline and not quiet:
            print(f"Run saved offline in {folder}; `wandb sync {folder}` uploads it.")


def start(name: str, config: dict | None = None, project: str = PROJECT, mode: str | None = None,
          folder: str | os.PathLike | None = None) -> Run:
    """Start a tracked run (offline unless ``mode`` or ``WANDB_MODE`` says otherwise); see the module doc."""
    global _said_missing
    try:
        import wandb
    except ImportError:
        if not _said_missing:
            print("Weights & Biases is not installed, so runs are not tracked (pip install wandb to log them, "
                  "offline by default).")
            _said_missing = True
        return Run()
    mode = mode or os.environ.get(MODE_ENV) or "offline"
    folder = Path(folder or os.environ.get(DIR_ENV) or Path(DATA_DIR))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project, name=name, config=config or {}, mode=mode, dir=str(folder),
                         reinit="create_new",
                         settings=wandb.Settings(silent=True, disable_git=True, save_code=False,
                                                 console="off", x_disable_stats=True,
                                                 x_disable_meta=True, x_disable_machine_info=True))
    except Exception as exc:  # a broken install or an online mode without a login must not stop the lesson
        print(f"Weights & Biases could not start ({type(exc).__name__}: {exc}), so this run is not tracked.")
        return Run()
    if getattr(run, "disabled", False) or mode == "disabled":
        return Run()
    return Run(run)

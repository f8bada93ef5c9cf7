"""Where the course runs: device, seeds, fast mode, platform, paths, metric reports.

Fast mode is read from the environment variable ``GENAI_FAST`` here and nowhere else.
"""
from __future__ import annotations

import json
import os
import platform as _platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

FAST_ENV = "GENAI_FAST"
DEVICE_ENV = "GENAI_DEVICE"
METRICS_ENV = "GENAI_METRICS_FILE"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("GENAI_DATA_DIR", REPO_ROOT / "data"))


def is_fast() -> bool:
    """True when ``GENAI_FAST`` is set to 1/true/yes: tiny data and few steps, for tests."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def budget(full, fast, gpu=None):
    """Pick a setting: ``EPOCHS = budget(full=10, fast=1, gpu=30)``. The notebook shows every value.

    ``gpu`` (optional) is used at full settings when a CUDA GPU is present, so a learner with one
    automatically gets the bigger run.
    """
    if is_fast():
        return fast
    if gpu is not None and torch.cuda.is_available():
        return gpu
    return full


def get_device(override: str | None = None) -> torch.device:
    """cuda, then mps, then cpu. ``override`` (or ``GENAI_DEVICE``) forces one, e.g. "cpu"."""
    choice = override or os.environ.get(DEVICE_ENV)
    if choice:
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"Device {choice!r} was asked for, but torch sees no CUDA GPU here.")
        if choice == "mps" and not _mps_available():
            raise ValueError("Device 'mps' was asked for, but this torch build has no Apple GPU support.")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def platform() -> str:
    """'colab', 'kaggle' or 'local'."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle/working").is_dir():
        return "kaggle"
    return "local"


def print_environment() -> None:
    """The one-line-per-fact summary the setup cell prints."""
    import torchvision

    try:
        import ipywidgets
        widgets_version = ipywidgets.__version__
    except ImportError:  # the course still runs; only the sliders are missing
        widgets_version = "not installed (sliders disabled)"
    device = get_device()
    print(f"Python {_platform.python_version()} | torch {torch.__version__} | "
          f"torchvision {torchvision.__version__} | ipywidgets {widgets_version}")
    print(f"Running on {platform()}, device: {device}"
          + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""))
    print("Fast mode is ON (GENAI_FAST=1): tiny budgets, for testing." if is_fast()
          else "Fast mode is off: full settings (set GENAI_FAST=1 for a quick run).")


def report_metric(name: str, value: float, unit: str = "") -> float:
    """Print a result and record it for the benchmark (``python -m course bench``).

    The benchmark sets ``GENAI_METRICS_FILE``; outside it this only prints.
    """
    if isinstance(value, torch.Tensor):
        value = value.item()
    value = float(value)
    print(f"[metric] {name} = {value:.4g}{' ' + unit if unit else ''}")
    path = os.environ.get(METRICS_ENV)
    if path:
        path = Path(path)
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics[name] = value
        path.write_text(json.dumps(metrics, indent=1))
    return value


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux and macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20

"""Shared code for the Generative AI, Hands-On course.

Core helpers are imported here. Lesson modules (``utils.vae``, ``utils.gan``, ...) and ``utils.checks``
(which imports every lesson module it checks) load on first use: ``import utils`` stays light.
"""
import importlib

from .runtime import (budget, get_device, is_fast, peak_memory_mb, platform, print_environment,
                      report_metric, seed_everything)
from . import data, plots, runtime, train, widgets
from .train import LossHistory, batches, progress

__version__ = "0.1.0"


def __getattr__(name):  # lazy submodules: `utils.vae.reparameterize` works without an import
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module 'utils' has no attribute or submodule {name!r}") from None
        raise

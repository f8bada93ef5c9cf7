"""Pieces for training loops that stay visible in the notebooks: batches, progress bars, loss history."""
from __future__ import annotations

import time
from collections import defaultdict

import torch
from tqdm.auto import tqdm

from .runtime import is_fast


def progress(iterable=None, total: int | None = None, desc: str = "", **kwargs):
    """A tqdm.auto progress bar (a widget in Jupyter and Colab, text elsewhere)."""
    kwargs.setdefault("mininterval", 0.5 if is_fast() else 0.2)
    return tqdm(iterable, total=total, desc=desc, **kwargs)


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = True,
            generator: torch.Generator | None = None, drop_last: bool = False):
    """Yield aligned mini-batches from in-memory tensors (faster than a DataLoader for small data).

    >>> for xb, yb in batches(x, y, batch_size=128): ...
    """
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"All tensors need the same length; got {[len(t) for t in tensors]}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size].to(tensors[0].device)
        yield tuple(t[idx] for t in tensors) if len(tensors) > 1 else tensors[0][idx]


def batches_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class LossHistory:
    """Records named curves against a step counter and draws them, updating one figure in place.

    >>> history = LossHistory(title="VAE training")
    >>> history.log(step, train=loss.item())      # every step
    >>> history.log(step, test=test_loss)          # whenever you evaluate
    >>> history.plot(every=100)                    # redraws at most every 100 calls
    """

    def __init__(self, title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False):
        self.title, self.xlabel, self.ylabel, self.logy = title, xlabel, ylabel, logy
        self.steps: dict[str, list] = defaultdict(list)
        self.values: dict[str, list] = defaultdict(list)
        self._handle = None
        self._calls = 0
        self.started = time.perf_counter()

    def log(self, step: int, **values: float) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.steps[name].append(step)
            self.values[name].append(float(value))

    def last(self, name: str) -> float:
        return self.values[name][-1]

    def smoothed(self, name: str, window: int = 20) -> list:
        vals = self.values[name]
        return [sum(vals[max(0, i - window + 1):i + 1]) / len(vals[max(0, i - window + 1):i + 1])
                for i in range(len(vals))]

    def figure(self, baselines: dict | None = None):
        """The curves as a matplotlib Figure (not shown; pyplot is not used, so nothing draws twice)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for name in self.values:
            many = len(self.values[name]) > 50
            ax.plot(self.steps[name], self.values[name], alpha=0.3 if many else 1.0,
                    label=None if many else name, marker=None if many else ".")
            if many:
                ax.plot(self.steps[name], self.smoothed(name), color=ax.lines[-1].get_color(), label=f"{name} (smoothed)")
        for name, value in (baselines or {}).items():
            ax.axhline(value, ls="--", color="gray", lw=1)
            ax.annotate(name, (0, value), xytext=(2, 2), textcoords="offset points", fontsize=8, color="gray",
                        xycoords=("axes fraction", "data"))
        if self.logy:
            ax.set_yscale("log")
        ax.set(xlabel=self.xlabel, ylabel=self.ylabel, title=self.title)
        if self.values:
            ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def plot(self, every: int = 1, baselines: dict | None = None, force: bool = False):
        """Draw (or redraw in place) in a notebook; outside one, do nothing. Returns the figure when drawn."""
        self._calls += 1
        if not force and (self._calls - 1) % every:
            return None
        fig = self.figure(baselines)
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return fig
        if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
            return fig
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        return fig

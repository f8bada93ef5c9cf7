"""Plots that read well: image grids, 2-D scatters coloured by label, side-by-side comparisons."""
from __future__ import annotations

import numpy as np
import torch
import matplotlib.pyplot as plt


def to_numpy_images(x) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) tensor/array -> (N, H, W) float array clipped to [0, 1]."""
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"Expected single-channel images (N, 1, H, W); got shape {x.shape}.")
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"Expected images of shape (N, 1, H, W) or (N, H, W); got {x.shape}.")
    return np.clip(x, 0.0, 1.0)


def image_grid(x, nrow: int = 8, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile N images into one (rows*H, nrow*W) array in [0, 1], row by row."""
    imgs = to_numpy_images(x)
    n, h, w = imgs.shape
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.float32)
    for i, img in enumerate(imgs):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return grid


def show_images(x, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.8):
    """Show a grid of images; returns the figure."""
    grid = image_grid(x, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * grid.shape[1] / 29 + 0.4, scale * grid.shape[0] / 29 + 0.6))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def compare_rows(rows: dict, n: int = 10, title: str | None = None):
    """Rows of images with a label each, e.g. {"original": x, "reconstruction": x_hat}."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.9, 1.05 * len(rows) + 0.3), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(image_grid(images[:n], nrow=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def scatter_2d(points, labels=None, ax=None, title: str | None = None, class_names=None, s: float = 6,
               alpha: float = 0.7):
    """Scatter (N, 2) points coloured by integer label, with a legend; returns the figure."""
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"scatter_2d needs points of shape (N, 2); got {pts.shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha)
    else:
        labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        cmap = plt.get_cmap("tab10")
        for k in np.unique(labels):
            mask = labels == k
            name = class_names[int(k)] if class_names is not None else str(k)
            ax.scatter(pts[mask, 0], pts[mask, 1], s=s, alpha=alpha, color=cmap(int(k) % 10), label=name)
        ax.legend(markerscale=3, fontsize=8, loc="best", framealpha=0.8)
    if title:
        ax.set_title(title)
    return ax.figure

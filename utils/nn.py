"""Small network building blocks that several lessons share."""
from __future__ import annotations

import math

import torch
from torch import nn


def mlp(sizes: list[int], activation=nn.ReLU, final_activation=None, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of the given sizes with an activation between them, e.g. mlp([784, 400, 20])."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
    if final_activation is not None:
        layers.append(final_activation())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Image (B, 1, H, W) -> vector (B, out_dim) through hidden layers."""

    def __init__(self, image_shape=(1, 28, 28), hidden=(400,), out_dim: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), *hidden, out_dim]))

    def forward(self, x):   # x: (B, 1, H, W)
        return self.net(x)  # (B, out_dim)


class MLPDecoder(nn.Module):
    """Vector (B, in_dim) -> image logits (B, 1, H, W); apply a sigmoid for pixel intensities."""

    def __init__(self, in_dim: int = 20, hidden=(400,), image_shape=(1, 28, 28)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([in_dim, *hidden, math.prod(image_shape)])

    def forward(self, z):                                    # z: (B, in_dim)
        return self.net(z).view(-1, *self.image_shape)       # (B, 1, H, W) logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def in_batches(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks under no_grad and concatenate (for evaluation on big sets)."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

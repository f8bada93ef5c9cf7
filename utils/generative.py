"""Lesson 01: class-conditional Gaussians as a generative classifier (references and explorers)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


# --------------------------------------------------------------------------- exercise references

def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(var)) for each row of x: (N, D), (D,), (D,) -> (N,)."""
    return -0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var).sum(dim=-1)


def log_posterior(log_likelihood: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Bayes' rule in log space: log p(y | x) from log p(x | y) (N, K) and log p(y) (K,) -> (N, K)."""
    joint = log_likelihood + log_prior                      # (N, K) log p(x, y)
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)


def sample_low_rank_gaussian(mean: torch.Tensor, components: torch.Tensor, noise_std: float, n: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples of x = mean + W z + noise_std * eps with z ~ N(0, I_q), eps ~ N(0, I_D).

    mean (D,), components W (D, q) -> (n, D). The covariance is W W^T + noise_std^2 I.
    """
    d, q = components.shape
    z = torch.randn(n, q, generator=generator)             # (n, q)
    eps = torch.randn(n, d, generator=generator)           # (n, D)
    return mean + z @ components.T + noise_std * eps


# --------------------------------------------------------------------------- the generative classifier

@dataclass
class DiagonalGaussians:
    """One diagonal Gaussian per class: the simplest p(x | y)."""
    means: torch.Tensor      # (K, D)
    variances: torch.Tensor  # (K, D)
    log_prior: torch.Tensor  # (K,)

    def log_likelihood(self, x: torch.Tensor, density=gaussian_log_density) -> torch.Tensor:
        """log p(x | y = k) for every class: (N, D) -> (N, K)."""
        return torch.stack([density(x, m, v) for m, v in zip(self.means, self.variances)], dim=1)


def fit_diagonal_gaussians(x: torch.Tensor, y: torch.Tensor, n_classes: int = 10,
                           var_floor: float = 0.01) -> DiagonalGaussians:
    """Fit p(x | y) and p(y) by maximum likelihood: the mean and variance of every pixel within each class,
    and each class's share of the examples.

    x: (N, D) rows of pixels, or images (N, 1, H, W); y: (N,) labels in 0..n_classes-1. The floor is added
    to every variance, so a pixel that is black in all of a class's images keeps a finite log-density.
    """
    x = x.flatten(1)                                         # (N, D)
    means, variances = [], []
    for k in range(n_classes):
        x_k = x[y == k]                                      # (N_k, D) the images of class k
        means.append(x_k.mean(dim=0))                        # (D,)
        variances.append(x_k.var(dim=0, unbiased=False) + var_floor)  # (D,) divide by N_k, then the floor
    counts = torch.bincount(y, minlength=n_classes).to(x.dtype)       # (K,) images per class
    log_prior = torch.log(counts / counts.sum())             # (K,) log p(y = k)
    return DiagonalGaussians(torch.stack(means), torch.stack(variances), log_prior)


@dataclass
class LowRankGaussians:
    """One probabilistic-PCA Gaussian per class: covariance W W^T + s^2 I with W of rank q."""
    means: torch.Tensor        # (K, D)
    directions: torch.Tensor   # (K, D, q) orthonormal principal directions U
    eigenvalues: torch.Tensor  # (K, q) variance along each direction
    noise_var: torch.Tensor    # (K,) variance s^2 in every other direction
    log_prior: torch.Tensor    # (K,)

    @property
    def components(self) -> torch.Tensor:
        """W = U diag(sqrt(lambda - s^2)): (K, D, q), so that W W^T + s^2 I has the fitted spectrum."""
        scale = (self.eigenvalues - self.noise_var[:, None]).clamp_min(0).sqrt()
        return self.directions * scale[:, None, :]

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y = k) for every class, exact and cheap through the eigen-decomposition: (N, D) -> (N, K)."""
        x = x.flatten(1)
        d = x.shape[1]
        out = []
        for mean, u, lam, s2 in zip(self.means, self.directions, self.eigenvalues, self.noise_var):
            diff = x - mean                                        # (N, D)
            proj = diff @ u                                        # (N, q) coordinates along the directions
            residual = diff.pow(2).sum(1) - proj.pow(2).sum(1)     # (N,) squared distance off the subspace
            mahalanobis = (proj.pow(2) / lam).sum(1) + residual / s2
            log_det = torch.log(lam).sum() + (d - len(lam)) * torch.log(s2)
            out.append(-0.5 * (d * math.log(2 * math.pi) + log_det + mahalanobis))
        return torch.stack(out, dim=1)

    def sample(self, k: int, n: int, generator=None, sampler=sample_low_rank_gaussian, noise: bool = True):
        """n images of class k, clipped to [0, 1]: (n, 1, H, W) for square images."""
        s = self.noise_var[k].sqrt().item() if noise else 0.0
        x = sampler(self.means[k], self.components[k], s, n, generator=generator)
        side = int(math.isqrt(x.shape[1]))
        return x.clamp(0, 1).view(n, 1, side, side)


def fit_low_rank_gaussians(x: torch.Tensor, y: torch.Tensor, rank: int = 30, n_classes: int = 10,
                           noise_floor: float = 1e-3) -> LowRankGaussians:
    """Fit probabilistic PCA per class (Tipping and Bishop): top-``rank`` directions plus isotropic noise."""
    x = x.flatten(1).double()
    d = x.shape[1]
    means, dirs, eigs, noise = [], [], [], []
    for k in range(n_classes):
        xk = x[y == k]
        mean = xk.mean(0)
        _, s, vh = torch.linalg.svd(xk - mean, full_matrices=False)  # rows of vh: principal directions
        lam = s.pow(2) / len(xk)                                        # (min(n, D),) variances
        if len(lam) < rank:  # an SVD of n examples gives at most n directions
            raise ValueError(f"Class {k} has only {len(xk)} examples; use a rank below {len(xk)}.")
        rest = lam[rank:].sum() / (d - rank) if d > rank else lam.new_tensor(0.0)
        s2 = rest.clamp_min(noise_floor)                                # mean variance of the rest
        means.append(mean)
        dirs.append(vh[:rank].T)                                        # (D, rank)
        eigs.append(lam[:rank].clamp_min(s2))
        noise.append(s2)
    counts = torch.bincount(y, minlength=n_classes).double()
    return LowRankGaussians(torch.stack(means).float(), torch.stack(dirs).float(), torch.stack(eigs).float(),
                            torch.stack(noise).float(), torch.log(counts / counts.sum()).float())


def classify(model, x: torch.Tensor) -> torch.Tensor:
    """Bayes' rule's decision, the most probable class of each row of x: argmax_k log p(x | k) + log p(k).

    ``model`` is any class-conditional model with ``log_likelihood(x) -> (N, K)`` and ``log_prior`` (K,):
    DiagonalGaussians or LowRankGaussians. (N, D) -> (N,) labels. The denominator of Bayes' rule is the
    same for every class, so the argmax needs no normalising.
    """
    joint = model.log_likelihood(x) + model.log_prior       # (N, K) log p(x, y)
    return joint.argmax(dim=1)


def accuracy(log_probs_or_logits: torch.Tensor, y: torch.Tensor) -> float:
    return (log_probs_or_logits.argmax(1) == y).float().mean().item()


# --------------------------------------------------------------------------- explorers (pure functions)

def principal_direction_image(model: LowRankGaussians, k: int, coefficients) -> np.ndarray:
    """The class-k mean moved along its top principal directions by ``coefficients`` standard deviations.

    Returns an (H, W) array in [0, 1]; extra coefficients beyond the model's rank are an error.
    """
    coefficients = torch.as_tensor(np.asarray(coefficients, dtype=np.float32))
    q = model.directions.shape[2]
    if not 0 <= k < len(model.means):
        raise ValueError(f"Class {k} does not exist: pick 0 to {len(model.means) - 1}.")
    if len(coefficients) > q:
        raise ValueError(f"The model has {q} principal directions, but {len(coefficients)} coefficients were given.")
    m = len(coefficients)
    std = model.eigenvalues[k, :m].sqrt()                                   # (m,)
    x = model.means[k] + model.directions[k, :, :m] @ (coefficients * std)  # (D,)
    side = int(math.isqrt(x.numel()))
    return x.clamp(0, 1).view(side, side).numpy()


def toy_blobs(n_per_class: int = 200, seed: int = 0):
    """Two elongated 2-D Gaussian classes with different covariances, for the toy figure."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_per_class, 2, generator=g) @ torch.tensor([[1.0, 0.0], [0.6, 0.5]]) + torch.tensor([-1.0, 0.5])
    b = torch.randn(n_per_class, 2, generator=g) @ torch.tensor([[0.5, 0.0], [0.0, 1.2]]) + torch.tensor([1.2, -0.3])
    x = torch.cat([a, b])
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).long()
    return x, y

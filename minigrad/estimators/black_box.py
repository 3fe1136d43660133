"""Black-box gradient estimates: evolution strategies (ES) for a loss with no gradient.

The 0-1 loss of a classifier, ``F(z) = 1[argmax_k z_k != y]``, is piecewise constant in the
logits ``z``: its gradient is zero wherever it exists. Evolution strategies (Salimans, Ho,
Chen, Sidor & Sutskever 2017, arXiv:1703.03864) replace it by its Gaussian smoothing

    F_sigma(z) = E_{eps ~ N(0, I)} [ F(z + sigma eps) ],

which is smooth for every sigma > 0, and estimate the gradient of *that* by Monte Carlo:

    grad F_sigma(z) = (1 / sigma) E[ F(z + sigma eps) eps ]
                    ~ g = 1 / (n sigma) sum_{i=1..n} F(z + sigma eps_i) eps_i.

This is the score-function (REINFORCE) estimator for the Gaussian x = z + sigma eps, whose
score is d log N(x; z, sigma^2 I) / dz = (x - z) / sigma^2 = eps / sigma. Here it is used at
the logits only: ``surrogate(logits, g)`` then backpropagates ``g`` through the network, so
the network itself is differentiated once per step, and only the 10 logits are perturbed.

Variants (Salimans et al. 2017, section 2.2 and appendix), all estimating the same gradient:

- ``antithetic=True``: the draws come in mirrored pairs (eps_j, -eps_j), j = 1..n/2, and
  g = 1 / (n sigma) sum_j [F(z + sigma eps_j) - F(z - sigma eps_j)] eps_j. Unbiased.
- ``baseline="mean"``: subtract the mean fitness of the *other* draws from each F_i
  (leave-one-out), which equals g = 1 / ((n - 1) sigma) sum_i (F_i - mean(F)) eps_i.
  Unbiased; a number subtracts that constant instead (also unbiased).
- ``shaping="centered_ranks"``: replace the fitness values by their ranks among the n draws
  of the example, scaled to [-0.5, 0.5], tied values sharing their average rank. Shaped
  fitness is not the loss, so its scale is not the gradient's. For a 0-1 fitness with k
  ones among n, the shaped values are exactly n / (2 (n - 1)) (F_i - k / n): the mean
  baseline, times a constant, so E[g] = grad F_sigma(z) / 2 (and n / (2 (n - 1)) times it
  with antithetic pairs). Tie-breaking matters: ranks that break the constant ties of a 0-1
  fitness arbitrarily would add noise that has nothing to do with the loss.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from minigrad.tensor import Tensor

__all__ = ["es_gradient", "es_zero_one_gradient", "zero_one_loss", "centered_ranks",
           "class_indices"]

SHAPINGS = ("none", "centered_ranks")


def zero_one_loss(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 where the largest of the last axis of ``z`` is not the label, else 0.

    ``z`` has shape (batch, ..., K) and ``labels`` (batch,) class indices; the result has
    the shape of ``z`` without its last axis. (Exact ties among logits have probability 0
    under Gaussian noise; ``argmax`` takes the first.)
    """
    labels = np.asarray(labels).reshape((-1,) + (1,) * (z.ndim - 2))
    return (z.argmax(axis=-1) != labels).astype(z.dtype)


def centered_ranks(f: np.ndarray) -> np.ndarray:
    """Ranks of ``f`` along its last axis, scaled to [-0.5, 0.5]; ties share their average.

    The smallest value gets -0.5 and the largest +0.5 (a single value gets 0). Vectorised:
    sort each row, find the first and the last position of each run of equal values, and
    give every member the mean of the two.
    """
    n = f.shape[-1]
    if n == 1:
        return np.zeros_like(f, dtype=np.float64)
    order = np.argsort(f, axis=-1, kind="stable")
    s = np.take_along_axis(f, order, axis=-1)
    position = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[..., ::-1], axis=-1)[..., ::-1]
    ranks = np.empty(s.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0, axis=-1)
    return ranks / (n - 1) - 0.5


def es_gradient(logits, fitness: Callable[[np.ndarray], np.ndarray], noise, *,
                sigma=4.0, n=200, antithetic: bool = False, shaping: str = "none",
                baseline=None) -> np.ndarray:
    """ES estimate of the gradient of E[fitness(z + sigma eps)] with respect to the logits z.

    Args:
        logits: (batch, K) Tensor or array z.
        fitness: maps perturbed logits (batch, m, K) to fitness values (batch, m), one per
            draw (for the 0-1 loss see :func:`es_zero_one_gradient`).
        noise: an ``np.random.Generator``, or pre-drawn eps of shape (batch, n, K)
            ((batch, n // 2, K) with ``antithetic=True``: the mirrored halves are added here).
        sigma: the smoothing scale, a real number > 0.
        n: draws per example (even with ``antithetic=True``).
        antithetic: use mirrored pairs (eps, -eps).
        shaping: ``"none"`` or ``"centered_ranks"`` (fitness shaping).
        baseline: None, ``"mean"`` (leave-one-out mean fitness) or a number.

    Returns:
        g, an array of the logits' shape and dtype (the estimators' contract): the estimate
        1 / (n sigma) sum_i w_i eps_i with weights w_i as described in the module docstring.
    """
    z = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    sigma, n = _check_es_options(z, sigma, n, antithetic, shaping, baseline)
    eps = _draws(noise, z, n, antithetic)                  # (batch, n, K)
    w = np.asarray(fitness(z[:, None, :] + sigma * eps), dtype=np.float64)
    if w.shape != eps.shape[:2]:
        raise ValueError(f"fitness must return one value per draw, shape {eps.shape[:2]}; "
                         f"got {w.shape}")
    scale = 1.0 / (n * sigma)
    if shaping == "centered_ranks":
        w = centered_ranks(w)
    elif isinstance(baseline, str):                        # "mean", leave-one-out
        w = w - w.mean(axis=1, keepdims=True)
        scale = 1.0 / ((n - 1) * sigma)
    elif baseline is not None:
        w = w - float(baseline)
    g = scale * np.einsum("bn,bnk->bk", w, eps)
    return g.astype(z.dtype, copy=False)


def es_zero_one_gradient(logits, labels, noise, *, sigma=4.0, n=200,
                         antithetic: bool = False, shaping: str = "none",
                         baseline=None) -> np.ndarray:
    """ES estimate of the gradient of the smoothed 0-1 loss at the logits (the seed's loss).

    For each example: eps_1..eps_n ~ N(0, I) in R^K, F_i = 1[argmax(z + sigma eps_i) != y],
    g = 1 / (n sigma) sum_i F_i eps_i, an unbiased estimate of the gradient of
    P(argmax(z + sigma eps) != y) (Salimans et al. 2017). ``labels`` are class indices
    (batch,) or one-hot rows (batch, K); the options are those of :func:`es_gradient`.
    Use it as ``surrogate(logits, es_zero_one_gradient(logits, y, rng)).backward()``.
    """
    z = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    y = class_indices(labels, z)
    return es_gradient(logits, lambda perturbed: zero_one_loss(perturbed, y), noise,
                       sigma=sigma, n=n, antithetic=antithetic, shaping=shaping,
                       baseline=baseline)


# ------------------------------------------------------------------ argument checks, noise
def class_indices(labels, z: np.ndarray) -> np.ndarray:
    """Labels as int class indices (batch,), from indices or one-hot rows; checked."""
    if z.ndim != 2 or not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"logits must be a floating (batch, classes) array, got shape "
                         f"{z.shape} and dtype {z.dtype}")
    batch, k = z.shape
    y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if y.shape == (batch, k):
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise ValueError("one-hot labels must have exactly one 1 per row and 0 elsewhere")
        return y.argmax(axis=1)
    if y.shape != (batch,):
        raise ValueError(f"labels must be class indices of shape ({batch},) or one-hot rows "
                         f"of shape ({batch}, {k}) to match the logits; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"class-index labels must be integers, got dtype {y.dtype}; one-hot "
                        "labels must have shape (batch, classes)")
    if np.any((y < 0) | (y >= k)):
        raise ValueError(f"class indices must lie in [0, {k}), got values from {y.min()} "
                         f"to {y.max()}")
    return y.astype(np.intp)


def _check_es_options(z, sigma, n, antithetic, shaping, baseline):
    if z.ndim != 2 or not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"logits must be a floating (batch, classes) array, got shape "
                         f"{z.shape} and dtype {z.dtype}")
    if (isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, numbers.Real)
            or not np.isfinite(sigma) or sigma <= 0):
        raise ValueError(f"sigma must be a real number > 0 (a scalar), got {sigma!r}")
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n (draws per example) must be an integer >= 1, got {n!r}")
    if antithetic and n % 2:
        raise ValueError(f"antithetic pairs need an even n, got n={n}; use n={n + 1}")
    if shaping not in SHAPINGS:
        raise ValueError(f"shaping must be one of {SHAPINGS}, got {shaping!r}")
    if baseline is not None:
        if antithetic or shaping != "none":
            raise ValueError("a baseline cancels in antithetic pairs and centred ranks are "
                             "already centred: pass baseline=None with those options")
        if baseline != "mean" if isinstance(baseline, str) else (
                isinstance(baseline, (bool, np.bool_))
                or not isinstance(baseline, numbers.Real)):
            raise ValueError(f"baseline must be None, 'mean' or a number, got {baseline!r}")
        if isinstance(baseline, str) and n < 2:
            raise ValueError("baseline='mean' leaves one draw out, so it needs n >= 2")
    return float(sigma), int(n)


def _draws(noise, z: np.ndarray, n: int, antithetic: bool) -> np.ndarray:
    """eps of shape (batch, n, K): drawn from a Generator or checked, mirrored if antithetic."""
    m = n // 2 if antithetic else n
    shape = (z.shape[0], m, z.shape[1])
    if isinstance(noise, np.random.Generator):
        eps = noise.standard_normal(shape, dtype=z.dtype)
    else:
        eps = np.asarray(noise.data if isinstance(noise, Tensor) else noise)
        if eps.shape != shape:
            raise ValueError(f"pre-drawn noise must have shape {shape} (batch, "
                             f"{'n // 2' if antithetic else 'n'}, classes), got {eps.shape}; "
                             "or pass an np.random.Generator")
    return np.concatenate([eps, -eps], axis=1) if antithetic else eps

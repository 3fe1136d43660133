"""The oracle: exact expectations and gradients by enumerating every configuration.

For a few discrete units per example the expectation of any objective ``f`` is a finite sum
over the configurations ``c`` of the units::

    E[f(b)] = sum_c P(b = c | logits) f(c)

Written with minigrad operations, this sum is an ordinary differentiable function of the
logits (through ``P``) and of any parameter ``f`` uses (through ``f(c)``), so autograd gives
the exact gradient that every estimator is meant to estimate.

``f`` follows the estimators' convention: it maps samples of shape (batch, units) (or
(batch, units, classes) one-hot) to one value per example, shape (batch,), and row ``n`` of
the samples belongs to example ``n``. The oracle calls ``f`` once per configuration, with
every example set to that configuration, so ``f`` may use per-example data (targets,
inputs) freely. Keep it to a few units: ``2^units`` (Bernoulli) or ``classes^units``
(categorical) calls, at most :data:`MAX_CONFIGURATIONS`.
"""
from __future__ import annotations

import itertools

import numpy as np

from minigrad.estimators.base import Objective, differentiable_logits
from minigrad.functions import log_softmax, sigmoid
from minigrad.tensor import Tensor, grad

__all__ = [
    "exact_k_sample_gradient_categorical",
    "MAX_CONFIGURATIONS", "enumerate_binary_configurations",
    "enumerate_categorical_configurations", "exact_expectation", "exact_gradient",
    "exact_expectation_categorical", "exact_gradient_categorical",
]

MAX_CONFIGURATIONS = 1024
#: The most joint configurations of k samples the k-sample enumeration sums over.
MAX_JOINT_CONFIGURATIONS = 100_000


def _check_count(count: int, who: str) -> None:
    if count > MAX_CONFIGURATIONS:
        raise ValueError(
            f"{who}: {count} configurations to enumerate, more than {MAX_CONFIGURATIONS}; "
            "the oracle is for a few units per example (16 configurations is typical)"
        )


def enumerate_binary_configurations(n: int, dtype=np.float64) -> np.ndarray:
    """All ``2^n`` binary vectors of length ``n``, one per row, in counting order.

    Row ``k`` is ``k`` written in binary with unit 0 as the most significant bit, so for
    ``n = 2`` the rows are 00, 01, 10, 11.
    """
    if not 0 <= n <= 20:
        raise ValueError(f"enumerate_binary_configurations: n must be in 0..20, got {n}")
    counts = np.arange(2 ** n)[:, None]
    bits = np.arange(n - 1, -1, -1)[None, :]
    return ((counts >> bits) & 1).astype(dtype)


def enumerate_categorical_configurations(units: int, classes: int, dtype=np.float64
                                         ) -> np.ndarray:
    """All ``classes^units`` one-hot configurations, shape (count, units, classes)."""
    _check_count(classes ** units, "enumerate_categorical_configurations")
    eye = np.eye(classes, dtype=dtype)
    return np.array([eye[list(c)] for c in itertools.product(range(classes), repeat=units)],
                    dtype=dtype).reshape(-1, units, classes)


def _expectation(configs: np.ndarray, log_or_prob, f: Objective, batch: int) -> Tensor:
    """``sum_c P_n(c) f(c)_n`` with ``P_n(c)`` given for each configuration."""
    total = None
    for k, config in enumerate(configs):
        sample = Tensor(np.broadcast_to(config, (batch,) + config.shape).copy())
        values = f(sample)
        if values.shape != (batch,):
            raise ValueError(
                f"exact expectation: f returned shape {values.shape}; it must give one value "
                f"per example, shape ({batch},)"
            )
        term = log_or_prob(k) * values
        total = term if total is None else total + term
    return total


def exact_expectation(logits: Tensor, f: Objective, probability=sigmoid) -> Tensor:
    """``E[f(b)]`` for ``b_ni ~ Bernoulli(probability(logits)_ni)``, one value per example.

    Logits of shape (batch, units). ``P_n(c) = prod_i (c_i p_ni + (1 - c_i)(1 - p_ni))``,
    written as a product (not with logs) so that probabilities of exactly 0 or 1, as a hard
    sigmoid gives, are fine. The result is differentiable with respect to the logits and to
    every parameter of ``f``.
    """
    logits = logits if isinstance(logits, Tensor) else Tensor(np.asarray(logits))
    batch, units = logits.shape
    _check_count(2 ** units, "exact_expectation")
    configs = enumerate_binary_configurations(units, logits.dtype)
    p = probability(logits)

    def prob(k):
        c = Tensor(configs[k])
        per_unit = p * c + (1 - p) * (1 - c)
        out = per_unit[:, 0]
        for i in range(1, units):
            out = out * per_unit[:, i]
        return out

    return _expectation(configs, prob, f, batch)


def exact_expectation_categorical(logits: Tensor, f: Objective) -> Tensor:
    """``E[f(b)]`` for one-hot ``b_ni ~ Categorical(softmax(logits_ni))``, per example.

    Logits of shape (batch, units, classes); ``log P_n(c) = sum_i log_softmax(z_ni) . c_i``.
    """
    logits = logits if isinstance(logits, Tensor) else Tensor(np.asarray(logits))
    batch, units, classes = logits.shape
    configs = enumerate_categorical_configurations(units, classes, logits.dtype)
    log_p = log_softmax(logits, axis=-1)
    return _expectation(
        configs, lambda k: (log_p * Tensor(configs[k])).sum(axis=(1, 2)).exp(), f, batch)


def exact_gradient(logits: Tensor, f: Objective, probability=sigmoid,
                   create_graph: bool = False) -> Tensor:
    """``d E[f(b)] / d logits`` for Bernoulli units, exactly: autograd of the enumeration."""
    x = differentiable_logits(logits)
    (g,) = grad(exact_expectation(x, f, probability).sum(), x, create_graph=create_graph)
    return g


def exact_gradient_categorical(logits: Tensor, f: Objective,
                               create_graph: bool = False) -> Tensor:
    """``d E[f(b)] / d logits`` for categorical units (batch, units, classes), exactly."""
    x = differentiable_logits(logits)
    (g,) = grad(exact_expectation_categorical(x, f).sum(), x, create_graph=create_graph)
    return g


def exact_k_sample_gradient_categorical(logits, f: Objective, k: int) -> np.ndarray:
    """``d E[log 1/k sum_j exp f(b_j)] / d logits`` for ``k`` independent samples
    ``b_1 .. b_k`` of the categorical units (batch, units, classes), exactly.

    The target of VIMCO (the k-sample bound, Burda et al. 2016), with ``f`` fixed (it does
    not depend on the logits): the sum over the ``classes^(units k)`` joint configurations
    of ``P(b_1..b_k) L(b_1..b_k) sum_j (b_j - p)``. Float64 NumPy, no graph.
    """
    z = np.asarray(logits.data if isinstance(logits, Tensor) else logits, dtype=np.float64)
    batch, units, classes = z.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"exact_k_sample_gradient_categorical: k must be a whole number "
                         f">= 1, got {k!r}")
    if classes ** (units * k) > MAX_JOINT_CONFIGURATIONS:
        raise ValueError(
            f"exact_k_sample_gradient_categorical: {classes}^({units} x {k}) joint "
            f"configurations is more than {MAX_JOINT_CONFIGURATIONS:,}; use fewer units, "
            "classes or samples (the enumeration is for small checks)")
    configs = enumerate_categorical_configurations(units, classes)   # (C, units, classes)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    values = np.stack([np.asarray(f(Tensor(np.broadcast_to(c, z.shape).copy())).data,
                                  dtype=np.float64) for c in configs])      # (C, batch)
    prob = np.prod((configs[:, None] * p[None]).sum(axis=-1), axis=-1)       # (C, batch)
    score = configs[:, None] - p[None]                                        # (C, batch, u, c)
    joint = np.indices((len(configs),) * k).reshape(k, -1)                    # (k, C^k)
    f_joint = values[joint]                                                   # (k, C^k, batch)
    top = f_joint.max(axis=0)
    bound = np.log(np.exp(f_joint - top).mean(axis=0)) + top                  # (C^k, batch)
    weight = np.prod(prob[joint], axis=0) * bound                             # (C^k, batch)
    return sum(np.einsum("mb,mbuc->buc", weight, score[joint[j]]) for j in range(k))

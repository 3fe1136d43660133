"""Weight initialisation (Glorot & Bengio 2010; the variance scaling of He et al. 2015 as the
REBAR reference code uses it). Randomness comes in as a Generator."""
from __future__ import annotations

import numpy as np


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fan-in and fan-out of a (in, out) matrix or an (F, C, KH, KW) filter bank."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive = shape[2] * shape[3]
        return shape[1] * receptive, shape[0] * receptive
    raise ValueError(f"cannot infer fan-in and fan-out of a weight of shape {shape}")


def glorot_uniform(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Xavier uniform)."""
    fan_in, fan_out = _fans(tuple(shape))
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """N(0, s^2) with s = sqrt(2 / (fan_in + fan_out)) (Xavier normal)."""
    fan_in, fan_out = _fans(tuple(shape))
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(size=shape) * std).astype(dtype)


def variance_scaling_normal(shape, rng: np.random.Generator, dtype=np.float32,
                            factor: float = 2.0) -> np.ndarray:
    """A normal of standard deviation ``sqrt(1.3 factor / fan_in)`` truncated at two standard
    deviations (redrawn beyond them), as TensorFlow's ``variance_scaling_initializer``
    (``uniform=False``, ``mode='FAN_IN'``) draws it. The truncation shrinks the spread by
    about 0.88, so the weights' standard deviation is about ``sqrt(factor / fan_in)``."""
    fan_in, _ = _fans(tuple(shape))
    std = np.sqrt(1.3 * factor / fan_in)
    w = rng.standard_normal(size=shape)
    outside = np.abs(w) > 2.0
    while outside.any():
        w[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(w) > 2.0
    return (w * std).astype(dtype)


def as_generator(rng) -> np.random.Generator:
    """Accept a Generator or an integer seed; anything else is a clear error."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"expected an np.random.Generator or an integer seed, got {type(rng).__name__}; "
        "pass rng=np.random.default_rng(seed)"
    )

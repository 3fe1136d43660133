"""Argument checks shared by every estimator: numbers, noise, generators, probabilities.

Each check either returns the value in the form the estimator uses or raises an error that
says which argument of which function was wrong and how to fix it. ``who`` names the caller
in the message.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from minigrad import validate
from minigrad.tensor import Tensor

__all__ = [
    "real_number", "positive_number", "optional_positive_number", "decay_rate",
    "integer_at_least", "require_rng", "noise_of_shape", "uniform_noise",
    "finite_values", "probabilities",
]


def real_number(value, name: str, who: str) -> float:
    """A finite real scalar as a float: a Python or NumPy number, or a 0-d real array.

    Bools are refused (``True`` as a slope is a mistake, not 1.0), and so are complex
    numbers, NaN and infinities.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{who}: {name} must be a real number, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value}")
    return float(value)


def positive_number(value, name: str, who: str) -> float:
    """A finite real number > 0, as a float (see :func:`real_number`)."""
    number = real_number(value, name, who)
    if not number > 0:
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value}")
    return number


def optional_positive_number(value, name: str, who: str) -> float | None:
    """``None`` (the feature is off) or a finite number > 0."""
    return None if value is None else positive_number(value, name, who)


def decay_rate(value, who: str) -> float:
    """A moving average's decay, in [0, 1)."""
    number = real_number(value, "decay", who)
    if not 0 <= number < 1:
        raise ValueError(f"{who}: decay must be in [0, 1), got {value}")
    return number


def integer_at_least(value, minimum: int, name: str, who: str, why: str = "") -> int:
    """An integer (Python or NumPy, not a bool) of at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{who}: {name} must be at least {minimum}{why}, got {value}")
    return int(value)


def require_rng(rng, who: str) -> np.random.Generator:
    """Stochastic code draws from a Generator it is given; say so when it is missing."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{who}: stochastic=True needs rng=np.random.Generator (got {type(rng).__name__})"
        )
    return rng


def noise_of_shape(noise, shape: tuple[int, ...], who: str, what: str = "uniform noise u",
                   per: str = "one value per unit, e.g. rng.random(logits.shape)"
                   ) -> np.ndarray:
    """Pre-drawn noise as an array of exactly ``shape``."""
    noise = noise.data if isinstance(noise, Tensor) else np.asarray(noise)
    if noise.shape != tuple(shape):
        raise ValueError(
            f"{who}: the {what} has shape {noise.shape} but needs shape {tuple(shape)}; "
            f"draw {per}"
        )
    return noise


def uniform_noise(u, shape: tuple[int, ...], who: str, **kwargs) -> np.ndarray:
    """Uniform noise of ``shape`` with every value in [0, 1)."""
    u = noise_of_shape(u, shape, who, **kwargs)
    if u.size and not (u.min() >= 0 and u.max() < 1):
        raise ValueError(f"{who}: the uniform noise u must lie in [0, 1)")
    return u


def finite_values(values: np.ndarray, what: str, who: str, fix: str) -> np.ndarray:
    """Refuse NaN and infinities (they would be sampled or averaged silently, and a baseline
    that took one would stay infinite for ever); ``fix`` says what to do."""
    return validate.finite(values, f"the {what}", who, fix)


def probabilities(p: np.ndarray, who: str, fix: str) -> None:
    """Every value in [0, 1]; ``fix`` says what the caller should pass instead."""
    if p.size and not np.all((p >= 0) & (p <= 1)):
        nan = " (and contains NaN)" if np.isnan(p).any() else ""
        raise ValueError(
            f"{who}: expects probabilities in [0, 1], got values from {np.nanmin(p):.6g} to "
            f"{np.nanmax(p):.6g}{nan}; {fix}"
        )

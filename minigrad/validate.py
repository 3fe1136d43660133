"""The one validator of inputs that would otherwise turn silently into wrong numbers.

NaN and infinities, noise outside the interval an estimator's formulas need, sizes that are
not whole numbers: each check below returns the value in the form the caller uses, or raises
a ``ValueError`` (``TypeError`` for a value of the wrong kind) that names the argument, the
function (``who``) and what was wrong. Estimators, baselines, models and the data path call
them in one line at their top, so every check is written once.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["finite", "unit_interval_noise", "whole_number"]


def _array(values) -> np.ndarray:
    from minigrad.tensor import Tensor

    return values.data if isinstance(values, Tensor) else np.asarray(values)


def finite(values, name: str, who: str, fix: str = "") -> np.ndarray:
    """``values`` as an array, refused when it holds NaN, +inf or -inf.

    ``name`` is the argument ("logits", "the objective's values", "eta"), ``fix`` how to get
    a finite one. The message gives the count and the first bad index and value.
    """
    array = _array(values)
    if array.dtype.kind in "fc":
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
            value = array[first] if array.ndim else array[()]
            raise ValueError(
                f"{who}: {name} must be finite, but {int(bad.sum())} of {array.size} values "
                f"are NaN or infinite (the first: {value} at index {first})"
                + (f"; {fix}" if fix else ""))
    return array


def unit_interval_noise(u, name: str, who: str) -> np.ndarray:
    """Uniform noise: finite, every value in [0, 1].

    Outside [0, 1] (``u + 1``, a negative value) a sampler gives samples no probability could
    produce, and the estimate is silently biased. Exactly 0 or 1 are accepted: float32 noise
    rounds draws just below 1 up to 1.0, and each sampler handles both ends (an indicator
    ``u < p``, or logarithms kept finite by clipping).
    """
    array = finite(u, name, who, "draw it with rng.random(shape)")
    if array.size and not (array.min() >= 0 and array.max() <= 1):
        outside = int(np.sum((array < 0) | (array > 1)))
        raise ValueError(
            f"{who}: {name} must be uniform noise in [0, 1], but {outside} of {array.size} "
            f"values are outside it (from {array.min():.6g} to {array.max():.6g}); draw it "
            "with rng.random(shape)")
    return array


def whole_number(value, name: str, who: str, minimum: int = 1) -> int:
    """A Python or NumPy integer (not a bool, not a float such as 2.5) of at least
    ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be a whole number, got "
                        f"{type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{who}: {name} must be at least {minimum}, got {value}")
    return int(value)

"""Checks a student calls on their own code, with a message that says what is wrong.

The exercises that ask for code end with one of these calls. Each runs the same test the
library's own code passes, and on failure says where the answer goes wrong and what that
usually means, instead of a bare assertion:

- :func:`check_gradient`: the backward pass of a function (a new ``Function``, say) against
  central differences in float64, first and second order.
- :func:`check_estimator`: a gradient estimator against the exact gradient by enumeration.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from minigrad.gradcheck import GradcheckError, gradcheck, gradgradcheck
from minigrad.tensor import Tensor

__all__ = ["check_gradient", "SelfCheckFailed"]


class SelfCheckFailed(AssertionError):
    """A student's answer failed its self-check; the message says where and why."""


def _diagnose(analytic: np.ndarray, numeric: np.ndarray) -> str:
    """What a wrong gradient most often means, from how it relates to the right one."""
    a, n = np.ravel(analytic), np.ravel(numeric)
    if not np.all(np.isfinite(a)):
        return "the gradient has NaN or inf in it: a division by zero or a log of 0?"
    if np.allclose(a, 0) and not np.allclose(n, 0):
        return "the gradient is zero everywhere: does backward return the incoming gradient " \
               "times the local derivative, for this input?"
    mask = np.abs(n) > 1e-3 * max(np.abs(n).max(), 1e-12)
    if mask.any():
        ratios = a[mask] / n[mask]
        ratio = float(np.median(ratios))
        if np.allclose(ratios, ratio, rtol=1e-3, atol=1e-6):
            for value, meaning in ((-1.0, "the sign is flipped"),
                                   (2.0, "it is twice too large (a factor of 2?)"),
                                   (0.5, "it is half the right size (a missing factor of 2?)")):
                if abs(ratio - value) < 1e-3:
                    return meaning
            return f"it is the right gradient times {ratio:.4g}: a missing or extra factor?"
    return "it differs from the right gradient by more than a constant factor: a wrong or " \
           "missing term in the derivative?"


def _as_inputs(inputs_or_shapes, rng) -> list[Tensor]:
    inputs = []
    for item in inputs_or_shapes:
        if isinstance(item, Tensor):
            inputs.append(Tensor(item.data.astype(np.float64), requires_grad=True))
        elif isinstance(item, tuple):
            # points of either sign, away from 0 where many functions have a kink
            magnitude = rng.uniform(0.3, 2.0, size=item)
            inputs.append(Tensor(magnitude * rng.choice([-1.0, 1.0], size=item),
                                 requires_grad=True))
        else:
            inputs.append(Tensor(np.asarray(item, dtype=np.float64), requires_grad=True))
    return inputs


def check_gradient(fn: Callable[..., Tensor], *inputs: Tensor | tuple | Sequence[float],
                   second_order: bool = True, seed: int = 0) -> None:
    """Check the gradient of ``fn`` (and its gradient's gradient) by central differences.

    Args:
        fn: maps Tensors to a Tensor, e.g. ``lambda x: Softsign.apply(x)``.
        inputs: the points to check at: Tensors or arrays, or shapes (tuples) for random
            points of either sign away from 0. Checked in float64.
        second_order: also check the backward pass's own gradient (``gradgradcheck``), which
            needs a backward pass written with Tensor operations.

    Prints one line when the check passes; raises :class:`SelfCheckFailed` saying which
    input's gradient is wrong, where, and what that usually means.
    """
    rng = np.random.default_rng(seed)
    points = _as_inputs(inputs or [(5,)], rng)
    name = getattr(fn, "__name__", "the function")
    for order, check in ((1, gradcheck), (2, gradgradcheck)):
        if order == 2 and not second_order:
            break
        try:
            check(fn, points)
        except GradcheckError as e:
            what = e.what if order == 1 else f"the gradient of {e.what}"
            raise SelfCheckFailed(
                f"{name}: the {'first' if order == 1 else 'second'}-order check failed for "
                f"{what} at index {e.index}: your backward gives "
                f"{np.asarray(e.analytic)[e.index]:.6g}, central differences give "
                f"{np.asarray(e.numeric)[e.index]:.6g}. Looking at all of them: "
                f"{_diagnose(e.analytic, e.numeric)}"
            ) from None
        except Exception as e:
            raise SelfCheckFailed(
                f"{name}: the {'first' if order == 1 else 'second'}-order check could not run: "
                f"{type(e).__name__}: {e}"
            ) from e
    orders = "first and second order" if second_order else "first order"
    print(f"check_gradient: {name} passes ({orders}, float64 central differences)")

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
from minigrad.estimators.catalogue import BERNOULLI
from minigrad.estimators.diagnostics import bias_z_scores, sample_mean, standard_error
from minigrad.estimators.exact import exact_gradient
from minigrad.tensor import Tensor

__all__ = ["check_gradient", "check_estimator", "SelfCheckFailed"]


class SelfCheckFailed(AssertionError):
    """A student's answer failed its self-check; the message says where and why."""


_SCALES = ((-1.0, "the sign is flipped"),
           (2.0, "it is twice too large (a factor of 2?)"),
           (0.5, "it is half the right size (a missing factor of 2?)"))


def _diagnose_scale(ratio: float) -> str:
    for value, meaning in _SCALES:
        if abs(ratio - value) < 0.05 * abs(value):
            return meaning
    return f"it is the right gradient times {ratio:.4g}: a missing or extra factor?"


def _diagnose_sampled(mean: np.ndarray, exact: np.ndarray, se: np.ndarray,
                      probabilities: np.ndarray | None = None) -> str:
    """Like :func:`_diagnose`, for a mean of samples known to within ``se`` per component.

    With the units' ``probabilities`` it also recognises the bias of a baseline that depends
    on the unit's own sample: ``c = k b`` adds ``-k E[b (b - p)] = -k p (1 - p)``.
    """
    scale = float(np.sum(mean * exact) / np.sum(exact * exact))
    if np.all(np.abs(mean - scale * exact) <= 4 * se + 1e-12):
        return _diagnose_scale(scale)
    if probabilities is not None:
        bias, variance = mean - exact, probabilities * (1 - probabilities)
        k = float(np.sum(bias * variance) / np.sum(variance * variance))
        fits = np.all(np.abs(bias - k * variance) <= 4 * se + 1e-12)
        if fits and np.any(np.abs(k * variance) > 4 * se):
            return (f"the bias is {k:+.3g} p (1 - p) in every component, the mark of a "
                    f"baseline that depends on the unit's own sample b (c = k b adds "
                    f"-k p (1 - p)): a baseline must not look at b")
    return "it differs from the right gradient by more than a constant factor: is the " \
           "score centred (b - p), is the loss multiplied in for every unit, and does " \
           "every baseline leave the sample b alone?"


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
            return _diagnose_scale(ratio)
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


def check_estimator(estimator: Callable, samples: int = 20_000, z_max: float = 4.0,
                    seed: int = 0) -> None:
    """Check that a Bernoulli gradient estimator is unbiased, against the exact gradient.

    Args:
        estimator: ``estimator(logits, f, u) -> g``, the book's estimator interface:
            ``logits`` a Tensor (batch, units), ``f`` maps samples to one value per example,
            ``u`` uniform noise of the logits' shape; ``g`` estimates d E[f(b)] / d logits.
        samples: independent single-sample estimates per example.
        z_max: how many standard errors from the exact gradient a component may be.

    Prints one line when every component is within ``z_max`` standard errors of the exact
    gradient (by enumeration, :mod:`minigrad.estimators.exact`) on the Bernoulli problem of
    :mod:`minigrad.estimators.catalogue`; raises
    :class:`SelfCheckFailed` naming the most biased component and what the bias looks like.
    """
    name = getattr(estimator, "__name__", "the estimator")
    base, check_loss = BERNOULLI.logits, BERNOULLI.f   # the catalogue's Bernoulli problem
    logits = Tensor(np.tile(base, (samples, 1)))
    u = np.random.default_rng(seed).random(logits.shape)
    try:
        g = estimator(logits, check_loss, u)
    except Exception as e:
        raise SelfCheckFailed(f"{name} could not run on the check problem: "
                              f"{type(e).__name__}: {e}") from e
    g = g.data if isinstance(g, Tensor) else np.asarray(g)
    if g.shape != logits.shape:
        raise SelfCheckFailed(
            f"{name} returned shape {g.shape}; an estimate has the logits' shape "
            f"{logits.shape} (one value per unit and example)")
    estimates = g.reshape((samples,) + base.shape)
    exact = exact_gradient(Tensor(base), check_loss).data
    z = bias_z_scores(estimates, exact)
    worst = np.unravel_index(np.argmax(np.abs(z)), z.shape)
    if not np.all(np.isfinite(z)) or abs(z[worst]) > z_max:
        mean = sample_mean(estimates)
        probabilities = 1 / (1 + np.exp(-base))   # the units' firing probabilities
        diagnosis = _diagnose_sampled(mean, exact, standard_error(estimates), probabilities)
        raise SelfCheckFailed(
            f"{name} is biased: for example {worst[0]}, unit {worst[1]} its mean over "
            f"{samples:,} samples is {mean[worst]:.4g} but the exact gradient is "
            f"{exact[worst]:.4g}, {abs(z[worst]):.1f} standard errors away (allowed: {z_max}). "
            f"Looking at all components: "
            f"{diagnosis}")
    se = float(np.sqrt(np.mean(standard_error(estimates) ** 2)))
    print(f"check_estimator: {name} is unbiased on the check problem (largest |z| "
          f"{np.abs(z).max():.1f} over {z.size} components, {samples:,} samples, "
          f"rms standard error {se:.4f})")

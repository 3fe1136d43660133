"""Finite-difference checks of gradients, used by the tests and the first chapter.

``gradcheck`` compares the engine's vector-Jacobian product with central differences in
float64, element by element, and along random directions (one scalar per direction, cheap for
large tensors, as in HIPS autograd). ``gradgradcheck`` runs the same check on the gradient
function itself, built with ``grad(..., create_graph=True)``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from minigrad.tensor import Tensor, grad, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def _outputs(fn, inputs) -> list[Tensor]:
    out = fn(*inputs)
    return [out] if isinstance(out, Tensor) else list(out)


def _scalar(fn, inputs, weights) -> float:
    """<weights, fn(inputs)> as a float."""
    outs = _outputs(fn, inputs)
    return float(sum(np.sum(w * o.data) for w, o in zip(weights, outs)))


def gradcheck(
    fn: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    n_directions: int = 3,
    seed: int = 0,
    elementwise: bool = True,
) -> bool:
    """Check the gradients of ``fn`` at ``inputs`` against central differences.

    For a random output weighting ``u`` (so non-scalar outputs are covered), the analytic
    gradient of ``<u, fn(x)>`` is compared with
    ``(<u, fn(x + eps e_i)> - <u, fn(x - eps e_i)>) / (2 eps)`` for every element ``i`` of
    every input that requires a gradient (``elementwise=True``), and with the directional
    derivative along ``n_directions`` random directions.

    Args:
        fn: maps the input tensors to a tensor (or a sequence of tensors).
        inputs: float64 tensors; those with ``requires_grad=True`` are checked.

    Returns:
        True; raises :class:`GradcheckError` with the worst disagreement otherwise.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; central differences need "
                "float64 inputs to be accurate"
            )
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    weights = [rng.standard_normal(o.shape) for o in outs]
    live = [(o, w) for o, w in zip(outs, weights) if o.requires_grad]
    wanted = [inputs[i] for i in checked]
    if live:
        analytic = grad(
            [o for o, _ in live],
            wanted,
            grad_outputs=[Tensor(w) for _, w in live],
            allow_unused=True,
        )
    else:
        analytic = [None] * len(wanted)
    analytic = [
        np.zeros(x.shape) if a is None else a.data for a, x in zip(analytic, wanted)
    ]

    def f(arrays):
        trial = list(inputs)
        for i, arr in zip(checked, arrays):
            # Keep requires_grad: fn may itself take gradients (see gradgradcheck).
            trial[i] = Tensor(arr, requires_grad=True)
        return _scalar(fn, trial, weights)

    base = [inputs[i].data.copy() for i in checked]
    if elementwise:
        for k, (x0, a) in enumerate(zip(base, analytic)):
            numeric = np.zeros_like(x0)
            for idx in np.ndindex(x0.shape):
                plus = [b.copy() for b in base]
                minus = [b.copy() for b in base]
                plus[k][idx] += eps
                minus[k][idx] -= eps
                numeric[idx] = (f(plus) - f(minus)) / (2 * eps)
            _compare(f"input {checked[k]}", a, numeric, atol, rtol)
    for d in range(n_directions):
        direction = [rng.standard_normal(b.shape) for b in base]
        plus = [b + eps * v for b, v in zip(base, direction)]
        minus = [b - eps * v for b, v in zip(base, direction)]
        numeric = (f(plus) - f(minus)) / (2 * eps)
        exact = float(sum(np.sum(a * v) for a, v in zip(analytic, direction)))
        _compare(f"random direction {d}", np.array(exact), np.array(numeric), atol, rtol)
    return True


def _compare(what: str, analytic: np.ndarray, numeric: np.ndarray, atol, rtol) -> None:
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    if np.all(err <= bound):
        return
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    raise GradcheckError(
        f"gradient check failed for {what}: at index {tuple(int(i) for i in worst)} the "
        f"analytic gradient is {analytic[worst]:.8g} but central differences give "
        f"{numeric[worst]:.8g} (abs error {err[worst]:.3g}, allowed {bound[worst]:.3g})"
    )


def gradgradcheck(
    fn: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    n_directions: int = 3,
    seed: int = 0,
) -> bool:
    """Check second derivatives: :func:`gradcheck` applied to the gradient of ``fn``.

    The gradient function maps ``(inputs..., u)`` to ``grad(<u, fn(inputs)>, inputs,
    create_graph=True)``; the output weighting ``u`` is itself an input, so the check also
    covers how the backward pass depends on the incoming gradient.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    rng = np.random.default_rng(seed + 1)
    with no_grad():
        outs = _outputs(fn, inputs)
    us = [Tensor(rng.standard_normal(o.shape), requires_grad=True) for o in outs]
    n_in = len(inputs)

    def grad_fn(*args):
        xs, u = list(args[:n_in]), list(args[n_in:])
        outs = [o for o in _outputs(fn, xs)]
        live = [(o, w) for o, w in zip(outs, u) if o.requires_grad]
        targets = [xs[i] for i in checked]
        if not live:
            return [Tensor(np.zeros(t.shape)) for t in targets]
        gs = grad([o for o, _ in live], targets, grad_outputs=[w for _, w in live],
                  create_graph=True, allow_unused=True)
        return [g if g is not None else Tensor(np.zeros(t.shape)) for g, t in zip(gs, targets)]

    return gradcheck(grad_fn, inputs + us, eps=eps, atol=atol, rtol=rtol,
                     n_directions=n_directions, seed=seed)

"""Finite-difference checks of gradients, used by the tests and the first chapter.

``gradcheck`` compares the engine's vector-Jacobian product with central differences in
float64, element by element, and along random directions (one scalar per direction, cheap for
large tensors, as in HIPS autograd). ``gradgradcheck`` runs the same check on the gradient
function itself, built with ``grad(..., create_graph=True)``. How far a correct gradient may be
from its central difference is worked out by :func:`finite_difference_tolerance` from the step,
the dtype and the size of the function, not picked by hand.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from minigrad.tensor import Tensor, grad, no_grad

# The error estimate of finite_difference_tolerance counts one rounding step per evaluation;
# sums of many terms can cost a few more. 100 keeps a correct gradient at least 10x inside the
# tolerance even when rounding costs 10 such steps.
SAFETY = 100.0


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate.

    Besides the message, it keeps what was compared: ``what`` (which input or direction),
    ``index``, and the whole ``analytic`` and ``numeric`` arrays.
    """

    def __init__(self, message: str, what: str = "", index: tuple = (),
                 analytic: np.ndarray | None = None, numeric: np.ndarray | None = None):
        super().__init__(message)
        self.what, self.index = what, index
        self.analytic, self.numeric = analytic, numeric


def finite_difference_tolerance(
    magnitude: float, eps: float = 1e-6, dtype: type | np.dtype = np.float64
) -> float:
    r"""How far a correct derivative can be from its central difference with step ``eps``.

    Taylor's theorem gives, for the central difference with step ``h``,

        (f(x + h) - f(x - h)) / (2h) = f'(x) + h^2 f'''(x) / 6 + ...

    so the truncation error is about ``h^2 |f'''| / 6``. Rounding adds to it: ``f`` is only
    computed to about ``u * M``, where ``u`` is the unit roundoff of ``dtype`` (1.1e-16 for
    float64) and ``M`` the size of the numbers summed to get ``f`` (``sum |terms|``, which is
    ``|f|`` unless terms cancel). The two evaluations can be ``2 u M`` apart, and dividing by
    ``2h`` makes that ``u M / h``. For inputs of unit scale, ``|f'''|`` is taken to be of the
    order of ``M`` as well. The tolerance is

        SAFETY * (u * M / h + h^2 * M / 6),   SAFETY = 100,

    so a correct gradient stays 10x inside it even when rounding costs 10 steps. It is still
    small enough to reject a wrong gradient: for ``M`` ~ 1 and ``h = 1e-6`` in float64 it is
    about 1e-8, so a wrong factor, a flipped sign or a missing term larger than that fails.
    It grows with ``M``: scale the inputs so that the function is of order one, or pass its
    true size (a loss of 1,400 summed from 144 products needs about 3e-5).

    Args:
        magnitude: ``M``, the size of the terms summed to compute the function.
        eps: the step ``h`` of the central difference.
        dtype: the floating-point type the function is evaluated in.
    """
    if not (np.isfinite(magnitude) and magnitude >= 0):
        raise ValueError(
            f"magnitude must be a finite number >= 0, got {magnitude}; pass the size of the "
            "terms summed to compute the function, such as np.sum(np.abs(terms))"
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    unit_roundoff = np.finfo(dtype).eps / 2
    rounding = unit_roundoff * magnitude / eps
    truncation = eps ** 2 * magnitude / 6
    return SAFETY * (rounding + truncation)


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
    atol: float | None = None,
    rtol: float = 0.0,
    n_directions: int = 3,
    seed: int = 0,
    elementwise: bool = True,
) -> bool:
    """Check the gradients of ``fn`` at ``inputs`` against central differences.

    For a random output weighting ``u`` (so non-scalar outputs are covered), the
    analytic gradient of ``<u, fn(x)>`` is compared with
    ``(<u, fn(x + eps e_i)> - <u, fn(x - eps e_i)>) / (2 eps)``
    for every element ``i`` of every input that requires a gradient
    (``elementwise=True``), and with the directional derivative along
    ``n_directions`` random unit directions.

    Args:
        fn: maps the input tensors to a tensor (or a sequence of tensors).
        inputs: float64 tensors; those with ``requires_grad=True`` are checked.
        atol: allowed absolute error; by default :func:`finite_difference_tolerance` of
            ``sum |u| * max(|fn(x)|, 1)``, the size of the terms of ``<u, fn(x)>``,
            each output counted as at least 1 (the size of the numbers it is made of).
        rtol: allowed error relative to the central difference, 0 by default: the error
            of a central difference does not grow with the derivative.

    Returns:
        True; raises :class:`GradcheckError` with the worst disagreement otherwise.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError(
            "gradcheck: no input has requires_grad=True, so there is nothing to check"
        )
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; central "
                "differences need float64 inputs to be accurate"
            )
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    weights = [rng.standard_normal(o.shape) for o in outs]
    if atol is None:
        # Each output counts at least 1: it may be a small difference of order-one
        # numbers (1 - sigmoid(20), say), with the rounding error of those numbers.
        size = sum(np.sum(np.abs(w) * np.maximum(np.abs(o.data), 1.0))
                   for w, o in zip(weights, outs))
        atol = finite_difference_tolerance(float(size), eps)
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
                # The step actually taken: x + eps is rounded when |x| is large.
                step = plus[k][idx] - minus[k][idx]
                numeric[idx] = (f(plus) - f(minus)) / step
            _compare(f"input {checked[k]}", a, numeric, atol, rtol)
    for d in range(n_directions):
        direction = [rng.standard_normal(b.shape) for b in base]
        norm = np.sqrt(sum(np.sum(v * v) for v in direction))
        plus = [b + eps * v / norm for b, v in zip(base, direction)]
        minus = [b - eps * v / norm for b, v in zip(base, direction)]
        numeric = (f(plus) - f(minus)) / (2 * eps)
        # Project on the steps actually taken, rounding included.
        steps = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
        exact = float(sum(np.sum(a * s) for a, s in zip(analytic, steps)))
        what = f"random direction {d}"
        _compare(what, np.array(exact), np.array(numeric), atol, rtol)
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
        f"{numeric[worst]:.8g} (abs error {err[worst]:.3g}, allowed {bound[worst]:.3g})",
        what=what, index=tuple(int(i) for i in worst), analytic=analytic, numeric=numeric,
    )


def gradgradcheck(
    fn: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float | None = None,
    rtol: float = 0.0,
    n_directions: int = 3,
    seed: int = 0,
) -> bool:
    """Check second derivatives: :func:`gradcheck` applied to the gradient of ``fn``.

    The gradient function maps ``(inputs..., u)`` to ``grad(<u, fn(inputs)>, inputs,
    create_graph=True)``; the output weighting ``u`` is itself an input, so the check also
    covers how the backward pass depends on the incoming gradient. The default ``atol`` is
    :func:`finite_difference_tolerance` of the size of the weighted gradient.
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

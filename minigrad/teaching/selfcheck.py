"""Checks a student calls on their own code, with a message that says what is wrong.

The exercises that ask for code end with one of these calls. Each runs the same test the
library's own code passes, and on failure says where the answer goes wrong and what that
usually means, instead of a bare assertion:

- :func:`check_gradient`: the backward pass of a function (a new ``Function``, say) against
  central differences in float64, first and second order.
- :func:`check_estimator`: a gradient estimator against the exact gradient by enumeration.
- :func:`check_function`: any function against a reference on several inputs: shapes first
  (transposed? not summed over a broadcast axis?), then values (a known mistake? a flipped
  sign? a constant factor?).

The ``check_*`` functions after it are :func:`check_function` with the inputs, reference and
typical mistakes of one exercise each; the exercise's text names the one to call.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from minigrad.gradcheck import GradcheckError, gradcheck, gradgradcheck
from minigrad.estimators.catalogue import BERNOULLI
from minigrad.estimators.diagnostics import bias_z_scores, sample_mean, standard_error
from minigrad.estimators.exact import exact_gradient
from minigrad.tensor import Tensor

__all__ = ["SelfCheckFailed", "check_gradient", "check_estimator", "check_function",
           "check_div_backward", "check_hvp", "check_mean_loss_lr", "check_one_unit_gradient",
           "check_best_baselines", "check_undecided_fraction", "check_rounding_variance",
           "check_half_width", "check_arm_variances", "check_two_class_gradient",
           "check_antithetic_es", "check_ordinal_ranks", "check_concrete_bias",
           "check_rebar_control_variate", "check_rebar_sign"]


class SelfCheckFailed(AssertionError):
    """A student's answer failed its self-check; the message says where and why."""


_SCALES = ((-1.0, "the sign is flipped"),
           (2.0, "it is twice too large (a factor of 2?)"),
           (0.5, "it is half the right size (a missing factor of 2?)"))


def _diagnose_scale(ratio: float, noun: str = "gradient") -> str:
    for value, meaning in _SCALES:
        if abs(ratio - value) < 0.05 * abs(value):
            return meaning
    return f"it is the right {noun} times {ratio:.4g}: a missing or extra factor?"


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


def _diagnose(analytic: np.ndarray, numeric: np.ndarray, order: int = 1) -> str:
    """What a wrong gradient most often means, from how it relates to the right one."""
    a, n = np.ravel(analytic), np.ravel(numeric)
    if not np.all(np.isfinite(a)):
        return "the gradient has NaN or inf in it: a division by zero or a log of 0?"
    if np.allclose(a, 0) and not np.allclose(n, 0):
        if order == 2:
            # the first order passed: the backward pass's numbers are right, but the graph
            # cannot see how they depend on the input
            return "the gradient of your backward pass is zero everywhere although its " \
                   "values are right: it computes with .data or NumPy arrays, which the " \
                   "graph cannot differentiate; write it with Tensor operations " \
                   "(self.inputs, not their .data)"
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
                f"{_diagnose(e.analytic, e.numeric, order)}"
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
    g = _array(g.data if isinstance(g, Tensor) else g, f"{name}'s estimate")
    if g.shape != logits.shape:
        raise SelfCheckFailed(
            f"{name} returned shape {g.shape}; an estimate has the logits' shape "
            f"{logits.shape} (one value per unit and example)")
    bad = ~np.isfinite(g)
    if bad.any():
        first = np.unravel_index(np.argmax(bad), g.shape)
        raise SelfCheckFailed(
            f"{name} returned NaN or inf in {int(bad.sum()):,} of {g.size:,} entries (the "
            f"first: sample {first[0] // len(base)}, example {first[0] % len(base)}, unit "
            f"{first[1]}, {g[first]}): a log of 0, a division by zero, or noise u of exactly "
            "0 or 1?")
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


# ---------------------------------------------------------------------- check_function
def _name(fn: Callable) -> str:
    name = getattr(fn, "__name__", "")
    return "your function" if name in ("", "<lambda>") else name


def _array(value, what: str) -> np.ndarray:
    value = value.data if isinstance(value, Tensor) else value
    kind = "U" if isinstance(value, (str, bytes)) else np.asarray(value).dtype.kind
    if kind in "USV" or kind == "O" and not _numbers_only(value):
        # NumPy would turn "0.5" into 0.5: an answer must be numbers, not text
        raise SelfCheckFailed(f"{what} is not a number or an array of numbers: it is "
                              f"{type(value).__name__} {value!r:.60}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SelfCheckFailed(f"{what} is not a number or an array of numbers: it is "
                              f"{type(value).__name__}") from None


def _numbers_only(value) -> bool:
    """Whether an object array (of ints and Fractions, say) holds only numbers."""
    import numbers

    return all(isinstance(v, numbers.Number) and not isinstance(v, bool)
               for v in np.ravel(np.asarray(value, dtype=object)))


def _shape_hint(got: tuple, want: tuple) -> str:
    """What a wrong shape most often means."""
    if len(want) >= 2 and got == want[::-1]:
        return "it is transposed"
    try:
        broadcast = np.broadcast_shapes(got, want) == got and len(got) >= len(want)
    except ValueError:
        broadcast = False
    if broadcast:
        return ("it has extra or stretched axes: if it is a gradient, it must have the shape "
                "of its input, so sum it over the axes that broadcasting added or stretched")
    if len(got) == len(want) or np.prod(got) == np.prod(want):
        return "a sum or a reduction over the wrong axis?"
    return "a missing or an extra axis?"


def _diagnose_values(got: np.ndarray, want: np.ndarray, mistakes, rtol: float, atol: float,
                     noun: str, hint: str) -> str:
    """What a wrong answer most often means, from how it relates to the right one."""
    if not np.all(np.isfinite(got)):
        return "there are NaN or inf values in it: a division by zero or a log of 0?"
    for meaning, values in mistakes:
        if values.shape == got.shape and np.allclose(got, values, rtol=rtol, atol=atol):
            return f"it is {meaning}"
    if np.allclose(got, 0, atol=atol) and not np.allclose(want, 0, atol=atol):
        return "it is zero everywhere"
    if np.any(np.abs(want) > atol):
        ratio = float(np.sum(got * want) / np.sum(want * want))
        if np.allclose(got, ratio * want, rtol=10 * rtol, atol=10 * atol):
            return _diagnose_scale(ratio, noun)
    return f"it differs from the right {noun} by more than a constant factor" + \
        (f": {hint}" if hint else "")


def check_function(fn: Callable, reference: Callable, cases: Sequence[tuple], *,
                   labels: Sequence[str] | None = None, parts: Sequence[str] | None = None,
                   mistakes: Sequence[tuple[str, Callable]] = (), rtol: float = 1e-6,
                   atol: float = 1e-9, noun: str = "value", hint: str = "",
                   what: str = "it agrees with the reference",
                   check: str = "check_function",
                   when_it_fails: tuple[str, str] | None = None) -> None:
    """Check ``fn(*case)`` against ``reference(*case)`` for every case.

    Args:
        fn: the student's function; reference: the right one (the library's, or a
            computation the library makes exact).
        when_it_fails: ``(words, meaning)``: when ``fn`` raises an error whose message holds
            ``words``, the failure message adds ``meaning`` (what the error usually means).
        cases: the argument tuples to call both with; labels: how to name each case in a
            message (default "case k").
        parts: names of the outputs when the function returns several (a tuple).
        mistakes: ``(meaning, function)`` pairs: wrong answers seen often, each with the
            reference's signature, and what it means when the student's answer equals one.
        rtol, atol: the tolerance of the comparison (``np.isclose``).
        noun: what the function computes ("gradient", "variance"), for the messages; hint:
            a sentence for a wrong answer that none of the diagnoses recognises; what and
            check: the pass message's words and the name it starts with.

    The shapes are compared first, case by case. The values are then compared over all cases
    together, so that the diagnosis (a known mistake, a flipped sign, a constant factor) has
    every value to go on. Prints one line when every value agrees; raises
    :class:`SelfCheckFailed` naming the first wrong value, its case, and the diagnosis.
    """
    name = _name(fn)
    labels = list(labels) if labels is not None else [f"case {k}" for k in range(len(cases))]
    names = list(parts) if parts is not None else [noun]

    def outputs(function, args, who):
        result = function(*args)
        if parts is None:
            result = (result,)
        elif not isinstance(result, (tuple, list)) or len(result) != len(parts):
            raise SelfCheckFailed(f"{name} should return {len(parts)} values "
                                  f"({', '.join(parts)}); it returned {type(result).__name__}")
        return [_array(r, f"{who}'s {n}") for r, n in zip(result, names)]

    got, want, wrong = [], [], [[] for _ in mistakes]
    for args, label in zip(cases, labels):
        try:
            mine = outputs(fn, args, name)
        except SelfCheckFailed:
            raise
        except Exception as e:
            extra = ""
            if when_it_fails and when_it_fails[0] in str(e):
                extra = f". That usually means {when_it_fails[1]}"
            raise SelfCheckFailed(f"{name} could not run for {label}: "
                                  f"{type(e).__name__}: {e}{extra}") from e
        right = outputs(reference, args, "the reference")
        for n, m, r in zip(names, mine, right):
            if m.shape != r.shape:
                raise SelfCheckFailed(
                    f"{name}: for {label} the {n} has shape {m.shape}, but it should have "
                    f"shape {r.shape}: {_shape_hint(m.shape, r.shape)}")
        got.append(mine)
        want.append(right)
        for k, (_, mistake) in enumerate(mistakes):
            wrong[k].append([np.broadcast_to(v, r.shape) for v, r in
                             zip(outputs(mistake, args, "a mistake"), right)])
    for j, n in enumerate(names):
        g = np.concatenate([np.ravel(o[j]) for o in got])
        w = np.concatenate([np.ravel(o[j]) for o in want])
        close = np.isclose(g, w, rtol=rtol, atol=atol)
        if close.all():
            continue
        first = int(np.argmin(close))
        sizes = np.cumsum([o[j].size for o in want])
        case = int(np.searchsorted(sizes, first, side="right"))
        shape = want[case][j].shape
        where = labels[case]
        if shape:
            index = np.unravel_index(first - (sizes[case - 1] if case else 0), shape)
            where += f", index {tuple(int(i) for i in index)}"
        known = [(meaning, np.concatenate([np.ravel(o[j]) for o in wrong[k]]))
                 for k, (meaning, _) in enumerate(mistakes)]
        raise SelfCheckFailed(
            f"{name}: the {n} is wrong for {where}: you give {g[first]:.6g}, the right "
            f"value is {w[first]:.6g}. Looking at all {g.size} values: "
            f"{_diagnose_values(g, w, known, rtol, atol, n, hint)}")
    print(f"{check}: {name} passes: {what} ({len(cases)} cases)")


# ---------------------------------------------------------------------- one per exercise
def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def check_div_backward(fn: Callable) -> None:
    """Chapter 1: ``fn(a, b, g) -> (grad_a, grad_b)`` for ``y = a / b``, NumPy arrays, ``g``
    the incoming gradient of ``y``; checked against minigrad's ``Div`` on broadcasting
    shapes."""
    from minigrad.functions import unbroadcast
    from minigrad.tensor import grad
    rng = np.random.default_rng(1)
    shapes = [((3, 4), (4,)), ((2, 3), (2, 1)), ((5,), (5,)), ((2, 3, 4), (3, 1))]
    cases = []
    for sa, sb in shapes:
        a = rng.standard_normal(sa)
        b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)
        cases.append((a, b, rng.standard_normal(np.broadcast_shapes(sa, sb))))

    def reference(a, b, g):
        a_t, b_t = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
        return [t.data for t in grad(a_t / b_t, [a_t, b_t], grad_outputs=g)]

    check_function(
        fn, reference, cases, labels=[f"a of shape {sa}, b of shape {sb}" for sa, sb in shapes],
        parts=("gradient of a", "gradient of b"), noun="gradient",
        mistakes=[("-g a / b summed: the square of b is missing",
                   lambda a, b, g: (g / b, unbroadcast(-g * a / b, b.shape)))],
        check="check_div_backward", what="it agrees with minigrad's gradients of a / b")


def _hvp_problem(seed: int, rows: int, dim: int, weight: float):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((rows, dim))
    x, v = rng.standard_normal(dim), rng.standard_normal(dim)

    def f(t: Tensor) -> Tensor:
        return (Tensor(A) @ t).softplus().sum() + 0.5 * weight * (t * t).sum()

    s = _sigmoid(A @ x)
    hessian = A.T @ np.diag(s * (1 - s)) @ A + weight * np.eye(dim)
    gradient = A.T @ s + weight * x
    return (f, x, v), hessian @ v, gradient


def check_hvp(fn: Callable) -> None:
    """Chapter 1: ``fn(f, x, v) -> H v``, the Hessian of ``f`` at ``x`` (NumPy arrays) times
    ``v``, for ``f(x) = sum softplus(A x) + c/2 |x|^2``, against the exact Hessian."""
    problems = [_hvp_problem(8, 5, 3, 1.0), _hvp_problem(9, 4, 4, 0.5),
                _hvp_problem(10, 2, 6, 0.0)]
    by_f = {id(args[0]): (hv, gradient) for args, hv, gradient in problems}
    check_function(
        fn, lambda f, x, v: by_f[id(f)][0], [args for args, _, _ in problems],
        labels=["A of shape (5, 3)", "A of shape (4, 4)", "A of shape (2, 6), no |x|^2 term"],
        noun="Hessian-vector product",
        mistakes=[("the gradient of f, not H v: differentiate the scalar grad f(x) . v once "
                   "more (the first gradient needs create_graph=True)",
                   lambda f, x, v: by_f[id(f)][1])],
        check="check_hvp", what="it agrees with the exact Hessian times v",
        when_it_fails=("does not require gradients",
                       "the first gradient was computed without a graph: "
                       "grad(f(x), [x], create_graph=True) records one, so that the "
                       "gradient can be differentiated again"))


def check_mean_loss_lr(fn: Callable) -> None:
    """Chapters 2 and 4: ``fn(lr, batch_size)``, the learning rate on the mean cross-entropy
    whose SGD step equals the step at ``lr`` on the seeds' loss (per-example cross-entropy
    divided by the 10 classes, summed over the batch). The reference takes both steps."""
    from minigrad.experiments.classifier import seed_loss
    from minigrad.functions import softmax_cross_entropy
    from minigrad.tensor import grad

    def equal_step_rate(lr, batch_size):
        rng = np.random.default_rng(batch_size)
        x = rng.standard_normal((batch_size, 6))
        y = np.eye(10)[rng.integers(0, 10, batch_size)]
        w0 = 0.3 * rng.standard_normal((6, 10))

        def gradient(loss_of):
            w = Tensor(w0, requires_grad=True)
            return grad(loss_of(Tensor(x) @ w), w)[0].data

        seed = gradient(lambda z: seed_loss(z, y).sum())
        mean = gradient(lambda z: softmax_cross_entropy(z, Tensor(y)))
        # the rate r at which r * mean equals lr * seed (the two are parallel)
        return lr * float(np.sum(seed * mean) / np.sum(mean * mean))

    cases = [(1.0, 50), (10.0, 50), (0.3, 50), (0.3, 100), (0.5, 20)]
    check_function(
        fn, equal_step_rate, cases, labels=[f"lr {lr} and a batch of {b}" for lr, b in cases],
        noun="learning rate", rtol=1e-6,
        mistakes=[("lr times the batch size: the seeds' loss is also divided by the number "
                   "of classes, 10", lambda lr, b: lr * b),
                  ("lr times 10 / batch size: the ratio is upside down; the seeds' loss is "
                   "the larger one (a sum over the batch), so the mean needs the larger rate",
                   lambda lr, b: lr * 10 / b),
                  ("lr itself: the two losses differ by a factor, so their rates must too",
                   lambda lr, b: lr)],
        hint="the right rate is proportional to lr and to the batch size",
        check="check_mean_loss_lr",
        what="one SGD step at its rate equals the seeds' step")


def check_one_unit_gradient(fn: Callable) -> None:
    """Chapter 3: ``fn(a, loss_off, loss_on)``, d E[L(b)] / da for one unit
    ``b ~ Bernoulli(sigmoid(a))`` with ``L(0) = loss_off``, ``L(1) = loss_on``."""
    from minigrad.estimators.exact import exact_gradient

    def exact(a, off, on):
        return exact_gradient(Tensor(np.array([[a]], dtype=np.float64)),
                              lambda b: b.sum(axis=1) * (on - off) + off).data[0, 0]

    cases = [(0.4, 2.0, 3.0), (-1.2, 5.0, 1.0), (2.0, -1.0, 0.5), (0.0, 1.0, 4.0)]
    check_function(
        fn, exact, cases, labels=[f"a = {a}, L(0) = {l0}, L(1) = {l1}" for a, l0, l1 in cases],
        noun="gradient",
        mistakes=[("sigma(a) (L(1) - L(0)): the firing probability in place of its "
                   "derivative sigma'(a) = sigma(a) (1 - sigma(a))",
                   lambda a, off, on: _sigmoid(a) * (on - off))],
        check="check_one_unit_gradient", what="it equals the gradient by enumeration")


def _enumerate(logits: np.ndarray, loss: Callable):
    """The configurations of the units, their probabilities, the losses, and p."""
    from minigrad.estimators.exact import enumerate_binary_configurations
    p = _sigmoid(logits)
    configs = enumerate_binary_configurations(len(p))
    prob = np.prod(np.where(configs == 1, p, 1 - p), axis=1)
    return configs, prob, _array(loss(Tensor(configs)), "the loss"), p


def check_best_baselines(fn: Callable) -> None:
    """Chapter 3: ``fn(a, loss)``, for each unit the constant baseline that minimises the
    variance of its REINFORCE estimate; ``a`` holds the units' logits (units,) and ``loss``
    maps a Tensor of configurations (rows, units) to one loss per row. Checked against the
    minimum of the variance by enumeration on the catalogue's Bernoulli problem."""
    from minigrad.estimators.catalogue import BERNOULLI_LOGITS, OFFSET, TARGETS, WEIGHTS

    def best(a, loss):
        configs, prob, losses, p = _enumerate(a, loss)
        score_sq = (configs - p) ** 2
        return (prob @ (score_sq * losses[:, None])) / (prob @ score_sq)

    def mean_loss(a, loss):
        configs, prob, losses, p = _enumerate(a, loss)
        return np.full(len(p), prob @ losses)

    def numerator(a, loss):
        configs, prob, losses, p = _enumerate(a, loss)
        return prob @ ((configs - p) ** 2 * losses[:, None])

    def problem(n):
        return lambda b: (b @ Tensor(WEIGHTS) - TARGETS[n]) ** 2 + OFFSET

    cases = [(BERNOULLI_LOGITS[n], problem(n)) for n in range(len(BERNOULLI_LOGITS))]
    check_function(
        fn, best, cases, labels=[f"example {n} of the Bernoulli problem" for n in range(3)],
        noun="baseline",
        mistakes=[("the mean loss E[L], the same for every unit: the variance weighs each "
                   "configuration by the squared score (b_i - p_i)^2 as well", mean_loss),
                  ("E[(b_i - p_i)^2 L] without dividing by E[(b_i - p_i)^2]", numerator)],
        check="check_best_baselines", what="it minimises the variance by enumeration")


def check_undecided_fraction(fn: Callable) -> None:
    """Chapter 4: ``fn(pre, slope)``, the fraction of entries of the pre-activations ``pre``
    whose firing probability ``sigmoid(slope * pre)`` lies strictly between 0.05 and 0.95."""
    pre = 2.5 * np.random.default_rng(4).standard_normal((200, 30))

    def fraction(x, m):
        p = _sigmoid(m * x)
        return float(np.mean((p > 0.05) & (p < 0.95)))

    cases = [(pre, 1.0), (pre, 2.5), (pre, 7.4)]
    check_function(
        fn, fraction, cases, labels=[f"slope {m}" for _, m in cases], noun="fraction",
        mistakes=[("the fraction at slope 1 for every slope: the slope multiplies the "
                   "pre-activation inside the sigmoid", lambda x, m: fraction(x, 1.0)),
                  ("the fraction of decided units (1 minus the right answer)",
                   lambda x, m: 1 - fraction(x, m)),
                  ("the fraction for sigmoid(pre / slope): the slope multiplies",
                   lambda x, m: fraction(x, 1 / m))],
        check="check_undecided_fraction", what="it counts the undecided units")


def check_rounding_variance(fn: Callable) -> None:
    """Chapter 5: ``fn(p)``, elementwise the variance of the stochastic rounding of ``p``
    (an array), against ``nary.stochastic_round`` averaged over a fine grid of noise."""
    from minigrad.estimators.nary import stochastic_round
    grid = (np.arange(2 ** 16) + 0.5) / 2 ** 16      # the noise u, a midpoint grid

    def variance(p):
        u = np.broadcast_to(grid[:, None], (len(grid), p.size))
        return stochastic_round(Tensor(np.tile(p.ravel(), (len(grid), 1))),
                                u).data.var(axis=0).reshape(p.shape)

    cases = [(np.array([-1.5, -0.25, 0.0, 0.5, 1.9, 2.3, 3.0]),),
             (np.array([[0.1, 0.75], [-2.6, 4.5]]),)]
    check_function(
        fn, variance, cases, labels=["p of shape (7,)", "p of shape (2, 2)"], noun="variance",
        atol=2 / len(grid),
        mistakes=[("p (1 - p): that is a Bernoulli variance with probability p; here the "
                   "probability of rounding up is the fractional part p - floor(p)",
                   lambda p: p * (1 - p)),
                  ("the fractional part itself, the probability of rounding up; the variance "
                   "of a Bernoulli variable is that probability times its complement",
                   lambda p: p - np.floor(p))],
        check="check_rounding_variance", what="it matches stochastic_round")


def check_half_width(fn: Callable) -> None:
    """Chapter 5: ``fn(g)``, for an increasing activation ``g`` (NumPy in, NumPy out) with
    ``g(0) = 0``, the half-width of the window of inputs that give the middle level 0: the
    ``x > 0`` where ``g(x)`` reaches 1/2. Checked on the slope-scaled ternary activation and
    on the 3-level staircase at slopes 1 to 16, against bisection (to within 1e-4)."""
    from minigrad.estimators.nary import staircase_activation, ternary_activation
    functions, labels = [], []
    for s in (1.0, 2.0, 4.0, 8.0, 16.0):
        functions.append(lambda x, s=s: ternary_activation(Tensor(s * np.asarray(x))).data)
        labels.append(f"the ternary activation at slope {s:g}")
    for s in (1.0, 2.0, 4.0, 8.0, 16.0):
        functions.append(lambda x, s=s: staircase_activation(Tensor(np.asarray(x, dtype=float)),
                                                             3, s).data)
        labels.append(f"the staircase at slope {s:g}")

    def bisection(g):
        low, high = 0.0, 5.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if g(np.array([middle]))[0] < 0.5 else (low, middle)
        return (low + high) / 2

    check_function(
        fn, bisection, [(g,) for g in functions], labels=labels, noun="half-width",
        rtol=0.0, atol=1e-4, hint="is the threshold 1/2, and is the window's edge where the "
        "output first reaches it?", check="check_half_width",
        what="it finds where the activation reaches 1/2")


def check_arm_variances(fn: Callable) -> None:
    """Chapter 8: ``fn(alpha) -> (var_arm, var_disarm)``, the variances of the ARM and
    DisARM estimates for one unit with logit ``alpha`` and ``f(b) = b``, against the library's
    ``arm`` and ``disarm`` averaged over a fine grid of noise."""
    from minigrad.estimators.antithetic import arm, disarm
    grid = ((np.arange(400_000) + 0.5) / 400_000)[:, None]

    @functools.lru_cache(maxsize=None)   # the reference and the mistake share them
    def moments(alpha):
        logits = Tensor(np.full(grid.shape, float(alpha)))
        values = [e(logits, lambda b: b.sum(axis=1), grid) for e in (arm, disarm)]
        return [(v.var(), v.mean()) for v in values]

    cases = [(alpha,) for alpha in (-2.0, -0.5, 0.0, 1.0, 3.0)]
    check_function(
        fn, lambda alpha: [v for v, _ in moments(alpha)], cases,
        labels=[f"alpha = {alpha}" for (alpha,) in cases],
        parts=("ARM variance", "DisARM variance"), noun="variance", rtol=1e-3, atol=1e-5,
        mistakes=[("the second moment E[g^2]: the variance subtracts the squared mean "
                   "(sigma(alpha) sigma(-alpha))^2",
                   lambda alpha: [v + m * m for v, m in moments(alpha)])],
        hint="if only the negative alphas are wrong, the roles of the two tails swap "
             "there: use q = sigma(|alpha|)",
        check="check_arm_variances", what="it matches arm and disarm")


def check_two_class_gradient(fn: Callable) -> None:
    """Chapter 9: ``fn(z, sigma)``, the gradient of the smoothed 0-1 loss
    ``F(z) = P(argmax(z + sigma eps) != 0)`` for two classes, label 0, logits ``z`` (2,)."""
    def gradient(z, sigma, spread=np.sqrt(2)):
        d = (z[1] - z[0]) / (sigma * spread)
        dz1 = np.exp(-d * d / 2) / np.sqrt(2 * np.pi) / (sigma * spread)
        return np.array([-dz1, dz1])

    cases = [(np.array([0.5, -0.5]), 2.0), (np.array([-1.0, 2.0]), 1.0),
             (np.array([3.0, 0.0]), 4.0), (np.array([0.2, 0.3]), 0.5)]
    check_function(
        fn, gradient, cases, labels=[f"z = ({z[0]:g}, {z[1]:g}), sigma = {s:g}" for z, s in cases],
        noun="gradient",
        mistakes=[("the gradient for a noise of standard deviation sigma on the logit gap; "
                   "the gap z_1 - z_0 gets the difference of two noises, of standard "
                   "deviation sigma sqrt(2)", lambda z, sigma: gradient(z, sigma, 1.0))],
        check="check_two_class_gradient", what="it equals the gradient of Phi")


def check_antithetic_es(fn: Callable) -> None:
    """Chapter 9: ``fn(z, labels, half_eps, sigma)``, the antithetic ES estimate of the
    0-1 loss's gradient from the pre-drawn ``half_eps`` (batch, n/2, K), against
    ``es_zero_one_gradient(..., antithetic=True)`` given the same noise."""
    from minigrad.estimators.black_box import es_zero_one_gradient, zero_one_loss
    rng = np.random.default_rng(6)
    cases = []
    for batch, half, k, sigma in ((8, 6, 3, 2.0), (5, 10, 4, 0.7)):
        cases.append((rng.standard_normal((batch, k)), rng.integers(0, k, batch),
                      rng.standard_normal((batch, half, k)), sigma))

    def reference(z, labels, half_eps, sigma):
        return es_zero_one_gradient(z, labels, half_eps, sigma=sigma,
                                    n=2 * half_eps.shape[1], antithetic=True)

    def plus_only(z, labels, half_eps, sigma):
        f = zero_one_loss(z[:, None, :] + sigma * half_eps, labels)
        return np.einsum("bj,bjk->bk", f, half_eps) / (2 * half_eps.shape[1] * sigma)

    check_function(
        fn, reference, cases, labels=["3 classes, sigma 2", "4 classes, sigma 0.7"],
        noun="estimate",
        mistakes=[("the +eps half alone: each pair contributes (F(z + sigma eps) - "
                   "F(z - sigma eps)) eps", plus_only)],
        hint="is each pair's weight F(z + sigma eps) - F(z - sigma eps), and the scale "
             "1 / (n sigma) with n the number of draws, pairs counted twice?",
        check="check_antithetic_es", what="it agrees with es_zero_one_gradient")


def check_ordinal_ranks(fn: Callable) -> None:
    """Chapter 9: ``fn(f)``, ordinal ranks of ``f`` along its last axis (ties broken by the
    order of the draws), scaled like ``centered_ranks`` to [-0.5, 0.5]."""
    from minigrad.estimators.black_box import centered_ranks
    rng = np.random.default_rng(9)

    def ordinal(f):
        ranks = np.argsort(np.argsort(f, axis=-1, kind="stable"), axis=-1)
        return ranks / (f.shape[-1] - 1) - 0.5

    cases = [((rng.random((5, 9)) < 0.3).astype(float),), (rng.standard_normal((3, 7)),),
             (rng.integers(0, 3, (2, 3, 6)).astype(float),)]
    check_function(
        fn, ordinal, cases, labels=["0-1 fitness (5, 9)", "real fitness (3, 7)",
                                    "three levels (2, 3, 6)"],
        noun="rank",
        mistakes=[("ranks with ties in an arbitrary order: the default np.argsort is not a "
                   "stable sort; pass kind='stable' to the inner one",
                   lambda f: np.argsort(np.argsort(f, axis=-1), axis=-1) / (f.shape[-1] - 1)
                   - 0.5),
                  ("centered_ranks itself: tied values share their average rank; ordinal "
                   "ranks give them distinct ranks in the order of the draws", centered_ranks),
                  ("the sorting order, not the ranks: np.argsort gives the index of the "
                   "k-th smallest value; its argsort gives each value's rank",
                   lambda f: np.argsort(f, axis=-1, kind="stable") / (f.shape[-1] - 1) - 0.5)],
        hint="ranks along the last axis (the draws), scaled by 1 / (n - 1) and shifted by "
             "-0.5, with ties broken by a stable sort?",
        check="check_ordinal_ranks", what="it gives the ordinal ranks")


def check_concrete_bias(fn: Callable) -> None:
    """Chapter 6: ``fn(temperature) -> bias``, the bias of the Concrete estimate for the
    chapter's one unit (logit 0.3, ``f(0) = -3``, ``f(1) = 2``): the mean of
    ``relaxed.concrete`` over the logistic noise minus the exact gradient, computed
    by quadrature on a midpoint grid of ``u`` (exact to about 1e-6)."""
    from minigrad.estimators.relaxed import concrete
    logit, f0, f1 = 0.3, -3.0, 2.0
    p = float(_sigmoid(logit))
    exact = p * (1 - p) * (f1 - f0)
    grid = ((np.arange(200_000) + 0.5) / 200_000)[:, None]
    logits = Tensor(np.full(grid.shape, logit))

    @functools.lru_cache(maxsize=None)
    def mean(temperature):
        g = concrete(logits, lambda b: b.sum(axis=1) * (f1 - f0) + f0, grid, temperature)
        return float(np.mean(g))

    cases = [(t,) for t in (2.0, 1.0, 0.5, 0.25, 0.1)]
    check_function(
        fn, lambda t: mean(t) - exact, cases, labels=[f"temperature {t}" for (t,) in cases],
        noun="bias", rtol=1e-3, atol=2e-4,
        mistakes=[("the mean of the relaxed estimate, not its difference from the exact "
                   "gradient p (1 - p) (f(1) - f(0))", lambda t: mean(t))],
        hint="random draws of u leave noise of about std / sqrt(n) in each value: average "
             "over a midpoint grid of u, (k + 1/2) / N, instead",
        check="check_concrete_bias", what="its bias matches quadrature over the noise")


def _rebar_terms(logits: Tensor, f: Callable, u: np.ndarray, v: np.ndarray,
                 temperature: float = 0.5):
    """REBAR's four terms for Bernoulli units and the control variate
    ``c(z) = f(sigmoid(z / temperature))``: ``f(b)(b - p)``, ``c(z~)(b - p)``,
    ``c(z)(b - p)``, ``d c(z) / d a`` and ``d c(z~) / d a`` (REBAR is 1 - 2 + 4 - 5)."""
    from minigrad import functions as F
    from minigrad.estimators.relaxed import (conditional_logistic_sample, hard_sample,
                                             logistic_sample)
    from minigrad.tensor import grad
    x = Tensor(np.asarray(logits.data, dtype=np.float64), requires_grad=True)
    b = hard_sample(x, u)
    score = b - _sigmoid(x.data)
    f_b = np.asarray(f(Tensor(b)).data)[:, None]
    c_z = f(F.sigmoid(logistic_sample(x, u) * (1.0 / temperature)))
    c_tilde = f(F.sigmoid(conditional_logistic_sample(x, b, v) * (1.0 / temperature)))
    (d_z,) = grad(c_z.sum(), x)
    (d_tilde,) = grad(c_tilde.sum(), x)
    return (f_b * score, c_tilde.data[:, None] * score, c_z.data[:, None] * score,
            d_z.data, d_tilde.data)


def _rebar_cases():
    from minigrad.estimators.catalogue import BERNOULLI
    cases = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        logits = Tensor(np.tile(BERNOULLI.logits, (2, 1)) + rng.normal(0, 0.5, (6, 3)))
        cases.append((logits, BERNOULLI.f, rng.random((6, 3)), rng.random((6, 3))))
    return cases


def check_rebar_control_variate(fn: Callable) -> None:
    """Chapter 7: ``fn(logits, f, u, v) -> g``, REBAR for Bernoulli units with ``eta = 1``
    and the Concrete relaxation at temperature 0.5: first term by term against the library's
    pieces (which mistake, if any), then the oracle: unbiased against enumeration."""
    def term(*which):
        def combine(logits, f, u, v):
            parts = _rebar_terms(logits, f, u, v)
            return sum(sign * parts[k] for k, sign in which)
        return combine

    cases = _rebar_cases()
    check_function(
        fn, term((0, 1), (1, -1), (3, 1), (4, -1)), cases,
        labels=[f"random logits and noise {k}" for k in range(len(cases))],
        noun="estimate", rtol=1e-5, atol=1e-7,
        mistakes=[
            ("plain REINFORCE f(b)(b - p): the control variate and its correction are "
             "missing", term((0, 1))),
            ("missing the reparameterised term + d c(z) / d a, which adds back the control "
             "variate's mean", term((0, 1), (1, -1), (4, -1))),
            ("missing the term - d c(z~) / d a", term((0, 1), (1, -1), (3, 1))),
            ("using c(z) in the score term where c(z~) belongs: a control variate that "
             "depends on b through z is a baseline that peeks at the sample",
             term((0, 1), (2, -1), (3, 1), (4, -1))),
            ("the control variate with the wrong sign (eta = -1): still unbiased, but it "
             "adds variance instead of removing it", term((0, 1), (1, 1), (3, -1), (4, 1))),
        ],
        hint="c(z) = f(sigmoid(z / 0.5)) with z = a + log u - log(1 - u), z~ from "
             "conditional_logistic_sample(a, b, v), both differentiated in a",
        check="check_rebar_control_variate", what="it is REBAR, term by term")
    rng = np.random.default_rng(7)

    def with_fresh_v(logits, f, u):
        return fn(logits, f, u, rng.random(logits.shape))

    with_fresh_v.__name__ = _name(fn)
    check_estimator(with_fresh_v)


def check_rebar_sign(fn: Callable, samples: int = 20_000) -> None:
    """Chapter 7: ``fn(logits, f, u, v) -> g``, a REBAR estimator that is unbiased *and*
    reduces variance: its mean variance on the catalogue's Bernoulli problem must be below
    REINFORCE's (without a baseline). A control variate with the wrong sign passes the
    z-test and fails here."""
    from minigrad.estimators.catalogue import BERNOULLI
    from minigrad.estimators.score_function import reinforce
    name = _name(fn)
    logits = Tensor(np.tile(BERNOULLI.logits, (samples, 1)))
    rng = np.random.default_rng(11)
    u, v = rng.random(logits.shape), rng.random(logits.shape)

    def estimator(a, f, noise):
        return fn(a, f, noise, v)

    estimator.__name__ = name
    check_estimator(estimator, samples=samples)
    try:
        mine = _array(fn(logits, BERNOULLI.f, u, v), f"{name}'s estimate")
    except Exception as e:
        raise SelfCheckFailed(f"{name} could not run: {type(e).__name__}: {e}") from e
    plain = np.asarray(reinforce(logits, BERNOULLI.f, u))
    ratio = float(mine.var(axis=0).mean() / plain.var(axis=0).mean())
    if ratio >= 1:
        raise SelfCheckFailed(
            f"{name} is unbiased (the z-test above passed), but its variance is "
            f"{ratio:.2f} times that of plain REINFORCE on the same noise: the control "
            f"variate adds noise instead of removing it. A control variate of the wrong "
            f"sign keeps the mean (every eta does) and adds to the noise it should cancel; "
            f"only the variance can show it. Check the sign of each REBAR term.")
    print(f"check_rebar_sign: {name} passes: unbiased, and its variance is {ratio:.2f} "
          f"times plain REINFORCE's")

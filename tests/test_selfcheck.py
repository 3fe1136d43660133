"""The students' self-checks pass on right answers and explain wrong ones."""
import re

import numpy as np
import pytest

from minigrad.teaching.selfcheck import SelfCheckFailed, check_gradient
from minigrad.tensor import Function


class Softsign(Function):
    # y = x / (1 + |x|);  dx = g / (1 + |x|)^2
    def forward(self, x):
        return x / (1.0 + np.abs(x))

    def backward(self, g):
        (x,) = self.inputs
        return g / (1.0 + x.abs()) ** 2


class FlippedSoftsign(Softsign):
    def backward(self, g):
        return -super().backward(g)


class DoubledSoftsign(Softsign):
    def backward(self, g):
        return 2.0 * super().backward(g)


class WrongPowerSoftsign(Softsign):
    def backward(self, g):
        (x,) = self.inputs
        return g / (1.0 + x.abs())


class ArrayBackwardSoftsign(Softsign):
    """Right values, but the backward pass leaves Tensor operations: no second order."""
    def backward(self, g):
        (x,) = self.inputs
        from minigrad.tensor import Tensor
        return Tensor(g.data / (1.0 + np.abs(x.data)) ** 2)


def softsign(x):
    return Softsign.apply(x)


def test_a_right_answer_passes(capsys):
    check_gradient(softsign, (4, 3))
    check_gradient(softsign, np.array([-3.0, -0.4, 0.25, 2.0]))
    assert "softsign passes (first and second order" in capsys.readouterr().out


@pytest.mark.parametrize("cls, hint", [
    (FlippedSoftsign, "the sign is flipped"),
    (DoubledSoftsign, "twice too large"),
    (WrongPowerSoftsign, "more than a constant factor"),
])
def test_typical_wrong_answers_fail_with_a_hint(cls, hint):
    with pytest.raises(SelfCheckFailed, match=hint) as info:
        check_gradient(lambda x: cls.apply(x), (6,))
    assert "first-order check failed for input 0 at index" in str(info.value)


def test_a_backward_outside_the_graph_fails_the_second_order_check():
    check_gradient(lambda x: ArrayBackwardSoftsign.apply(x), (6,), second_order=False)
    with pytest.raises(SelfCheckFailed, match="second-order check"):
        check_gradient(lambda x: ArrayBackwardSoftsign.apply(x), (6,))


# ---------------------------------------------------------------------- check_estimator
from minigrad.estimators.score_function import bernoulli_sample, reinforce  # noqa: E402
from minigrad.teaching.selfcheck import check_estimator  # noqa: E402
from minigrad.tensor import Tensor  # noqa: E402


def my_reinforce(logits, f, u):
    b = bernoulli_sample(logits, u)
    p = 1 / (1 + np.exp(-logits.data))
    return Tensor((b - p) * f(Tensor(b)).data[:, None])


def test_check_estimator_passes_right_answers(capsys):
    check_estimator(my_reinforce)
    check_estimator(lambda a, f, u: reinforce(a, f, u, baseline=3.0))
    assert "my_reinforce is unbiased" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, f, u: -my_reinforce(a, f, u), "the sign is flipped"),
    (lambda a, f, u: 0.5 * my_reinforce(a, f, u), "half the right size"),
    (lambda a, f, u: Tensor(bernoulli_sample(a, u) * f(Tensor(bernoulli_sample(a, u))).data[:, None]),
     "is the score centred"),
])
def test_check_estimator_explains_typical_wrong_answers(wrong, hint):
    with pytest.raises(SelfCheckFailed, match="is biased: for example") as info:
        check_estimator(wrong)
    assert hint in str(info.value)


def test_check_estimator_recognises_a_baseline_that_peeks_at_the_sample():
    def peeking(logits, f, u):
        return reinforce(logits, f, u, baseline=3.0 * bernoulli_sample(logits, u))

    with pytest.raises(SelfCheckFailed, match="is biased: for example") as info:
        check_estimator(peeking)
    message = str(info.value)
    assert "depends on the unit's own sample b" in message
    k = float(re.search(r"the bias is ([-+0-9.e]+) p \(1 - p\)", message).group(1))
    assert abs(k + 3) < 0.1   # c = 3 b adds -3 p (1 - p)


def test_check_estimator_says_when_the_shape_is_wrong():
    with pytest.raises(SelfCheckFailed, match="returned shape"):
        check_estimator(lambda a, f, u: Tensor(np.zeros(a.shape[0])))


# ---------------------------------------------------------------------- check_function
import math  # noqa: E402

from minigrad.teaching import selfcheck as sc  # noqa: E402
from minigrad.functions import unbroadcast  # noqa: E402
from minigrad.estimators.black_box import centered_ranks, zero_one_loss  # noqa: E402
from minigrad.estimators.exact import enumerate_binary_configurations  # noqa: E402
from minigrad.tensor import grad  # noqa: E402


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_check_function_compares_shapes_then_values(capsys):
    square = lambda x: x * x  # noqa: E731
    cases = [(np.arange(3.0),), (np.ones((2, 2)),)]
    sc.check_function(square, square, cases, what="it squares")
    assert "check_function: your function passes: it squares (2 cases)" in capsys.readouterr().out
    with pytest.raises(SelfCheckFailed, match=r"has shape \(3, 2\).*it is transposed"):
        sc.check_function(lambda x: (x * x).T, square, [(np.ones((2, 3)),)])
    with pytest.raises(SelfCheckFailed, match=r"case 0, index \(1,\): you give -1, the "
                                              r"right value is 1\. .*the sign is flipped"):
        sc.check_function(lambda x: -x * x, square, cases)
    with pytest.raises(SelfCheckFailed, match="it is the cube"):
        sc.check_function(lambda x: x ** 3, square, [(np.array([2.0, 3.0]),)],
                          mistakes=[("the cube", lambda x: x ** 3)])
    with pytest.raises(SelfCheckFailed, match="could not run for case 0: ZeroDivisionError"):
        sc.check_function(lambda x: 1 / 0, square, cases)


# One right answer and typical wrong ones per exercise check; each wrong answer must fail with
# the diagnosis named. All the checks are deterministic (fixed inputs, or exact references).
def div_backward(a, b, g):
    return g / b, unbroadcast(-g * a / b ** 2, b.shape)


def hvp(f, x, v):
    x_t = Tensor(x, requires_grad=True)
    (g_x,) = grad(f(x_t), x_t, create_graph=True)
    (hv,) = grad((g_x * Tensor(v)).sum(), x_t)
    return hv.data


def gradient_only(f, x, v):
    x_t = Tensor(x, requires_grad=True)
    return grad(f(x_t), x_t)[0].data


def mean_loss_lr(lr, batch_size):
    return lr * batch_size / 10


def one_unit_gradient(a, loss_off, loss_on):
    return _sigmoid(a) * (1 - _sigmoid(a)) * (loss_on - loss_off)


def best_baselines(a, loss, score=lambda c, p: (c - p) ** 2, divide=True):
    p = _sigmoid(a)
    configs = enumerate_binary_configurations(len(a))
    prob = np.prod(np.where(configs == 1, p, 1 - p), axis=1)
    losses, weight = loss(Tensor(configs)).data, score(configs, p)
    return (prob @ (weight * losses[:, None])) / (prob @ weight if divide else 1.0)


def undecided_fraction(pre, slope):
    p = _sigmoid(slope * pre)
    return float(np.mean((p > 0.05) & (p < 0.95)))


def rounding_variance(p):
    phi = p - np.floor(p)
    return phi * (1 - phi)


X_GRID = np.linspace(0, 5, 500_001)


def half_width(g):
    return X_GRID[np.argmax(g(X_GRID) >= 0.5)]


def arm_variances(alpha, q_of=lambda alpha: _sigmoid(abs(alpha)), centred=True):
    q = q_of(alpha)
    mean_sq = (q * (1 - q)) ** 2 if centred else 0.0
    return (2 * (1 - q) * (q ** 2 / 4 + (1 - q) ** 2 / 12) - mean_sq,
            2 * (1 - q) * q ** 2 / 4 - mean_sq)


def two_class_gradient(z, sigma, spread=math.sqrt(2)):
    d = (z[1] - z[0]) / (sigma * spread)
    dz1 = math.exp(-d * d / 2) / math.sqrt(2 * math.pi) / (sigma * spread)
    return np.array([-dz1, dz1])


def antithetic_es(z, labels, half_eps, sigma, minus_sign=1.0, pairs=2):
    n = pairs * half_eps.shape[1]
    plus = zero_one_loss(z[:, None, :] + sigma * half_eps, labels)
    minus = zero_one_loss(z[:, None, :] - sigma * half_eps, labels)
    return np.einsum("bj,bjk->bk", plus - minus_sign * minus, half_eps) / (n * sigma)


def ordinal_ranks(f):
    ranks = np.argsort(np.argsort(f, axis=-1, kind="stable"), axis=-1)
    return ranks / (f.shape[-1] - 1) - 0.5


def relaxed_bias(temperature, logit=0.3, f0=-3.0, f1=2.0, subtract=True):
    """Chapter 6's Concrete bias by hand: f is linear, so the relaxed gradient is
    (f1 - f0) E[s (1 - s) / t] with s = sigmoid((a + logit(u)) / t), u on a midpoint grid."""
    u = (np.arange(400_000) + 0.5) / 400_000
    s = _sigmoid((logit + np.log(u) - np.log1p(-u)) / temperature)
    p = _sigmoid(logit)
    exact = p * (1 - p) * (f1 - f0)
    return (f1 - f0) * np.mean(s * (1 - s) / temperature) - (exact if subtract else 0.0)


def rebar_concrete(logits, f, u, v, eta=1.0):
    from minigrad.estimators.controls import RelaxedControl
    from minigrad.estimators.relaxed import concrete_relaxation, rebar
    control = RelaxedControl(eta=eta, relaxation=concrete_relaxation)
    return rebar(logits, f, u, v, control)


def reinforce_only(logits, f, u, v):
    from minigrad.estimators.score_function import reinforce
    return reinforce(logits, f, u)


EXERCISE_CHECKS = {
    "concrete_bias": (sc.check_concrete_bias, relaxed_bias, [
        (lambda t: relaxed_bias(t, subtract=False), "not its difference from the exact"),
        (lambda t: -relaxed_bias(t), "the sign is flipped"),
    ]),
    "rebar": (sc.check_rebar_control_variate, rebar_concrete, [
        (reinforce_only, "plain REINFORCE"),
        (lambda a, f, u, v: rebar_concrete(a, f, u, v, eta=-1.0), "the wrong sign"),
    ]),
    "div": (sc.check_div_backward, div_backward, [
        (lambda a, b, g: (g / b, -g * a / b ** 2), "sum it over the axes that broadcasting"),
        (lambda a, b, g: (g / b, unbroadcast(-g * a / b, b.shape)), "the square of b is missing"),
    ]),
    "hvp": (sc.check_hvp, hvp, [
        (gradient_only, "the gradient of f, not H v"),
        (lambda f, x, v: 2 * hvp(f, x, v), "twice too large"),
    ]),
    "mean_loss_lr": (sc.check_mean_loss_lr, mean_loss_lr, [
        (lambda lr, b: lr * b, "also divided by the number of classes"),
        (lambda lr, b: 5 * lr, "proportional to lr and to the batch size"),
    ]),
    "one_unit": (sc.check_one_unit_gradient, one_unit_gradient, [
        (lambda a, off, on: _sigmoid(a) * (on - off), "in place of its derivative"),
        (lambda a, off, on: -one_unit_gradient(a, off, on), "the sign is flipped"),
    ]),
    "baselines": (sc.check_best_baselines, best_baselines, [
        (lambda a, loss: best_baselines(a, loss, score=lambda c, p: np.ones_like(c - p)),
         "the mean loss E[L]"),
        (lambda a, loss: best_baselines(a, loss, divide=False), "without dividing"),
    ]),
    "undecided": (sc.check_undecided_fraction, undecided_fraction, [
        (lambda pre, m: undecided_fraction(pre, 1.0), "the fraction at slope 1"),
        (lambda pre, m: 1 - undecided_fraction(pre, m), "decided units"),
    ]),
    "rounding": (sc.check_rounding_variance, rounding_variance, [
        (lambda p: p * (1 - p), "a Bernoulli variance with probability p"),
    ]),
    "half_width": (sc.check_half_width, half_width, [
        (lambda g: 2 * half_width(g), "twice too large"),
    ]),
    "arm": (sc.check_arm_variances, arm_variances, [
        (lambda alpha: arm_variances(alpha, centred=False), "the second moment"),
        (lambda alpha: arm_variances(alpha, q_of=_sigmoid), "only the negative alphas"),
    ]),
    "two_class": (sc.check_two_class_gradient, two_class_gradient, [
        (lambda z, s: two_class_gradient(z, s, spread=1.0), "sigma sqrt(2)"),
        (lambda z, s: -two_class_gradient(z, s), "the sign is flipped"),
    ]),
    "antithetic": (sc.check_antithetic_es, antithetic_es, [
        (lambda *args: antithetic_es(*args, pairs=1), "twice too large"),
        (lambda *args: antithetic_es(*args, minus_sign=0.0), "the +eps half alone"),
    ]),
    "ordinal": (sc.check_ordinal_ranks, ordinal_ranks, [
        (centered_ranks, "tied values share their average rank"),
        (lambda f: np.argsort(f, axis=-1, kind="stable") / (f.shape[-1] - 1) - 0.5,
         "the sorting order, not the ranks"),
    ]),
}


@pytest.mark.parametrize("key", EXERCISE_CHECKS)
def test_an_exercise_check_passes_the_reference_solution(key, capsys):
    check, right, _ = EXERCISE_CHECKS[key]
    check(right)
    assert f"{check.__name__}: {right.__name__} passes" in capsys.readouterr().out


@pytest.mark.parametrize("key, k", [(key, k) for key, (_, _, wrong) in EXERCISE_CHECKS.items()
                                    for k in range(len(wrong))])
def test_an_exercise_check_explains_a_typical_wrong_answer(key, k):
    check, _, wrong = EXERCISE_CHECKS[key]
    answer, hint = wrong[k]
    with pytest.raises(SelfCheckFailed) as info:
        check(answer)
    message = str(info.value)
    assert hint in message, message
    assert "the right value is" in message or "should have shape" in message


# ---------------------------------------------------------------------- named mistakes
def test_a_backward_pass_on_data_is_named_not_called_zero():
    import minigrad.teaching.selfcheck as sc
    from minigrad.tensor import Function

    class SoftsignOnArrays(Function):
        def forward(self, x):
            return x / (1 + np.abs(x))

        def backward(self, g):
            (x,) = self.inputs
            return Tensor(g.data / (1 + np.abs(x.data)) ** 2)   # right numbers, no graph

    with pytest.raises(sc.SelfCheckFailed, match=r"second-order .* computes with \.data or "
                                                  "NumPy arrays"):
        sc.check_gradient(lambda x: SoftsignOnArrays.apply(x), (5,))


def test_a_missing_create_graph_is_named():
    import minigrad.teaching.selfcheck as sc
    from minigrad.tensor import grad

    def hvp(f, x, v):
        x = Tensor(x, requires_grad=True)
        (g,) = grad(f(x), [x])                       # create_graph=True forgotten
        (h,) = grad((g * Tensor(v)).sum(), [x])
        return h.data

    with pytest.raises(sc.SelfCheckFailed, match="create_graph=True"):
        sc.check_hvp(hvp)


def test_a_nan_estimate_is_named():
    import minigrad.teaching.selfcheck as sc
    from minigrad.estimators.score_function import reinforce

    def with_a_nan(logits, f, u):
        g = np.array(reinforce(logits, f, u))
        g[4, 2] = np.nan
        return g

    with pytest.raises(sc.SelfCheckFailed, match=r"returned NaN or inf in 1 of .* unit 2"):
        sc.check_estimator(with_a_nan, samples=100)


@pytest.mark.parametrize("answer", ["0.5", b"0.5", ["0.5", 1.0], np.array(["0.5"])])
def test_a_string_answer_is_refused_not_converted(answer):
    import minigrad.teaching.selfcheck as sc

    with pytest.raises(sc.SelfCheckFailed, match="not a number or an array of numbers"):
        sc.check_function(lambda x: answer, lambda x: np.full(np.shape(answer), 0.5), [(1,)])
    sc.check_function(lambda x: [1, 0.5], lambda x: np.array([1, 0.5]), [(1,)])


def test_the_rebar_sign_check_sees_through_the_variance(capsys):
    sc.check_rebar_sign(rebar_concrete)
    assert "check_rebar_sign: rebar_concrete passes" in capsys.readouterr().out

    def flipped(logits, f, u, v):
        return rebar_concrete(logits, f, u, v, eta=-1.0)

    with pytest.raises(SelfCheckFailed, match="unbiased .the z-test above passed.") as info:
        sc.check_rebar_sign(flipped)
    assert "the control variate adds noise" in str(info.value)
    # and a biased answer fails the z-test first
    with pytest.raises(SelfCheckFailed, match="is biased"):
        sc.check_rebar_sign(lambda logits, f, u, v: rebar_concrete(logits, f, u, v) + 0.1)

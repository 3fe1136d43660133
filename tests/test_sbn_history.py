"""Short SBN training runs are the same whether the step evaluates f(b) once or again.

The step evaluates ``f(b)`` once: the estimator's learning signal returns the value the
step hands it when asked for its value at its own sample. That may not change a run. For
every estimator an SBN trains with, on one and two linear layers and (for the estimators
with their own step code) the nonlinear model, a 12-step run must record the same training
ELBO, log-variance of the encoder gradient and validation bound, to the bit, as the same
run with every learning signal evaluating ``f(b)`` again (the step before it shared the
value); so must a variance race, where every racer is given the step's ``f(b)``.

Both runs are on the same machine, so the comparison is exact and does not depend on the
BLAS kernels. Numbers pinned from another machine could not be: Adam divides each gradient
component by its own scale, so a component that is rounding noise (the difference of two
nearly equal terms) takes a full step whose sign the rounding decides, and another
kernel's summation order moves a 12-step run by more than float32 rounding. The other
changes of the same work (one backward pass for the gradients of ``c(z)`` and ``c(z~)``,
the temperature made once, the Concrete relaxation as one Function) were checked the same
way when they were made: every run matched the previous code's bits.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.catalogue import SBN_ESTIMATORS
from minigrad.experiments.sbn import SBNConfig, train_sbn, variance_race

# (estimator, stochastic layers, nonlinear): every estimator an SBN trains with
CASES = [
    ('REINFORCE', 1, False),
    ('REINFORCE LOO', 1, False),
    ('NVIL', 1, False),
    ('NVIL (REBAR code)', 1, False),
    ('ARM', 1, False),
    ('DisARM', 1, False),
    ('REBAR', 1, False),
    ('REBAR (Concrete relaxation)', 1, False),
    ('dynamic REBAR', 1, False),
    ('RELAX', 1, False),
    ('SimpleMuProp', 1, False),
    ('MuProp', 1, False),
    ('MuProp (REBAR code)', 1, False),
    ('Concrete', 1, False),
    ('REINFORCE', 2, False),
    ('REINFORCE LOO', 2, False),
    ('NVIL', 2, False),
    ('NVIL (REBAR code)', 2, False),
    ('ARM', 2, False),
    ('DisARM', 2, False),
    ('REBAR', 2, False),
    ('REBAR (Concrete relaxation)', 2, False),
    ('dynamic REBAR', 2, False),
    ('RELAX', 2, False),
    ('SimpleMuProp', 2, False),
    ('MuProp', 2, False),
    ('MuProp (REBAR code)', 2, False),
    ('Concrete', 2, False),
    ('NVIL', 1, True),
    ('MuProp', 1, True),
    ('DisARM', 1, True),
    ('REBAR', 1, True),
    ('dynamic REBAR', 1, True),
    ('RELAX', 1, True),
]


def _data():
    rng = np.random.default_rng(21)
    x = (rng.random((72, 784)) < 0.3).astype(np.float32)
    return x[:48], x[48:]


def test_every_sbn_estimator_is_covered():
    assert {name for name, _, _ in CASES} == set(SBN_ESTIMATORS)


@pytest.fixture
def recompute_f():
    """Within the block, every learning signal evaluates f(b) again instead of returning
    the value the step hands it: the step as it was before it shared f(b)."""
    from minigrad.models.sbn import SigmoidBeliefNet

    original = SigmoidBeliefNet.learning_signal

    def recomputing(self, *args, value=None, **kwargs):
        return original(self, *args, **kwargs)

    class Patch:
        def __enter__(self):
            SigmoidBeliefNet.learning_signal = recomputing

        def __exit__(self, *exc):
            SigmoidBeliefNet.learning_signal = original

    yield Patch()
    SigmoidBeliefNet.learning_signal = original


def _run(case):
    estimator, layers, nonlinear = case
    train, val = _data()
    config = SBNConfig(f"{estimator}-{layers}-{nonlinear}", estimator, steps=12,
                       n_layers=layers, nonlinear=nonlinear, record_every=4, eval_k=2,
                       eval_examples=4, seed=3)
    return train_sbn(config, train, val)[1]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_a_short_run_is_the_same_with_f_evaluated_once_or_again(case, recompute_f):
    shared = _run(case)
    with recompute_f:
        again = _run(case)
    assert shared.steps == again.steps == [4, 8, 12]
    # the same machine, the same sums: the same bits
    np.testing.assert_array_equal(shared.train_elbo, again.train_elbo)
    np.testing.assert_array_equal(shared.log_variance, again.log_variance)
    assert shared.val_iwae == again.val_iwae
    assert np.all(np.isfinite(shared.train_elbo))


# A variance race (REBAR followed, the others evaluated on its minibatches and noise, each
# racer given the step's f(b)): (layers, nonlinear)
RACERS = ["NVIL", "MuProp", "DisARM", "dynamic REBAR", "RELAX", "MuProp (REBAR code)"]
RACES = [(1, True), (2, False)]


@pytest.mark.parametrize("case", RACES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_a_variance_race_is_the_same_with_f_evaluated_once_or_again(case, recompute_f):
    layers, nonlinear = case
    train, _ = _data()
    config = SBNConfig("race", "REBAR", steps=8, n_layers=layers, nonlinear=nonlinear,
                       record_every=4, seed=3)
    shared = variance_race(config, train, RACERS)
    with recompute_f:
        again = variance_race(config, train, RACERS)
    np.testing.assert_array_equal(shared.train_elbo, again.train_elbo)
    assert set(shared.log_variance) == set(again.log_variance) == {"REBAR", *RACERS}
    for name in shared.log_variance:
        np.testing.assert_array_equal(shared.log_variance[name], again.log_variance[name],
                                      err_msg=name)


def test_a_learning_signal_returns_its_given_value_only_at_its_own_sample():
    from minigrad.models.sbn import SigmoidBeliefNet
    from minigrad.tensor import Tensor, no_grad

    train, _ = _data()
    x = train[:5]
    model = SigmoidBeliefNet(train.mean(axis=0), n_hidden=6, n_layers=2, rng=0)
    u = model.noise(np.random.default_rng(1), len(x))
    logits, samples = model.sample_encoder(x, u)
    with no_grad():
        exact = model.objective(x, samples, logits).data
    marker = exact + 1000.0   # not f(b): shows which values were returned
    for layer in range(2):
        f = model.learning_signal(x, samples, layer, u, logits, value=marker)
        with no_grad():
            np.testing.assert_array_equal(f(Tensor(samples[layer])).data, marker)
            other = 1.0 - samples[layer]
            plain = model.learning_signal(x, samples, layer, u, logits)(Tensor(other)).data
            np.testing.assert_array_equal(f(Tensor(other)).data, plain)   # evaluated
        with_graph = f(Tensor(samples[layer]))      # gradients on: evaluated, with its graph
        np.testing.assert_array_equal(with_graph.data, exact)
        assert with_graph.requires_grad
    with pytest.raises(ValueError, match="one f\\(b\\) per example"):
        model.learning_signal(x, samples, 0, u, logits, value=marker[:3])
    with pytest.raises(ValueError, match="must be finite"):
        model.learning_signal(x, samples, 0, u, logits, value=marker * np.nan)

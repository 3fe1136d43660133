"""Conditional computation: the gated network and the estimators that train its gates."""
import itertools

import numpy as np
import pytest

from minigrad.experiments.gating import (GATE_ESTIMATORS, GatingConfig, evaluate_gated,
                                         reinforce_loss, straight_through_loss, train_gated)
from minigrad.functions import mean, softmax_cross_entropy
from minigrad.gradcheck import gradcheck
from minigrad.models.gated import GatedBlocks
from minigrad.tensor import Tensor


def _small(seed=0, dtype=np.float64, **kw):
    return GatedBlocks(5, 2, 3, 4, np.random.default_rng(seed), dtype=dtype, **kw)


def _data(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = np.eye(4)[np.argmax(x[:, :4], axis=1)]   # learnable: the largest of 4 inputs
    return x, y


def test_gradients_of_the_gated_network_by_finite_differences():
    model = _small()
    x, _ = _data(3)
    gates = Tensor(np.array([[1.0, 0.0], [0.3, 1.0], [1.0, 1.0]]), requires_grad=True)
    inputs = Tensor(x, requires_grad=True)
    assert gradcheck(lambda g, xs: model(xs, g), [gates, inputs])


def test_a_block_that_is_off_contributes_nothing():
    model = _small()
    x, _ = _data(4)
    off_first = np.tile([0.0, 1.0], (4, 1))
    before = model(x, off_first).data
    model.hidden.weight.data[:, :3] += 5.0   # change block 0 only
    assert np.allclose(model(x, off_first).data, before)
    assert not np.allclose(model(x, np.ones((4, 2))).data, before)
    assert np.allclose(model(x, np.zeros((4, 2))).data, model.out.bias.data)


def test_bad_input_is_refused_with_a_reason():
    model = _small()
    x, _ = _data(3)
    with pytest.raises(ValueError, match="gates must have shape"):
        model(x, np.ones((3, 3)))
    with pytest.raises(ValueError, match="3 inputs but gates for 2"):
        model(x, np.ones((2, 2)))
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        GatedBlocks(5, 0, 3, 4, 0)
    with pytest.raises(ValueError, match="unknown estimator 'st'"):
        GatingConfig("st")
    with pytest.raises(ValueError, match="cost must be"):
        GatingConfig("REINFORCE", cost=-1.0)


def test_straight_through_sends_dL_db_times_the_sigmoid_slope_to_the_gates():
    model = _small()
    x, y = _data(6)
    u = np.random.default_rng(2).random((6, 2))
    loss, b = straight_through_loss(model, x, y, 0.7, u, None)
    loss.backward()
    got = model.gate.bias.grad.data.copy()
    # dL/db at the same sample, with b a leaf, times p (1 - p)
    model.zero_grad()
    leaf = Tensor(b, requires_grad=True)
    per_example = softmax_cross_entropy(model(x, leaf), Tensor(y), reduction="none") \
        + mean(leaf, axis=1) * 0.7
    mean(per_example).backward()
    p = 1 / (1 + np.exp(-(x @ model.gate.weight.data + model.gate.bias.data)))
    assert np.allclose(got, (leaf.grad.data * p * (1 - p)).sum(axis=0))


class _FixedBaseline:
    def __init__(self, value):
        self.c = np.asarray(value, dtype=float)

    def update(self, loss, score):
        pass

    def value(self):
        return self.c


def test_reinforce_for_the_gates_is_unbiased_against_enumeration():
    model = _small(seed=3, gate_bias=0.4)
    x_one, y_one = _data(1, seed=4)
    a = x_one @ model.gate.weight.data + model.gate.bias.data        # (1, 2)
    p = 1 / (1 + np.exp(-a[0]))
    cost = 0.5

    def loss_at(b):
        logits = model(x_one, np.array([b], dtype=float)).data[0]
        logits = logits - logits.max()
        ce = -np.log(np.exp(logits) / np.exp(logits).sum())[y_one[0].argmax()]
        return ce + cost * np.mean(b)

    exact = np.zeros(2)
    for b in itertools.product([0.0, 1.0], repeat=2):
        b = np.array(b)
        prob = np.prod(np.where(b == 1, p, 1 - p))
        exact += loss_at(b) * prob * (b - p)
    batch, repeats = 200, 300
    x, y = np.repeat(x_one, batch, axis=0), np.repeat(y_one, batch, axis=0)
    rng = np.random.default_rng(5)
    means = []
    for _ in range(repeats):
        model.zero_grad()
        loss, _ = reinforce_loss(model, x, y, cost, rng.random((batch, 2)),
                                 _FixedBaseline([1.0, 1.0]))
        loss.backward()
        means.append(model.gate.bias.grad.data.copy())   # the batch mean of the estimates
    means = np.array(means)
    z = (means.mean(axis=0) - exact) / (means.std(axis=0, ddof=1) / np.sqrt(repeats))
    assert np.all(np.abs(z) < 4), (means.mean(axis=0), exact, z)
    # and the check can fail: the estimate without the (b - p) centring is far off
    wrong = means.mean(axis=0) + 0.05
    assert np.any(np.abs((wrong - exact) / (means.std(axis=0) / np.sqrt(repeats))) > 4)


def test_a_high_price_switches_blocks_off_and_evaluation_reports_it():
    x, y = _data(400, seed=6)
    for estimator in ("straight-through", "REINFORCE"):
        cheap = train_gated(GatingConfig(estimator, 0.0, blocks=2, width=3, epochs=6,
                                         batch_size=20, lr=0.03), (x, y), (x, y), 0)
        dear = train_gated(GatingConfig(estimator, 20.0, blocks=2, width=3, epochs=6,
                                        batch_size=20, lr=0.03), (x, y), (x, y), 0)
        assert dear.train_off[-1] > cheap.train_off[-1] + 0.2, (estimator, cheap, dear)
        assert dear.off_fraction > 0.5
    ungated = train_gated(GatingConfig("all blocks", 0.0, blocks=2, width=3, epochs=1,
                                       batch_size=20), (x, y), (x, y), 0)
    assert ungated.off_fraction == 0.0 and ungated.train_off == [0.0]


def test_evaluation_with_every_block_on():
    model = _small(dtype=np.float32, gate_bias=-10.0)
    x, y = _data(50)
    acc_gated, off_gated = evaluate_gated(model, x.astype(np.float32), y, batch_size=7)
    acc_all, off_all = evaluate_gated(model, x.astype(np.float32), y, gated=False)
    assert off_gated == 1.0 and off_all == 0.0
    assert 0.0 <= acc_gated <= 1.0 and 0.0 <= acc_all <= 1.0
    assert set(GATE_ESTIMATORS) == {"straight-through", "REINFORCE", "all blocks"}

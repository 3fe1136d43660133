"""output_health tells a diverged network (NaN logits) from a bad or constant one."""
import numpy as np
import pytest

from minigrad.estimators.binary import StraightThroughNeuron
from minigrad.experiments import output_health
from minigrad.models.mlp import MLPClassifier


def model():
    return MLPClassifier([6, 5, 3], lambda: StraightThroughNeuron("sigmoid_adjusted"), rng=0)


def test_a_finite_network_is_healthy_and_its_class_shares_are_counted():
    x = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)
    net = model()
    nonfinite, largest = output_health(net, x, batch_size=7)
    assert nonfinite == 0.0
    logits = net(__import__("minigrad").Tensor(x), stochastic=False).data
    expected = np.bincount(logits.argmax(1), minlength=3).max() / len(x)
    assert largest == pytest.approx(expected)


def test_nan_weights_are_reported_and_give_class_zero_to_every_example():
    x = np.ones((10, 6), dtype=np.float32)
    net = model()
    # NaN reaches the logits through the output layer (hidden binary units refuse NaN
    # probabilities with an error, so a diverged network shows NaN there)
    net.parameters()[-2].data[...] = np.nan
    assert output_health(net, x) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one example"):
        output_health(net, x[:0])

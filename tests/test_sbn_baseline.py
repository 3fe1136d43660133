"""REBAR's input-dependent baseline C(x): trained on the estimator's variance, or frozen.

A frozen C(x) (``SBNConfig(baseline="frozen")``, ``--baseline frozen``) is how chapter 7
tests the likeliest reason why the book's REBAR runs ahead of a third-party recording of
the reference code: the frozen run must keep C(x) at its initial weights while it trains
everything else exactly as the usual run does.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.experiments.runs import RunSpec
from minigrad.experiments.sbn import SBNConfig, SBNRun


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((40, 16)) < 0.4).astype(np.float32)


def _run(baseline: str, estimator: str = "REBAR") -> SBNRun:
    x = _data()
    config = SBNConfig("b", estimator, steps=6, record_every=3, batch_size=8,
                       baseline=baseline)
    return SBNRun(config, x, x[:4])


@pytest.mark.parametrize("estimator", ["REBAR", "dynamic REBAR", "RELAX"])
def test_frozen_baseline_keeps_its_weights_and_the_rest_trains(estimator):
    trained, frozen = _run("trained", estimator), _run("frozen", estimator)
    start = [p.data.copy() for p in frozen.control.baseline.parameters()]
    model_start = [p.data.copy() for p in frozen.model.parameters()]
    for run in (trained, frozen):
        for _ in range(3):
            run.step()
    after = [p.data for p in frozen.control.baseline.parameters()]
    assert all(np.array_equal(a, b) for a, b in zip(start, after))
    moved = [p.data for p in trained.control.baseline.parameters()]
    assert any(not np.array_equal(a, b) for a, b in zip(start, moved))
    # the model itself trains in the frozen run
    assert any(not np.array_equal(a, p.data)
               for a, p in zip(model_start, frozen.model.parameters()))


def test_frozen_baseline_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="relaxed control variates"):
        SBNConfig("b", "NVIL", steps=1, baseline="frozen")
    with pytest.raises(ValueError, match="baseline must be one of"):
        SBNConfig("b", "REBAR", steps=1, baseline="stale")
    with pytest.raises(ValueError, match="REBAR, dynamic REBAR and RELAX"):
        RunSpec("sbn", "linear1", "MuProp", baseline="frozen")
    with pytest.raises(ValueError, match="SBN option"):
        RunSpec("lenet", "lenet5", "es", baseline="frozen")
    assert "frozen-baseline" in RunSpec("sbn", "nonlinear", "REBAR", baseline="frozen").name
    assert "frozen" not in RunSpec("sbn", "nonlinear", "REBAR").name

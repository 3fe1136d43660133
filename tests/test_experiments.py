"""The experiments layer: the executor for independent runs, the results store."""
import concurrent.futures as cf
import json
import os

import numpy as np
import pytest

from minigrad.experiments import default_workers, load_results, map_runs, record_results
from minigrad.experiments import executor as executor_module


def _draw(seed, n):
    """A run whose result depends only on its arguments, plus the process that ran it."""
    return float(np.random.default_rng(seed).normal(size=n).sum()), os.getpid()


def test_map_runs_in_parallel_equals_sequential_and_keeps_order():
    runs = [(seed, 1000) for seed in range(6)]
    parallel = map_runs(_draw, runs, workers=2)
    sequential = map_runs(_draw, runs, workers=1)
    assert [v for v, _ in parallel] == [v for v, _ in sequential]
    assert [v for v, _ in sequential] == [_draw(*run)[0] for run in runs]
    if "fork" in __import__("multiprocessing").get_all_start_methods():
        # the local pool really ran the work in other processes
        assert {pid for _, pid in parallel} - {os.getpid()}
        assert {pid for _, pid in sequential} == {os.getpid()}


def test_map_runs_accepts_a_lambda_and_closures_without_pickling():
    offset = np.arange(3.0)
    out = map_runs(lambda k: float((offset * k).sum()), [(1,), (2,), (3,)], workers=2)
    assert out == [3.0, 6.0, 9.0]


def test_map_runs_on_any_executor():
    with cf.ThreadPoolExecutor(2) as pool:
        out = map_runs(_draw, [(1, 10), (2, 10)], executor=pool)
    assert [v for v, _ in out] == [_draw(1, 10)[0], _draw(2, 10)[0]]


def _fail_on_two(x):
    if x == 2:
        raise ValueError(f"run {x} failed")
    return x


def test_a_failing_run_raises_its_own_error():
    with pytest.raises(ValueError, match="run 2 failed"):
        map_runs(_fail_on_two, [(1,), (2,), (3,)], workers=2)
    assert executor_module._RUNS is None  # the next map starts clean


def test_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINIGRAD_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("MINIGRAD_WORKERS", "zero")
    with pytest.raises(ValueError, match="MINIGRAD_WORKERS='zero' must be a whole number"):
        default_workers()


def test_record_results_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_RESULTS", str(tmp_path))
    row = {"experiment": "e", "config": "c", "seed": 0, "metric": "m", "value": 0.5}
    path = record_results("chapter", [row])
    assert json.loads(path.read_text())["rows"] == [row]
    assert [p["chapter"] for p in load_results()] == ["chapter"]
    assert [p.name for p in tmp_path.iterdir()] == ["chapter.json"]  # no temporary file left
    with pytest.raises(ValueError, match="lacks"):
        record_results("chapter", [{"value": 1.0}])


def test_a_config_prints_its_neuron_not_a_memory_address():
    from minigrad.estimators.base import Deterministic
    from minigrad.experiments import ClassifierConfig
    from minigrad.functions import sigmoid

    text = repr(ClassifierConfig("sigmoid", lambda: Deterministic(sigmoid), lr=1.0))
    assert "0x" not in text and "neuron=Deterministic(sigmoid)" in text


def test_a_sweep_with_models_equals_a_loop_and_brings_the_models_back(monkeypatch):
    from types import SimpleNamespace

    from minigrad.estimators.binary import StraightThroughNeuron
    from minigrad.estimators.score_function import ReinforceNeuron
    from minigrad.experiments import (ClassifierConfig, run_runs_with_models,
                                      run_sweep_with_models, train_classifier)

    rng = np.random.default_rng(0)
    x = rng.random((300, 784)).astype(np.float32)
    split = SimpleNamespace(x=x, y=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 300)])
    # neurons with state of their own: an annealed slope, a baseline's moving averages
    configs = [ClassifierConfig("annealed", lambda: StraightThroughNeuron(
                   "sigmoid_adjusted", anneal_rate=1.1), lr=0.3, epochs=2, steps_per_epoch=10),
               ClassifierConfig("REINFORCE", lambda: ReinforceNeuron(baseline=True), lr=0.05,
                                epochs=2, steps_per_epoch=10)]
    monkeypatch.setenv("MINIGRAD_WORKERS", "2")
    results, models = run_sweep_with_models(configs, split, split, [0, 1], progress=False)
    assert list(results) == list(models) == ["annealed", "REINFORCE"]
    for config in configs:
        for seed, history, model in zip([0, 1], results[config.label], models[config.label]):
            expected_model, expected = train_classifier(config.scaled(), split, split, seed)
            assert history.seed == seed and history.val_accuracy == expected.val_accuracy
            assert history.train_accuracy == expected.train_accuracy
            # weights, baselines and schedules, all bit for bit
            state, expected_state = model.state_dict(), expected_model.state_dict()
            assert state.keys() == expected_state.keys()
            assert all(np.array_equal(state[k], expected_state[k]) for k in state)
            assert repr(model) == repr(expected_model)
    # runs with seeds of their own: labels and runs keep the order they are given in
    mixed, mixed_models = run_runs_with_models([(configs[1], 1), (configs[0], 0),
                                                (configs[1], 0)], split, split, progress=False)
    assert list(mixed) == ["REINFORCE", "annealed"]
    assert [h.seed for h in mixed["REINFORCE"]] == [1, 0]
    assert mixed["REINFORCE"][0].val_accuracy == results["REINFORCE"][1].val_accuracy
    assert len(mixed_models["annealed"]) == 1

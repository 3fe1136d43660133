"""The experiments layer: the executor for independent runs, the results store."""
import concurrent.futures as cf
import json
import os
from pathlib import Path

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


# ------------------------------------------------------------------ like for like
def _row(value, steps, reference=None, reference_steps=None, seed=0, **extra):
    row = {"experiment": "e", "config": "c", "seed": seed, "metric": "final validation accuracy",
           "value": value, "steps": steps, **extra}
    if reference is not None:
        row.update(reference=reference, reference_steps=reference_steps)
    return row


def test_a_row_with_a_reference_must_say_where_both_were_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_RESULTS", str(tmp_path))
    row = {"experiment": "e", "config": "c", "seed": 0, "metric": "m", "value": 0.5,
           "reference": 0.6, "steps": 100}
    with pytest.raises(ValueError, match="'reference_steps'.*same point of training"):
        record_results("chapter", [row])
    with pytest.raises(ValueError, match="'steps'"):
        record_results("chapter", [{**row, "steps": None, "reference_steps": 100}])
    record_results("chapter", [{**row, "reference_steps": 100}])       # now complete


def test_comparisons_compare_only_at_the_same_point_of_training():
    from minigrad.experiments import comparisons

    rows = [_row(0.955, 20_000, 0.96, 20_000, seed=s) for s in range(2)]
    rows += [_row(0.80, 8_600, 0.98, 21_500)]
    rows[-1]["metric"] = "test accuracy"
    groups = {c.metric: c for c in comparisons([{"chapter": "x", "rows": rows}])}
    same, other = groups["final validation accuracy"], groups["test accuracy"]
    assert same.like_for_like and same.within and same.bar == 0.01
    assert abs(same.gap - (-0.005)) < 1e-12
    assert not other.like_for_like and not other.within     # a far gap, but not compared


def test_an_exception_outside_the_bar_needs_a_reason_from_the_data():
    from minigrad.experiments import comparisons

    far = [_row(v, 20_000, 0.90, 20_000, seed=s) for s, v in enumerate((0.93, 0.95))]
    (c,) = comparisons([{"chapter": "x", "rows": far}])
    assert c.like_for_like and not c.within and c.reason() is None
    inside = [_row(v, 20_000, 0.90, 20_000, seed=s) for s, v in enumerate((0.86, 0.99))]
    (c,) = comparisons([{"chapter": "x", "rows": inside}])
    assert not c.within and "within the range of our 2 seeds" in c.reason()
    told = [{**r, "explanation": "the seed's run diverged"} for r in far]
    (c,) = comparisons([{"chapter": "x", "rows": told}])
    assert c.reason() == "the seed's run diverged"
    mixed = far[:1] + [_row(0.93, 20_000, 0.91, 20_000, seed=1)]
    with pytest.raises(ValueError, match="disagree on the reference"):
        comparisons([{"chapter": "x", "rows": mixed}])


def test_an_elbo_has_a_bar_of_two_nats():
    from minigrad.experiments import comparisons

    rows = [_row(-101.0, 100_032, -102.5, 100_032)]
    rows[0]["metric"] = "training ELBO"
    (c,) = comparisons([{"chapter": "x", "rows": rows}])
    assert c.bar == 2.0 and c.within


def test_read_recorded_fails_loudly(tmp_path, monkeypatch):
    from minigrad.experiments import read_recorded, recorded_names

    (tmp_path / "_toc.yml").write_text("")
    folder = tmp_path / "book" / "recorded" / "table1"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="recorded run .*missing.*record.py"):
        read_recorded("nothing.json")
    (folder / "a.json").write_text(json.dumps({"command": "c", "history": {}}))
    with pytest.raises(ValueError, match=r"lacks \['commit', 'complete'\]"):
        read_recorded("table1/a.json")
    run = {"command": "c", "commit": "abc", "complete": False, "history": {"steps": [1]},
           "results": None}
    (folder / "b.json").write_text(json.dumps(run))
    assert read_recorded("table1/b.json") == run
    assert recorded_names("table1/*.json") == ["table1/a.json", "table1/b.json"]


def test_history_rows_carry_their_steps_and_the_references():
    from minigrad.experiments import History, history_rows

    h = History("a", 0, train_steps=[100, 200], val_epochs=[1, 2], val_accuracy=[0.5, 0.6])
    rows = history_rows("e", {"a": [h], "b": [History("b", 1, train_steps=[100],
                                                     val_accuracy=[0.4])]},
                        reference={"a": 0.7}, reference_steps={"a": 3_000},
                        explanations={"a": "why"})
    a, b = rows
    assert (a["steps"], a["reference"], a["reference_steps"], a["explanation"]) == \
        (200, 0.7, 3_000, "why")
    assert b["steps"] == 100 and b["reference"] is None and "reference_steps" not in b
    (default,) = history_rows("e", {"a": [h]}, reference={"a": 0.7})
    assert default["reference_steps"] == 20_000            # the seeds' 20 x 1,000


def test_mean_std_text_shows_one_run_without_a_spread():
    from minigrad.experiments import mean_std_text

    assert mean_std_text(0.91234, 0.0, 1) == "0.912 ± —"
    assert mean_std_text(0.91234, 0.0023, 3) == "0.912 ± 0.002"
    # a spread that would round to zero keeps one significant digit
    assert mean_std_text(0.91234, 0.00003, 3) == "0.912 ± 3e-05"
    # several runs that agree exactly
    assert mean_std_text(0.2452, 0.0, 3) == "0.245 ± 0"
    assert mean_std_text(-95.123, 0.51, 3, decimals=1) == "-95.1 ± 0.5"
    with pytest.raises(ValueError, match="at least 1"):
        mean_std_text(0.5, 0.0, 0)


def test_chapter_titles_follow_the_table_of_contents():
    import json

    import yaml

    from minigrad.experiments import chapter_key, chapter_titles, repo_root

    root = repo_root(Path(__file__).parent)
    titles = chapter_titles(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]
             if (root / f"{c['file']}.ipynb").exists()]
    assert list(titles) == [chapter_key(Path(f).name) for f in files]
    first = json.loads((root / f"{files[0]}.ipynb").read_text(encoding="utf8"))
    heading = "".join(first["cells"][0]["source"]).splitlines()[0]
    assert titles[chapter_key(Path(files[0]).name)] == heading[2:].strip()
    assert chapter_key("06_sbn_score_function") == "sbn_score_function"
    assert chapter_key("arm_disarm") == "arm_disarm"

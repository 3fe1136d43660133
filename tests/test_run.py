"""Long runs: checkpoints that resume exactly, the command line, sweeps on an executor.

A tiny SBN run and a tiny categorical VAE run (200 binarized MNIST images, short evaluation)
are made in one go, killed with SIGKILL in the middle and resumed, stopped with SIGTERM and
resumed: each must end with the same parameters, optimizer state, estimator state and
history, bit for bit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigrad import budget
from minigrad.experiments.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from minigrad.experiments.runs import (CHECKPOINT, HISTORY, RESULTS, SWEEP_FILE, RunSpec,
                                      execute, read_history, run_specs)
from minigrad.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]
STEPS = 80
SMALL = ["--seed", "3", "--steps", str(STEPS), "--train-examples", "200",
         "--eval-examples", "20", "--eval-k", "2", "--record-every", "10",
         "--checkpoint-every", "5", "--no-progress"]
TINY = ["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", *SMALL]
# every minibatch binarized afresh from the grey levels, with the run's noise Generator
TINY_DYNAMIC = [*TINY, "--binarization", "dynamic"]
# the VAE with the most state: RELAX's network and log temperature, and their own Adam
TINY_VAE = ["--family", "vae", "--model", "n4k4", "--estimator", "RELAX, categorical",
            *SMALL]
#: Per family: the command, its RunSpec, the state a checkpoint holds, the history's lists.
TINY_RUNS = {
    "sbn": (TINY, RunSpec("sbn", "linear1", "NVIL", steps=STEPS, seed=3),
            {"model", "optimizer", "control", "control_optimizer", "tracker", "batch_rng",
             "noise_rng", "eval_rng", "stream", "history", "window", "steps_done", "racers"},
            ("steps", "train_elbo", "log_variance")),
    "sbn-dynamic": (TINY_DYNAMIC, RunSpec("sbn", "linear1", "NVIL", steps=STEPS, seed=3,
                                          binarization="dynamic"),
                    {"model", "optimizer", "control", "control_optimizer", "tracker",
                     "batch_rng", "noise_rng", "eval_rng", "stream", "history", "window",
                     "steps_done", "racers"},
                    ("steps", "train_elbo", "log_variance")),
    "vae": (TINY_VAE, RunSpec("vae", "n4k4", "RELAX, categorical", steps=STEPS, seed=3),
            {"model", "optimizer", "control", "control_optimizer", "batch_rng", "noise_rng",
             "eval_rng", "stream", "history", "window", "steps_done"},
            ("steps", "train_elbo", "evaluations")),
}
WALL_TIMES = ("seconds", "elapsed", "epoch_seconds")


def cli(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINIGRAD_WORKERS": "1"}
    return subprocess.Popen([sys.executable, "-m", "minigrad.run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def finish(proc, timeout=120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def manifest_step(path: Path) -> int:
    with np.load(path, allow_pickle=False) as f:
        return json.loads(f["manifest"].tobytes())["step"]


def wait_for_checkpoint(path: Path, proc, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def final_state(folder: Path) -> tuple[dict, dict, dict]:
    """The final checkpoint's arrays and state tree, and the history without wall times."""
    with np.load(folder / CHECKPOINT, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "manifest"}
        manifest = json.loads(f["manifest"].tobytes())
    history = json.loads((folder / HISTORY).read_text())
    tree = manifest["state"]["dict"]
    for key in WALL_TIMES:
        history.pop(key, None)
        tree["history"]["attrs"].pop(key, None)
    return arrays, tree, history


def assert_same_run(a: Path, b: Path, state: set) -> None:
    arrays_a, tree_a, history_a = final_state(a)
    arrays_b, tree_b, history_b = final_state(b)
    # model, Adam moments and step counts, the control (NVIL's network and running moments;
    # RELAX's network and temperature) and the Adam that steps it, every Generator, the
    # batch stream, the history; an SBN's variance tracker (and racers: none here)
    assert set(tree_a) == state
    assert tree_a == tree_b
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        assert arrays_a[key].dtype == arrays_b[key].dtype
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert history_a == history_b
    assert len(history_a["steps"]) == STEPS // 10
    rows_a = json.loads((a / RESULTS).read_text())["rows"]
    rows_b = json.loads((b / RESULTS).read_text())["rows"]
    assert rows_a == rows_b


@pytest.fixture(scope="module", params=list(TINY_RUNS))
def one_go(request, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"one_go_{request.param}")
    code, _, err = finish(cli(*TINY_RUNS[request.param][0], "--out", str(out)))
    assert code == 0, err
    return request.param, out


def test_sigkill_in_the_middle_then_resume_is_bit_identical(one_go, tmp_path):
    family, one_go = one_go
    args, spec, state, lists = TINY_RUNS[family]
    proc = cli(*args, "--out", str(tmp_path))
    wait_for_checkpoint(tmp_path / CHECKPOINT, proc)
    proc.send_signal(signal.SIGKILL)
    code, _, _ = finish(proc)
    assert code == -signal.SIGKILL
    stopped_at = manifest_step(tmp_path / CHECKPOINT)
    assert 0 < stopped_at < STEPS and stopped_at % 5 == 0
    assert not (tmp_path / RESULTS).exists()
    # without --resume the run refuses to overwrite its checkpoint
    with pytest.raises(FileExistsError, match="--resume"):
        execute(spec, tmp_path)
    # the history so far, read from the checkpoint while the run is unfinished
    partial, finished = read_history(tmp_path)
    assert not finished
    assert partial["steps"] == list(range(10, stopped_at + 1, 10))   # one record per 10 steps
    code, out, err = finish(cli(*args, "--out", str(tmp_path), "--resume"))
    assert code == 0, err
    assert_same_run(one_go, tmp_path, state)
    whole, finished = read_history(tmp_path)
    assert finished
    n = len(partial["steps"])
    for key in lists:
        assert whole[key][:n] == partial[key], key


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_writes_a_checkpoint_and_exits_then_resumes(signum, one_go, tmp_path):
    family, one_go = one_go
    args, _, state, _ = TINY_RUNS[family]
    proc = cli(*args, "--out", str(tmp_path))
    wait_for_checkpoint(tmp_path / CHECKPOINT, proc)
    proc.send_signal(signum)
    code, _, err = finish(proc)
    assert code == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    stopped_at = manifest_step(tmp_path / CHECKPOINT)
    assert f"after step {stopped_at:,}" in err and 0 < stopped_at < STEPS
    code, _, err = finish(cli(*args, "--out", str(tmp_path), "--resume"))
    assert code == 0, err
    assert_same_run(one_go, tmp_path, state)


# ---------------------------------------------------------------------- bad checkpoints
SPEC = RunSpec("sbn", "linear1", "MuProp", steps=6, seed=1, train_examples=100,
               eval_examples=5, eval_k=2, record_every=3)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    execute(SPEC, out, checkpoint_every=3)
    (out / RESULTS).unlink()       # as if the process had died before writing its results
    return out


def _refused(folder: Path, spec: RunSpec, match: str) -> None:
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(CheckpointError, match=match):
        execute(spec, folder, resume=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_truncated_checkpoint_is_a_clear_error_that_changes_nothing(finished, tmp_path):
    data = (finished / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[:len(data) // 2])
    _refused(tmp_path, SPEC, "not a readable checkpoint")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    _refused(tmp_path, SPEC, "not a readable checkpoint")


def test_npz_that_is_not_a_checkpoint_is_refused(tmp_path):
    with open(tmp_path / CHECKPOINT, "wb") as f:
        np.savez(f, weights=np.zeros(3))
    _refused(tmp_path, SPEC, "not a minigrad-checkpoint file")


def test_checkpoint_with_pickled_data_is_refused_without_numpys_advice(tmp_path):
    with open(tmp_path / CHECKPOINT, "wb") as f:
        np.savez(f, manifest=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(CheckpointError) as error:
        execute(SPEC, tmp_path, resume=True)
    message = str(error.value)
    assert str(tmp_path / CHECKPOINT) in message and "pickled Python objects" in message
    assert "allow_pickle" not in message and "unsafely" not in message


def test_truncated_results_file_is_named_and_exits_2(finished, tmp_path, capsys):
    folder = tmp_path / "run"
    execute(SPEC, folder, checkpoint_every=3)
    text = (folder / RESULTS).read_text()
    (folder / RESULTS).write_text(text[:len(text) // 2])
    args = ["--family", "sbn", "--model", "linear1", "--estimator", "MuProp", "--seed", "1",
            "--steps", "6", "--train-examples", "100", "--eval-examples", "5", "--eval-k",
            "2", "--record-every", "3", "--no-progress", "--out", str(folder), "--resume"]
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert f"{folder / RESULTS} is not a readable results file (truncated or corrupt?)" in err
    from minigrad.fileio import UnreadableFile
    from minigrad.experiments.runs import load_run_results

    with pytest.raises(UnreadableFile, match=str(folder / RESULTS)):
        load_run_results(tmp_path)
    (folder / RESULTS).unlink()                     # as the message says: the run finishes
    assert run_main(args) == 0


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(finished, tmp_path):
    (tmp_path / CHECKPOINT).write_bytes((finished / CHECKPOINT).read_bytes())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [tmp_path / f".{CHECKPOINT}.{dead}.0badc0de.tmp",
             tmp_path / f".{RESULTS}.{dead}.12345678.tmp"]
    live = tmp_path / f".{CHECKPOINT}.1.deadbeef.tmp"      # pid 1 is running: not touched
    other = tmp_path / ".notes.txt"                          # not a temporary file of ours
    for path in (*stale, live, other):
        path.write_bytes(b"half a file")
    execute(SPEC, tmp_path, resume=True)
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()


def test_checkpoint_of_another_run_or_family_is_refused(finished, tmp_path):
    (tmp_path / CHECKPOINT).write_bytes((finished / CHECKPOINT).read_bytes())
    other_seed = RunSpec(**{**SPEC.as_dict(), "seed": 2})
    _refused(tmp_path, other_seed, "another run: its specification differs in seed")
    write_checkpoint(tmp_path / CHECKPOINT, family="lenet", spec=SPEC.as_dict(), step=1,
                     state={"x": np.zeros(2)})
    _refused(tmp_path, SPEC, "a checkpoint of a 'lenet' run")


def test_checkpoint_of_the_previous_format_version_names_both_versions(finished, tmp_path):
    """Version 1 kept an estimator adapter where version 2 keeps its control: an old
    checkpoint is refused with both version numbers, not restored into the wrong slots."""
    from minigrad.experiments.checkpoint import MANIFEST_KEY, VERSION

    with np.load(finished / CHECKPOINT, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    manifest = json.loads(arrays[MANIFEST_KEY].tobytes())
    manifest["version"] = VERSION - 1
    arrays[MANIFEST_KEY] = np.frombuffer(json.dumps(manifest).encode("utf8"), dtype=np.uint8)
    with open(tmp_path / CHECKPOINT, "wb") as f:
        np.savez(f, **arrays)
    _refused(tmp_path, SPEC, f"format version {VERSION - 1}.*reads version {VERSION}")


def test_checkpoint_whose_state_does_not_fit_is_refused(finished, tmp_path):
    write_checkpoint(tmp_path / CHECKPOINT, family="sbn", spec=SPEC.as_dict(), step=3,
                     state={"model": np.zeros(2)})
    _refused(tmp_path, SPEC, "does not fit this run")


def test_resume_from_the_final_checkpoint_gives_the_same_results(finished, tmp_path):
    again = execute(SPEC, tmp_path / "again", checkpoint_every=4)
    resumed = execute(SPEC, finished, resume=True)
    assert resumed["rows"] == again["rows"]
    assert resumed["timing"]["steps_this_session"] == 0


# ---------------------------------------------------------------------- command line
@pytest.mark.parametrize("args, message", [
    (["--family", "sbn", "--model", "linear3", "--estimator", "NVIL"], "linear1"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "REINFORS"], "MuProp"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--steps", "0"],
     "steps (--steps) must be"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL",
      "--checkpoint-every", "0"], "--checkpoint-every"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--dataset", "cifar"],
     "omniglot"),
    (["--family", "classifier", "--model", "sigmoid", "--estimator", "NVIL"], "neuron"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--budget", "huge"],
     "invalid choice"),
    (["--family", "lenet", "--model", "lenet5", "--estimator", "es", "es"], "twice"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--workers", "0"],
     "--workers must be"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--workers", "-1"],
     "--workers must be"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--train-examples",
      "10"], "--batch-size) is larger than the 10 training examples (--train-examples)"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--batch-size",
      "60000"], "larger than the 50,000 training examples"),
    (["--family", "classifier", "--model", "sigmoid", "--train-examples", "20"],
     "--batch-size"),
    (["--family", "lenet", "--model", "lenet5", "--estimator", "es", "--steps", "500"],
     "LeNet-5 steps (500; --steps) must be under one epoch or a multiple of it (430"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--scheduler",
      "notanaddress"], "--scheduler 'notanaddress' is not a scheduler address"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--scheduler",
      "tcp://host:99999"], "tcp://HOST:PORT"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--parent-timeout",
      "0"], "--parent-timeout"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--lr", "nan"],
     "lr (--lr) must be a positive number"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--seed", "-1"],
     "seed (--seed)"),
    (["--family", "vae", "--model", "n12", "--estimator", "RLOO"],
     "VAE model (--model) is the latent shape nNkK"),
    (["--family", "vae", "--model", "n12k1", "--estimator", "RLOO"], "K >= 2 classes"),
    (["--family", "vae", "--model", "n0k4", "--estimator", "RLOO"], "got 'n0k4'"),
    (["--family", "vae", "--model", "n12k4", "--estimator", "NVIL"],
     "VAE estimator (--estimator) must be one of 'REINFORCE, categorical'"),
    (["--family", "vae", "--model", "n12k4", "--estimator", "RLOO", "--dataset", "mnist"],
     "the VAE trains on binarized-mnist"),
    (["--family", "vae", "--model", "n12k4", "--estimator", "RLOO", "--init", "reference"],
     "init='reference' (--init) is an SBN option"),
    (["--family", "vae", "--model", "n12k4", "--estimator", "RLOO", "--baseline",
      "frozen"], "(--baseline) is an SBN option"),
    (["--family", "vae", "--model", "n12k4", "--estimator", "RLOO", "--binarization",
      "dynamic"], "binarization='dynamic' (--binarization) is an SBN option"),
    (["--family", "classifier", "--model", "sigmoid", "--task", "structured"],
     "task='structured' (--task) is an SBN option"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--binarization",
      "dynamic", "--dataset", "omniglot"], "omniglot is kept binarized once"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--binarization",
      "static"], "invalid choice: 'static' (choose from 'fixed', 'dynamic')"),
    (["--family", "sbn", "--model", "linear1", "--estimator", "NVIL", "--task", "sp"],
     "invalid choice: 'sp' (choose from 'generative', 'structured')"),
])
def test_bad_arguments_are_clear_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_main([*args, "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("variable, value, message", [
    ("MINIGRAD_WORKERS", "0", "MINIGRAD_WORKERS='0' must be a whole number >= 1"),
    ("MINIGRAD_BUDGET", "bogus", "valid values are full, smoke, paper (unset means paper)"),
])
def test_bad_environment_is_a_clear_error(variable, value, message, monkeypatch, tmp_path,
                                          capsys):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stop:
        run_main([*TINY, "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_an_out_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(SystemExit) as stop:
        run_main([*TINY, "--out", str(tmp_path / "file" / "runs")])
    assert stop.value.code == 2
    assert f"--out {tmp_path / 'file' / 'runs'}: cannot write there" in capsys.readouterr().err
    if os.geteuid() != 0:                           # permissions do not hold back root
        (tmp_path / "locked").mkdir(mode=0o500)
        with pytest.raises(SystemExit) as stop:
            run_main([*TINY, "--out", str(tmp_path / "locked")])
        assert stop.value.code == 2
        assert "cannot write there (Permission denied)" in capsys.readouterr().err


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (as a dashboard's does to Dask)."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield server.getsockname()[1]


def test_a_scheduler_that_does_not_answer_fails_in_seconds_with_one_line(
        silent_port, tmp_path, capsys):
    import socket

    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    for port in (silent_port, refused):
        started = time.monotonic()
        code = run_main(["--family", "sbn", "--model", "linear1", "--estimator", "NVIL",
                         "--seed", "0", "1", "--scheduler", f"tcp://127.0.0.1:{port}",
                         "--out", str(tmp_path)])
        assert code == 2
        assert time.monotonic() - started < 15
        err = capsys.readouterr().err
        assert err.startswith(f"error: --scheduler tcp://127.0.0.1:{port}: no Dask scheduler "
                              "answered within 5 s")
        assert len(err.strip().splitlines()) == 1, err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--family", "--model", "--estimator", "--steps", "--seed", "--out",
                   "--checkpoint-every", "--resume", "--dataset", "--scheduler", "--budget",
                   "--lr", "--batch-size", "--temperature", "REINFORCE", "paper 2,000,000",
                   "vae: the latent shape nNkK", "n4k64", "RELAX, categorical", "--task",
                   "structured", "--binarization", "dynamic"):
        assert option in out


def test_structured_prediction_on_the_command_line(tmp_path):
    """--task structured: the top half of the image predicts the bottom half; the rows
    name the bound they give, a log-probability of binary pixels (so <= 0)."""
    from minigrad.experiments.runs import build_run

    code = run_main(["--family", "sbn", "--model", "linear1", "--estimator", "MuProp",
                     "--task", "structured", *SMALL, "--out", str(tmp_path)])
    assert code == 0
    payload = json.loads((tmp_path / RESULTS).read_text())
    assert payload["spec"]["task"] == "structured"
    values = {row["metric"]: row["value"] for row in payload["rows"]}
    assert set(values) == {"final training bound on log p(bottom | top)",
                           "validation bound on log p(bottom | top) (k=2)"}
    assert all(v < 0 for v in values.values())
    run, config = build_run(RunSpec(**payload["spec"]))
    assert config.task == run.model.task == "structured"
    assert run.model.n_input == run.model.n_output == 392


def test_new_spec_fields_at_their_defaults_keep_older_runs_specifications():
    """Runs recorded before --task and --binarization existed resume: a spec at those
    defaults is the dictionary it was; other values are in it and in the folder name."""
    plain = RunSpec("sbn", "linear1", "NVIL", steps=10)
    assert not {"task", "binarization"} & set(plain.as_dict())
    assert plain.name == "sbn_linear1_NVIL_seed0"
    other = RunSpec("sbn", "linear1", "NVIL", steps=10, task="structured",
                    binarization="dynamic")
    assert other.as_dict()["task"] == "structured"
    assert other.as_dict()["binarization"] == "dynamic"
    assert other.name == "sbn_linear1_NVIL_structured_dynamic-binarization_seed0"
    assert RunSpec(**other.as_dict()) == other


def test_paper_budget_is_for_the_command_line_only(monkeypatch):
    assert budget.check("paper", budget.CLI_BUDGETS) == "paper"
    with pytest.raises(ValueError, match="command line only"):
        budget.check("paper")
    monkeypatch.setenv("MINIGRAD_BUDGET", "paper")
    with pytest.raises(ValueError, match="not a budget"):
        budget.budget()
    assert budget.main(["check", "paper"]) == 2


# ---------------------------------------------------------------------- sweeps
SWEEP = [RunSpec("sbn", "linear1", est, steps=8, seed=seed, train_examples=100,
                 eval_examples=5, eval_k=2, record_every=4)
         for est in ("REINFORCE", "Concrete") for seed in (0, 1)]


def _comparable(payloads):
    out = []
    for p in payloads:
        history = dict(p["history"])
        history.pop("seconds")
        out.append((p["spec"], p["rows"], history))
    return out


@pytest.fixture(scope="module")
def dask_cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield cluster.scheduler_address, client


def test_sweep_on_dask_localcluster_equals_the_process_pool(dask_cluster, tmp_path):
    pool = run_specs(SWEEP, tmp_path / "pool", workers=2, checkpoint_every=4)
    _, client = dask_cluster
    on_dask = run_specs(SWEEP, tmp_path / "dask", executor=client.get_executor(),
                        checkpoint_every=4)
    assert _comparable(on_dask) == _comparable(pool)
    assert len({json.dumps(r["rows"]) for r in pool}) == len(SWEEP)  # the runs differ
    for spec in SWEEP:
        assert (tmp_path / "dask" / spec.name / RESULTS).exists()


# ---------------------------------------------------------------------- every family
@pytest.mark.parametrize("spec", [
    RunSpec("classifier", "reinforce", steps=40, steps_per_epoch=20, train_examples=500,
            eval_examples=100, seed=4),
    RunSpec("classifier", "slope-annealed", steps=40, steps_per_epoch=20,
            train_examples=500, eval_examples=100, seed=4),
    RunSpec("lenet", "lenet5", "es", steps=16, batch_size=32, train_examples=256,
            es_samples=10, eval_examples=50, seed=4),
    RunSpec("lenet", "lenet5", "cross_entropy", steps=16, batch_size=32, train_examples=256,
            eval_examples=50, seed=4),
    RunSpec("sbn", "linear2", "REINFORCE", steps=12, train_examples=100, eval_examples=5,
            eval_k=2, record_every=4, seed=4),
    # a control per stochastic layer (C(x), eta0, eta1) and the Adam that steps them
    RunSpec("sbn", "linear2", "MuProp (REBAR code)", steps=12, train_examples=100,
            eval_examples=5, eval_k=2, record_every=4, seed=4),
    # structured prediction on two stochastic layers, every minibatch binarized afresh
    RunSpec("sbn", "linear2", "NVIL", steps=12, train_examples=100, eval_examples=5,
            eval_k=2, record_every=4, seed=4, task="structured", binarization="dynamic"),
    RunSpec("vae", "n3k4", "VIMCO", steps=12, train_examples=100, eval_examples=5,
            eval_k=2, record_every=4, seed=4),
    RunSpec("vae", "n3k4", "Gumbel-softmax, relaxed", steps=12, train_examples=100,
            eval_examples=5, eval_k=2, record_every=4, seed=4),
    RunSpec("vae", "n2k8", "dynamic REBAR, categorical", steps=12, train_examples=100,
            eval_examples=5, eval_k=2, record_every=4, seed=4),
], ids=lambda s: s.name)
def test_every_family_resumes_exactly_from_the_middle(spec, tmp_path):
    from threadpoolctl import threadpool_limits

    from minigrad.experiments.runs import build_run

    one_go = execute(spec, tmp_path / "one_go")
    with threadpool_limits(limits=1, user_api="blas"):
        first, _ = build_run(spec)
        for _ in range(spec.steps // 2 + 1):   # past an epoch's end for both families
            first.step()
        first.save(tmp_path / CHECKPOINT, spec.as_dict())
        first.step()                           # a step the resumed run must not see
    resumed = execute(spec, tmp_path, resume=True)
    assert resumed["timing"]["steps_this_session"] == spec.steps - (spec.steps // 2 + 1)
    assert resumed["rows"] == one_go["rows"]
    history_a, history_b = dict(one_go["history"]), dict(resumed["history"])
    for h in (history_a, history_b):
        for key in WALL_TIMES:
            h.pop(key, None)
    assert history_a == history_b
    _, tree_a, _ = final_state(tmp_path / "one_go")
    _, tree_b, _ = final_state(tmp_path)
    assert tree_a.keys() == tree_b.keys()
    with np.load(tmp_path / "one_go" / CHECKPOINT) as a, np.load(tmp_path / CHECKPOINT) as b:
        assert a.files == b.files
        for key in a.files:
            if key != "manifest":
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ---------------------------------------------------------------------- a sweep and signals
# Three runs on two workers: when the signal comes, two are running and the third waits.
# The running workers are frozen (SIGSTOP) while a stop reaches them and thawed once it has,
# so that no run gets further than it was when the stop was sent, however fast the machine.
# Between stops a run gets ahead of the other only by the difference of their start-up times
# (under 100 steps here on a loaded core): 1,200 steps leave room for five stops.
SWEEP_STEPS = 1200
SWEEP_ARGS = ["--family", "sbn", "--model", "linear1", "--estimator", "REINFORCE",
              "--seed", "0", "1", "2", "--steps", str(SWEEP_STEPS), "--batch-size", "8",
              "--train-examples", "200", "--eval-examples", "20", "--eval-k", "2",
              "--record-every", "15", "--checkpoint-every", "15", "--no-progress"]
SWEEP_NAMES = [f"sbn_linear1_REINFORCE_seed{s}" for s in (0, 1, 2)]


def sweep_cli(*args) -> subprocess.Popen:
    """The command line in a process group of its own (the group a terminal's Ctrl-C hits)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MINIGRAD_WORKERS", None)
    return subprocess.Popen([sys.executable, "-m", "minigrad.run", *SWEEP_ARGS, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def same_runs(a: Path, b: Path) -> None:
    for name in SWEEP_NAMES:
        arrays_a, tree_a, history_a = final_state(a / name)
        arrays_b, tree_b, history_b = final_state(b / name)
        assert tree_a == tree_b, name
        assert arrays_a.keys() == arrays_b.keys()
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
        assert history_a == history_b
        rows_a = json.loads((a / name / RESULTS).read_text())["rows"]
        assert rows_a == json.loads((b / name / RESULTS).read_text())["rows"]


@pytest.fixture(scope="module")
def sweep_in_one_go(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep_one_go")
    code, _, err = finish(sweep_cli("--workers", "2", "--out", str(out)), timeout=300)
    assert code == 0, err
    return out


def wait_until_two_run(out: Path, proc, after: int = 0) -> None:
    """Until the first two runs have written a checkpoint past step ``after``."""
    deadline = time.monotonic() + 120
    for name in SWEEP_NAMES[:2]:
        path = out / name / CHECKPOINT
        while not path.exists() or manifest_step(path) <= after:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no new checkpoint"
            time.sleep(0.02)


def freeze(pids) -> None:
    """SIGSTOP each process and wait until it is stopped: a signal sent to it from now on
    stays pending until :func:`thaw_once_told` continues it."""
    import psutil

    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while not all(psutil.Process(pid).status() == psutil.STATUS_STOPPED for pid in pids):
        assert time.monotonic() < deadline, "a process did not stop"
        time.sleep(0.005)


def pending_signals(pid: int) -> set[int]:
    """The signals waiting for a (stopped) process, from Linux's /proc."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def thaw_once_told(pids, timeout=10.0) -> None:
    """Wait until SIGINT or SIGTERM is pending in every frozen process, then continue them:
    each handles it before its next step."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while not pending_signals(pid) & {signal.SIGINT, signal.SIGTERM}:
            assert time.monotonic() < deadline, f"no stop signal reached worker {pid}"
            time.sleep(0.01)
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def assert_all_gone(processes, timeout=10.0) -> None:
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"still running: {alive}"


def assert_stopped_mid_run(out: Path, total: int = SWEEP_STEPS) -> int:
    """Every running run stopped at an intact checkpoint; the third never started."""
    steps = []
    for name in SWEEP_NAMES[:2]:
        manifest, _ = read_checkpoint(out / name / CHECKPOINT)
        assert 0 < manifest["step"] < total
        assert not (out / name / RESULTS).exists()
        steps.append(manifest["step"])
    assert not (out / SWEEP_NAMES[2]).exists()
    return min(steps)


def test_signals_stop_a_local_sweep_as_one_unit_then_resume_is_bit_identical(
        sweep_in_one_go, tmp_path):
    """SIGINT and SIGTERM to the command, then to its process group, then SIGKILL: each time
    every process is gone within seconds, the two running runs are stopped at intact
    checkpoints and the third is not started; resumed after each stop, the sweep ends bit
    for bit as the sweep made in one go.

    The workers are frozen while the stop travels: forwarded by the command, sent to the
    group, or (SIGKILL) sent by the kernel when their parent dies. Each must reach both."""
    import psutil

    stopped_at = 0
    for signum, target in [(signal.SIGINT, "parent"), (signal.SIGTERM, "group"),
                           (signal.SIGINT, "group"), (signal.SIGTERM, "parent"),
                           (signal.SIGKILL, "parent")]:
        resume = ("--resume",) if stopped_at else ()
        proc = sweep_cli("--workers", "2", "--out", str(tmp_path), *resume)
        wait_until_two_run(tmp_path, proc, after=stopped_at)
        command = psutil.Process(proc.pid)
        workers = command.children(recursive=True)
        processes = [command, *workers]
        assert len(processes) == 3                  # the command and its two workers
        freeze([w.pid for w in workers])
        if target == "parent":
            proc.send_signal(signum)
        else:
            os.killpg(proc.pid, signum)
        thaw_once_told([w.pid for w in workers])
        code, _, err = finish(proc, timeout=60)
        # the workers of a killed command notice it, write their checkpoints and exit
        assert_all_gone(processes)
        stopped_at = assert_stopped_mid_run(tmp_path)
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
            continue
        assert code == 128 + signum, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(
            f"stopped by {signal.Signals(signum).name}: 2 run(s) stopped at a checkpoint, "
            "0 finished, 1 not started; continue with: python -m minigrad.run --family sbn"
        ), err
        assert lines[0].endswith(f"--out {tmp_path} --resume")
    code, _, err = finish(sweep_cli("--workers", "2", "--out", str(tmp_path), "--resume"),
                          timeout=300)
    assert code == 0, err
    same_runs(sweep_in_one_go, tmp_path)
    assert not list(tmp_path.glob(".*"))            # no sweep file, no temporary file left


def running_tasks(client) -> int:
    return sum(client.run(lambda dask_worker: len(dask_worker.state.executing)).values())


def wait_for_no_task(client, timeout: float) -> float:
    started = time.monotonic()
    while running_tasks(client):
        assert time.monotonic() - started < timeout, "tasks still running on the cluster"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_sweep_on_a_dask_cluster_stops_as_one_unit(dask_cluster, sweep_in_one_go,
                                                     tmp_path):
    """SIGTERM to the command's group: the runs on the cluster stop at their checkpoints, and
    the sweep submitted again ends as the sweep made in one go. SIGKILL to the command of a
    sweep too long to finish meanwhile: the runs stop at their checkpoints when the
    command's heartbeat stops (2 s here), and the third run never starts."""
    address, client = dask_cluster
    dask = ("--scheduler", address, "--parent-timeout", "2", "--out", str(tmp_path / "a"))
    proc = sweep_cli(*dask)
    wait_until_two_run(tmp_path / "a", proc)
    # the cluster's workers frozen until the stop is in the sweep's file and their next look
    # at it is due (every half second), so that they stop at the step they are frozen at
    workers = list(client.run(os.getpid).values())
    freeze(workers)
    frozen = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    sweep_file = tmp_path / "a" / SWEEP_FILE
    while not json.loads(sweep_file.read_text()).get("stop") or time.monotonic() < frozen + 0.6:
        assert time.monotonic() < frozen + 10, "the stop never reached the sweep's file"
        time.sleep(0.02)
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    code, _, err = finish(proc, timeout=60)
    assert code == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM: 2 run(s) stopped at a checkpoint, 0 finished, 1 not " \
        "started" in err
    assert wait_for_no_task(client, timeout=5) < 5
    assert_stopped_mid_run(tmp_path / "a")
    code, _, err = finish(sweep_cli(*dask), timeout=300)   # on a scheduler, runs resume
    assert code == 0, err
    same_runs(sweep_in_one_go, tmp_path / "a")

    long = 1_000_000    # no machine finishes this in the 2 s the heartbeat takes to go stale
    proc = sweep_cli("--scheduler", address, "--parent-timeout", "2", "--steps", str(long),
                     "--out", str(tmp_path / "b"))
    wait_until_two_run(tmp_path / "b", proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    # the last beat came at most 1 s before the kill, and a run gives up 2 s after the last
    # beat it saw: the runs go on for about a second at least (0.5 s allows for the wait)
    assert 0.5 < wait_for_no_task(client, timeout=20) < 20
    assert_stopped_mid_run(tmp_path / "b", total=long)


def test_a_signal_during_the_final_evaluation_exits_cleanly(tmp_path):
    # a long final evaluation: the whole validation set, 100 importance samples
    args = [*TINY[:TINY.index("--eval-examples")], "--eval-k", "100", "--record-every", "10",
            "--checkpoint-every", "40", "--no-progress", "--out", str(tmp_path)]
    proc = cli(*args)
    deadline = time.monotonic() + 120
    while not (tmp_path / CHECKPOINT).exists() or manifest_step(tmp_path / CHECKPOINT) < STEPS:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    assert "Traceback" not in err
    assert f"stopped by SIGINT during the final evaluation; the checkpoint of step {STEPS}" \
        in err
    assert not (tmp_path / RESULTS).exists()

"""Bad input, tried as a new user would: each gives a clear error and loses nothing.

One section per input, named after it. Every test asserts on the message the user reads,
and, where something could be lost (a file, a model's parameters), that it was not. To add
a row: a new section with a comment saying what the input is and what must happen.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from minigrad import budget, nn
from minigrad.data import DataWarning, batches, files, load_mnist, minibatch_stream
from minigrad.estimators.onehot import (
    GumbelSoftmaxNeuron, OneHotNeuron, gumbel_softmax, st_gumbel_softmax,
)
from minigrad.tensor import Tensor

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Helpers: a tiny verified MNIST pickle in a private data folder (never the user's cache).


@pytest.fixture
def data_folder(tmp_path, monkeypatch) -> Path:
    """$MINIGRAD_DATA -> a fresh folder; MNIST served from a fabricated, verified pickle."""
    rng = np.random.default_rng(0)
    parts = tuple(
        ((rng.integers(0, 256, (n, 784)) / 256).astype(np.float32),
         rng.integers(0, 10, n).astype(np.int64))
        for n in (6, 3, 3)
    )
    source = tmp_path / "package" / "mnist.pkl.gz"
    source.parent.mkdir()
    with gzip.open(source, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    monkeypatch.setattr(files, "MNIST_SIZE", source.stat().st_size)
    monkeypatch.setattr(files, "MNIST_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    monkeypatch.setattr(files, "package_pickle_path", lambda: source)
    monkeypatch.setattr(files, "MNIST_URL", None)
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv(files.DATA_ENV, str(folder))
    files.forget()
    yield folder
    files.forget()


def keras_like_npz(path: Path) -> bytes:
    """A file such as Keras's mnist.npz: the user's own, with other array names."""
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    return path.read_bytes()


def two_layer_model(seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(3, 4, rng), nn.Linear(4, 2, rng))


def parameter_bits(model: nn.Module) -> dict[str, bytes]:
    return {name: p.data.tobytes() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------
# MINIGRAD_DATA holding the user's own mnist.npz: never read, replaced or deleted.


def test_users_mnist_npz_in_data_folder_is_never_touched(data_folder):
    user_file = data_folder / "mnist.npz"
    original = keras_like_npz(user_file)
    stamp = user_file.stat().st_mtime_ns
    mnist = load_mnist(split="standard", one_hot=False)  # no warning: the file is not ours
    assert len(mnist.train) == 6
    assert user_file.read_bytes() == original and user_file.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(data_folder)) == sorted(["mnist.npz", files.CACHE_NAME])
    with np.load(data_folder / files.CACHE_NAME, allow_pickle=False) as npz:
        assert str(npz["writer"]) == files.CACHE_WRITER
        assert int(npz["version"]) == files.CACHE_VERSION


def test_foreign_file_at_the_cache_name_is_warned_about_and_left_alone(data_folder):
    squatter = data_folder / files.CACHE_NAME
    original = keras_like_npz(squatter)
    for _ in range(2):  # and again: it is not overwritten in between
        files.forget()
        with pytest.warns(DataWarning) as caught:
            mnist = load_mnist(split="standard")
        message = str(caught[0].message)
        assert f"{squatter} was not written by minigrad" in message
        assert "it has no 'writer' array" in message and "left untouched" in message
        assert "MINIGRAD_DATA" in message
        assert len(mnist.train) == 6
        assert squatter.read_bytes() == original
        assert os.listdir(data_folder) == [files.CACHE_NAME]


def test_file_with_another_writer_is_left_alone(data_folder):
    squatter = data_folder / files.CACHE_NAME
    np.savez(squatter, writer=np.array("someone else"))
    original = squatter.read_bytes()
    with pytest.warns(DataWarning, match="its 'writer' array is .*someone else"):
        load_mnist(split="standard")
    assert squatter.read_bytes() == original


# ---------------------------------------------------------------------------------------------
# Checkpoint with the right names and shapes but a bad dtype: nothing changes.


def test_checkpoint_with_string_arrays_changes_no_parameter(tmp_path):
    model = two_layer_model(0)
    state = two_layer_model(1).state_dict()  # every array differs from the model's
    state["1.weight"] = np.full((4, 2), "x")  # the second layer is the bad one
    before = parameter_bits(model)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert "not arrays of real numbers: 1.weight: checkpoint <U1 vs model float32" in message
    assert "no parameter was changed" in message
    assert parameter_bits(model) == before

    path = tmp_path / "strings.npz"
    np.savez(path, **state)
    with pytest.raises(ValueError, match="1.weight: checkpoint <U1"):
        model.load(path)
    assert parameter_bits(model) == before


def test_checkpoint_of_another_numeric_dtype_still_loads():
    model = two_layer_model(0)
    state = {k: v.astype(np.float64) for k, v in two_layer_model(1).state_dict().items()}
    model.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert parameter_bits(model) == parameter_bits(two_layer_model(1))


# ---------------------------------------------------------------------------------------------
# Module.load of a file that is not a checkpoint: "not a minigrad checkpoint", never pickle.


def _text_file(path: Path) -> None:
    path.write_text("weights: 1 2 3\n")


def _truncated_npz(path: Path) -> None:
    two_layer_model(1).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _npy_file(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


@pytest.mark.parametrize("make_file, says", [
    (_text_file, "is not an .npz archive"),
    (_truncated_npz, "is a damaged or truncated .npz archive"),
    (_npy_file, "holds a single array"),
])
def test_load_of_a_file_that_is_not_a_checkpoint(tmp_path, make_file, says):
    path = tmp_path / "model.npz"
    make_file(path)
    model = two_layer_model(0)
    before = parameter_bits(model)
    with pytest.raises(ValueError) as err:
        model.load(path)
    message = str(err.value)
    assert message.startswith(f"not a minigrad checkpoint: {path} {says}")
    assert "Module.save" in message
    assert "pickle" not in message.lower()
    # NumPy's own message (which suggests unpickling) is not shown under ours either.
    shown_below = err.value.__cause__ or (
        None if err.value.__suppress_context__ else err.value.__context__)
    assert shown_below is None
    assert parameter_bits(model) == before


# ---------------------------------------------------------------------------------------------
# Module.save into a missing folder: the error names the folder the user gave.


def test_save_into_missing_folder_names_that_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    with pytest.raises(FileNotFoundError) as err:
        two_layer_model(0).save(folder / "model.npz")
    message = str(err.value)
    assert f"the folder {folder} does not exist" in message
    assert ".tmp" not in message
    assert not folder.exists() and os.listdir(tmp_path) == []


def test_save_leaves_no_temporary_file(tmp_path):
    two_layer_model(0).save(tmp_path / "model.npz")
    assert os.listdir(tmp_path) == ["model.npz"]


# ---------------------------------------------------------------------------------------------
# batches / minibatch_stream with batch_size larger than the data: an error saying so.


def test_batches_larger_than_the_data():
    x = np.arange(5)
    with pytest.raises(ValueError) as err:
        batches(x, None, 8, np.random.default_rng(0))
    message = str(err.value)
    assert "batch_size 8 is larger than the 5 examples" in message
    assert "at most 5" in message and "drop_last=False" in message
    (only,) = list(batches(x, x, 8, np.random.default_rng(0), drop_last=False))
    assert sorted(only[0]) == list(range(5))
    assert "larger than the number" in batches.__doc__


def test_minibatch_stream_larger_than_the_data():
    with pytest.raises(ValueError, match="batch_size 8 is larger than the 5 examples.*at most 5"):
        minibatch_stream(np.arange(5), None, 8, np.random.default_rng(0))
    assert "larger than the number" in minibatch_stream.__doc__


# ---------------------------------------------------------------------------------------------
# MINIGRAD_BUDGET=fast make book: fails before building, listing the budgets; one execution
# cache per budget, so a cached build never shows another budget's numbers.


def _make_dry_run(budget_name: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "-n", "book", f"MINIGRAD_BUDGET={budget_name}", f"PYTHON={sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_make_book_with_unknown_budget_fails_first():
    done = _make_dry_run("fast")
    assert done.returncode != 0
    assert "MINIGRAD_BUDGET='fast' is not a budget; valid values are full, smoke" in done.stderr
    assert "jupyter-book" not in done.stdout and "pip install" not in done.stdout


def test_make_book_builds_with_the_budgets_own_config():
    done = _make_dry_run("smoke")
    assert done.returncode == 0, done.stderr
    assert 'budget.py book-config "smoke" _config.yml _build/_config.budget.yml' in done.stdout
    assert "--config _build/_config.budget.yml" in done.stdout


def test_budget_check_lists_the_valid_budgets():
    with pytest.raises(ValueError, match=r"'fast' is not a budget; valid values are full, smoke"):
        budget.check("fast")
    assert budget.check(" Smoke ") == "smoke" and budget.check("") == "full"


@pytest.mark.parametrize("name", budget.BUDGETS)
def test_book_config_of_a_budget_changes_only_the_cache(tmp_path, name):
    from jupyter_book.config import get_final_config

    dest = tmp_path / "config.yml"
    cache = budget.write_book_config(name, str(ROOT / "_config.yml"), str(dest))
    assert cache == f"_build/.jupyter_cache-{name}"
    expected = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    expected["execute"]["cache"] = cache
    assert yaml.safe_load(dest.read_text(encoding="utf8")) == expected
    sphinx_config, _ = get_final_config(
        user_yaml=dest, cli_config={"latex_individualpages": False}, sourcedir=ROOT,
        raise_on_invalid=True)
    assert sphinx_config["nb_execution_cache_path"] == cache


def _cached_notebook(root: Path, name: str) -> None:
    """An executed notebook ``book/<name>`` in the smoke budget's execution cache."""
    import nbformat
    from jupyter_cache import get_cache

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"print({name!r})", execution_count=1)
    nb.cells.append(cell)
    path = root / "book" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    get_cache(str(root / budget.BOOK_CACHE.format(budget="smoke"))).cache_notebook_file(
        str(path), check_validity=False)


def _cached_names(root: Path) -> set[str]:
    from jupyter_cache import get_cache

    cache = get_cache(str(root / budget.BOOK_CACHE.format(budget="smoke")))
    return {Path(r.uri).name for r in cache.list_cache_records()}


@pytest.mark.parametrize("change", ["a recorded run changes", "a run appears",
                                    "a run is deleted", "a chapter records results"])
def test_the_execution_cache_sees_the_files_chapters_read(change, tmp_path, monkeypatch):
    import time

    root = tmp_path
    monkeypatch.delenv("MINIGRAD_RUNS", raising=False)
    monkeypatch.delenv("MINIGRAD_RESULTS", raising=False)
    (root / "book" / "recorded").mkdir(parents=True)
    (root / "book" / "recorded" / "run.json").write_text("{}")
    (root / "runs" / "old").mkdir(parents=True)
    (root / "runs" / "old" / "results.json").write_text("{}")
    (root / "_build" / "results" / "smoke").mkdir(parents=True)
    time.sleep(0.05)
    for name in ("01_autograd.ipynb", "07_rebar_relax.ipynb", "99_reproduction.ipynb"):
        _cached_notebook(root, name)
    assert budget.drop_stale_executions("smoke", str(root)) == []   # nothing changed
    time.sleep(0.05)
    if change == "a recorded run changes":
        (root / "book" / "recorded" / "run.json").write_text('{"steps": 1}')
        expected = {"07_rebar_relax.ipynb", "99_reproduction.ipynb"}
    elif change == "a run appears":
        (root / "runs" / "new").mkdir()
        expected = {"99_reproduction.ipynb"}
    elif change == "a run is deleted":
        shutil.rmtree(root / "runs" / "old")
        expected = {"99_reproduction.ipynb"}
    else:
        (root / "_build" / "results" / "smoke" / "binary_neurons.json").write_text("{}")
        expected = {"99_reproduction.ipynb"}
    assert set(budget.drop_stale_executions("smoke", str(root))) == expected
    assert _cached_names(root) == {"01_autograd.ipynb", "07_rebar_relax.ipynb",
                                   "99_reproduction.ipynb"} - expected


def test_make_book_refreshes_the_cache_before_and_after_the_build():
    done = _make_dry_run("smoke")
    lines = done.stdout.splitlines()
    refresh = [i for i, line in enumerate(lines) if 'budget.py refresh-cache "smoke"' in line]
    build = [i for i, line in enumerate(lines) if "jupyter-book build" in line]
    assert len(refresh) == 2 and refresh[0] < build[0] < refresh[1]


def test_book_config_refuses_an_unknown_budget(tmp_path):
    dest = tmp_path / "config.yml"
    with pytest.raises(ValueError, match="valid values are full, smoke"):
        budget.write_book_config("fast", str(ROOT / "_config.yml"), str(dest))
    assert not dest.exists()


# ---------------------------------------------------------------------------------------------
# Temperature given as a NumPy scalar (one-hot and Gumbel-softmax estimators).


REAL_SCALARS = [np.float32(0.5), np.float64(0.5), np.array(0.5), np.array(0.5, np.float32),
                np.int64(2), Fraction(1, 2), 2]


@pytest.mark.parametrize("tau", REAL_SCALARS, ids=lambda t: f"{type(t).__name__}({t})")
def test_temperature_accepts_any_real_scalar(tau):
    logits = Tensor(np.array([[0.1, 0.7, -0.3]], np.float32))
    noise = np.array([[0.2, -0.1, 0.4]])
    assert OneHotNeuron(3, temperature=tau).temperature == float(tau)
    assert GumbelSoftmaxNeuron(3, temperature=tau).temperature == float(tau)
    assert type(OneHotNeuron(3, temperature=tau).temperature) is float
    np.testing.assert_array_equal(gumbel_softmax(logits, tau, noise).data,
                                  gumbel_softmax(logits, float(tau), noise).data)
    np.testing.assert_array_equal(st_gumbel_softmax(logits, tau, noise).data,
                                  st_gumbel_softmax(logits, float(tau), noise).data)


@pytest.mark.parametrize("tau", [True, np.bool_(True), "0.5", np.array([0.5]), None],
                         ids=lambda t: f"{type(t).__name__}({t})")
def test_temperature_that_is_not_a_real_scalar(tau):
    with pytest.raises(TypeError, match="OneHotNeuron: the temperature must be a real number"):
        OneHotNeuron(3, temperature=tau)


@pytest.mark.parametrize("tau", [np.float32("nan"), np.inf, np.array(-1.0), 0])
def test_temperature_that_is_not_finite_and_positive(tau):
    with pytest.raises(ValueError, match="gumbel_softmax: the temperature must be a finite"):
        gumbel_softmax(Tensor(np.zeros((1, 3))), tau, np.zeros((1, 3)))


def test_the_smoke_banner_shows_only_at_the_smoke_budget(monkeypatch):
    import IPython.display

    from minigrad import budget

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("MINIGRAD_BUDGET", "full")
    assert budget.banner() is None
    budget.show_banner()
    assert shown == []          # display(None) would print "None" on the page
    monkeypatch.setenv("MINIGRAD_BUDGET", "smoke")
    budget.show_banner()
    assert len(shown) == 1 and "smoke-banner" in shown[0].data

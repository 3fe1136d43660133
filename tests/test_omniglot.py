"""The Omniglot loader, on small fabricated files of the IWAE format (never a real download)."""
from __future__ import annotations

import hashlib
import io
import urllib.error

import numpy as np
import pytest
import scipy.io

from minigrad.data import DataError
from minigrad.data import omniglot as om

N_TRAIN, N_TEST, N_VALIDATION = 12, 5, 3


@pytest.fixture
def small(monkeypatch, tmp_path):
    """Omniglot's sizes made small, the data folder a temporary one, the network cut."""
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path))
    monkeypatch.setattr(om, "N_TRAIN", N_TRAIN)
    monkeypatch.setattr(om, "N_TEST", N_TEST)
    monkeypatch.setattr(om, "N_VALIDATION", N_VALIDATION)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(om.urllib.request, "urlopen", offline)
    return tmp_path / "omniglot"


def fabricate(path, n_train=N_TRAIN, n_test=N_TEST, seed=0, **overrides):
    """A chardata.mat like the IWAE one: pixels x images, grey values in [0, 1]."""
    rng = np.random.default_rng(seed)
    arrays = {"data": rng.random((784, n_train)), "testdata": rng.random((784, n_test)),
              "target": np.zeros((50, n_train)), "testtarget": np.zeros((50, n_test))}
    arrays.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, arrays)
    return arrays


def test_loads_a_file_of_the_iwae_format(small):
    # the first and last training images exactly 0 or 1, in a pattern that a transposed
    # reading would change
    grey = np.random.default_rng(5).random((784, N_TRAIN))
    grey[:, [0, -1]] = (np.arange(784) % 5 == 0)[:, None] * 1.0
    grey[:28, -1] = 1.0
    arrays = fabricate(small / "chardata.mat", data=grey)
    data = om.load_omniglot()
    assert data.train.x.shape == (N_TRAIN - N_VALIDATION, 784)
    assert data.validation.x.shape == (N_VALIDATION, 784)
    assert data.test.x.shape == (N_TEST, 784)
    assert set(np.unique(data.train.x)) <= {0.0, 1.0}
    # pixels in MATLAB's column-major order: image i, row r, column c is data[28 c + r, i]
    def image(column):
        return arrays["data"][:, column].reshape(28, 28).T.ravel()

    np.testing.assert_array_equal(data.train.x[0], image(0))
    # the last training images are the validation set
    np.testing.assert_array_equal(data.validation.x[-1], image(-1))
    # its SHA-256 is recorded on first read, and the binarization is cached
    record = (small / "chardata.mat.sha256").read_text().split()[0]
    assert record == hashlib.sha256((small / "chardata.mat").read_bytes()).hexdigest()
    assert (small / om.CACHE_NAME).exists()
    again = om.load_omniglot()
    np.testing.assert_array_equal(again.train.x, data.train.x)


@pytest.mark.parametrize("damage", ["truncated", "flipped bit", "not a zip", "empty"])
def test_a_damaged_cache_is_reported_and_rebuilt(small, damage):
    fabricate(small / "chardata.mat")
    first = om.load_omniglot()
    cache = small / om.CACHE_NAME
    data = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(data[:len(data) // 2])
    elif damage == "flipped bit":
        # an uncompressed .npz: flip a pixel of the last test image in place
        with np.load(cache) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["test"][-1, 0] ^= 1
        np.savez(cache, **arrays)
    elif damage == "not a zip":
        cache.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    else:
        cache.write_bytes(b"")
    with pytest.warns(om.DataWarning, match=f"{om.CACHE_NAME} is damaged .*rebuilding"):
        again = om.load_omniglot()
    np.testing.assert_array_equal(again.test.x, first.test.x)
    np.testing.assert_array_equal(again.train.x, first.train.x)
    with np.load(cache) as f:                       # rebuilt, so read without a warning
        assert str(f["digest"]) == om._digest(f["train"], f["test"], 0)


def test_a_file_that_changed_since_its_first_read_is_refused(small):
    fabricate(small / "chardata.mat")
    om.load_omniglot()
    (small / om.CACHE_NAME).unlink()
    fabricate(small / "chardata.mat", seed=1)
    with pytest.raises(DataError, match="SHA-256 .* was recorded"):
        om.load_omniglot()


@pytest.mark.parametrize("overrides, message", [
    ({"data": np.zeros((784, N_TRAIN - 1))}, "shape"),
    ({"testdata": np.full((784, N_TEST), 2.0)}, r"intensities in \[0, 1\]"),
])
def test_wrong_arrays_are_refused(small, overrides, message):
    fabricate(small / "chardata.mat", **overrides)
    with pytest.raises(DataError, match=message):
        om.load_omniglot()
    assert not (small / om.CACHE_NAME).exists()


def test_missing_array_is_refused(small):
    small.mkdir(parents=True)
    scipy.io.savemat(small / "chardata.mat", {"images": np.zeros((784, 3))})
    with pytest.raises(DataError, match="no array 'data'"):
        om.load_omniglot()


def test_not_a_mat_file_is_refused(small):
    small.mkdir(parents=True)
    (small / "chardata.mat").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable .mat file"):
        om.load_omniglot()


def test_offline_without_the_file_says_what_to_place_where(small):
    with pytest.raises(DataError) as error:
        om.load_omniglot()
    message = str(error.value)
    assert "could not be downloaded" in message
    assert om.OMNIGLOT_URL in message and str(small / "chardata.mat") in message
    assert not (small / "chardata.mat").exists()


def test_download_when_online(small, tmp_path, monkeypatch):
    source = tmp_path / "served.mat"
    fabricate(source)
    payload = source.read_bytes()
    asked = []

    def serve(url, timeout):
        asked.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(om.urllib.request, "urlopen", serve)
    data = om.load_omniglot()
    assert asked == [om.OMNIGLOT_URL]
    assert (small / "chardata.mat").read_bytes() == payload
    assert data.test.x.shape == (N_TEST, 784)


def test_an_sbn_trains_on_omniglot_from_the_command_line(small, tmp_path, capsys):
    from minigrad.run import main

    args = ["--family", "sbn", "--model", "linear1", "--estimator", "MuProp",
            "--dataset", "omniglot", "--steps", "4", "--batch-size", "4", "--eval-k", "2",
            "--no-progress", "--out", str(tmp_path / "run")]
    # offline and no file: a clear error that says what to place where
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and str(small / "chardata.mat") in err
    fabricate(small / "chardata.mat")
    assert main(args) == 0
    assert "sbn linear1 omniglot | MuProp" in capsys.readouterr().out

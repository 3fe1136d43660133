"""Omniglot, the REBAR paper's second data set, for readers who are online.

The 28x28 character images of the IWAE authors (Burda, Grosse & Salakhutdinov 2016),
``chardata.mat``: 24,345 training and 8,070 test images; the last 1,345 training images are
the validation set, as in the REBAR experiments. There is no offline copy and no published
checksum, so :func:`load_omniglot`:

1. reads ``$MINIGRAD_DATA/omniglot/minigrad-omniglot-v2.npz`` if an earlier load wrote it;
2. else reads ``$MINIGRAD_DATA/omniglot/chardata.mat`` (placed there by hand, or downloaded
   from :data:`OMNIGLOT_URL` when it is missing and a network is there);
3. checks what can be checked: the arrays' names, shapes and value range, and the file's
   SHA-256 against the one recorded (in ``chardata.mat.sha256``) the first time it was
   read, so a file that changes afterwards is refused;
4. binarizes the grey images once, with a fixed seed (a pixel is 1 when a float32 uniform
   draw is below its intensity, as for binarized MNIST), and keeps the result as the
   ``.npz`` cache, with the SHA-256 of its arrays: a cache that is truncated, corrupt or
   changed is reported (a :class:`~minigrad.data.DataWarning`) and rebuilt from
   ``chardata.mat``.

Reading ``.mat`` files needs SciPy (``scipy.io.loadmat``).
"""
from __future__ import annotations

import hashlib
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from minigrad.data.files import DATA_ENV, DataError, DataWarning, _sha256_file, data_dir
from minigrad.data.mnist import MNIST, Split
from minigrad.fileio import atomic_write

__all__ = ["OMNIGLOT_URL", "load_omniglot", "omniglot_dir"]

# Module-level names read at call time (the tests make them small).
#: The IWAE repository's raw file.
OMNIGLOT_URL: str | None = (
    "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
)
N_TRAIN = 24_345
N_TEST = 8_070
N_VALIDATION = 1_345
MAT_NAME = "chardata.mat"
CACHE_NAME = "minigrad-omniglot-v2.npz"
DOWNLOAD_TIMEOUT = 120.0
MAX_BYTES = 200_000_000
_N_PIXELS = 784


def omniglot_dir() -> Path:
    """Where the Omniglot files live: ``<data directory>/omniglot``."""
    return data_dir() / "omniglot"


def _where_to_put_it(path: Path) -> str:
    return (f"Download {OMNIGLOT_URL or 'chardata.mat from the IWAE repository'} on a "
            f"machine that is online and place it at {path} (the folder is "
            f"${DATA_ENV}/omniglot, default ~/.cache/minigrad/omniglot)")


def _download(path: Path) -> None:
    if OMNIGLOT_URL is None:
        raise DataError(f"Omniglot is not at {path} and downloading is disabled. "
                        + _where_to_put_it(path))
    try:
        with atomic_write(path, "wb") as out:
            with urllib.request.urlopen(OMNIGLOT_URL, timeout=DOWNLOAD_TIMEOUT) as response:
                size = 0
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    size += len(block)
                    if size > MAX_BYTES:
                        raise DataError(f"{OMNIGLOT_URL} sent more than {MAX_BYTES:,} bytes: "
                                        "not the Omniglot file")
                    out.write(block)
    except OSError as e:
        raise DataError(f"Omniglot is not at {path} and could not be downloaded "
                        f"({type(e).__name__}: {e}). " + _where_to_put_it(path)) from None


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The grey training and test images, (n, 784) float32 in [0, 1], checked."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading Omniglot's chardata.mat needs SciPy: "
                        "pip install -r requirements.txt (or pip install scipy)") from None
    fix = f"Delete {path} and its .sha256 file and load again, or " + _where_to_put_it(path)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises many kinds on a file that is not a .mat
        raise DataError(f"{path} is not a readable .mat file ({type(e).__name__}: {e}). "
                        + fix) from None
    parts = []
    for name, n in (("data", N_TRAIN), ("testdata", N_TEST)):
        if name not in mat:
            raise DataError(f"{path} has no array {name!r} (it has "
                            f"{sorted(k for k in mat if not k.startswith('__'))}). " + fix)
        a = np.asarray(mat[name])
        if a.shape != (_N_PIXELS, n):
            raise DataError(f"{path}: {name!r} has shape {a.shape}, expected "
                            f"({_N_PIXELS}, {n}). " + fix)
        if a.dtype.kind not in "fiu" or not np.all((a >= 0) & (a <= 1)):
            raise DataError(f"{path}: {name!r} must hold intensities in [0, 1]. " + fix)
        # one image per column, its 784 pixels in column-major (MATLAB) order
        images = a.T.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, _N_PIXELS)
        parts.append(images.astype(np.float32))
    return parts[0], parts[1]


def _checked_sha(path: Path) -> None:
    """Record the file's SHA-256 the first time; refuse a file that changed since."""
    record = path.with_name(path.name + ".sha256")
    found = _sha256_file(path)
    if record.exists():
        expected = record.read_text().split()[0] if record.read_text().split() else ""
        if found != expected:
            raise DataError(f"{path} has SHA-256 {found}, but {expected} was recorded in "
                            f"{record} when it was first read: the file changed. Delete both "
                            "files to accept the new one, or put the original back.")
    else:
        with atomic_write(record, "w") as f:
            f.write(f"{found}  {path.name}\n")


def _binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.uint8)


def _digest(train: np.ndarray, test: np.ndarray, seed: int) -> str:
    h = hashlib.sha256()
    for a in (train, test, np.int64(seed)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _read_cache(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached bits, or None (with a warning saying why) when the cache is unusable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            train, test = f["train"], f["test"]
            cached_seed, digest = int(f["seed"]), str(f["digest"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = f"it cannot be read ({type(e).__name__})"
    else:
        if cached_seed != seed:
            return None        # another seed's binarization: replaced, nothing wrong
        if train.shape != (N_TRAIN, _N_PIXELS) or test.shape != (N_TEST, _N_PIXELS) or \
                train.dtype != np.uint8 or test.dtype != np.uint8:
            reason = "its arrays have the wrong shapes or types"
        elif _digest(train, test, seed) != digest:
            reason = "its arrays do not match their recorded SHA-256"
        else:
            return train, test
    warnings.warn(f"{path} is damaged ({reason}); rebuilding it from {MAT_NAME}",
                  DataWarning, stacklevel=3)
    return None


def load_omniglot(seed: int = 0, dtype=np.float32) -> MNIST:
    """Binarized Omniglot: train (23,000) / validation (1,345, the last training images) /
    test (8,070), images (n, 784) of 0s and 1s; labels are all zero (there are no classes
    the models use).

    Raises:
        DataError: the file is missing and cannot be downloaded (the message says what to
            place where), or it fails a check.
    """
    folder = omniglot_dir()
    cache = folder / CACHE_NAME
    bits = _read_cache(cache, seed) if cache.exists() else None
    if bits is None:
        mat = folder / MAT_NAME
        if not mat.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DataError(f"cannot create {folder} ({e}). "
                                + _where_to_put_it(mat)) from None
            _download(mat)
        _checked_sha(mat)
        train, test = _read_mat(mat)
        rng = np.random.default_rng(seed)
        bits = (_binarize(train, rng), _binarize(test, rng))
        with atomic_write(cache, "wb") as f:
            np.savez(f, train=bits[0], test=bits[1], seed=np.int64(seed),
                     digest=np.array(_digest(bits[0], bits[1], seed)))
    train, test = bits
    n_fit = N_TRAIN - N_VALIDATION

    def split(x):
        x = x.astype(dtype)
        x.flags.writeable = False
        y = np.zeros(len(x), np.int64)
        y.flags.writeable = False
        return Split(x, y)

    return MNIST(split(train[:n_fit]), split(train[n_fit:]), split(test))

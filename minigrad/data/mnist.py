"""MNIST for the book: splits, binarization, one-hot labels, padding and minibatches.

:func:`load_mnist` gives the classifier chapters the split of the TensorFlow tutorials
(55,000 / 5,000 / 10,000); :func:`load_binarized_mnist` gives the models of binary pixels
the standard 50,000 / 10,000 / 10,000 split, binarized once with a fixed seed or afresh
for each batch. Where the images come from (a package, a cache, a download) and how the
files are checked is the business of :mod:`minigrad.data.files`.

Loaded arrays are kept in memory, so loading twice costs nothing; every array a loader
returns is read-only (call ``.copy()`` to get one you can modify).

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
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

from minigrad import validate
from minigrad.data import files
from minigrad.data.files import DataError, data_dir

__all__ = [
    "BINARIZATION_SEED",
    "MNIST",
    "Split",
    "batches",
    "clear_cache",
    "dynamic_binarize",
    "load_binarized_mnist",
    "load_mnist",
    "minibatch_stream",
    "MinibatchStream",
    "one_hot",
    "pad_to_32",
]

#: Size of the validation set of the TensorFlow tutorial split (the first training images).
TF_VALIDATION_SIZE = 5_000
#: Default seed of the fixed binarization of :func:`load_binarized_mnist`.
BINARIZATION_SEED = 0

SPLITS = ("tensorflow", "standard")
BINARIZATIONS = ("fixed", "dynamic")

_N_PIXELS = 784
# Rows binarized per call of the generator; fixed so that a seed always gives the same bits.
_BINARIZE_CHUNK = 10_000


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
# Loading and splitting.


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
    raw = files.load_raw(str(data_dir()))
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
    raw = files.load_raw(directory)
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


def clear_cache() -> None:
    """Forget the arrays kept in memory (the next load reads the disk again)."""
    files.forget()
    _binarized_bits.cache_clear()


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
    raw = files.load_raw(directory)
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
    validate.finite(x, "x (the examples)", "minibatches", "an inf or NaN pixel would turn "
                    "the weights NaN at the first step: fix or drop those examples")
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

    Raises:
        ValueError: when ``drop_last`` is True and ``batch_size`` is larger than the number
            of examples, since the epoch would then have no batch at all. With
            ``drop_last=False`` such an epoch is one short batch of every example.
    """
    n = _check_xy(x, y, batch_size)
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {n} examples, so with drop_last=True "
            f"an epoch has no batch at all; use a batch_size of at most {n}, or "
            "drop_last=False for one short batch"
        )
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

    Raises:
        ValueError: when ``batch_size`` is larger than the number of examples (a batch
            would hold some example twice).
    """
    n = _check_xy(x, y, batch_size)
    _check_generator(rng)
    if batch_size > n:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {n} examples, so a batch would "
            f"hold some example twice; use a batch_size of at most {n}"
        )
    return MinibatchStream(x, y, batch_size, rng)


class MinibatchStream:
    """The endless stream of :func:`minibatch_stream`, with a state that can be saved.

    A generator's position cannot be written to a file; this iterator's can:
    :meth:`state_dict` holds the current epoch's order, the position in it and the state of
    the Generator that draws the next orders, and :meth:`load_state_dict` puts a fresh stream
    (built on the same examples) back exactly there, so a resumed run sees the batches it
    would have seen.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int,
                 rng: np.random.Generator):
        self.x, self.y, self.batch_size, self.rng = x, y, int(batch_size), rng
        self.n = len(x)
        self.order: np.ndarray | None = None   # drawn at the first batch, as a generator would
        self.pos = 0

    def __iter__(self) -> MinibatchStream:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.order is None:
            self.order = self.rng.permutation(self.n)
        if self.pos + self.batch_size <= self.n:
            idx = self.order[self.pos:self.pos + self.batch_size]
            self.pos += self.batch_size
        else:
            rest = self.order[self.pos:]
            self.order = self.rng.permutation(self.n)
            self.pos = self.batch_size - len(rest)
            idx = np.concatenate([rest, self.order[:self.pos]])
        return self.x[idx], (None if self.y is None else self.y[idx])

    def state_dict(self) -> dict[str, Any]:
        """The order of the current epoch (None before the first batch), the position in it,
        the number of examples and the Generator's state."""
        return {"n": self.n, "batch_size": self.batch_size,
                "order": None if self.order is None else self.order.copy(),
                "pos": self.pos, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved :meth:`state_dict`; checked first, then assigned."""
        if state.get("n") != self.n or state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"stream state is for {state.get('n')} examples in batches of "
                f"{state.get('batch_size')}, this stream has {self.n} in batches of "
                f"{self.batch_size}"
            )
        order = state["order"]
        if order is not None:
            order = np.array(order, dtype=np.int64)
            if order.shape != (self.n,) or not 0 <= int(state["pos"]) <= self.n:
                raise ValueError("stream state: the order or position does not fit the data")
        self.rng.bit_generator.state = state["rng"]
        self.order, self.pos = order, int(state["pos"])

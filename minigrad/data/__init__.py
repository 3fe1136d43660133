"""MNIST for the book, without a network connection.

Two parts: :mod:`minigrad.data.mnist`, what the chapters use (splits, binarization, one-hot
labels, padding, minibatches), and :mod:`minigrad.data.files`, where the images come from
(the data package, a cache, a download) and how each file is checked before it is read.
Everything public is importable from here: ``from minigrad.data import load_mnist``.
"""
from minigrad.data.files import (
    CACHE_NAME,
    DATA_ENV,
    MNIST_SHA256,
    MNIST_SIZE,
    DataError,
    DataWarning,
    data_dir,
    package_pickle_path,
)
from minigrad.data.mnist import (
    BINARIZATION_SEED,
    MNIST,
    Split,
    batches,
    clear_cache,
    dynamic_binarize,
    load_binarized_mnist,
    load_mnist,
    MinibatchStream,
    minibatch_stream,
    one_hot,
    pad_to_32,
)

__all__ = [
    "BINARIZATION_SEED",
    "CACHE_NAME",
    "DATA_ENV",
    "DataError",
    "DataWarning",
    "MNIST",
    "MNIST_SHA256",
    "MNIST_SIZE",
    "Split",
    "batches",
    "clear_cache",
    "data_dir",
    "dynamic_binarize",
    "load_binarized_mnist",
    "load_mnist",
    "MinibatchStream",
    "minibatch_stream",
    "one_hot",
    "pad_to_32",
    "package_pickle_path",
]

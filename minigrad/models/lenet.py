"""LeNet-5 (LeCun et al. 1998) as the seed's course assignment builds it.

Input 32x32x1 (MNIST padded by 2 pixels, :func:`minigrad.data.pad_to_32`), NCHW::

    conv 5x5, 6 filters    -> 6x28x28,  ReLU,  max-pool 2 -> 6x14x14
    conv 5x5, 16 filters   -> 16x10x10, ReLU,  max-pool 2 -> 16x5x5
    flatten                -> 400
    dense 120, ReLU;  dense 84, ReLU;  dense 10 (the logits)

Every weight is Glorot-uniform, every bias zero: 61,706 parameters in all.
"""
from __future__ import annotations

import numpy as np

from minigrad.init import as_generator
from minigrad.nn import Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from minigrad.tensor import Tensor


class LeNet5(Module):
    """LeNet-5 for 1x32x32 images and 10 classes; ``forward`` returns the logits.

    Args:
        rng: Generator (or integer seed) for the Glorot-uniform weights.
        channels, hidden, classes: widths, to build smaller instances (the tests'
            gradient check uses a tiny one); the defaults are the seed's network.
        dtype: float32 for training, float64 for gradient checks.
    """

    def __init__(self, rng, *, channels: tuple[int, int] = (6, 16),
                 hidden: tuple[int, int] = (120, 84), classes: int = 10,
                 image_size: int = 32, dtype=np.float32):
        super().__init__()
        rng = as_generator(rng)
        c1, c2 = channels
        h1, h2 = hidden
        side = ((image_size - 4) // 2 - 4) // 2     # 32 -> 28 -> 14 -> 10 -> 5
        if side < 1:
            raise ValueError(f"LeNet5: images of side {image_size} are too small (need >= 16)")
        self.image_size = image_size
        self.features = Sequential(
            Conv2d(1, c1, 5, rng, dtype=dtype), ReLU(), MaxPool2d(2),
            Conv2d(c1, c2, 5, rng, dtype=dtype), ReLU(), MaxPool2d(2),
            Flatten(),
        )
        self.classifier = Sequential(
            Linear(c2 * side * side, h1, rng, dtype=dtype), ReLU(),
            Linear(h1, h2, rng, dtype=dtype), ReLU(),
            Linear(h2, classes, rng, dtype=dtype),
        )

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x))
        expected = (1, self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(
                f"LeNet5 expects images of shape (batch, {', '.join(map(str, expected))}), "
                f"got {x.shape}; pad 28x28 MNIST with minigrad.data.pad_to_32"
            )
        return self.classifier(self.features(x))

    def __repr__(self) -> str:
        return f"LeNet5(features={self.features!r}, classifier={self.classifier!r})"

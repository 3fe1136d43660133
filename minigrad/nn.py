"""Layers: Module, Parameter, Linear, Conv2d, MaxPool2d, Sequential and activations.

Small and boring on purpose: the interesting code of this project is in
:mod:`minigrad.estimators`. A Module finds its parameters and sub-modules from its attributes,
in the order they were assigned. ``state_dict`` saves to ``.npz`` atomically and loading
checks every name and shape. Non-trainable state that must survive a save and load (an
annealed slope, a baseline's moving averages) is held in :class:`Buffer` attributes, which
``state_dict`` saves next to the parameters and optimizers never see.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator

import numpy as np

from minigrad import functions as F
from minigrad.fileio import atomic_write
from minigrad.init import as_generator, glorot_uniform
from minigrad.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)


class Buffer:
    """An array a Module saves and loads with its parameters but never trains.

    For state such as an annealed slope, an epoch count or a baseline's moving averages:
    assign ``self.name = Buffer(array)`` in a Module and read or replace ``.data``.
    """

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = np.array(data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Buffer({self.data!r})"


class Module:
    """Base class: assign Parameters and Modules as attributes, implement ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            value._name = name  # for error messages; a parent module prefixes it
        elif isinstance(value, Module):
            self._modules[name] = value
            for sub_name, p in value.named_parameters(name + "."):
                p._name = sub_name
        elif isinstance(value, Buffer):
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, m in self._modules.items():
            yield from m.named_buffers(prefix + name + ".")

    def named_state(self) -> Iterator[tuple[str, Parameter | Buffer]]:
        """Everything a checkpoint holds: the parameters, then the buffers."""
        yield from self.named_parameters()
        yield from self.named_buffers()

    def parameters(self) -> list[Parameter]:
        """Each parameter once, even if a layer is shared (so it is updated once per step)."""
        seen: dict[int, Parameter] = {}
        for _, p in self.named_parameters():
            seen.setdefault(id(p), p)
        return list(seen.values())

    def modules(self) -> Iterator[Module]:
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Set training mode (for layers that behave differently at evaluation)."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter's and buffer's array, keyed by dotted name."""
        return {name: p.data.copy() for name, p in self.named_state()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load arrays into the parameters; every name must be present with the same shape.

        Every array is checked and converted first (names, shapes, and a real-number dtype
        that casts to the parameter's), and only then assigned: on a ValueError listing all
        the problems together, no parameter has changed.
        """
        params = dict(self.named_state())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        misshapen = []
        bad_dtypes = []
        converted = {}
        for name, p in params.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.shape:
                misshapen.append(f"{name}: checkpoint {value.shape} vs model {p.shape}")
            elif value.dtype.kind not in "iuf":  # bool, complex, strings, objects: refused
                bad_dtypes.append(f"{name}: checkpoint {value.dtype} vs model {p.dtype}")
            else:
                converted[name] = value.astype(p.dtype, copy=True)
        problems = []
        if missing:
            problems.append("missing arrays: " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected arrays: " + ", ".join(unexpected))
        if misshapen:
            problems.append("shape mismatches: " + "; ".join(misshapen))
        if bad_dtypes:
            problems.append("not arrays of real numbers: " + "; ".join(bad_dtypes))
        if problems:
            raise ValueError(
                f"checkpoint does not match {type(self).__name__}: " + " | ".join(problems)
                + "; no parameter was changed"
            )
        for name, p in params.items():
            p.data = converted[name]

    def save(self, path: str | os.PathLike) -> None:
        """Write ``state_dict()`` to an ``.npz`` file atomically (temp file, then rename)."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"checkpoint path must end in .npz, got {path!r}")
        with atomic_write(path, "wb") as f:
            np.savez(f, **self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by :meth:`save` (names, shapes and dtypes are checked).

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            ValueError: when ``path`` is not an ``.npz`` archive of arrays (the message
                starts with "not a minigrad checkpoint"), or its arrays do not match the
                model; in either case no parameter has changed.
        """
        path = os.fspath(path)
        what = "a checkpoint is the .npz archive that Module.save writes"
        try:
            archive = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except ValueError:
            # NumPy's message would suggest unpickling the file: never do that here.
            raise ValueError(
                f"not a minigrad checkpoint: {path} is not an .npz archive; {what}"
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(
                f"not a minigrad checkpoint: {path} is a damaged or truncated .npz archive "
                f"({type(e).__name__}: {e}); {what}"
            ) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(
                f"not a minigrad checkpoint: {path} holds a single array (an .npy file); {what}"
            )
        with archive:
            try:
                state = {k: archive[k] for k in archive.files}
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise ValueError(
                    f"not a minigrad checkpoint: {path} holds an array of Python objects "
                    f"or a damaged array ({type(e).__name__}); {what}"
                ) from None
        self.load_state_dict(state)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._modules.items())
        return f"{type(self).__name__}({inner})"


def _layer_input(x, dtype, layer: Module) -> Tensor:
    """The input of a layer as a Tensor of the layer's dtype (the rule in Linear's docstring)."""
    if isinstance(x, Tensor) and x.dtype == dtype:
        return x
    if x is None:
        raise TypeError(f"{layer}: the input is None; pass a Tensor or an array of numbers")
    if not isinstance(x, (Tensor, np.ndarray)):
        return Tensor(np.asarray(x), dtype=dtype)  # Python numbers carry no precision
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.dtype == dtype:
        return x
    kind = x.dtype.kind
    if kind in "biu" or (kind == "f" and x.dtype.itemsize < np.dtype(dtype).itemsize):
        return x.astype(dtype)
    raise TypeError(
        f"{layer}: input of dtype {x.dtype} into a layer of dtype {np.dtype(dtype)}: a "
        "float input of higher precision is not cast down silently; cast it "
        f"(x.astype(np.{np.dtype(dtype).name})) or build the layer with dtype={x.dtype}"
    )


class Linear(Module):
    """y = x @ W + b, with W of shape (in_features, out_features), Glorot-uniform init.

    The weight layout is (in, out), so ``x @ W`` needs no transpose (PyTorch stores the
    transpose, (out, in)). Inputs: a Tensor, a NumPy array, or a (nested) list of numbers,
    which is converted to the layer's dtype. Dtype rule (the same for :class:`Conv2d`): an
    input of the layer's dtype is used as it is; boolean, integer and lower-precision float
    inputs (float16 into a float32 layer) are cast to the layer's dtype; a float input of
    higher precision (float64 into a float32 layer) raises a TypeError rather than being
    rounded silently.
    """

    def __init__(self, in_features: int, out_features: int, rng, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        rng = as_generator(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(glorot_uniform((in_features, out_features), rng, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = _layer_input(x, self.weight.dtype, self)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) got input of shape "
                f"{x.shape}: its last dimension must be {self.in_features}"
            )
        return F.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class Conv2d(Module):
    """2-D convolution over NCHW inputs, filters (out, in, k, k), Glorot-uniform init.

    Inputs follow :class:`Linear`'s dtype rule: the layer's dtype as it is; boolean, integer
    and lower-precision float inputs cast to it; a higher-precision float input raises.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rng,
                 stride: int = 1, padding: int = 0, dtype=np.float32):
        super().__init__()
        rng = as_generator(rng)
        self.stride, self.padding = stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(glorot_uniform(shape, rng, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        x = _layer_input(x, self.weight.dtype, self)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def __repr__(self) -> str:
        f, c, k, _ = self.weight.shape
        return f"Conv2d({c}, {f}, kernel_size={k}, stride={self.stride}, padding={self.padding})"


class MaxPool2d(Module):
    """Max-pooling over non-overlapping size x size windows."""

    def __init__(self, size: int = 2):
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.size)

    def __repr__(self) -> str:
        return f"MaxPool2d({self.size})"


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def __repr__(self) -> str:
        return "Flatten()"


class Activation(Module):
    """Wrap an elementwise function (sigmoid, tanh, relu, ...) as a layer."""

    def __init__(self, fn, name: str | None = None):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "activation")

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return self.name


class ReLU(Activation):
    """max(x, 0) as a layer."""

    def __init__(self):
        super().__init__(F.relu, "ReLU()")


class Sigmoid(Activation):
    """1 / (1 + exp(-x)) as a layer."""

    def __init__(self):
        super().__init__(F.sigmoid, "Sigmoid()")


class Tanh(Activation):
    """tanh(x) as a layer."""

    def __init__(self):
        super().__init__(F.tanh, "Tanh()")


class Sequential(Module):
    """Apply layers in order."""

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a Module")
            setattr(self, str(i), layer)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(repr(m) for m in self.layers) + ")"

"""The primitive operations, one :class:`~minigrad.tensor.Function` class each.

Every ``backward`` is written with Tensor operations (never raw arrays), so the same code
serves first-order gradients (run without recording) and higher-order ones
(``grad(..., create_graph=True)``). The docstring of each class states its maths, with ``g``
the incoming gradient.

The lower-case functions at the bottom of each section are the public entry points; they turn
Python numbers into constant tensors and call ``Function.apply``.
"""
from __future__ import annotations

import warnings

import numpy as np

from minigrad.tensor import Function, Tensor, as_tensor


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting.

    Broadcasting adds leading axes and stretches size-1 axes; the gradient of a
    stretched value is the sum over the copies it was stretched into. ``grad`` is a
    Tensor (in ``backward``) or an array (in ``backward_arrays``); so is the result.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    if isinstance(grad, np.ndarray):
        summed = np.sum(grad, axis=axes, keepdims=True) if axes else grad
        return summed.reshape(shape)
    if axes:
        grad = sum(grad, axis=axes, keepdims=True)
    return reshape(grad, shape)


def _broadcast_error(name: str, a: np.ndarray, b: np.ndarray) -> ValueError:
    return ValueError(
        f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together "
        "(each trailing dimension must be equal or 1)"
    )


def _binary(name: str, op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return op(a, b)
    except ValueError:
        raise _broadcast_error(name, a, b) from None


# ---------------------------------------------------------------------- elementwise binary
class Add(Function):
    """y = a + b;  da = g, db = g (each summed back to its own shape)."""

    reads_inputs = False

    def forward(self, a, b):
        return _binary("add", np.add, a, b)

    def backward(self, g):
        a, b = self.inputs
        da = unbroadcast(g, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g, b.shape) if self.needs_input_grad[1] else None
        return da, db

    backward_arrays = backward


class Sub(Function):
    """y = a - b;  da = g, db = -g."""

    reads_inputs = False

    def forward(self, a, b):
        return _binary("sub", np.subtract, a, b)

    def backward(self, g):
        a, b = self.inputs
        da = unbroadcast(g, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(neg(g), b.shape) if self.needs_input_grad[1] else None
        return da, db

    def backward_arrays(self, g):
        a, b = self.inputs
        da = unbroadcast(g, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(np.negative(g), b.shape) if self.needs_input_grad[1] else None
        return da, db


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a."""

    def forward(self, a, b):
        return _binary("mul", np.multiply, a, b)

    def backward(self, g):
        a, b = self.inputs
        da = unbroadcast(g * b, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g * a, b.shape) if self.needs_input_grad[1] else None
        return da, db

    def backward_arrays(self, g):
        a, b = self.inputs
        da = unbroadcast(g * b._data, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g * a._data, b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = g / b, db = -g * y / b."""

    def forward(self, a, b):
        return _binary("div", np.divide, a, b)

    def backward(self, g):
        a, b = self.inputs
        da = unbroadcast(g / b, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(-g * self.output / b, b.shape) if self.needs_input_grad[1] else None
        return da, db

    def backward_arrays(self, g):
        a, b = self.inputs
        da = unbroadcast(g / b._data, a.shape) if self.needs_input_grad[0] else None
        db = None
        if self.needs_input_grad[1]:
            db = unbroadcast(-g * self.output._data / b._data, b.shape)
        return da, db


class Pow(Function):
    """y = a ** b;  da = g * b * a ** (b - 1), db = g * y * log(a).

    At a = 0 the formulas give 0 * inf = NaN where PyTorch takes the derivative to be 0:
    da where b = 0 (y = a ** 0 = 1) and db where b >= 0. Those entries are set to 0, and the
    formulas are evaluated there at a safe point so that no inf or NaN leaks into
    higher-order gradients either. Everywhere else the formulas are used as they are.
    """

    def forward(self, a, b):
        return _binary("pow", np.power, a, b)

    def backward(self, g):
        a, b = self.inputs
        shape = g.shape
        da = db = None
        if self.needs_input_grad[0]:
            exponent = b - 1
            zero_b = np.broadcast_to((a.data == 0) & (b.data == 0), shape)
            if zero_b.any():
                exponent = where(zero_b, 1.0, broadcast_to(exponent, shape))
            da = g * b * a ** exponent
            if zero_b.any():
                da = where(zero_b, 0.0, da)
            da = unbroadcast(da, a.shape)
        if self.needs_input_grad[1]:
            zero_a = np.broadcast_to((a.data == 0) & (b.data >= 0), shape)
            base = where(zero_a, 1.0, broadcast_to(a, shape)) if zero_a.any() else a
            db = g * self.output * log(base)
            if zero_a.any():
                db = where(zero_a, 0.0, db)
            db = unbroadcast(db, b.shape)
        return da, db


class PowConst(Function):
    """y = x ** c for a constant number c;  dx = g * c * x ** (c - 1)."""

    def forward(self, x, exponent):
        self.exponent = exponent
        return np.power(x, exponent)

    def backward(self, g):
        (x,) = self.inputs
        c = self.exponent
        if c == 0:
            return g * 0.0
        if c == 2:
            return g * (2.0 * x)
        return g * (c * x ** (c - 1))

    def backward_arrays(self, g):
        x = self.inputs[0]._data
        c = self.exponent
        # The constants take x's dtype, as ``as_tensor(c, like=x)`` does on the Tensor path.
        if c == 0:
            return g * g.dtype.type(0.0)
        if c == 2:
            return g * (x.dtype.type(2.0) * x)
        return g * (x.dtype.type(c) * np.power(x, c - 1))


def _pair(a, b) -> tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def add(a, b) -> Tensor:
    return Add.apply(*_pair(a, b))


def sub(a, b) -> Tensor:
    return Sub.apply(*_pair(a, b))


def mul(a, b) -> Tensor:
    return Mul.apply(*_pair(a, b))


def div(a, b) -> Tensor:
    return Div.apply(*_pair(a, b))


def pow(a, b) -> Tensor:  # noqa: A001 - mirrors the operator
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return PowConst.apply(a, exponent=b)
    return Pow.apply(*_pair(a, b))


# ---------------------------------------------------------------------- elementwise unary
class Neg(Function):
    """y = -x;  dx = -g."""

    reads_inputs = False

    def forward(self, x):
        return np.negative(x)

    def backward(self, g):
        return neg(g)

    def backward_arrays(self, g):
        return np.negative(g)


class Exp(Function):
    """y = exp(x);  dx = g * y."""

    reads_inputs = False

    def forward(self, x):
        return np.exp(x)

    def backward(self, g):
        return g * self.output

    def backward_arrays(self, g):
        return g * self.output._data


class Log(Function):
    """y = log(x);  dx = g / x."""

    def forward(self, x):
        return np.log(x)

    def backward(self, g):
        return g / self.inputs[0]

    def backward_arrays(self, g):
        return g / self.inputs[0]._data


def _sigmoid_array(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)): relative error below 2 eps wherever the result is a normal float.

    For very negative x (below about -87.3 in float32) exp(-x) overflows to inf and the
    result is 0 instead of a subnormal number below 1.2e-38 (the overflow warning is
    silenced); log-probabilities go through :class:`LogSigmoid`, which has no such limit.
    ``exp(-logaddexp(0, -x))`` keeps the subnormals but is 5 eps off in float32 and takes
    about ten times as long (scalar libm calls).
    """
    with np.errstate(over="ignore"):
        e = np.exp(np.negative(x))
    if not isinstance(e, np.ndarray) or e.dtype.kind != "f":
        return (1 / (1 + e)).astype(np.result_type(x, np.float16), copy=False)
    e += 1
    return np.reciprocal(e, out=e)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dx = g * y * (1 - y)."""

    reads_inputs = False

    def forward(self, x):
        return _sigmoid_array(x)

    def backward(self, g):
        y = self.output
        return g * (y * (1 - y))

    def backward_arrays(self, g):
        y = self.output._data
        dx = 1 - y  # the one new array; the products are taken in place
        dx *= y
        dx *= g
        return dx


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    reads_inputs = False

    def forward(self, x):
        return np.tanh(x)

    def backward(self, g):
        y = self.output
        return g * (1 - y * y)

    def backward_arrays(self, g):
        y = self.output._data
        dx = np.multiply(y, y, out=np.empty_like(y))  # an array even when y is 0-d
        np.subtract(1, dx, out=dx)
        dx *= g
        return dx


class ReLU(Function):
    """y = max(x, 0);  dx = g * [x > 0] (the derivative at 0 is taken to be 0)."""

    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, g):
        return g * Tensor(self.inputs[0].data > 0).astype(g.dtype)

    def backward_arrays(self, g):
        return np.multiply(g, self.inputs[0]._data > 0, dtype=g.dtype)


def _softplus_array(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, relative error below
    2 eps (``logaddexp(0, x)``, the same function, takes about seven times as long)."""
    if x.ndim == 0 or x.dtype.kind != "f":
        return np.logaddexp(0, x).astype(np.result_type(x, np.float16), copy=False)
    t = np.abs(x)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    t += np.maximum(x, 0)
    return t


class Softplus(Function):
    """y = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|));  dx = g * sigmoid(x)."""

    def forward(self, x):
        return _softplus_array(x)

    def backward(self, g):
        return g * sigmoid(self.inputs[0])

    def backward_arrays(self, g):
        return g * _sigmoid_array(self.inputs[0]._data)


class LogSigmoid(Function):
    """y = log sigmoid(x) = -softplus(-x);  dx = g * sigmoid(-x).

    The stable form never evaluates log of a number that rounded to zero.
    """

    def forward(self, x):
        y = _softplus_array(np.negative(x))
        return np.negative(y, out=y) if isinstance(y, np.ndarray) else -y

    def backward(self, g):
        return g * sigmoid(neg(self.inputs[0]))

    def backward_arrays(self, g):
        return g * _sigmoid_array(np.negative(self.inputs[0]._data))


class Abs(Function):
    """y = |x|;  dx = g * sign(x) (0 at x = 0)."""

    def forward(self, x):
        return np.abs(x)

    def backward(self, g):
        return g * Tensor(np.sign(self.inputs[0].data))


class Clip(Function):
    """y = min(max(x, low), high);  dx = g * [low <= x <= high].

    At the boundaries the gradient passes (as in PyTorch's ``clamp``).
    """

    def forward(self, x, low, high):
        self.low, self.high = low, high
        return np.clip(x, low, high)

    def backward(self, g):
        x = self.inputs[0].data
        mask = np.ones(x.shape, dtype=bool)
        if self.low is not None:
            mask &= x >= self.low
        if self.high is not None:
            mask &= x <= self.high
        return g * Tensor(mask.astype(g.dtype))


class Cast(Function):
    """y = x converted to another floating dtype;  dx = g converted back."""

    reads_inputs = False

    def forward(self, x, dtype):
        return x.astype(dtype)

    def backward(self, g):
        return cast(g, self.inputs[0].dtype)

    def backward_arrays(self, g):
        return g.astype(self.inputs[0].dtype)


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


def relu(x: Tensor) -> Tensor:
    return ReLU.apply(x)


def softplus(x: Tensor) -> Tensor:
    return Softplus.apply(x)


def log_sigmoid(x: Tensor) -> Tensor:
    return LogSigmoid.apply(x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors the builtin
    return Abs.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return PowConst.apply(x, exponent=0.5)


def clip(x: Tensor, low=None, high=None) -> Tensor:
    if low is None and high is None:
        raise ValueError("clip: give at least one of low and high")
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: low ({low}) must not exceed high ({high})")
    return Clip.apply(x, low=low, high=high)


def cast(x: Tensor, dtype) -> Tensor:
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if x.requires_grad and not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"cast: cannot cast a tensor that requires gradients to {dtype}: "
            "gradients only flow through floating dtypes; detach() it first"
        )
    return Cast.apply(x, dtype=dtype)


# ---------------------------------------------------------------------- comparisons
def _compare(op, a, b) -> Tensor:
    a, b = _pair(a, b)
    try:
        return Tensor(op(a.data, b.data))
    except ValueError:
        raise _broadcast_error(op.__name__, a.data, b.data) from None


def lt(a, b) -> Tensor:
    """Elementwise a < b as a boolean tensor (no gradient)."""
    return _compare(np.less, a, b)


def le(a, b) -> Tensor:
    return _compare(np.less_equal, a, b)


def gt(a, b) -> Tensor:
    return _compare(np.greater, a, b)


def ge(a, b) -> Tensor:
    return _compare(np.greater_equal, a, b)


def eq(a, b) -> Tensor:
    return _compare(np.equal, a, b)


def ne(a, b) -> Tensor:
    return _compare(np.not_equal, a, b)


# ---------------------------------------------------------------------- matmul
class MatMul(Function):
    """y = a @ b (2-D or batched);  da = g @ b^T, db = a^T @ g."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} are not aligned: the last dimension "
                "of the first must equal the second-to-last of the second"
            )
        try:
            return np.matmul(a, b)
        except ValueError:
            raise _broadcast_error("matmul (batch dimensions)", a, b) from None

    def backward(self, g):
        a, b = self.inputs
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(matmul(g, swap_last(b)), a.shape)
        if self.needs_input_grad[1]:
            db = unbroadcast(matmul(swap_last(a), g), b.shape)
        return da, db

    def backward_arrays(self, g):
        a, b = self.inputs
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(np.matmul(g, np.swapaxes(b._data, -1, -2)), a.shape)
        if self.needs_input_grad[1]:
            db = unbroadcast(np.matmul(np.swapaxes(a._data, -1, -2), g), b.shape)
        return da, db


def swap_last(x: Tensor) -> Tensor:
    """Swap the last two axes (the matrix transpose of a batch of matrices)."""
    if x.ndim == 2:
        return transpose(x, None)
    axes = list(range(x.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return transpose(x, tuple(axes))


def matmul(a, b) -> Tensor:
    """Matrix product; 1-D operands are treated as a row (left) or column (right) vector."""
    a, b = _pair(a, b)
    if a.ndim == 1 and b.ndim >= 2:
        return reshape(matmul(reshape(a, (1, a.shape[0])), b), b.shape[:-2] + b.shape[-1:])
    if b.ndim == 1 and a.ndim >= 2:
        return reshape(matmul(a, reshape(b, (b.shape[0], 1))), a.shape[:-1])
    if a.ndim == 1 and b.ndim == 1:
        return sum(mul(a, b)) if a.shape == b.shape else MatMul.apply(a, b)
    return MatMul.apply(a, b)


class Linear(Function):
    """y = x @ W + b, fused: rows x (N, I), weights W (I, O), bias b (O,).

    dx = g @ W^T,  dW = x^T @ g,  db = sum_n g_n.

    One Function instead of MatMul then Add: half the graph nodes, and the bias
    gradient is one column sum instead of Sum then Reshape (``unbroadcast`` for the
    Add). Without a bias the inputs are (x, W) and ``y = x @ W``.
    """

    reads_inputs = (True, True, False)  # the backward pass never reads b

    def forward(self, x, w, b=None):
        y = np.matmul(x, w)
        if b is not None:
            y += b
        return y

    def backward(self, g):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        dx = matmul(g, transpose(w)) if need[0] else None
        dw = matmul(transpose(x), g) if need[1] else None
        if len(self.inputs) == 2:
            return dx, dw
        db = sum(g, axis=0) if need[2] else None
        return dx, dw, db

    def backward_arrays(self, g):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        dx = np.matmul(g, w._data.T) if need[0] else None
        dw = np.matmul(x._data.T, g) if need[1] else None
        if len(self.inputs) == 2:
            return dx, dw
        db = g.sum(axis=(0,)) if need[2] else None
        return dx, dw, db


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x @ w + b``: one :class:`Linear` node for a 2-D ``x`` of ``w``'s dtype, else MatMul
    and Add (same values)."""
    x = as_tensor(x)
    fused = (x.ndim == 2 and w.ndim == 2 and x.shape[1] == w.shape[0] and x.dtype == w.dtype
             and (b is None or (b.shape == (w.shape[1],) and b.dtype == w.dtype)))
    if not fused:
        y = matmul(x, w)
        return y if b is None else y + b
    return Linear.apply(x, w) if b is None else Linear.apply(x, w, b)


# ---------------------------------------------------------------------- reductions
def _normalize_axis(axis, ndim: int, op: str = "reduction") -> tuple[int, ...]:
    """Axes as sorted non-negative ints; an axis outside [-ndim, ndim) raises (as NumPy)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in axes:
        if isinstance(ax, bool) or not isinstance(ax, (int, np.integer)):
            raise TypeError(f"{op}: an axis must be an integer, got {ax!r}")
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(
                f"{op}: axis {ax} is out of range for a tensor with {ndim} dimensions "
                f"(valid axes are {-ndim} to {ndim - 1})"
            )
        out.append(int(ax) % ndim)
    return tuple(sorted(set(out)))


def _keepdims_shape(shape, axes) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    """y = sum of x over axes;  dx = g broadcast back to x's shape."""

    reads_inputs = False

    def forward(self, x, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims
        return np.sum(x, axis=axes, keepdims=keepdims)

    def backward(self, g):
        x = self.inputs[0]
        if not self.keepdims:
            g = reshape(g, _keepdims_shape(x.shape, self.axes))
        return broadcast_to(g, x.shape)

    def backward_arrays(self, g):
        x = self.inputs[0]
        if not self.keepdims:
            g = np.reshape(g, _keepdims_shape(x.shape, self.axes))
        return np.broadcast_to(g, x.shape)


class BroadcastTo(Function):
    """y = x stretched to a larger shape;  dx = unbroadcast(g)."""

    reads_inputs = False

    def forward(self, x, shape):
        return np.broadcast_to(x, shape)

    def backward(self, g):
        return unbroadcast(g, self.inputs[0].shape)

    backward_arrays = backward


class Max(Function):
    """y = max of x over axes;  dx = g shared equally among the maximal entries.

    Ties split the gradient evenly, so it is the same whichever tied entry NumPy reports.
    """

    def forward(self, x, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims
        return np.max(x, axis=axes, keepdims=keepdims)

    def backward(self, g):
        x = self.inputs[0]
        kshape = _keepdims_shape(x.shape, self.axes)
        mask = x.data == self.output.data.reshape(kshape)
        share = mask / mask.sum(axis=self.axes, keepdims=True)
        if not self.keepdims:
            g = reshape(g, kshape)
        return broadcast_to(g, x.shape) * Tensor(share.astype(g.dtype))


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Sum.apply(x, axes=_normalize_axis(axis, x.ndim, "sum"), keepdims=keepdims)


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``; over an empty axis it is NaN with a RuntimeWarning, as in NumPy."""
    axes = _normalize_axis(axis, x.ndim, "mean")
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    if count == 0:
        warnings.warn("Mean of empty slice", RuntimeWarning, stacklevel=2)
        return sum(x, axis=axes, keepdims=keepdims) * np.nan
    return sum(x, axis=axes, keepdims=keepdims) * (1.0 / count)


def max(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    if x.size == 0:
        raise ValueError("max of an empty tensor is undefined")
    return Max.apply(x, axes=_normalize_axis(axis, x.ndim, "max"), keepdims=keepdims)


def broadcast_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    shape = tuple(shape)
    if x.shape == shape:
        return x
    try:
        ok = np.broadcast_shapes(x.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    return BroadcastTo.apply(x, shape=shape)


# ---------------------------------------------------------------------- shape
class Reshape(Function):
    """y = x with a new shape;  dx = g reshaped back."""

    reads_inputs = False

    def forward(self, x, shape):
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) "
                f"into shape {shape}"
            ) from None

    def backward(self, g):
        return reshape(g, self.inputs[0].shape)

    def backward_arrays(self, g):
        return np.reshape(g, self.inputs[0].shape)


class Transpose(Function):
    """y = x with its axes permuted;  dx = g permuted back."""

    reads_inputs = False

    def forward(self, x, axes):
        self.axes = axes
        return np.transpose(x, axes)

    def backward(self, g):
        if self.axes is None:
            return transpose(g, None)
        return transpose(g, tuple(np.argsort(self.axes)))

    def backward_arrays(self, g):
        return np.transpose(g, None if self.axes is None else tuple(np.argsort(self.axes)))


class GetItem(Function):
    """y = x[index];  dx = zeros with g added at index (repeated indices add up)."""

    reads_inputs = False

    def forward(self, x, index):
        self.index = index
        return x[index]

    def backward(self, g):
        return IndexAdd.apply(g, index=self.index, shape=self.inputs[0].shape)

    def backward_arrays(self, g):
        return _index_add(g, self.index, self.inputs[0].shape)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items
    )


class IndexAdd(Function):
    """y = zeros(shape) with x added at index (the adjoint of indexing);  dx = g[index]."""

    reads_inputs = False

    def forward(self, x, index, shape):
        self.index = index
        return _index_add(x, index, shape)

    def backward(self, g):
        return getitem(g, self.index)

    def backward_arrays(self, g):
        return g[self.index]


def _index_add(x: np.ndarray, index, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=x.dtype)
    if _is_basic_index(index):
        out[index] = x  # basic indices never repeat an element
    else:
        np.add.at(out, index, x)
    return out


class Concatenate(Function):
    """y = the inputs joined along an axis;  each dx is its slice of g."""

    reads_inputs = False

    def forward(self, *xs, axis):
        self.axis = axis
        try:
            return np.concatenate(xs, axis=axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(
                f"concatenate: shapes {shapes} must match except along axis {axis}"
            ) from None

    def backward(self, g):
        grads, start = [], 0
        for x, needed in zip(self.inputs, self.needs_input_grad):
            stop = start + x.shape[self.axis]
            index = [slice(None)] * g.ndim
            index[self.axis] = slice(start, stop)
            grads.append(getitem(g, tuple(index)) if needed else None)
            start = stop
        return tuple(grads)


class Where(Function):
    """y = a where cond else b (cond a constant boolean array);  da = g [cond], db = g [~cond]."""

    reads_inputs = False

    def forward(self, a, b, cond):
        self.cond = cond
        try:
            return np.where(cond, a, b)
        except ValueError:
            raise ValueError(
                f"where: shapes {cond.shape} (condition), {a.shape} and {b.shape} cannot be "
                "broadcast together"
            ) from None

    def backward(self, g):
        a, b = self.inputs
        mask = Tensor(np.broadcast_to(self.cond, g.shape).astype(g.dtype))
        da = unbroadcast(g * mask, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g * (1 - mask), b.shape) if self.needs_input_grad[1] else None
        return da, db

    def backward_arrays(self, g):
        a, b = self.inputs
        mask = np.broadcast_to(self.cond, g.shape).astype(g.dtype)
        da = unbroadcast(g * mask, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g * (1 - mask), b.shape) if self.needs_input_grad[1] else None
        return da, db


def reshape(x: Tensor, shape) -> Tensor:
    shape = tuple(shape) if not isinstance(shape, (int, np.integer)) else (int(shape),)
    if x.shape == shape:
        return x
    return Reshape.apply(x, shape=shape)


def transpose(x: Tensor, axes=None) -> Tensor:
    if axes is not None:
        axes = tuple(int(a) for a in axes)
        if any(not -x.ndim <= a < x.ndim for a in axes) or sorted(
            a % x.ndim for a in axes
        ) != list(range(x.ndim)):
            raise ValueError(
                f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of a "
                f"tensor of shape {x.shape}"
            )
        axes = tuple(a % x.ndim for a in axes)
    return Transpose.apply(x, axes=axes)


def getitem(x: Tensor, index) -> Tensor:
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)


def concatenate(tensors, axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: need at least one tensor")
    axis = _normalize_axis(axis, tensors[0].ndim, "concatenate")[0]
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: need at least one tensor")
    axis = _normalize_axis(axis, tensors[0].ndim + 1, "stack")[0]
    expanded = [reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return concatenate(expanded, axis=axis)


def where(cond, a, b) -> Tensor:
    cond = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: the condition must be boolean, got dtype {cond.dtype}")
    a, b = _pair(a, b)
    return Where.apply(a, b, cond=cond)


# ---------------------------------------------------------------------- softmax family
class LogSoftmax(Function):
    """y = x - logsumexp(x) along an axis (max trick);  dx = g - softmax(x) * sum(g)."""

    reads_inputs = False

    def forward(self, x, axis):
        self.axis = axis
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))

    def backward(self, g):
        probs = exp(self.output)
        return g - probs * sum(g, axis=self.axis, keepdims=True)

    def backward_arrays(self, g):
        probs = np.exp(self.output._data)
        return g - probs * np.sum(g, axis=(self.axis,), keepdims=True)


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along an axis;  dx = y * (g - sum(g * y))."""

    reads_inputs = False

    def forward(self, x, axis):
        self.axis = axis
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    def backward(self, g):
        y = self.output
        return y * (g - sum(g * y, axis=self.axis, keepdims=True))

    def backward_arrays(self, g):
        y = self.output._data
        return y * (g - np.sum(g * y, axis=(self.axis,), keepdims=True))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=_normalize_axis(axis, x.ndim, "log_softmax")[0])


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=_normalize_axis(axis, x.ndim, "softmax")[0])


class SoftmaxCrossEntropy(Function):
    """Cross-entropy between softmax(logits) and target rows, fused for speed.

    Per example ``n``: ``l_n = -sum_k t_nk log_softmax(z_n)_k``, then reduced ('mean', 'sum'
    or 'none'). With ``w`` the incoming gradient spread over examples:
    d z_n = w_n * (softmax(z_n) * sum_k t_nk - t_n);  d t_n = -w_n * log_softmax(z_n).
    """

    saved_attributes = ("probs", "log_probs")

    def forward(self, logits, targets, reduction):
        self.reduction = reduction
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total_e = e.sum(axis=1, keepdims=True)
        log_probs = shifted - np.log(total_e)
        # For backward_arrays: softmax(logits), computed as Softmax.forward does.
        e /= total_e
        self.probs, self.log_probs = e, log_probs
        per_example = -(targets * log_probs).sum(axis=1)
        if reduction == "none":
            return per_example
        total = per_example.sum()
        if reduction == "mean":
            total = total / logits.shape[0]
        return np.asarray(total, dtype=logits.dtype)

    def backward(self, g):
        logits, targets = self.inputs
        if self.reduction == "none":
            w = reshape(g, (g.shape[0], 1))
        elif self.reduction == "mean":
            w = g * (1.0 / logits.shape[0])
        else:
            w = g
        dlogits = dtargets = None
        if self.needs_input_grad[0]:
            mass = sum(targets, axis=1, keepdims=True)
            dlogits = (softmax(logits, axis=1) * mass - targets) * w
        if self.needs_input_grad[1]:
            dtargets = log_softmax(logits, axis=1) * -w
        return dlogits, dtargets

    def backward_arrays(self, g):
        """The same formulas with the probabilities the forward pass kept (the
        Tensor form recomputes softmax(logits), to be differentiable again)."""
        logits, targets = self.inputs
        if self.reduction == "none":
            w = np.reshape(g, (g.shape[0], 1))
        elif self.reduction == "mean":
            w = g * g.dtype.type(1.0 / logits.shape[0])
        else:
            w = g
        dlogits = dtargets = None
        if self.needs_input_grad[0]:
            t = targets._data
            mass = t.sum(axis=(1,), keepdims=True)
            dlogits = self.probs * mass
            if t.dtype == dlogits.dtype:  # in place (else promote, as in backward)
                dlogits -= t
                dlogits *= w
            else:
                dlogits = (dlogits - t) * w
        if self.needs_input_grad[1]:
            dtargets = self.log_probs * -w
        return dlogits, dtargets


def softmax_cross_entropy(logits: Tensor, targets, reduction: str = "mean") -> Tensor:
    """Cross-entropy between softmax(logits) and target distributions (e.g. one-hot rows).

    Args:
        logits: (N, K) scores, N >= 1.
        targets: (N, K) target distributions (one-hot labels, say), or (N,) integer class
            indices in [0, K), which are turned into one-hot rows (same loss, same gradient).
        reduction: 'mean' over examples (default), 'sum', or 'none' for the (N,) vector.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"softmax_cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    if not isinstance(logits, Tensor):
        logits = as_tensor(logits)
    if logits.ndim == 2 and logits.shape[0] == 0:
        raise ValueError(
            f"softmax_cross_entropy: the batch is empty (logits of shape {logits.shape}); "
            "the loss of zero examples is undefined: skip empty batches"
        )
    labels = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if labels.ndim == 1 and labels.dtype.kind in "iu" and logits.ndim == 2:
        k = logits.shape[1]
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"softmax_cross_entropy: {labels.shape[0]} class indices for "
                f"{logits.shape[0]} rows of logits; give one index per row"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"softmax_cross_entropy: class indices must lie in [0, {k}) for {k} classes, "
                f"got values from {labels.min()} to {labels.max()}"
            )
        onehot = np.zeros(logits.shape, dtype=logits.dtype if _is_float_dtype(logits) else float)
        onehot[np.arange(labels.shape[0]), labels] = 1
        targets = Tensor(onehot)
    logits, targets = _pair(logits, targets)
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"softmax_cross_entropy: logits {logits.shape} and targets {targets.shape} must "
            "both be (batch, classes) and equal, or targets must be (batch,) integer class "
            "indices"
        )
    return SoftmaxCrossEntropy.apply(logits, targets, reduction=reduction)


class BernoulliLogLikelihood(Function):
    """Per row, ``y = sum_k (b_k l_k - softplus(l_k)) = sum_k log Bernoulli(b_k; sigmoid(l_k))``
    for logits ``l``; PyTorch's ``-binary_cross_entropy_with_logits(l, b, reduction='none')``
    summed over the last axis, fused. With ``w = g[..., None]`` (the row's gradient)::

        d b = w l;   d l = w b - w sigmoid(l)

    ``b`` may be relaxed (any value in [0, 1]) and require gradients; both are summed back
    to their own shapes (a vector of prior logits broadcasts over the batch). The two terms
    of ``d l`` are summed back apart, as the graph of ``b * l - softplus(l)`` does, so the
    gradients are that graph's to the last bit.
    """

    def forward(self, b, logits):
        return (_binary("bernoulli_log_likelihood", np.multiply, b, logits)
                - _softplus_array(logits)).sum(axis=-1)

    def backward(self, g):
        b, logits = self.inputs
        w = reshape(g, g.shape + (1,))
        db = unbroadcast(w * logits, b.shape) if self.needs_input_grad[0] else None
        dl = None
        if self.needs_input_grad[1]:
            every = broadcast_to(w, np.broadcast_shapes(b.shape, logits.shape))
            dl = (unbroadcast(w * b, logits.shape)
                  - unbroadcast(every, logits.shape) * sigmoid(logits))
        return db, dl

    def backward_arrays(self, g):
        b, logits = self.inputs
        w = g[..., None]
        db = unbroadcast(w * logits._data, b.shape) if self.needs_input_grad[0] else None
        dl = None
        if self.needs_input_grad[1]:
            wb = w * b._data
            every = np.broadcast_to(w, wb.shape)
            if wb.shape != logits.shape:
                every = np.array(every)  # summed back as the unfused graph sums it
            dl = unbroadcast(wb, logits.shape)
            dl -= unbroadcast(every, logits.shape) * _sigmoid_array(logits._data)
        return db, dl


def bernoulli_log_likelihood(b, logits) -> Tensor:
    """``sum over the last axis of b * logits - softplus(logits)``: one value per row.

    ``log Bernoulli(b; sigmoid(logits))`` of units along the last axis, in the stable form;
    one Function (:class:`BernoulliLogLikelihood`), differentiable twice in both inputs.
    """
    b, logits = _pair(b, logits)
    if b.ndim == 0 and logits.ndim == 0:
        raise ValueError("bernoulli_log_likelihood: b and logits are scalars; give units "
                         "along a last axis (shape (..., units))")
    return BernoulliLogLikelihood.apply(b, logits)


class RelaxedSigmoid(Function):
    """The relaxed Bernoulli sample ``y = sigmoid(z / t)`` at temperature ``t > 0``::

        d z = g s / t;   d t = -sum(g s z) / t^2,   s = y (1 - y)

    (``d t`` summed back to the temperature's shape: one temperature for all units, or one
    per unit). One Function where ``sigmoid(z / t)`` would record two, with the derivative
    in ``t`` that dynamic REBAR and RELAX tune the temperature with.
    """

    def forward(self, z, temperature):
        return _sigmoid_array(_binary("relaxed_sigmoid", np.divide, z, temperature))

    def backward(self, g):
        z, t = self.inputs
        y = self.output
        gs = g * (y * (1 - y)) / t
        dz = unbroadcast(gs, z.shape) if self.needs_input_grad[0] else None
        dt = unbroadcast(-(gs * z) / t, t.shape) if self.needs_input_grad[1] else None
        return dz, dt

    def backward_arrays(self, g):
        z, t = self.inputs
        y = self.output._data
        gs = 1 - y
        gs *= y
        gs = gs * g / t._data
        dz = unbroadcast(gs, z.shape) if self.needs_input_grad[0] else None
        dt = None
        if self.needs_input_grad[1]:
            dt = unbroadcast(-(gs * z._data) / t._data, t.shape)
        return dz, dt


def relaxed_sigmoid(z, temperature) -> Tensor:
    """``sigmoid(z / temperature)``: the binary Concrete relaxation of the logistic sample
    ``z``; differentiable twice in ``z`` and in the temperature (a Tensor or a number > 0)."""
    z, t = _pair(z, temperature)
    if t.size and not np.all(t.data > 0):
        raise ValueError(f"relaxed_sigmoid: the temperature must be > 0, got "
                         f"{t.data.min() if t.size > 1 else t.data}; pass exp(log_temperature) "
                         "to keep it positive")
    return RelaxedSigmoid.apply(z, t)


class ConditionalLogistic(Function):
    """REBAR's conditional sample ``z~ ~ p(z | b)`` from uniforms ``v``::

        z~ = a + log v' - log(1 - v'),   theta = sigmoid(a)
        b = 1:  v' = 1 - theta + theta v,  1 - v' = theta (1 - v)
        b = 0:  v' = (1 - theta) v,        1 - v' = theta + (1 - theta)(1 - v)
        d z~ / d a = 1 - theta (1 - theta) w (1 / v' + 1 / (1 - v'))
        w = 1 - v (b = 1),  v (b = 0)

    ``v'`` and ``1 - v'`` are formed without a subtraction that loses digits, and
    each is clipped at the smallest normal number before its log (a term of the
    derivative drops where it is clipped, as through ``clip``). The value is that
    of the same formulas written with ``sigmoid``, ``*``, ``+``, ``clip`` and
    ``log``, bit for bit: one node where they record 25. ``b`` and ``v`` are
    constants, arrays in the dtype of ``a``.
    """

    saved_attributes = ("b", "v", "v_prime", "rest", "spread")

    def forward(self, a, b, v):
        theta, one_minus = _sigmoid_array(a), _sigmoid_array(np.negative(a))
        one = a.dtype.type(1)
        v_rest, b_rest = one - v, one - b
        v_prime = b * (one_minus + theta * v) + b_rest * (one_minus * v)
        rest = b * (theta * v_rest) + b_rest * (theta + one_minus * v_rest)
        self.b, self.v, self.v_prime, self.rest = b, v, v_prime, rest
        self.spread = theta * one_minus                       # theta (1 - theta)
        tiny = np.finfo(a.dtype).tiny
        log_v = np.log(np.clip(v_prime, tiny, None))
        return a + log_v - np.log(np.clip(rest, tiny, None))

    def _weights(self):
        """``w`` and the masks of the two logs' unclipped entries, as arrays."""
        b, v = self.b, self.v
        one = v.dtype.type(1)
        tiny = np.finfo(v.dtype).tiny
        return b * (one - v) + (one - b) * v, self.v_prime >= tiny, self.rest >= tiny

    def backward_arrays(self, g):
        w, keep_v, keep_rest = self._weights()
        tiny = np.finfo(g.dtype).tiny
        inverse = (keep_v / np.clip(self.v_prime, tiny, None)
                   + keep_rest / np.clip(self.rest, tiny, None))
        return g * (1 - self.spread * w * inverse)

    def backward(self, g):
        # the same derivative in Tensor operations of a: exact to second order as well
        a = self.inputs[0]
        w, keep_v, keep_rest = (Tensor(m.astype(a.dtype)) for m in self._weights())
        b, v = Tensor(self.b), Tensor(self.v)
        theta, one_minus = sigmoid(a), sigmoid(neg(a))
        v_prime = b * (one_minus + theta * v) + (1.0 - b) * (one_minus * v)
        rest = b * (theta * (1.0 - v)) + (1.0 - b) * (theta + one_minus * (1.0 - v))
        tiny = float(np.finfo(a.dtype).tiny)
        inverse = keep_v / clip(v_prime, tiny) + keep_rest / clip(rest, tiny)
        return g * (1.0 - theta * one_minus * w * inverse)


def conditional_logistic(a: Tensor, b: np.ndarray, v: np.ndarray) -> Tensor:
    """``z~ ~ p(z | b)`` for Bernoulli(sigmoid(a)) units from uniforms ``v``
    (:class:`ConditionalLogistic`); ``b`` and ``v`` are taken in the dtype of ``a``."""
    a = as_tensor(a)
    b = np.ascontiguousarray(b, dtype=a.dtype)
    v = np.ascontiguousarray(v, dtype=a.dtype)
    if b.shape != a.shape or v.shape != a.shape:
        raise ValueError(f"conditional_logistic: b {b.shape} and v {v.shape} must have the "
                         f"shape of the logits {a.shape}")
    return ConditionalLogistic.apply(a, b=b, v=v)


def _is_float_dtype(t: Tensor) -> bool:
    return np.issubdtype(t.dtype, np.floating)


# ---------------------------------------------------------------------- kernels (first order)
class Conv2d(Function):
    """y = conv2d(x, w) + b (cross-correlation, NCHW), by im2col and one matrix product.

    The backward pass is a Numba kernel (col2im), not Tensor operations, so it cannot be
    differentiated again: double backward raises a clear error.
    """

    differentiable_backward = False
    saved_attributes = ("cols",)

    def forward(self, x, w, b, stride, padding):
        self.stride, self.padding = stride, padding
        out, self.cols = kernels.conv2d_forward(x, w, b, stride, padding)
        return out

    def backward(self, g):
        dx, dw, db = self.backward_arrays(g.data)
        return (Tensor(dx) if dx is not None else None), Tensor(dw), Tensor(db)

    def backward_arrays(self, g):
        x, w, _ = self.inputs
        return kernels.conv2d_backward(
            g, x.shape, self.cols, w.data, self.stride, self.padding,
            need_dx=self.needs_input_grad[0],
        )


class MaxPool2d(Function):
    """y = max over non-overlapping size x size windows;  dx = g routed to each window's max.

    Ties: the first maximum in row-major order inside a window gets the gradient. The
    backward pass is a Numba kernel, so double backward raises a clear error.
    """

    differentiable_backward = False
    saved_attributes = ("argmax",)

    def forward(self, x, size):
        self.size = size
        out, self.argmax = kernels.maxpool2d_forward(x, size)
        return out

    def backward(self, g):
        return Tensor(self.backward_arrays(g.data))

    def backward_arrays(self, g):
        return kernels.maxpool2d_backward(g, self.argmax, self.inputs[0].shape, self.size)


def conv2d(x: Tensor, w: Tensor, b: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    """2-D convolution (cross-correlation) of NCHW ``x`` with (F, C, KH, KW) filters ``w``."""
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


def max_pool2d(x: Tensor, size: int = 2) -> Tensor:
    """Max-pooling over non-overlapping ``size`` x ``size`` windows of an NCHW tensor."""
    return MaxPool2d.apply(x, size=size)


from minigrad import kernels  # noqa: E402  (kept beside its only users)

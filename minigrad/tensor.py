"""The Tensor, the Function, and the backward pass.

A :class:`Tensor` wraps a NumPy array. Every differentiable operation is a :class:`Function`
subclass (see :mod:`minigrad.functions`) with ``forward`` (arrays in, array out) and
``backward`` (the output gradient in, one gradient per input out) side by side. ``backward``
is written with Tensor operations, so when a graph is being recorded during the backward pass
(``create_graph=True``) the gradient is itself differentiable: this is what gives
higher-order gradients, which REBAR and RELAX need.

The backward pass visits the graph in reverse topological order (computed iteratively, so
deep graphs do not hit Python's recursion limit) and accumulates gradients with ``+``.
``backward()`` computes the gradient of every leaf that requires one; ``grad(outputs,
inputs)`` computes only what leads to ``inputs``, as PyTorch does: before the walk it marks
the tensors from which some requested input can be reached, and each Function is asked (by
its ``needs_input_grad``) only for the gradients of its marked inputs. ``grad(c.sum(), a)``
through ``c = linear(a, W, b)`` therefore never forms ``W``'s gradient.

What a real engine does: when no graph of the backward pass is recorded (the usual
``loss.backward()``), building a Tensor for every intermediate gradient only costs time. A
Function may then define ``backward_arrays``, the same maths on plain arrays (its result
must equal ``backward``'s, and the tests check that it does); the pass runs on arrays and
wraps only the gradients it hands out. With ``create_graph=True``, or for a Function without
``backward_arrays``, ``backward`` runs on Tensors as described above.

Saved values are protected (PyTorch does this with a version counter on each tensor). The
array of every leaf tensor (a parameter, an input) whose values the backward pass of a
recorded Function reads is made read-only while the graph is alive, so a NumPy write into it
(``w.data[...] = 0``) fails at once instead of corrupting the gradients. minigrad's own
updates of such a tensor while its graph is alive (an optimizer step, a Module's
``load_state_dict``, assigning ``t.data``) put the new values into a new array, and
``backward`` refuses to run through a Function whose leaf inputs no longer hold the array it
saw, naming the tensor. Values made inside the graph are not guarded (that would cost time on
every operation). A backward pass frees what it walked through and unlocks the arrays; a
second backward through the same graph is an error unless the first one was given
``retain_graph=True``. A graph dropped without a backward pass unlocks its arrays when it is
garbage-collected.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import weakref
from typing import Sequence

import numpy as np

_grad_enabled = True


# ---------------------------------------------------------------------- memory
# glibc returns a freed block of more than a few MiB straight to the kernel (mmap/munmap), and
# the next array of that size comes back as fresh pages that the kernel zero-fills one page
# fault at a time: a LeNet-5 step at batch 128 took ~3,900 page faults and ~40% of its time
# doing that. These thresholds keep freed memory in the process for reuse. The values are
# the largest glibc accepts for mmap (32 MiB) and a trim threshold that keeps 256 MiB.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 256 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to reuse freed memory instead of handing it back to the kernel.

    A process-wide setting, so importing minigrad does not make it: it is opt-in. The
    experiments layer turns it on for the runs it starts (``map_runs``, whose forked workers
    inherit it, and ``runs.execute``), and so does the benchmark; call it yourself before a
    long training loop of your own. ``MINIGRAD_MALLOPT=0`` keeps it off everywhere. Returns
    whether it was applied (False where the C library is not glibc, on macOS and Windows
    say, where this does nothing).
    """
    if os.environ.get("MINIGRAD_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok



def is_grad_enabled() -> bool:
    """True when operations on tensors that require gradients record a graph."""
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._previous: list[bool] = []  # a stack: the same instance may be re-entered

    def __enter__(self):
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous.pop()
        return False


def no_grad() -> _GradMode:
    """Context manager (or decorator): operations inside record no graph."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager (or decorator): operations inside record a graph."""
    return _GradMode(True)


def _is_float(dtype) -> bool:
    """Whether ``dtype`` is a floating-point dtype (``np.issubdtype(dtype, np.floating)``,
    which costs a microsecond: this runs on every operation with a Python number)."""
    return np.dtype(dtype).kind == "f"


_ALLOWED_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float"}


def _check_dtype(data: np.ndarray) -> None:
    if data.dtype.kind not in _ALLOWED_KINDS:
        raise TypeError(
            f"Tensor: cannot hold an array of dtype {data.dtype} (from a "
            f"{type(data).__name__ if data.dtype != object else 'Python object such as None'}); "
            "allowed dtypes are bool, signed and unsigned integers and floats: pass numbers "
            "or a numeric NumPy array"
        )


# ---------------------------------------------------------------------- saved-array locks
# id(array) -> number of live graph nodes that locked it. The locks hold the arrays, so an
# id is not reused while it is a key here.
_lock_counts: dict[int, int] = {}


class _Lock:
    """What one graph node saved of its leaf inputs, protected until the node is freed.

    Each leaf's array is made read-only (if it was writable), and the array object is kept
    so that backward can tell whether the leaf's ``.data`` was replaced since. Released by
    the backward pass that frees the node, or when a graph dropped without a backward pass
    is garbage-collected. (This runs on every recorded operation with a leaf input, so it is
    written for speed: a few list and dict operations per leaf.)
    """

    __slots__ = ("leaves", "saved", "arrays")

    def __init__(self, leaves: list[Tensor]):
        self.leaves = leaves
        self.saved = saved = [t._data for t in leaves]
        arrays = []
        counts = _lock_counts
        for a in saved:
            key = id(a)
            count = counts.get(key)
            if count is not None:
                counts[key] = count + 1
            elif a.flags.writeable:
                a.setflags(write=False)
                counts[key] = 1
            else:
                continue  # read-only for its own reasons (a broadcast view, say)
            arrays.append(a)
        self.arrays = arrays

    def changed(self) -> Tensor | None:
        """A leaf whose ``.data`` is no longer the array the forward pass used, if any."""
        for t, a in zip(self.leaves, self.saved):
            if t._data is not a:
                return t
        return None

    def release(self) -> None:
        arrays, self.arrays = self.arrays, ()
        counts = _lock_counts
        for a in arrays:
            key = id(a)
            count = counts.pop(key, 1) - 1
            if count > 0:
                counts[key] = count
                continue
            try:
                a.setflags(write=True)
            except ValueError:
                pass  # a view whose base is still locked stays read-only

    def __del__(self):
        if self.arrays:
            self.release()


def _describe(t: Tensor) -> str:
    name = getattr(t, "_name", None)
    what = f"parameter {name!r}" if name else "a tensor"
    return f"{what} of shape {t.shape} and dtype {t.dtype}"


def _check_can_require_grad(dtype, what: str = "tensor") -> None:
    if not _is_float(dtype):
        raise TypeError(
            f"cannot compute gradients for an integer or boolean {what} (dtype {dtype}): "
            "only floating-point tensors have gradients; convert it first, "
            "e.g. Tensor(x.data.astype(np.float64), requires_grad=True)"
        )


class Tensor:
    """An n-dimensional array that remembers the :class:`Function` that made it.

    Attributes:
        data: the NumPy array (bool, integer or float). Assigning to ``data`` counts as an
            in-place change (see the module docstring); while a graph that saved a leaf's
            array is alive, the array itself is read-only.
        grad: the accumulated gradient (a Tensor) after ``backward()``, for leaves: an array
            of its own, writable and C-contiguous (unless ``create_graph=True`` made it part
            of a graph).
        requires_grad: whether gradients flow to (and through) this tensor.

    NumPy interop: ``np.asarray(t)`` (and anything that calls it, such as matplotlib) gives
    the data, without a gradient. NumPy's ufuncs and functions (``np.exp(t)``,
    ``np.concatenate([t, u])``) raise a TypeError naming the minigrad function to use, except
    the arithmetic operators: ``array * t`` is ``t.__rmul__(array)``, a Tensor. ``float(t)``
    and ``int(t)`` work for a single element; ``t.tolist()`` and ``t.argmax()`` return
    plain, non-differentiable values.
    """

    __slots__ = ("_data", "grad", "requires_grad", "_ctx", "_name", "__weakref__")
    # Kept for NumPy's binary operators as a fallback; ``__array_ufunc__`` below decides.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if dtype is not None or not isinstance(data, np.ndarray):
            data = np.asarray(data, dtype=dtype)
        if data.dtype.kind not in "biuf":
            _check_dtype(data)  # raises
        if requires_grad:
            _check_can_require_grad(data.dtype)
        self._data: np.ndarray = data
        self.grad: Tensor | None = None
        self.requires_grad = requires_grad
        self._ctx: Function | None = None
        # ``_name`` (a parameter's dotted name, for error messages) is set by Module only.

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        value = value.data if isinstance(value, Tensor) else np.asarray(value)
        _check_dtype(value)
        self._data = value

    def _sub_(self, delta: np.ndarray) -> None:
        """``data -= delta`` for optimizers.

        In place, unless a live graph saved the array (it is read-only): then the new values
        go into a new array, so that graph keeps what it saw, and its backward pass refuses
        to run because the tensor's data is no longer the array it saved.
        """
        if self._data.flags.writeable:
            self._data -= delta
        else:
            self._data = self._data - delta

    # ----------------------------------------------------------------- NumPy interop
    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = _UFUNC_OPERATORS.get(ufunc.__name__)
        if method == "__call__" and op is not None and not kwargs and len(inputs) == 2:
            # ``array (op) tensor``: NumPy's operator calls the ufunc; answer like Tensor's.
            return getattr(F, op)(*inputs)
        name = ufunc.__name__
        hint = _UFUNC_HINTS.get(name, f"minigrad.functions.{name}" if hasattr(F, name) else None)
        use = f"use {hint} instead" if hint else "minigrad has no such operation"
        raise TypeError(
            f"np.{name} was called on a minigrad Tensor: NumPy functions do not record "
            f"gradients; {use}, or apply NumPy to t.data if no gradient is needed"
        )

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        if name in _NUMPY_INSPECTORS:  # questions about the array, not computations on it
            args = tuple(a._data if isinstance(a, Tensor) else a for a in args)
            return func(*args, **kwargs)
        hint = f"minigrad.functions.{name}" if hasattr(F, name) else None
        use = f"use {hint} instead" if hint else "minigrad has no such operation"
        raise TypeError(
            f"np.{name} was called on a minigrad Tensor: NumPy functions do not record "
            f"gradients; {use}, or apply NumPy to t.data if no gradient is needed"
        )

    def __float__(self) -> float:
        return float(self._single_element("float"))

    def __int__(self) -> int:
        return int(self._single_element("int"))

    def _single_element(self, what: str):
        if self._data.size != 1:
            raise TypeError(
                f"{what}() of a tensor needs exactly one element, but this one has shape "
                f"{self.shape}; index it or reduce it (t.sum(), t[0]) first"
            )
        return self._data.reshape(()).item()

    def tolist(self):
        """The values as (nested) Python lists of numbers; not differentiable."""
        return self._data.tolist()

    def argmax(self, axis=None) -> Tensor:
        """Indices of the maxima (over the flattened tensor when ``axis`` is None).

        Returns an integer Tensor that does not require gradients: argmax is piecewise
        constant, so it has no useful derivative (that is what this book is about).
        """
        if axis is not None:
            axis = F._normalize_axis(axis, self.ndim, "argmax")[0]
        return Tensor(np.argmax(self._data, axis=axis))

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        made_by = f", made_by={type(self._ctx).__name__}" if self._ctx is not None else ""
        return f"Tensor({self.data!r}{flag}{made_by})"

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> float:
        return self._single_element("item")

    def detach(self) -> Tensor:
        """The same values, cut from the graph: no gradient flows through the result."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag:
            _check_can_require_grad(self.data.dtype)
        self.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # ----------------------------------------------------------------- autograd entry
    def backward(self, gradient: Tensor | np.ndarray | None = None,
                 retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        A scalar output needs no ``gradient``; any other output needs one of its shape
        (the vector in the vector-Jacobian product). The pass frees the graph it walked
        through; pass ``retain_graph=True`` to run another backward pass through it
        (``retain_graph`` defaults to ``create_graph``, which records the backward pass so
        that ``.grad`` can itself be differentiated).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require gradients: none of the "
                "tensors it was computed from has requires_grad=True (or it was computed "
                "inside no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs a "
                    "gradient argument of that same shape; only a single-element output "
                    "can start the backward pass without one"
                )
            gradient = Tensor(np.ones_like(self.data))
        gradient = _as_grad_seed(gradient, self)
        if retain_graph is None:
            retain_graph = create_graph
        _run_backward([self], [gradient], inputs=None, create_graph=create_graph,
                      retain_graph=retain_graph)

    # ----------------------------------------------------------------- operators
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __pow__(self, other):
        return F.pow(self, other)

    def __rpow__(self, other):
        return F.pow(other, self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __neg__(self):
        return F.neg(self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    # Comparisons are elementwise and not differentiable (their outputs are booleans).
    def __lt__(self, other):
        return F.lt(self, other)

    def __le__(self, other):
        return F.le(self, other)

    def __gt__(self, other):
        return F.gt(self, other)

    def __ge__(self, other):
        return F.ge(self, other)

    def __eq__(self, other):  # type: ignore[override]
        return F.eq(self, other)

    def __ne__(self, other):  # type: ignore[override]
        return F.ne(self, other)

    __hash__ = object.__hash__

    # ----------------------------------------------------------------- methods
    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        return F.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        return F.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    def transpose(self, *axes) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return F.transpose(self, axes or None)

    @property
    def T(self) -> Tensor:
        return F.transpose(self, None)

    def astype(self, dtype) -> Tensor:
        return F.cast(self, dtype)

    def exp(self) -> Tensor:
        return F.exp(self)

    def log(self) -> Tensor:
        return F.log(self)

    def sigmoid(self) -> Tensor:
        return F.sigmoid(self)

    def tanh(self) -> Tensor:
        return F.tanh(self)

    def relu(self) -> Tensor:
        return F.relu(self)

    def softplus(self) -> Tensor:
        return F.softplus(self)

    def log_sigmoid(self) -> Tensor:
        return F.log_sigmoid(self)

    def abs(self) -> Tensor:
        return F.abs(self)

    def sqrt(self) -> Tensor:
        return F.pow(self, 0.5)

    def clip(self, low=None, high=None) -> Tensor:
        return F.clip(self, low, high)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return F.log_softmax(self, axis=axis)

    def softmax(self, axis: int = -1) -> Tensor:
        return F.softmax(self, axis=axis)


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Wrap ``value`` as a constant Tensor (a Tensor is returned unchanged).

    Python numbers take the floating dtype of ``like`` so that ``x * 2.0`` stays float32 when
    ``x`` is float32 (NumPy would otherwise promote a float64 0-d array).
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if _is_float(like.data.dtype):
            return Tensor(np.asarray(value, dtype=like.data.dtype))
    return Tensor(np.asarray(value))


_new_object = object.__new__


def _wrap(data) -> Tensor:
    """A constant Tensor around a forward result (numeric by construction; no checks)."""
    if type(data) is not np.ndarray:
        data = np.asarray(data)
    t = _new_object(Tensor)
    t._data = data
    t.grad = None
    t.requires_grad = False
    t._ctx = None
    return t


class Function:
    """One differentiable primitive: ``forward`` on arrays, ``backward`` on Tensors.

    Subclasses implement::

        def forward(self, *arrays, **params) -> np.ndarray
        def backward(self, grad: Tensor) -> Tensor | None | tuple[Tensor | None, ...]

    Inside ``backward`` the inputs are ``self.inputs`` (Tensors), the output is
    ``self.output`` and ``self.needs_input_grad[i]`` says whether input ``i`` wants a
    gradient: whether it requires one, and, during :func:`grad`, whether a requested input
    can be reached from it. ``backward`` returns one gradient (or None) per input; it should
    compute nothing for an input that wants none (the pass would drop it).

    Optionally, ``def backward_arrays(self, g: np.ndarray)``: the same maths on arrays, for
    backward passes that record no graph (see the module docstring). It must give the same
    numbers as ``backward`` and may not change ``g`` in place (another input may share it).
    """

    inputs: tuple[Tensor, ...]
    needs_input_grad: tuple[bool, ...]
    # Functions whose backward is not made of Tensor operations set this to False; they
    # then refuse to run while a graph of the backward pass is being recorded.
    differentiable_backward = True
    # Names of extra arrays ``forward`` keeps for ``backward`` (dropped when the graph is freed).
    saved_attributes: tuple[str, ...] = ()
    # False for Functions whose backward never reads the values of their inputs (only their
    # shapes, or the output): their inputs need no protection against in-place changes. A
    # tuple of bools says it per input (inputs past its end are not read).
    reads_inputs: bool | tuple[bool, ...] = True
    # The array form of ``backward`` (a method taking and returning arrays), or None.
    backward_arrays = None
    _freed = False
    _locked: _Lock | None = None

    @classmethod
    def apply(cls, *inputs: Tensor, **params) -> Tensor:
        ctx = cls()
        out = _wrap(ctx.forward(*[t._data for t in inputs], **params))
        if _grad_enabled:
            needs = tuple([t.requires_grad for t in inputs])
            if True in needs:
                ctx.inputs = inputs
                ctx.needs_input_grad = needs
                ctx._output_ref = weakref.ref(out)
                # Leaves are what users hold and write into (parameters, inputs).
                reads = cls.reads_inputs
                if reads:
                    if reads is not True:  # a tuple: which inputs backward reads
                        reads = [t for t, r in zip(inputs, reads) if r]
                    leaves = [t for t in (inputs if reads is True else reads)
                              if t._ctx is None]
                    if leaves:
                        ctx._locked = _Lock(leaves)
                out.requires_grad = True
                out._ctx = ctx
        return out

    def _free(self) -> None:
        """Drop what backward needed and unlock the saved arrays (after a backward pass)."""
        self._freed = True
        if self.saved_attributes:
            for name in self.saved_attributes:
                setattr(self, name, None)
        if self._locked is not None:
            self._locked.release()
            self._locked = None

    def _check_saved(self) -> None:
        """Refuse to run backward on a freed graph or with leaf data replaced since forward."""
        name = type(self).__name__
        if self._freed:
            raise RuntimeError(
                f"backward through the graph a second time: {name} already ran its backward "
                "pass and freed what it saved for it. Pass retain_graph=True to the first "
                "backward()/grad() call if you mean to differentiate the same graph twice, "
                "or run the forward pass again"
            )
        t = self._locked.changed() if self._locked is not None else None
        if t is not None:
            raise RuntimeError(
                f"backward: {_describe(t)}, an input of {name}, was modified in place after "
                "the forward pass used it (by an optimizer step, load_state_dict or an "
                "assignment to .data). The gradient would mix old and new values. Call "
                "backward() before changing it (optimizer.step() after loss.backward()), or "
                "run the forward pass again after the change"
            )

    @property
    def output(self) -> Tensor:
        """The tensor this function produced (alive whenever its backward runs)."""
        return self._output_ref()

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad: Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_double_backward(self) -> None:
        if _grad_enabled and not self.differentiable_backward:
            raise RuntimeError(
                f"{type(self).__name__}: double backward is not supported: its backward is "
                "a Numba kernel working on arrays, not Tensor operations, so "
                "grad(..., create_graph=True) cannot differentiate through it"
            )


def _as_grad_seed(gradient, output: Tensor) -> Tensor:
    gradient = gradient if isinstance(gradient, Tensor) else Tensor(np.asarray(gradient))
    if gradient.shape != output.shape:
        raise ValueError(
            f"gradient has shape {gradient.shape} but the output it seeds has shape "
            f"{output.shape}; they must match"
        )
    if gradient.dtype != output.dtype and _is_float(output.dtype):
        gradient = Tensor(gradient.data.astype(output.dtype), gradient.requires_grad)
    return gradient


def _root(a: np.ndarray) -> int:
    return id(a if a.base is None else a.base)


def _own(g: Tensor, handed: set[int]) -> Tensor:
    """``g`` as a gradient to hand to the user: an array of its own, writable and contiguous.

    Copies only when needed: a read-only or strided view (from broadcast_to, say), a seed
    the caller passed in, or an array already handed to another tensor in this pass.
    """
    if g.requires_grad:
        return g  # part of a recorded graph (create_graph=True): keep it connected
    a = g._data
    flags = a.flags
    if not (flags.writeable and flags.c_contiguous) or _root(a) in handed:
        a = np.array(a, order="C")
        g = Tensor(a)
    handed.add(_root(a))
    return g


def _own_array(a: np.ndarray, handed: set[int]) -> np.ndarray:
    """:func:`_own` for the array pass: ``a``, or a copy when it is not ``a``'s to give."""
    flags = a.flags
    if not (flags.writeable and flags.c_contiguous) or _root(a) in handed:
        a = np.array(a, order="C")
    handed.add(_root(a))
    return a


def _toposort(roots: Sequence[Tensor]) -> list[Tensor]:
    """Tensors reachable from ``roots`` through grad-requiring edges, inputs before outputs.

    Iterative depth-first post-order: a tensor is appended after everything it depends on.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in reversed(roots)]
    push, pop = stack.append, stack.pop
    while stack:
        node, expanded = pop()
        if expanded:
            order.append(node)
            continue
        key = id(node)
        if key in visited:
            continue
        visited.add(key)
        ctx = node._ctx
        if ctx is None:  # a leaf depends on nothing: it is done at once
            order.append(node)
            continue
        push((node, True))
        for parent in ctx.inputs:
            if parent.requires_grad and id(parent) not in visited:
                push((parent, False))
    return order


def _run_backward(outputs, grad_outputs, inputs, create_graph: bool, retain_graph: bool):
    """The backward pass shared by ``Tensor.backward`` and :func:`grad`.

    With ``inputs=None``, gradients accumulate into ``.grad`` of every leaf; otherwise the
    gradients of ``inputs`` are returned (and no ``.grad`` is touched), and only the part of
    the graph between the outputs and those inputs is walked: a Function runs only if one
    of its inputs leads to a requested input, and is asked only for the gradients of those
    inputs. Unless ``retain_graph``, every Function walked through is freed. Without
    ``create_graph`` the pass runs on arrays (:func:`_backward_step_arrays`), otherwise on
    Tensors (each Function's ``backward``).
    """
    wanted = None if inputs is None else {id(t) for t in inputs}
    results: dict[int, Tensor] = {}
    pending: dict = {}  # id(tensor) -> its gradient so far (an array on the array pass)
    handed = {_root(g._data) for g in grad_outputs}  # seeds belong to the caller
    on_arrays = not create_graph
    for out, g in zip(outputs, grad_outputs):
        if on_arrays:
            g = g._data
        pending[id(out)] = pending[id(out)] + g if id(out) in pending else g
    order = _toposort(outputs)
    leads = None  # with inputs given: the tensors from which some input can be reached
    if wanted is not None:
        leads = set(wanted)
        for node in order:
            ctx = node._ctx
            if ctx is not None:
                for p in ctx.inputs:
                    if id(p) in leads:
                        leads.add(id(node))
                        break
    with _GradMode(create_graph):
        for node in reversed(order):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            if wanted is not None and id(node) in wanted:
                results[id(node)] = (_wrap(_own_array(g, handed)) if on_arrays
                                     else _own(g, handed))
            ctx = node._ctx
            if ctx is None:
                if wanted is None:
                    if on_arrays:
                        node.grad = _wrap(_own_array(g, handed) if node.grad is None
                                          else node.grad._data + g)
                    else:
                        node.grad = _own(g, handed) if node.grad is None else node.grad + g
                continue
            needs = recorded = ctx.needs_input_grad
            if leads is not None:
                # grad(): only the inputs from which a requested tensor can be reached
                needs = tuple([n and id(p) in leads for p, n in zip(ctx.inputs, needs)])
                if True not in needs:
                    continue
            lock = ctx._locked
            if ctx._freed or (lock is not None and lock.changed() is not None):
                ctx._check_saved()  # raises, saying what happened
            if not on_arrays:
                ctx._check_double_backward()
            if needs == recorded:
                grads = _backward_step_arrays(ctx, g) if on_arrays else ctx.backward(g)
            else:
                grads = _pruned_backward_step(ctx, g, needs, on_arrays)
            if not retain_graph:  # free the node (Function._free, inlined: this loop is hot)
                ctx._freed = True
                if lock is not None:
                    ctx._locked = None
                    lock.release()
                if ctx.saved_attributes:
                    ctx._free()
            if not isinstance(grads, tuple):
                grads = (grads,)
            for parent, pg, needed in zip(ctx.inputs, grads, needs):
                if pg is None or not needed:
                    continue
                pa, data = (pg if on_arrays else pg._data), parent._data
                if pa.shape != data.shape:  # an engine bug, never a user error
                    raise AssertionError(
                        f"{type(ctx).__name__}.backward returned a gradient of shape "
                        f"{pa.shape} for an input of shape {data.shape}"
                    )
                if pa.dtype != data.dtype:
                    # A float32 value next to a float64 constant still gets float32 grads.
                    pg = pg.astype(data.dtype) if on_arrays else F.cast(pg, data.dtype)
                key = id(parent)
                pending[key] = pending[key] + pg if key in pending else pg
    return results


_ARRAY_FORM: dict[type, bool] = {}  # Function class -> whether to use its backward_arrays


def _has_array_form(cls: type) -> bool:
    """Whether ``cls.backward_arrays`` is the array form of the ``backward`` that would run:
    not when a subclass overrides ``backward`` alone (its own maths wins)."""
    ok = _ARRAY_FORM.get(cls)
    if ok is None:
        def owner(name):
            return next(c for c in cls.__mro__ if name in c.__dict__)

        ok = cls.backward_arrays is not None and issubclass(owner("backward_arrays"),
                                                             owner("backward"))
        _ARRAY_FORM[cls] = ok
    return ok


def _backward_step_arrays(ctx: Function, g: np.ndarray):
    """One Function's backward on the array pass: ``backward_arrays`` where the Function has
    it, else its Tensor ``backward`` (recording nothing) with the results unwrapped."""
    if _has_array_form(type(ctx)):
        return ctx.backward_arrays(g)
    grads = ctx.backward(_wrap(g))
    if isinstance(grads, tuple):
        return tuple(None if pg is None else pg._data for pg in grads)
    return None if grads is None else grads._data


def _pruned_backward_step(ctx: Function, g, needs: tuple[bool, ...], on_arrays: bool):
    """One Function's backward asked for the gradients of the inputs marked in ``needs``
    only: its ``needs_input_grad`` says so while it runs (the Functions compute nothing for
    an input marked False), and is put back afterwards for later passes through the node."""
    recorded = ctx.needs_input_grad
    ctx.needs_input_grad = needs
    try:
        return _backward_step_arrays(ctx, g) if on_arrays else ctx.backward(g)
    finally:
        ctx.needs_input_grad = recorded


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Tensor | np.ndarray | Sequence | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
    retain_graph: bool | None = None,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs`` (vector-Jacobian products).

    Args:
        outputs: a tensor or a sequence of tensors.
        inputs: the tensors to differentiate with respect to (leaves or not).
        grad_outputs: the vectors in the vector-Jacobian product, one per output; may be
            omitted for single-element outputs.
        create_graph: record the backward pass so the result can be differentiated again.
        allow_unused: return None for an input the outputs do not depend on, instead of
            raising.
        retain_graph: keep the graph for another backward pass through it (defaults to
            ``create_graph``); otherwise the part of the graph walked through is freed.

    Returns:
        A tuple with one gradient per input. ``.grad`` attributes are left untouched.

    Only the gradients on paths from ``outputs`` to ``inputs`` are computed: a parameter
    the outputs depend on but that is not requested (nor on the way to one that is) costs
    nothing.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single_input = isinstance(inputs, Tensor)
    inputs = [inputs] if single_input else list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"grad() inputs must be Tensors, got {type(t).__name__}")
        _check_can_require_grad(t.dtype, "input of grad()")
        if not t.requires_grad:
            raise RuntimeError(
                f"grad(): an input of shape {t.shape} does not require gradients; create it "
                "with requires_grad=True"
            )
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(
            f"grad(): {len(outputs)} outputs but {len(grad_outputs)} grad_outputs"
        )
    seeds = []
    for out, g in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError(
                f"grad(): an output of shape {out.shape} does not require gradients: it does "
                "not depend on any input that requires them"
            )
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(
                    f"grad(): output of shape {out.shape} is not a scalar, so grad_outputs "
                    "must give a gradient of that shape for it"
                )
            g = Tensor(np.ones_like(out.data))
        seeds.append(_as_grad_seed(g, out))
    if retain_graph is None:
        retain_graph = create_graph
    results = _run_backward(outputs, seeds, inputs=inputs, create_graph=create_graph,
                            retain_graph=retain_graph)
    grads = []
    for t in inputs:
        g = results.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad(): the outputs do not depend on an input of shape {t.shape}; pass "
                "allow_unused=True to get None for it"
            )
        grads.append(g)
    return tuple(grads)


# NumPy's operator ufuncs that ``array (op) tensor`` calls, and the minigrad function for each.
_UFUNC_OPERATORS = {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div",
    "divide": "div", "power": "pow", "matmul": "matmul", "less": "lt", "less_equal": "le",
    "greater": "gt", "greater_equal": "ge", "equal": "eq", "not_equal": "ne",
}
_NUMPY_INSPECTORS = {"shape", "ndim", "size", "result_type", "iscomplexobj", "isrealobj"}
# Ufuncs whose minigrad counterpart has another name.
_UFUNC_HINTS = {
    "negative": "-t", "absolute": "t.abs()", "maximum": "minigrad.functions.where",
    "minimum": "minigrad.functions.where", "square": "t ** 2",
}


from minigrad import functions as F  # noqa: E402  (functions import Tensor from here)

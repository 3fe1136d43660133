"""Optimizers: SGD (with optional momentum) and Adam (Kingma & Ba 2015, Algorithm 1).

They update ``p.data`` with NumPy: the update is not part of any graph, but it counts as an
in-place change of the parameter, so a graph recorded before the step refuses to run its
backward pass afterwards (see :mod:`minigrad.tensor`).

The updates work in place, in scratch arrays kept from step to step (one or two per
parameter, never saved), so a steady-state step allocates no new parameter-sized arrays; the
arithmetic is the same, in the same order, as the plain NumPy expressions in the docstrings.

State is kept per parameter, as in PyTorch: Adam's step count and moments advance only on
steps where that parameter had a gradient. ``state_dict()`` / ``load_state_dict()`` save and
restore it (with the hyperparameters), so a run resumed from a checkpoint takes exactly the
steps the uninterrupted run would have taken.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from minigrad import kernels
from minigrad.tensor import Tensor


def _real(owner: str, name: str, value, low=None, high=None, low_open=False) -> float:
    """``value`` as a float, after checking it is a finite real number with low <= value < high.

    Python and NumPy numbers are accepted; strings, booleans and arrays are not.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name} must be a real number, got {value!r} of type "
            f"{type(value).__name__}"
        )
    value = float(value)
    ok = bool(np.isfinite(value))
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and value < high
    if not ok:
        if low is not None and high is not None:
            bounds = f" in [{low}, {high})"
        elif low is not None:
            bounds = f" {'>' if low_open else '>='} {low}"
        else:
            bounds = ""
        raise ValueError(f"{owner}: {name} must be a finite number{bounds}, got {value}")
    return value


class Optimizer:
    """Base class: a list of parameters, a learning rate and per-parameter state."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of tensors, got one Tensor; "
                            "wrap it in a list")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{name}: got an empty list of parameters")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, not a Tensor")
            if not p.requires_grad:
                raise ValueError(
                    f"{name}: parameter {i} of shape {p.shape} does not "
                    "require gradients, so it would never be updated"
                )
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{name}: learning rate lr must be a real number, got {lr!r} of "
                            f"type {type(lr).__name__}")
        lr = float(lr)
        if not (lr > 0 and np.isfinite(lr)):
            raise ValueError(f"{name}: learning rate must be positive and finite, got {lr}")
        self.lr = lr
        self._buffers: dict[tuple[int, int], np.ndarray] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _scratch(self, i: int, p: Tensor, k: int = 0) -> np.ndarray:
        """Scratch array number ``k`` of parameter ``i`` (made on first use, then reused)."""
        bufs = self._buffers.get((i, k))
        if bufs is None or bufs.shape != p.shape or bufs.dtype != p.dtype:
            bufs = self._buffers[(i, k)] = np.empty(p.shape, p.dtype)
        return bufs

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    _hyperparameters: tuple[str, ...] = ("lr",)
    _state_arrays: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        """Copies of the hyperparameters and of every parameter's optimizer state.

        ``{"type": ..., "hyperparameters": {...}, "state": [{...} per parameter]}``; the
        arrays in it are copies, so later steps do not change a saved state.
        """
        return {
            "type": type(self).__name__,
            "hyperparameters": {k: getattr(self, k) for k in self._hyperparameters},
            "state": [
                {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                for s in self.state
            ],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved; everything is checked before anything changes."""
        name = type(self).__name__
        if state.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: the state was saved by "
                             f"{state.get('type')!r}, not by {name}")
        saved = state["state"]
        if len(saved) != len(self.params):
            raise ValueError(f"{name}.load_state_dict: the state has {len(saved)} parameters, "
                             f"this optimizer has {len(self.params)}")
        for i, (s, p) in enumerate(zip(saved, self.params)):
            for key in self._state_arrays:
                if np.shape(s[key]) != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: parameter {i} has shape {p.shape} but its "
                        f"saved {key!r} has shape {np.shape(s[key])}"
                    )
        # Validate the hyperparameters through the constructor's checks.
        fresh = type(self)([Tensor(np.zeros(1), requires_grad=True)], **state["hyperparameters"])
        for key in self._hyperparameters:
            setattr(self, key, getattr(fresh, key))
        self.state = [
            {k: (np.array(v, dtype=p.dtype) if k in self._state_arrays else v)
             for k, v in s.items()}
            for s, p in zip(saved, self.params)
        ]


class SGD(Optimizer):
    """p <- p - lr * (g + weight_decay * p), with optional heavy-ball momentum.

    With momentum: v <- momentum * v + (g + weight_decay * p);  p <- p - lr * v.
    """

    _hyperparameters = ("lr", "momentum", "weight_decay")
    _state_arrays = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _real("SGD", "momentum", momentum, low=0, high=1)
        self.weight_decay = _real("SGD", "weight_decay", weight_decay, low=0)
        self.state = [{"velocity": np.zeros_like(p.data)} for p in self.params]

    def step(self) -> None:
        for i, (p, s) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            g = p.grad.data
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                v = s["velocity"]
                v *= self.momentum
                v += g
                g = v
            if g.dtype != p.dtype or g.shape != p.shape:
                p._sub_(self.lr * g)
                continue
            p._sub_(np.multiply(g, self.lr, out=self._scratch(i, p)))


class Adam(Optimizer):
    """Adam: m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).

    ``t`` counts the steps on which this parameter had a gradient (one count per parameter).
    """

    _hyperparameters = ("lr", "betas", "eps")
    _state_arrays = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = _real("Adam", "betas[0] (beta1)", betas[0], low=0, high=1)
        b2 = _real("Adam", "betas[1] (beta2)", betas[1], low=0, high=1)
        self.betas = (b1, b2)
        self.eps = _real("Adam", "eps", eps, low=0, low_open=True)
        self.state = [
            {"step": 0, "m": np.zeros_like(p.data), "v": np.zeros_like(p.data)}
            for p in self.params
        ]

    @property
    def beta1(self) -> float:
        return self.betas[0]

    @property
    def beta2(self) -> float:
        return self.betas[1]

    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, s) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            s["step"] = t = s["step"] + 1
            # Fold both bias corrections into the step size (same result, fewer array passes).
            step_size = float(self.lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t))
            eps_hat = float(self.eps * np.sqrt(1 - b2 ** t))
            g = p.grad.data
            m, v = s["m"], s["v"]
            # One fused pass (a Numba kernel) where it applies; the same numbers either way.
            if kernels.adam_update(p.data, g, m, v, b1, b2, step_size, eps_hat):
                continue
            if g.dtype != p.dtype or g.shape != p.shape:
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
                p._sub_(step_size * m / (np.sqrt(v) + eps_hat))
                continue
            # The same arithmetic in two scratch arrays: m <- b1 m + (1 - b1) g, ...
            a, c = self._scratch(i, p, 0), self._scratch(i, p, 1)
            m *= b1
            m += np.multiply(g, 1 - b1, out=a)
            v *= b2
            np.multiply(g, g, out=a)
            a *= 1 - b2
            v += a
            np.sqrt(v, out=c)
            c += eps_hat
            np.multiply(m, step_size, out=a)
            a /= c
            p._sub_(a)

"""minigrad: a small NumPy autograd engine for learning gradient estimators.

Import as ``import minigrad as mg``; the pieces are:

- :mod:`minigrad.tensor`: ``Tensor``, ``Function``, ``grad``, ``no_grad``;
- :mod:`minigrad.functions`: the primitives, one Function class each;
- :mod:`minigrad.kernels`: Numba kernels with NumPy reference twins;
- :mod:`minigrad.nn`, :mod:`minigrad.optim`, :mod:`minigrad.init`: layers and optimizers;
- :mod:`minigrad.gradcheck`: finite-difference gradient checks.
"""
from minigrad.functions import (
    abs,
    bernoulli_log_likelihood,
    broadcast_to,
    cast,
    clip,
    concatenate,
    conditional_logistic,
    exp,
    log,
    log_sigmoid,
    log_softmax,
    matmul,
    max,
    mean,
    relaxed_sigmoid,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    softplus,
    sqrt,
    stack,
    sum,
    tanh,
    transpose,
    unbroadcast,
    where,
)
from minigrad.tensor import (
    Function,
    Tensor,
    as_tensor,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
)

__version__ = "0.1.0"

__all__ = [
    "Function", "Tensor", "abs", "as_tensor", "bernoulli_log_likelihood", "broadcast_to", "cast",
    "clip", "concatenate", "conditional_logistic", "enable_grad", "exp", "grad", "is_grad_enabled", "log", "log_sigmoid",
    "log_softmax", "matmul", "max", "mean", "no_grad", "relaxed_sigmoid", "relu", "reshape",
    "sigmoid", "softmax", "softmax_cross_entropy", "softplus", "sqrt", "stack", "sum", "tanh",
    "transpose", "unbroadcast", "where",
]

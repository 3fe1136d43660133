"""One-hot stochastic neurons: a choice among d unordered categories.

A layer of ``n`` one-hot neurons of dimension ``d`` has width ``n d``. Its pre-activations are
reshaped to ``(batch, n, d)``: one row of logits ``z`` per neuron. Following R2RT's "Beyond
binary: ternary and one-hot neurons" (2017), each neuron computes::

    y_hat = softmax(z / t),   y_hat_i = exp(z_i / t) / sum_k exp(z_k / t)    (t: the temperature)
    y     = one_hot(i),   i ~ Categorical(y_hat)    (training: STSampledSoftmax)
    y     = one_hot(argmax_i y_hat_i)               (evaluation: STHardmax)

and the ``(batch, n, d)`` outputs are flattened back to ``(batch, n d)``.

Straight-through (ST) gradient (Bengio, Léonard & Courville 2013, arXiv:1308.3432): sampling
and argmax have zero derivative, so the backward pass treats them as the identity on the
probabilities, ``d y / d y_hat := I``. The gradient reaching the logits is then the softmax's
vector-Jacobian product, with the factor ``1 / temperature`` of the temperature::

    dz = y_hat * (g - sum_k g_k y_hat_k) / temperature.

Temperature annealing. R2RT's ``train_classifier`` multiplies a slope by the annealing rate
(1.2 or 1.5) after every epoch and uses ``temperature = 1 / slope``: the temperature is
*divided* by the rate. :class:`OneHotNeuron` does the same.

Gumbel-softmax / Concrete (Jang, Gu & Poole 2016, arXiv:1611.01144; Maddison, Mnih & Teh 2016,
arXiv:1611.00712): with Gumbel noise ``G_i = -log(-log(u_i))``, ``argmax_i (z_i + G_i)`` is a
sample from ``softmax(z)`` (the Gumbel-max trick), and ``softmax((z + G) / temperature)`` is a
continuous relaxation of that one-hot sample which tends to it as ``temperature -> 0``. Its
straight-through variant (:class:`STGumbelSoftmax`) outputs the hard sample and
back-propagates through the relaxed one.

Ties in every argmax go to the lowest index (NumPy's ``argmax`` rule), so outputs are always
exactly one-hot. Randomness comes in from outside: the functions take pre-drawn noise; the
neurons draw it from the ``rng`` they are called with.
"""
from __future__ import annotations

import numpy as np

from minigrad import validate
from minigrad.estimators import checks
from minigrad.estimators.base import (AnnealedNeuron, Annealing, Objective, estimate_array,
                                      gradient_through_sample, scheduled)
from minigrad.functions import softmax
from minigrad.tensor import Function, Tensor

__all__ = [
    "STSampledSoftmax", "STHardmax", "STGumbelSoftmax",
    "softmax_with_temperature", "st_sampled_softmax", "st_hardmax_softmax",
    "argmax_one_hot", "gumbel_from_uniform", "gumbel_softmax", "st_gumbel_softmax",
    "st_gumbel_softmax_detach", "split_neurons", "OneHotNeuron", "GumbelSoftmaxNeuron",
    "ONE_HOT_MODES", "sample_categorical", "straight_through_categorical",
    "st_gumbel_softmax_estimate", "gumbel_softmax_estimate", "st_hardmax_estimate",
]

ONE_HOT_MODES = ("sample", "hardmax")
# Softmax rows in float32 sum to 1 within a few 1e-7 times d; anything further off is a bug.
_ROW_SUM_TOLERANCE = 1e-4


# ---------------------------------------------------------------------- input checks
def _check_temperature(temperature, who: str) -> float:
    return checks.positive_number(temperature, "the temperature", who)


def _check_probability_rows(p: np.ndarray, who: str) -> None:
    if p.size == 0:
        return
    checks.probabilities(p, who, "pass softmax(logits / temperature), not the logits")
    sums = p.sum(axis=-1)
    worst = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
    if abs(sums[worst] - 1) > _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{who}: each row of probabilities (the last axis) must sum to 1, but the row at "
            f"{tuple(int(i) for i in worst)} sums to {sums[worst]:.6g}"
        )


def _one_hot(index: np.ndarray, d: int, dtype) -> np.ndarray:
    return np.eye(d, dtype=dtype)[index]


def argmax_one_hot(x: np.ndarray) -> np.ndarray:
    """The one-hot vector of ``argmax`` along the last axis; ties go to the lowest index."""
    x = np.asarray(x)
    return _one_hot(np.argmax(x, axis=-1), x.shape[-1], x.dtype)


def split_neurons(pre: Tensor, d: int, who: str = "split_neurons") -> Tensor:
    """Reshape a ``(batch, n d)`` layer into ``(batch, n, d)``: one row of logits per neuron."""
    if pre.ndim != 2:
        raise ValueError(
            f"{who}: expects pre-activations of shape (batch, width), got {pre.shape}"
        )
    batch, width = pre.shape
    if width % d != 0:
        raise ValueError(
            f"{who}: the layer width {width} is not divisible by d={d}: a layer of n one-hot "
            f"neurons of dimension d has width n * d"
        )
    return pre.reshape(batch, width // d, d)


def sample_categorical(probs: np.ndarray, u, who: str = "sample_categorical") -> np.ndarray:
    """One one-hot sample per row of ``probs`` (last axis), by the inverse CDF.

    With ``C_i = p_1 + ... + p_i``, ``i = #{j : C_j <= u}`` (0-based), so
    ``C_{i-1} <= u < C_i`` and ``P(i) = p_i``. The CDF is divided by its last entry so that
    its total is exactly 1 (it can round to slightly less, and a ``u`` above it would pick
    no category); categories with ``p_i = 0`` are never chosen.
    """
    u = checks.uniform_noise(u, probs.shape[:-1], who,
                             per="one value per row of probabilities, e.g. "
                                 "rng.random(probs.shape[:-1])")
    cdf = np.cumsum(probs, axis=-1)
    cdf = cdf / cdf[..., -1:]
    index = np.sum(cdf <= u[..., None], axis=-1)
    return _one_hot(index, probs.shape[-1], probs.dtype)


# ---------------------------------------------------------------------- ST one-hot functions
class STSampledSoftmax(Function):
    """Sample a one-hot vector from probabilities, with the straight-through gradient.

    Forward, for each row ``p`` (last axis) and its uniform ``u`` in [0, 1): the one-hot
    ``y = one_hot(i)`` of ``i ~ Categorical(p)``, drawn by the inverse CDF
    (:func:`sample_categorical`).

    Backward: ``dp = g`` (``d y / d p := I``).

    R2RT's ``st_sampled_softmax`` (2017), which samples with ``tf.multinomial`` and applies the
    ST trick to ``ceil(one_hot * p)``; Bengio et al. (2013).
    """

    def forward(self, probs, u):
        _check_probability_rows(probs, "STSampledSoftmax")
        return sample_categorical(probs, u, "STSampledSoftmax")

    def backward(self, g):
        return g


class STHardmax(Function):
    """The one-hot vector of the most probable category, with the straight-through gradient.

    Forward: ``y = one_hot(argmax_i p_i)``; ties go to the lowest index. Backward: ``dp = g``.

    R2RT's ``st_hardmax_softmax`` (2017); Bengio et al. (2013).
    """

    def forward(self, probs):
        _check_probability_rows(probs, "STHardmax")
        return argmax_one_hot(probs)

    def backward(self, g):
        return g


def softmax_with_temperature(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``softmax(z / temperature)`` over the last axis."""
    temperature = _check_temperature(temperature, "softmax_with_temperature")
    return softmax(logits / temperature if temperature != 1.0 else logits, axis=-1)


def st_sampled_softmax(logits: Tensor, temperature: float, u: np.ndarray) -> Tensor:
    """A one-hot sample from ``softmax(z / temperature)`` with the ST gradient: the gradient at the
    logits is the softmax's vector-Jacobian product. See :class:`STSampledSoftmax`."""
    return STSampledSoftmax.apply(softmax_with_temperature(logits, temperature), u=u)


def st_hardmax_softmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``one_hot(argmax softmax(z / temperature))`` with the ST gradient (:class:`STHardmax`)."""
    return STHardmax.apply(softmax_with_temperature(logits, temperature))


# ---------------------------------------------------------------------- Gumbel-softmax
def gumbel_from_uniform(u: np.ndarray) -> np.ndarray:
    """Gumbel(0, 1) noise ``G = -log(-log(u))`` from uniform ``u``.

    ``u`` is first clipped to ``[tiny, 1 - eps/2]`` (the smallest normal number and the largest
    number below 1 of its dtype), so ``u = 0`` or ``u = 1`` give large finite noise rather
    than infinities; ``rng.random()`` returns 0 with probability 2^-53.
    """
    u = np.asarray(u)
    if not np.issubdtype(u.dtype, np.floating):
        u = u.astype(np.float64)
    one = u.dtype.type(1)
    u = np.clip(u, np.finfo(u.dtype).tiny, np.nextafter(one, u.dtype.type(0)))
    return -np.log(-np.log(u))


def _check_gumbel(gumbel_noise, logits: Tensor, who: str) -> np.ndarray:
    gumbel_noise = checks.noise_of_shape(gumbel_noise, logits.shape, who, "Gumbel noise",
                                         "one value per logit")
    return gumbel_noise.astype(logits.dtype, copy=False)


def gumbel_softmax(logits: Tensor, temperature: float, gumbel_noise: np.ndarray) -> Tensor:
    """The Gumbel-softmax (Concrete) relaxed sample ``softmax((z + G) / temperature)``.

    ``G`` is pre-drawn Gumbel noise (see :func:`gumbel_from_uniform`). As ``temperature -> 0`` the
    result tends to ``one_hot(argmax (z + G))``, a sample from ``softmax(z)`` (Jang, Gu & Poole
    2016, eq. 2; Maddison, Mnih & Teh 2016, the Concrete distribution).
    """
    temperature = _check_temperature(temperature, "gumbel_softmax")
    g = Tensor(_check_gumbel(gumbel_noise, logits, "gumbel_softmax"))
    return softmax((logits + g) / temperature, axis=-1)


class STGumbelSoftmax(Function):
    """Straight-through Gumbel-softmax: the hard sample forward, the relaxed one backward.

    Forward: ``y = one_hot(argmax_i (z_i + G_i))`` (ties to the lowest index), a sample from
    ``softmax(z)`` whatever ``temperature``.

    Backward: the gradient of the relaxed sample ``s = softmax((z + G) / temperature)``::

        dz = s * (g - sum_k g_k s_k) / temperature.

    ``s`` is recomputed from the logits with Tensor operations, so this backward can itself
    be differentiated. Its one-line detach-trick form is :func:`st_gumbel_softmax_detach`,
    ``hard + (soft - soft.detach())``. Jang, Gu & Poole (2016), section 2.2.
    """

    def forward(self, logits, gumbel, temperature):
        self.gumbel, self.temperature = gumbel, temperature
        return argmax_one_hot(logits + gumbel)

    def backward(self, g):
        s = gumbel_softmax(self.inputs[0], self.temperature, self.gumbel)
        return s * (g - (g * s).sum(axis=-1, keepdims=True)) * (1.0 / self.temperature)


def st_gumbel_softmax(logits: Tensor, temperature: float, gumbel_noise: np.ndarray) -> Tensor:
    """Straight-through Gumbel-softmax as an explicit Function; see :class:`STGumbelSoftmax`."""
    temperature = _check_temperature(temperature, "st_gumbel_softmax")
    gumbel = _check_gumbel(gumbel_noise, logits, "st_gumbel_softmax")
    return STGumbelSoftmax.apply(logits, gumbel=gumbel, temperature=temperature)


def st_gumbel_softmax_detach(logits: Tensor, temperature: float, gumbel_noise: np.ndarray
                             ) -> Tensor:
    """Straight-through Gumbel-softmax by the detach trick: ``hard + (soft - soft.detach())``.

    The value is ``hard`` (``soft - soft`` is exactly 0); the gradient is that of ``soft``.
    Gives the same values and gradients as :func:`st_gumbel_softmax`.
    """
    soft = gumbel_softmax(logits, temperature, gumbel_noise)
    gumbel = _check_gumbel(gumbel_noise, logits, "st_gumbel_softmax_detach")
    hard = Tensor(argmax_one_hot(logits.data + gumbel))
    return hard + (soft - soft.detach())


# ---------------------------------------------------------------------- as estimators
def _estimate(g: Tensor, logits, create_graph: bool):
    """The contract's detached array; with ``create_graph=True`` the Tensor, which can be
    differentiated again (in a temperature, say)."""
    return g if create_graph else estimate_array(g, logits)


def straight_through_categorical(logits: Tensor, f: Objective, u: np.ndarray,
                                 temperature: float = 1.0, create_graph: bool = False) -> Tensor:
    """ST sampled softmax as an estimate of ``d E[f(b)] / d z``, ``b ~ softmax(z / temperature)``.

    Logits (batch, units, classes), ``u`` (batch, units). Biased: the gradient of ``f`` at
    the one-hot sample, sent through the softmax (:class:`STSampledSoftmax`).
    """
    return _estimate(gradient_through_sample(
        logits, f, lambda z: st_sampled_softmax(z, temperature, u), create_graph), logits,
        create_graph)


def st_hardmax_estimate(logits: Tensor, f: Objective, u=None, temperature: float = 1.0,
                        create_graph: bool = False) -> Tensor:
    """ST hardmax as an estimate for ``b ~ softmax(z)``: no noise, so it ignores ``u``."""
    return _estimate(gradient_through_sample(
        logits, f, lambda z: st_hardmax_softmax(z, temperature), create_graph), logits,
        create_graph)


def st_gumbel_softmax_estimate(logits: Tensor, f: Objective, u: np.ndarray,
                               temperature: float = 1.0, create_graph: bool = False) -> Tensor:
    """ST Gumbel-softmax as an estimate of ``d E[f(b)] / d z``, ``b ~ softmax(z)``.

    ``u`` is uniform noise of the logits' shape, made Gumbel by :func:`gumbel_from_uniform`.
    Biased: the hard sample's value with the relaxed sample's gradient (Jang, Gu & Poole
    2016, section 2.2).
    """
    validate.finite(logits, "logits", "st_gumbel_softmax_estimate")
    validate.unit_interval_noise(u, "the uniform noise u", "st_gumbel_softmax_estimate")
    noise = gumbel_from_uniform(u)
    return _estimate(gradient_through_sample(
        logits, f, lambda z: st_gumbel_softmax(z, temperature, noise), create_graph), logits,
        create_graph)


def gumbel_softmax_estimate(logits: Tensor, f: Objective, u: np.ndarray, temperature: float = 1.0,
                            create_graph: bool = False) -> Tensor:
    """The relaxed Gumbel-softmax estimate: the gradient of ``f`` at
    ``softmax((z + G) / temperature)``.

    ``f`` is evaluated at a point inside the simplex, not at a one-hot sample, so the
    estimate is of ``d E[f(relaxed)] / d z``: biased for ``E[f(b)]`` unless ``f`` is linear.
    """
    validate.finite(logits, "logits", "gumbel_softmax_estimate")
    validate.unit_interval_noise(u, "the uniform noise u", "gumbel_softmax_estimate")
    noise = gumbel_from_uniform(u)
    return _estimate(gradient_through_sample(
        logits, f, lambda z: gumbel_softmax(z, temperature, noise), create_graph), logits,
        create_graph)


# ---------------------------------------------------------------------- neurons
def _check_d(d: int, who: str) -> int:
    return checks.integer_at_least(d, 2, "d (categories per neuron)", who)


class OneHotNeuron(AnnealedNeuron):
    """R2RT's one-hot neuron: ``softmax(z / temperature)``, then a sampled or argmax one-hot
    with ST.

    Training (``stochastic=True``): ``mode="sample"`` samples (:class:`STSampledSoftmax`),
    ``mode="hardmax"`` takes the argmax (:class:`STHardmax`; it needs no ``rng``). Evaluation
    (``stochastic=False``): the argmax one-hot in both modes.

    Args:
        d: categories per neuron; the layer width must be a multiple of ``d``.
        mode: ``"sample"`` or ``"hardmax"``.
        temperature: the initial ``temperature``.
        anneal_rate: if given, :meth:`end_epoch` divides the temperature by it (R2RT
            multiplies a slope ``1 / temperature`` by 1.2 or 1.5 per epoch).
    """

    def __init__(self, d: int, mode: str = "sample", temperature: float = 1.0,
                 anneal_rate: float | None = None):
        super().__init__()
        if mode not in ONE_HOT_MODES:
            raise ValueError(f"OneHotNeuron: mode must be one of {ONE_HOT_MODES}, got {mode!r}")
        self.d = _check_d(d, "OneHotNeuron")
        self.mode = mode
        self.schedule = Annealing(temperature, anneal_rate, divide=True,
                                  name="the temperature", who="OneHotNeuron")

    temperature = scheduled("the current temperature")

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        probs = softmax_with_temperature(split_neurons(pre, self.d, "OneHotNeuron"),
                                         self.temperature)
        if stochastic and self.mode == "sample":
            rng = checks.require_rng(rng, "OneHotNeuron")
            y = STSampledSoftmax.apply(probs, u=rng.random(probs.shape[:-1]))
        else:
            y = STHardmax.apply(probs)
        return y.reshape(pre.shape)

    def __repr__(self) -> str:
        return (f"OneHotNeuron(d={self.d}, mode={self.mode!r}, "
                f"temperature={self.temperature:g}, anneal_rate={self.anneal_rate})")


class GumbelSoftmaxNeuron(AnnealedNeuron):
    """A Gumbel-softmax neuron: relaxed (``hard=False``) or straight-through (``hard=True``).

    Training (``stochastic=True``) draws ``G = -log(-log(u))`` from ``rng`` and outputs
    ``softmax((z + G) / temperature)`` (not one-hot: a point inside the simplex) or, with
    ``hard=True``, ``one_hot(argmax (z + G))`` with the relaxed sample's gradient.
    Evaluation (``stochastic=False``): the argmax one-hot of the logits, as in
    :class:`OneHotNeuron`.

    Args:
        d: categories per neuron; the layer width must be a multiple of ``d``.
        temperature: the initial temperature.
        hard: output the hard sample (straight-through) instead of the relaxed one.
        anneal_rate: if given, :meth:`end_epoch` divides ``temperature`` by it.
    """

    def __init__(self, d: int, temperature: float = 1.0, hard: bool = False,
                 anneal_rate: float | None = None):
        super().__init__()
        self.d = _check_d(d, "GumbelSoftmaxNeuron")
        self.hard = bool(hard)
        self.schedule = Annealing(temperature, anneal_rate, divide=True, name="the temperature",
                                  who="GumbelSoftmaxNeuron")

    temperature = scheduled("the current temperature")

    def forward(self, pre: Tensor, *, rng: np.random.Generator | None = None,
                stochastic: bool = True, sampled: list | None = None) -> Tensor:
        logits = split_neurons(pre, self.d, "GumbelSoftmaxNeuron")
        if not stochastic:
            y = STHardmax.apply(softmax_with_temperature(logits, self.temperature))
        else:
            rng = checks.require_rng(rng, "GumbelSoftmaxNeuron")
            noise = gumbel_from_uniform(rng.random(logits.shape))
            relax = st_gumbel_softmax if self.hard else gumbel_softmax
            y = relax(logits, self.temperature, noise)
        return y.reshape(pre.shape)

    def __repr__(self) -> str:
        return (f"GumbelSoftmaxNeuron(d={self.d}, temperature={self.temperature:g}, "
                f"hard={self.hard}, "
                f"anneal_rate={self.anneal_rate})")

"""Every piece of estimator state: baselines and control variates, as Modules.

An estimator is a function (:mod:`minigrad.estimators.catalogue` states the contract); what
it remembers from one step to the next is a *control*, passed to it as an argument. A
control keeps its state in Buffers (moving averages) and Parameters (networks, eta, a log
temperature), so it saves and loads with the run, and it changes only through explicit
calls:

- ``update(...)``: the moving averages take one step from a batch;
- the **caller's** optimizer steps the Parameters, with gradients the caller asks for
  (:meth:`NVILControl.fit_gradients`, or the variance gradient of
  :func:`minigrad.estimators.relaxed.variance_gradient`). No control owns an optimizer.

=============================  ============================================  ===============
control                        state                                         used by
=============================  ============================================  ===============
MovingAverageBaseline          ``c``, a moving average of the loss           REINFORCE
VarianceAdjustingBaseline      one baseline per unit (Bengio et al. 2013)    REINFORCE neuron
InputBaseline                  ``C(x)``, one tanh layer of 100               NVIL, REBAR, RELAX
NVILControl                    ``C(x)``, running mean and variance           NVIL
MuPropControl                  ``C(x)``, eta0 and eta1 of one layer          MuProp (REBAR
                                                                             code)
ModelMuPropControl             one MuPropControl per stochastic layer        the same, on
                                                                             an SBN
RelaxedControl                 eta, log temperature, RELAX's ``r_rho``       REBAR, RELAX
ModelRelaxedControl            ``C(x)``, eta per parameter tensor, log       dynamic REBAR,
                               temperature, one ``r_rho`` per layer          RELAX on a model
RelaxSurrogate                 ``r_rho(z)``, an MLP (RELAX's learned part)   RELAX
RowwiseSurrogate               one small ``r_rho`` per row (independent      RELAX on the toy
                               seeds trained side by side)
=============================  ============================================  ===============
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from minigrad import functions as F
from minigrad import validate
from minigrad.estimators import checks
from minigrad.nn import Buffer, Linear, Module, Parameter, ReLU, Sequential, Tanh
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

__all__ = [
    "MovingAverageBaseline", "VarianceAdjustingBaseline", "InputBaseline", "NVILControl",
    "MuPropControl", "ModelMuPropControl",
    "RelaxedControl", "ModelRelaxedControl", "RelaxSurrogate", "RowwiseSurrogate",
]

_FIX_LOSS = ("REINFORCE multiplies every score by the loss, so one NaN would make every "
             "gradient NaN: find where the loss became NaN (a log of 0, an overflow)")


def _checked_loss(loss, who: str) -> np.ndarray:
    loss = np.asarray(loss.data if isinstance(loss, Tensor) else loss)
    if loss.ndim != 1:
        raise ValueError(f"{who}.update: expects one loss per example, got shape {loss.shape}")
    return checks.finite_values(loss, "per-example loss", f"{who}.update", _FIX_LOSS)


# ---------------------------------------------------------------------- baselines
class MovingAverageBaseline(Module):
    """A constant baseline that follows the mean loss: ``c <- decay c + (1 - decay) mean(L)``.

    Starts at ``c = 0``. Its state (``c``) is in a Buffer; it changes only through
    :meth:`update`.
    """

    def __init__(self, decay: float = 0.9):
        super().__init__()
        self.decay = checks.decay_rate(decay, "MovingAverageBaseline")
        self.mean = Buffer(np.float64(0.0))

    def update(self, loss, score=None) -> None:
        """One step from a batch of per-example losses (``score`` is not used)."""
        batch_mean = _checked_loss(loss, "MovingAverageBaseline").mean()
        self.mean.data = self.decay * self.mean.data + (1 - self.decay) * batch_mean

    def value(self) -> np.ndarray:
        return self.mean.data.copy()

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={float(self.mean.data):.4g})"

_FIX_F = "f must give a finite value at every sample"


class VarianceAdjustingBaseline(Module):
    """Bengio et al.'s per-unit variance-adjusting baseline, as moving averages.

    For unit ``i`` with score ``b_i - p_i`` and per-example loss ``L``::

        L_bar_i = EMA[(b_i - p_i)^2 L] / (EMA[(b_i - p_i)^2] + eps)

    which estimates the baseline that minimises the variance of ``(b_i - p_i)(L - L_bar_i)``
    (Bengio et al. 2013). Each EMA is updated from the batch means,
    ``m <- decay m + (1 - decay) batch_mean``, starting from numerator 0 and denominator 1 as
    in R2RT's code. The state is one number per unit, made by :meth:`build` (or by the
    first update), in Buffers; it changes only through :meth:`update`.
    """

    def __init__(self, decay: float = 0.95, eps: float = 1e-4, units: int | None = None):
        super().__init__()
        self.decay = checks.decay_rate(decay, "VarianceAdjustingBaseline")
        self.eps = checks.positive_number(eps, "eps", "VarianceAdjustingBaseline")
        self.numerator = Buffer(np.zeros(0))
        self.denominator = Buffer(np.ones(0))
        self.built = False
        if units is not None:
            self.build((units,))

    def build(self, units: tuple[int, ...]) -> None:
        self.numerator = Buffer(np.zeros(units))
        self.denominator = Buffer(np.ones(units))
        self.built = True

    def update(self, loss, score) -> None:
        """One EMA step from a batch: loss (batch,), score = b - p (batch, units)."""
        loss = _checked_loss(loss, "VarianceAdjustingBaseline")
        score = np.asarray(score)
        if not self.built:
            self.build(score.shape[1:])
        if self.numerator.shape != score.shape[1:]:
            raise ValueError(
                f"VarianceAdjustingBaseline holds {self.numerator.shape} units but got "
                f"a batch of shape {score.shape}; use one baseline per layer"
            )
        score_sq = np.square(score, dtype=np.float64)
        weighted = score_sq * loss.reshape((-1,) + (1,) * (score.ndim - 1))
        keep, numerator, denominator = self.decay, self.numerator, self.denominator
        numerator.data = keep * numerator.data + (1 - keep) * weighted.mean(axis=0)
        denominator.data = keep * denominator.data + (1 - keep) * score_sq.mean(axis=0)

    def value(self) -> np.ndarray:
        """``L_bar``, one number per unit."""
        if not self.built:
            raise RuntimeError(
                "VarianceAdjustingBaseline.value(): no state yet; it is made by "
                "build(units) or by the first update(loss, score)"
            )
        return self.numerator.data / (self.denominator.data + self.eps)

    def __repr__(self) -> str:
        units = self.numerator.shape if self.built else None
        return f"VarianceAdjustingBaseline(decay={self.decay}, eps={self.eps}, units={units})"


class InputBaseline(Module):
    """``C(x)``: the input-dependent baseline of NVIL, REBAR and RELAX (Mnih & Gregor 2014).

    One tanh layer of ``n_hidden`` (100, as in the REBAR code) on the centred input
    ``x - input_mean``, then one value per example. ``rng`` (a Generator or a seed) makes
    the initial weights.
    """

    def __init__(self, input_mean, rng, n_hidden: int = 100, dtype=np.float32):
        super().__init__()
        self.input_mean = np.asarray(input_mean, dtype=dtype).reshape(-1)
        n_input = self.input_mean.size
        self.net = Sequential(Linear(n_input, n_hidden, rng, dtype=dtype), Tanh(),
                              Linear(n_hidden, 1, rng, dtype=dtype))

    def forward(self, x) -> Tensor:
        """``C(x)``, shape (batch,)."""
        centred = Tensor(np.asarray(x, dtype=self.input_mean.dtype) - self.input_mean)
        return self.net(centred).reshape(-1)


class NVILControl(Module):
    """NVIL's baselines (Mnih & Gregor 2014): ``C(x)`` (:class:`InputBaseline`) and a
    running mean ``c`` and variance ``v`` of ``f - C(x)``.

    :meth:`values` gives what :func:`~minigrad.estimators.score_function.nvil` takes:
    ``C(x) + c`` per example and the scale ``s = max(1, sqrt(v))`` (1 with
    ``normalise=False``). With ``running_mean=False`` the baseline is ``C(x)`` alone and
    ``C`` is fitted to ``f`` itself: with ``normalise=False`` too, the REBAR code's NVIL.
    ``C`` is trained by the caller's optimizer (the REBAR code: Adam at 10x the model's
    learning rate) on :meth:`fit_gradients`; the moments change only through
    :meth:`update`.
    """

    def __init__(self, input_mean, rng, n_hidden: int = 100, decay: float = 0.8,
                 normalise: bool = True, running_mean: bool = True, dtype=np.float32):
        super().__init__()
        self.baseline = InputBaseline(input_mean, rng, n_hidden, dtype)
        self.decay = checks.decay_rate(decay, "NVILControl")
        self.normalise = normalise
        self.running_mean = running_mean
        self.mean = Buffer(np.float64(0.0))
        self.var = Buffer(np.float64(1.0))
        self.steps = Buffer(np.int64(0))

    @property
    def input_size(self) -> int:
        return self.baseline.input_mean.size

    def values(self, x) -> tuple[np.ndarray, float]:
        """``(C(x) + c, s)``: the baseline per example and the variance normalisation."""
        with no_grad():
            values = self.baseline(x).data + self._level()
        scale = max(1.0, float(np.sqrt(float(self.var.data)))) if self.normalise else 1.0
        return values, scale

    def _level(self) -> float:
        """``c``, or 0 without the running mean."""
        return float(self.mean.data) if self.running_mean else 0.0

    def fit_gradients(self, x, f_values) -> tuple[list[np.ndarray], np.ndarray]:
        """The gradients of ``mean((f - c - C(x))^2)`` for ``C``'s parameters (in the
        order of :meth:`parameters`) and ``C(x)`` itself, for :meth:`update`."""
        validate.finite(f_values, "f_values", "NVILControl.fit_gradients", _FIX_F)
        f_values = np.asarray(f_values, dtype=self.baseline.input_mean.dtype)
        params = self.parameters()
        with enable_grad():
            predicted = self.baseline(x)
            residual = Tensor(f_values - self._level()) - predicted
            found = grad((residual * residual).mean(), params, allow_unused=True)
        grads = [np.zeros_like(p.data) if d is None else d.data for p, d in zip(params, found)]
        return grads, predicted.data

    def update(self, f_values, predicted) -> None:
        """The running moments of ``r = f - C(x)``: ``c <- a c + (1 - a) mean(r)``,
        ``v <- a v + (1 - a) mean((r - c)^2)``; the first update sets them."""
        validate.finite(f_values, "f_values", "NVILControl.update", _FIX_F)
        f_values = np.asarray(f_values, dtype=self.baseline.input_mean.dtype)
        r = f_values - predicted
        a = self.decay if int(self.steps.data) else 0.0
        mean = a * float(self.mean.data) + (1 - a) * float(np.mean(r))
        var = a * float(self.var.data) + (1 - a) * float(np.mean((r - mean) ** 2))
        self.mean.data, self.var.data = np.float64(mean), np.float64(var)
        self.steps.data = self.steps.data + 1


def _eta_logit(eta: float, who: str) -> float:
    """``w`` with ``2 sigmoid(w) = eta``."""
    eta = checks.positive_number(eta, "eta", who)
    if not eta < 2.0:
        raise ValueError(f"{who}: eta = 2 sigmoid(w) lies in (0, 2), got {eta}; give a "
                         "value between 0 and 2 (1 is MuProp's own)")
    return math.log(eta / (2.0 - eta))


class MuPropControl(Module):
    """The control of MuProp as the REBAR code has it, for one layer of units.

    - ``baseline``: ``C(x)`` (:class:`InputBaseline`);
    - ``w0``, ``w1``: Parameters, ``eta0 = 2 sigmoid(w0)`` scales the mean-field value
      ``f(p)`` and ``eta1 = 2 sigmoid(w1)`` the Taylor term ``f'(p).(b - p)``; both start
      at ``eta`` (the REBAR code: 1, ``w = 0``).

    The learning signal is ``L = f(b) - eta0 f(p) - eta1 f'(p).(b - p) - C(x)``
    (:func:`~minigrad.estimators.score_function.muprop_with_control`). All three are
    trained by the caller's optimizer on :meth:`fit_gradients`, the gradients of
    ``mean(L^2)`` (the REBAR code's baseline loss, Adam at 10x the model's learning rate).
    """

    def __init__(self, input_mean, rng, n_hidden: int = 100, eta=(1.0, 1.0),
                 dtype=np.float32):
        super().__init__()
        self.w0 = Parameter(np.array(_eta_logit(eta[0], "MuPropControl"), dtype))
        self.w1 = Parameter(np.array(_eta_logit(eta[1], "MuPropControl"), dtype))
        self.baseline = InputBaseline(input_mean, rng, n_hidden, dtype)

    def etas(self) -> tuple[Tensor, Tensor]:
        """``eta0 = 2 sigmoid(w0)`` and ``eta1 = 2 sigmoid(w1)``, Tensors."""
        return 2.0 * F.sigmoid(self.w0), 2.0 * F.sigmoid(self.w1)

    def values(self, x) -> tuple[np.ndarray, float, float]:
        """``(C(x), eta0, eta1)``: what ``muprop_with_control`` takes."""
        with no_grad():
            c = self.baseline(x).data
            eta0, eta1 = self.etas()
        return c, float(eta0.data), float(eta1.data)

    def signal(self, x, f_sample, f_mean, taylor) -> Tensor:
        """``L = f(b) - eta0 f(p) - eta1 f'(p).(b - p) - C(x)`` per example, a Tensor
        differentiable in the control's Parameters; ``taylor`` is ``f'(p).(b - p)``."""
        who = "MuPropControl.signal"
        dtype = self.baseline.input_mean.dtype
        parts = [np.asarray(validate.finite(v, name, who, _FIX_F), dtype=dtype)
                 for v, name in ((f_sample, "f(b)"), (f_mean, "f(p)"),
                                 (taylor, "f'(p).(b - p)"))]
        eta0, eta1 = self.etas()
        return (Tensor(parts[0]) - eta0 * Tensor(parts[1]) - eta1 * Tensor(parts[2])
                - self.baseline(x))

    def fit_gradients(self, x, f_sample, f_mean, taylor
                      ) -> tuple[list[np.ndarray], np.ndarray]:
        """The gradients of ``mean(L^2)`` for the Parameters (in the order of
        :meth:`parameters`), and ``L`` per example."""
        params = self.parameters()
        with enable_grad():
            signal = self.signal(x, f_sample, f_mean, taylor)
            found = grad((signal * signal).mean(), params, allow_unused=True)
        grads = [np.zeros_like(p.data) if d is None else d.data for p, d in zip(params, found)]
        return grads, signal.data


class ModelMuPropControl(Module):
    """One :class:`MuPropControl` per stochastic layer of a model (the REBAR code makes a
    ``C(x)`` and two etas for each layer); :meth:`layer` gives layer ``i``'s. Its
    :meth:`parameters` are the layers' in order."""

    def __init__(self, input_mean, n_layers: int, rng, n_hidden: int = 100,
                 dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        self.layers = [MuPropControl(input_mean, rng, n_hidden, dtype=dtype)
                       for _ in range(n_layers)]
        for i, control in enumerate(self.layers):
            setattr(self, f"layer{i}", control)

    def layer(self, i: int) -> MuPropControl:
        """The control of layer ``i``'s logits."""
        return self.layers[i]


# ---------------------------------------------------------------------- relaxed controls
class RelaxSurrogate(Module):
    """``r_rho(z)``: an MLP from the units' logistic variables to one value per row.

    ``hidden=(200, 200)`` (ReLU) as in the RELAX paper's SBN experiments; the last layer
    starts at zero, so training starts from ``c = f(sigma_lambda(z))``, plain REBAR with
    ``eta = 1``.
    """

    def __init__(self, n_units: int, hidden=(200, 200), rng=0, dtype=np.float32):
        super().__init__()
        sizes = [n_units, *hidden]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [Linear(n_in, n_out, rng, dtype=dtype), ReLU()]
        last = Linear(sizes[-1], 1, rng, dtype=dtype)
        last.weight.data = np.zeros_like(last.weight.data)
        self.net = Sequential(*layers, last)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(-1)


class RowwiseSurrogate(Module):
    """``r_rho(z)`` with its own small network per row: one ReLU layer of ``hidden`` units
    for each of ``rows`` independent problems (the toy's seeds) trained side by side.

    :meth:`select` gives the networks of some rows, in the order asked for, so that a batch
    made of copies of the rows sees each copy's own network.
    """

    def __init__(self, rows: int, hidden: int, rng: np.random.Generator):
        super().__init__()
        self.w1 = Parameter(rng.normal(0, 1, (rows, hidden)))
        self.b1 = Parameter(rng.normal(0, 1, (rows, hidden)))
        self.w2 = Parameter(np.zeros((rows, hidden)))
        self.b2 = Parameter(np.zeros(rows))

    def select(self, rows: np.ndarray) -> Callable[[Tensor], Tensor]:
        """The surrogate for a batch whose row ``n`` belongs to problem ``rows[n]``."""
        w1, b1, w2, b2 = self.w1[rows], self.b1[rows], self.w2[rows], self.b2[rows]

        def surrogate(z: Tensor) -> Tensor:
            return (F.relu(z * w1 + b1) * w2).sum(axis=1) + b2

        return surrogate

    def forward(self, z: Tensor) -> Tensor:
        return self.select(np.arange(len(self.b2.data)))(z)


def _value_or_parameter(value, learn: bool, dtype) -> Tensor | float:
    if learn:
        return Parameter(np.asarray(value, dtype=dtype))
    if isinstance(value, Tensor):   # the caller's Tensor: gradients reach it as it says
        return value
    # a fixed array (one value per row) is a constant Tensor, so that it combines with
    # Tensors the same way a tuned one does
    return float(value) if np.ndim(value) == 0 else Tensor(np.asarray(value, dtype=dtype))


class RelaxedControl(Module):
    """The control variate of REBAR and RELAX for one set of logits.

    - ``eta``: the weight of the correction (REBAR's eta; 1 for RELAX);
    - ``log_temperature``: the relaxation's ``log lambda``;
    - ``surrogate``: RELAX's learned part ``r_rho(z)`` (None for REBAR);
    - ``relaxation``: :func:`~minigrad.estimators.relaxed.muprop_relaxation` (the REBAR
      code's) or :func:`~minigrad.estimators.relaxed.concrete_relaxation`.

    With ``learn_eta`` / ``learn_temperature`` the values are Parameters (any shape that
    broadcasts against the logits: one per row trains independent problems side by side)
    for the caller's optimizer, on :func:`~minigrad.estimators.relaxed.variance_gradient`;
    otherwise they are fixed numbers. :meth:`select` gives the control of some rows.
    """

    def __init__(self, eta=1.0, log_temperature=math.log(0.5), *, surrogate=None,
                 relaxation=None, learn_eta: bool = False, learn_temperature: bool = False,
                 dtype=np.float64):
        super().__init__()
        from minigrad.estimators.relaxed import muprop_relaxation

        self.eta = _value_or_parameter(eta, learn_eta, dtype)
        self.log_temperature = _value_or_parameter(log_temperature, learn_temperature, dtype)
        self.surrogate = surrogate
        self.relaxation = muprop_relaxation if relaxation is None else relaxation

    def temperature(self):
        """``lambda = exp(log_temperature)``: a Tensor when it is tuned, else a number."""
        if isinstance(self.log_temperature, Tensor):
            return F.exp(self.log_temperature)
        return math.exp(self.log_temperature)

    def select(self, rows: np.ndarray) -> "RelaxedControl":
        """The control of a batch whose row ``n`` belongs to problem ``rows[n]`` (the
        per-row values indexed; nothing is copied for the optimizer: gradients reach
        this control's Parameters)."""
        view = RelaxedControl.__new__(RelaxedControl)
        Module.__init__(view)
        pick = (lambda t: t[rows] if isinstance(t, Tensor) or isinstance(t, np.ndarray)
                else t)
        view.__dict__["eta"] = pick(self.eta)
        view.__dict__["log_temperature"] = pick(self.log_temperature)
        view.__dict__["surrogate"] = (self.surrogate.select(rows)
                                      if isinstance(self.surrogate, RowwiseSurrogate)
                                      else self.surrogate)
        view.__dict__["relaxation"] = self.relaxation
        return view

    def __repr__(self) -> str:
        return (f"RelaxedControl(eta={'tuned' if isinstance(self.eta, Parameter) else self.eta}"
                f", relaxation={self.relaxation.__name__}, "
                f"surrogate={type(self.surrogate).__name__ if self.surrogate else None})")


class ModelRelaxedControl(Module):
    """REBAR's and RELAX's control variate on a model with several stochastic layers.

    - ``baseline``: ``C(x)`` (:class:`InputBaseline`, trained on the estimator's variance);
    - ``eta_logits``: with ``learn_eta``, one ``w_P`` per parameter tensor of the encoder,
      ``eta_P = 2 sigmoid(w_P)`` (dynamic REBAR); else ``eta = 1``;
    - ``log_temperature``: a Parameter with ``learn_temperature``, else a number;
    - ``surrogates``: RELAX's ``r_rho``, one :class:`RelaxSurrogate` per stochastic layer.

    :meth:`layer` gives the :class:`RelaxedControl` of one layer's logits. Every Parameter
    here is stepped by the caller's optimizer on the variance gradient.
    """

    def __init__(self, input_mean, n_tensors: int, n_units: int, n_layers: int, rng, *,
                 learn_eta: bool = False, learn_temperature: bool = False,
                 temperature: float = 0.5, surrogate: Sequence[int] | None = None,
                 relaxation=None, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        self.baseline = InputBaseline(input_mean, rng, 100, dtype)
        self.eta_logits = ([Parameter(np.zeros((), dtype)) for _ in range(n_tensors)]
                           if learn_eta else None)
        log_temperature = float(np.log(temperature))
        self.log_temperature = (Parameter(np.array(log_temperature, dtype))
                                if learn_temperature else log_temperature)
        self.surrogates = None
        if surrogate is not None:
            self.surrogates = [RelaxSurrogate(n_units, surrogate, rng=rng, dtype=dtype)
                               for _ in range(n_layers)]
        self.relaxation = relaxation
        self.n_tensors = n_tensors

    def named_parameters(self, prefix: str = ""):
        """``C(x)``'s, then each ``w_P``, the log temperature, each layer's ``r_rho``."""
        yield from self.baseline.named_parameters(prefix + "baseline.")
        for i, w in enumerate(self.eta_logits or []):
            yield f"{prefix}eta_logits.{i}", w
        if isinstance(self.log_temperature, Parameter):
            yield prefix + "log_temperature", self.log_temperature
        for i, net in enumerate(self.surrogates or []):
            yield from net.named_parameters(f"{prefix}surrogates.{i}.")

    @property
    def tunes_correction(self) -> bool:
        """Whether the correction itself depends on tuned values (eta only weighs it)."""
        return isinstance(self.log_temperature, Tensor) or self.surrogates is not None

    @property
    def temperature(self) -> float:
        return math.exp(float(self.log_temperature.data
                              if isinstance(self.log_temperature, Tensor)
                              else self.log_temperature))

    def etas(self) -> list:
        """``eta_P = 2 sigmoid(w_P)`` per parameter tensor (Tensors), or 1 for each."""
        if self.eta_logits is None:
            return [1.0] * self.n_tensors
        return [2.0 * F.sigmoid(w) for w in self.eta_logits]

    def eta_values(self) -> list[float]:
        return [float(np.asarray(e.data if isinstance(e, Tensor) else e)) for e in self.etas()]

    def layer(self, i: int) -> RelaxedControl:
        """The control of layer ``i``'s logits: its temperature and ``r_rho``, eta 1 (the
        per-tensor eta weighs the correction after the vector-Jacobian products)."""
        view = RelaxedControl.__new__(RelaxedControl)
        Module.__init__(view)
        view.__dict__["eta"] = 1.0
        view.__dict__["log_temperature"] = self.log_temperature
        view.__dict__["surrogate"] = None if self.surrogates is None else self.surrogates[i]
        view.__dict__["relaxation"] = self.relaxation
        return view

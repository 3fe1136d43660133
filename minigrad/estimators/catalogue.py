"""Every gradient estimator of the library in one table, the contract they follow, and one
way to measure them all.

**The contract.** An estimator is a plain function::

    g = estimator(logits, f, noise..., control=..., **settings)

- ``logits``: a Tensor, (batch, units) for Bernoulli units or (batch, units, classes) for
  categorical ones; the estimate is a function of their values (nothing is sent into the
  graph that made them: :func:`~minigrad.estimators.base.surrogate` does that);
- ``f``: the objective, a batch of samples -> one value per example (minigrad ops);
- ``noise``: pre-drawn arrays (uniform ``u``, and ``v`` for the relaxed control variates),
  one per unit (per logit for Gumbel noise); never a global random state;
- ``control``: the state the estimator needs, if any, as an explicit argument: a baseline
  value, or a Module of :mod:`minigrad.estimators.controls` (moving averages in Buffers,
  networks, eta and the log temperature in Parameters). The estimator reads it and never
  changes it; it changes through its own ``update(...)`` and the caller's optimizer (no
  estimator owns an optimizer or leaves a result on an object for someone to fetch);
- ``settings``: plain numbers such as a temperature (Concrete, Gumbel-softmax);
- it returns a **detached NumPy array of the logits' shape and dtype**, the estimate of
  ``d E[f(b)] / d logits``, which :func:`~minigrad.estimators.base.surrogate` sends on to
  the parameters. It changes nothing: calling it twice on the same inputs gives the same
  estimate. Where the training step needs a differentiable form (dynamic REBAR and RELAX
  tune their control on the estimate's variance), the family's module gives it as plain
  functions (:func:`~minigrad.estimators.relaxed.relaxed_parts`,
  :func:`~minigrad.estimators.relaxed.variance_gradient`).

**The table.** Each :class:`EstimatorSpec` names the library function a reader opens, how to
call it under the contract, the control it needs (a factory), what it costs, whether it is
unbiased, and the chapter that derives it. The oracle test, the SBN runs
(:mod:`minigrad.experiments.sbn`), the categorical VAE runs (:mod:`minigrad.experiments.vae`),
the command line and the catalogue chapter all read :data:`ESTIMATORS`; a new estimator joins
all of them by adding one entry.

**The common problems** the catalogue measures every entry on:

- **Bernoulli**: 3 examples of 3 units with logits :data:`BERNOULLI_LOGITS` and the loss
  ``f(b) = (b . w - t_n)^2 + 3``, which couples the units;
- **categorical**: 2 examples of 2 one-hot units of 3 classes, ``f(b) = (sum b * v - t_n)^2 + 3``;
- **categorical, k-sample bound**: the same units with the log-weight ``-f(b) / 2``; the exact
  gradient is that of the k-sample bound ``E[log 1/k sum_j exp(-f(b_j) / 2)]`` (VIMCO's
  target, not ``E[f]``).

:func:`measure` compares ``samples`` single-sample estimates per example with the exact gradient
by enumeration (:mod:`minigrad.estimators.exact`): the largest bias in standard errors, the
size of the bias, and the variance of one estimate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minigrad.estimators.antithetic import arm, disarm
from minigrad.estimators.binary import hard_sigmoid, pass_through_sigmoid, straight_through
from minigrad.estimators.categorical import (RebarControl, RelaxControl, arsm, coupled_v,
                                             gumbel_softmax_categorical, indecater,
                                             rebar_categorical,
                                             rebar_categorical_variance_gradient,
                                             relax_categorical,
                                             relax_categorical_variance_gradient, rloo,
                                             st_gumbel_softmax_categorical, vimco)
from minigrad.estimators.controls import (ModelMuPropControl, ModelRelaxedControl,
                                          MovingAverageBaseline, MuPropControl, NVILControl,
                                          RelaxedControl, RelaxSurrogate, RowwiseSurrogate)
from minigrad.estimators.diagnostics import summarize_estimates
from minigrad.estimators.exact import (exact_gradient, exact_gradient_categorical,
                                       exact_k_sample_gradient_categorical)
from minigrad.estimators.onehot import (gumbel_softmax_estimate, st_gumbel_softmax_estimate,
                                        st_hardmax_estimate, straight_through_categorical)
from minigrad.estimators.relaxed import (concrete, concrete_relaxation, coupled_noise,
                                         muprop_relaxation, rebar, relax)
from minigrad.estimators.score_function import (muprop, muprop_with_control, nvil,
                                                reinforce, reinforce_categorical,
                                                reinforce_loo, simple_muprop)
from minigrad.functions import sigmoid
from minigrad.tensor import Tensor

__all__ = ["EstimatorSpec", "Problem", "Measurement", "ESTIMATORS", "SPECS", "BERNOULLI",
           "CATEGORICAL", "CATEGORICAL_K_SAMPLE", "E_F", "K_SAMPLE_BOUND", "SBN_ESTIMATORS",
           "VAE_ESTIMATORS", "measure", "draw_noise", "make_control"]

# ---------------------------------------------------------------------- the common problems
BERNOULLI_LOGITS = np.array([[0.8, -0.6, 0.3],
                             [-0.9, 0.5, 0.7],
                             [0.2, -0.3, 0.9]])
WEIGHTS = np.array([1.0, -2.0, 1.5])
TARGETS = np.array([0.5, -1.0, 1.0])
CATEGORICAL_LOGITS = np.array([[[0.5, -0.4, 0.1], [-0.7, 0.2, 0.6]],
                               [[0.0, 0.9, -0.3], [0.4, -0.5, 0.3]]])
CATEGORICAL_VALUES = np.array([[1.0, -1.5, 0.5], [2.0, 0.0, -1.0]])
CATEGORICAL_TARGETS = np.array([0.3, -0.8])
OFFSET = 3.0


def bernoulli_loss(b: Tensor) -> Tensor:
    """``(b . w - t_n)^2 + 3`` for a batch made of copies of the 3 examples."""
    return (b @ Tensor(WEIGHTS) - Tensor(np.tile(TARGETS, b.shape[0] // 3))) ** 2 + OFFSET


def categorical_loss(b: Tensor) -> Tensor:
    """``(sum_ij b_ij v_ij - t_n)^2 + 3``; ``b`` one-hot (or relaxed), shape (batch, 2, 3)."""
    s = (b * Tensor(CATEGORICAL_VALUES)).sum(axis=(1, 2))
    return (s - Tensor(np.tile(CATEGORICAL_TARGETS, b.shape[0] // 2))) ** 2 + OFFSET


@dataclass(frozen=True)
class Problem:
    name: str
    logits: np.ndarray
    f: Callable[[Tensor], Tensor]
    exact: Callable  # (logits, f, probability) -> exact gradient Tensor


BERNOULLI = Problem("Bernoulli", BERNOULLI_LOGITS, bernoulli_loss,
                    lambda a, f, p: exact_gradient(a, f, p))
CATEGORICAL = Problem("categorical", CATEGORICAL_LOGITS, categorical_loss,
                      lambda z, f, p: exact_gradient_categorical(z, f))

#: k of the multi-sample categorical estimators (RLOO, VIMCO) in the table.
K_SAMPLES = 4


def categorical_log_weight(b: Tensor) -> Tensor:
    """``-f(b) / 2``, :func:`categorical_loss` made a log-weight for the k-sample bound."""
    return categorical_loss(b) * -0.5


def _exact_k_sample(z, f, p):
    return Tensor(exact_k_sample_gradient_categorical(z, f, K_SAMPLES))


CATEGORICAL_K_SAMPLE = Problem(f"categorical, {K_SAMPLES}-sample bound", CATEGORICAL_LOGITS,
                               categorical_log_weight, _exact_k_sample)

#: What an estimator estimates the gradient of (:attr:`EstimatorSpec.target`).
E_F = "E[f(b)]"
K_SAMPLE_BOUND = "the k-sample bound E[log 1/k sum_j exp f(b_j)]"


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator: what it is, what it costs, its control, and how to call it.

    ``estimate(logits, f, u, control, x)`` returns the estimate (the contract above) for
    noise ``u`` drawn by :func:`draw_noise` (uniform, one per unit; one per logit for
    Gumbel noise; ``samples`` independent draws stacked first for estimators that take
    several samples); ``control`` is what :func:`make_control` made from ``control``, the
    factory; ``x`` the input a control may depend on (NVIL's ``C(x)``; the catalogue
    passes the logits). ``sbn``: whether the SBN runs can train with it. On the toy
    problem (:mod:`minigrad.experiments.toy`) the relaxed control variates are trained
    through :func:`~minigrad.estimators.relaxed.relaxed_estimate` with their control.

    Categorical latents (the VAE of :mod:`minigrad.experiments.vae`, ``vae`` True):
    ``target`` is what the estimate is the gradient of (:data:`E_F`, or
    :data:`K_SAMPLE_BOUND` for VIMCO, whose ``f`` is a log-weight); ``relaxed_sample``
    says that ``f`` is evaluated at a relaxed sample (the VAE trains its decoder there);
    ``cost(n, K, k)`` counts the evaluations of ``f`` per example for ``n`` variables of
    ``K`` classes and ``k`` samples; ``tune(logits, f, u, control)``, for a control trained
    on the estimate's variance, returns the estimate and ``d sum(g^2) / d phi`` for each
    of the control's Parameters.
    """

    name: str
    function: Callable                 # the library function that holds the backward pass
    estimate: Callable                 # (logits, f, u, control, x) -> estimate array
    family: str
    unbiased: bool
    evaluations: str                   # evaluations of f per estimate
    needs: str                         # what it asks of f beyond its value at b
    chapter: str                       # the chapter (docname) that derives it
    control: Callable | None = None    # factory(model=, config=, rows=, rng=) -> control
    problem: Problem = BERNOULLI
    probability: Callable = sigmoid    # the Bernoulli probability the exact gradient uses
    noise: str = "per unit"            # or "per logit" (Gumbel noise)
    samples: int = 1                   # independent samples per estimate (leave-one-out)
    sbn: bool = False                  # an SBN run can train with it
    note: str = ""
    target: str = E_F                  # what it estimates the gradient of
    vae: bool = False                  # the categorical VAE can train with it
    relaxed_sample: bool = False       # f is evaluated at a relaxed sample
    cost: Callable | None = None       # (n, K, k) -> evaluations of f per example
    tune: Callable | None = None       # (logits, f, u, control) -> (g, control gradients)


def make_control(spec: EstimatorSpec, model=None, config=None, rows: int | None = None,
                 rng: np.random.Generator | None = None):
    """The control ``spec`` needs, for one of three uses:

    - the catalogue's problem: no arguments;
    - training ``model`` with ``config`` (an :class:`~minigrad.experiments.sbn.SBNConfig`);
    - ``rows`` independent one-unit problems trained side by side (the toy problem of
      :mod:`~minigrad.experiments.toy`): one value of each tuned quantity per row, and
      ``rng`` for any random initial values.
    """
    if spec.control is None:
        return None
    return spec.control(model=model, config=config, rows=rows, rng=rng)


def _slope_2(a):
    return sigmoid(a * 2.0)


# ---- controls: one factory per kind of state (no model, no rows: the catalogue's problem)
def _moving_average(**_):
    # on the toy (rows) nothing updates it: it stays 0, REINFORCE without a baseline
    return MovingAverageBaseline(decay=0.9)


def _nvil_control(model=None, config=None, **_):
    if model is None:   # C(x) of the logits: untrained, but it depends on x, never on b
        return NVILControl(np.zeros(3), rng=7, n_hidden=4, dtype=np.float64)
    return NVILControl(model.input_mean, rng=config.seed + 7, normalise=config.nvil_normalise,
                       dtype=model.dtype)


def _nvil_rebar_code_control(model=None, config=None, **_):
    # the REBAR code's NVIL: C(x) alone, no running mean, no normalisation
    if model is None:
        return NVILControl(np.zeros(3), rng=7, n_hidden=4, normalise=False,
                           running_mean=False, dtype=np.float64)
    return NVILControl(model.input_mean, rng=config.seed + 7, normalise=False,
                       running_mean=False, dtype=model.dtype)


def _muprop_rebar_code_control(model=None, config=None, **_):
    if model is None:   # one layer; etas tuned in training, here fixed values that are not 1
        return MuPropControl(np.zeros(3), rng=7, n_hidden=4, eta=(0.6, 1.4),
                             dtype=np.float64)
    return ModelMuPropControl(model.input_mean, model.n_layers, rng=config.seed + 7,
                              dtype=model.dtype)


def _temperature(model=None, config=None, **_):
    return 0.5 if config is None else config.temperature


def _model_relaxed(model, config, **options):
    return ModelRelaxedControl(
        model.input_mean, n_tensors=len(model.encoder_parameters()), n_units=model.n_hidden,
        n_layers=model.n_layers, rng=np.random.default_rng(config.seed + 11),
        temperature=config.temperature, dtype=model.dtype, **options)


def _per_row(rows: int, value: float) -> np.ndarray:
    return np.full((rows, 1), value)


def _rebar_control(model=None, config=None, rows=None, **_):
    if model is not None:
        return _model_relaxed(model, config, relaxation=muprop_relaxation)
    return RelaxedControl()


def _rebar_concrete_control(model=None, config=None, rows=None, **_):
    if model is not None:
        return _model_relaxed(model, config, relaxation=concrete_relaxation)
    if rows is not None:   # the toy's REBAR: eta 1 and temperature 0.5 for every row
        return RelaxedControl(_per_row(rows, 1.0), _per_row(rows, np.log(0.5)),
                              relaxation=concrete_relaxation)
    return RelaxedControl(relaxation=concrete_relaxation)


def _dynamic_rebar_control(model=None, config=None, rows=None, **_):
    if model is not None:
        return _model_relaxed(model, config, learn_eta=True, learn_temperature=True,
                              relaxation=muprop_relaxation)
    if rows is not None:   # the toy: eta and the temperature of each row tuned (Concrete)
        return RelaxedControl(_per_row(rows, 1.0), _per_row(rows, np.log(0.5)),
                              relaxation=concrete_relaxation, learn_eta=True,
                              learn_temperature=True)
    # the catalogue: tuned in training; here fixed values that are not REBAR's
    return RelaxedControl(0.7, np.log(0.3), learn_eta=True, learn_temperature=True)


def _relax_control(model=None, config=None, rows=None, rng=None, **_):
    if model is not None:
        return _model_relaxed(model, config, learn_temperature=True, surrogate=(200, 200),
                              relaxation=concrete_relaxation)
    if rows is not None:   # the toy: each row its own temperature and r_rho (10 ReLUs)
        log_temperature = _per_row(rows, np.log(0.5))
        return RelaxedControl(1.0, log_temperature, relaxation=concrete_relaxation,
                              learn_temperature=True,
                              surrogate=RowwiseSurrogate(rows, 10, rng))
    # the catalogue: a small untrained network as r_rho, fixed seed
    return RelaxedControl(1.0, np.log(0.5), relaxation=concrete_relaxation,
                          surrogate=RelaxSurrogate(3, (8,), rng=5, dtype=np.float64))


def _rebar_categorical_control(model=None, config=None, **_):
    if model is None:   # the catalogue: REBAR's eta 1 and temperature 0.5
        return RebarControl()
    return RebarControl(temperature=config.temperature, dtype=model.dtype)


def _dynamic_rebar_categorical_control(model=None, config=None, **_):
    if model is None:   # the catalogue: tuned in training; here fixed values not REBAR's
        return RebarControl(0.7, 0.3)
    return RebarControl(temperature=config.temperature, dtype=model.dtype)


def _relax_categorical_control(model=None, config=None, **_):
    if model is None:   # the catalogue: a small untrained network as r, fixed seed
        n, classes = CATEGORICAL_LOGITS.shape[1:]
        return RelaxControl(n, classes, hidden=(8,), rng=5, zero_last=False)
    return RelaxControl(model.n, model.classes, hidden=(config.relax_hidden,),
                        temperature=config.temperature, rng=config.seed + 11,
                        dtype=model.dtype)


# ---- evaluations of f per example: n variables of K classes, k samples
def _one(n, classes, k):
    return 1


def _k(n, classes, k):
    return k


def _three(n, classes, k):
    return 3


def _n_times_k(n, classes, k):
    return n * classes


def _pairs_and_one(n, classes, k):
    return classes * (classes - 1) // 2 + 1


# ---- how each function is called under the contract
def _plain(fn):
    def estimate(a, f, u, control, x):
        return fn(a, f, u)

    estimate.__name__ = fn.__name__
    return estimate


def _reinforce_moving_average(a, f, u, control, x):
    return reinforce(a, f, u, baseline=control.value())


def _reinforce_constant(a, f, u, control, x):
    return reinforce(a, f, u, baseline=OFFSET)


def _nvil(a, f, u, control, x):
    values, scale = control.values(x)
    return nvil(a, f, u, values, scale)


def _muprop_with_control(a, f, u, control, x):
    c, eta0, eta1 = control.values(x)
    return muprop_with_control(a, f, u, c, eta0, eta1)


def _nvil_constant(a, f, u, control, x):
    return nvil(a, f, u, np.full(a.shape[0], OFFSET))


def _concrete(a, f, u, control, x):
    return concrete(a, f, u, temperature=control)


def _rebar(a, f, u, control, x):
    return rebar(a, f, u, coupled_noise(a, u), control)


def _relax(a, f, u, control, x):
    return relax(a, f, u, coupled_noise(a, u), control)


def _with_temperature(fn):
    def estimate(a, f, u, control, x):
        return fn(a, f, u, temperature=control)

    estimate.__name__ = fn.__name__
    return estimate


def _coupled(fn):
    """REBAR's coupled noise: ``v`` from ``u`` (:func:`~minigrad.estimators.categorical.
    coupled_v`), as the binary rows do with :func:`~minigrad.estimators.relaxed.
    coupled_noise`."""
    def estimate(a, f, u, control, x=None):
        return fn(a, f, u, coupled_v(a, u), control)

    estimate.__name__ = fn.__name__
    return estimate


def _straight_through(probability):
    def estimate(a, f, u, control, x):
        return straight_through(a, f, u, probability)

    return estimate


_VALUE = "only f(b)"
_DIFF = "f differentiable in b (evaluated at relaxed b)"
_RELAXED = "f defined and differentiable at relaxed b"
_SCORE, _RCV = "score function", "relaxed control variate"
_CATEGORICAL = "10_categorical_which_estimator"
SPECS: list[EstimatorSpec] = [
    EstimatorSpec("REINFORCE", reinforce, _reinforce_moving_average, _SCORE, True, "1", _VALUE,
                  "03_hard_nonlinearities", control=_moving_average, sbn=True,
                  note="a moving-average baseline of f (0 before training)"),
    EstimatorSpec("REINFORCE, constant baseline", reinforce, _reinforce_constant,
                  _SCORE, True, "1", _VALUE, "04_binary_neurons",
                  note="baseline 3, the loss's offset"),
    EstimatorSpec("REINFORCE, categorical", reinforce_categorical,
                  _plain(reinforce_categorical), _SCORE, True, "1", _VALUE,
                  "05_onehot_neurons", problem=CATEGORICAL, vae=True, cost=_one,
                  note="no baseline"),
    EstimatorSpec("REINFORCE LOO", reinforce_loo, _plain(reinforce_loo), _SCORE, True, "2",
                  _VALUE, "06_sbn_score_function", samples=2, sbn=True,
                  note="leave-one-out centring over 2 samples"),
    EstimatorSpec("NVIL", nvil, _nvil, _SCORE, True, "1", _VALUE, "06_sbn_score_function",
                  control=_nvil_control, sbn=True,
                  note="here C(x) is an untrained network of the logits"),
    EstimatorSpec("NVIL (constant baseline, no normalisation)", nvil, _nvil_constant,
                  _SCORE, True, "1", _VALUE, "06_sbn_score_function",
                  note="in training the baseline is a network of x"),
    EstimatorSpec("NVIL (REBAR code)", nvil, _nvil, _SCORE, True, "1", _VALUE,
                  "06_sbn_score_function", control=_nvil_rebar_code_control, sbn=True,
                  note="C(x) alone: no running mean, no normalisation (the REBAR code's); "
                       "here an untrained network of the logits"),
    EstimatorSpec("ARM", arm, _plain(arm), "antithetic", True, "2", _VALUE, "08_arm_disarm",
                  sbn=True, note="two samples from one uniform: 1[u < p] and 1[u > 1 - p]"),
    EstimatorSpec("DisARM", disarm, _plain(disarm), "antithetic", True, "2", _VALUE,
                  "08_arm_disarm", sbn=True, note="ARM averaged over the pair's order"),
    EstimatorSpec("REBAR", rebar, _rebar, _RCV, True, "3 + gradients", _RELAXED,
                  "07_rebar_relax", control=_rebar_control, sbn=True,
                  note="eta 1, temperature 0.5, the MuProp-style relaxation"),
    EstimatorSpec("REBAR (Concrete relaxation)", rebar, _rebar, _RCV, True, "3 + gradients",
                  _RELAXED, "07_rebar_relax", control=_rebar_concrete_control, sbn=True),
    EstimatorSpec("dynamic REBAR", rebar, _rebar, _RCV, True, "3 + gradients", _RELAXED,
                  "07_rebar_relax", control=_dynamic_rebar_control, sbn=True,
                  note="eta and the temperature are tuned in training; here 0.7 and 0.3"),
    EstimatorSpec("RELAX", relax, _relax, _RCV, True, "3 + gradients", _RELAXED,
                  "07_rebar_relax", control=_relax_control, sbn=True,
                  note="a small untrained network as the learned part of the control variate"),
    EstimatorSpec("SimpleMuProp", simple_muprop, _plain(simple_muprop), _SCORE, True, "2",
                  "f defined at the mean field p", "06_sbn_score_function", sbn=True),
    EstimatorSpec("MuProp", muprop, _plain(muprop), _SCORE, True, "2 + a gradient",
                  "f differentiable at the mean field p", "06_sbn_score_function", sbn=True),
    EstimatorSpec("MuProp (REBAR code)", muprop_with_control, _muprop_with_control, _SCORE,
                  True, "2 + a gradient", "f differentiable at the mean field p",
                  "06_sbn_score_function", control=_muprop_rebar_code_control, sbn=True,
                  note="eta0, eta1 and C(x) per layer, trained on mean(L^2); here eta 0.6 "
                       "and 1.4 and an untrained C(x) of the logits"),
    EstimatorSpec("ST sigmoid-adjusted", straight_through, _straight_through(sigmoid),
                  "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons"),
    EstimatorSpec("ST pass-through", straight_through,
                  _straight_through(pass_through_sigmoid),
                  "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons"),
    EstimatorSpec("ST slope 2", straight_through, _straight_through(_slope_2),
                  "straight-through", False, "1 + a gradient", _DIFF, "04_binary_neurons",
                  probability=_slope_2, note="units Bernoulli(sigmoid(2a))"),
    EstimatorSpec("ST hard sigmoid", straight_through, _straight_through(hard_sigmoid),
                  "straight-through", False, "1 + a gradient", _DIFF, "03_hard_nonlinearities",
                  probability=hard_sigmoid, note="units Bernoulli(hard sigmoid(a))"),
    EstimatorSpec("ST sampled softmax", straight_through_categorical,
                  _plain(straight_through_categorical), "straight-through", False,
                  "1 + a gradient", _DIFF, "05_onehot_neurons", problem=CATEGORICAL),
    EstimatorSpec("ST hardmax", st_hardmax_estimate, _plain(st_hardmax_estimate),
                  "straight-through", False, "1 + a gradient", _DIFF, "05_onehot_neurons",
                  problem=CATEGORICAL, note="deterministic: no noise"),
    EstimatorSpec("Concrete", concrete, _concrete, "relaxation", False, "1 + a gradient",
                  _DIFF, "06_sbn_score_function", control=_temperature, sbn=True,
                  relaxed_sample=True,
                  note="temperature 0.5 (an SBN run: its configured temperature)"),
    EstimatorSpec("ST Gumbel-softmax", st_gumbel_softmax_estimate,
                  _with_temperature(st_gumbel_softmax_categorical), "relaxation", False,
                  "1 + a gradient", _DIFF, "05_onehot_neurons", control=_temperature,
                  problem=CATEGORICAL, noise="per logit", vae=True, cost=_one,
                  note="temperature 0.5 (a VAE run: its configured temperature)"),
    EstimatorSpec("Gumbel-softmax, relaxed", gumbel_softmax_estimate,
                  _with_temperature(gumbel_softmax_categorical), "relaxation", False,
                  "1 + a gradient", _DIFF, "05_onehot_neurons", control=_temperature,
                  problem=CATEGORICAL, noise="per logit", vae=True, relaxed_sample=True,
                  cost=_one, note="temperature 0.5; f at the relaxed sample"),
    # ---- categorical latents: the estimators of minigrad.estimators.categorical
    EstimatorSpec("RLOO", rloo, _plain(rloo), _SCORE, True, "k", _VALUE, _CATEGORICAL,
                  problem=CATEGORICAL, samples=K_SAMPLES, vae=True, cost=_k,
                  note=f"leave-one-out centring over k = {K_SAMPLES} samples"),
    EstimatorSpec("VIMCO", vimco, _plain(vimco), _SCORE, True, "k", _VALUE, _CATEGORICAL,
                  problem=CATEGORICAL_K_SAMPLE, samples=K_SAMPLES, vae=True, cost=_k,
                  target=K_SAMPLE_BOUND,
                  note=f"the gradient of the k-sample bound (k = {K_SAMPLES}), not of E[f]; "
                       "f is a log-weight"),
    EstimatorSpec("IndeCateR", indecater, _plain(indecater), _SCORE, True, "n K", _VALUE,
                  _CATEGORICAL, problem=CATEGORICAL, vae=True, cost=_n_times_k,
                  note="each variable's K classes summed exactly, the others sampled"),
    EstimatorSpec("ARSM", arsm, _plain(arsm), "antithetic", True, "K (K - 1) / 2 + 1",
                  _VALUE, _CATEGORICAL, problem=CATEGORICAL, noise="per logit", vae=True,
                  cost=_pairs_and_one, note="swaps of a Dirichlet(1) draw's entries"),
    EstimatorSpec("REBAR, categorical", rebar_categorical, _coupled(rebar_categorical), _RCV,
                  True, "3 + gradients", _RELAXED, _CATEGORICAL,
                  control=_rebar_categorical_control, problem=CATEGORICAL, noise="per logit",
                  vae=True, cost=_three,
                  note="eta 1, temperature 0.5, conditional Gumbel with coupled noise"),
    EstimatorSpec("dynamic REBAR, categorical", rebar_categorical,
                  _coupled(rebar_categorical), _RCV, True, "3 + gradients", _RELAXED,
                  _CATEGORICAL, control=_dynamic_rebar_categorical_control,
                  problem=CATEGORICAL, noise="per logit", vae=True, cost=_three,
                  tune=_coupled(rebar_categorical_variance_gradient),
                  note="eta and the temperature are tuned in training; here 0.7 and 0.3"),
    EstimatorSpec("RELAX, categorical", relax_categorical, _coupled(relax_categorical), _RCV,
                  True, "3 + gradients", _RELAXED, _CATEGORICAL,
                  control=_relax_categorical_control, problem=CATEGORICAL,
                  noise="per logit", vae=True, cost=_three,
                  tune=_coupled(relax_categorical_variance_gradient),
                  note="a small untrained network as the learned part of the control"),
]

#: The table by name: the one place an estimator's name is looked up.
ESTIMATORS: dict[str, EstimatorSpec] = {spec.name: spec for spec in SPECS}
#: The names an SBN run can train with (the command line's choices).
SBN_ESTIMATORS = tuple(spec.name for spec in SPECS if spec.sbn)
#: The names the categorical VAE can train with (the command line's choices).
VAE_ESTIMATORS = tuple(spec.name for spec in SPECS if spec.vae)


# ---------------------------------------------------------------------- measuring
def draw_noise(entry: EstimatorSpec, shape: tuple[int, ...], rng: np.random.Generator
               ) -> np.ndarray:
    """The noise ``entry.estimate`` takes for logits of ``shape``."""
    per_logit = entry.noise == "per logit" or entry.problem is BERNOULLI
    one = shape if per_logit else shape[:-1]
    return rng.random(one if entry.samples == 1 else (entry.samples, *one))


@dataclass
class Measurement:
    """How one estimator did on its problem against the exact gradient."""

    name: str
    largest_abs_z: float      # the largest |bias| in standard errors, over the components
    bias_norm: float          # the size of the bias vector
    mean_variance: float      # the variance of one estimate, averaged over components
    exact: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)


def measure(entry: EstimatorSpec, samples: int = 20_000, seed: int = 0) -> Measurement:
    """``samples`` single-sample estimates per example of ``entry``'s problem, against the
    exact gradient."""
    base = entry.problem.logits
    logits = Tensor(np.tile(base, (samples,) + (1,) * (base.ndim - 1)))
    u = draw_noise(entry, logits.shape, np.random.default_rng(seed))
    control = make_control(entry)
    g = entry.estimate(logits, entry.problem.f, u, control, logits.data)
    if not isinstance(g, np.ndarray):
        raise TypeError(f"{entry.name}: an estimator returns a detached array (the "
                        f"contract), got {type(g).__name__}")
    if g.shape != logits.shape:
        raise ValueError(f"{entry.name}: the estimate has shape {g.shape}, the logits "
                         f"{logits.shape}")
    estimates = g.reshape((samples,) + base.shape)
    exact = entry.problem.exact(Tensor(base), entry.problem.f, entry.probability).data
    s = summarize_estimates(estimates, exact)
    return Measurement(entry.name, float(s.largest_abs_z), float(s.bias_norm),
                       float(np.mean(s.variance)), exact, s.mean)

"""Training sigmoid belief networks with one encoder-gradient estimator per run.

The protocol is the REBAR paper's (Tucker et al. 2017): statically binarized MNIST, batch 24,
Adam with beta2 = 0.99999, learning rate 3e-4. At every step the decoder and the prior get the
exact gradient of ``log p(x, b)`` at the sampled ``b``; each stochastic layer's logits get the
estimator's estimate of ``d E[f] / d logits`` through
:func:`~minigrad.estimators.base.surrogate`. Every run of a comparison starts from the same
weights and sees the same minibatches.

The estimator is an entry of the spec table
(:data:`minigrad.estimators.catalogue.ESTIMATORS`) and its control is made by the entry's
factory; one adapter, :func:`backward_pass`, calls every entry the same way. The relaxed
control variates (REBAR, dynamic REBAR, RELAX) weigh their estimate per parameter tensor,
so their step is :func:`relaxed_training_step`, the few lines chapter 07 prints. A
control's Parameters are stepped by the run's own optimizer for the control (Adam at 10x
the model's learning rate, as in the REBAR code), never by the control itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad.data import dynamic_binarize, minibatch_stream
from minigrad.estimators.base import surrogate
from minigrad.estimators.catalogue import ESTIMATORS, SBN_ESTIMATORS, make_control
from minigrad.estimators.controls import (ModelMuPropControl, ModelRelaxedControl,
                                          MovingAverageBaseline, NVILControl)
from minigrad.estimators.diagnostics import EMALogVariance
from minigrad.estimators.relaxed import (coupled_noise, parameter_estimates, relaxed_parts,
                                         variance_gradient)
from minigrad.estimators.score_function import muprop_from_signal, muprop_signal
from minigrad.models.sbn import SigmoidBeliefNet
from minigrad.nn import Module
from minigrad.optim import Adam
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

from .checkpoint import Resumable
from .executor import map_runs

__all__ = ["BASELINES", "BINARIZATIONS", "SBNConfig", "SBNHistory", "SBNRun", "train_sbn",
           "run_sbn_comparison", "control_and_optimizer",
           "time_sbn_steps", "backward_pass", "relaxed_training_step", "muprop_training_step",
           "train_control",
           "encoder_gradient", "VarianceRace", "variance_race", "run_variance_race"]


#: How the relaxed control variates treat their input-dependent baseline ``C(x)``: tuned on
#: the estimator's variance (the REBAR code), or kept at its initial weights ("frozen", the
#: likeliest state of a third-party recording of that code with eta and the temperature fixed).
BASELINES = ("trained", "frozen")
RELAXED_FAMILY = "relaxed control variate"
#: How a run's training images are binarized: once, before training ("fixed", the REBAR
#: paper's statically binarized MNIST), or afresh at every minibatch ("dynamic", DisARM's).
BINARIZATIONS = ("fixed", "dynamic")


# ---------------------------------------------------------------------- runs
@dataclass
class SBNConfig:
    """One training run: the model, the estimator (a name in
    :data:`~minigrad.estimators.catalogue.ESTIMATORS` that an SBN can train with), the
    steps.

    ``task``: ``"generative"`` (model the image) or ``"structured"`` (predict the bottom
    half from the top half; see :class:`~minigrad.models.sbn.SigmoidBeliefNet`).

    ``binarization`` (:data:`BINARIZATIONS`): ``"fixed"``: the training images given to
    :class:`SBNRun` are the bits themselves (``load_binarized_mnist().train.x``).
    ``"dynamic"`` (the DisARM paper's protocol): they are the grey levels
    (``load_binarized_mnist("dynamic").train.x``) and every minibatch is drawn afresh as
    Bernoulli(intensity) with the run's noise Generator, so a resumed run draws the same
    bits. The training ELBO is then measured on those fresh bits; the validation bound
    (:meth:`SBNRun.finish`) on the validation images as given, which the book and the
    command line take from the fixed binarization, so that runs of both kinds are scored
    on the same bits.
    """

    label: str
    estimator: str
    steps: int
    temperature: float = 0.5
    nvil_normalise: bool = True
    n_layers: int = 1
    nonlinear: bool = False
    task: str = "generative"
    batch_size: int = 24
    lr: float = 3e-4
    beta2: float = 0.99999
    record_every: int = 500
    eval_k: int = 100
    eval_examples: int | None = None  # None: the whole validation set
    seed: int = 0
    init: str = "glorot"  # or "reference": the REBAR code's weights (models.sbn.INITS)
    # "trained": REBAR's C(x) is tuned on the estimator's variance with eta and the
    # temperature; "frozen": C(x) keeps its initial weights (BASELINES)
    baseline: str = "trained"
    binarization: str = "fixed"

    def __post_init__(self):
        if self.binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}, "
                             f"got {self.binarization!r}")
        if self.estimator not in SBN_ESTIMATORS:
            raise ValueError(f"unknown SBN estimator {self.estimator!r}; one of "
                             f"{list(SBN_ESTIMATORS)}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.baseline == "frozen" and ESTIMATORS[self.estimator].family \
                != RELAXED_FAMILY:
            raise ValueError(f"baseline='frozen' is for the relaxed control variates "
                             f"(REBAR, dynamic REBAR, RELAX); {self.estimator} trains "
                             "its baseline otherwise")


@dataclass
class SBNHistory:
    """What one run recorded: training ELBO and log-variance every ``record_every`` steps."""

    label: str
    steps: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    log_variance: list[float] = field(default_factory=list)
    val_iwae: float = float("nan")
    seconds: float = 0.0

    @property
    def final_train_elbo(self) -> float:
        return self.train_elbo[-1] if self.train_elbo else float("nan")

    @property
    def seconds_per_1000(self) -> float:
        return 1000 * self.seconds / self.steps[-1] if self.steps else float("nan")


def train_sbn(config: SBNConfig, train_x: np.ndarray, val_x: np.ndarray,
              progress: bool = False, on_record=None) -> tuple[SigmoidBeliefNet, SBNHistory]:
    """Train one SBN with one estimator; BLAS on one thread (small matrices, shared cores).

    ``on_record(history)``, if given, is called each time the history grows (a long run
    saves its progress with it).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_sbn(config, train_x, val_x, progress, on_record)


def _train_sbn(config, train_x, val_x, progress, on_record=None):
    run = SBNRun(config, train_x, val_x)
    for _ in tqdm(range(config.steps), desc=config.label, disable=not progress):
        records = len(run.history.steps)
        run.step()
        if on_record is not None and len(run.history.steps) > records:
            on_record(run.history)
    return run.model, run.finish()


class SBNRun(Resumable):
    """One SBN training run, a step at a time, with a state that can be saved and restored.

    :func:`train_sbn` is ``step()`` ``config.steps`` times, then ``finish()`` (the
    validation bound). :meth:`state` is everything the next steps depend on: the model, the
    optimizer, the estimator's control (its baselines, control variates) and the optimizer
    of the control's Parameters, the variance tracker, every Generator, the minibatch
    stream, the step count and the history so far (and the racers of a variance race);
    :mod:`~minigrad.experiments.checkpoint` writes it to a file and puts it back into a
    fresh run made with the same configuration and data.

    ``racers``: names of other estimators evaluated at every step on the same minibatch and
    noise, each with its own control and variance tracker (:func:`variance_race`).
    """

    family = "sbn"

    def __init__(self, config: SBNConfig, train_x: np.ndarray, val_x: np.ndarray,
                 racers: tuple[str, ...] = ()):
        self.config, self.val_x = config, val_x
        if config.binarization == "dynamic":
            _check_grey(train_x)
        init_rng, self.batch_rng, self.noise_rng, self.eval_rng = \
            np.random.default_rng(config.seed).spawn(4)
        self.model = SigmoidBeliefNet(train_x.mean(axis=0), n_layers=config.n_layers,
                                      nonlinear=config.nonlinear, task=config.task,
                                      rng=init_rng, init=config.init)
        self.spec = ESTIMATORS[config.estimator]
        self.control, self.control_optimizer = control_and_optimizer(self.spec, self.model,
                                                                      config)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr, betas=(0.9, config.beta2))
        self.tracker = EMALogVariance(decay=0.999)
        self.encoder = self.model.encoder_parameters()
        # the variance race: other estimators evaluated on the same minibatch and noise at
        # every step, each with its own control and variance tracker; the run follows its own
        self.racers = {name: Racer(name, *control_and_optimizer(
            ESTIMATORS[name], self.model, config)) for name in racers
            if name != config.estimator}
        self.stream = minibatch_stream(train_x, None, config.batch_size, self.batch_rng)
        self.history = SBNHistory(config.label)
        self.window: list[float] = []
        self.steps_done = 0

    @property
    def total_steps(self) -> int:
        return self.config.steps

    @property
    def objective(self) -> dict[str, float]:
        """The latest recorded training ELBO (for a progress bar)."""
        return {"elbo": self.history.final_train_elbo}

    def step(self) -> None:
        """One training step (and a history record every ``record_every`` steps)."""
        config, model = self.config, self.model
        started = time.perf_counter()
        x, _ = next(self.stream)
        if config.binarization == "dynamic":   # fresh bits, from a Generator checkpoints keep
            x = dynamic_binarize(x, self.noise_rng)
        u = model.noise(self.noise_rng, len(x))
        _, f_values, control_grads = backward_pass(model, self.spec, self.control,
                                                   self.optimizer, self.encoder, x, u,
                                                   self.noise_rng)
        # the optimizer minimises -ELBO: the variance of the direction of increase is the same
        self.tracker.update(np.concatenate([p.grad.data.ravel() for p in self.encoder]))
        raced = {name: encoder_gradient(ESTIMATORS[name], r.control, model, x, u,
                                        self.noise_rng, f_values)
                 for name, r in self.racers.items()}
        self.optimizer.step()
        train_control(self.control, self.control_optimizer, model, x, f_values, control_grads)
        for name, r in self.racers.items():
            flat, grads = raced[name]
            r.tracker.update(flat)
            train_control(r.control, r.optimizer, model, x, f_values, grads)
        self.window.append(float(f_values.mean()))
        self.steps_done = step = self.steps_done + 1
        if step % config.record_every == 0 or step == config.steps:
            self.history.steps.append(step)
            self.history.train_elbo.append(float(np.mean(self.window)))
            self.history.log_variance.append(self.tracker.log_variance)
            self.window = []
        self.history.seconds += time.perf_counter() - started

    def finish(self) -> SBNHistory:
        """The bound on the validation set (``eval_k`` importance samples); the history."""
        config = self.config
        val = self.val_x if config.eval_examples is None else self.val_x[:config.eval_examples]
        self.history.val_iwae = float(np.mean(self.model.iwae_bound(val, config.eval_k,
                                                                    self.eval_rng)))
        return self.history

    state_names = ("model", "optimizer", "control", "control_optimizer", "tracker",
                   "batch_rng", "noise_rng", "eval_rng", "stream", "history", "window",
                   "steps_done", "racers")


def _check_grey(train_x: np.ndarray) -> None:
    """Dynamic binarization draws bits from grey levels: refuse images that are not in
    [0, 1] or are binary already (the run would quietly train on fixed bits)."""
    x = np.asarray(train_x)
    if x.size == 0 or not (x.min() >= 0 and x.max() <= 1):
        raise ValueError("binarization='dynamic' needs the grey levels in [0, 1] "
                         "(load_binarized_mnist('dynamic').train.x)")
    # the first rows of grey images suffice; binary images are read to the end
    grey = any(((x[i:i + 1000] > 0) & (x[i:i + 1000] < 1)).any()
               for i in range(0, len(x), 1000))
    if not grey:
        raise ValueError("binarization='dynamic' got images that are binary already; pass "
                         "the grey levels (load_binarized_mnist('dynamic').train.x), or "
                         "use binarization='fixed' for these bits")


@dataclass
class Racer:
    """An estimator evaluated beside a run's own (the variance race), with its control."""

    name: str
    control: object
    optimizer: object
    tracker: EMALogVariance = field(default_factory=lambda: EMALogVariance(decay=0.999))


def control_and_optimizer(spec, model, config):
    """The control ``spec`` needs for ``model``, and the optimizer of its Parameters (Adam at
    10x the model's learning rate, as in the REBAR code), or None when it has none."""
    control = make_control(spec, model, config)
    params = control.parameters() if isinstance(control, Module) else []
    if getattr(config, "baseline", "trained") == "frozen":
        # C(x) keeps its initial weights: its gradients are computed but never applied
        fixed = {id(p) for p in control.baseline.parameters()}
        params = [p for p in params if id(p) not in fixed]
    if not params:
        return control, None
    return control, Adam(params, lr=10 * config.lr, betas=(0.9, config.beta2))


def _layer_noise(spec, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A layer's noise for ``spec``: the step's ``u``, and for an estimator that takes
    several samples, ``spec.samples - 1`` more draws from ``rng`` stacked after it."""
    if spec.samples == 1:
        return u
    extra = rng.random((spec.samples - 1, *u.shape)).astype(u.dtype)
    return np.concatenate([u[None], extra])


def relaxed_training_step(model, control, x, logits, samples, u, encoder,
                          f_values=None):
    """REBAR, dynamic REBAR and RELAX on an SBN: the encoder's direction of increase,
    one array per parameter tensor, and the variance gradient for the control.
    ``f_values``: ``f(b)`` at ``samples`` if the step has it already.

    Each layer's estimate is split into its REINFORCE part, centred by ``C(x)``, and
    its zero-mean correction (``relaxed_parts``; ``z~`` from the coupled noise, so
    ``z~ = z`` in value as in the REBAR code); both go into the encoder's parameters,
    where eta weighs the correction per tensor, ``g_P = A_P + eta_P B_P``; the
    control is tuned on the mean of ``g_P^2`` over the components.
    """
    inp, _ = model.split(x)
    scale = 1.0 / len(x)
    with enable_grad():
        c = control.baseline(inp).reshape((-1, 1))
        parts = []
        for i, lg in enumerate(logits):
            f = model.learning_signal(x, samples, i, u, logits, f_values)
            v = coupled_noise(lg, u[i])
            parts.append(relaxed_parts(lg, f, u[i], v, control.layer(i), baseline=c))
        g = parameter_estimates(logits, parts, encoder, control.etas(),
                                control.tunes_correction)
        size = sum(p.data.size for p in encoder)
        tuned = control.parameters()
        _, control_grads = variance_gradient(g, tuned, scale * scale / size)
    return [gp.data * scale for gp in g], control_grads


def muprop_training_step(model, control, x, logits, samples, u, f_values=None):
    """MuProp as the REBAR code has it, on an SBN: each layer's estimate with its own
    control (``C_i(x)``, ``eta0_i``, ``eta1_i``), and the gradients of each layer's
    ``mean(L_i^2)`` for them, from the same samples (:class:`~minigrad.estimators.
    score_function.MuPropSignal`), in the order of ``control.parameters()``.

    With one stochastic layer this is the REBAR code's estimator. With several, ``f(p)``
    and ``f'(p)`` are those of layer ``i``'s learning signal (the later layers resampled
    hard from the same noise), where the REBAR code puts every layer at its mean field at
    once and differentiates that mean-field ELBO through the later layers. ``f_values``:
    ``f(b)`` at ``samples`` if the step has it already."""
    inp, _ = model.split(x)
    gs, control_grads = [], []
    for i, lg in enumerate(logits):
        layer = control.layer(i)
        f = model.learning_signal(x, samples, i, u, logits, f_values)
        s = muprop_signal(lg, f, u[i])
        c, eta0, eta1 = layer.values(inp)
        gs.append(muprop_from_signal(lg, s, c, eta0, eta1))
        control_grads += layer.fit_gradients(inp, s.f_sample, s.f_mean, s.taylor)[0]
    return gs, control_grads


def backward_pass(model, spec, control, optimizer, encoder, x, u, rng):
    """The gradients of one training step on the minibatch ``x`` with the noise ``u``.

    The decoder and the prior get the exact gradient of ``log p(x, b)``; each layer's
    logits get the estimate of ``spec`` (an entry of the spec table, called under its
    contract with ``control``) through the surrogate; the relaxed control variates give
    the encoder's gradient per tensor (:func:`relaxed_training_step`). Returns the loss,
    ``f(b)`` per example (the model's objective) and the gradients for the control's
    Parameters (or None), for :func:`train_control` after the optimizer's step. ``f(b)``
    is evaluated once: the estimator's learning signals are given the step's values.
    """
    logits, samples = model.sample_encoder(x, u)
    log_joint = model.log_joint(x, samples)
    with no_grad():   # f(b); structured prediction's is log p(x_bottom | b) alone
        f_values = (log_joint.data if model.task == "structured"
                    else log_joint.data - model.log_q(x, samples, logits).data)
    uphill, control_grads, gs = None, None, []
    if isinstance(control, ModelRelaxedControl):
        uphill, control_grads = relaxed_training_step(model, control, x, logits, samples, u,
                                                      encoder, f_values)
    elif isinstance(control, ModelMuPropControl):
        gs, control_grads = muprop_training_step(model, control, x, logits, samples, u,
                                                 f_values)
    else:
        inp, _ = model.split(x)
        gs = [spec.estimate(lg, model.learning_signal(x, samples, i, u, logits, f_values),
                            _layer_noise(spec, u[i], rng), control, inp)
              for i, lg in enumerate(logits)]
    loss = log_joint.sum() * (-1.0 / len(x))
    for lg, g in zip(logits, gs):
        loss = loss - surrogate(lg, g) * (1.0 / len(x))
    optimizer.zero_grad()
    loss.backward()
    for p, g in zip(encoder, uphill or []):   # descend: the estimate points uphill
        p.grad = Tensor(-g) if p.grad is None else p.grad + Tensor(-g)
    return loss, f_values, control_grads


def train_control(control, optimizer, model, x, f_values, control_grads) -> None:
    """After the model's step: a control's moving averages take their step, and its
    Parameters take one with ``optimizer`` on their gradients (the variance gradient of
    the relaxed control variates, NVIL's squared error of ``C(x)``, or the mean square
    of the learning signal of MuProp as the REBAR code has it)."""
    if isinstance(control, MovingAverageBaseline):
        control.update(f_values)
    elif isinstance(control, NVILControl):
        inp, _ = model.split(x)
        control_grads, predicted = control.fit_gradients(inp, f_values)
        control.update(f_values, predicted)
    if control_grads is None or optimizer is None:
        return
    for p, d in zip(control.parameters(), control_grads):
        p.grad = Tensor(d)
    optimizer.step()


def encoder_gradient(spec, control, model, x, u, rng, f_values=None
                     ) -> tuple[np.ndarray, list | None]:
    """One estimator's estimate of the encoder's direction of increase ``d ELBO / d phi`` (the
    batch mean), flattened, and the gradients for its control's Parameters: what the
    variance race tracks. Changes no parameter. ``f_values``: ``f(b)`` at the samples of
    ``u``, if the step has it already."""
    encoder = model.encoder_parameters()
    logits, samples = model.sample_encoder(x, u)
    if isinstance(control, ModelRelaxedControl):
        uphill, control_grads = relaxed_training_step(model, control, x, logits, samples, u,
                                                      encoder, f_values)
        return np.concatenate([a.ravel() for a in uphill]), control_grads
    inp, _ = model.split(x)
    control_grads = None
    if isinstance(control, ModelMuPropControl):
        gs, control_grads = muprop_training_step(model, control, x, logits, samples, u,
                                                 f_values)
    else:
        gs = [spec.estimate(lg, model.learning_signal(x, samples, i, u, logits, f_values),
                            _layer_noise(spec, u[i], rng), control, inp)
              for i, lg in enumerate(logits)]
    terms = [surrogate(lg, g) for lg, g in zip(logits, gs)]
    found = grad(sum(terms) * (1.0 / len(x)), encoder, allow_unused=True)
    flat = [np.zeros_like(p.data) if d is None else d.data for p, d in zip(encoder, found)]
    return np.concatenate([a.ravel() for a in flat]), control_grads


def _history(config, train_x, val_x):
    return train_sbn(config, train_x, val_x)[1]


def run_sbn_comparison(configs: list[SBNConfig], train_x, val_x, progress: bool = True,
                       executor=None) -> dict[str, SBNHistory]:
    """Train every configuration (independent runs, on every core); histories by label.

    ``train_x``: the training images, or a dict of them by binarization
    (``{"fixed": bits, "dynamic": grey_levels}``) when the configurations mix both.
    """
    def images(config):
        if not isinstance(train_x, dict):
            return train_x
        if config.binarization not in train_x:
            raise ValueError(f"run_sbn_comparison: {config.label!r} needs the "
                             f"{config.binarization!r} training images; train_x has "
                             f"{sorted(train_x)}")
        return train_x[config.binarization]

    histories = map_runs(_history, [(c, images(c), val_x) for c in configs],
                         executor=executor, progress=progress, desc="SBN runs")
    return {c.label: h for c, h in zip(configs, histories)}


def time_sbn_steps(config: SBNConfig, train_x: np.ndarray, steps: int = 200) -> float:
    """Measured training steps per second of one configuration (no evaluation)."""
    short = SBNConfig(**{**config.__dict__, "steps": steps, "record_every": steps,
                         "eval_k": 1, "eval_examples": 1})
    _, history = train_sbn(short, train_x, train_x[:1])
    return steps / history.seconds


@dataclass
class VarianceRace:
    """The log-variance of several estimators' encoder gradients along one trajectory."""

    followed: str
    steps: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    log_variance: dict = field(default_factory=dict)
    temperature: list[float] = field(default_factory=list)
    seconds: float = 0.0


def variance_race(config: SBNConfig, train_x: np.ndarray, estimators: list[str],
                  progress: bool = False) -> VarianceRace:
    """Train with ``config.estimator`` and, at every step, evaluate every estimator in
    ``estimators`` on the same minibatch and noise (the REBAR code's
    ``SBNTrackGradVariances``); EMA (0.999) log-variance of each one's encoder gradient.
    It is :meth:`SBNRun.step` with the others as racers."""
    with threadpool_limits(limits=1, user_api="blas"):
        run = SBNRun(config, train_x, train_x[:1], racers=tuple(estimators))
        names = list(dict.fromkeys([config.estimator, *estimators]))
        race = VarianceRace(config.estimator, log_variance={name: [] for name in names})
        for _ in tqdm(range(config.steps), desc="variance race", disable=not progress):
            records = len(run.history.steps)
            run.step()
            if len(run.history.steps) == records:
                continue
            race.steps.append(run.history.steps[-1])
            race.train_elbo.append(run.history.train_elbo[-1])
            for name in names:
                tracker = run.tracker if name == config.estimator else run.racers[name].tracker
                race.log_variance[name].append(tracker.log_variance)
            temperature = (run.control.temperature
                           if isinstance(run.control, ModelRelaxedControl) else float("nan"))
            race.temperature.append(temperature)
        race.seconds = run.history.seconds
        return race


def _race(config, train_x, estimators):
    return variance_race(config, train_x, estimators)


def run_variance_race(configs: list[SBNConfig], train_x, estimators: list[str],
                      progress: bool = True, executor=None) -> list[VarianceRace]:
    """Several races (seeds) on every core."""
    return map_runs(_race, [(c, train_x, estimators) for c in configs],
                    executor=executor, progress=progress, desc="variance races")

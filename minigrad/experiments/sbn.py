"""Training sigmoid belief networks with one encoder-gradient estimator per run.

The protocol is the REBAR paper's (Tucker et al. 2017): statically binarized MNIST, batch 24,
Adam with beta2 = 0.99999, learning rate 3e-4. At every step the decoder and the prior get the
exact gradient of ``log p(x, b)`` at the sampled ``b``; each stochastic layer's logits get the
estimator's estimate of ``d E[f] / d logits`` through
:func:`~minigrad.estimators.base.surrogate`. Every run of a comparison starts from the same
weights and sees the same minibatches.

An estimator enters through a small adapter in :data:`ESTIMATORS` (a table, not an if/elif):
``estimates(...)`` returns one estimate per layer, ``update(...)`` changes its baselines
after the step. An adapter that sets the encoder's gradient itself (the relaxed control
variates weigh their estimate per parameter tensor, in ``finish_encoder_gradients``) returns
None for each layer, and the step sends nothing through the encoder for it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad import functions as F
from minigrad.data import minibatch_stream
from minigrad.estimators import relaxed as RX
from minigrad.estimators import sbn_estimators as E
from minigrad.estimators.antithetic import arm, disarm
from minigrad.estimators.base import surrogate
from minigrad.estimators.diagnostics import EMALogVariance
from minigrad.models.sbn import INITS, SigmoidBeliefNet
from minigrad.nn import Linear, Parameter, Sequential, Tanh
from minigrad.optim import Adam
from minigrad.tensor import Tensor, enable_grad, grad, no_grad

from .checkpoint import Resumable
from .executor import map_runs

__all__ = ["SBNConfig", "SBNHistory", "ESTIMATORS", "SBNRun", "train_sbn",
           "run_sbn_comparison", "time_sbn_steps", "relaxed_learning_signal",
           "encoder_gradient", "backward_pass", "VarianceRace", "variance_race", "run_variance_race",
           "record_sbn_run"]


# ---------------------------------------------------------------------- adapters
class _Reinforce:
    """REINFORCE with a moving-average baseline of the ELBO."""

    def __init__(self, model, config):
        self.baseline = E.MovingAverageBaseline(decay=0.9)

    def estimates(self, model, x, logits, samples, u, rng):
        c = self.baseline.value()
        with no_grad():
            return [E.reinforce(lg.detach(), model.learning_signal(x, samples, i, u, logits),
                                u[i], baseline=c)
                    for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        self.baseline.update(f_values)


class _LeaveOneOut:
    """REINFORCE with leave-one-out centring over 2 samples (the first is the one trained)."""

    def __init__(self, model, config):
        self.k = 2

    def estimates(self, model, x, logits, samples, u, rng):
        out = []
        for i, lg in enumerate(logits):
            extra = rng.random((self.k - 1, *u[i].shape)).astype(u[i].dtype)
            noise = np.concatenate([u[i][None], extra])
            f = model.learning_signal(x, samples, i, u, logits)
            out.append(E.reinforce_loo(lg, f, noise))
        return out

    def update(self, x, f_values):
        pass


class _NVIL:
    """NVIL: input-dependent baseline, running mean, variance normalisation (optional)."""

    def __init__(self, model, config):
        self.baseline = E.NVILBaseline(model.input_mean, rng=config.seed + 7,
                                       lr=10 * config.lr, normalise=config.nvil_normalise,
                                       dtype=model.dtype)

    def estimates(self, model, x, logits, samples, u, rng):
        inp, _ = model.split(x)
        values, scale = self.baseline(inp)
        return [E.nvil(lg, model.learning_signal(x, samples, i, u, logits), u[i], values,
                       scale)
                for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        self.baseline.update(x[:, :self.baseline.input_mean.size], f_values)


class _Plain:
    """An estimator with no state: MuProp, SimpleMuProp."""

    def __init__(self, model, config, fn):
        self.fn = fn

    def estimates(self, model, x, logits, samples, u, rng):
        return [self.fn(lg, model.learning_signal(x, samples, i, u, logits), u[i])
                for i, lg in enumerate(logits)]

    def update(self, x, f_values):
        pass


class _Concrete(_Plain):
    def __init__(self, model, config):
        t = config.temperature
        super().__init__(model, config, lambda lg, f, u: E.concrete(lg, f, u, temperature=t))


ESTIMATORS = {
    "REINFORCE": _Reinforce,
    "REINFORCE LOO": _LeaveOneOut,
    "NVIL": _NVIL,
    "MuProp": lambda model, config: _Plain(model, config, E.muprop),
    "SimpleMuProp": lambda model, config: _Plain(model, config, E.simple_muprop),
    "Concrete": _Concrete,
    # antithetic: f at b (the sample trained on) and at its mirror b~, from the same u
    "ARM": lambda model, config: _Plain(model, config, arm),
    "DisARM": lambda model, config: _Plain(model, config, disarm),
    # relaxed control variates (the adapters are at the end of the file)
    "REBAR": lambda model, config: _RelaxedControlVariate(model, config),
    "REBAR (Concrete relaxation)": lambda model, config: _RelaxedControlVariate(
        model, config, relaxation=RX.concrete_relaxation),
    "dynamic REBAR": lambda model, config: _RelaxedControlVariate(
        model, config, learn_eta=True, learn_temperature=True),
    "RELAX": lambda model, config: _RelaxedControlVariate(
        model, config, learn_temperature=True, surrogate=(200, 200),
        relaxation=RX.concrete_relaxation),
}


# ---------------------------------------------------------------------- runs
@dataclass
class SBNConfig:
    """One training run: the model, the estimator (a key of :data:`ESTIMATORS`), the steps."""

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

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; one of {list(ESTIMATORS)}")


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


def _nothing(*args) -> None:
    pass


def _encoder_params(model):
    return [p for name, p in model.named_parameters() if name.startswith("q")]


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
    optimizer, the estimator's state (baselines, control variates and their optimizers),
    the variance tracker, every Generator, the minibatch stream, the step count and the
    history so far; :mod:`~minigrad.experiments.checkpoint` writes it to a file and puts it
    back into a fresh run made with the same configuration and data.
    """

    family = "sbn"

    def __init__(self, config: SBNConfig, train_x: np.ndarray, val_x: np.ndarray):
        self.config, self.val_x = config, val_x
        init_rng, self.batch_rng, self.noise_rng, self.eval_rng = \
            np.random.default_rng(config.seed).spawn(4)
        self.model = SigmoidBeliefNet(train_x.mean(axis=0), n_layers=config.n_layers,
                                      nonlinear=config.nonlinear, task=config.task,
                                      rng=init_rng, init=config.init)
        self.estimator = ESTIMATORS[config.estimator](self.model, config)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr, betas=(0.9, config.beta2))
        self.tracker = EMALogVariance(decay=0.999)
        self.encoder = _encoder_params(self.model)
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
        u = model.noise(self.noise_rng, len(x))
        loss, f_values = backward_pass(model, self.estimator, self.optimizer, self.encoder,
                                       x, u, self.noise_rng)
        # the optimizer minimises -ELBO: the ascent direction's variance is the same
        self.tracker.update(np.concatenate([p.grad.data.ravel() for p in self.encoder]))
        self.optimizer.step()
        self.estimator.update(x, f_values)
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

    state_names = ("model", "optimizer", "estimator", "tracker", "batch_rng", "noise_rng",
                   "eval_rng", "stream", "history", "window", "steps_done")


def backward_pass(model, estimator, optimizer, encoder, x, u, rng):
    """The gradients of one training step on the minibatch ``x`` with the noise ``u``.

    The decoder and the prior get the exact gradient of ``log p(x, b)``; each layer's
    logits get the estimator's estimate through the surrogate, or, for an estimator that
    sets the encoder's gradient itself (its estimate per layer is None), its
    ``finish_encoder_gradients``. Returns the loss and ``f(b)`` per example (for the
    estimator's ``update`` after the optimizer's step).
    """
    logits, samples = model.sample_encoder(x, u)
    gs = estimator.estimates(model, x, logits, samples, u, rng)
    log_joint = model.log_joint(x, samples)
    with no_grad():
        f_values = log_joint.data - model.log_q(x, samples, logits).data
    loss = log_joint.sum() * (-1.0 / len(x))
    for lg, g in zip(logits, gs):
        if g is not None:  # None: the estimator sets the encoder's gradient itself
            loss = loss - surrogate(lg, g) * (1.0 / len(x))
    optimizer.zero_grad()
    loss.backward()
    # estimators that weigh their estimate per parameter tensor finish it here
    getattr(estimator, "finish_encoder_gradients", _nothing)(encoder)
    return loss, f_values


def _history(config, train_x, val_x):
    return train_sbn(config, train_x, val_x)[1]


def run_sbn_comparison(configs: list[SBNConfig], train_x, val_x, progress: bool = True,
                       executor=None) -> dict[str, SBNHistory]:
    """Train every configuration (independent runs, on every core); histories by label."""
    histories = map_runs(_history, [(c, train_x, val_x) for c in configs],
                         executor=executor, progress=progress, desc="SBN runs")
    return {c.label: h for c, h in zip(configs, histories)}


def time_sbn_steps(config: SBNConfig, train_x: np.ndarray, steps: int = 200) -> float:
    """Measured training steps per second of one configuration (no evaluation)."""
    short = SBNConfig(**{**config.__dict__, "steps": steps, "record_every": steps,
                         "eval_k": 1, "eval_examples": 1})
    _, history = train_sbn(short, train_x, train_x[:1])
    return steps / history.seconds


# ---------------------------------------------------------------------- relaxed control variates
def relaxed_learning_signal(model, x, samples, layer: int, u, logits, lam,
                            relaxation=RX.muprop_relaxation):
    """``f~(s)``: the objective with layer ``layer``'s sample relaxed to ``s``.

    The layers after it are relaxed too, each from its own noise,
    ``s_k = sigma_lambda(logits_k + logit(1 - u_k))`` with ``logits_k`` computed from the
    relaxed ``s_{k-1}`` (the REBAR code's ``quadratic`` control variate: layer ``l``'s
    relaxation switches to continuous from layer ``l`` on). A hard sample below would make
    ``f~`` a step function of ``s``, and the reparameterised gradient of a step function is
    biased. As in :meth:`SigmoidBeliefNet.learning_signal`, the logits up to ``layer`` are
    constants.
    """
    given = list(samples[:layer])
    known = [lg.detach() for lg in logits[:layer + 1]]

    def f(s: Tensor) -> Tensor:
        bs = given + [s]
        for k in range(layer + 1, model.n_layers):
            lg = model.encoder_logits(k, bs[k - 1])
            bs.append(relaxation(RX.logistic_sample(lg, u[k]), lg, lam))
        return model.objective(x, bs, known)

    return f


class _RelaxedControlVariate:
    """REBAR, dynamic REBAR and RELAX (:mod:`minigrad.estimators.relaxed`) on an SBN.

    Each stochastic layer has its own relaxation (:func:`relaxed_learning_signal`) and
    ``z~`` uses the coupled noise, so ``z~ = z`` in value, as in the REBAR code. A layer's
    estimate is split into its REINFORCE part, centred by an input-dependent baseline
    ``C(x)`` (one tanh layer of 100, as the REBAR code's), and its zero-mean correction;
    both go to the encoder's parameters, where the correction is weighed by one ``eta``
    per parameter tensor: ``g_P = A_P + eta_P B_P``, ``eta_P = 2 sigmoid(w_P)``.

    The tuned parameters (``C``, and as configured the ``w_P``, ``log lambda`` and the
    RELAX networks ``r_rho``) take their own Adam step (10x the model's learning rate, as
    in the REBAR code) on ``d mean(g_P^2) / d (them)``; they never see the model loss. The
    model's encoder gradient is set by :meth:`finish_encoder_gradients`.
    """

    def __init__(self, model, config, *, learn_eta: bool = False,
                 learn_temperature: bool = False, surrogate=None,
                 relaxation=RX.muprop_relaxation):
        rng = np.random.default_rng(config.seed + 11)
        dtype = model.dtype
        self.relaxation = relaxation
        self.baseline = Sequential(Linear(model.n_input, 100, rng, dtype=dtype), Tanh(),
                                   Linear(100, 1, rng, dtype=dtype))
        tuned = list(self.baseline.parameters())
        self.eta_logits = None
        if learn_eta:
            self.eta_logits = [Parameter(np.zeros((), dtype)) for _ in _encoder_params(model)]
            tuned += self.eta_logits
        log_lam = float(np.log(config.temperature))
        self.log_lam = Parameter(np.array(log_lam, dtype)) if learn_temperature else log_lam
        if learn_temperature:
            tuned.append(self.log_lam)
        self.nets = None
        if surrogate is not None:
            self.nets = [RX.RelaxSurrogate(model.n_hidden, surrogate, rng=rng, dtype=dtype)
                         for _ in range(model.n_layers)]
            tuned += [p for net in self.nets for p in net.parameters()]
        self.tuned = tuned
        # whether the correction itself depends on tuned values (eta only weighs it)
        self.tunes_correction = learn_temperature or surrogate is not None
        self.optimizer = Adam(tuned, lr=10 * config.lr, betas=(0.9, config.beta2))
        self.ascent: list[np.ndarray] = []
        self.tuned_grads: list[np.ndarray] = []
        self.variance_objective = float("nan")

    @property
    def temperature(self) -> float:
        return math.exp(float(self.log_lam.data if isinstance(self.log_lam, Tensor)
                              else self.log_lam))

    @property
    def etas(self) -> list[float]:
        if self.eta_logits is None:
            return [1.0]
        return [float(2 / (1 + np.exp(-w.data))) for w in self.eta_logits]

    def _parts(self, model, x, logits, samples, u, c, lam, i):
        f = model.learning_signal(x, samples, i, u, logits)
        f_soft = relaxed_learning_signal(model, x, samples, i, u, logits, lam, self.relaxation)
        v = RX.coupled_noise(logits[i], u[i])
        if self.nets is None:
            return RX.rebar_parts(logits[i], f, u[i], v, self.log_lam, baseline=c,
                                  relaxation=self.relaxation, f_relaxed=f_soft)
        return RX.relax_parts(logits[i], f, u[i], v, self.log_lam, self.nets[i],
                              relaxation=self.relaxation, baseline=c, f_relaxed=f_soft)

    def estimates(self, model, x, logits, samples, u, rng):
        encoder = _encoder_params(model)
        inp, _ = model.split(x)
        scale = 1.0 / len(x)
        with enable_grad():
            centred = Tensor(np.asarray(inp, dtype=model.dtype) - model.input_mean)
            c = self.baseline(centred)                                # (batch, 1)
            lam = F.exp(self.log_lam) if isinstance(self.log_lam, Tensor) else self.temperature
            parts = [self._parts(model, x, logits, samples, u, c, lam, i)
                     for i in range(len(logits))]
            # vector-Jacobian products of the logits: the parts reach the parameters only
            # through the logits, never through their own dependence on the encoder (a
            # relaxed layer below runs through its weights)
            a_p = RX.grad_keeping_graph(logits, encoder, True, allow_unused=True,
                                        grad_outputs=[a_i for a_i, _ in parts])
            # The correction's gradients need a graph only if it depends on tuned values
            # (lambda, r_rho); eta weighs them after, which needs their values alone. This
            # last pass through the encoder's graph frees it, so that the optimizer can
            # update the encoder's weights in place.
            b_p = grad(logits, encoder, [h_i for _, h_i in parts],
                       create_graph=self.tunes_correction, allow_unused=True,
                       retain_graph=False)
            etas = ([2.0 * F.sigmoid(w) for w in self.eta_logits] if self.eta_logits
                    else [1.0] * len(encoder))
            g = [a + eta * b for a, eta, b in zip(a_p, etas, b_p)]
            size = sum(p.data.size for p in encoder)
            variance = sum((gp * gp).sum() for gp in g) * (scale * scale / size)
            d_tuned = RX.grad_keeping_graph(variance, self.tuned, allow_unused=True)
        self.ascent = [gp.data * scale for gp in g]
        self.tuned_grads = [np.zeros_like(p.data) if d is None else d.data
                            for p, d in zip(self.tuned, d_tuned)]
        self.variance_objective = float(variance.data)
        # the whole estimate goes in through finish_encoder_gradients
        return [None] * len(logits)

    def finish_encoder_gradients(self, encoder) -> None:
        """Add the (descent) gradient ``-g_P`` of the last estimates to the encoder's."""
        for p, g in zip(encoder, self.ascent):
            p.grad = Tensor(-g) if p.grad is None else p.grad + Tensor(-g)

    def update(self, x, f_values):
        for p, d in zip(self.tuned, self.tuned_grads):
            p.grad = Tensor(d)
        self.optimizer.step()


def encoder_gradient(adapter, model, x, u, rng) -> np.ndarray:
    """One adapter's estimate of the encoder's ascent direction ``d ELBO / d phi`` (the
    batch mean), flattened: what the variance race tracks. Changes no parameter."""
    encoder = _encoder_params(model)
    logits, samples = model.sample_encoder(x, u)
    gs = adapter.estimates(model, x, logits, samples, u, rng)
    flat = [np.zeros_like(p.data) for p in encoder]
    terms = [surrogate(lg, g) for lg, g in zip(logits, gs) if g is not None]
    if terms:
        found = grad(sum(terms) * (1.0 / len(x)), encoder, allow_unused=True)
        flat = [zero if d is None else d.data for zero, d in zip(flat, found)]
    for i, extra in enumerate(getattr(adapter, "ascent", [])):
        flat[i] = flat[i] + extra
    return np.concatenate([a.ravel() for a in flat])


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
    ``SBNTrackGradVariances``); EMA (0.999) log-variance of each one's encoder gradient."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _variance_race(config, train_x, estimators, progress)


def _variance_race(config, train_x, estimators, progress):
    init_rng, batch_rng, noise_rng, _ = np.random.default_rng(config.seed).spawn(4)
    model = SigmoidBeliefNet(train_x.mean(axis=0), n_layers=config.n_layers,
                             nonlinear=config.nonlinear, task=config.task, rng=init_rng)
    names = list(dict.fromkeys([config.estimator, *estimators]))
    adapters = {name: ESTIMATORS[name](model, config) for name in names}
    trackers = {name: EMALogVariance(decay=0.999) for name in names}
    encoder = _encoder_params(model)
    optimizer = Adam(model.parameters(), lr=config.lr, betas=(0.9, config.beta2))
    stream = minibatch_stream(train_x, None, config.batch_size, batch_rng)
    race = VarianceRace(config.estimator, log_variance={name: [] for name in names})
    window = []
    start = time.perf_counter()
    for step in tqdm(range(1, config.steps + 1), desc="variance race", disable=not progress):
        x, _ = next(stream)
        u = model.noise(noise_rng, len(x))
        followed = None
        for name, adapter in adapters.items():
            g = encoder_gradient(adapter, model, x, u, noise_rng)
            trackers[name].update(g)
            if name == config.estimator:
                followed = g
        _, samples = model.sample_encoder(x, u)
        log_joint = model.log_joint(x, samples)
        optimizer.zero_grad()
        (log_joint.sum() * (-1.0 / len(x))).backward()
        offset = 0
        for p in encoder:
            p.grad = Tensor(-followed[offset:offset + p.data.size].reshape(p.shape))
            offset += p.data.size
        optimizer.step()
        with no_grad():
            f_values = log_joint.data - model.log_q(x, samples).data
        for adapter in adapters.values():
            adapter.update(x, f_values)
        window.append(float(f_values.mean()))
        if step % config.record_every == 0 or step == config.steps:
            race.steps.append(step)
            race.train_elbo.append(float(np.mean(window)))
            for name in names:
                race.log_variance[name].append(trackers[name].log_variance)
            race.temperature.append(getattr(adapters[config.estimator], "temperature",
                                            float("nan")))
            window = []
    race.seconds = time.perf_counter() - start
    return race


def _race(config, train_x, estimators):
    return variance_race(config, train_x, estimators)


def run_variance_race(configs: list[SBNConfig], train_x, estimators: list[str],
                      progress: bool = True, executor=None) -> list[VarianceRace]:
    """Several races (seeds) on every core."""
    return map_runs(_race, [(c, train_x, estimators) for c in configs],
                    executor=executor, progress=progress, desc="variance races")


def record_sbn_run(config: SBNConfig, path: str, command: str, progress_log: str | None = None
                   ) -> SBNHistory:
    """Train one configuration and keep its history in a JSON file at ``path``, rewritten at
    every record (a run that is stopped leaves the steps it reached), with ``command``."""
    from minigrad.data import load_binarized_mnist

    mnist = load_binarized_mnist()

    def save(history: SBNHistory, done: bool = False) -> None:
        record = {"command": command, "config": config.__dict__, "complete": done,
                  "steps": history.steps, "train_elbo": history.train_elbo,
                  "log_variance": history.log_variance, "seconds": history.seconds,
                  "val_iwae": history.val_iwae if done else None}
        with open(path, "w", encoding="utf8") as out:
            json.dump(record, out, indent=1)
        if progress_log:
            with open(progress_log, "a", encoding="utf8") as log:
                log.write(f"step {history.steps[-1]} elbo {history.train_elbo[-1]:.2f} "
                          f"logvar {history.log_variance[-1]:.2f} "
                          f"seconds {history.seconds:.0f}\n")

    _, history = train_sbn(config, mnist.train.x, mnist.validation.x, on_record=save)
    save(history, done=True)
    return history


def _main(argv=None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Train one SBN and record its history.")
    parser.add_argument("--estimator", default="REBAR")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--nonlinear", action="store_true")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--record-every", type=int, default=2084)
    parser.add_argument("--eval-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default="glorot", choices=INITS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    config = SBNConfig(f"{args.estimator}, {args.steps} steps", args.estimator, args.steps,
                       n_layers=args.layers, nonlinear=args.nonlinear, lr=args.lr,
                       record_every=args.record_every, eval_examples=args.eval_examples,
                       seed=args.seed, init=args.init)
    words = list(sys.argv[1:] if argv is None else argv)
    if "--log" in words:   # where the progress goes is not part of the experiment
        at = words.index("--log")
        del words[at:at + 2]
    command = "python -m minigrad.experiments.sbn " + " ".join(words)
    record_sbn_run(config, args.out, command, args.log)


if __name__ == "__main__":
    _main()

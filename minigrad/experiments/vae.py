"""Training the categorical VAE with one encoder-gradient estimator per run, and the variance race.

Every run of a comparison starts from the same weights (the model's Generator is spawned from
``config.seed``) and sees the same minibatches; only the estimator's noise differs. At every
step (:func:`step_loss`):

- the decoder gets the exact gradient of its part of the objective at the sample(s) the
  estimator drew (one-hot; the relaxed sample for Gumbel-softmax, which trains its decoder
  there), averaged over the ``k`` samples of a multi-sample estimator (importance-weighted
  for the k-sample bound);
- the encoder's logits get the estimator's estimate of ``d E[f] / d logits`` through
  :func:`~minigrad.estimators.base.surrogate`, plus the exact gradient of the KL term (ELBO)
  or the pathwise term ``-sum_i w_i d log q(b_i | x)`` (k-sample bound);
- an estimator with a trained control (dynamic REBAR, RELAX) gets ``d sum(g^2) / d phi``
  from its variance-gradient function, and its own Adam steps the control.

The estimators are the rows of the spec table (:data:`minigrad.estimators.catalogue.SPECS`)
with ``vae`` set (:data:`~minigrad.estimators.catalogue.VAE_ESTIMATORS`, their names): the
row gives the estimate, its noise and number of samples, its target (the ELBO's ``E[f]``, or
the k-sample bound for VIMCO), whether ``f`` is evaluated at a relaxed sample, the control
(made by the row's factory from the model and the config) and how it is tuned, and the
evaluations of ``f`` per step. The history records the training ELBO, the validation bound,
the seconds and the evaluations of ``f`` (decoder passes over a batch).

:func:`variance_race` follows one estimator's trajectory and, every ``record_every`` steps,
evaluates every estimator of a list ``draws`` times at the same parameters and minibatch:
the log of the mean (over the encoder's parameters) variance of its encoder gradient.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from minigrad.data import minibatch_stream
from minigrad.estimators import categorical as C
from minigrad.estimators.base import surrogate
from minigrad.estimators.catalogue import (ESTIMATORS, K_SAMPLE_BOUND, VAE_ESTIMATORS,
                                           EstimatorSpec, draw_noise, make_control)
from minigrad.estimators.onehot import gumbel_from_uniform, gumbel_softmax
from minigrad.models.vae import CategoricalVAE
from minigrad.optim import Adam
from minigrad.tensor import Tensor, grad, no_grad

from .checkpoint import Resumable
from .executor import map_runs

__all__ = ["VAE_ESTIMATORS", "vae_estimator", "draw_vae_noise", "hard_samples", "VAEConfig",
           "VAEHistory", "VAERun", "train_vae", "run_vae_comparison", "step_loss",
           "encoder_gradient", "VAEVarianceRace", "variance_race", "shapes_with_bits"]


# ---------------------------------------------------------------------- the table
def vae_estimator(name: str) -> EstimatorSpec:
    """The spec-table row called ``name``, if the VAE can train with it."""
    if name not in VAE_ESTIMATORS:
        raise ValueError(f"unknown VAE estimator {name!r}; one of {list(VAE_ESTIMATORS)} "
                         "(the rows of minigrad.estimators.catalogue.SPECS with vae=True)")
    return ESTIMATORS[name]


def draw_vae_noise(spec: EstimatorSpec, rng, batch: int, n: int, classes: int
                   ) -> np.ndarray:
    """The noise of one estimate for a minibatch: the table's :func:`draw_noise`."""
    return draw_noise(spec, (batch, n, classes), rng)


def hard_samples(spec: EstimatorSpec, logits: np.ndarray, u: np.ndarray) -> list:
    """The one-hot samples the estimator drew from ``u``: by the inverse CDF from noise
    per variable (``k`` of them for a multi-sample estimator), by Gumbel-max from noise
    per logit (ARSM's argmin over a Dirichlet draw is the same sample)."""
    if spec.noise == "per logit":
        return [C.gumbel_max_sample(logits, u)]
    return [C.categorical_sample(logits, u_i) for u_i in (u if spec.samples > 1 else [u])]


# ---------------------------------------------------------------------- one step
def _decoder_samples(model, spec, logits, u, temperature):
    if spec.relaxed_sample:
        g = gumbel_from_uniform(u).astype(model.dtype)
        with no_grad():
            return [gumbel_softmax(Tensor(logits), temperature, g).data]
    return hard_samples(spec, logits, u)


def step_loss(model: CategoricalVAE, spec: EstimatorSpec, control, x, u,
              temperature: float = 0.5):
    """The loss whose gradient is one step's (descent) gradient for the parameters.

    ``spec``: a row of the spec table the VAE can train with; ``u`` its noise
    (:func:`draw_vae_noise`). Returns ``(loss, elbo, control_gradients)``: ``elbo``
    is the one-sample ELBO per example at the first hard sample (what the history
    records); ``control_gradients`` the variance gradient of a trained control (else
    None).
    """
    x = model.check_images(x)
    batch = len(x)
    logits = model.encoder_logits(x)
    values = logits.data
    k_sample = spec.target == K_SAMPLE_BOUND
    f = model.log_weight(x, values) if k_sample else model.reconstruction(x)
    control_gradients = None
    if spec.tune is not None:
        g, control_gradients = spec.tune(Tensor(values), f, u, control)
    else:
        g = spec.estimate(Tensor(values), f, u, control, values)
    hard = hard_samples(spec, values, u)
    if k_sample:
        # the pathwise part of the k-sample bound: sum_i w_i d log_weight(b_i),
        # w = softmax of the log-weights
        weights = [model.log_likelihood(x, b) + model.log_prior(b)
                   - model.log_q(b, logits) for b in hard]
        with no_grad():
            stacked = np.stack([w.data.astype(np.float64) for w in weights])
            normalised = np.exp(stacked - C.log_mean_exp(stacked, axis=0)) / len(hard)
        objective = sum(w * Tensor(normalised[i].astype(model.dtype))
                        for i, w in enumerate(weights))
    else:
        decoded = _decoder_samples(model, spec, values, u, temperature)
        objective = (sum(model.log_likelihood(x, s) for s in decoded)
                     * (1.0 / len(decoded)))
        objective = objective - model.kl(logits)
    loss = objective.sum() * (-1.0 / batch) - surrogate(logits, g) * (1.0 / batch)
    with no_grad():
        elbo = model.log_likelihood(x, hard[0]) - model.kl(logits)
        elbo = elbo.data.astype(np.float64)
    return loss, elbo, control_gradients


def encoder_parameters(model: CategoricalVAE) -> list:
    return model.encoder.parameters()


def encoder_gradient(model, spec, control, x, u, temperature=0.5) -> np.ndarray:
    """One estimate of the encoder's (descent) gradient, flattened; changes nothing."""
    loss, _, _ = step_loss(model, spec, control, x, u, temperature)
    params = encoder_parameters(model)
    found = grad(loss, params, allow_unused=True)
    return np.concatenate([(np.zeros_like(p.data) if d is None else d.data).ravel()
                           for p, d in zip(params, found)])


# ---------------------------------------------------------------------- runs
@dataclass
class VAEConfig:
    """One training run: the latent shape, the estimator (a name in :data:`VAE_ESTIMATORS`,
    a row of the spec table)."""

    label: str
    estimator: str
    steps: int
    n: int = 8
    classes: int = 4
    hidden: int = 200
    batch_size: int = 50
    lr: float = 1e-3
    control_lr: float = 1e-3
    temperature: float = 0.5
    relax_hidden: int = 32
    record_every: int = 100
    eval_k: int = 100
    eval_examples: int | None = 1000   # None: the whole validation set
    seed: int = 0

    def __post_init__(self):
        vae_estimator(self.estimator)
        for name in ("steps", "batch_size", "record_every", "eval_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VAEConfig: {name} must be at least 1, got "
                                 f"{getattr(self, name)}")


@dataclass
class VAEHistory:
    """What one run recorded every ``record_every`` steps."""

    label: str
    steps: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)       # training time so far
    evaluations: list[int] = field(default_factory=list)     # evaluations of f so far
    val_bound: float = float("nan")
    elapsed: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds[-1] / self.steps[-1] if self.steps else float("nan")


class VAERun(Resumable):
    """One VAE training run, a step at a time, with a state that can be saved and restored."""

    family = "vae"
    state_names = ("model", "optimizer", "control", "control_optimizer", "batch_rng",
                   "noise_rng", "eval_rng", "stream", "history", "window", "steps_done")

    def __init__(self, config: VAEConfig, train_x: np.ndarray, val_x: np.ndarray):
        self.config, self.val_x = config, val_x
        self.spec = vae_estimator(config.estimator)
        init_rng, self.batch_rng, self.noise_rng, self.eval_rng = \
            np.random.default_rng(config.seed).spawn(4)
        self.model = CategoricalVAE(np.asarray(train_x).mean(axis=0), config.n,
                                    config.classes, config.hidden, rng=init_rng)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.control = make_control(self.spec, model=self.model, config=config)
        self.control_optimizer = (None if self.spec.tune is None
                                  else Adam(self.control.parameters(), lr=config.control_lr))
        self.stream = minibatch_stream(train_x, None, config.batch_size, self.batch_rng)
        self.history = VAEHistory(config.label)
        self.window: list[float] = []
        self.steps_done = 0
        self.per_step = self.spec.cost(config.n, config.classes, self.spec.samples)

    @property
    def total_steps(self) -> int:
        return self.config.steps

    @property
    def objective(self) -> dict[str, float]:
        return {"elbo": self.history.train_elbo[-1] if self.history.train_elbo
                else float("nan")}

    def step(self) -> None:
        """One training step on the next minibatch (and a history record every
        ``record_every`` steps)."""
        x, _ = next(self.stream)
        self.train_on(x)

    def train_on(self, x: np.ndarray) -> None:
        """One training step on the minibatch ``x``, with the run's own noise."""
        config, model, spec = self.config, self.model, self.spec
        started = time.perf_counter()
        u = draw_vae_noise(spec, self.noise_rng, len(x), model.n, model.classes)
        loss, elbo, control_grads = step_loss(model, spec, self.control, x, u,
                                              config.temperature)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if control_grads is not None:
            for p, d in zip(self.control.parameters(), control_grads):
                p.grad = Tensor(d)
            self.control_optimizer.step()
        self.window.append(float(elbo.mean()))
        self.steps_done = step = self.steps_done + 1
        if step % config.record_every == 0 or step == config.steps:
            h = self.history
            h.steps.append(step)
            h.train_elbo.append(float(np.mean(self.window)))
            h.seconds.append(h.elapsed + time.perf_counter() - started)
            h.evaluations.append(step * self.per_step)
            self.window = []
        self.history.elapsed += time.perf_counter() - started

    def finish(self) -> VAEHistory:
        """The validation bound (``eval_k`` importance samples); the history."""
        config = self.config
        val = self.val_x if config.eval_examples is None else self.val_x[:config.eval_examples]
        self.history.val_bound = float(np.mean(
            self.model.iwae_bound(val, config.eval_k, self.eval_rng)))
        return self.history


def train_vae(config: VAEConfig, train_x, val_x, progress: bool = False
              ) -> tuple[CategoricalVAE, VAEHistory]:
    """Train one VAE with one estimator; BLAS on one thread (small matrices, shared cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        run = VAERun(config, train_x, val_x)
        for _ in tqdm(range(config.steps), desc=config.label, disable=not progress):
            run.step()
        return run.model, run.finish()


def _history(config, train_x, val_x):
    return train_vae(config, train_x, val_x)[1]


def run_vae_comparison(configs: list[VAEConfig], train_x, val_x, progress: bool = True,
                       executor=None) -> dict[str, VAEHistory]:
    """Train every configuration (independent runs, on every core); histories by label."""
    histories = map_runs(_history, [(c, train_x, val_x) for c in configs],
                         executor=executor, progress=progress, desc="VAE runs")
    return {c.label: h for c, h in zip(configs, histories)}


def shapes_with_bits(bits: int, classes=(2, 4, 16, 64)) -> list[tuple[int, int]]:
    """Latent shapes ``(n, K)`` with ``n log2(K) = bits``: the same code length in bits."""
    out = []
    for k in classes:
        per = np.log2(k)
        if per != int(per) or bits % int(per):
            raise ValueError(f"shapes_with_bits: {bits} bits is not a whole number of "
                             f"variables of K = {k} classes ({per:g} bits each)")
        out.append((bits // int(per), int(k)))
    return out


# ---------------------------------------------------------------------- the variance race
@dataclass
class VAEVarianceRace:
    """Log-variance of several estimators' encoder gradients along one trajectory."""

    followed: str
    draws: int
    steps: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    log_variance: dict = field(default_factory=dict)
    seconds_per_estimate: dict = field(default_factory=dict)
    seconds: float = 0.0


def variance_race(config: VAEConfig, train_x: np.ndarray, estimators: list[str],
                  draws: int = 20, progress: bool = False) -> VAEVarianceRace:
    """Train with ``config.estimator``; every ``record_every`` steps evaluate each estimator
    of ``estimators`` ``draws`` times at the current parameters on the current minibatch,
    and record ``log(mean over parameters of the variance)`` of its encoder gradient.

    The measurement comes before the step's update. Estimators with a trained control step
    it once per training step on the followed run's minibatch (with their own noise), so
    their controls follow the same trajectory.
    """
    if draws < 2:
        raise ValueError(f"variance_race: a variance needs draws >= 2, got {draws}")
    with threadpool_limits(limits=1, user_api="blas"):
        run = VAERun(config, train_x, train_x[:1])
        specs = [vae_estimator(name) for name in estimators]
        controls = [run.control if s.name == run.spec.name else
                    make_control(s, model=run.model, config=config) for s in specs]
        optimizers = [None if s.tune is None or s.name == run.spec.name
                      else Adam(c.parameters(), lr=config.control_lr)
                      for s, c in zip(specs, controls)]
        race = VAEVarianceRace(config.estimator, draws,
                               log_variance={s.name: [] for s in specs},
                               seconds_per_estimate={s.name: 0.0 for s in specs})
        rng = np.random.default_rng(config.seed + 1)
        timed = 0
        start = time.perf_counter()
        model = run.model
        for step in tqdm(range(1, config.steps + 1), desc="variance race",
                         disable=not progress):
            x, _ = next(run.stream)
            if step % config.record_every == 0 or step == config.steps:
                for s, c in zip(specs, controls):
                    started = time.perf_counter()
                    grads = np.stack([
                        encoder_gradient(model, s, c, x,
                                         draw_vae_noise(s, rng, len(x), model.n,
                                                        model.classes), config.temperature)
                        for _ in range(draws)])
                    race.seconds_per_estimate[s.name] += time.perf_counter() - started
                    race.log_variance[s.name].append(
                        float(np.log(grads.var(axis=0, ddof=1).mean())))
                timed += draws
            for s, c, opt in zip(specs, controls, optimizers):
                if opt is not None:   # the other trained controls follow the trajectory
                    u = draw_vae_noise(s, rng, len(x), model.n, model.classes)
                    _, _, d = step_loss(model, s, c, x, u, config.temperature)
                    for p, g in zip(c.parameters(), d):
                        p.grad = Tensor(g)
                    opt.step()
            run.train_on(x)
            if step % config.record_every == 0 or step == config.steps:
                race.steps.append(step)
                race.train_elbo.append(run.history.train_elbo[-1])
        race.seconds = time.perf_counter() - start
        race.seconds_per_estimate = {k: v / timed for k, v in
                                     race.seconds_per_estimate.items()}
        return race

"""Sigmoid belief networks trained as variational autoencoders with Bernoulli latent units.

The generative model (``task="generative"``) has ``L`` stochastic layers of binary units::

    p(x, b) = p(b_L) p(b_{L-1} | b_L) ... p(b_1 | b_2) p(x | b_1)
    q(b | x) = q(b_1 | x) q(b_2 | b_1) ... q(b_L | b_{L-1})

Every conditional is a product of Bernoullis whose logits come from a *transformation* of the
layer it is conditioned on: one linear layer (the linear models), or two tanh layers of 200
and a linear layer (the nonlinear model). The top prior has learned logits. Following the
REBAR reference code (Tucker et al. 2017), a layer's input is ``2 b - 1`` (so in {-1, 1}),
the encoder's first input is the centred image ``x - mean``, and the output bias starts at
the logit of the training mean (clipped to [0.001, 0.999]).

The training objective is the ELBO per example, ``f(b) = log p(x, b) - log q(b | x)`` with
``b ~ q(b | x)``; log-likelihoods use the stable form
``log Bernoulli(b; l) = b l - softplus(l)``.

Structured prediction (``task="structured"``, the reference code's ``task=sp``): the top half
of a digit (392 pixels) goes through the encoder's stochastic layers, and the last layer
predicts the bottom half. As in the reference code, the objective is
``f(b) = log p(x_bottom | b_L)`` with ``b ~ q(b | x_top)``: the encoder *is* the model's
conditional prior, and ``E_q[f] <= log E_q[p(x_bottom | b)] = log p(x_bottom | x_top)``.

Sampling uses noise from outside: ``b_l = 1[u_l < sigmoid(logits_l)]`` with pre-drawn
uniforms ``u_l``. :meth:`SigmoidBeliefNet.learning_signal` gives, for one stochastic layer,
the objective as a function of that layer's sample alone (the layers below it in the encoder
resampled from the same noise): this is the ``f`` a gradient estimator needs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from minigrad import functions as F
from minigrad import validate
from minigrad.estimators.base import RelaxableObjective
from minigrad.estimators.relaxed import logistic_sample
from minigrad.init import as_generator, variance_scaling_normal
from minigrad.nn import Linear, Module, Parameter, Sequential, Tanh
from minigrad.tensor import Tensor, is_grad_enabled, no_grad

__all__ = ["SigmoidBeliefNet", "LearningSignal", "bernoulli_log_likelihood", "log_mean_exp",
           "TASKS", "INITS"]

TASKS = ("generative", "structured")
#: Weight initialisations: Glorot uniform (every layer's default), or the REBAR reference
#: code's variance scaling (a truncated normal of spread about ``sqrt(2 / fan_in)``).
INITS = ("glorot", "reference")


def bernoulli_log_likelihood(b: Tensor, logits: Tensor) -> Tensor:
    """Sum over units of ``log Bernoulli(b; sigmoid(logits)) = b * logits - softplus(logits)``.

    Returns one value per row. ``b`` may be relaxed (in [0, 1]); the formula stays smooth.
    One fused Function (:func:`minigrad.functions.bernoulli_log_likelihood`), differentiable
    twice in ``b`` and in ``logits``.
    """
    return F.bernoulli_log_likelihood(b, logits)


def log_mean_exp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log(mean(exp(values)))`` along ``axis``, with the max trick (no overflow)."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.mean(np.exp(values - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def _transformation(n_in: int, n_out: int, nonlinear: bool, n_hidden: int, rng,
                    dtype) -> Module:
    if not nonlinear:
        return Linear(n_in, n_out, rng, dtype=dtype)
    return Sequential(Linear(n_in, n_hidden, rng, dtype=dtype), Tanh(),
                      Linear(n_hidden, n_hidden, rng, dtype=dtype), Tanh(),
                      Linear(n_hidden, n_out, rng, dtype=dtype))


def _output_bias(layer: Module) -> Parameter:
    return (layer[-1] if isinstance(layer, Sequential) else layer).bias


def _as_tensor(b, dtype) -> Tensor:
    return b if isinstance(b, Tensor) else Tensor(np.asarray(b, dtype=dtype))


class SigmoidBeliefNet(Module):
    """A sigmoid belief network with its encoder (see the module docstring).

    Args:
        train_mean: mean of each pixel over the training set, shape (n_pixels,); it centres
            the encoder's input and sets the output bias.
        n_hidden: units per stochastic layer (200 in the papers).
        n_layers: stochastic layers (1 or 2 in the papers).
        nonlinear: two tanh layers of ``n_hidden`` inside every transformation.
        task: ``"generative"`` (MNIST density modelling) or ``"structured"`` (predict the
            bottom half of the image from the top half).
        rng: Generator or seed for the initial weights.
        init: ``"glorot"`` or ``"reference"`` (:data:`INITS`). The reference code's larger
            weights make the first epoch about 14 nats slower on the nonlinear model (its
            epoch-mean ELBO -175 against -161), and change little after 10,000 steps.
    """

    def __init__(self, train_mean, n_hidden: int = 200, n_layers: int = 1,
                 nonlinear: bool = False, task: str = "generative", rng=0,
                 dtype=np.float32, init: str = "glorot"):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        n_layers = validate.whole_number(n_layers, "n_layers", "SigmoidBeliefNet")
        n_hidden = validate.whole_number(n_hidden, "n_hidden", "SigmoidBeliefNet")
        if not isinstance(nonlinear, (bool, np.bool_)):
            raise TypeError(f"SigmoidBeliefNet: nonlinear must be True or False, got "
                            f"{nonlinear!r}")
        mean = validate.finite(train_mean, "train_mean", "SigmoidBeliefNet",
                               "it is the pixels' mean over the training set")
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        if mean.size == 0 or not np.all((mean >= 0) & (mean <= 1)):
            raise ValueError(f"SigmoidBeliefNet: train_mean must be the mean of binary pixels "
                             f"(values in [0, 1], one per pixel); got {mean.size} values"
                             + (f" from {mean.min():.4g} to {mean.max():.4g}" if mean.size
                                else ""))
        if task == "structured" and mean.size % 2:
            raise ValueError(f"structured prediction splits the image in two halves; "
                             f"{mean.size} pixels is odd")
        rng = as_generator(rng)
        self.task, self.n_layers, self.n_hidden = task, n_layers, n_hidden
        self.nonlinear, self.dtype = nonlinear, np.dtype(dtype)
        self.n_pixels = mean.size
        half = mean.size // 2
        in_mean = mean[:half] if task == "structured" else mean
        out_mean = mean[half:] if task == "structured" else mean
        self.input_mean = in_mean.astype(dtype)
        self.n_input, self.n_output = in_mean.size, out_mean.size
        self.encoders = []
        for layer in range(n_layers):
            n_in = self.n_input if layer == 0 else n_hidden
            enc = _transformation(n_in, n_hidden, nonlinear, n_hidden, rng, dtype)
            setattr(self, f"q{layer}", enc)
            self.encoders.append(enc)
        # decoders[l] maps layer l's sample to the logits of what lies below it.
        self.decoders = []
        for layer in range(n_layers):
            if task == "structured" and layer < n_layers - 1:
                self.decoders.append(None)  # only the last layer predicts the bottom half
                continue
            n_out = self.n_output if (layer == 0 or task == "structured") else n_hidden
            dec = _transformation(n_hidden, n_out, nonlinear, n_hidden, rng, dtype)
            setattr(self, f"p{layer}", dec)
            self.decoders.append(dec)
        if init == "reference":
            for _, p in self.named_parameters():
                if p.data.ndim == 2:    # weights; biases stay at zero
                    p.data = variance_scaling_normal(p.data.shape, rng, dtype)
        out_layer = self.decoders[0] if task == "generative" else self.decoders[-1]
        clipped = np.clip(out_mean, 0.001, 0.999)
        _output_bias(out_layer).data = np.log(clipped / (1 - clipped)).astype(dtype)
        if task == "generative":
            self.prior_logits = Parameter(np.zeros(n_hidden, dtype=dtype))

    # ------------------------------------------------------------------ pieces
    def encoder_parameters(self) -> list[Parameter]:
        """The encoder's parameter tensors (``q0``, ``q1``, ...), in a fixed order."""
        return [p for name, p in self.named_parameters() if name.startswith("q")]

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(encoder input, observed target): (x, x), or (top half, bottom half)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_pixels:
            raise ValueError(f"expected images of shape (batch, {self.n_pixels}), got {x.shape}")
        if self.task == "structured":
            half = self.n_pixels // 2
            return x[:, :half], x[:, half:]
        return x, x

    def encoder_logits(self, layer: int, below: Tensor | np.ndarray) -> Tensor:
        """Logits of q(b_layer | below): ``below`` is the image for layer 0 (it is centred
        here) and the binary sample of the previous layer otherwise."""
        if layer == 0:
            inp = Tensor(np.asarray(below, dtype=self.dtype) - self.input_mean)
        else:
            inp = 2.0 * _as_tensor(below, self.dtype) - 1.0
        return self.encoders[layer](inp)

    @staticmethod
    def sample(logits: Tensor, u: np.ndarray) -> np.ndarray:
        """``b = 1[u < sigmoid(logits)]`` as an array (a Bernoulli draw from uniform noise)."""
        u = np.asarray(u)
        if u.shape != logits.shape:
            raise ValueError(f"noise of shape {u.shape} for logits of shape {logits.shape}")
        # u < sigmoid(l)  <=>  l > log(u) - log(1 - u); the logit form never rounds p to 1.
        with np.errstate(divide="ignore"):
            return (logits.data > np.log(u) - np.log1p(-u)).astype(logits.dtype)

    def noise(self, rng: np.random.Generator, batch: int) -> list[np.ndarray]:
        """One uniform array per stochastic layer, shape (batch, n_hidden)."""
        return [rng.random((batch, self.n_hidden)).astype(self.dtype)
                for _ in range(self.n_layers)]

    def sample_encoder(self, x: np.ndarray, u: Sequence[np.ndarray], start: int = 0,
                       given: Sequence = ()) -> tuple[list[Tensor], list]:
        """Run the encoder from layer ``start`` (the layers before it are ``given``).

        Returns ``(logits, samples)``: per layer, the logits Tensor (recording a graph if
        gradients are on) and the sample. Layer ``start - 1``'s sample may be a Tensor.
        """
        self._check_noise(u)
        inp, _ = self.split(x)
        samples = list(given)
        logits = []
        for layer in range(start, self.n_layers):
            below = inp if layer == 0 else samples[layer - 1]
            lg = self.encoder_logits(layer, below)
            logits.append(lg)
            samples.append(self.sample(lg, u[layer]))
        return logits, samples

    def log_q(self, x: np.ndarray, samples: Sequence, known_logits: Sequence = ()) -> Tensor:
        """``log q(b | x)`` per example, summed over layers. ``known_logits`` may give the
        logits of the first layers (already computed for these samples) to save work."""
        inp, _ = self.split(x)
        total = None
        for layer in range(self.n_layers):
            below = inp if layer == 0 else samples[layer - 1]
            if layer < len(known_logits):
                lg = known_logits[layer]
            else:
                lg = self.encoder_logits(layer, below)
            term = bernoulli_log_likelihood(_as_tensor(samples[layer], self.dtype), lg)
            total = term if total is None else total + term
        return total

    def log_joint(self, x: np.ndarray, samples: Sequence) -> Tensor:
        """``log p(x, b)`` per example (structured: ``log p(x_bottom | b_L)``).

        Gradients reach the decoder and the prior only: the samples are fixed inputs.
        """
        _, target = self.split(x)
        target = Tensor(np.asarray(target, dtype=self.dtype))
        bs = [_as_tensor(b, self.dtype) for b in samples]
        if self.task == "structured":
            out = self.decoders[-1](2.0 * bs[-1] - 1.0)
            return bernoulli_log_likelihood(target, out)
        total = bernoulli_log_likelihood(bs[-1], self.prior_logits)
        for layer in range(self.n_layers):
            out = self.decoders[layer](2.0 * bs[layer] - 1.0)
            below = target if layer == 0 else bs[layer - 1]
            total = total + bernoulli_log_likelihood(below, out)
        return total

    def objective(self, x: np.ndarray, samples: Sequence, known_logits: Sequence = ()
                  ) -> Tensor:
        """The per-example objective ``f(b)``: the ELBO term ``log p(x, b) - log q(b | x)``
        (structured prediction: ``log p(x_bottom | b_L)``)."""
        if self.task == "structured":
            return self.log_joint(x, samples)
        return self.log_joint(x, samples) - self.log_q(x, samples, known_logits)

    def learning_signal(self, x: np.ndarray, samples: Sequence, layer: int,
                        u: Sequence[np.ndarray], logits: Sequence = (), value=None
                        ) -> "LearningSignal":
        """``f(b_layer)``: the objective as a function of one layer's sample.

        The layers above ``layer`` in the encoder keep ``samples``; the layers after
        it are resampled from the noise ``u`` given the new ``b_layer``, so the signal
        includes everything downstream (as in the reference code, the whole objective
        is used). ``b_layer`` may be relaxed or require gradients (MuProp, Concrete).
        ``logits``, the encoder's logits for ``samples`` (as from
        :meth:`sample_encoder`), saves recomputing those of layers up to ``layer``,
        which do not depend on ``b_layer``; they are used as constants. The signal's
        :meth:`LearningSignal.relaxed` relaxes the later layers too, for REBAR's and
        RELAX's control variate. ``value``, the objective at ``samples`` (one value
        per example, as a training step has it), is returned when the signal is asked
        for its value at that same sample, so that a step evaluates ``f(b)`` once.
        """
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} out of range for {self.n_layers} layers")
        return LearningSignal(self, x, samples, layer, u, logits, value)

    # ------------------------------------------------------------------ bounds
    def _binary(self, x, who: str) -> np.ndarray:
        """Images of binary pixels: the likelihood is Bernoulli."""
        x = validate.finite(x, "x", f"SigmoidBeliefNet.{who}")
        if x.size and not (x.min() >= 0 and x.max() <= 1):
            raise ValueError(f"SigmoidBeliefNet.{who}: x must hold binary pixels (0 or 1), "
                             f"got values from {x.min():.4g} to {x.max():.4g}; images of "
                             "0..255 need dividing by 255 and binarizing "
                             "(minigrad.data.load_binarized_mnist does both)")
        return x

    def elbo(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One-sample ELBO (structured: the objective) per example, no gradients."""
        x = self._binary(x, "elbo")
        with no_grad():
            _, bs = self.sample_encoder(x, self.noise(rng, len(x)))
            return self.objective(x, bs).data.astype(np.float64)

    def iwae_bound(self, x: np.ndarray, k: int, rng: np.random.Generator,
                   chunk_rows: int = 10_000) -> np.ndarray:
        """The k-sample importance-weighted bound per example (Burda et al. 2016)::

            log (1/k) sum_i exp(f(b_i)),   b_i ~ q(b | x) independently,

        computed with a stable log-mean-exp; it increases with k towards log p(x)
        (structured: towards log p(x_bottom | x_top)).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        x = self._binary(x, "iwae_bound")
        per = max(1, chunk_rows // k)
        out = np.empty(len(x))
        with no_grad():
            for start in range(0, len(x), per):
                xb = x[start:start + per]
                tiled = np.repeat(xb, k, axis=0)
                _, bs = self.sample_encoder(tiled, self.noise(rng, len(tiled)))
                f = self.objective(tiled, bs).data.reshape(len(xb), k)
                out[start:start + per] = log_mean_exp(f, axis=1)
        return out

    def _check_noise(self, u) -> None:
        if len(u) != self.n_layers:
            raise ValueError(f"need one noise array per stochastic layer ({self.n_layers}), "
                             f"got {len(u)}")

    def __repr__(self) -> str:
        kind = "nonlinear" if self.nonlinear else "linear"
        return (f"SigmoidBeliefNet({kind}, layers={self.n_layers}, hidden={self.n_hidden}, "
                f"task={self.task})")


class LearningSignal(RelaxableObjective):
    """``f(b_layer)``, the objective as a function of one stochastic layer's sample (see
    :meth:`SigmoidBeliefNet.learning_signal`); :meth:`relaxed` is the same objective with
    the later layers relaxed, which REBAR and RELAX use for their control variate."""

    def __init__(self, model: SigmoidBeliefNet, x, samples, layer: int, u, logits=(),
                 value=None):
        self.model, self.x, self.layer, self.u = model, x, layer, u
        self.given = list(samples[:layer])
        self.known = [lg.detach() for lg in logits[:layer + 1]]
        self.sample, self.value = None, None
        if value is not None:   # f at samples[layer]: returned, not evaluated again
            self.sample = np.asarray(_as_tensor(samples[layer], model.dtype).data)
            self.value = validate.finite(value, "value", "learning_signal",
                                         "it is f(b) at the samples, one per example")
            if self.value.shape != self.sample.shape[:1]:
                raise ValueError(f"learning_signal: value must hold one f(b) per example "
                                 f"(shape {self.sample.shape[:1]}), got shape "
                                 f"{self.value.shape}")

    def _value_at(self, b: Tensor):
        """``f(b)`` if it was given for this very ``b`` and no graph is wanted, else None."""
        if self.value is None or is_grad_enabled() or b.shape != self.sample.shape:
            return None
        return self.value if np.array_equal(b.data, self.sample) else None

    def __call__(self, b: Tensor) -> Tensor:
        model, layer = self.model, self.layer
        b = _as_tensor(b, model.dtype)
        if (known := self._value_at(b)) is not None:  # the step's f(b), computed once
            return Tensor(known.copy())
        if layer + 1 < model.n_layers:
            with no_grad():  # the downstream samples are step functions of b
                _, bs = model.sample_encoder(self.x, self.u, start=layer + 1,
                                             given=self.given + [b])
        else:
            bs = self.given + [b]
        return model.objective(self.x, bs, self.known)

    def relaxed(self, temperature, relaxation) -> Callable[[Tensor], Tensor]:
        """``f~(s)``: the objective with this layer's sample relaxed to ``s``.

        The layers after it are relaxed too, each from its own noise,
        ``s_k = relaxation(logits_k + logit(1 - u_k))`` with ``logits_k`` computed from the
        relaxed ``s_{k-1}`` (the REBAR code's ``quadratic`` control variate: layer ``l``'s
        relaxation switches to continuous from layer ``l`` on). A hard sample below would
        make ``f~`` a step function of ``s``, and the reparameterised gradient of a step
        function is biased. The logits up to this layer are constants.
        """
        model, layer = self.model, self.layer

        def f(s: Tensor) -> Tensor:
            bs = self.given + [s]
            for k in range(layer + 1, model.n_layers):
                lg = model.encoder_logits(k, bs[k - 1])
                bs.append(relaxation(logistic_sample(lg, self.u[k]), lg, temperature))
            return model.objective(self.x, bs, self.known)

        return f


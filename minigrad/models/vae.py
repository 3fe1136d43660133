"""A variational autoencoder with categorical latent variables, for binarized MNIST.

The generative model has ``n`` independent categorical variables of ``K`` classes with a
uniform prior, and a decoder MLP from their one-hot codes to Bernoulli pixel logits::

    p(b) = prod_i 1/K,          p(x | b) = prod_d Bernoulli(x_d; sigmoid(decoder(b)_d))
    q(b | x) = prod_i Categorical(b_i; softmax(encoder(x)_i))

``encoder(x)`` is an MLP from the centred image ``x - mean`` to ``n K`` logits, reshaped to
(batch, n, K); ``decoder(b)`` an MLP from the flattened code (n K values, one-hot or relaxed)
to 784 logits, whose output bias starts at the logit of the training mean.

Two training objectives, per example:

- the ELBO with the KL divergence to the uniform prior in closed form::

      ELBO = E_q[log p(x | b)] - KL(q(b | x) || p(b)),
      KL   = sum_i sum_k q_ik (log q_ik + log K)

  so a gradient estimator only has to estimate ``d E_q[f] / d logits`` for the learning
  signal ``f(b) = log p(x | b)`` (:meth:`CategoricalVAE.reconstruction`), and the KL's
  gradient is exact;
- the k-sample bound (Burda et al. 2016) ``L_k = log 1/k sum_j exp(w(b_j))`` with the
  log-weight ``w(b) = log p(x | b) + log p(b) - log q(b | x)``
  (:meth:`CategoricalVAE.log_weight`), trained with VIMCO.

The validation bound is :meth:`CategoricalVAE.iwae_bound` (k importance samples), which
increases with k towards ``log p(x)``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from minigrad import functions as F
from minigrad.estimators import checks
from minigrad.estimators.categorical import categorical_sample, log_mean_exp
from minigrad.init import as_generator
from minigrad.nn import Linear, Module, Sequential, Tanh
from minigrad.tensor import Tensor, no_grad

__all__ = ["CategoricalVAE", "MAX_CODE_SIZE"]

#: The largest code ``n K`` accepted: beyond it the one-hot code alone outgrows the image.
MAX_CODE_SIZE = 4096


def _bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """``sum_d x_d l_d - softplus(l_d)``, one value per row."""
    return (x * logits - F.softplus(logits)).sum(axis=-1)


class CategoricalVAE(Module):
    """A VAE with ``n`` categorical latent variables of ``K`` classes (see the module doc).

    Args:
        train_mean: the mean of each pixel over the training set, shape (pixels,), values
            in [0, 1]; it centres the encoder's input and sets the decoder's output bias.
        n: categorical variables per example.
        classes: classes ``K`` per variable (at least 2).
        hidden: width of the one tanh hidden layer of the encoder and of the decoder.
        rng: Generator or seed for the initial weights.
        dtype: float32 (training) or float64 (checks).
    """

    def __init__(self, train_mean, n: int, classes: int, hidden: int = 200, rng=0,
                 dtype=np.float32):
        super().__init__()
        who = "CategoricalVAE"
        n = checks.integer_at_least(n, 1, "n (latent variables)", who)
        classes = checks.integer_at_least(classes, 2, "classes (K)", who,
                                          ": a categorical variable of one class carries "
                                          "no information")
        hidden = checks.integer_at_least(hidden, 1, "hidden (units per hidden layer)", who)
        if n * classes > MAX_CODE_SIZE:
            raise ValueError(
                f"{who}: n * K = {n} * {classes} = {n * classes} one-hot inputs to the "
                f"decoder, more than {MAX_CODE_SIZE}; keep n log2(K) bits with fewer "
                "variables or classes")
        mean = np.asarray(train_mean, dtype=np.float64)
        if mean.ndim != 1 or mean.size == 0:
            raise ValueError(f"{who}: train_mean must be one mean per pixel, shape "
                             f"(pixels,), got shape {mean.shape}; pass train_x.mean(axis=0)")
        if not np.all((mean >= 0) & (mean <= 1)):
            raise ValueError(f"{who}: train_mean must lie in [0, 1] (binarized pixels); "
                             f"got values from {mean.min():.3g} to {mean.max():.3g}")
        rng = as_generator(rng)
        self.n, self.classes, self.hidden = n, classes, hidden
        self.dtype = np.dtype(dtype)
        self.pixels = mean.size
        self.input_mean = mean.astype(dtype)
        self.encoder = Sequential(Linear(self.pixels, hidden, rng, dtype=dtype), Tanh(),
                                  Linear(hidden, n * classes, rng, dtype=dtype))
        self.decoder = Sequential(Linear(n * classes, hidden, rng, dtype=dtype), Tanh(),
                                  Linear(hidden, self.pixels, rng, dtype=dtype))
        clipped = np.clip(mean, 0.001, 0.999)
        self.decoder[-1].bias.data = np.log(clipped / (1 - clipped)).astype(dtype)

    # ------------------------------------------------------------------ pieces
    def check_images(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.pixels:
            raise ValueError(f"CategoricalVAE: expected images of shape (batch, "
                             f"{self.pixels}), got {x.shape}")
        return x.astype(self.dtype, copy=False)

    def encoder_logits(self, x) -> Tensor:
        """The logits of q(b | x), shape (batch, n, K)."""
        x = self.check_images(x)
        out = self.encoder(Tensor(x - self.input_mean))
        return out.reshape(len(x), self.n, self.classes)

    def check_code(self, b) -> Tensor:
        b = b if isinstance(b, Tensor) else Tensor(np.asarray(b, dtype=self.dtype))
        if b.ndim != 3 or b.shape[1:] != (self.n, self.classes):
            raise ValueError(f"CategoricalVAE: a latent code has shape (batch, n, K) = "
                             f"(batch, {self.n}, {self.classes}), got {b.shape}")
        return b

    def log_likelihood(self, x, b) -> Tensor:
        """``log p(x | b)`` per example; ``b`` one-hot or relaxed, (batch, n, K)."""
        b = self.check_code(b)
        logits = self.decoder(b.reshape(b.shape[0], self.n * self.classes))
        return _bernoulli_log_likelihood(Tensor(self.check_images(x)), logits)

    def log_prior(self, b) -> Tensor:
        """``log p(b) = -n log K`` for a one-hot ``b`` (uniform prior)."""
        b = self.check_code(b)
        return b.sum(axis=(1, 2)) * -float(np.log(self.classes))

    def log_q(self, b, logits: Tensor) -> Tensor:
        """``log q(b | x) = sum_i b_i . log_softmax(logits_i)`` per example."""
        b = self.check_code(b)
        return (b * F.log_softmax(logits, axis=-1)).sum(axis=(1, 2))

    def kl(self, logits: Tensor) -> Tensor:
        """``KL(q(b | x) || p(b)) = sum_i sum_k q_ik (log q_ik + log K)`` per example."""
        log_q = F.log_softmax(logits, axis=-1)
        return (log_q.exp() * (log_q + float(np.log(self.classes)))).sum(axis=(1, 2))

    # ------------------------------------------------------------------ learning signals
    def reconstruction(self, x) -> Callable[[Tensor], Tensor]:
        """``f(b) = log p(x | b)``: the ELBO's learning signal (the KL is exact apart).

        ``f`` maps codes of shape (batch, n, K), one-hot or relaxed, to one value per
        example; gradients reach the decoder's parameters and a ``b`` that requires them.
        """
        x = self.check_images(x)
        return lambda b: self.log_likelihood(x, b)

    def log_weight(self, x, logits) -> Callable[[Tensor], Tensor]:
        """``w(b) = log p(x | b) + log p(b) - log q(b | x)``, with the encoder's ``logits``
        held constant: the learning signal of the k-sample bound (VIMCO)."""
        x = self.check_images(x)
        fixed = Tensor(logits.data if isinstance(logits, Tensor) else np.asarray(logits))
        return lambda b: self.log_likelihood(x, b) + self.log_prior(b) - self.log_q(b, fixed)

    # ------------------------------------------------------------------ bounds
    def noise(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Uniforms (batch, n) for one sample of every variable by the inverse CDF."""
        return rng.random((batch, self.n))

    def elbo(self, x, rng: np.random.Generator) -> np.ndarray:
        """One-sample ELBO per example, ``log p(x | b) - KL``, no gradients."""
        x = self.check_images(x)
        with no_grad():
            logits = self.encoder_logits(x)
            b = categorical_sample(logits, self.noise(rng, len(x)))
            out = self.log_likelihood(x, b) - self.kl(logits)
        return out.data.astype(np.float64)

    def iwae_bound(self, x, k: int, rng: np.random.Generator, chunk_rows: int = 10_000
                   ) -> np.ndarray:
        """The k-sample importance-weighted bound per example (Burda et al. 2016)::

            log 1/k sum_j exp(log p(x, b_j) - log q(b_j | x)),   b_j ~ q(b | x)
        """
        k = checks.integer_at_least(k, 1, "k (importance samples)", "iwae_bound")
        x = self.check_images(x)
        per = max(1, chunk_rows // k)
        out = np.empty(len(x))
        with no_grad():
            for start in range(0, len(x), per):
                tiled = np.repeat(x[start:start + per], k, axis=0)
                logits = self.encoder_logits(tiled)
                b = categorical_sample(logits, self.noise(rng, len(tiled)))
                w = self.log_weight(tiled, logits)(Tensor(b)).data
                out[start:start + per] = log_mean_exp(w.reshape(-1, k).T.astype(np.float64))
        return out

    def __repr__(self) -> str:
        return (f"CategoricalVAE(n={self.n}, K={self.classes}, hidden={self.hidden}, "
                f"pixels={self.pixels})")

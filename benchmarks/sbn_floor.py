"""The NumPy floor of the SBN estimator steps: the step of ``bench.py``'s SBN rows written by
hand in NumPy (float32, no autograd, no Numba), for the linear and the nonlinear model.

Everything a minigrad step computes is here as plain array expressions: the encoder, the
decoder, the estimator (NVIL, MuProp, DisARM, REBAR, dynamic REBAR), the backward pass and
Adam. A transformation (the linear layer, or two tanh layers of 200 and a linear layer) is a
list of ``(weight, bias)`` pairs with tanh between them; four hand-written passes through it
serve every estimator:

- :func:`net_forward` (and the activations it keeps),
- :func:`net_backward`, the vector-Jacobian product for the parameters and the input,
- :func:`net_jvp_params`, the output's change along a direction in the parameters (REBAR's
  baseline is trained on the second moment of the encoder gradient ``J^T g``, whose gradient
  in ``g`` is ``J J^T g``),
- :func:`net_backward_tangent`, the change of the input gradient along a direction in the
  input (a Hessian-vector product: dynamic REBAR's temperature gradient differentiates
  ``d f(sigma_lambda(z)) / d a`` in ``lambda``).

The floor computes ``f(b)`` once per step and nothing it does not use: it is what an
autograd engine running the same step cannot beat.
"""
from __future__ import annotations

import numpy as np

BETAS = (0.9, 0.99999)


def sigmoid(h):
    """1 / (1 + exp(-h)) in the input's dtype (as minigrad's, relative error ~2 eps)."""
    with np.errstate(over="ignore"):
        e = np.exp(-h)
    e += 1.0
    return np.reciprocal(e, out=e)


def softplus(h):
    """log(1 + exp(h)) = max(h, 0) + log1p(exp(-|h|))."""
    return np.maximum(h, 0) + np.log1p(np.exp(-np.abs(h)))


def log_likelihood(b, logits):
    """Sum over units of ``b * logits - softplus(logits)``: one value per row."""
    return (b * logits - softplus(logits)).sum(axis=-1)


# ---------------------------------------------------------------------------- transformations
def net_forward(layers, inp):
    """The output and the inputs of every layer (the input, then the tanh activations)."""
    acts = [inp]
    a = inp
    last = len(layers) - 1
    for k, (w, b) in enumerate(layers):
        h = a @ w
        h += b
        if k < last:
            a = np.tanh(h)
            acts.append(a)
    return h, acts


def net_backward(layers, acts, d_out, need_input=False):
    """The gradients of the parameters ([dW, db, ...]) and, if asked, of the input."""
    grads = [None] * (2 * len(layers))
    d = d_out
    for k in reversed(range(len(layers))):
        w = layers[k][0]
        grads[2 * k] = acts[k].T @ d
        grads[2 * k + 1] = d.sum(axis=0)
        if k > 0:
            d = d @ w.T
            d *= 1 - acts[k] * acts[k]
        elif need_input:
            d = d @ w.T
    return grads, (d if need_input else None)


def net_jvp_params(layers, acts, tangents):
    """The output's derivative along the parameter direction ``tangents`` ([dW, db, ...])."""
    dh = None
    for k, (w, _) in enumerate(layers):
        if k > 0:
            da = (1 - acts[k] * acts[k]) * dh
        new = acts[k] @ tangents[2 * k]
        new += tangents[2 * k + 1]
        if k > 0:
            new += da @ w
        dh = new
    return dh


def net_backward_tangent(layers, acts, d_out, d_out_tangent_fn, r_inp):
    """The input gradient of ``d_out`` and its derivative along the input direction
    ``r_inp``: ``d_out_tangent_fn(dh_out)`` gives the change of ``d_out`` for an output
    change ``dh_out`` (the loss's curvature)."""
    last = len(layers) - 1
    dts = [r_inp]       # the tangents of every layer's input
    dh = None
    for k, (w, _) in enumerate(layers):
        dh = dts[k] @ w
        if k < last:
            dts.append((1 - acts[k + 1] * acts[k + 1]) * dh)
    d, dd = d_out, d_out_tangent_fn(dh)
    for k in reversed(range(len(layers))):
        w = layers[k][0]
        d_in, dd_in = d @ w.T, dd @ w.T
        if k > 0:
            t = acts[k]
            slope = 1 - t * t
            dd_in = dd_in * slope - d_in * (2 * t * dts[k])
            d_in = d_in * slope
        d, dd = d_in, dd_in
    return d, dd


def pairs(flat):
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class Adam:
    """minigrad.optim.Adam's arithmetic on a list of arrays."""

    def __init__(self, params, lr, betas=BETAS, eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr * (1 - b2 ** self.t) ** 0.5 / (1 - b1 ** self.t)
        eps_hat = self.eps * (1 - b2 ** self.t) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= step_size * m / (np.sqrt(v) + eps_hat)


# ---------------------------------------------------------------------------- the step
class HandSBN:
    """One SBN step by hand. ``params0``: minigrad's initial arrays in its parameter order
    (prior, encoder pairs, decoder pairs, then the estimator's own: C(x)'s two pairs, and
    for dynamic REBAR one eta logit per encoder tensor and log lambda)."""

    def __init__(self, wl, params0, mean):
        self.estimator, self.lr = wl["estimator"], wl["lr"]
        self.mean = mean
        n_pairs = 3 if wl.get("nonlinear") else 1
        n_model = 1 + 4 * n_pairs
        self.params = [p.copy() for p in params0[:n_model]]
        self.prior = self.params[0]
        self.enc = pairs(self.params[1:1 + 2 * n_pairs])
        self.dec = pairs(self.params[1 + 2 * n_pairs:n_model])
        self.opt = Adam(self.params, self.lr)
        self.tuned = [p.copy() for p in params0[n_model:]]
        self.c_net = pairs(self.tuned[:4]) if self.tuned else None
        self.dynamic = self.estimator == "dynamic REBAR"
        if self.tuned:
            self.c_opt = Adam(self.tuned, 10 * self.lr)
        self.c_mean, self.c_var, self.c_steps = 0.0, 1.0, 0   # NVIL's running moments
        self.lam = 0.5

    def batch(self, b):
        return b

    # ------------------------------------------------------------------ f and its slope
    def _decoder_term(self, x, s):
        """log p(x | s) per row, the decoder's activations, and d log p / d logits."""
        out, acts = net_forward(self.dec, 2.0 * s - 1.0)
        return log_likelihood(x, out), acts, out

    def objective(self, x, s, known):
        """f(s) = log p(x, s) - log q(s | x) with the encoder's logits ``known``."""
        ll_x, _, _ = self._decoder_term(x, s)
        return log_likelihood(s, self.prior) + ll_x - log_likelihood(s, known)

    def objective_and_slope(self, x, s, known):
        """f(s) and d f / d s (the logits held fixed)."""
        ll_x, acts, out = self._decoder_term(x, s)
        _, d_in = net_backward(self.dec, acts, x - sigmoid(out), need_input=True)
        value = log_likelihood(s, self.prior) + ll_x - log_likelihood(s, known)
        return value, (self.prior - known) + 2.0 * d_in, (acts, out)

    def slope_tangent(self, x, s, r, cache):
        """The change of d f / d s along the direction ``r`` in ``s``."""
        acts, out = cache
        q = sigmoid(out)
        d_out = x - q
        curvature = q * (1 - q)
        _, dd = net_backward_tangent(self.dec, acts, d_out, lambda dh: -curvature * dh,
                                     2.0 * r)
        return 2.0 * dd

    # ------------------------------------------------------------------ the estimators
    def _baseline(self, centred):
        out, acts = net_forward(self.c_net, centred)
        return out.reshape(-1), acts

    def _estimate(self, x, centred, logits, b, u, f_b):
        p = sigmoid(logits)
        if self.estimator == "NVIL":
            c_x, _ = self._baseline(centred)
            scale = max(1.0, float(np.sqrt(self.c_var)))
            return ((f_b - (c_x + self.c_mean))[:, None] * (b - p) / scale).astype(p.dtype)
        if self.estimator == "MuProp":
            f_mean, slope, _ = self.objective_and_slope(x, p, logits)
            taylor = f_mean + ((b - p) * slope).sum(axis=1)
            return (f_b - taylor)[:, None] * (b - p) + slope * p * (1 - p)
        if self.estimator == "DisARM":
            b_tilde = ((1.0 - u) < p).astype(p.dtype)
            differs = b != b_tilde
            f_tilde = self.objective(x, b_tilde, logits)
            return (0.5 * (f_tilde - f_b)[:, None] * (1.0 - 2.0 * b) * differs
                    * sigmoid(np.abs(logits)))
        raise ValueError(self.estimator)

    def _rebar(self, x, centred, logits, enc_acts, b, u, f_b):
        """REBAR's (and dynamic REBAR's) encoder gradient and the tuned gradients."""
        dtype = logits.dtype
        n = x.shape[0]
        lam = float(np.exp(self.tuned[-1])) if self.dynamic else self.lam
        kappa = lam / (lam + 1.0)
        theta = sigmoid(logits)
        one_minus = sigmoid(-logits)
        q = theta * one_minus
        score = b - theta
        # z = a + logit(1 - u), u kept eps inside (0, 1); the coupled v so that z~ = z
        eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
        u64 = u.astype(np.float64)
        inside = np.clip(u64, eps, 1 - eps)
        z = logits + (-(np.log(inside) - np.log1p(-inside))).astype(dtype)
        theta64 = sigmoid(logits.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(b == 1, (theta64 - u64) / theta64, (1 - u64) / (1 - theta64))
        v = np.clip(np.nan_to_num(v, nan=0.5), 0.0, 1.0).astype(dtype)
        hard = b == 1
        v_prime = np.where(hard, one_minus + theta * v, one_minus * v)
        rest = np.where(hard, theta * (1 - v), theta + one_minus * (1 - v))
        rest_a = np.where(hard, q * (1 - v), q * v)        # d rest / d a = -d v' / d a
        keep_v, keep_r = v_prime > tiny, rest > tiny
        z_t = logits + np.log(np.maximum(v_prime, tiny)) - np.log(np.maximum(rest, tiny))
        dz_t = 1.0 - rest_a * (keep_v / np.maximum(v_prime, tiny)
                               + keep_r / np.maximum(rest, tiny))
        # c(z) = f(s), s = sigmoid(z / lam + a kappa): d c / d a = f'(s) s (1 - s) dw / da
        w, w_t = z / lam + logits * kappa, z_t / lam + logits * kappa
        s, s_t = sigmoid(w), sigmoid(w_t)
        _, slope, cache = self.objective_and_slope(x, s, logits)
        c_t, slope_t, cache_t = self.objective_and_slope(x, s_t, logits)
        ds, ds_t = s * (1 - s), s_t * (1 - s_t)
        dw, dw_t = 1.0 / lam + kappa, dz_t / lam + kappa
        h = slope * ds * dw - slope_t * ds_t * dw_t - c_t[:, None] * score
        c_x, c_acts = self._baseline(centred)
        reinforce = (f_b - c_x)[:, None] * score
        size = sum(p.size for pair in self.enc for p in pair)
        scale = 2.0 / (n * n * size)
        etas = ([2.0 / (1.0 + float(np.exp(-e))) for e in self.tuned[4:-1]] if self.dynamic
                else [1.0] * (2 * len(self.enc)))
        a_p, _ = net_backward(self.enc, enc_acts, reinforce)
        b_p, _ = net_backward(self.enc, enc_acts, h)
        g_p = [a + eta * bb for a, eta, bb in zip(a_p, etas, b_p)]
        # d mean(g^2) / d (the logits' signals): J (J^T g), per part
        d_reinforce = scale * net_jvp_params(self.enc, enc_acts, g_p)
        d_c = -(d_reinforce * score).sum(axis=1, keepdims=True)
        c_grads, _ = net_backward(self.c_net, c_acts, d_c)
        tuned_grads = c_grads
        if self.dynamic:
            d_h = scale * net_jvp_params(self.enc, enc_acts,
                                         [eta * gp for eta, gp in zip(etas, g_p)])
            # d mean(g^2) / d eta_P = scale g_P . B_P, and eta_P = 2 sigmoid(w_P), whose
            # derivative is eta (1 - eta / 2)
            tuned_grads = tuned_grads + [
                np.asarray(scale * (gp * bb).sum() * eta * (1 - eta / 2), dtype)
                for gp, bb, eta in zip(g_p, b_p, etas)]
            # d h / d lambda; w = z / lam + a kappa, kappa = lam / (lam + 1)
            dkappa = 1.0 / (lam + 1.0) ** 2
            dw_lam, dw_lam_t = -z / lam ** 2 + logits * dkappa, -z_t / lam ** 2 + logits * dkappa
            r, r_t = ds * dw_lam, ds_t * dw_lam_t                   # d s / d lambda
            curv, curv_t = ds * (1 - 2 * s), ds_t * (1 - 2 * s_t)    # sigmoid''(w)
            dd_z = (self.slope_tangent(x, s, r, cache) * ds * dw
                    + slope * curv * dw_lam * dw + slope * ds * (-1.0 / lam ** 2 + dkappa))
            dd_t = (self.slope_tangent(x, s_t, r_t, cache_t) * ds_t * dw_t
                    + slope_t * curv_t * dw_lam_t * dw_t
                    + slope_t * ds_t * (-dz_t / lam ** 2 + dkappa))
            dc_t = (slope_t * r_t).sum(axis=1, keepdims=True)
            dh_lam = dd_z - dd_t - dc_t * score
            tuned_grads.append(np.asarray(lam * (d_h * dh_lam).sum(), dtype))
        self.tuned_grads = tuned_grads
        return [-gp / n for gp in g_p]

    # ------------------------------------------------------------------ the step
    def loss_and_grads(self, x, u, keep=False):
        n = x.shape[0]
        centred = x - self.mean
        logits, enc_acts = net_forward(self.enc, centred)
        with np.errstate(divide="ignore"):
            b = (logits > np.log(u) - np.log1p(-u)).astype(logits.dtype)
        ll_x, dec_acts, dec_out = self._decoder_term(x, b)
        log_joint = log_likelihood(b, self.prior) + ll_x
        f_b = log_joint - log_likelihood(b, logits)
        loss = -log_joint.sum() / n
        d_prior = -(b - sigmoid(self.prior)).sum(axis=0) / n
        dec_grads, _ = net_backward(self.dec, dec_acts, (sigmoid(dec_out) - x) / n)
        if self.estimator in ("REBAR", "dynamic REBAR"):
            enc_grads = self._rebar(x, centred, logits, enc_acts, b, u, f_b)
            grads = [d_prior] + enc_grads + dec_grads + self.tuned_grads
        else:
            g = self._estimate(x, centred, logits, b, u, f_b)
            loss -= float((logits * g).sum()) / n
            enc_grads, _ = net_backward(self.enc, enc_acts, -g / n)
            grads = [d_prior] + enc_grads + dec_grads
        if keep:
            self.f_values, self.centred = f_b, centred
        return loss, grads

    def step(self, x, u):
        _, grads = self.loss_and_grads(x, u, keep=True)
        n_model = len(self.params)
        self.opt.step(grads[:n_model])
        if self.estimator == "NVIL":
            self._update_baseline()
        elif self.tuned:
            self.c_opt.step(self.tuned_grads)

    def _update_baseline(self):
        """One Adam step of C on mean((f - c - C(x))^2), then the running moments."""
        f = self.f_values
        predicted, acts = self._baseline(self.centred)
        residual = (f - self.c_mean) - predicted
        d_out = (-2.0 / len(f)) * residual[:, None]
        grads, _ = net_backward(self.c_net, acts, d_out.astype(f.dtype))
        r = f - predicted
        a = 0.8 if self.c_steps else 0.0
        self.c_mean = a * self.c_mean + (1 - a) * float(r.mean())
        self.c_var = a * self.c_var + (1 - a) * float(((r - self.c_mean) ** 2).mean())
        self.c_opt.step(grads)
        self.c_steps += 1

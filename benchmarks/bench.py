#!/usr/bin/env python
"""Speed benchmark: one training step of minigrad against a hand-written NumPy floor and PyTorch.

For each workload (two sigmoid MLPs with SGD, LeNet-5 with Adam, and a linear and a nonlinear
sigmoid belief network step with each of five gradient estimators: NVIL, MuProp, DisARM,
REBAR, dynamic REBAR) and each thread count (1, 2), every process is started fresh with the
thread variables of every library set before NumPy is imported. First a correctness guard
builds the implementations from the same weights and checks on one batch that minigrad's loss
and gradients equal the hand NumPy version's (and PyTorch's, when installed; the SBN steps'
NumPy version is in sbn_floor.py). Then each implementation is
timed alone in its own processes (two rounds, in alternating order), after warm-up steps that
include any Numba compilation; the median time per step is reported with its interquartile
range.

    python benchmarks/bench.py                 # full run: every row (a few minutes)
    python benchmarks/bench.py --quick         # fewer steps, for a smoke test
    python benchmarks/bench.py --json out.json # also write the results as JSON
    python benchmarks/bench.py --workloads sbn # only the SBN estimator steps

PyTorch is optional: without it the PyTorch column is left out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

# Benchmark the minigrad of this working tree, installed or not.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Only the standard library is imported at module level: a worker must set the thread
# variables before NumPy (and its BLAS) is loaded.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
THREADS = (1, 2)
IMPLS = ("minigrad", "numpy", "torch")
IMPL_TITLES = {"minigrad": "minigrad", "numpy": "NumPy floor", "torch": "PyTorch eager"}
RESULT_TAG = "@@BENCH-RESULT "

WORKLOADS = {
    "mlp1": {
        "title": "MLP 784-100-10, B=50, SGD",
        "kind": "mlp", "sizes": (784, 100, 10), "batch": 50, "optimizer": "sgd", "lr": 0.1,
        "steps": 200, "warmup": 20, "quick_steps": 30, "quick_warmup": 5,
    },
    "mlp2": {
        "title": "MLP 784-200-200-10, B=50, SGD",
        "kind": "mlp", "sizes": (784, 200, 200, 10), "batch": 50, "optimizer": "sgd", "lr": 0.1,
        "steps": 200, "warmup": 20, "quick_steps": 30, "quick_warmup": 5,
    },
    "lenet": {
        "title": "LeNet-5, 128x1x32x32, Adam",
        "kind": "lenet", "batch": 128, "optimizer": "adam", "lr": 1e-3,
        "steps": 30, "warmup": 3, "quick_steps": 6, "quick_warmup": 2,
    },
    # LeNet-5 on two cores the way minigrad.kernels uses them best: the convolutions and the
    # pooling split the batch between two threads (MINIGRAD_CONV_THREADS=2) and BLAS runs on
    # one, since OpenBLAS's idle workers spin on the core the second batch thread needs
    # (kernels.py, at CONV_THREADS). The settings apply to minigrad and to the NumPy floor,
    # which calls the same kernels; PyTorch gets torch.set_num_threads(2) as in every row.
    "lenet_batch_threads": {
        "title": "LeNet-5, 2 batch threads",
        "kind": "lenet", "batch": 128, "optimizer": "adam", "lr": 1e-3,
        "steps": 30, "warmup": 3, "quick_steps": 6, "quick_warmup": 2,
        "threads": (2,), "scaling_base": "lenet",
        "env": {"MINIGRAD_CONV_THREADS": "2", "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    },
}
# A training step of a 1-layer sigmoid belief network (784-200, generative), linear or
# nonlinear (two tanh layers of 200 in the encoder and in the decoder), batch 24, Adam (lr 3e-4,
# betas (0.9, 0.99999)), with one encoder-gradient estimator each: minigrad.experiments.sbn's
# step (SBNRun.step without its diagnostics) against the same step written by hand in NumPy
# (benchmarks/sbn_floor.py) and in PyTorch. REBAR: fixed eta = 1, lambda = 0.5, the REBAR
# code's relaxation, C(x) trained on the gradient's second moment; dynamic REBAR also tunes
# eta (one per encoder tensor) and log lambda on it (a double backward).
SBN_ESTIMATORS = ("NVIL", "MuProp", "DisARM", "REBAR", "dynamic REBAR")
SBN_MODELS = ("linear", "nonlinear")
SBN_WORKLOADS = {
    f"sbn_{model}_{estimator.lower().replace(' ', '_')}": {
        "title": f"SBN {model[:3]} {estimator}, B=24",
        "kind": "sbn", "estimator": estimator, "nonlinear": model == "nonlinear", "batch": 24,
        "n_hidden": 200, "lr": 3e-4, "optimizer": "adam",
        "steps": 100, "warmup": 10, "quick_steps": 20, "quick_warmup": 3,
    }
    for model in SBN_MODELS for estimator in SBN_ESTIMATORS
}
WORKLOADS.update(SBN_WORKLOADS)
# A name that --workloads expands to several workloads.
WORKLOAD_GROUPS = {"sbn": list(SBN_WORKLOADS)}
WORKLOAD_GROUPS.update({f"sbn_{model}": [w for w in SBN_WORKLOADS if w.startswith(f"sbn_{model}_")]
                        for model in SBN_MODELS})
N_BATCHES = 4  # distinct random batches, used in turn
# Each implementation is timed alone in its own process (thread pools and the memory
# allocator of one would otherwise change the timings of the next), in this many rounds of
# processes, in alternating order (A B C, C B A), the timed steps split between the rounds.
ROUNDS = 2
QUICK_ROUNDS = 1
BUSY_WARNING = 0.05  # others' share of the machine above which a cell is flagged
GUARD_RTOL = {"numpy": 1e-4, "torch": 1e-3}  # max |a - b| / max |b| per array


def targets(kind: str, threads: int) -> dict[str, float | None]:
    """Upper bounds for minigrad / NumPy floor and minigrad / PyTorch (None: no target)."""
    if kind == "mlp":
        return {"numpy": 1.15, "torch": 0.8}
    if kind == "sbn":
        return {"numpy": 1.3, "torch": 0.6}
    return {"numpy": None, "torch": 1.0 if threads == 1 else 1.2}


SCALING_TARGET = 1.0  # minigrad at 2 threads / minigrad at 1 thread


# ============================================================================ workers
def worker_env(workload: str, threads: int, impl: str | None) -> dict[str, str]:
    """The variables a worker process is started with: every thread variable at ``threads``,
    then the workload's own settings (``env``) for minigrad and the NumPy floor (``impl``
    None: the guard, which builds them all in one process)."""
    env = {var: str(threads) for var in THREAD_VARS}
    if impl != "torch":
        env.update(WORKLOADS[workload].get("env", {}))
    return env


def _check_thread_env(threads: int, workload: str, impl: str | None) -> None:
    for var, value in worker_env(workload, threads, impl).items():
        # set by the parent; make sure, before NumPy is imported
        if os.environ.get(var) != value:
            raise RuntimeError(f"worker started with {var}={os.environ.get(var)!r}, "
                               f"expected {value}")


def _setup(workload: str):
    """The workload, minigrad's model (whose initial weights every implementation copies) and
    the random batches, all from np.random.default_rng(0)."""
    import numpy as np

    wl = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    mg = MINIGRAD_MODELS[wl["kind"]](wl, rng)
    params0 = [p.data.copy() for p in getattr(mg, "all_params", mg.params)]
    return wl, mg, params0, make_batches(wl, rng)


def _make_torch(wl, params0, threads: int):
    import torch

    torch.set_num_threads(threads)
    return TORCH_MODELS.get(wl["kind"], TorchModel)(wl, params0), torch.get_num_threads()


def guard_worker(config: dict) -> dict:
    """Build the implementations side by side and check they compute the same thing."""
    threads = config["threads"]
    _check_thread_env(threads, config["workload"], None)
    wl, mg, params0, batches = _setup(config["workload"])
    impls = {"minigrad": mg}
    if wl["kind"] in HAND_MODELS:
        impls["numpy"] = HAND_MODELS[wl["kind"]](wl, params0)
    thread_check, torch_error = {}, None
    if config["torch"]:
        try:
            impls["torch"], thread_check["torch"] = _make_torch(wl, params0, threads)
        except ImportError as exc:  # installed but broken: report, do not crash
            torch_error = f"{type(exc).__name__}: {exc}"
    import numba

    thread_check["numba"] = numba.config.NUMBA_NUM_THREADS
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            thread_check[info.get("internal_api", "?")] = info.get("num_threads")
    return {"guard": correctness_guard(impls, batches[0], wl), "thread_check": thread_check,
            "torch_error": torch_error}


def time_worker(config: dict) -> dict:
    """Warm up, then time ``steps`` training steps of one implementation, alone in its process."""
    threads = config["threads"]
    _check_thread_env(threads, config["workload"], config["impl"])
    wl, mg, params0, batches = _setup(config["workload"])
    name = config["impl"]
    if name == "minigrad":
        impl = mg
    else:
        del mg
        if name == "numpy":
            impl = HAND_MODELS[wl["kind"]](wl, params0)
        else:
            impl, _ = _make_torch(wl, params0, threads)
    for i in range(config["warmup"]):
        impl.step(*impl.batch(batches[i % N_BATCHES]))
    prepared = [impl.batch(batches[i % N_BATCHES]) for i in range(config["steps"])]
    clock = time.perf_counter
    times = []
    cpu0 = cpu_sample()
    for x, t in prepared:
        t0 = clock()
        impl.step(x, t)
        times.append(clock() - t0)
    cpu1 = cpu_sample()
    return {"times": times, "cpu": None if cpu0 is None or cpu1 is None
            else [b - a for a, b in zip(cpu0, cpu1)]}


def cpu_sample():
    """(busy seconds of the machine, all seconds of the machine, this process's CPU seconds),
    or None where /proc/stat is not available."""
    try:
        with open("/proc/stat") as f:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            jiffies = [int(v) for v in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)  # idle + iowait
    own = os.times()
    return (sum(jiffies) - idle) / hz, sum(jiffies) / hz, own.user + own.system


def others_cpu_share(deltas) -> float | None:
    """Fraction of the machine's CPU time used by other processes, from summed differences of
    :func:`cpu_sample` (busy, all, own)."""
    if not deltas:
        return None
    busy, total, own = (sum(d[i] for d in deltas) for i in range(3))
    return max(0.0, (busy - own) / total) if total > 0 else None


def make_batches(wl, rng):
    import numpy as np

    if wl["kind"] == "sbn":
        return make_sbn_batches(wl, rng)
    b = wl["batch"]
    shape = (b, wl["sizes"][0]) if wl["kind"] == "mlp" else (b, 1, 32, 32)
    out = []
    for _ in range(N_BATCHES):
        x = rng.random(shape, dtype=np.float32)
        t = np.zeros((b, 10), dtype=np.float32)
        t[np.arange(b), rng.integers(0, 10, size=b)] = 1.0
        out.append((x, t))
    return out


def _scaled_error(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def correctness_guard(impls, batch, wl) -> dict:
    """Loss and every gradient of one batch: minigrad against the others. Raises on mismatch."""
    ref_loss, ref_grads = impls["minigrad"].loss_and_grads(*impls["minigrad"].batch(batch))
    report = {}
    for name, impl in impls.items():
        if name == "minigrad":
            continue
        loss, grads = impl.loss_and_grads(*impl.batch(batch))
        errors = [_scaled_error(ref_loss, loss)]
        errors += [_scaled_error(g_ref, g) for g_ref, g in zip(ref_grads, grads)]
        worst = max(errors)
        if len(grads) != len(ref_grads) or not worst <= GUARD_RTOL[name]:
            bad = [i for i, e in enumerate(errors) if not e <= GUARD_RTOL[name]]
            raise AssertionError(
                f"CORRECTNESS GUARD FAILED ({wl['title']}): minigrad and {IMPL_TITLES[name]} "
                f"disagree (scaled max error {worst:.2e} > {GUARD_RTOL[name]:g}; entries "
                f"{bad}, 0 = loss, then the gradients in parameter order); losses "
                f"{float(ref_loss):.7g} vs {float(loss):.7g}. The timings would not compare "
                "equal work."
            )
        report[name] = worst
    return report


# ---------------------------------------------------------------------------- minigrad
class MinigradModel:
    """Tensor / nn / optim as a user of the library writes them."""

    def __init__(self, wl, model):
        from minigrad import optim
        from minigrad.functions import softmax_cross_entropy
        from minigrad.tensor import Tensor

        self.xent, self.tensor = softmax_cross_entropy, Tensor
        self.model = model
        self.params = model.parameters()
        if wl["optimizer"] == "sgd":
            self.opt = optim.SGD(self.params, lr=wl["lr"])
        else:
            self.opt = optim.Adam(self.params, lr=wl["lr"])

    def batch(self, b):
        return b

    def step(self, x, t):
        self.opt.zero_grad()
        loss = self.xent(self.model(self.tensor(x)), self.tensor(t))
        loss.backward()
        self.opt.step()

    def loss_and_grads(self, x, t):
        self.opt.zero_grad()
        loss = self.xent(self.model(self.tensor(x)), self.tensor(t))
        loss.backward()
        grads = [p.grad.data.copy() for p in self.params]
        self.opt.zero_grad()
        return loss.item(), grads


class MinigradMLP(MinigradModel):
    def __init__(self, wl, rng):
        from minigrad import nn

        sizes = wl["sizes"]
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], rng))
            if i < len(sizes) - 2:
                layers.append(nn.Sigmoid())
        super().__init__(wl, nn.Sequential(*layers))


class MinigradLeNet(MinigradModel):
    def __init__(self, wl, rng):
        from minigrad import nn

        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120, rng), nn.ReLU(),
            nn.Linear(120, 84, rng), nn.ReLU(),
            nn.Linear(84, 10, rng),
        )
        super().__init__(wl, model)


# ---------------------------------------------------------------------------- NumPy floor
class HandModel:
    """Direct NumPy forward and backward: float32, plain expressions, no autograd."""

    def __init__(self, wl, params0):
        import numpy as np

        self.params = [p.copy() for p in params0]
        self.lr = wl["lr"]
        self.adam = wl["optimizer"] == "adam"
        if self.adam:
            self.t = 0
            self.m = [np.zeros_like(p) for p in self.params]
            self.v = [np.zeros_like(p) for p in self.params]

    def batch(self, b):
        return b

    def step(self, x, t):
        _, grads = self.loss_and_grads(x, t)
        if not self.adam:
            for p, g in zip(self.params, grads):
                p -= self.lr * g
            return
        import numpy as np

        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        step_size = self.lr * (1 - b2 ** self.t) ** 0.5 / (1 - b1 ** self.t)
        eps_hat = eps * (1 - b2 ** self.t) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= step_size * m / (np.sqrt(v) + eps_hat)


def _softmax_xent(z, t):
    """Mean softmax cross-entropy of logits z (modified) against target rows t, and dL/dz."""
    import numpy as np

    n = z.shape[0]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = -(t * (z - np.log(s))).sum() / n
    dz = e / s
    dz -= t
    dz /= n
    return loss, dz


def _sigmoid(h):
    """1 / (1 + exp(-h)), float32, relative error ~2e-7 everywhere (as minigrad's): for
    h < -88, exp(-h) overflows to inf and the result is 0."""
    import numpy as np

    with np.errstate(over="ignore"):
        e = np.exp(-h)
    e += 1.0
    return np.reciprocal(e, out=e)


class HandMLP(HandModel):
    def loss_and_grads(self, x, t):
        params = self.params
        n_layers = len(params) // 2
        acts = [x]
        a = x
        for i in range(n_layers - 1):
            h = a @ params[2 * i]
            h += params[2 * i + 1]
            a = _sigmoid(h)
            acts.append(a)
        z = a @ params[-2]
        z += params[-1]
        loss, d = _softmax_xent(z, t)
        grads = [None] * len(params)
        for i in reversed(range(n_layers)):
            a_in = acts[i]
            grads[2 * i] = a_in.T @ d
            grads[2 * i + 1] = d.sum(axis=0)
            if i > 0:
                d = d @ params[2 * i].T
                d *= a_in * (1 - a_in)
        return loss, grads


class HandLeNet(HandModel):
    """The same conv / pool kernels as minigrad (the floor for a NumPy engine), glued by hand."""

    def __init__(self, wl, params0):
        import inspect

        from minigrad import kernels

        super().__init__(wl, params0)
        self.k = kernels
        sig = inspect.signature(kernels.conv2d_backward)
        self.first_layer_kwargs = {"need_dx": False} if "need_dx" in sig.parameters else {}

    def loss_and_grads(self, x, t):
        import numpy as np

        k = self.k
        w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = self.params
        n = x.shape[0]
        c1, cols1 = k.conv2d_forward(x, w1, b1, 1, 0)
        r1 = np.maximum(c1, 0)
        p1, am1 = k.maxpool2d_forward(r1, 2)
        c2, cols2 = k.conv2d_forward(p1, w2, b2, 1, 0)
        r2 = np.maximum(c2, 0)
        p2, am2 = k.maxpool2d_forward(r2, 2)
        f = p2.reshape(n, -1)
        h3 = f @ w3
        h3 += b3
        a3 = np.maximum(h3, 0)
        h4 = a3 @ w4
        h4 += b4
        a4 = np.maximum(h4, 0)
        z = a4 @ w5
        z += b5
        loss, dz = _softmax_xent(z, t)

        dw5, db5 = a4.T @ dz, dz.sum(axis=0)
        d = dz @ w5.T
        d *= h4 > 0
        dw4, db4 = a3.T @ d, d.sum(axis=0)
        d = d @ w4.T
        d *= h3 > 0
        dw3, db3 = f.T @ d, d.sum(axis=0)
        d = (d @ w3.T).reshape(p2.shape)
        d = k.maxpool2d_backward(d, am2, r2.shape, 2)
        d *= c2 > 0
        d, dw2, db2 = k.conv2d_backward(d, p1.shape, cols2, w2, 1, 0)
        d = k.maxpool2d_backward(d, am1, r1.shape, 2)
        d *= c1 > 0
        _, dw1, db1 = k.conv2d_backward(d, x.shape, cols1, w1, 1, 0, **self.first_layer_kwargs)
        return loss, [dw1, db1, dw2, db2, dw3, db3, dw4, db4, dw5, db5]


# ---------------------------------------------------------------------------- PyTorch
class TorchModel:
    """The same architecture with torch.nn, F.cross_entropy on probability targets, torch.optim."""

    def __init__(self, wl, params0):
        import torch
        from torch import nn

        if wl["kind"] == "mlp":
            sizes = wl["sizes"]
            layers = []
            for i in range(len(sizes) - 1):
                layers.append(nn.Linear(sizes[i], sizes[i + 1]))
                if i < len(sizes) - 2:
                    layers.append(nn.Sigmoid())
        else:
            layers = [
                nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(400, 120), nn.ReLU(),
                nn.Linear(120, 84), nn.ReLU(),
                nn.Linear(84, 10),
            ]
        self.model = nn.Sequential(*layers)
        self.params = list(self.model.parameters())
        # minigrad's Linear weight is (in, out); torch's is (out, in).
        self.transposed = [p.ndim == 2 for p in self.params]
        with torch.no_grad():
            for p, p0, tr in zip(self.params, params0, self.transposed):
                p.copy_(torch.from_numpy(p0.T.copy() if tr else p0))
        if wl["optimizer"] == "sgd":
            self.opt = torch.optim.SGD(self.params, lr=wl["lr"])
        else:
            self.opt = torch.optim.Adam(self.params, lr=wl["lr"])
        self.torch = torch

    def batch(self, b):
        return self.torch.from_numpy(b[0]), self.torch.from_numpy(b[1])

    def step(self, x, t):
        self.opt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), t)
        loss.backward()
        self.opt.step()

    def loss_and_grads(self, x, t):
        self.opt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), t)
        loss.backward()
        grads = [p.grad.numpy().T.copy() if tr else p.grad.numpy().copy()
                 for p, tr in zip(self.params, self.transposed)]
        self.opt.zero_grad()
        return loss.item(), grads


# ---------------------------------------------------------------------- SBN estimator step
def sbn_pixel_means():
    """Pixel means that stand in for MNIST's (the step's cost does not depend on them)."""
    import numpy as np

    return np.random.default_rng(1).uniform(0.05, 0.6, 784).astype(np.float32)


def make_sbn_batches(wl, rng):
    """(binary images, uniform noise of the hidden layer) pairs."""
    import numpy as np

    means = sbn_pixel_means()
    return [((rng.random((wl["batch"], 784)) < means).astype(np.float32),
             rng.random((wl["batch"], wl["n_hidden"]), dtype=np.float32))
            for _ in range(N_BATCHES)]


class MinigradSBN:
    """The training step of minigrad.experiments.sbn.SBNRun.step, minus its diagnostics (the
    gradient-variance tracker and the history): its ``backward_pass``, the optimizer's step
    and the control's training (``train_control``)."""

    def __init__(self, wl, rng):
        from minigrad.estimators.catalogue import ESTIMATORS
        from minigrad.experiments.sbn import (SBNConfig, backward_pass, control_and_optimizer,
                                              train_control)
        from minigrad.models.sbn import SigmoidBeliefNet
        from minigrad.nn import Module
        from minigrad.optim import Adam

        self.backward_pass, self.train_control = backward_pass, train_control
        self.model = SigmoidBeliefNet(sbn_pixel_means(), n_hidden=wl["n_hidden"], rng=rng,
                                      nonlinear=wl["nonlinear"])
        config = SBNConfig("bench", wl["estimator"], steps=1, lr=wl["lr"],
                           nonlinear=wl["nonlinear"])
        self.spec = ESTIMATORS[wl["estimator"]]
        self.control, self.control_opt = control_and_optimizer(self.spec, self.model, config)
        self.opt = Adam(self.model.parameters(), lr=wl["lr"], betas=(0.9, config.beta2))
        self.params = self.model.parameters()  # prior, q weights and biases, then p's
        self.encoder = self.model.encoder_parameters()
        # the control's Parameters (C(x); dynamic REBAR: also the eta logits and log
        # lambda), in a fixed order
        tuned = self.control.parameters() if isinstance(self.control, Module) else []
        self.all_params = self.params + tuned

    def batch(self, b):
        return b

    def _backward(self, x, u):
        return self.backward_pass(self.model, self.spec, self.control, self.opt, self.encoder,
                                  x, [u], None)

    def step(self, x, u):
        _, f_values, control_grads = self._backward(x, u)
        self.opt.step()
        self.train_control(self.control, self.control_opt, self.model, x, f_values,
                           control_grads)

    def loss_and_grads(self, x, u):
        """The loss, the model's gradients and (REBAR) those of the control's Parameters
        (C(x); dynamic REBAR: also the eta logits and log lambda) on d mean(g^2)."""
        loss, _, control_grads = self._backward(x, u)
        grads = [p.grad.data.copy() for p in self.params]
        grads += [g.copy() for g in control_grads or []]
        self.opt.zero_grad()
        return loss.item(), grads


class TorchSBN:
    """The same step in PyTorch: same formulas, same samples, same baselines."""

    def __init__(self, wl, params0):
        import torch

        self.torch, self.estimator, self.lr = torch, wl["estimator"], wl["lr"]
        self.mean = torch.from_numpy(sbn_pixel_means())
        as_param = lambda a: torch.from_numpy(a.copy()).requires_grad_()  # noqa: E731
        n_pairs = 3 if wl["nonlinear"] else 1  # layers per transformation
        n_model = 1 + 4 * n_pairs
        self.params = [as_param(p) for p in params0[:n_model]]
        self.encoder = self.params[1:1 + 2 * n_pairs]
        self.enc = list(zip(self.encoder[::2], self.encoder[1::2]))
        decoder = self.params[1 + 2 * n_pairs:]
        self.dec = list(zip(decoder[::2], decoder[1::2]))
        self.opt = torch.optim.Adam(self.params, lr=self.lr, betas=(0.9, 0.99999))
        self.dynamic = self.estimator == "dynamic REBAR"
        # C(x): Linear(784, 100), tanh, Linear(100, 1); dynamic REBAR: then one eta logit per
        # encoder tensor and log lambda
        self.tuned = [as_param(p) for p in params0[n_model:]]
        self.c_params = self.tuned[:4]
        if self.tuned:
            self.c_opt = torch.optim.Adam(self.tuned, lr=10 * self.lr, betas=(0.9, 0.99999))
        self.c_mean, self.c_var, self.c_steps = 0.0, 1.0, 0  # NVIL's running moments
        self.ascent = self.c_grads = None  # REBAR: set by _estimate, used by the step

    def batch(self, b):
        return self.torch.from_numpy(b[0]), self.torch.from_numpy(b[1])

    @staticmethod
    def _net(layers, inp):
        for k, (w, b) in enumerate(layers):
            inp = inp @ w + b
            if k < len(layers) - 1:
                inp = inp.tanh()
        return inp

    @staticmethod
    def _log_likelihood(torch, b, logits):
        return (b * logits - torch.nn.functional.softplus(logits)).sum(dim=-1)

    def _log_joint(self, x, b):
        torch = self.torch
        ll = self._log_likelihood
        return ll(torch, b, self.params[0]) + ll(torch, x, self._net(self.dec, 2.0 * b - 1.0))

    def _baseline(self, x):
        w1, b1, w2, b2 = self.c_params
        return (self.torch.tanh((x - self.mean) @ w1 + b1) @ w2 + b2).reshape(-1)

    def _estimate(self, x, logits, u):
        """The estimate of d E[f] / d logits sent through the surrogate (REBAR: zero, and
        its encoder gradient in self.ascent)."""
        torch = self.torch
        known = logits.detach()
        p = torch.sigmoid(known)
        b = (u < p).to(x.dtype)

        def f(bb):  # log p(x, b) - log q(b | x), the logits held fixed
            return self._log_joint(x, bb) - self._log_likelihood(torch, bb, known)

        if self.estimator == "NVIL":
            with torch.no_grad():
                values = self._baseline(x) + self.c_mean
                scale = max(1.0, float(self.c_var) ** 0.5)
                return (f(b) - values)[:, None] * (b - p) / scale
        if self.estimator == "DisARM":
            with torch.no_grad():
                b_tilde = (1 - u < p).to(x.dtype)
                difference = (f(b_tilde) - f(b))[:, None]
                return (0.5 * difference * (1 - 2 * b) * (b != b_tilde)
                        * torch.sigmoid(known.abs()))
        if self.estimator in ("REBAR", "dynamic REBAR"):
            self._rebar(x, logits, u, f)
            return torch.zeros_like(known)
        mean = p.clone().requires_grad_()
        f_mean = f(mean)
        (slope,) = torch.autograd.grad(f_mean.sum(), mean)
        with torch.no_grad():
            taylor = f_mean + ((b - p) * slope).sum(dim=1)
            return (f(b) - taylor)[:, None] * (b - p) + slope * p * (1 - p)

    def _rebar(self, x, logits, u, f):
        """REBAR: g = (f(b) - C(x)) (b - theta) + eta h, with the relaxed correction
        h = d c(z) / d a - d c(z~) / d a - c(z~) (b - theta), c(z) = f(sigma_lambda(z)) and
        sigma_lambda(z) = sigmoid(z / lambda + a lambda / (lambda + 1)) (the REBAR code's
        relaxation); z = a + logit(1 - u), so b = 1[z > 0]; z~ ~ p(z | b) from the coupled
        noise v that makes z~ = z in value. eta = 1, lambda = 0.5; dynamic REBAR: one eta per
        encoder tensor, eta = 2 sigmoid(w), and lambda = exp(log lambda), tuned, so h keeps
        its graph (the double backward). Sets the encoder's ascent direction (batch mean)
        and the gradient of the tuned parameters on mean(g_P^2)."""
        torch = self.torch
        eps, tiny = float(torch.finfo(x.dtype).eps), float(torch.finfo(x.dtype).tiny)
        lam = self.tuned[-1].exp() if self.dynamic else 0.5
        a = logits.detach().requires_grad_()  # a leaf: h is a function of the values
        theta, one_minus = torch.sigmoid(a), torch.sigmoid(-a)
        with torch.no_grad():
            u64 = u.double()
            logit_rest = -(torch.log(u64) - torch.log1p(-u64))  # logit(1 - u)
            b = (a + logit_rest.to(x.dtype) > 0).to(x.dtype)
            theta64 = torch.sigmoid(a.double())
            v = torch.where(b == 1, (theta64 - u64) / theta64, (1 - u64) / (1 - theta64))
            v = v.nan_to_num(nan=0.5).clamp(0.0, 1.0).to(x.dtype)
            inside = u64.clamp(eps, 1 - eps)
            offset = (-(torch.log(inside) - torch.log1p(-inside))).to(x.dtype)
            score = b - theta
        v_prime = torch.where(b == 1, one_minus + theta * v, one_minus * v)
        rest = torch.where(b == 1, theta * (1 - v), theta + one_minus * (1 - v))
        z = a + offset
        z_tilde = a + torch.log(v_prime.clamp_min(tiny)) - torch.log(rest.clamp_min(tiny))
        shift = a * (lam / (lam + 1.0))
        c_z = f(torch.sigmoid(z / lam + shift))
        c_tilde = f(torch.sigmoid(z_tilde / lam + shift))
        (d_z,) = torch.autograd.grad(c_z.sum(), a, retain_graph=True,  # shift is shared
                                     create_graph=self.dynamic)
        (d_tilde,) = torch.autograd.grad(c_tilde.sum(), a, retain_graph=self.dynamic,
                                         create_graph=self.dynamic)
        h = d_z - d_tilde - c_tilde[:, None] * score
        if not self.dynamic:
            h = h.detach()
        with torch.no_grad():
            f_b = f(b)
        reinforce = (f_b - self._baseline(x))[:, None] * score  # differentiable in C
        if self.dynamic:
            a_p = torch.autograd.grad(logits, self.encoder, reinforce, create_graph=True,
                                      retain_graph=True)
            b_p = torch.autograd.grad(logits, self.encoder, h, create_graph=True)
            etas = [2.0 * torch.sigmoid(w) for w in self.tuned[4:-1]]
            g_p = [ap + eta * bp for ap, eta, bp in zip(a_p, etas, b_p)]
        else:
            g_p = torch.autograd.grad(logits, self.encoder, reinforce + h, create_graph=True)
        n, size = x.shape[0], sum(q.numel() for q in self.encoder)
        second_moment = sum((gp * gp).sum() for gp in g_p) * (1.0 / (n * n * size))
        self.c_grads = torch.autograd.grad(second_moment, self.tuned)
        self.ascent = [gp.detach() / n for gp in g_p]

    def _loss(self, x, u):
        torch = self.torch
        n = x.shape[0]
        logits = self._net(self.enc, x - self.mean)
        with torch.no_grad():
            samples = (logits > torch.log(u) - torch.log1p(-u)).to(x.dtype)
        g = self._estimate(x, logits, u)
        log_joint = self._log_joint(x, samples)
        with torch.no_grad():
            f_values = log_joint - self._log_likelihood(torch, samples, logits)
        loss = log_joint.sum() * (-1.0 / n)
        if self.ascent is None:
            loss = loss - (logits * g).sum() * (1.0 / n)
        return loss, f_values

    def _backward(self, x, u):
        loss, f_values = self._loss(x, u)
        self.opt.zero_grad()
        loss.backward()
        if self.ascent is not None:  # the encoder's gradient: minus the ascent direction
            for q, g in zip(self.encoder, self.ascent):
                q.grad = -g
        return loss, f_values

    def _update_baseline(self, x, f_values):
        torch = self.torch
        predicted = self._baseline(x)
        residual = (f_values - self.c_mean) - predicted
        self.c_opt.zero_grad()
        (residual * residual).mean().backward()
        r = f_values - predicted.detach()
        a = 0.8 if self.c_steps else 0.0
        self.c_mean = a * self.c_mean + (1 - a) * float(r.mean())
        self.c_var = a * self.c_var + (1 - a) * float(((r - self.c_mean) ** 2).mean())
        self.c_opt.step()
        self.c_steps += 1
        del torch

    def step(self, x, u):
        _, f_values = self._backward(x, u)
        self.opt.step()
        if self.estimator == "NVIL":
            self._update_baseline(x, f_values)
        elif self.c_grads is not None:  # the tuned parameters' Adam step on d mean(g^2)
            for c, d in zip(self.tuned, self.c_grads):
                c.grad = d
            self.c_opt.step()

    def loss_and_grads(self, x, u):
        loss, _ = self._backward(x, u)
        grads = [p.grad.numpy().copy() for p in self.params]
        if self.c_grads is not None:
            grads += [d.numpy().copy() for d in self.c_grads]
        self.opt.zero_grad()
        return loss.item(), grads


class HandSBNFloor:
    """The NumPy floor of the SBN rows (benchmarks/sbn_floor.py)."""

    def __new__(cls, wl, params0):
        from sbn_floor import HandSBN

        return HandSBN(wl, params0, sbn_pixel_means())


MINIGRAD_MODELS = {"mlp": MinigradMLP, "lenet": MinigradLeNet}
HAND_MODELS = {"mlp": HandMLP, "lenet": HandLeNet}  # workloads without one have no floor
TORCH_MODELS: dict = {}  # kinds with their own PyTorch class (else TorchModel)
MINIGRAD_MODELS["sbn"] = MinigradSBN
TORCH_MODELS["sbn"] = TorchSBN
HAND_MODELS["sbn"] = HandSBNFloor

# ============================================================================ parent
def blas_name() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name, version = blas.get("name", "?"), blas.get("version", "")
        return f"{name} {version}".strip()
    except Exception:  # older NumPy: no mode="dicts"
        return "unknown (see numpy.show_config())"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_worker(config: dict) -> dict:
    """Run one worker in a fresh interpreter with the thread variables set; its JSON result."""
    env = dict(os.environ)
    env.update(worker_env(config["workload"], config["threads"], config.get("impl")))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(config)],
        env=env, capture_output=True, text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    sys.stderr.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    what = f"{config['mode']} run" + (f" of {config['impl']}" if "impl" in config else "")
    raise SystemExit(
        f"bench: the {what} for {WORKLOADS[config['workload']]['title']} at "
        f"{config['threads']} thread(s) failed (exit code {proc.returncode}); its output is above"
    )


def run_cell(workload: str, threads: int, quick: bool, have_torch: bool) -> dict:
    """Correctness guard, then every implementation timed in its own processes."""
    import numpy as np

    wl = WORKLOADS[workload]
    base = {"workload": workload, "threads": threads}
    res = run_worker({**base, "mode": "guard", "torch": have_torch})
    impls = ["minigrad"] + (["numpy"] if wl["kind"] in HAND_MODELS else [])
    impls += ["torch"] if have_torch and not res["torch_error"] else []
    steps = wl["quick_steps" if quick else "steps"]
    warmup = wl["quick_warmup" if quick else "warmup"]
    rounds = QUICK_ROUNDS if quick else ROUNDS
    times: dict[str, list[float]] = {name: [] for name in impls}
    cpu = []
    for r in range(rounds):
        for name in impls if r % 2 == 0 else impls[::-1]:
            todo = (steps * (r + 1)) // rounds - (steps * r) // rounds
            out = run_worker({**base, "mode": "time", "impl": name, "steps": todo,
                              "warmup": warmup})
            times[name] += out["times"]
            if out["cpu"] is not None:
                cpu.append(out["cpu"])
    stats = {}
    for name, ts in times.items():
        q1, med, q3 = (float(v) for v in np.percentile(np.array(ts), [25, 50, 75]))
        stats[name] = {"median_ms": 1e3 * med, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
                       "steps": len(ts), "processes": rounds}
    res.update(base)
    res["stats"] = stats
    res["others_cpu_share"] = others_cpu_share(cpu)
    return res


def verdict(ratio: float | None, bound: float | None) -> str:
    if ratio is None:
        return "-"
    if bound is None:
        return f"{ratio:5.2f}"
    return f"{ratio:5.2f} <={bound:<4g} {'pass' if ratio <= bound else 'MISS'}"


def fmt_time(s: dict | None) -> str:
    if s is None:
        return "-"
    return f"{s['median_ms']:8.3f} ({s['q3_ms'] - s['q1_ms']:6.3f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer warm-up and timed steps")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}, or a group: "
                        + ", ".join(f"{k} (= {','.join(v)})" for k, v in WORKLOAD_GROUPS.items()))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--disarm", action="store_true",
                        help="add the DisARM rows (sbn_linear_disarm, sbn_nonlinear_disarm) "
                        "to the chosen workloads (they are in the default run; "
                        "--workloads sbn runs only the SBN estimator steps)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    if args.worker is not None:
        from minigrad.tensor import keep_freed_memory

        keep_freed_memory()     # as the book's runs do (the floor's arrays profit as much)
        config = json.loads(args.worker)
        result = (guard_worker if config["mode"] == "guard" else time_worker)(config)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    chosen = []
    for w in (w.strip() for w in args.workloads.split(",")):
        chosen += [v for v in WORKLOAD_GROUPS.get(w, [w] if w else []) if v not in chosen]
    if args.disarm:
        chosen += [w for w in ("sbn_linear_disarm", "sbn_nonlinear_disarm") if w not in chosen]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)} "
                     f"or a group of them, {list(WORKLOAD_GROUPS)}")

    import numpy as np

    have_torch = importlib.util.find_spec("torch") is not None
    torch_version = None
    if have_torch:
        try:
            from importlib.metadata import version

            torch_version = version("torch")
        except Exception:
            torch_version = "?"
    import numba

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "numba": numba.__version__,
        "torch": torch_version,
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "load_average_at_start": load,
        "quick": args.quick,
        "threadpoolctl": importlib.util.find_spec("threadpoolctl") is not None,
    }
    print("minigrad speed benchmark: median time per training step "
          "(forward + backward + optimizer update), float32")
    print(f"Python {meta['python']}, NumPy {meta['numpy']} (BLAS: {meta['blas']}), "
          f"Numba {meta['numba']}, "
          + (f"PyTorch {torch_version} (CPU, eager)" if have_torch else "PyTorch not installed"))
    print(f"CPU: {meta['cpu']}, {meta['logical_cores']} logical cores"
          + (f", load average {load:.2f} at start" if load is not None else ""))
    if load is not None and load > 0.5:
        print("  note: the load average was above 0.5 at start: check the 'others CPU' column")
    prefix = "quick_" if args.quick else ""
    steps = ", ".join(
        f"{WORKLOADS[w]['title'].split(',')[0]}: {WORKLOADS[w][prefix + 'steps']} timed after "
        f"{WORKLOADS[w][prefix + 'warmup']} warm-up"
        for w in chosen)
    print(f"Steps per cell ({'quick' if args.quick else 'full'} run): {steps}")
    print("Each implementation is timed alone in fresh processes "
          f"({QUICK_ROUNDS if args.quick else ROUNDS} per cell, in alternating order) with "
          + ", ".join(THREAD_VARS) + " set before NumPy is imported"
          + (" and torch.set_num_threads(n)" if have_torch else "")
          + ("; threads checked with threadpoolctl." if meta["threadpoolctl"]
             else "; threadpoolctl is not installed, so the variables are trusted."))
    if not have_torch:
        print("Note: the PyTorch column is left out because torch is not installed "
              "(benchmarks/README.md says how to add it).")
    print(flush=True)

    results = []
    thread_checks: dict[int, dict] = {}
    for w in chosen:
        for n in WORKLOADS[w].get("threads", THREADS):
            print(f"  running {WORKLOADS[w]['title']} at {n} thread(s) ...", file=sys.stderr,
                  flush=True)
            res = run_cell(w, n, args.quick, have_torch)
            # a row with its own BLAS setting: OpenBLAS at that, and OpenMP is not checked
            # (the guard's process holds PyTorch too, whose set_num_threads(n) sets it)
            blas = WORKLOADS[w].get("env", {}).get("OPENBLAS_NUM_THREADS")
            wrong = {k: v for k, v in res["thread_check"].items()
                     if not (blas and k == "openmp")
                     and v != (int(blas) if blas and k == "openblas" else n)}
            if wrong:
                print(f"WARNING: {WORKLOADS[w]['title']} at {n} thread(s): thread pools report "
                      + ", ".join(f"{k}={v}" for k, v in wrong.items()))
            if "env" not in WORKLOADS[w]:
                thread_checks.setdefault(n, res["thread_check"])
            if res.get("torch_error"):
                print(f"Note: torch could not be imported in the worker "
                      f"({res['torch_error']}); PyTorch column left out.")
            st = res["stats"]
            tg = targets(WORKLOADS[w]["kind"], n)
            ratios = {}
            for other in ("numpy", "torch"):
                if other in st:
                    ratios[other] = st["minigrad"]["median_ms"] / st[other]["median_ms"]
            res["ratios"] = {f"minigrad/{k}": v for k, v in ratios.items()}
            res["targets"] = {f"minigrad/{k}": tg[k] for k in ratios}
            res["pass"] = {f"minigrad/{k}": bool(tg[k] is None or ratios[k] <= tg[k])
                           for k in ratios}
            results.append(res)

    # ------------------------------------------------------------------ the table
    show_torch = any("torch" in r["stats"] for r in results)
    head = (f"{'workload':<31}{'thr':>3}  {'minigrad':>17}  {'NumPy floor':>17}"
            + (f"  {'PyTorch eager':>17}" if show_torch else "")
            + f"  {'minigrad / floor':<21}"
            + (f"  {'minigrad / PyTorch':<21}" if show_torch else "")
            + "  others")
    sub = (f"{'':<31}{'':>3}  {'ms  (IQR)':>17}  {'ms  (IQR)':>17}"
           + (f"  {'ms  (IQR)':>17}" if show_torch else "")
           + f"  {'ratio  target':<21}" + (f"  {'ratio  target':<21}" if show_torch else "")
           + "  CPU")
    rule = "-" * len(head)
    busy_cells = 0
    print(head)
    print(sub)
    print(rule)
    for res in results:
        st, tg = res["stats"], res["targets"]
        line = (f"{WORKLOADS[res['workload']]['title']:<31}{res['threads']:>3}  "
                f"{fmt_time(st['minigrad']):>17}  {fmt_time(st.get('numpy')):>17}")
        if show_torch:
            line += f"  {fmt_time(st.get('torch')):>17}"
        line += f"  {verdict(res['ratios'].get('minigrad/numpy'), tg.get('minigrad/numpy')):<21}"
        if show_torch:
            torch_ratio = res["ratios"].get("minigrad/torch")
            line += f"  {verdict(torch_ratio, tg.get('minigrad/torch')):<21}"
        share = res.get("others_cpu_share")
        if share is None:
            line += "  ?"
        else:
            line += f"  {100 * share:3.0f}%" + (" !" if share > BUSY_WARNING else "")
            busy_cells += share > BUSY_WARNING
        print(line.rstrip())
    print(rule)

    scaling = {}
    for w in chosen:
        by_n = {r["threads"]: r["stats"] for r in results if r["workload"] == w}
        base = WORKLOADS[w].get("scaling_base")  # a 2-thread-only row: against that row's 1
        by_n.update({1: r["stats"] for r in results
                     if base and r["workload"] == base and r["threads"] == 1})
        if 1 not in by_n or 2 not in by_n:
            continue
        s = {impl: by_n[2][impl]["median_ms"] / by_n[1][impl]["median_ms"]
             for impl in IMPLS if impl in by_n[1] and impl in by_n[2]}
        scaling[w] = {"2/1": s, "target": SCALING_TARGET,
                      "pass": bool(s["minigrad"] <= SCALING_TARGET)}
        others = ", ".join(f"{IMPL_TITLES[k]} {v:.2f}" for k, v in s.items() if k != "minigrad")
        print(f"{WORKLOADS[w]['title']:<31} 2 threads / 1 thread, minigrad: "
              f"{verdict(s['minigrad'], SCALING_TARGET)}   ({others})")
    print()
    print("others CPU: share of the machine's CPU time used by other processes while a cell was")
    print(f"timed; '!' marks more than {100 * BUSY_WARNING:.0f}%, where the timings are not "
          "trustworthy."
          + (f" {busy_cells} cell(s) are marked: rerun on an idle machine." if busy_cells else ""))
    for n, check in thread_checks.items():
        print(f"Threads reported at {n}: " + ", ".join(f"{k}={v}" for k, v in check.items())
              + ("" if meta["threadpoolctl"] else " (threadpoolctl not installed)"))
    print("Times: median over the timed steps, in ms, with the interquartile range (q3 - q1);")
    print("warm-up steps run first and are not timed, so Numba compilation is excluded.")
    print("Ratios are minigrad's median over the other's: below 1 means minigrad is faster.")
    print("NumPy floor: forward and backward written by hand in direct NumPy (float32, no")
    print("autograd, no Numba for the MLPs); for LeNet-5 it calls the same minigrad.kernels")
    print("conv/pool kernels directly, the floor for a NumPy engine built on them (and, like")
    print("PyTorch, does not compute the gradient of the input images).")
    if show_torch:
        print("PyTorch eager: torch.nn layers, F.cross_entropy on the same one-hot targets,")
        print("torch.optim.SGD / Adam, CPU, float32, same initial weights.")
    if any(WORKLOADS[w]["kind"] == "sbn" for w in chosen):
        print("SBN rows: one training step of minigrad.experiments.sbn (SBNRun.step without its")
        print("diagnostics) against the same estimator written by hand in NumPy (sbn_floor.py)")
        print("and in PyTorch, same weights, data and noise; the guard also compares the")
        print("gradients of REBAR's tuned parameters on mean(g^2): C(x), and for dynamic REBAR")
        print("the eta logits and log lambda.")
    guards = "; ".join(
        f"{WORKLOADS[r['workload']]['title'].split(',')[0]} {r['threads']}T: "
        + ", ".join(f"{IMPL_TITLES[k]} {v:.1e}" for k, v in r["guard"].items())
        for r in results if r["threads"] == 1)
    print("Correctness guard passed (max |difference| / max |value| of loss and gradients on one")
    print(f"batch, against minigrad): {guards}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "scaling": scaling}, f, indent=2)
            f.write("\n")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

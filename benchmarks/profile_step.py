#!/usr/bin/env python
"""Where one minigrad training step spends its time (companion of bench.py).

    python benchmarks/profile_step.py mlp1            # MLP 784-100-10, B=50
    python benchmarks/profile_step.py lenet --steps 40
    python benchmarks/profile_step.py mlp1 --cprofile  # also the top of a cProfile listing
    python benchmarks/profile_step.py sbn_nonlinear_rebar --cprofile  # an SBN estimator step

Runs at one thread (the thread variables are set before NumPy is imported, unless already
set). Prints:

1. the number of ``Function.apply`` calls per step, by class, in the forward pass and inside
   the backward pass;
2. the median step time of minigrad, with the minor page faults and the system (kernel) CPU
   time per step: fresh memory that the allocator gets from the kernel each step is zeroed
   page by page, which costs time outside NumPy (only minigrad runs in this process: the
   NumPy floor would share, and change, its allocator state; compare with bench.py);
3. a breakdown of the minigrad step, measured by timing every ``Function.forward``, every
   kernel call and the optimizer: BLAS (``MatMul.forward``), other NumPy array work, the
   conv / pool kernels, the optimizer update, and the rest, which is Python: ``apply``,
   Tensor creation, the graph walk, ``unbroadcast`` and argument handling. The timers add
   about 0.3 us per call, so the breakdown adds up to a bit more than the plain step time;
   each line is a median over the steps (robust to interruptions), so they need not add up
   exactly to the median total.

For an SBN row (``sbn_<model>_<estimator>``, the step of bench.py's SBN rows) it prints 1, the
number of backward passes per step (``Tensor.backward`` and every ``grad``) and 2; a step
calls estimator code of its own between its passes, so the breakdown is left to ``--cprofile``.
"""
from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (after the thread variables; bench puts the repository on sys.path)

KERNEL_FUNCS = ("conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward")
KERNEL_CLASSES = ("Conv2d", "MaxPool2d")  # their forward is a kernel call: counted as kernel
PYTHON = "Python: apply, Tensors, graph walk, unbroadcast, ..."


def build(workload: str):
    import numpy as np

    from minigrad.tensor import keep_freed_memory

    keep_freed_memory()     # as the bench and the book's runs do: no page faults to profile
    wl = bench.WORKLOADS[workload]
    rng = np.random.default_rng(0)
    mg = {"mlp": bench.MinigradMLP, "lenet": bench.MinigradLeNet,
          "sbn": bench.MinigradSBN}[wl["kind"]](wl, rng)
    return wl, mg, bench.make_batches(wl, rng)


def median_ms(step, batches, n: int) -> float:
    times = []
    for i in range(n):
        x, t = batches[i % len(batches)]
        t0 = time.perf_counter()
        step(x, t)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def count_applies(mg, batch):
    from minigrad import tensor as T

    counts: collections.Counter = collections.Counter()
    phase = ["forward"]
    apply0, run_backward0 = T.Function.apply.__func__, T._run_backward

    def apply(cls, *args, **kwargs):
        counts[(phase[0], cls.__name__)] += 1
        return apply0(cls, *args, **kwargs)

    def run_backward(*args, **kwargs):
        counts[("passes", "backward")] += 1
        phase[0] = "backward"
        try:
            return run_backward0(*args, **kwargs)
        finally:
            phase[0] = "forward"

    T.Function.apply, T._run_backward = classmethod(apply), run_backward
    try:
        mg.step(*batch)
    finally:
        T.Function.apply, T._run_backward = classmethod(apply0), run_backward0
    return counts


def breakdown(mg, batches, n: int):
    from minigrad import functions as F
    from minigrad import tensor as T

    acc: collections.defaultdict = collections.defaultdict(float)
    per_op: collections.defaultdict = collections.defaultdict(float)
    phase = ["forward"]
    clock = time.perf_counter
    saved = []

    classes = [c for c in vars(F).values()
               if isinstance(c, type) and issubclass(c, T.Function) and c is not T.Function]
    for cls in classes:
        if cls.__name__ in KERNEL_CLASSES:
            category = "kernels"
        elif cls.__name__ in ("MatMul", "Linear"):
            category = "BLAS (matmul)"
        else:
            category = "NumPy elementwise/reductions"
        # The array form of backward is timed too (the kernels' backward is timed below).
        methods = ["forward"] + ([] if cls.__name__ in KERNEL_CLASSES else ["backward_arrays"])
        for method in methods:
            original = cls.__dict__.get(method)
            if original is None:
                continue

            def timed(self, *args, _f=original, _cat=category, _name=cls.__name__, **kwargs):
                t0 = clock()
                out = _f(self, *args, **kwargs)
                dt = clock() - t0
                acc[_cat] += dt
                per_op[(phase[0], _name)] += dt
                return out

            saved.append((cls, method, original))
            setattr(cls, method, timed)
    for name in KERNEL_FUNCS:
        original = getattr(F.kernels, name, None)
        if original is None or not name.endswith("backward"):
            continue

        def timed_kernel(*args, _f=original, _name=name, **kwargs):
            t0 = clock()
            out = _f(*args, **kwargs)
            dt = clock() - t0
            acc["kernels"] += dt
            per_op[("backward", _name)] += dt
            return out

        saved.append((F.kernels, name, original))
        setattr(F.kernels, name, timed_kernel)

    rows = []  # one dict of category -> seconds per step; medians resist outliers
    try:
        for i in range(n):
            x, t = batches[i % len(batches)]
            acc.clear()
            t0 = clock()
            mg.opt.zero_grad()
            loss = mg.xent(mg.model(mg.tensor(x)), mg.tensor(t))
            phase[0] = "backward"
            loss.backward()
            phase[0] = "forward"
            t1 = clock()
            mg.opt.step()
            t2 = clock()
            row = dict(acc)
            row["optimizer (array updates + loop)"] = t2 - t1
            row[PYTHON] = (t2 - t0) - sum(row.values())
            row["total"] = t2 - t0
            rows.append(row)
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    parts = {k: 1e3 * statistics.median(r.get(k, 0.0) for r in rows) for k in rows[0]}
    total = parts.pop("total")
    return parts, {k: 1e3 * v / n for k, v in per_op.items()}, total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Profile one minigrad training step.")
    parser.add_argument("workload", choices=list(bench.WORKLOADS))
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per measurement (default 500 for MLPs, 40 for LeNet "
                        "and the SBN rows)")
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile listing")
    args = parser.parse_args(argv)
    wl, mg, batches = build(args.workload)
    n = args.steps or (500 if wl["kind"] == "mlp" else 40)
    sbn = wl["kind"] == "sbn"
    for i in range(5):  # warm-up, Numba compilation included
        mg.step(*batches[i % len(batches)])

    print(f"{wl['title']}, {os.environ['OPENBLAS_NUM_THREADS']} thread(s), {n} steps per figure")
    counts = count_applies(mg, batches[0])
    passes = counts.pop(("passes", "backward"), 0)
    for ph in ("forward", "backward"):
        by_cls = {c: k for (p, c), k in counts.items() if p == ph}
        listing = ", ".join(f"{c} {k}" for c, k in sorted(by_cls.items(), key=lambda kv: -kv[1]))
        print(f"Function.apply calls, {ph} pass: {sum(by_cls.values())} ({listing})")
    print(f"Function.apply calls per step: {sum(counts.values())}; backward passes: {passes}")

    t_mg = median_ms(mg.step, batches, n)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        mg.step(*batches[i % len(batches)])
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"median step: minigrad {t_mg:.3f} ms; per step: "
          f"{(after.ru_minflt - before.ru_minflt) / n:.0f} minor page faults, "
          f"{1e3 * (after.ru_stime - before.ru_stime) / n:.3f} ms system CPU time")

    parts, per_op, total = ({}, {}, 0.0) if sbn else breakdown(mg, batches, n)
    if not sbn:
        print("breakdown of the instrumented minigrad step (medians per step; "
              f"total {total:.3f} ms):")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<55} {v:8.3f} ms  {100 * v / total:5.1f} %")
    if not sbn:
        print("array time per Function.forward / backward kernel (mean ms per step):")
    for (ph, name), v in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"  {ph:<9} {name:<22} {v:8.3f}")

    if args.cprofile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            mg.step(*batches[i % len(batches)])
        prof.disable()
        print(f"cProfile, {n} steps (its own overhead inflates Python time about 2x):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())

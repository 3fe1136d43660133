#!/usr/bin/env python
"""Serial or parallel? Times each conv / pool kernel of minigrad.kernels both ways at 2 threads.

    python benchmarks/parallel_kernels.py            # kernels alone, LeNet-5 shapes, batch 128
    python benchmarks/parallel_kernels.py --steps 20 # and whole LeNet-5 steps, both nestings

The kernels loop over samples with ``numba.prange``; ``minigrad.kernels.PARALLEL_KERNELS``
lists those that run in parallel when Numba has more than one thread. The design rule: a
parallel kernel that measures slower than its serial version is not used. This script gives
the measurement: the best of several repeats of each kernel, serial then parallel, in a
fresh process with NUMBA_NUM_THREADS=2. With ``--steps`` it also times LeNet-5 training
steps (with the allocator setting of the book's runs and of bench.py) in the ways the kernels'
threads and BLAS's threads can be combined: serial kernels with a 2-thread BLAS (the default),
parallel kernels with a 1-thread BLAS, and the convolutions split over two batch threads
(``MINIGRAD_CONV_THREADS=2``: im2col and the matrix products of each half of the batch on its
own thread; the products are small enough that BLAS runs them on the calling thread) with a
1-thread and with a 2-thread BLAS. The last pair shows why BLAS's threads matter: after each
call OpenBLAS's worker threads wait for the next one by spinning, for about 0.1 s, so with a
2-thread BLAS the second core is busy spinning when the batch threads want it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TAG = "@@PARALLEL-RESULT "


def kernel_times() -> dict:
    import timeit

    import numpy as np

    from minigrad import kernels as K

    rng = np.random.default_rng(0)
    best = lambda f: min(timeit.repeat(f, number=3, repeat=15)) / 3 * 1e3  # noqa: E731
    a1 = rng.random((128, 6, 28, 28), dtype=np.float32)
    pooled = K._pool_outputs(a1, 2)
    out, argmax = K._SERIAL["maxpool_forward"](a1, 2, *pooled)
    g = rng.random(out.shape, dtype=np.float32)
    dx = np.empty_like(a1)
    calls = {"maxpool_forward": lambda t: t["maxpool_forward"](a1, 2, *pooled),
             "maxpool_backward": lambda t: t["maxpool_backward"](g, argmax, 2, dx)}
    for layer, x in (("conv1", rng.random((128, 1, 32, 32), dtype=np.float32)),
                     ("conv2", rng.random((128, 6, 14, 14), dtype=np.float32))):
        n, c, h, _ = x.shape
        oh = h - 4
        cols = np.empty((n, c * 25, oh * oh), np.float32)
        dx = np.zeros(x.shape, np.float32)
        calls[f"im2col {layer}"] = lambda t, x=x, cols=cols: t["im2col"](x, 5, 5, 1, 0, 0, cols)
        calls[f"col2im {layer}"] = lambda t, cols=cols, dx=dx: t["col2im"](cols, 5, 5, 1, 0, 0,
                                                                          dx)
    result = {}
    for name, call in calls.items():
        call(K._SERIAL)
        call(K._PARALLEL)  # compile first
        result[name] = {"serial_ms": best(lambda: call(K._SERIAL)),
                        "parallel_ms": best(lambda: call(K._PARALLEL))}
    return result


def step_times(steps: int, parallel: bool, split: bool = False) -> float:
    import time

    import numpy as np

    sys.path.insert(0, HERE)
    import bench
    from minigrad import kernels as K
    from minigrad.tensor import keep_freed_memory

    keep_freed_memory()
    K.PARALLEL_KERNELS = frozenset(K._PARALLEL) if parallel else frozenset()
    K.CONV_THREADS = 2 if split else 1
    wl = bench.WORKLOADS["lenet"]
    rng = np.random.default_rng(0)
    model = bench.MinigradLeNet(wl, rng)
    batches = bench.make_batches(wl, rng)
    for i in range(3):
        model.step(*batches[i % len(batches)])
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        model.step(*batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def run(mode: str, blas_threads: int, steps: int = 0) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS=str(blas_threads),
               OPENBLAS_NUM_THREADS=str(blas_threads), MKL_NUM_THREADS=str(blas_threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                      env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", mode,
                           "--steps", str(steps)], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise SystemExit(proc.stdout + proc.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=0, help="also time this many LeNet steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "kernels":
        print(TAG + json.dumps(kernel_times()))
        return 0
    if args.worker in ("serial", "parallel", "split"):
        print(TAG + json.dumps(step_times(args.steps, args.worker == "parallel",
                                          args.worker == "split")))
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Numba threads 2, load average {load:.2f}; best of 15 repeats, ms per call")
    faster = []
    for name, t in run("kernels", blas_threads=1).items():
        ratio = t["parallel_ms"] / t["serial_ms"]
        print(f"  {name:<18} serial {t['serial_ms']:7.3f}  parallel {t['parallel_ms']:7.3f}  "
              f"parallel / serial {ratio:5.2f}")
        if ratio < 1:
            faster.append(name.split()[0])
    print("faster in parallel: " + (", ".join(sorted(set(faster))) or "none"))
    if args.steps:
        serial = run("serial", blas_threads=2, steps=args.steps)
        parallel = run("parallel", blas_threads=1, steps=args.steps)
        split = run("split", blas_threads=1, steps=args.steps)
        spinning = run("split", blas_threads=2, steps=args.steps)
        print(f"LeNet-5 step, median of {args.steps}, ms:")
        for what, t in (("serial kernels, 2-thread BLAS (the default)", serial),
                        ("parallel kernels, 1-thread BLAS", parallel),
                        ("convolutions split over 2 batch threads, 1-thread BLAS", split),
                        ("convolutions split over 2 batch threads, 2-thread BLAS", spinning)):
            print(f"  {what:<58} {t:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

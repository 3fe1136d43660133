"""Independent runs on every core: the one place where the library runs work in parallel.

A sweep (configurations x seeds, estimators x models) is a list of independent runs. ``map_runs``
maps a function over them on any :class:`concurrent.futures.Executor`: by default a local
process pool with one worker per core, each worker's BLAS and Numba limited to one thread, so
two runs on two cores never fight over them. A chapter's wall time is then about half its CPU
time on a 2-core machine. Results come back in the order of the runs, and each run depends only
on its own arguments (its seed included), so they are the same as a sequential loop's.

The local pool forks: the runs (and the data they close over) are inherited by the workers, not
pickled, so functions defined in a notebook, lambdas and large arrays all work. Where the
platform has no ``fork``, or ``MINIGRAD_WORKERS=1``, the runs go one after another in this
process. For a cluster, pass ``executor=Client(...).get_executor()`` (Dask), whose runs must
then be picklable: :mod:`~minigrad.experiments.runs` makes such runs from small
specifications (each worker loads its own data), and the command line uses it.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any, Callable, Sequence

from tqdm import tqdm

# The runs of the map in flight; forked workers inherit it, so nothing is pickled on the way in.
_RUNS: tuple[Callable, Sequence[tuple]] | None = None
_THREAD_LIMITS: Any = None


def default_workers() -> int:
    """Worker processes for a local sweep: ``$MINIGRAD_WORKERS``, else one per usable core."""
    value = os.environ.get("MINIGRAD_WORKERS", "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"MINIGRAD_WORKERS={value!r} must be a whole number >= 1")
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _one_thread_per_worker() -> None:
    """Worker initializer: one BLAS thread and one Numba thread, kept for the worker's life."""
    global _THREAD_LIMITS
    from threadpoolctl import threadpool_limits

    _THREAD_LIMITS = threadpool_limits(limits=1)
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def _run_inherited(index: int):
    fn, runs = _RUNS
    return fn(*runs[index])


def map_runs(fn: Callable, runs: Sequence[tuple], *, executor: cf.Executor | None = None,
             workers: int | None = None, progress: bool = False, desc: str = "runs") -> list:
    """``[fn(*run) for run in runs]``, computed in parallel; results in the order of ``runs``.

    Args:
        fn: the work of one run; it must not rely on state changed by other runs.
        runs: one tuple of arguments per run.
        executor: any ``concurrent.futures.Executor`` (e.g. a Dask client's); by default a
            local process pool of ``workers`` processes is made for this call.
        workers: size of the local pool (default :func:`default_workers`).
        progress: show a progress bar of finished runs.
    """
    runs = [tuple(run) for run in runs]
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)
    try:
        if executor is not None:
            futures = [executor.submit(fn, *run) for run in runs]
            return _collect(futures, bar)
        workers = default_workers() if workers is None else int(workers)
        workers = min(workers, len(runs))
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            results = []
            for run in runs:
                results.append(fn(*run))
                bar.update(1)
            return results
        return _map_forked(fn, runs, workers, bar)
    finally:
        bar.close()


def _map_forked(fn, runs, workers, bar) -> list:
    global _RUNS
    if _RUNS is not None:
        raise RuntimeError("map_runs cannot be nested: a run may not start a local sweep itself")
    _RUNS = (fn, runs)
    try:
        context = multiprocessing.get_context("fork")
        with cf.ProcessPoolExecutor(workers, mp_context=context,
                                    initializer=_one_thread_per_worker) as pool:
            futures = [pool.submit(_run_inherited, i) for i in range(len(runs))]
            return _collect(futures, bar)
    finally:
        _RUNS = None


def _collect(futures, bar) -> list:
    try:
        for future in cf.as_completed(futures):
            future.result()  # raise the first failure as soon as it happens
            bar.update(1)
    except BaseException:
        # a failure or Ctrl-C: runs not yet started are not started
        for future in futures:
            future.cancel()
        raise
    return [future.result() for future in futures]

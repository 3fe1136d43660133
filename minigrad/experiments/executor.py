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
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from tqdm import tqdm

from minigrad.tensor import keep_freed_memory

__all__ = ["Stopped", "RunNotStarted", "SweepInterrupted", "default_workers", "map_runs",
           "stop_requested"]

# The runs of the map in flight; forked workers inherit it, so nothing is pickled on the way in.
_RUNS: tuple[Callable, Sequence[tuple]] | None = None
_THREAD_LIMITS: Any = None
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds between a worker's checks that the process that started it is still there.
PARENT_POLL = 0.2


class Stopped(Exception):
    """Work stopped by a signal (``signum``) rather than finished or failed."""

    signum: int = signal.SIGTERM


class RunNotStarted(Stopped):
    """A run of a sweep that was not started because the sweep was being stopped."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"not started: the sweep was stopped by "
                         f"{signal.Signals(signum).name}")

    def __reduce__(self):
        return type(self), (self.signum,)


class SweepInterrupted(Stopped):
    """A sweep stopped by SIGINT or SIGTERM once every running run had stopped.

    ``stopped`` runs wrote their checkpoints, ``finished`` ones their results; ``not_started``
    ones were never begun. The same sweep with ``resume=True`` finishes what is missing.
    """

    def __init__(self, signum: int, stopped: int, finished: int, not_started: int):
        self.signum, self.stopped = signum, stopped
        self.finished, self.not_started = finished, not_started
        super().__init__(f"stopped by {signal.Signals(signum).name}: {stopped} run(s) "
                         f"stopped at a checkpoint, {finished} finished, {not_started} not "
                         "started")

    def __reduce__(self):
        return type(self), (self.signum, self.stopped, self.finished, self.not_started)


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


# ---------------------------------------------------------------------- inside a worker
# The first SIGINT or SIGTERM a worker of the local pool received: from then on it starts
# no run (a run in progress sees the signal itself and stops at a checkpoint).
_STOP: int | None = None
_BUSY = threading.Lock()
_RUNNING = False


def stop_requested() -> int | None:
    """In a worker of a local sweep: the signal that asked it to stop, if one did."""
    return _STOP


def _record_stop(signum, frame=None) -> None:
    global _STOP
    if _STOP is None:
        _STOP = signum


def _watch_parent(parent: int) -> None:
    """Stop this worker when the process that started it is gone (killed with SIGKILL, say):
    a run in progress is asked to stop as by SIGTERM (it writes its checkpoint), an idle
    worker exits at once."""
    import time

    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    with _BUSY:
        if not _RUNNING:
            os._exit(0)
    _record_stop(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)


def _term_when_parent_dies() -> None:
    """On Linux, ask the kernel for SIGTERM the moment the parent dies (``PR_SET_PDEATHSIG``),
    so that a run stops at once rather than at the watch's next poll; elsewhere the watch
    alone notices."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)   # 1 is PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_init(parent: int) -> None:
    """Worker initializer: one BLAS thread and one Numba thread, kept for the worker's life;
    SIGINT and SIGTERM recorded (the parent's stop procedure is in :func:`_collect`), and a
    watch on the parent. The parent blocks both signals while it forks, so none is lost."""
    global _THREAD_LIMITS
    from threadpoolctl import threadpool_limits

    for s in STOP_SIGNALS:
        signal.signal(s, _record_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _term_when_parent_dies()    # a parent gone before this line is seen by the watch
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="watch-parent").start()
    _THREAD_LIMITS = threadpool_limits(limits=1)
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def _run_inherited(index: int, parent: int):
    global _RUNNING
    with _BUSY:
        if _STOP is not None or os.getppid() != parent:
            raise RunNotStarted(_STOP or signal.SIGTERM)
        _RUNNING = True
    fn, runs = _RUNS
    try:
        return fn(*runs[index])
    except Stopped as e:
        _record_stop(e.signum)
        raise
    finally:
        with _BUSY:
            _RUNNING = False
            if os.getppid() != parent:   # nobody is left to read the result
                os._exit(0)


# ---------------------------------------------------------------------- in the parent
class _Signals:
    """Within ``with``: SIGINT and SIGTERM are recorded (``signum``) instead of stopping
    this process; outside the main thread, where signals cannot be caught, nothing."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def map_runs(fn: Callable, runs: Sequence[tuple], *, executor: cf.Executor | None = None,
             workers: int | None = None, progress: bool = False, desc: str = "runs",
             on_stop: Callable[[int], None] | None = None) -> list:
    """``[fn(*run) for run in runs]``, computed in parallel; results in the order of ``runs``.

    Args:
        fn: the work of one run; it must not rely on state changed by other runs.
        runs: one tuple of arguments per run.
        executor: any ``concurrent.futures.Executor`` (e.g. a Dask client's); by default a
            local process pool of ``workers`` processes is made for this call.
        workers: size of the local pool (default :func:`default_workers`).
        progress: show a progress bar of finished runs.
        on_stop: called with the signal's number when the map is being stopped (how the
            runs of another executor are told to stop).

    A sweep is one unit for signals: SIGINT or SIGTERM to this process (or to its process
    group), or a run that raises :class:`Stopped`, stops the whole map. Runs not yet started
    are not started, the workers of the local pool get the same signal (a checkpointed run
    writes its checkpoint and stops), and once every running run has returned,
    :class:`SweepInterrupted` is raised. A run that fails stops the others the same way
    (with SIGTERM), then its error is raised. The local pool's workers exit when this
    process dies.
    """
    runs = [tuple(run) for run in runs]
    keep_freed_memory()     # for this process and the workers it forks (see its docstring)
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)
    try:
        if executor is not None:
            with _Signals() as stop:
                futures = [executor.submit(fn, *run) for run in runs]
                # a Dask future cancelled while its task runs leaves the task running,
                # unwatched: with on_stop to tell them, the runs are left to stop themselves
                return _collect(futures, bar, stop, on_stop, cancel=on_stop is None)
        workers = default_workers() if workers is None else int(workers)
        workers = min(workers, len(runs))
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            results = []
            for run in runs:
                results.append(fn(*run))
                bar.update(1)
            return results
        return _map_forked(fn, runs, workers, bar, on_stop)
    finally:
        bar.close()


def _map_forked(fn, runs, workers, bar, on_stop) -> list:
    global _RUNS
    if _RUNS is not None:
        raise RuntimeError("map_runs cannot be nested: a run may not start a local sweep itself")
    _RUNS = (fn, runs)
    try:
        context = multiprocessing.get_context("fork")
        with _Signals() as stop, \
                cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                       initargs=(os.getpid(),)) as pool:
            # the workers are forked by the first submit: with the signals blocked, so that
            # each is born unable to die of one before it has its handlers
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                futures = [pool.submit(_run_inherited, i, os.getpid())
                           for i in range(len(runs))]
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

            def forward(signum):
                for pid in list(pool._processes):
                    try:
                        os.kill(pid, signum)
                    except ProcessLookupError:
                        pass
                if on_stop is not None:
                    on_stop(signum)

            return _collect(futures, bar, stop, forward)
    finally:
        _RUNS = None


def _collect(futures, bar, stop=None, on_stop=None, cancel=True) -> list:
    """Wait for every future; on a signal or a failure, stop the map as one unit."""
    pending, failure, signum = set(futures), None, None
    try:
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    bar.update(1)
                elif failure is None and not isinstance(error, RunNotStarted):
                    failure = error
            if signum is None and (failure is not None or stop and stop.signum):
                if stop and stop.signum:
                    signum = stop.signum
                elif isinstance(failure, Stopped):
                    signum = failure.signum
                else:
                    signum = signal.SIGTERM
                for future in pending if cancel else ():   # not started: never started
                    future.cancel()
                if on_stop is not None:
                    on_stop(signum)
    except BaseException:
        # Ctrl-C outside the main thread's handlers, or an executor's own failure
        for future in futures:
            future.cancel()
        raise
    if failure is not None and not isinstance(failure, Stopped):
        raise failure
    if signum is not None:
        stopped = finished = not_started = 0
        for future in futures:
            if future.cancelled() or isinstance(future.exception(), RunNotStarted):
                not_started += 1
            elif future.exception() is None:
                finished += 1
            else:
                stopped += 1
        raise SweepInterrupted(signum, stopped, finished, not_started)
    return [future.result() for future in futures]

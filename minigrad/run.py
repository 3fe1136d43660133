"""The command line for long runs: ``python -m minigrad.run`` (or ``minigrad-run``).

One run::

    python -m minigrad.run --family sbn --model linear1 --estimator NVIL --seed 0 \
        --out runs/nvil

A categorical VAE (``--model nNkK``: N variables of K classes) with any estimator of the
catalogue's table that the VAE can train with::

    python -m minigrad.run --family vae --model n12k4 --estimator "RELAX, categorical" \
        --out runs/vae

Structured prediction (the top half of a digit predicts its bottom half) and dynamic
binarization (every minibatch drawn afresh from the grey levels)::

    python -m minigrad.run --family sbn --model linear1 --estimator MuProp \
        --task structured --binarization dynamic --out runs/sp

A sweep (every model x estimator x seed), on the local cores or on a Dask cluster::

    python -m minigrad.run --family sbn --model linear1 nonlinear \
        --estimator REINFORCE NVIL MuProp --seed 0 1 2 3 4 --out runs/table1 \
        [--workers 2 | --scheduler tcp://host:8786]

Every run writes a checkpoint into its folder every ``--checkpoint-every`` steps and when it
receives SIGINT (Ctrl-C) or SIGTERM; the same command with ``--resume`` continues exactly
where it stopped. Each finished run leaves ``results.json`` (rows: experiment, config, seed,
metric, value) and ``history.json`` (its learning curves) in its folder.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

from minigrad import budget as _budget

EXIT_INTERRUPTED = 128  # plus the signal's number, as a shell reports a signal
EXIT_BAD_ARGUMENTS = 2
#: Seconds to wait for a Dask scheduler to answer before giving up (``--scheduler``).
SCHEDULER_TIMEOUT = 5.0
_ADDRESS = re.compile(r"^(?:(tcp|tls)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, [""]) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    from minigrad.experiments.runs import (CLASSIFIER_MODELS, FAMILIES, LENET_LOSSES,
                                           SBN_DATASETS, SBN_MODELS, STEPS, VAE_MODELS)
    from minigrad.estimators.catalogue import SBN_ESTIMATORS, VAE_ESTIMATORS
    from minigrad.experiments.sbn import BASELINES, BINARIZATIONS
    from minigrad.models.sbn import INITS, TASKS

    steps_help = "; ".join(f"{fam}: " + ", ".join(f"{b} {n:,}" for b, n in by.items())
                           for fam, by in STEPS.items())
    p = argparse.ArgumentParser(
        prog="python -m minigrad.run",
        description="Train the book's models at any scale, with checkpoints that resume "
                    "exactly; several models, estimators or seeds make a sweep, run on the "
                    "local cores or on a Dask cluster.",
        epilog="Exit status: 0 when every run finished; 128 + the signal's number (130 "
               "SIGINT, 143 SIGTERM) when a signal to this process or its process group "
               "stopped the run or the sweep: every running run writes its checkpoint, no "
               "other run starts, and the same command with --resume continues; 2 on bad "
               "arguments, an unusable checkpoint or results file, an --out that cannot "
               "be written or a scheduler that does not answer.",
        formatter_class=_Formatter)
    what = p.add_argument_group("what to train")
    what.add_argument("--family", required=True, choices=list(FAMILIES),
                      help="model family: MNIST MLP classifiers, sigmoid belief networks, "
                           "LeNet-5, categorical VAEs")
    what.add_argument("--model", nargs="+", required=True, metavar="MODEL",
                      help="sbn: " + ", ".join(SBN_MODELS) + "; classifier (the hidden "
                           "neuron): " + ", ".join(CLASSIFIER_MODELS) + "; lenet: lenet5; "
                           "vae: the latent shape nNkK, N variables of K classes, e.g. "
                           + ", ".join(VAE_MODELS) + " (24 bits each)")
    what.add_argument("--estimator", nargs="+", default=[""], metavar="ESTIMATOR",
                      help="sbn: " + ", ".join(SBN_ESTIMATORS) + "; vae: "
                           + "; ".join(VAE_ESTIMATORS) + " (quote names with spaces); "
                           "lenet: "
                           + ", ".join(LENET_LOSSES) + "; classifier: none (the neuron "
                           "is its estimator)")
    what.add_argument("--seed", nargs="+", type=int, default=[0], metavar="SEED",
                      help="seeds of the runs (weights, minibatch order, noise)")
    what.add_argument("--dataset", default=None,
                      help="sbn: " + ", ".join(SBN_DATASETS) + " (default binarized-mnist; "
                           "omniglot is downloaded once if online); vae: binarized-mnist; "
                           "classifier, lenet: mnist")
    what.add_argument("--task", default="generative", choices=TASKS,
                      help="sbn: generative (model the whole image) or structured (predict "
                           "the bottom half of the image from the top half)")
    what.add_argument("--binarization", default="fixed", choices=BINARIZATIONS,
                      help="sbn on binarized-mnist: the training images binarized once "
                           "(fixed), or every minibatch drawn afresh from the grey levels "
                           "(dynamic); the validation bound is always on the fixed bits")
    how = p.add_argument_group("how long and with which hyperparameters (default: the book's)")
    how.add_argument("--budget", default=None, choices=list(_budget.CLI_BUDGETS),
                     help="default step counts: " + steps_help + " (default: "
                          "$MINIGRAD_BUDGET, else paper)")
    how.add_argument("--steps", type=int, default=None,
                     help="training steps per run (overrides the budget)")
    how.add_argument("--batch-size", type=int, default=None,
                     help="minibatch size (sbn 24, classifier 50, lenet 128, vae 50)")
    how.add_argument("--lr", type=float, default=None,
                     help="learning rate (sbn 3e-4 with Adam beta2 0.99999; classifier: "
                          "the neuron's lr in the book; lenet 5/55000; vae 1e-3)")
    how.add_argument("--temperature", type=float, default=0.5,
                     help="sbn: Concrete relaxation temperature; vae: the Gumbel-softmax "
                           "and REBAR/RELAX temperature")
    how.add_argument("--record-every", type=int, default=None,
                     help="sbn, vae: steps between history records (default sbn "
                           "min(500, steps), vae min(100, steps))")
    how.add_argument("--eval-k", type=int, default=100,
                     help="sbn, vae: importance samples of the final validation bound")
    how.add_argument("--eval-examples", type=int, default=None,
                     help="evaluate on the first so many validation images (default all)")
    how.add_argument("--train-examples", type=int, default=None,
                     help="train on the first so many training images (default all)")
    how.add_argument("--steps-per-epoch", type=int, default=None,
                     help="classifier: steps per epoch (default min(1000, steps))")
    how.add_argument("--es-sigma", type=float, default=4.0, help="lenet es: noise scale")
    how.add_argument("--es-samples", type=int, default=200, help="lenet es: samples per step")
    how.add_argument("--init", default="glorot", choices=INITS,
                     help="sbn weights: glorot, or the REBAR reference code's variance scaling")
    how.add_argument("--baseline", default="trained", choices=BASELINES,
                     help="sbn REBAR, dynamic REBAR, RELAX: C(x) trained on the estimator's "
                          "variance, or frozen at its initial weights")
    out = p.add_argument_group("output, checkpoints and where to run")
    out.add_argument("--out", required=True,
                     help="output folder: one run writes into it; a sweep writes one "
                          "sub-folder per run")
    out.add_argument("--checkpoint-every", type=int, default=1000,
                     help="steps between checkpoints")
    out.add_argument("--resume", action="store_true",
                     help="continue from the checkpoints in --out (runs without one start; "
                          "finished runs are not trained again)")
    out.add_argument("--workers", type=int, default=None,
                     help="local processes for a sweep (default $MINIGRAD_WORKERS, else one "
                          "per core)")
    out.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run the sweep on a Dask scheduler, e.g. tcp://host:8786 "
                          "(needs dask[distributed]; --out must be a folder every worker "
                          "sees; runs always resume from their checkpoints there); a "
                          f"scheduler that does not answer within {SCHEDULER_TIMEOUT:g} s "
                          "is an error")
    out.add_argument("--parent-timeout", type=float, default=None, metavar="SECONDS",
                     help="sweeps: a run stops at a checkpoint when this command has not "
                          "been heard from for so many seconds (it was killed); default "
                          "30")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_ARGUMENTS


def _check_out(parser, out: str) -> None:
    """``--out`` must be a folder this process can write into: checked before any training."""
    from minigrad.fileio import new_temp_file

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp_file(folder, "write-test")
        os.close(fd)
        tmp.unlink()
    except OSError as e:
        parser.error(f"--out {out}: cannot write there ({e.strerror or e}); choose a folder "
                     "you can write into")


def _check_scheduler(parser, address: str) -> None:
    if not _ADDRESS.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        parser.error(f"--scheduler {address!r} is not a scheduler address; expected "
                     "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")


async def _identity(address: str) -> dict:
    from distributed.comm import connect

    comm = await connect(address, timeout=SCHEDULER_TIMEOUT)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _connect(address: str):
    """A Dask client of the scheduler at ``address``, or None with the error printed."""
    import asyncio
    import logging

    from dask.distributed import Client

    quiet = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        # a port that accepts but never answers (a dashboard's, say) would keep Client
        # waiting for ever: ask the scheduler who it is first, with a deadline
        asyncio.run(asyncio.wait_for(_identity(address), SCHEDULER_TIMEOUT))
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, asyncio.TimeoutError) as e:
        reason = " ".join(str(e).split())[:160] or "no answer"
        print(f"error: --scheduler {address}: no Dask scheduler answered within "
              f"{SCHEDULER_TIMEOUT:g} s ({reason}); is `dask scheduler` running there, "
              "and is this its address (not the dashboard's)?", file=sys.stderr)
        return None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def _resume_command(argv: list[str]) -> str:
    words = [w for w in argv if w != "--resume"]
    return " ".join(shlex.quote(w) for w in ["python", "-m", "minigrad.run", *words,
                                             "--resume"])


def main(argv: list[str] | None = None) -> int:
    from minigrad.data.files import DataError
    from minigrad.experiments.checkpoint import CheckpointError
    from minigrad.experiments.executor import SweepInterrupted, default_workers
    from minigrad.experiments.runs import (PARENT_TIMEOUT, RunInterrupted, SpecError,
                                           default_steps, execute, run_specs, sweep)

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        budget = _budget.check(args.budget or os.environ.get("MINIGRAD_BUDGET"),
                               _budget.CLI_BUDGETS, default="paper")
    except ValueError as e:
        parser.error(str(e))
    steps = args.steps if args.steps is not None else default_steps(args.family, budget)
    common = dict(steps=steps, dataset=args.dataset, batch_size=args.batch_size, lr=args.lr,
                  record_every=args.record_every, temperature=args.temperature,
                  eval_k=args.eval_k, eval_examples=args.eval_examples,
                  train_examples=args.train_examples, steps_per_epoch=args.steps_per_epoch,
                  es_sigma=args.es_sigma, es_samples=args.es_samples, init=args.init,
                  baseline=args.baseline, task=args.task, binarization=args.binarization)
    if args.checkpoint_every < 1:
        parser.error(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be a whole number >= 1, got {args.workers}")
    if args.workers is None:
        try:
            default_workers()
        except ValueError as e:
            parser.error(str(e))
    parent_timeout = PARENT_TIMEOUT if args.parent_timeout is None else args.parent_timeout
    if not 0 < parent_timeout < float("inf"):
        parser.error(f"--parent-timeout must be a positive number of seconds, "
                     f"got {args.parent_timeout}")
    if args.scheduler is not None:
        _check_scheduler(parser, args.scheduler)
    try:
        specs = sweep(args.family, args.model, args.estimator, args.seed, **common)
    except ValueError as e:
        parser.error(str(e))
    if len(specs) != len({s.name for s in specs}):
        parser.error("the same model, estimator or seed is given twice")
    _check_out(parser, args.out)
    if args.scheduler and len(specs) == 1:
        print("note: one run; it runs on the scheduler's cluster all the same", file=sys.stderr)
    try:
        if len(specs) == 1 and not args.scheduler:
            payload = execute(specs[0], args.out, checkpoint_every=args.checkpoint_every,
                              resume=args.resume, progress=not args.no_progress,
                              budget=budget)
            payloads = [payload]
        else:
            executor, client, resume = None, None, args.resume
            if args.scheduler:
                # Dask runs a lost worker's task again elsewhere: it must continue from
                # the run's checkpoint (a checkpoint of another run is still refused)
                resume = True
                try:
                    import dask.distributed  # noqa: F401
                except ImportError:
                    parser.error("--scheduler needs dask[distributed]: "
                                 "pip install 'minigrad[dask]'")
                client = _connect(args.scheduler)
                if client is None:
                    return EXIT_BAD_ARGUMENTS
                executor = client.get_executor()
            try:
                payloads = run_specs(specs, args.out, executor=executor, workers=args.workers,
                                     checkpoint_every=args.checkpoint_every,
                                     resume=resume, progress=not args.no_progress,
                                     budget=budget, parent_timeout=parent_timeout)
            finally:
                if client is not None:
                    client.close()
    except (RunInterrupted, SweepInterrupted) as e:
        what = str(e).removesuffix("; continue with --resume")
        print(f"{what}; continue with: {_resume_command(argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED + e.signum
    except SpecError as e:
        return _fail(str(e))
    except (CheckpointError, FileExistsError, DataError) as e:
        return _fail(str(e))
    for payload in payloads:
        for row in payload["rows"]:
            print(f"{row['experiment']} | {row['config']} | seed {row['seed']} | "
                  f"{row['metric']}: {row['value']:.4f}")
        rate = payload.get("timing", {}).get("steps_per_second")
        if rate:
            print(f"  {rate:.1f} steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Experiments: training loops per model family, sweeps on an executor, the results store.

- :mod:`~minigrad.experiments.classifier`: the MNIST classifier loop of the seeds;
- :mod:`~minigrad.experiments.lenet`: LeNet-5 on the 0-1 loss (evolution strategies) or
  cross-entropy;
- :mod:`~minigrad.experiments.executor`: independent runs in parallel (``map_runs``);
- :mod:`~minigrad.experiments.results`: the results files the reproduction appendix reads;
- :mod:`~minigrad.experiments.sbn`: sigmoid belief networks, one gradient estimator per run;
- :mod:`~minigrad.experiments.checkpoint`: a run's whole state in one file, resumed exactly;
- :mod:`~minigrad.experiments.runs`: run specifications, checkpointed runs, sweeps of them
  (what ``python -m minigrad.run`` uses).
"""
from .checkpoint import CheckpointError
from .classifier import (ClassifierConfig, ClassifierRun, History, accuracy, history_rows,
                         output_health, run_runs_with_models, run_sweep, run_sweep_with_models, seed_loss,
                         step_loss, summarize, summary_table, train_classifier)
from .executor import default_workers, map_runs
from .lenet import (LeNetConfig, LeNetHistory, LeNetRun, es_spread, lenet_accuracy,
                    lenet_class_accuracy, lenet_rows,
                    lenet_step, run_lenet_runs, run_lenet_sweep, train_lenet)
from .results import (Comparison, chapter_key, chapter_titles, comparisons, load_results,
                      mean_std_text, open_gap, open_gaps,
                      read_recorded, record_results, recorded_names, reference_row, repo_root,
                      results_dir, results_path, stale_gaps)
from .runs import RunInterrupted, RunSpec, execute, load_run_results, run_specs, runs_dir, sweep
from .sbn import SBNConfig, SBNHistory, SBNRun, run_sbn_comparison, time_sbn_steps, train_sbn

__all__ = [
    "ClassifierConfig", "History", "accuracy", "history_rows", "output_health",
    "run_runs_with_models",
    "run_sweep", "run_sweep_with_models", "seed_loss",
    "step_loss", "summarize", "summary_table", "train_classifier", "default_workers", "map_runs",
    "load_results", "record_results", "repo_root", "results_dir", "results_path",
    "Comparison", "comparisons", "read_recorded", "recorded_names", "reference_row",
    "open_gap", "open_gaps", "stale_gaps", "chapter_key", "chapter_titles", "mean_std_text",
    "LeNetConfig", "LeNetHistory", "es_spread", "lenet_accuracy", "lenet_class_accuracy",
    "lenet_rows", "lenet_step",
    "run_lenet_runs", "run_lenet_sweep", "train_lenet",
    "SBNConfig", "SBNHistory", "SBNRun", "run_sbn_comparison", "time_sbn_steps", "train_sbn",
    "CheckpointError", "ClassifierRun", "LeNetRun", "RunInterrupted", "RunSpec", "execute",
    "load_run_results", "run_specs", "runs_dir", "sweep",
]

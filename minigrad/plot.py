"""Figures in one consistent style: learning curves, activations, histograms, variances."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

STYLE = {
    "figure.figsize": (7.0, 4.2),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    # Figures are drawn up to 12 inches wide and shown about 8 inches wide on the page, so
    # text is set larger than matplotlib's defaults to stay readable on small multiples.
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
}


def use_style() -> None:
    """Apply the book's matplotlib style (chapters call it once)."""
    plt.rcParams.update(STYLE)


def _runs(value):
    return value if isinstance(value, Sequence) else [value]


def learning_curves(results: Mapping, title: str = "Learning curves", lower_y: float = 0.0,
                    show_train: bool = True, ax=None):
    """Accuracy against training step, one colour per configuration, as in the seeds.

    ``results`` maps a label to a History or a list of Histories (several seeds): the mean
    is drawn and, for several seeds, a band from the lowest to the highest run. Training
    accuracy (averaged every 100 steps) is a thin line, validation accuracy (after each
    epoch) a thick line with markers.
    """
    use_style()
    if ax is None:
        _, ax = plt.subplots()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, value) in enumerate(results.items()):
        runs = _runs(value)
        color = colors[i % len(colors)]
        steps_per_epoch = runs[0].train_steps[-1] / max(len(runs[0].val_epochs), 1)
        if show_train and runs[0].train_accuracy:
            train = np.array([h.train_accuracy for h in runs])
            ax.plot(runs[0].train_steps, train.mean(0), color=color, lw=0.8, alpha=0.6)
        val = np.array([h.val_accuracy for h in runs])
        steps = np.array(runs[0].val_epochs) * steps_per_epoch
        ax.plot(steps, val.mean(0), color=color, lw=2, marker="o", ms=3,
                label=f"{label} (n={len(runs)})" if len(runs) > 1 else label)
        if len(runs) > 1:
            ax.fill_between(steps, val.min(0), val.max(0), color=color, alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(lower_y, 1.0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    if show_train:
        ax.text(0.01, 0.01, "thin: training (mean of 100 steps); thick: validation",
                transform=ax.transAxes, fontsize="small", alpha=0.7)
    return ax


def activation_plot(x: np.ndarray, curves: Mapping[str, np.ndarray], title: str = "",
                    ax=None, ylabel: str = "output"):
    """Several functions of the same input on one axis (activations, samples, derivatives)."""
    use_style()
    if ax is None:
        _, ax = plt.subplots()
    for label, y in curves.items():
        ax.plot(x, y, label=label, lw=1.5)
    ax.set_xlabel("input")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return ax


def histogram(values: np.ndarray, title: str = "", bins=50, ax=None, xlabel: str = "value"):
    """A histogram of (for example) a layer's outputs."""
    use_style()
    if ax is None:
        _, ax = plt.subplots()
    ax.hist(np.ravel(values), bins=bins, color="C0", alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    return ax


def bias_variance_bars(labels: Sequence[str], bias: np.ndarray, std: np.ndarray,
                       title: str = "", ax=None):
    """Bias (|mean estimate - exact gradient|) and spread of several estimators, log scale."""
    use_style()
    if ax is None:
        _, ax = plt.subplots()
    pos = np.arange(len(labels))
    ax.bar(pos - 0.2, bias, width=0.4, label="|bias|")
    ax.bar(pos + 0.2, std, width=0.4, label="standard deviation")
    ax.set_xticks(pos, labels, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    return ax


def reproduction_figure(payload: Mapping, title: str | None = None):
    """Our numbers beside the published ones, for one chapter's results file.

    Every recorded row whose reference was measured at the same point of training (the
    same ``steps``) is one line of a dot plot: our mean over seeds (a dot, with a bar from
    the lowest to the highest seed) and the published number (a cross). One panel per
    metric, since accuracies and ELBOs do not share an axis. Returns the figure, or None
    when no row has such a reference.
    """
    use_style()
    same_point = [r for r in payload["rows"] if r.get("reference") is not None
                  and r.get("steps") is not None and r.get("steps") == r.get("reference_steps")]
    groups: dict = {}
    for row in same_point:
        key = (row["metric"], f"{row['experiment']}: {row['config']}")
        groups.setdefault(key, []).append(float(row["value"]))
    refs = {(r["metric"], f"{r['experiment']}: {r['config']}"): float(r["reference"])
            for r in same_point}
    metrics = list(dict.fromkeys(metric for metric, _ in groups))
    if not metrics:
        return None
    heights = [sum(1 for m, _ in groups if m == metric) for metric in metrics]
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False,
                             figsize=(7.0, 0.9 + 0.32 * sum(heights) + 0.6 * len(metrics)),
                             gridspec_kw={"height_ratios": heights})
    for ax, metric in zip(axes[:, 0], metrics):
        labels = [label for m, label in groups if m == metric]
        for y, label in enumerate(labels):
            values = np.array(groups[(metric, label)])
            ax.plot([values.min(), values.max()], [y, y], color="tab:blue", lw=2)
            ax.plot(values.mean(), y, "o", color="tab:blue",
                    label="ours (mean, range of seeds)" if y == 0 else None)
            ax.plot(refs[(metric, label)], y, "x", color="tab:red", ms=8, mew=2,
                    label="published" if y == 0 else None)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([label if len(label) <= 48 else label[:46] + "…"
                            for label in labels], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.legend(loc="best", fontsize=8)
    axes[0, 0].set_title(title or f"Chapter {payload['chapter']}: ours against published")
    fig.tight_layout()
    return fig

"""Figures in one consistent style: learning curves, activations, histograms, variances.

The book's figure convention, which every chapter follows:

- **one palette**: :data:`PALETTE` maps each estimator of
  :data:`minigrad.estimators.catalogue.ESTIMATORS` (and the book's other series: the exact
  gradient, published numbers, backpropagation, evolution strategies, ...) to one colour,
  used by every figure; :func:`colour` looks a name up and gives an unknown name a fixed
  colour of its own (the same in every run, from a hash of the name);
- **one width**: figures are :data:`FIGURE_WIDTH` inches wide at :data:`DPI` dots per inch,
  the width of the text column at 1280 px, so the page shows them at their own size;
  :func:`panels` makes a figure of ``n`` panels at that width, wrapping to two panels per
  row where more in one row would leave a panel under :data:`MIN_PANEL_WIDTH` inches;
- **numbered, captioned figures**: a chapter draws a figure in a code cell (its input
  hidden when it is only plotting) and hands it to :func:`show`, which glues it under a
  name without displaying it; the next markdown cell places it with a number, a caption
  and alt text, and the prose refers to it with ``{numref}``::

      fig, axes = plot.panels(2)
      ...
      plot.show(fig, "fig-rebar-variance")

  and in markdown::

      ```{glue:figure} fig-rebar-variance
      :name: fig-rebar-variance
      :alt: Two panels: the variance of REINFORCE and REBAR against the temperature ...

      Caption: what the figure shows and what to read from it.
      ```

      ... as {numref}`fig-rebar-variance` shows, ...

  :func:`figure_markdown` writes that markdown for a name, caption and alt text.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

#: Width of a figure in inches: the text column at 1280 px (about 660 px; shown at 93% or more).
FIGURE_WIDTH = 7.0
#: Dots per inch of the figures on the page (7 inches -> 700 px, shown at its own size).
DPI = 100
#: The narrowest panel (inches) whose tick labels and legend stay readable.
MIN_PANEL_WIDTH = 3.2
#: Height of one row of panels, in inches.
PANEL_HEIGHT = 3.0

STYLE = {
    "figure.figsize": (FIGURE_WIDTH, 4.2),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
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


# ------------------------------------------------------------------------------ the palette
# Families share a hue (the REINFORCE family blues, the ARM family greens, REBAR and RELAX
# reds and oranges, MuProp browns, straight-through estimators teals and greys, relaxations
# purples and pinks), and members of a family differ in lightness, so that estimators shown
# together stay apart and a reader learns one colour per estimator for the whole book.
PALETTE: dict[str, str] = {
    # score function
    "REINFORCE": "#1f77b4",
    "REINFORCE, constant baseline": "#aec7e8",
    "REINFORCE, categorical": "#08519c",
    "REINFORCE LOO": "#6baed6",
    "NVIL": "#9467bd",
    "NVIL (constant baseline, no normalisation)": "#c5b0d5",
    "NVIL (REBAR code)": "#6a3d9a",
    "RLOO": "#17becf",
    "VIMCO": "#0e7c86",
    # ARM family
    "ARM": "#2ca02c",
    "DisARM": "#006d2c",
    "ARSM": "#74c476",
    "IndeCateR": "#bcbd22",
    # REBAR and RELAX
    "REBAR": "#d62728",
    "REBAR (Concrete relaxation)": "#ff9896",
    "dynamic REBAR": "#ff7f0e",
    "RELAX": "#8c0d0d",
    "REBAR, categorical": "#e6550d",
    "dynamic REBAR, categorical": "#fdae6b",
    "RELAX, categorical": "#a63603",
    # MuProp
    "SimpleMuProp": "#c49c94",
    "MuProp": "#8c564b",
    "MuProp (REBAR code)": "#5b3a29",
    # straight-through
    "ST sigmoid-adjusted": "#7f7f7f",
    "ST pass-through": "#525252",
    "ST slope 2": "#a6a6a6",
    "ST hard sigmoid": "#2b8c8c",
    "ST sampled softmax": "#66c2a4",
    "ST hardmax": "#4d4d00",
    # relaxations
    "Concrete": "#e377c2",
    "ST Gumbel-softmax": "#ae017e",
    "Gumbel-softmax, relaxed": "#f768a1",
    # the book's other series
    "exact": "#000000",
    "exact gradient": "#000000",
    "published": "#d62728",
    "reference": "#d62728",
    "ours": "#1f77b4",
    "backprop": "#1f77b4",
    "cross-entropy": "#1f77b4",
    "deterministic": "#1f77b4",
    "ES": "#ff7f0e",
    "evolution strategies": "#ff7f0e",
    "finite differences": "#7f7f7f",
    "training": "#9ecae1",
    "validation": "#1f77b4",
}

# Colours for names the palette does not know: picked by a hash of the name, so the same
# name gets the same colour in every run and every chapter.
_FALLBACK = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
             "#31a354", "#756bb1", "#636363", "#e6550d", "#969696", "#9c9ede")


def colour(name: str) -> str:
    """The colour of ``name`` in every figure of the book: :data:`PALETTE`'s entry, else that
    of the estimator it is a variant of ("linear: ARM", "REINFORCE LOO-2", "NVIL (no
    normalisation)"), else a fixed colour chosen from the name (the same in every run)."""
    if not isinstance(name, str):
        raise TypeError(f"colour() takes a series name (a str), got {type(name).__name__}; "
                        "pass the estimator's name as in ESTIMATORS")
    if name in PALETTE:
        return PALETTE[name]
    base = _estimator_of(name)
    if base is not None:
        return PALETTE[base]
    return _FALLBACK[zlib.crc32(name.encode("utf8")) % len(_FALLBACK)]


def _estimator_of(name: str) -> str | None:
    """The palette's name a series label is a variant of: "linear: ARM" -> "ARM",
    "NVIL (no normalisation)" -> "NVIL", "REINFORCE LOO-2" -> "REINFORCE LOO"."""
    label = name.rsplit(": ", 1)[-1].strip()
    for candidate in (label, label.split(" (")[0], label.split(", ")[0],
                      re.sub(r"-\d+$", "", label.split(" (")[0])):
        if candidate in PALETTE:
            return candidate
    return None


def colours(names: Sequence[str]) -> dict[str, str]:
    """Colours for the series of one figure: :func:`colour` of each name, except that a name
    the palette does not list whose colour is taken already in this figure ("NVIL (no
    normalisation)" beside "NVIL") moves to a free one, so no two series share a colour."""
    names = list(names)
    out = {name: PALETTE[name] for name in names if name in PALETTE}
    for name in names:
        if name in out:
            continue
        c = colour(name)
        if c in out.values():
            free = [f for f in _FALLBACK if f not in out.values()]
            c = free[0] if free else c
        out[name] = c
    return {name: out[name] for name in names}


# ----------------------------------------------------------------------- sizes and layout
def panels(n: int = 1, height: float = PANEL_HEIGHT, sharex: bool = False,
           sharey: bool = False, per_row: int | None = None):
    """A figure of ``n`` panels at the text column's width: ``(fig, axes)`` with ``axes`` a
    flat list of ``n`` axes (unused grid cells removed).

    All panels go in one row when each is at least :data:`MIN_PANEL_WIDTH` inches wide,
    otherwise two per row (``per_row`` overrides). ``height`` is that of one row.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"panels(n) needs a whole number of panels >= 1, got {n!r}")
    use_style()
    if per_row is None:
        per_row = n if FIGURE_WIDTH / n >= MIN_PANEL_WIDTH else min(2, n)
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    rows = -(-n // per_row)
    cols = min(per_row, n)
    fig, grid = plt.subplots(rows, cols, squeeze=False, sharex=sharex, sharey=sharey,
                             figsize=(FIGURE_WIDTH, height * rows), layout="constrained")
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def clip_log_axis(ax, values, axis: str = "y", pad: float = 1.5) -> None:
    """Limit a log axis to the positive finite ``values`` shown on it (times/over ``pad``),
    so that an exact zero or a 1e-24 does not stretch the axis over empty decades."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return
    lo, hi = v.min() / pad, v.max() * pad
    if axis == "y":
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
    elif axis == "x":
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
    else:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")


def thousands(ax, axis: str = "x") -> None:
    """Tick labels in thousands ("50k", "1.5M") on a step axis, so that the labels of long
    runs do not run into each other on a narrow panel."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")

    def label(value, _position):
        if abs(value) >= 1e6:
            return f"{value / 1e6:g}M"
        return f"{value / 1e3:g}k" if value else "0"

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(matplotlib.ticker.FuncFormatter(label))


# -------------------------------------------------------------- numbered, captioned figures
def figure_markdown(name: str, caption: str, alt: str, wide: bool = False) -> str:
    """The markdown cell that places the figure glued as ``name``: numbered, captioned, with
    alt text, and a target ``{numref}`` can refer to. ``wide`` is for a diagram wider than
    the column that must stay at its own size to be read: it scrolls sideways in the
    column (class ``scroll-wide``, book/_static/book.css)."""
    if not caption.strip() or not alt.strip():
        raise ValueError(f"figure {name!r}: give both a caption and an alt text that "
                         "describes the figure (a reader without the image reads the alt)")
    wide_class = ":figclass: scroll-wide\n" if wide else ""
    return (f"```{{glue:figure}} {name}\n:name: {name}\n:alt: {' '.join(alt.split())}\n"
            f"{wide_class}\n{caption.strip()}\n```")


def show(fig, name: str):
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` cell (see the module's docstring)
    and close it, so the code cell itself shows nothing. Returns None.

    Outside a notebook (no kernel), the figure is only closed.
    """
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a figure name is letters, digits, '-' and '_' (it is the "
                         f"{{numref}} target), got {name!r}")
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


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
    palette = colours(list(results))
    for label, value in results.items():
        runs = _runs(value)
        color = palette[label]
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
    note = "thin: training (mean of 100 steps); thick: validation" if show_train else None
    fig = ax.figure
    width = ax.get_position().width * fig.get_size_inches()[0]
    longest = max((len(label) for label in ax.get_legend_handles_labels()[1]), default=0)
    if width < 4.5 or longest > 40:
        # a narrow panel or long labels: the legend goes under the axes, not over the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, title=note,
                  title_fontsize=8)
    else:
        ax.legend(loc="lower right", title=note, title_fontsize="small")
    return ax


def activation_plot(x: np.ndarray, curves: Mapping[str, np.ndarray], title: str = "",
                    ax=None, ylabel: str = "output"):
    """Several functions of the same input on one axis (activations, samples, derivatives)."""
    use_style()
    if ax is None:
        _, ax = plt.subplots()
    palette = colours(list(curves))
    for label, y in curves.items():
        ax.plot(x, y, label=label, lw=1.5, color=palette[label])
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
    # log scale over the values shown (an unbiased estimator's tiny sampling bias must not
    # stretch the axis over empty decades; a zero is simply not drawn)
    clip_log_axis(ax, np.concatenate([np.ravel(bias), np.ravel(std)]), pad=2.0)
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
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False, layout="constrained",
                             figsize=(FIGURE_WIDTH, 0.9 + 0.42 * sum(heights)
                                      + 0.55 * len(metrics)),
                             gridspec_kw={"height_ratios": heights})
    for ax, metric in zip(axes[:, 0], metrics):
        labels = [label for m, label in groups if m == metric]
        for y, label in enumerate(labels):
            values = np.array(groups[(metric, label)])
            ax.plot([values.min(), values.max()], [y, y], color=colour("ours"), lw=2)
            ax.plot(values.mean(), y, "o", color=colour("ours"),
                    label="ours (mean, range of seeds)" if y == 0 else None)
            ax.plot(refs[(metric, label)], y, "x", color=colour("published"), ms=8, mew=2,
                    label="published" if y == 0 else None)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([_two_lines(label) for label in labels], fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(metric)
        ax.margins(x=0.08)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle(title or f"Chapter {payload['chapter']}: ours against published")
    return fig


def _two_lines(label: str, width: int = 38) -> str:
    """A long axis label on at most two lines (the rest elided), so it keeps to the margin."""
    import textwrap

    lines = textwrap.wrap(label, width)
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width, placeholder=" …")]
    return "\n".join(lines)


def bias_variance_dots(names: Sequence[str], variance: Sequence[float],
                       relative_bias: Sequence[float], unbiased: Sequence[bool],
                       title: str = ""):
    """Every estimator on a row of its own, named on the left (so no label can fall on
    another): its variance in the left panel and its relative bias in the right one, both on
    log axes limited to the values shown. Circles are unbiased estimators, squares biased;
    colours are the palette's. A zero (an exact estimator's bias) is drawn as a triangle at
    the axis's left edge. Returns the figure."""
    n = len(names)
    if not (len(variance) == len(relative_bias) == len(unbiased) == n) or n == 0:
        raise ValueError("bias_variance_dots needs one variance, relative bias and "
                         f"unbiased flag per name; got {n} names, {len(variance)}, "
                         f"{len(relative_bias)} and {len(unbiased)}")
    use_style()
    fig, (ax_var, ax_bias) = plt.subplots(
        1, 2, sharey=True, figsize=(FIGURE_WIDTH, 0.9 + 0.21 * n), layout="constrained",
        gridspec_kw={"width_ratios": (1, 1)})
    palette = colours(list(names))
    y = np.arange(n)
    for ax, values in ((ax_var, variance), (ax_bias, relative_bias)):
        values = np.asarray(values, dtype=float)
        clip_log_axis(ax, values, axis="x")
        lo = ax.get_xlim()[0]
        for i, (name, v, fair) in enumerate(zip(names, values, unbiased)):
            zero = not np.isfinite(v) or v <= 0
            ax.plot(lo if zero else v, i, "<" if zero else ("o" if fair else "s"),
                    color=palette[name], ms=6, clip_on=False)
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.grid(False, axis="y")
    ax_var.set_yticks(y, list(names), fontsize=8)
    ax_var.invert_yaxis()
    ax_var.set_xlabel("variance of one estimate")
    ax_bias.set_xlabel("relative bias |bias| / |gradient|")
    ax_bias.tick_params(axis="y", left=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig

"""The comparison of the chapter "Which estimator when": categorical latents on a discrete VAE.

The chapter trains :class:`~minigrad.models.vae.CategoricalVAE` with every estimator of the
spec table the VAE can train with, at several latent shapes that carry the same number of
bits (``n`` variables of ``K`` classes, ``n log2 K`` fixed), and compares them three ways:

- at equal steps: the validation bound (the importance-weighted bound, ``eval_k`` samples)
  after the same number of steps, mean and range over seeds (:func:`summarise`);
- at equal cost: the training ELBO after the same number of evaluations of ``f`` (decoder
  passes over a batch) and after the same training time, read off each run's history
  (:func:`at_equal_cost`);
- in variance: the log-variance of every estimator's encoder gradient at the same
  parameters and minibatch, along one trajectory (:func:`run_races`, the variance race of
  :mod:`minigrad.experiments.vae`).

What the page says about them (:func:`verdicts`) is generated from these numbers. An
estimator whose step costs more than ``limit`` evaluations of ``f`` at a shape (ARSM's
``K (K - 1) / 2 + 1``, IndeCateR's ``n K``) is left out of that shape's runs, and the page
lists what was left out and why (:func:`plan`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minigrad.estimators.catalogue import ESTIMATORS, K_SAMPLE_BOUND

from .executor import map_runs
from .vae import VAEConfig, VAEHistory, run_vae_comparison, shapes_with_bits, variance_race

__all__ = ["TRAINED", "plan", "train", "summarise", "at_equal_cost", "run_races",
           "race_summary", "verdicts", "ShapeRow", "shape_text", "result_rows",
           "race_figure", "bound_figure", "cost_figure", "bound_table", "race_table",
           "cost_table", "evaluations_per_step"]

#: The estimators the chapter trains (the VAE rows of the spec table but dynamic REBAR,
#: which the variance race measures: its tuned control is RELAX's without the network).
TRAINED = ("REINFORCE, categorical", "RLOO", "VIMCO", "IndeCateR", "ARSM",
           "ST Gumbel-softmax", "Gumbel-softmax, relaxed", "REBAR, categorical",
           "RELAX, categorical")


def shape_text(n: int, classes: int) -> str:
    return f"n = {n}, K = {classes}"


def evaluations_per_step(name: str, n: int, classes: int) -> int:
    """Evaluations of ``f`` (decoder passes over a batch) of one step of ``name``."""
    spec = ESTIMATORS[name]
    return int(spec.cost(n, classes, spec.samples))


def plan(bits: int, classes, names, limit: int):
    """The shapes with ``bits`` bits, and per shape the estimators that run and those left
    out because one step costs more than ``limit`` evaluations of ``f``.

    Returns ``(shapes, runs, left_out)``: ``runs`` maps a shape to its estimators,
    ``left_out`` lists ``(shape, name, evaluations per step)``.
    """
    shapes = shapes_with_bits(bits, classes)
    runs, left_out = {}, []
    for n, k in shapes:
        runs[n, k] = []
        for name in names:
            cost = evaluations_per_step(name, n, k)
            if cost > limit:
                left_out.append(((n, k), name, cost))
            else:
                runs[n, k].append(name)
    return shapes, runs, left_out


def configs_for(runs: dict, steps: int, seeds, **common) -> list[VAEConfig]:
    """One :class:`VAEConfig` per shape, estimator and seed; labels ``"n x K | name | s"``."""
    return [VAEConfig(f"{n}x{k} | {name} | {seed}", name, steps, n=n, classes=k, seed=seed,
                      **common)
            for (n, k), names in runs.items() for name in names for seed in seeds]


def train(runs: dict, steps: int, seeds, train_x, val_x, executor=None, **common
          ) -> dict:
    """Every run of the plan on the executor's cores; ``{(n, K, name, seed): history}``."""
    configs = configs_for(runs, steps, seeds, **common)
    histories = run_vae_comparison(configs, train_x, val_x, progress=False,
                                   executor=executor)
    return {(c.n, c.classes, c.estimator, c.seed): histories[c.label] for c in configs}


# ---------------------------------------------------------------------- equal steps
@dataclass
class ShapeRow:
    """One estimator at one shape, over its seeds."""

    n: int
    classes: int
    name: str
    val_bound: np.ndarray          # per seed
    train_elbo: np.ndarray         # per seed, the last record's window
    seconds_per_step: float        # mean over seeds
    evaluations: int               # of f per step
    steps: int

    @property
    def mean(self) -> float:
        return float(self.val_bound.mean())

    @property
    def spread(self) -> float:
        """Half the range over seeds (0 for one seed)."""
        return float(np.ptp(self.val_bound) / 2)


def summarise(histories: dict) -> list[ShapeRow]:
    """One :class:`ShapeRow` per shape and estimator, in the order of the runs."""
    grouped: dict = {}
    for (n, k, name, seed), h in histories.items():
        grouped.setdefault((n, k, name), []).append(h)
    rows = []
    for (n, k, name), hs in grouped.items():
        rows.append(ShapeRow(n, k, name, np.array([h.val_bound for h in hs]),
                             np.array([h.train_elbo[-1] for h in hs]),
                             float(np.mean([h.seconds_per_step for h in hs])),
                             evaluations_per_step(name, n, k), hs[0].steps[-1]))
    return rows


def _value_at(h: VAEHistory, axis: str, point: float) -> float:
    """The training ELBO where ``axis`` (evaluations or seconds) reaches ``point``,
    interpolated between records; NaN before the first record."""
    xs = np.asarray(getattr(h, axis), dtype=float)
    if len(xs) == 0 or point < xs[0]:
        return float("nan")
    return float(np.interp(point, xs, h.train_elbo))


def at_equal_cost(histories: dict, shape: tuple[int, int]) -> dict:
    """At one shape: the training ELBO of every estimator (mean over seeds) after as many
    evaluations of ``f`` as the cheapest run made in all, and after as much training time
    as the quickest run took. ``{"evaluations": E, "seconds": T, "by_evaluations":
    {name: elbo}, "by_seconds": {name: elbo}}``; NaN where an estimator's first record
    comes after the point (its steps are too dear to have reached one)."""
    mine = {key: h for key, h in histories.items() if key[:2] == shape}
    evaluations = min(h.evaluations[-1] for h in mine.values())
    seconds = min(h.seconds[-1] for h in mine.values())
    out = {"evaluations": evaluations, "seconds": seconds, "by_evaluations": {},
           "by_seconds": {}}
    for axis, point, key in (("evaluations", evaluations, "by_evaluations"),
                             ("seconds", seconds, "by_seconds")):
        per_name: dict = {}
        for (_, _, name, _), h in mine.items():
            per_name.setdefault(name, []).append(_value_at(h, axis, point))
        out[key] = {name: float(np.mean(v)) for name, v in per_name.items()}
    return out


# ---------------------------------------------------------------------- the variance race
def _race(config, train_x, names, draws):
    return variance_race(config, train_x, names, draws=draws)


def run_races(runs: dict, followed: str, steps: int, draws: int, train_x, executor=None,
              **common) -> dict:
    """One variance race per shape, along ``followed``'s trajectory, over the shape's
    estimators; ``{(n, K): VAEVarianceRace}``."""
    jobs = [(VAEConfig(f"race {n}x{k}", followed, steps, n=n, classes=k, **common),
             train_x, names, draws) for (n, k), names in runs.items()]
    races = map_runs(_race, jobs, executor=executor, desc="variance races")
    return dict(zip(runs, races))


def race_summary(race) -> dict[str, float]:
    """Each estimator's log-variance averaged over the race's records."""
    return {name: float(np.mean(v)) for name, v in race.log_variance.items()}


# ---------------------------------------------------------------------- what the page says
def _unbiased(name: str) -> bool:
    return ESTIMATORS[name].unbiased


def _fmt(row: ShapeRow) -> str:
    if len(row.val_bound) == 1:
        return f"{row.mean:.1f}"
    return f"{row.mean:.1f} (seeds {row.val_bound.min():.1f} to {row.val_bound.max():.1f})"


def verdicts(rows: list[ShapeRow], races: dict, costs: dict) -> list[str]:
    """What the comparison says, one sentence per finding, from the numbers alone.

    ``costs``: :func:`at_equal_cost` per shape. A gap between two estimators is called a
    difference only when it exceeds the sum of their half-ranges over seeds; otherwise
    the sentence says the seeds do not separate them.
    """
    out = []
    shapes = sorted({(r.n, r.classes) for r in rows}, key=lambda s: s[1])
    for shape in shapes:
        mine = [r for r in rows if (r.n, r.classes) == shape]
        best = max(mine, key=lambda r: r.mean)
        # the k-sample bound's estimator is trained on another objective: ranked with the
        # others on the validation bound, but named as such
        unbiased = [r for r in mine if _unbiased(r.name)]
        best_unbiased = max(unbiased, key=lambda r: r.mean)
        runner = sorted(mine, key=lambda r: -r.mean)[1]
        gap = best.mean - runner.mean
        separated = gap > best.spread + runner.spread
        text = (f"At {shape_text(*shape)}, after {best.steps:,} steps, the best validation "
                f"bound is {best.name}'s, {_fmt(best)}; next is {runner.name}, "
                f"{gap:.1f} nats lower")
        text += ("." if separated else
                 ", within the range of their seeds, so these seeds do not separate them.")
        relaxed = [r for r in mine if not _unbiased(r.name)]
        if relaxed:
            top = max(relaxed, key=lambda r: r.mean)
            diff = top.mean - best_unbiased.mean
            margin = top.spread + best_unbiased.spread
            word = ("ahead of" if diff > margin else "behind" if diff < -margin
                    else "level with")
            text += (f" The best biased estimator, {top.name}, is {word} the best unbiased "
                     f"one, {best_unbiased.name} ({diff:+.1f} nats, seeds' half-ranges "
                     f"{top.spread:.1f} and {best_unbiased.spread:.1f}).")
        cost = costs[shape]
        by_eval = {k: v for k, v in cost["by_evaluations"].items() if np.isfinite(v)}
        if by_eval:
            cheap = max(by_eval, key=by_eval.get)
            text += (f" At equal evaluations of f ({cost['evaluations']:,} decoder passes "
                     f"over a batch) the training ELBO is highest for {cheap} "
                     f"({by_eval[cheap]:.1f})")
            unreached = sorted(k for k, v in cost["by_evaluations"].items()
                               if not np.isfinite(v))
            text += (f"; {', '.join(unreached)} had not reached a record by then."
                     if unreached else ".")
        race = races.get(shape)
        if race is not None:
            lv = race_summary(race)
            order = sorted(lv, key=lv.get)
            text += (f" In the variance race the lowest log-variance of the encoder gradient "
                     f"is {order[0]}'s ({lv[order[0]]:.1f}), the highest {order[-1]}'s "
                     f"({lv[order[-1]]:.1f}).")
        out.append(text)
    return out


def result_rows(rows: list[ShapeRow], races: dict) -> list[dict]:
    """The rows :func:`~minigrad.experiments.results.record_results` keeps for the
    appendix: every run's validation bound, every race's mean log-variance."""
    out = []
    for r in rows:
        for seed, value in enumerate(r.val_bound):
            out.append({"experiment": f"categorical VAE, {shape_text(r.n, r.classes)}",
                        "config": r.name, "seed": seed,
                        "metric": "validation IWAE bound", "value": float(value),
                        "steps": r.steps})
    for (n, k), race in races.items():
        for name, value in race_summary(race).items():
            out.append({"experiment": f"categorical VAE, {shape_text(n, k)}",
                        "config": name, "seed": 0, "metric": "mean log-variance (race)",
                        "value": value, "steps": race.steps[-1]})
    return out


def targets_note() -> str:
    """Which estimator aims at another objective than the ELBO."""
    other = [s.name for s in ESTIMATORS.values() if s.vae and s.target == K_SAMPLE_BOUND]
    return ", ".join(other)


# ---------------------------------------------------------------------- figures and tables
def race_figure(races: dict, costs_per_step: bool = False):
    """One bar per estimator and shape: the race's mean log-variance of the encoder
    gradient; with ``costs_per_step``, plus the log of the evaluations of ``f`` per step,
    i.e. the log-variance of an average of single estimates of the same total cost."""
    from minigrad import plot

    shapes = sorted(races, key=lambda s: s[1])
    names = list(dict.fromkeys(n for s in shapes for n in races[s].log_variance))
    palette = plot.colours(names)
    fig, (ax,) = plot.panels(1, height=3.6)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs, ys = [], []
        for i, (n, k) in enumerate(shapes):
            lv = race_summary(races[n, k]).get(name)
            if lv is None:
                continue
            if costs_per_step:
                lv += float(np.log(evaluations_per_step(name, n, k)))
            xs.append(i + (j - (len(names) - 1) / 2) * width)
            ys.append(lv)
        ax.bar(xs, ys, width=width, color=palette[name], label=name)
    ax.set_xticks(range(len(shapes)), [shape_text(*s) for s in shapes])
    ax.set_ylabel("log-variance" + (" + log(evaluations)" if costs_per_step else ""))
    ax.legend(fontsize=8, ncol=2, loc="lower left", bbox_to_anchor=(0, 1.02))
    return fig


def bound_figure(rows: list[ShapeRow]):
    """The validation bound after equal steps against K, one line per estimator (mean over
    seeds, with the seeds' range as an error bar)."""
    from minigrad import plot

    names = list(dict.fromkeys(r.name for r in rows))
    palette = plot.colours(names)
    fig, (ax,) = plot.panels(1, height=3.8)
    for name in names:
        mine = sorted((r for r in rows if r.name == name), key=lambda r: r.classes)
        ks = [r.classes for r in mine]
        means = np.array([r.mean for r in mine])
        spread = np.array([r.spread for r in mine])
        style = "-" if _unbiased(name) else "--"
        ax.errorbar(ks, means, yerr=spread, color=palette[name], ls=style, marker="o",
                    ms=4, capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ks = sorted({r.classes for r in rows})
    ax.set_xticks(ks, [f"K = {k}\nn = {next(r.n for r in rows if r.classes == k)}"
                       for k in ks])
    ax.set_ylabel("validation bound (nats)")
    ax.legend(fontsize=8, ncol=2)
    return fig


def cost_figure(histories: dict, axis: str = "evaluations"):
    """The training ELBO against the evaluations of ``f`` (or the seconds) spent, one panel
    per shape, one line per estimator (the mean over seeds), log x axis."""
    from minigrad import plot

    shapes = sorted({key[:2] for key in histories}, key=lambda s: s[1])
    names = list(dict.fromkeys(key[2] for key in histories))
    palette = plot.colours(names)
    fig, axes = plot.panels(len(shapes), per_row=2)
    for ax, shape in zip(axes, shapes):
        low = []
        for name in names:
            hs = [h for key, h in histories.items() if key[:2] == shape and key[2] == name]
            if not hs:
                continue
            xs = np.asarray(getattr(hs[0], axis), dtype=float)
            if axis == "seconds":
                xs = np.mean([h.seconds for h in hs], axis=0)
            ys = np.mean([h.train_elbo for h in hs], axis=0)
            ax.plot(xs, ys, color=palette[name], lw=1.2,
                    ls="-" if _unbiased(name) else "--", label=name)
            low.append(np.percentile(ys, 20))
        ax.set_xscale("log")
        ax.set_title(shape_text(*shape), fontsize=10)
        ax.set_xlabel("evaluations of f (batches)" if axis == "evaluations"
                      else "training seconds")
        ax.set_ylabel("training ELBO")
        ax.set_ylim(bottom=min(low) - 5)
    axes[0].legend(fontsize=7, ncol=1)
    return fig


def bound_table(rows: list[ShapeRow]) -> str:
    """Markdown: the validation bound per estimator (rows) and shape (columns)."""
    shapes = sorted({(r.n, r.classes) for r in rows}, key=lambda s: s[1])
    names = list(dict.fromkeys(r.name for r in rows))
    by = {(r.n, r.classes, r.name): r for r in rows}
    lines = ["| estimator | f per step | " + " | ".join(
        f"K = {k} (n = {n})" for n, k in shapes) + " |",
        "|---|---|" + "---|" * len(shapes)]
    for name in names:
        cells = []
        for n, k in shapes:
            r = by.get((n, k, name))
            cells.append("not run" if r is None else f"{r.mean:.1f}"
                         if len(r.val_bound) == 1 else f"{r.mean:.1f} ± {r.spread:.1f}")
        cost = ", ".join(str(evaluations_per_step(name, n, k)) for n, k in shapes)
        lines.append(f"| {name} | {cost} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def race_table(races: dict) -> str:
    """Markdown: the race's mean log-variance, and the same per evaluation of ``f``."""
    shapes = sorted(races, key=lambda s: s[1])
    names = list(dict.fromkeys(n for s in shapes for n in races[s].log_variance))
    lines = ["| estimator | " + " | ".join(f"K = {k}" for _, k in shapes) + " |",
             "|---|" + "---|" * len(shapes)]
    for name in names:
        cells = []
        for n, k in shapes:
            lv = race_summary(races[n, k]).get(name)
            cells.append("not run" if lv is None else
                         f"{lv:.1f} ({lv + np.log(evaluations_per_step(name, n, k)):.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(costs: dict) -> str:
    """Markdown: the training ELBO at equal evaluations and at equal time, per shape."""
    shapes = sorted(costs, key=lambda s: s[1])
    names = list(dict.fromkeys(n for s in shapes for n in costs[s]["by_evaluations"]))

    def cell(v):
        return "—" if not np.isfinite(v) else f"{v:.1f}"

    lines = ["| estimator | " + " | ".join(
        f"K = {k}: equal f / equal time" for _, k in shapes) + " |",
        "|---|" + "---|" * len(shapes)]
    for name in names:
        cells = []
        for s in shapes:
            c = costs[s]
            if name not in c["by_evaluations"]:
                cells.append("not run")
                continue
            cells.append(f"{cell(c['by_evaluations'][name])} / "
                         f"{cell(c['by_seconds'][name])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    points = "; ".join(f"K = {s[1]}: {costs[s]['evaluations']:,} evaluations, "
                       f"{costs[s]['seconds']:.0f} s" for s in shapes)
    return "\n".join(lines) + f"\n\nThe points of comparison: {points}."


def plan_text(shapes, left_out, race_left_out, limit: int, race_limit: int) -> str:
    """Markdown: the shapes, and what the training runs and the race leave out, and why."""
    text = ("Latent shapes: " + "; ".join(shape_text(*s) for s in shapes) + ".")

    def listed(items, what, cap):
        if not items:
            return f" Every estimator runs in {what}."
        return (f" Left out of {what} (more than {cap:,} evaluations of f per step): "
                + "; ".join(f"{name} at {shape_text(*shape)} ({cost:,})"
                            for shape, name, cost in items) + ".")

    return (text + listed(left_out, "the training runs", limit)
            + listed(race_left_out, "the variance race", race_limit))


def oracle_table(measured: dict, samples: int) -> str:
    """Markdown: each estimator's largest |z| against the exact gradient, its relative
    bias and mean variance (``measured``: name -> catalogue Measurement)."""
    lines = [f"| estimator | unbiased by design | largest \\|z\\| ({samples:,} estimates) "
             "| relative bias | variance |", "|---|---|---|---|---|"]
    for name, m in measured.items():
        spec = ESTIMATORS[name]
        relative = m.bias_norm / np.linalg.norm(m.exact)
        lines.append(f"| {name} | {'yes' if spec.unbiased else 'no'} | "
                     f"{m.largest_abs_z:.1f} | {relative:.2g} | {m.mean_variance:.3g} |")
    return "\n".join(lines)

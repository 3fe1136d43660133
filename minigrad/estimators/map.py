"""How the estimators relate: a map drawn from the catalogue, and a guide drawn from measurements.

:data:`EDGES` is the one list of relations between estimators, keyed by the names of the
catalogue's entries (:data:`minigrad.estimators.catalogue.CATALOGUE`): "B adds a baseline to
A", "B Rao-Blackwellises A", and so on. The nodes come from the catalogue itself, so an
estimator added there appears on the map; an edge naming an estimator the catalogue does not
have is an error (:func:`estimator_graph`), so the map cannot drift from the table.

:func:`which_estimator_when` turns measured rows (bias, variance, seconds per estimate on the
catalogue's common problem) into recommendations: nothing in it names an estimator.

The catalogue is read through the few accessors below (name, family, unbiased, what it needs,
its problem), so that a change of the table's fields touches only them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["EDGES", "RELATIONS", "OUTSIDE_CATALOGUE", "MapNode", "estimator_graph",
           "plot_estimator_map", "MeasuredRow", "measure_rows", "which_estimator_when"]


# ---------------------------------------------------------------------- the catalogue, read
def _name(entry) -> str:
    return entry.name


def _family(entry) -> str:
    return entry.family


def _unbiased(entry) -> bool:
    return bool(entry.unbiased)


def _needs_only_values(entry) -> bool:
    """Whether the estimator uses nothing of ``f`` but its value at the sample."""
    return entry.needs == "only f(b)"


def _problem(entry) -> str:
    return entry.problem.name


def _chapter(entry) -> str:
    return entry.chapter


# ---------------------------------------------------------------------- the relations
#: Kind of relation -> its colour on the map.
RELATIONS = {
    "adds a baseline": "tab:blue",
    "control variate from a Taylor expansion": "tab:cyan",
    "relaxed control variate": "tab:purple",
    "tunes / learns the control variate": "tab:red",
    "Rao-Blackwellises": "tab:green",
    "antithetic samples": "tab:olive",
    "relaxes the sample": "tab:orange",
    "changes the backward slope": "tab:brown",
    "categorical version": "tab:gray",
    "Gaussian noise at the logits": "tab:pink",
}

#: Estimators on the map that the catalogue does not measure (they estimate something else):
#: name -> (family, unbiased, chapter).
OUTSIDE_CATALOGUE = {
    "evolution strategies": ("black box", True, "09_evolution_strategies"),
}

#: (from, relation, to): "to" is "from" with the relation applied. Keyed by catalogue names.
EDGES: list[tuple[str, str, str]] = [
    ("REINFORCE", "adds a baseline", "REINFORCE, constant baseline"),
    ("REINFORCE, constant baseline", "adds a baseline", "REINFORCE leave-one-out, 2 samples"),
    ("REINFORCE, constant baseline", "adds a baseline",
     "NVIL (constant baseline, no normalisation)"),
    ("REINFORCE, constant baseline", "control variate from a Taylor expansion",
     "SimpleMuProp"),
    ("SimpleMuProp", "control variate from a Taylor expansion", "MuProp"),
    ("MuProp", "relaxed control variate", "REBAR"),
    ("Concrete, temperature 0.5", "relaxed control variate", "REBAR"),
    ("REBAR", "relaxes the sample", "REBAR, Concrete relaxation"),
    ("REBAR", "tunes / learns the control variate", "dynamic REBAR (eta 0.7, temperature 0.3)"),
    ("dynamic REBAR (eta 0.7, temperature 0.3)", "tunes / learns the control variate",
     "RELAX"),
    ("REINFORCE", "antithetic samples", "ARM"),
    ("ARM", "Rao-Blackwellises", "DisARM"),
    ("REINFORCE", "categorical version", "REINFORCE, categorical"),
    ("REINFORCE", "Gaussian noise at the logits", "evolution strategies"),
    ("ST pass-through", "changes the backward slope", "ST sigmoid-adjusted"),
    ("ST pass-through", "changes the backward slope", "ST hard sigmoid"),
    ("ST sigmoid-adjusted", "changes the backward slope", "ST slope 2"),
    ("ST sigmoid-adjusted", "relaxes the sample", "Concrete, temperature 0.5"),
    ("ST sigmoid-adjusted", "categorical version", "ST sampled softmax"),
    ("ST sampled softmax", "changes the backward slope", "ST hardmax"),
    ("ST sampled softmax", "relaxes the sample", "ST Gumbel-softmax"),
    ("Concrete, temperature 0.5", "categorical version", "Gumbel-softmax, relaxed"),
    ("Gumbel-softmax, relaxed", "changes the backward slope", "ST Gumbel-softmax"),
]


@dataclass(frozen=True)
class MapNode:
    name: str
    family: str
    unbiased: bool
    chapter: str


def estimator_graph(catalogue=None, edges: Sequence[tuple[str, str, str]] = EDGES
                    ) -> tuple[list[MapNode], list[tuple[str, str, str]]]:
    """The map's nodes (every catalogue entry, plus :data:`OUTSIDE_CATALOGUE`) and edges.

    Raises ValueError when an edge names an estimator that is not a node, or a relation
    that :data:`RELATIONS` does not have.
    """
    if catalogue is None:
        from minigrad.estimators.catalogue import CATALOGUE as catalogue
    nodes = [MapNode(_name(e), _family(e), _unbiased(e), _chapter(e)) for e in catalogue]
    nodes += [MapNode(name, *rest) for name, rest in OUTSIDE_CATALOGUE.items()]
    names = {node.name for node in nodes}
    for source, relation, target in edges:
        for end in (source, target):
            if end not in names:
                raise ValueError(
                    f"estimator map: the edge {source!r} -> {target!r} names {end!r}, which is "
                    f"not in the catalogue; rename it in minigrad/estimators/map.py (EDGES) "
                    f"to one of: {', '.join(sorted(names))}")
        if relation not in RELATIONS:
            raise ValueError(f"estimator map: unknown relation {relation!r}; add it to "
                             f"RELATIONS or use one of: {', '.join(RELATIONS)}")
    return nodes, list(edges)


def _layout(nodes: list[MapNode], edges) -> dict[str, tuple[float, float]]:
    """Depth along the edges from left to right; one horizontal band per family."""
    depth = {node.name: 0 for node in nodes}
    for _ in range(len(nodes)):  # longest path from a root, by relaxation (the map is a DAG)
        changed = False
        for source, _, target in edges:
            if depth[target] < depth[source] + 1:
                depth[target], changed = depth[source] + 1, True
        if not changed:
            break
    families = list(dict.fromkeys(node.family for node in nodes))
    y, position = 0.0, {}
    for family in families:
        members = [n for n in nodes if n.family == family]
        rows = max(sum(depth[m.name] == d for m in members) for d in set(depth.values()))
        used: dict[int, int] = {}
        for m in members:
            row = used.get(depth[m.name], 0)
            used[depth[m.name]] = row + 1
            position[m.name] = (float(depth[m.name]), -(y + row))
        y += rows + 0.6
    return position


def _wrap(name: str, width: int = 18) -> str:
    words, lines, line = name.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def plot_estimator_map(catalogue=None, edges=EDGES, ax=None):
    """Draw the map: estimators as boxes (blue unbiased, orange biased), one band per family,
    arrows coloured by relation. Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    nodes, edges = estimator_graph(catalogue, edges)
    position = _layout(nodes, edges)
    depth = max(x for x, _ in position.values()) + 1
    height = -min(y for _, y in position.values()) + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(2.3 * depth + 1.5, 0.62 * height + 1.2))
    for source, relation, target in edges:
        ax.annotate("", xy=position[target], xytext=position[source],
                    arrowprops=dict(arrowstyle="-|>", color=RELATIONS[relation], lw=1.6,
                                    shrinkA=34, shrinkB=34,
                                    connectionstyle="arc3,rad=0.08"))
    for node in nodes:
        colour = "#dbe9f6" if node.unbiased else "#fde3c8"
        ax.text(*position[node.name], _wrap(node.name), ha="center", va="center",
                fontsize=8.5, bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="0.4"))
    families = {}
    for node in nodes:
        families.setdefault(node.family, []).append(position[node.name][1])
    for family, ys in families.items():
        ax.text(-0.75, float(np.mean(ys)), family, ha="right", va="center", fontsize=9.5,
                style="italic")
    used = list(dict.fromkeys(relation for _, relation, _ in edges))
    handles = [Line2D([], [], color=RELATIONS[r], lw=2, label=r) for r in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3,
              fontsize=8.5, title="arrow: the estimator at the head is the one at the tail "
              "that ...", title_fontsize=8.5)
    ax.set_xlim(-2.2, depth - 0.4)
    ax.set_ylim(-height + 0.4, 0.6)
    ax.axis("off")
    ax.set_title("The estimators and how they relate (blue: unbiased, orange: biased)")
    return ax


# ---------------------------------------------------------------------- which estimator when
@dataclass(frozen=True)
class MeasuredRow:
    """One estimator measured on its problem: the inputs of the guide."""

    name: str
    problem: str
    unbiased: bool
    only_values: bool            # needs nothing of f but its value
    relative_bias: float         # |bias| / |exact gradient|
    variance: float              # of one estimate, mean over components
    seconds: float               # per single-sample estimate, measured

    variance_scale: float = 0.0  # components / |exact gradient|^2

    @property
    def mean_squared_error(self) -> float:
        """Relative squared error of one estimate: (|bias|^2 + total variance) / |g|^2."""
        return self.relative_bias ** 2 + self.variance * self.variance_scale


def measure_rows(catalogue=None, samples: int = 20_000, seed: int = 0) -> list[MeasuredRow]:
    """Measure every catalogue entry (:func:`~minigrad.estimators.catalogue.measure`) and time
    it: the seconds per estimate are the wall time of the measurement over ``samples``."""
    from minigrad.estimators.catalogue import CATALOGUE, measure

    rows = []
    for entry in (CATALOGUE if catalogue is None else catalogue):
        start = time.perf_counter()
        m = measure(entry, samples=samples, seed=seed)
        seconds = (time.perf_counter() - start) / samples
        norm = float(np.linalg.norm(m.exact))
        rows.append(MeasuredRow(_name(entry), _problem(entry), _unbiased(entry),
                                _needs_only_values(entry), m.bias_norm / norm,
                                m.mean_variance, seconds, m.exact.size / norm ** 2))
    return rows


def _best(rows, key):
    return min(rows, key=key) if rows else None


def which_estimator_when(rows: Sequence[MeasuredRow]) -> list[tuple[str, str, str]]:
    """Recommendations from measured rows: (situation, estimator, why, with the numbers).

    Only the measurements decide: "lowest variance" is the smallest measured variance,
    "cheapest for its variance" the smallest variance times seconds (the variance of the
    average of as many estimates as one second of computing buys, inverted), "most accurate"
    the smallest bias squared plus variance, relative to the exact gradient.
    """
    if not rows:
        raise ValueError("which_estimator_when: no measured rows; call measure_rows() first")
    advice = []

    def add(situation, candidates, key, why):
        best = _best(candidates, key)
        if best is not None:
            advice.append((situation, best.name, why(best)))

    def numbers(row):
        return (f"variance {row.variance:.3g}, relative bias {row.relative_bias:.3f}, "
                f"{row.seconds * 1e6:.1f} µs per estimate")

    for problem in dict.fromkeys(r.problem for r in rows):
        mine = [r for r in rows if r.problem == problem]
        unbiased = [r for r in mine if r.unbiased]
        black_box = [r for r in unbiased if r.only_values]
        units = f"{problem} units"
        add(f"{units}; f is a black box (only its values); no bias allowed", black_box,
            lambda r: r.variance, lambda r: f"lowest variance of those that use only f's "
            f"values: {numbers(r)}")
        add(f"{units}; f differentiable; no bias allowed", unbiased, lambda r: r.variance,
            lambda r: f"lowest variance of all unbiased estimators: {numbers(r)}")
        add(f"{units}; no bias allowed; a fixed budget of computing time", unbiased,
            lambda r: r.variance * r.seconds,
            lambda r: f"smallest variance x time (most accuracy per second): {numbers(r)}")
        add(f"{units}; some bias allowed; most accurate single estimate", mine,
            lambda r: r.mean_squared_error,
            lambda r: f"smallest bias^2 + variance relative to |gradient|^2 "
            f"({r.mean_squared_error:.3g}): {numbers(r)}")
    return advice

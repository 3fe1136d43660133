"""How the estimators relate: a map drawn from the catalogue, and a guide drawn from measurements.

:data:`EDGES` is the one list of relations between estimators, keyed by the names of the
catalogue's entries (:data:`minigrad.estimators.catalogue.SPECS`): "B adds a baseline to
A", "B Rao-Blackwellises A", and so on. The nodes come from the catalogue itself, so an
estimator added there appears on the map; an edge naming an estimator the catalogue does not
have is an error (:func:`estimator_graph`), so the map cannot drift from the table.

:func:`which_estimator_when` turns measured rows (bias, variance, seconds per estimate on the
catalogue's common problem) into recommendations: nothing in it names an estimator.

The catalogue is read through the few accessors below (name, family, unbiased, what it needs,
its problem), so that a change of the table's fields touches only them.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["EDGES", "RELATIONS", "OUTSIDE_CATALOGUE", "FAMILY_ORDER", "MapNode", "estimator_graph",
           "plot_estimator_map", "write_map_svg", "MeasuredRow", "Z_UNBIASED", "measure_rows",
           "which_estimator_when"]


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
    "drops a part of the baseline": "navy",
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

#: Families from top to bottom on the map (others follow), so that related bands touch.
FAMILY_ORDER = ["black box", "score function", "antithetic", "relaxed control variate",
                "relaxation", "straight-through"]

#: (from, relation, to): "to" is "from" with the relation applied. Keyed by catalogue names.
EDGES: list[tuple[str, str, str]] = [
    ("REINFORCE", "adds a baseline", "REINFORCE, constant baseline"),
    ("REINFORCE, constant baseline", "adds a baseline", "REINFORCE LOO"),
    ("REINFORCE, constant baseline", "adds a baseline",
     "NVIL (constant baseline, no normalisation)"),
    ("NVIL (constant baseline, no normalisation)", "adds a baseline", "NVIL"),
    ("NVIL", "drops a part of the baseline", "NVIL (REBAR code)"),
    ("REINFORCE", "control variate from a Taylor expansion", "SimpleMuProp"),
    ("SimpleMuProp", "control variate from a Taylor expansion", "MuProp"),
    ("MuProp", "tunes / learns the control variate", "MuProp (REBAR code)"),
    ("MuProp", "relaxed control variate", "REBAR"),
    ("Concrete", "relaxed control variate", "REBAR"),
    ("REBAR", "relaxes the sample", "REBAR (Concrete relaxation)"),
    ("REBAR", "tunes / learns the control variate", "dynamic REBAR"),
    ("REBAR", "tunes / learns the control variate", "RELAX"),
    ("REINFORCE", "antithetic samples", "ARM"),
    ("ARM", "Rao-Blackwellises", "DisARM"),
    ("REINFORCE", "categorical version", "REINFORCE, categorical"),
    ("REINFORCE", "Gaussian noise at the logits", "evolution strategies"),
    ("ST pass-through", "changes the backward slope", "ST sigmoid-adjusted"),
    ("ST pass-through", "changes the backward slope", "ST hard sigmoid"),
    ("ST sigmoid-adjusted", "changes the backward slope", "ST slope 2"),
    ("ST sigmoid-adjusted", "relaxes the sample", "Concrete"),
    ("ST sigmoid-adjusted", "categorical version", "ST sampled softmax"),
    ("ST sampled softmax", "changes the backward slope", "ST hardmax"),
    ("ST sampled softmax", "relaxes the sample", "ST Gumbel-softmax"),
    ("Concrete", "categorical version", "Gumbel-softmax, relaxed"),
    ("Gumbel-softmax, relaxed", "changes the backward slope", "ST Gumbel-softmax"),
    # categorical latents
    ("REINFORCE LOO", "categorical version", "RLOO"),
    ("REINFORCE, categorical", "adds a baseline", "RLOO"),
    ("RLOO", "adds a baseline", "VIMCO"),
    ("REINFORCE, categorical", "Rao-Blackwellises", "IndeCateR"),
    ("ARM", "categorical version", "ARSM"),
    ("REINFORCE, categorical", "antithetic samples", "ARSM"),
    ("REBAR (Concrete relaxation)", "categorical version", "REBAR, categorical"),
    ("Gumbel-softmax, relaxed", "relaxed control variate", "REBAR, categorical"),
    ("REBAR, categorical", "tunes / learns the control variate",
     "dynamic REBAR, categorical"),
    ("REBAR, categorical", "tunes / learns the control variate", "RELAX, categorical"),
    ("dynamic REBAR", "categorical version", "dynamic REBAR, categorical"),
    ("RELAX", "categorical version", "RELAX, categorical"),
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
        from minigrad.estimators.catalogue import SPECS as catalogue
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
    present = list(dict.fromkeys(node.family for node in nodes))
    families = [f for f in FAMILY_ORDER if f in present] + \
        [f for f in present if f not in FAMILY_ORDER]
    y, position = 0.0, {}
    for family in families:
        # at one depth, the nodes that lead further go first (fewer crossing arrows)
        onward = {n.name: sum(e[0] == n.name for e in edges) for n in nodes}
        members = sorted((n for n in nodes if n.family == family),
                         key=lambda n: -onward[n.name])
        rows = max(sum(depth[m.name] == d for m in members) for d in set(depth.values()))
        used: dict[int, int] = {}
        for m in members:
            row = used.get(depth[m.name], 0)
            used[depth[m.name]] = row + 1
            position[m.name] = (float(depth[m.name]), -(y + row))
        y += rows + 0.6
    return position


def _label(name: str, width: int = 13) -> str:
    """The name without its long parenthetical details (a short one such as "REBAR code"
    stays: it tells two nodes apart), wrapped to lines of ``width``."""
    name = re.sub(r"\s*\([^)]{11,}\)", "", name).strip()
    words, lines, line = name.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def _half_sizes(ax, boxes) -> dict[str, tuple[float, float]]:
    """Half width and half height of each box, in data units (needs one draw)."""
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    inverse = ax.transData.inverted()
    half = {}
    for name, text in boxes.items():
        (x0, y0), (x1, y1) = inverse.transform(
            text.get_bbox_patch().get_window_extent(renderer).get_points())
        half[name] = ((x1 - x0) / 2, (y1 - y0) / 2)
    return half


def _edge_point(centre, towards, half, gap: float = 0.03) -> tuple[float, float]:
    """Where the segment from ``centre`` to ``towards`` leaves a box of half sizes ``half``."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    scale = min(half[0] / abs(dx) if dx else np.inf, half[1] / abs(dy) if dy else np.inf)
    scale += gap / max(np.hypot(dx, dy), 1e-9)
    return centre[0] + scale * dx, centre[1] + scale * dy


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
        _, ax = plt.subplots(figsize=(2.3 * depth + 1.4, 0.8 * height + 1.6))
    boxes = {}
    for node in nodes:
        colour = "#dbe9f6" if node.unbiased else "#fde3c8"
        boxes[node.name] = ax.text(
            *position[node.name], _label(node.name), ha="center", va="center", fontsize=10.5,
            zorder=3, bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="0.4"))
    ax.set_xlim(-1.5, depth - 0.4)
    ax.set_ylim(-height + 0.4, 0.6)
    half = _half_sizes(ax, boxes)
    for source, relation, target in edges:
        start = _edge_point(position[source], position[target], half[source])
        end = _edge_point(position[target], position[source], half[target])
        ax.annotate("", xy=end, xytext=start, zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=RELATIONS[relation], lw=1.6,
                                    shrinkA=0, shrinkB=0, mutation_scale=14))
    families = {}
    for node in nodes:
        families.setdefault(node.family, []).append(position[node.name][1])
    for family, ys in families.items():
        ax.text(-0.6, float(np.mean(ys)), family, ha="right", va="center", fontsize=11,
                style="italic")
    used = list(dict.fromkeys(relation for _, relation, _ in edges))
    handles = [Line2D([], [], color=RELATIONS[r], lw=2, label=r) for r in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3,
              fontsize=11, title="an arrow points to the estimator made from its tail by ...",
              title_fontsize=11)
    ax.axis("off")
    ax.set_title("The estimators and how they relate (blue: unbiased, orange: biased)",
                 fontsize=13)
    return ax


# ---------------------------------------------------------------------- which estimator when
@dataclass(frozen=True)
class MeasuredRow:
    """One estimator measured on its problem: the inputs of the guide."""

    name: str
    problem: str
    largest_abs_z: float         # the largest bias over the components, in standard errors
    only_values: bool            # needs nothing of f but its value
    relative_bias: float         # |bias| / |exact gradient| (sampling noise if unbiased)
    variance: float              # of one estimate, mean over components
    seconds: float               # per single-sample estimate, measured
    variance_scale: float = 0.0  # components / |exact gradient|^2

    @property
    def unbiased(self) -> bool:
        """No component's bias reaches 4 standard errors (the oracle test's threshold)."""
        return self.largest_abs_z < Z_UNBIASED

    def batch_error(self, batch: int = 100) -> float:
        """Relative squared error of the mean of ``batch`` estimates:
        ``(|bias|^2 + total variance / batch) / |g|^2``, the bias counted only if measured."""
        bias = self.relative_bias ** 2 if not self.unbiased else 0.0
        return bias + self.variance * self.variance_scale / batch


#: Above this many standard errors, a measured bias counts as real.
Z_UNBIASED = 4.0


def measure_rows(catalogue=None, samples: int = 20_000, seed: int = 0) -> list[MeasuredRow]:
    """Measure every catalogue entry (:func:`~minigrad.estimators.catalogue.measure`) and time
    it: the seconds per estimate are the faster of two timed measurements over ``samples``."""
    from minigrad.estimators.catalogue import SPECS, measure

    rows = []
    for entry in (SPECS if catalogue is None else catalogue):
        timings = []
        for _ in range(2):  # the first call also pays for first-use costs
            start = time.perf_counter()
            m = measure(entry, samples=samples, seed=seed)
            timings.append((time.perf_counter() - start) / samples)
        norm = float(np.linalg.norm(m.exact))
        rows.append(MeasuredRow(_name(entry), _problem(entry), m.largest_abs_z,
                                _needs_only_values(entry), m.bias_norm / norm,
                                m.mean_variance, min(timings), m.exact.size / norm ** 2))
    return rows


def which_estimator_when(rows: Sequence[MeasuredRow], batch: int = 100
                         ) -> list[tuple[str, str, str]]:
    """Recommendations from measured rows: (situation, estimator, why, with the numbers).

    Only the measurements decide. "No bias allowed" keeps the rows whose measured bias stays
    under :data:`Z_UNBIASED` standard errors; among them "lowest variance" is the smallest
    measured variance and "a fixed budget of time" the smallest variance times seconds (an
    average of as many estimates as the time buys). "Some bias allowed" ranks every row by
    the squared error of a minibatch's average gradient, bias squared plus variance over
    ``batch``, relative to the exact gradient. Rows are compared within their problem only,
    and a problem with a single row (an estimator with a target of its own) gets no advice.
    """
    if not rows:
        raise ValueError("which_estimator_when: no measured rows; call measure_rows() first")
    advice = []

    def numbers(row):
        bias = "no measurable bias" if row.unbiased else \
            f"relative bias {row.relative_bias:.2f}"
        return f"variance {row.variance:.3g}, {bias}, {row.seconds * 1e6:.1f} µs per estimate"

    def add(situation, candidates, key, why):
        if candidates:
            best = min(candidates, key=key)
            advice.append((situation, best.name, f"{why}: {numbers(best)}"))

    for problem in dict.fromkeys(r.problem for r in rows):
        mine = [r for r in rows if r.problem == problem]
        if len(mine) < 2:   # one estimator of its target (VIMCO's bound): nothing to choose
            continue
        unbiased = [r for r in mine if r.unbiased]
        units = f"{problem} units"
        add(f"{units}; f is a black box (only its values); no bias allowed",
            [r for r in unbiased if r.only_values], lambda r: r.variance,
            "lowest variance of the unbiased estimators that use only f's values")
        add(f"{units}; f differentiable; no bias allowed", unbiased, lambda r: r.variance,
            "lowest variance of all unbiased estimators")
        add(f"{units}; no bias allowed; a fixed budget of computing time", unbiased,
            lambda r: r.variance * r.seconds,
            "smallest variance x time: the most accurate average per second")
        add(f"{units}; some bias allowed; gradients averaged over {batch} examples", mine,
            lambda r: r.batch_error(batch),
            f"smallest (bias squared + variance / {batch}) over the squared length of "
            "the exact gradient")
    return advice


# ---------------------------------------------------------------------- the intro's copy
def write_map_svg(path) -> None:
    """Write the map as an SVG that depends only on the catalogue and the edges (no date, a
    fixed hash salt), so that a test can regenerate it and compare it byte for byte."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "minigrad-estimator-map", "svg.fonttype": "path",
                         "font.size": 10}):
        ax = plot_estimator_map()
        ax.figure.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(ax.figure)


if __name__ == "__main__":  # python -m minigrad.estimators.map book/_static/estimator_map.svg
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m minigrad.estimators.map OUTPUT.svg")
    write_map_svg(sys.argv[1])

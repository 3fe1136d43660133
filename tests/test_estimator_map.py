"""The map of the estimators and the "which estimator when" guide follow the catalogue."""
from pathlib import Path

import pytest

from minigrad.estimators.catalogue import SPECS as CATALOGUE
from minigrad.estimators.map import (EDGES, RELATIONS, MeasuredRow, estimator_graph,
                                     measure_rows, which_estimator_when, write_map_svg)

ROOT = Path(__file__).resolve().parents[1]


def test_every_edge_names_catalogue_estimators_and_every_estimator_is_on_the_map():
    nodes, edges = estimator_graph()
    names = {node.name for node in nodes}
    assert {entry.name for entry in CATALOGUE} <= names
    linked = {end for source, _, target in edges for end in (source, target)}
    lonely = sorted(names - linked)
    assert not lonely, (f"{lonely} have no arrow on the map: add their relation to another "
                        "estimator to EDGES in minigrad/estimators/map.py")
    assert {relation for _, relation, _ in edges} <= set(RELATIONS)


def test_an_edge_to_an_unknown_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="'REINFORCE, renamed'.*not in the catalogue"):
        estimator_graph(edges=EDGES + [("REINFORCE", "adds a baseline",
                                        "REINFORCE, renamed")])
    with pytest.raises(ValueError, match="unknown relation 'inspires'"):
        estimator_graph(edges=[("REINFORCE", "inspires", "ARM")])


def test_the_map_follows_the_catalogue():
    smaller = [entry for entry in CATALOGUE if entry.name != "DisARM"]
    with pytest.raises(ValueError, match="'DisARM'"):
        estimator_graph(smaller)
    nodes, _ = estimator_graph(smaller, [e for e in EDGES if "DisARM" not in e])
    assert "DisARM" not in {node.name for node in nodes}


def test_the_intro_shows_the_map_of_the_current_catalogue(tmp_path):
    committed = ROOT / "book" / "_static" / "estimator_map.svg"
    fresh = tmp_path / "map.svg"
    write_map_svg(fresh)
    assert committed.read_bytes() == fresh.read_bytes(), (
        "book/_static/estimator_map.svg is out of date: run "
        "python -m minigrad.estimators.map book/_static/estimator_map.svg")
    assert "_static/estimator_map.svg" in (ROOT / "book" / "intro.md").read_text()


def _row(name, z, variance, seconds, bias=0.0, problem="Bernoulli", only_values=True):
    return MeasuredRow(name, problem, z, only_values, bias, variance, seconds, 1.0)


def test_the_guide_is_decided_by_the_measurements():
    rows = [_row("noisy", 1.0, 4.0, 1e-6), _row("quiet but slow", 0.5, 1.0, 1e-4),
            _row("needs a gradient", 0.2, 2.0, 1e-6, only_values=False),
            _row("biased", 30.0, 0.01, 1e-6, bias=0.05)]
    advice = {situation.split("; ", 1)[1]: name
              for situation, name, _ in which_estimator_when(rows)}
    assert advice["f is a black box (only its values); no bias allowed"] == "quiet but slow"
    assert advice["f differentiable; no bias allowed"] == "quiet but slow"
    assert advice["no bias allowed; a fixed budget of computing time"] == "needs a gradient"
    assert advice["some bias allowed; gradients averaged over 100 examples"] == "biased"
    # a larger bias loses to the unbiased estimators once averaged over a minibatch
    rows[-1] = _row("biased", 30.0, 0.01, 1e-6, bias=0.5)
    advice = dict((s.split("; ", 1)[1], n) for s, n, _ in which_estimator_when(rows))
    assert advice["some bias allowed; gradients averaged over 100 examples"] == \
        "quiet but slow"
    with pytest.raises(ValueError, match="no measured rows"):
        which_estimator_when([])


def test_the_guide_compares_rows_within_a_problem_only():
    # a row alone on its problem (VIMCO on the k-sample bound) is recommended for nothing,
    # however low its variance; two rows on that problem are compared with each other
    rows = [_row("noisy", 1.0, 4.0, 1e-6), _row("quiet", 0.5, 1.0, 1e-6),
            _row("alone", 0.5, 1e-3, 1e-7, problem="bound")]
    advice = which_estimator_when(rows)
    assert {name for _, name, _ in advice} == {"quiet"}
    rows.append(_row("partner", 0.5, 1e-2, 1e-7, problem="bound"))
    chosen = {s.split(" units", 1)[0]: n for s, n, _ in which_estimator_when(rows)}
    assert chosen == {"Bernoulli": "quiet", "bound": "alone"}


def test_measured_rows_of_two_estimators():
    two = [entry for entry in CATALOGUE if entry.name in ("REINFORCE", "ST sigmoid-adjusted")]
    rows = {row.name: row for row in measure_rows(two, samples=4000)}
    assert rows["REINFORCE"].unbiased and not rows["ST sigmoid-adjusted"].unbiased
    assert all(row.seconds > 0 and row.variance > 0 for row in rows.values())
    assert rows["REINFORCE"].variance > rows["ST sigmoid-adjusted"].variance

"""The figure convention of minigrad.plot: one palette, one width, numbered figures."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minigrad import plot  # noqa: E402
from minigrad.estimators.catalogue import ESTIMATORS  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_rcparams():
    """plot.use_style changes matplotlib's global settings: put them back after each test,
    so that tests drawing with the defaults (the estimator map's SVG) do not depend on the
    order the tests run in."""
    with matplotlib.rc_context():
        yield


def test_every_catalogue_estimator_has_its_own_colour():
    missing = [name for name in ESTIMATORS if name not in plot.PALETTE]
    assert not missing, f"estimators without a colour in plot.PALETTE: {missing}"
    taken = [plot.colour(name) for name in ESTIMATORS]
    shared = {c for c in taken if taken.count(c) > 1}
    assert not shared, f"estimators sharing a colour: {shared}"


def test_unknown_names_get_a_fixed_colour_and_figures_keep_them_apart():
    assert plot.colour("a series no palette names") == plot.colour("a series no palette names")
    assert plot.colour("REBAR") == plot.PALETTE["REBAR"]
    names = [f"unit {i}" for i in range(10)]
    got = plot.colours(names)
    assert len(set(got.values())) == len(names)
    with pytest.raises(TypeError, match="series name"):
        plot.colour(3)


def test_panels_fill_the_column_and_wrap_when_a_panel_would_be_too_narrow():
    fig, axes = plot.panels(2)
    assert len(axes) == 2
    assert fig.get_size_inches()[0] == pytest.approx(plot.FIGURE_WIDTH)
    assert fig.get_size_inches()[1] == pytest.approx(plot.PANEL_HEIGHT)
    plt.close(fig)
    fig, axes = plot.panels(3)  # 7 / 3 inches is under the readable panel width
    assert len(axes) == 3 and len(fig.axes) == 3
    assert fig.get_size_inches()[1] == pytest.approx(2 * plot.PANEL_HEIGHT)
    plt.close(fig)
    with pytest.raises(ValueError, match="panels"):
        plot.panels(0)


def test_log_axis_is_clipped_to_the_data():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1e-3, 0.0, 1e-1])
    plot.clip_log_axis(ax, [1e-3, 0.0, 1e-1, float("nan")])
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(1e-3 / 1.5) and hi == pytest.approx(1e-1 * 1.5)
    plt.close(fig)


def test_thousands_labels_steps_in_k_and_m():
    fig, ax = plt.subplots()
    plot.thousands(ax)
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(v, None) for v in (0, 2_084, 50_000, 100_000, 1_500_000)] == \
        ["0", "2.084k", "50k", "100k", "1.5M"]
    with pytest.raises(ValueError, match="axis"):
        plot.thousands(ax, "z")
    plt.close(fig)


def test_figure_markdown_needs_caption_and_alt_and_names_the_target():
    md = plot.figure_markdown("fig-x", "A caption.", "A  description\nof the figure")
    assert md.splitlines()[:3] == ["```{glue:figure} fig-x", ":name: fig-x",
                                   ":alt: A description of the figure"]
    with pytest.raises(ValueError, match="alt text"):
        plot.figure_markdown("fig-x", "A caption.", " ")
    with pytest.raises(ValueError, match="figure name"):
        plot.show(plt.figure(), "fig x!")


def test_variants_take_their_estimators_colour_unless_it_is_taken():
    assert plot.colour("linear: ARM") == plot.PALETTE["ARM"]
    assert plot.colour("REINFORCE LOO-2") == plot.PALETTE["REINFORCE LOO"]
    got = plot.colours(["NVIL (no normalisation)", "NVIL", "Concrete (t=0.5)",
                        "Concrete (t=0.1)"])
    assert got["NVIL"] == plot.PALETTE["NVIL"]
    assert got["Concrete (t=0.5)"] == plot.PALETTE["Concrete"]
    assert len(set(got.values())) == 4


def test_learning_curves_keep_a_narrow_panels_legend_off_the_curves():
    from minigrad.experiments import History

    runs = {name: [History(name, seed, train_steps=[100, 200], train_accuracy=[0.5, 0.6],
                           val_epochs=[1, 2], val_accuracy=[0.7, 0.8]) for seed in (0, 1)]
            for name in ("REINFORCE", "a configuration with a rather long label, lr 0.1")}
    fig, axes = plot.panels(3)
    ax = plot.learning_curves(runs, ax=axes[0])
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 < ax.bbox.y0
    assert [line.get_color() for line in ax.lines if line.get_label() == "REINFORCE (n=2)"] \
        == [plot.colour("REINFORCE")]
    plt.close(fig)
    ax = plot.learning_curves({"REINFORCE": runs["REINFORCE"]})
    assert ax.get_legend() is not None
    plt.close(ax.figure)


def test_bias_variance_bars_keep_the_log_axis_to_the_values():
    ax = plot.bias_variance_bars(["a", "b"], np.array([1e-9, 0.0]), np.array([0.5, 2.0]))
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "log"
    assert lo == pytest.approx(1e-9 / 2) and hi == pytest.approx(4.0)
    plt.close(ax.figure)

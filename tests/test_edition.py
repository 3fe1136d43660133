"""The student edition: every solution is removed, every exercise stays."""
import json
from pathlib import Path

import pytest

from minigrad.teaching.edition import (prepare_student_sources, strip_solutions_notebook,
                              strip_solutions_text)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text):
    return {"cell_type": "code", "metadata": {}, "source": text, "outputs": [],
            "execution_count": None}


def _text(nb):
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def test_strip_a_solution_spanning_cells():
    nb = {"cells": [
        _md("intro"),
        _md("```{exercise} Ex\n:label: e\nDo it.\n```\n\n```{solution-start} e\n"
            ":class: dropdown\n```\nSecret words."),
        _code("secret_code = 1"),
        _md("More secret.\n\n```{solution-end}\n```\nAfter the solution."),
        _code("kept = 2"),
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out = _text(strip_solutions_notebook(nb))
    assert "Do it." in out and "intro" in out and "After the solution." in out
    assert "kept = 2" in out
    for gone in ("Secret", "secret_code", "More secret", "{solution"):
        assert gone not in out
    assert len(nb["cells"]) == 5  # the input is left as it was


def test_strip_a_solution_block_with_a_longer_fence():
    text = "Before\n````{solution} e\nAnswer with ```code``` inside\n```python\nx\n```\n````\nAfter\n"
    assert strip_solutions_text(text) == "Before\nAfter\n"


def test_an_unclosed_solution_is_an_error():
    nb = {"cells": [_md("```{solution-start} e\n```\nanswer")], "metadata": {}}
    with pytest.raises(ValueError, match="no matching"):
        strip_solutions_notebook(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_loses_its_solutions_and_keeps_its_exercises(path):
    nb = json.loads(path.read_text(encoding="utf8"))
    before, after = _text(nb), _text(strip_solutions_notebook(nb))
    assert "{solution" not in after
    assert after.count("{exercise") == before.count("{exercise")


def test_student_sources_from_executed_notebooks(tmp_path):
    executed = tmp_path / "executed"
    for path in NOTEBOOKS:
        target = executed / "book" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf8"), encoding="utf8")
    written = prepare_student_sources(ROOT, executed, tmp_path / "src")
    assert written and all("{solution" not in p.read_text(encoding="utf8") for p in written)
    config = (tmp_path / "src" / "_config.yml").read_text(encoding="utf8")
    assert "student edition" in config and "execute_notebooks: 'off'" in config
    # the book's stylesheet and scripts come along (html_static_path: [book/_static])
    for static in (ROOT / "book" / "_static").iterdir():
        assert (tmp_path / "src" / "book" / "_static" / static.name).read_bytes() == \
            static.read_bytes()
    (executed / "book" / NOTEBOOKS[0].name).unlink()
    with pytest.raises(FileNotFoundError, match="make book"):
        prepare_student_sources(ROOT, executed, tmp_path / "src2")


def test_a_cell_that_ends_one_solution_and_starts_the_next():
    nb = {"cells": [
        _md("```{exercise} One\nFirst.\n```\n```{solution-start} a\n```\nAnswer one."),
        _md("```{solution-end}\n```\n\n```{exercise} Two\nSecond.\n```\n\n"
            "```{solution-start} b\n```\nAnswer two.\n```{solution-end}\n```\nClosing words."),
    ], "metadata": {}}
    out = _text(strip_solutions_notebook(nb))
    assert "First." in out and "Second." in out and "Closing words." in out
    assert "Answer" not in out and "{solution" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_self_checks_a_solution_runs_are_named_in_the_student_edition(path):
    from minigrad.teaching import selfcheck
    nb = json.loads(path.read_text(encoding="utf8"))
    solutions_start = next((i for i, c in enumerate(nb["cells"])
                            if "## Exercises" in "".join(c["source"])), len(nb["cells"]))
    exercises = {**nb, "cells": nb["cells"][solutions_start:]}
    called = {name for name in selfcheck.__all__ if name.startswith("check_")
              and f"{name}(" in _text(exercises)}
    after = _text(strip_solutions_notebook(exercises))
    for name in called:
        assert f"`{name}(" in after, f"{path.name}: no exercise text names {name}"

"""The front door: the intro's map, reading paths and course plan cover every chapter."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INTRO = (ROOT / "book" / "intro.md").read_text(encoding="utf8")


def _chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files]


def _section(heading: str) -> str:
    """The text under a ``##`` or ``###`` heading, up to the next heading of its level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", INTRO, re.M)
    assert match, f"book/intro.md has no section {heading!r}"
    level = len(match.group(1))
    rest = INTRO[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def _linked(text: str) -> set[str]:
    return set(re.findall(r"\{doc\}`([^`]+)`", text))


SECTIONS = ["Map of the book", "Three ways to read it", "A course plan in twelve sessions"]


@pytest.mark.parametrize("heading", SECTIONS)
def test_the_section_covers_every_chapter_of_the_toc(heading):
    missing = [name for name in _chapters() if name not in _linked(_section(heading))]
    assert not missing, f"the intro's {heading!r} does not mention {missing}"


def test_the_map_gives_each_chapter_its_prerequisites_and_times():
    rows = [line for line in _section("Map of the book").splitlines()
            if re.match(r"\|[^|]*\| \{doc\}", line)]
    assert len(rows) == len(_chapters())
    for row in rows:
        number, *cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells), f"an empty cell in {row!r}"


def test_the_course_plan_has_ten_to_twelve_sessions_and_names_its_self_checks():
    from minigrad.teaching import selfcheck
    plan = _section("A course plan in twelve sessions")
    sessions = [line for line in plan.splitlines() if re.match(r"\| \d+ \|", line)]
    assert 10 <= len(sessions) <= 12
    named = set(re.findall(r"`(check_[a-z_]+)`", plan))
    assert named and named <= set(selfcheck.__all__), named - set(selfcheck.__all__)
    assert "make student" in INTRO and "minigrad.teaching.selfcheck" in INTRO


def test_the_three_reading_paths_are_there():
    paths = _section("Three ways to read it")
    for reader in ("practitioner in a hurry", "student, in order", "instructor"):
        assert reader in paths

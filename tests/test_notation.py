"""One notation across the book: the notation page's symbols are not redefined anywhere."""
from pathlib import Path

import pytest
import yaml

from minigrad.notation import check_file, check_text, read_notation

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "notation.md"
NOTATION = read_notation(PAGE)


def _pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    names = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    paths = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (ROOT / f"{name}{suffix}").exists():
                paths.append(ROOT / f"{name}{suffix}")
    return [p for p in paths if p != PAGE]


PAGES = _pages()


def test_the_page_reserves_each_symbol_for_one_meaning():
    symbols = [s for row in NOTATION.rows for s in row.symbols]
    assert len(symbols) == len(set(symbols)), "a symbol appears in two rows"
    assert {"a", "p", "b", "f", "\\tau", "\\eta", "u", "v", "z", "c"} <= set(symbols)
    assert "\\lambda" in NOTATION.retired
    assert NOTATION.owner("p").definition == "\\sigma(a)"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_chapter_redefines_a_reserved_symbol(path):
    problems = check_file(path, NOTATION)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_every_chapter_links_the_notation_page(path):
    from minigrad.notation import markdown_of
    assert "{doc}`notation`" in markdown_of(path), f"{path.name} does not link notation"


@pytest.mark.parametrize("text, what", [
    ("where the logits $z$ are", "logits"),
    ("with $\\ell$ the logits of", "logits"),
    ("at a learning rate $\\eta$", "learning rate"),
    ("$\\eta$ is the learning rate", "learning rate"),
    ("write $\\theta = \\sigma(a)$ for short", "defines"),
    ("a temperature $\\lambda = 0.5$", "retired"),
])
def test_the_checker_finds_each_kind_of_clash(text, what):
    problems = check_text(text, NOTATION)
    assert problems and what in " ".join(problems), problems


def test_the_checker_accepts_the_notation_itself():
    clean = ("the logits $a$, the firing probability $p = \\sigma(a)$, the encoder "
             "parameters $\\phi$, the temperature $\\tau$ and a learning rate $\\alpha$")
    assert check_text(clean, NOTATION) == []

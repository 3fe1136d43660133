"""The book's notation check: no chapter redefines a symbol that the notation page reserves.

The notation page (``book/notation.md``) holds two tables that this module reads:

- **Symbols**: symbol, meaning, name in the code, *keyword* (the word chapters use for the
  meaning) and, for derived symbols, the definition (``p`` is ``\\sigma(a)``);
- **retired** symbols, which the book does not use at all.

:func:`check_text` finds, in a chapter's Markdown (never its code), three kinds of clash:

1. a reserved symbol put next to *another* symbol's keyword, "the logits $z$" or
   "$\\eta$, the learning rate": the symbol is being given a second meaning;
2. a reserved symbol defined as another symbol's definition, "$\\theta = \\sigma(a)$";
3. a retired symbol anywhere in the maths.

It is a simple checker (word proximity, not understanding), enough to keep one notation
once the chapters have been brought to it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Symbol", "Notation", "read_notation", "markdown_of", "check_text", "check_file"]

_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)


@dataclass(frozen=True)
class Symbol:
    symbols: tuple[str, ...]     # LaTeX, without dollars: ("u", "v"), ("\\sigma",)
    keyword: str
    definition: str              # LaTeX right-hand side, or ""


@dataclass(frozen=True)
class Notation:
    rows: tuple[Symbol, ...]
    retired: tuple[str, ...]

    def owner(self, symbol: str) -> Symbol | None:
        return next((row for row in self.rows if symbol in row.symbols), None)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _symbols(cell: str) -> tuple[str, ...]:
    found = [s.strip().replace("(\\cdot)", "").strip() for s in re.findall(r"\$([^$]+)\$", cell)]
    return tuple(s for s in found if s)


def read_notation(path) -> Notation:
    """The reserved symbols and the retired ones, from the notation page's two tables."""
    text = Path(path).read_text(encoding="utf8")
    rows, retired, header = [], [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        if header[:1] == ["symbol"] and "keyword" in header:
            row = dict(zip(header, cells))
            rows.append(Symbol(_symbols(row["symbol"]), row["keyword"].lower(),
                               " ".join(_symbols(row.get("defined as", "")))))
        elif header[:1] == ["retired"]:
            retired += _symbols(cells[0])
    if not rows:
        raise ValueError(f"{path}: no table of symbols (a header with 'symbol' and 'keyword')")
    return Notation(tuple(rows), tuple(retired))


def markdown_of(path) -> str:
    """A notebook's Markdown cells, or a Markdown file's text."""
    path = Path(path)
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf8"))
        return "\n\n".join("".join(c["source"]) for c in nb["cells"]
                           if c["cell_type"] == "markdown")
    return path.read_text(encoding="utf8")


def _symbol_in_math(symbol: str) -> str:
    """A regex for ``$symbol$``, optionally with a sub- or superscript, as a whole span."""
    tail = r"(?![A-Za-z])" if symbol[-1].isalpha() else ""
    script = r"(?:[_^](?:\{[^}$]*\}|[A-Za-z0-9]))*"
    return r"\$" + re.escape(symbol) + tail + script + r"\$"


def _keyword(keyword: str) -> str:
    """The keyword, singular or plural, its words separated by any whitespace."""
    words = keyword.split()
    words[-1] = words[-1][:-1] if words[-1].endswith("s") else words[-1]
    return r"(?i:\b" + r"\s+".join(map(re.escape, words)) + r"s?\b)"


# Between a keyword and its symbol: spaces and at most one line break (not a new paragraph).
_GAP = r"[ \t]*\n?[ \t]*"


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def check_text(text: str, notation: Notation, where: str = "") -> list[str]:
    """The clashes in ``text`` (Markdown) with the notation; an empty list if none."""
    problems = []
    for row in notation.rows:
        for other in notation.rows:
            if other is row:
                continue
            for symbol in other.symbols:
                sym = _symbol_in_math(symbol)
                own = _keyword(other.keyword)
                patterns = (
                    # "the logits $z$": the keyword right before the symbol
                    _keyword(row.keyword) + _GAP + sym,
                    # "$\eta$ is the learning rate"
                    sym + r"\s+(?:is|are|denotes)\s+(?:the\s+|a\s+|an\s+|its\s+)?"
                    + _keyword(row.keyword),
                    # "$z$, the logits." / "$\ell$ the logits of": an apposition, not a
                    # list ("$\eta$, the temperature and ..." names two things)
                    sym + r"(?:,\s*|\s+)(?:the|a|an|its)\s+" + _keyword(row.keyword)
                    + r"(?=\s*(?:[,.;:)]|of\b|$))",
                )
                for pattern in patterns:
                    for m in re.finditer(pattern, text):
                        # "the encoder parameters $\phi$": the symbol's own keyword is there
                        if re.search(own + _GAP + sym + "$",
                                     text[max(0, m.start() - 40):m.end()]):
                            continue
                        problems.append(
                            f"{where}:{_line_of(text, m.start())}: {m.group(0)!r} gives "
                            f"${symbol}$ the meaning '{row.keyword}', which is "
                            f"${row.symbols[0]}$ on the notation page")
        if row.definition:
            rhs = r"\s*".join(map(re.escape, row.definition.split()))
            for span in _MATH.finditer(text):
                for m in re.finditer(r"(\\?[A-Za-z]+)\s*:?=\s*" + rhs, span.group(0)):
                    if m.group(1) not in row.symbols:
                        problems.append(
                            f"{where}:{_line_of(text, span.start())}: {m.group(0)!r} "
                            f"defines ${m.group(1)}$ as ${row.definition}$, which is "
                            f"${row.symbols[0]}$ on the notation page")
    for symbol in notation.retired:
        pattern = re.escape(symbol) + (r"(?![A-Za-z])" if symbol[-1].isalpha() else "")
        for span in _MATH.finditer(text):
            if re.search(pattern, span.group(0)):
                problems.append(f"{where}:{_line_of(text, span.start())}: ${symbol}$ is "
                                f"retired on the notation page: {span.group(0)[:60]!r}")
    return problems


def check_file(path, notation: Notation) -> list[str]:
    """:func:`check_text` over a chapter's Markdown."""
    return check_text(markdown_of(path), notation, Path(path).name)

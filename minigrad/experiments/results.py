"""The results store: each chapter records its headline numbers in one JSON file per budget,
and the reproduction appendix reads them all back."""
from __future__ import annotations

import json
import os
from pathlib import Path

from minigrad import budget as _budget
from minigrad.fileio import atomic_write, read_json


def repo_root(start: Path | None = None) -> Path:
    """The book's root: the nearest directory at or above ``start`` holding ``_toc.yml``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "_toc.yml").exists():
            return candidate
    return here


def results_dir() -> Path:
    """Where chapters record results: ``$MINIGRAD_RESULTS``, else
    ``_build/results/<budget>`` at the book's root (so a smoke run never overwrites the
    full-budget numbers the reproduction appendix shows)."""
    base = os.environ.get("MINIGRAD_RESULTS")
    if base:
        return Path(base)
    return repo_root() / "_build" / "results" / _budget.budget()


def results_path(chapter: str) -> Path:
    """The results file of one chapter."""
    return results_dir() / f"{chapter}.json"


def record_results(chapter: str, rows: list[dict]) -> Path:
    """Write a chapter's headline results atomically, replacing its previous file.

    Each row holds at least ``experiment``, ``config``, ``seed``, ``metric`` and ``value``;
    the budget the numbers were measured at is stored beside them.
    """
    required = {"experiment", "config", "seed", "metric", "value"}
    for row in rows:
        missing = required - set(row)
        if missing:
            raise ValueError(f"record_results: a row lacks {sorted(missing)}: {row}")
    path = results_path(chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"chapter": chapter, "budget": _budget.budget(), "rows": rows}
    with atomic_write(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)
    return path


def load_results(directory: Path | None = None) -> list[dict]:
    """Every chapter's recorded results (for the reproduction appendix)."""
    directory = directory or results_dir()
    payloads = []
    for path in sorted(Path(directory).glob("*.json")):
        payloads.append(read_json(path, "results file", "run its chapter again to "
                                  "write it anew"))
    return payloads


"""How big the book's experiments are: ``MINIGRAD_BUDGET=full`` (default) or ``smoke``.

``full`` runs every experiment at the scale of the seeds, so the book shows real
reproductions. ``smoke`` runs the same code paths, small enough that every chapter executes
in about a minute (the test suite uses it).
"""
from __future__ import annotations

import os

BUDGETS = ("full", "smoke")


def budget() -> str:
    """The active budget, read from ``$MINIGRAD_BUDGET`` (default ``full``)."""
    value = os.environ.get("MINIGRAD_BUDGET", "full").strip().lower() or "full"
    if value not in BUDGETS:
        raise ValueError(
            f"MINIGRAD_BUDGET={os.environ.get('MINIGRAD_BUDGET')!r} is not a budget; valid "
            f"values are {', '.join(BUDGETS)} (unset means full)"
        )
    return value


def is_full() -> bool:
    return budget() == "full"


def pick(full, smoke):
    """``full`` under the full budget, ``smoke`` under the smoke budget."""
    return full if is_full() else smoke

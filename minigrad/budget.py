"""How big the book's experiments are: ``MINIGRAD_BUDGET=full`` (default) or ``smoke``.

A third budget, ``paper``, is known to the command line only (``python -m minigrad.run``):
the SBN papers' 2,000,000 steps per run. The book refuses to build at it: :data:`BUDGETS`
are the budgets the book builds at, :data:`CLI_BUDGETS` the ones the command line knows.

``full`` is what fits in one hour of building the whole book on two cores. It runs the
binary, n-ary and one-hot neuron experiments of seeds 000 and 001 at the seeds' own scale
(20 epochs of 1,000 steps, three seeds). It runs the others shorter than their published
runs: evolution strategies (seed 003) for 20 of the assignment's 50 epochs (8,600 of 21,500
steps), the sigmoid belief networks for 30,000 steps (score-function estimators), 2,084
(REBAR, dynamic REBAR, RELAX) or 20,000 (ARM, DisARM) against the papers' 2,000,000. Longer
runs are *recorded*: made with ``python -m minigrad.run``, kept in ``book/recorded/`` with
their command and commit, and drawn by the chapters (evolution strategies for 50 epochs;
REBAR's Table 1 cells for 100,032 steps; REBAR on the nonlinear model for 500,240). Every
published number is compared with ours only at the same step or epoch. ``smoke`` runs the
same code paths, small enough that every chapter executes in about a minute (the test suite
uses it); its numbers are not reproductions.

The book's execution cache is keyed on the notebooks' code only, so ``make book`` keeps one
cache per budget: it runs this file as a script, first to check the budget (before anything
is installed, so only the standard library is used at the top), then to write the book's
configuration with the budget's own cache folder (:func:`write_book_config`).
"""
from __future__ import annotations

import os
import sys

#: Budgets the book builds at.
BUDGETS = ("full", "smoke")
#: Budgets the command line knows: the book's and the papers' own scale.
CLI_BUDGETS = ("full", "smoke", "paper")
#: The execution cache of one budget, relative to the book's root.
BOOK_CACHE = "_build/.jupyter_cache-{budget}"


def check(value: str | None, known: tuple[str, ...] = BUDGETS) -> str:
    """The budget named by ``value`` (case and spaces ignored; empty or None means full).

    ``known`` is the set it must belong to: :data:`BUDGETS` for the book (the default),
    :data:`CLI_BUDGETS` for the command line.
    """
    name = (value or "").strip().lower() or "full"
    if name not in known:
        extra = ""
        if name in CLI_BUDGETS:
            extra = (f"; {name!r} is for the command line only (python -m minigrad.run "
                     f"--budget {name}), the book does not build at it")
        raise ValueError(
            f"MINIGRAD_BUDGET={value!r} is not a budget; valid values are "
            f"{', '.join(known)} (unset means full){extra}"
        )
    return name


def budget() -> str:
    """The active budget, read from ``$MINIGRAD_BUDGET`` (default ``full``)."""
    return check(os.environ.get("MINIGRAD_BUDGET"))


def is_full() -> bool:
    return budget() == "full"


def pick(full, smoke):
    """``full`` under the full budget, ``smoke`` under the smoke budget."""
    return full if is_full() else smoke


SMOKE_BANNER = (
    "This page was executed at the smoke budget (MINIGRAD_BUDGET=smoke): every experiment "
    "ran for a few steps only, so its numbers and figures are not reproductions, and the "
    "text around them may not describe them. make book builds the full budget."
)


def banner():
    """A note at the top of a chapter when it runs at the smoke budget; nothing at full.

    Chapters call it in their first code cell, so that a smoke build says on every page
    that its numbers are not the reproductions the text discusses.
    """
    if is_full():
        return None
    from IPython.display import HTML

    return HTML('<div class="admonition warning smoke-banner"><p class="admonition-title">'
                f"Smoke build: not a reproduction</p><p>{SMOKE_BANNER}</p></div>")


def show_banner() -> None:
    """Display :func:`banner` in the middle of a cell; at the full budget show nothing
    (``display(banner())`` would print ``None`` there)."""
    note = banner()
    if note is not None:
        from IPython.display import display

        display(note)


def write_book_config(value: str | None, source: str, dest: str) -> str:
    """Copy the book's configuration ``source`` to ``dest`` with the budget's own cache.

    Returns the cache folder. Only ``execute.cache`` changes, so that a build at one budget
    never reuses notebooks executed at another.
    """
    import yaml  # installed with jupyter-book; imported here so that ``check`` needs nothing

    name = check(value)
    with open(source, encoding="utf8") as f:
        config = yaml.safe_load(f)
    cache = BOOK_CACHE.format(budget=name)
    config.setdefault("execute", {})["cache"] = cache
    folder = os.path.dirname(dest)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(dest, "w", encoding="utf8") as f:
        f.write(f"# Written by `make book` from {source} for MINIGRAD_BUDGET={name}.\n")
        yaml.safe_dump(config, f, sort_keys=False)
    return cache


def main(argv: list[str]) -> int:
    """``check BUDGET`` or ``book-config BUDGET SOURCE DEST``; errors go to stderr."""
    usage = "usage: budget.py check BUDGET | budget.py book-config BUDGET SOURCE DEST"
    try:
        if len(argv) == 2 and argv[0] == "check":
            check(argv[1])
        elif len(argv) == 4 and argv[0] == "book-config":
            write_book_config(argv[1], argv[2], argv[3])
        else:
            print(usage, file=sys.stderr)
            return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

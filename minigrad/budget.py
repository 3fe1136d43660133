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
REBAR's Table 1 cells for 100,032 steps; its nonlinear cells for 500,240). Every
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


def check(value: str | None, known: tuple[str, ...] = BUDGETS, default: str = "full") -> str:
    """The budget named by ``value`` (case and spaces ignored; empty or None means
    ``default``: full for the book, paper for the command line).

    ``known`` is the set it must belong to: :data:`BUDGETS` for the book (the default),
    :data:`CLI_BUDGETS` for the command line.
    """
    name = (value or "").strip().lower() or default
    if name not in known:
        extra = ""
        if name in CLI_BUDGETS:
            extra = (f"; {name!r} is for the command line only (python -m minigrad.run "
                     f"--budget {name}), the book does not build at it")
        raise ValueError(
            f"MINIGRAD_BUDGET={value!r} is not a budget; valid values are "
            f"{', '.join(known)} (unset means {default}){extra}"
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


#: What chapters read besides their code, relative to the book's root: ``{runs}`` is the
#: folder of command-line runs (``$MINIGRAD_RUNS``, else ``runs``), ``{results}`` the
#: chapters' results of the budget (``$MINIGRAD_RESULTS``, else ``_build/results/<budget>``).
#: The execution cache keys on code only, so :func:`drop_stale_executions` throws away a
#: cached execution that is older than any of these.
CACHE_INPUTS = {
    "07_rebar_relax.ipynb": ("book/recorded",),
    "99_reproduction.ipynb": ("book/recorded", "{runs}", "{results}"),
}
#: Exit status of ``budget.py refresh-cache`` when it dropped an execution (build again).
DROPPED = 3


def _newest_change(path: str) -> float | None:
    """The latest modification time of ``path`` and everything under it (a folder's own
    time changes when an entry is added, removed or renamed), or None when it is absent."""
    if not os.path.exists(path):
        return None
    newest = os.path.getmtime(path)
    for folder, subfolders, files in os.walk(path):
        for name in subfolders + files:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
            except OSError:   # removed while we looked
                pass
    return newest


def drop_stale_executions(value: str | None, root: str = ".") -> list[str]:
    """Remove from the budget's execution cache every notebook executed before one of its
    :data:`CACHE_INPUTS` last changed; returns the names of the notebooks dropped."""
    import datetime

    name = check(value)
    cache_path = os.path.join(root, BOOK_CACHE.format(budget=name))
    if not os.path.isdir(cache_path):
        return []
    from jupyter_cache import get_cache

    places = {
        "runs": os.environ.get("MINIGRAD_RUNS") or os.path.join(root, "runs"),
        "results": os.environ.get("MINIGRAD_RESULTS")
        or os.path.join(root, "_build", "results", name),
    }
    cache = get_cache(cache_path)
    dropped = []
    for record in cache.list_cache_records():
        notebook = os.path.basename(record.uri)
        inputs = [os.path.join(root, p.format(**places)) for p in CACHE_INPUTS.get(notebook, ())]
        changes = [t for t in map(_newest_change, inputs) if t is not None]
        executed = record.created.replace(tzinfo=datetime.timezone.utc).timestamp()
        if changes and max(changes) >= executed:
            cache.remove_cache(record.pk)
            dropped.append(notebook)
    return dropped


def main(argv: list[str]) -> int:
    """``check BUDGET``, ``book-config BUDGET SOURCE DEST`` or ``refresh-cache BUDGET``;
    errors go to stderr."""
    usage = ("usage: budget.py check BUDGET | budget.py book-config BUDGET SOURCE DEST | "
             "budget.py refresh-cache BUDGET")
    try:
        if len(argv) == 2 and argv[0] == "check":
            check(argv[1])
        elif len(argv) == 4 and argv[0] == "book-config":
            write_book_config(argv[1], argv[2], argv[3])
        elif len(argv) == 2 and argv[0] == "refresh-cache":
            dropped = drop_stale_executions(argv[1])
            for notebook in dropped:
                print(f"{notebook}: its inputs changed since it was executed; it runs again")
            return DROPPED if dropped else 0
        else:
            print(usage, file=sys.stderr)
            return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

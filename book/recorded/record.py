"""Copy the history of a command-line run into ``book/recorded/`` for the chapters to draw.

    python book/recorded/record.py RUN_FOLDER NAME.json --command "python -m minigrad.run ..."
        --commit COMMIT

writes ``book/recorded/NAME.json``:
``{"command", "run", "commit", "complete", "history", "results"}``, where ``run`` is the
run's folder name (a sweep writes one sub-folder per run), ``history`` is the run's
``history.json`` (or, for a run still going, the history saved in its last checkpoint),
``complete`` says which, and ``results`` holds the rows of ``results.json`` once the run is
finished (else null). ``commit`` is the commit the run's code was checked out at, so that the
run can be continued (``--resume``) or made again with the same code. Checkpoints stay out of
git; the file is written atomically.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from minigrad.experiments.runs import read_history
from minigrad.fileio import atomic_write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the run's output folder")
    p.add_argument("name", help="file name under book/recorded/ (may contain a sub-folder)")
    p.add_argument("--command", required=True, help="the command that made the run")
    p.add_argument("--commit", required=True, help="the commit the run's code was at")
    args = p.parse_args()
    history, complete = read_history(args.run)
    results = None
    if complete and (args.run / "results.json").exists():
        with open(args.run / "results.json") as f:
            results = json.load(f)["rows"]
    out = Path(__file__).parent / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": args.command, "run": args.run.name, "commit": args.commit, "complete": complete,
               "history": history, "results": results}
    with atomic_write(out, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"{out.name}: {'complete' if complete else 'incomplete'}")


if __name__ == "__main__":
    main()

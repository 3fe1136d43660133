"""The student edition: the same book with every solution taken out.

``make student`` (``python -m minigrad.teaching.edition``) builds it from a book that
``make book`` has already executed: it copies the executed chapters, removes each solution (the
``{solution-start}`` ... ``{solution-end}`` cells of a notebook, and ``{solution}`` blocks in
Markdown), and builds the result without executing anything again, so the student edition
shows exactly the numbers and figures of the teacher's book. Each page's download button
offers the chapter's notebook, without its solutions.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from minigrad.experiments.results import toc_files

__all__ = ["strip_solutions_text", "strip_solutions_notebook", "prepare_student_sources",
           "build_student_edition"]

_START = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-start\}", re.M)
_END = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-end\}[^\n]*\n(?P=fence)[ \t]*$\n?", re.M)
_BLOCK = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}")


def strip_solutions_text(text: str) -> str:
    """Markdown without its ``{solution}`` blocks (a block ends at its own fence)."""
    out, lines, i = [], text.splitlines(keepends=True), 0
    while i < len(lines):
        m = _BLOCK.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        fence = m.group("fence")
        i += 1
        while i < len(lines) and lines[i].rstrip() != fence:
            i += 1
        i += 1  # the closing fence
    return "".join(out)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def strip_solutions_notebook(nb: dict) -> dict:
    """A copy of the notebook without solutions.

    A solution starts at a ``{solution-start}`` fence inside a Markdown cell (the text before
    it, usually the exercise, stays) and ends with the cell holding its ``{solution-end}``
    fence (the text after that fence stays); every cell in between, code and outputs included,
    goes. Single ``{solution}`` blocks are removed from Markdown cells.
    """
    nb = json.loads(json.dumps(nb))  # deep copy
    cells, inside = [], False
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            if not inside:
                cells.append(cell)
            continue
        kept, text = [], _source(cell)
        while text:
            if inside:
                end = _END.search(text)
                if end is None:
                    break
                inside, text = False, text[end.end():].lstrip("\n")
            else:
                start = _START.search(text)
                if start is None:
                    kept.append(text)
                    break
                kept.append(text[:start.start()])
                inside, text = True, text[start.end():]
        source = strip_solutions_text("".join(kept))
        if source.strip():
            cells.append({**cell, "source": source.rstrip() + "\n"})
    if inside:
        raise ValueError("a {solution-start} has no matching {solution-end}")
    nb["cells"] = cells
    return nb


def prepare_student_sources(root: Path, executed: Path, dest: Path) -> list[Path]:
    """Write the student edition's sources into ``dest``; returns the chapter files written.

    ``executed`` is the folder of executed notebooks of a teacher's build
    (``_build/jupyter_execute``); a chapter missing there is a clear error.
    """
    root, executed, dest = Path(root), Path(executed), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf8"))
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config.setdefault("html", {})["use_download_button"] = True
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")
    shutil.copy2(root / "_toc.yml", dest / "_toc.yml")
    for bib in config.get("bibtex_bibfiles", []):
        (dest / bib).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / bib, dest / bib)
    # the book's own static files (its stylesheet and scripts), at the same place
    for static in config.get("sphinx", {}).get("config", {}).get("html_static_path", []):
        if not (root / static).is_dir():
            raise FileNotFoundError(f"html_static_path entry {static!r} of _config.yml is "
                                    f"not a folder under {root}")
        shutil.copytree(root / static, dest / static)
    written = []
    for name in toc_files(root):
        target_dir = (dest / name).parent
        target_dir.mkdir(parents=True, exist_ok=True)
        if (root / f"{name}.md").exists():
            text = (root / f"{name}.md").read_text(encoding="utf8")
            target = dest / f"{name}.md"
            target.write_text(strip_solutions_text(text), encoding="utf8")
        else:
            source = executed / f"{name}.ipynb"
            if not source.exists():
                raise FileNotFoundError(
                    f"no executed notebook {source}: build the book first (make book), "
                    "then make student"
                )
            nb = strip_solutions_notebook(json.loads(source.read_text(encoding="utf8")))
            target = dest / f"{name}.ipynb"
            target.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf8")
        written.append(target)
    return written


def build_student_edition(root: Path, build: Path, out: Path, extra_args=()) -> Path:
    """Prepare the sources from ``build`` (a teacher's ``_build``) and build them into
    ``out``; returns the HTML folder."""
    src = Path(out) / "src"
    prepare_student_sources(root, Path(build) / "jupyter_execute", src)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    command += ["build", str(src), "--path-output", str(out), *extra_args]
    subprocess.run(command, check=True)
    return Path(out) / "_build" / "html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minigrad.teaching.edition",
        description="Build the student edition (no solutions) from an executed book.")
    parser.add_argument("--root", default=".", help="the book's root (holding _toc.yml)")
    parser.add_argument("--build", default="_build",
                        help="the teacher's build folder, made by `make book` (default _build)")
    parser.add_argument("--out", default="_build/student",
                        help="where to write the student edition (default _build/student)")
    args = parser.parse_args(argv)
    html = build_student_edition(Path(args.root), Path(args.build), Path(args.out))
    print(f"student edition: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

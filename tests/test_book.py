"""End-to-end tests of the Jupyter Book.

The whole book is built once per test session, from scratch, at the smoke budget,
with every Sphinx warning treated as an error. The built pages are then opened in a
headless Chromium (offline: every host name resolves to nothing) and checked the way
a reader would see them: the page loads, the maths is typeset by the MathJax shipped
with the site, figures are there, exercises and solution dropdowns work, and nothing
is loaded from another host.

The Chromium checks are skipped when no Chromium is installed, except under CI
(the environment variable CI is set), where they must run.

To check a book built already (the full-budget build of ``make book``, say) instead of
building one, point ``MINIGRAD_BOOK_HTML`` at its HTML folder and give its budget in
``MINIGRAD_BOOK_BUDGET`` (``full`` by default): the page checks then expect the smoke
banner only on a smoke build, and must not find it on a full one.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"
SOURCE_SUFFIXES = (".ipynb", ".md")

BUILD_TIMEOUT = 45 * 60  # seconds; the smoke build takes a few minutes
CHROMIUM_TIMEOUT = 120  # seconds per page
CHROMIUM_NAMES = ("chromium", "chromium-browser")


# ----------------------------------------------------------------------------------
# Table of contents and sources
# ----------------------------------------------------------------------------------


def toc_docnames(toc_path: Path = TOC) -> list[str]:
    """Every document of the table of contents (root first), in order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    names: list[str] = [toc["root"]]

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for key in ("parts", "chapters", "sections", "subtrees", "entries"):
                if key in node:
                    walk(node[key])

    walk({k: v for k, v in toc.items() if k != "root"})
    # Strip a file extension if someone wrote one in the toc.
    cleaned = []
    for name in names:
        for suffix in SOURCE_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        cleaned.append(name)
    return cleaned


def source_path(docname: str) -> Path:
    for suffix in SOURCE_SUFFIXES:
        path = ROOT / f"{docname}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no source file for toc entry {docname!r}")


def notebook_cells(path: Path, cell_type: str) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf8"))
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == cell_type:
            src = cell.get("source", "")
            out.append("".join(src) if isinstance(src, list) else src)
    return out


def markup_text(path: Path) -> str:
    """The text a reader sees typeset: markdown cells of a notebook, or the .md file."""
    if path.suffix == ".ipynb":
        return "\n\n".join(notebook_cells(path, "markdown"))
    return path.read_text(encoding="utf8")


MATH_SOURCE_RE = re.compile(
    r"\$\$|(?<![\\$])\$[^$\s][^$\n]*\$|\\begin\{|\{math\}|```\s*\{math\}|\\\(|\\\["
)
FIGURE_CODE_RE = re.compile(r"\bplt\.|plot_")


def source_has_math(path: Path) -> bool:
    text = markup_text(path)
    # Code spans and fenced code blocks do not count.
    text = re.sub(r"```(?!\s*\{math\}).*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return bool(MATH_SOURCE_RE.search(text))


def notebook_makes_figures(path: Path) -> bool:
    if path.suffix != ".ipynb":
        return False
    return any(FIGURE_CODE_RE.search(src) for src in notebook_cells(path, "code"))


DOCNAMES = toc_docnames()

APPENDIX = "book/99_reproduction"
NUMBERED_RE = re.compile(r"^book/\d\d_[a-z0-9_]+$")


def test_chapters_execute_in_reading_order_and_before_the_appendix():
    """Jupyter Book executes pages in alphabetical order of their paths, not toc order.

    The appendix reads the results the chapters record, so it must sort after every
    chapter; every notebook in book/ must be in the toc under a numbered name, so that
    alphabetical order is the reading order.
    """
    # Markdown pages (the notation page) are not executed, so only notebooks count.
    chapters = [name for name in DOCNAMES if name != toc_docnames()[0]
                and (ROOT / f"{name}.ipynb").exists()]
    assert chapters[-1] == APPENDIX, f"the toc must end with the appendix, got {chapters}"
    unnumbered = [name for name in chapters if not NUMBERED_RE.match(name)]
    assert not unnumbered, f"chapter files must be named NN_name, got {unnumbered}"
    assert chapters == sorted(chapters), (
        f"the toc order {chapters} is not the execution (alphabetical) order {sorted(chapters)}"
    )
    notebooks = sorted(f"book/{path.stem}" for path in (ROOT / "book").glob("*.ipynb"))
    missing = sorted(set(notebooks) - set(chapters))
    assert not missing, f"notebooks in book/ that are not in _toc.yml: {missing}"


# ----------------------------------------------------------------------------------
# The build
# ----------------------------------------------------------------------------------


ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROBLEM_RE = re.compile(r"WARNING|ERROR|Error:|Exception|Traceback")


def jupyter_book_command() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


BUILT_HTML = os.environ.get("MINIGRAD_BOOK_HTML", "").strip()
BUILT_BUDGET = (os.environ.get("MINIGRAD_BOOK_BUDGET", "").strip() or "full") if BUILT_HTML \
    else "smoke"


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Build the book from scratch (fresh output directory and execution cache) at
    the smoke budget, with warnings as errors. Returns the HTML directory (or the one
    ``MINIGRAD_BOOK_HTML`` names, built already)."""
    if BUILT_HTML:
        html_dir = Path(BUILT_HTML).resolve()
        assert (html_dir / "index.html").exists() or any(html_dir.glob("*.html")), \
            f"MINIGRAD_BOOK_HTML={BUILT_HTML}: no built pages there"
        return html_dir
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ)
    env["MINIGRAD_BUDGET"] = "smoke"
    # Notebooks run with book/ as working directory: make minigrad importable
    # whether or not it is installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    # Figures reach the page through the kernel's inline backend: a non-interactive
    # MPLBACKEND inherited from the caller (e.g. Agg) would silently drop them.
    env.pop("MPLBACKEND", None)
    cmd = jupyter_book_command() + [
        "build",
        "-W",
        "-n",
        "--keep-going",
        str(ROOT),
        "--path-output",
        str(out),
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or "")[-8000:] if isinstance(exc.stdout, str) else ""
        pytest.fail(f"jupyter-book build timed out after {BUILD_TIMEOUT} s\n{tail}")
    log = ANSI_RE.sub("", proc.stdout)
    (out / "build.log").write_text(log, encoding="utf8")
    if proc.returncode != 0:
        lines = log.splitlines()
        problems = [
            line
            for line in lines
            if PROBLEM_RE.search(line) and "Kernel is running over TCP" not in line
        ]
        tail = "\n".join(lines[-150:])
        pytest.fail(
            f"jupyter-book build failed with return code {proc.returncode}\n"
            f"command: {' '.join(cmd)}\n"
            "--- warnings and errors ---\n" + "\n".join(problems[:50]) + "\n"
            f"--- last lines of output (full log: {out / 'build.log'}) ---\n{tail}"
        )
    html_dir = out / "_build" / "html"
    assert html_dir.is_dir(), f"no HTML output in {html_dir}"
    return html_dir


def test_book_builds_without_warnings(built_book: Path):
    assert (built_book / "index.html").exists()
    missing = [d for d in DOCNAMES if not (built_book / f"{d}.html").exists()]
    assert not missing, f"pages of the table of contents not built: {missing}"
    # Offline MathJax is part of the site.
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").exists()


def test_student_edition_has_no_solutions(built_book: Path, tmp_path: Path):
    """`make student`: the executed chapters without solutions, built without executing."""
    from minigrad.teaching.edition import build_student_edition

    env_build = built_book.parent  # <out>/_build, holding html/ and jupyter_execute/
    html_dir = build_student_edition(ROOT, env_build, tmp_path / "student")
    pages = {d: (html_dir / f"{d}.html") for d in DOCNAMES}
    missing = [d for d, page in pages.items() if not page.exists()]
    assert not missing, f"student edition lacks pages: {missing}"
    teacher_solutions = 0
    for docname, page in pages.items():
        text = page.read_text(encoding="utf8")
        assert 'class="solution' not in text, f"{docname}: a solution block"
        teacher_solutions += (built_book / f"{docname}.html").read_text(
            encoding="utf8").count('class="solution')
        if source_path(docname).suffix == ".ipynb":
            exercises = (built_book / f"{docname}.html").read_text(encoding="utf8").count(
                'class="exercise')
            assert text.count('class="exercise') == exercises, f"{docname}: exercises lost"
    assert teacher_solutions > 0, "the teacher's book has no solution blocks to remove"
    # the book's own static files, linked from every page as in the teacher's book
    for name in ("book.css", "layout-check.js"):
        assert (html_dir / "_static" / name).read_bytes() == \
            (ROOT / "book" / "_static" / name).read_bytes()
    for docname, page in pages.items():
        text = page.read_text(encoding="utf8")
        assert 'href="_static/book.css' in text.replace("../", ""), f"{docname}: no book.css"
        assert 'src="_static/layout-check.js' in text.replace("../", ""), docname


# ----------------------------------------------------------------------------------
# Chromium
# ----------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("Chromium not installed, and CI must run the browser checks")
        pytest.skip("Chromium not installed: apt-get install chromium")
    return exe


def dump_dom(chromium: str, page: Path) -> str:
    """The DOM of `page` after its scripts (MathJax included) have run."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            # Offline: any request to another host fails, so the page must be
            # self-contained to render.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            # The width of a laptop screen; "?layoutcheck" makes the book's layout hook
            # (book/_static/layout-check.js) list every block that scrolls sideways.
            "--window-size=1280,900",
            "--dump-dom",
            page.as_uri() + "?layoutcheck",
        ]
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=CHROMIUM_TIMEOUT,
        )
    assert proc.returncode == 0, f"chromium failed on {page}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def visible_text(dom: str) -> str:
    """Text of the page as shown: no scripts, styles, typeset maths or code."""
    text = dom
    for tag in ("script", "style", "mjx-container", "pre", "code", "textarea"):
        text = re.sub(rf"<{tag}\b.*?</{tag}>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    return html_lib.unescape(text)


def is_external(url: str) -> bool:
    return bool(re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url.strip(), re.I))


def attr_values(markup: str, tag: str, attr: str) -> list[str]:
    values = []
    for m in re.finditer(rf"<{tag}\b[^>]*>", markup, re.I):
        a = re.search(rf"\b{attr}\s*=\s*(\"[^\"]*\"|'[^']*')", m.group(0), re.I)
        if a:
            values.append(html_lib.unescape(a.group(1)[1:-1]))
    return values


def stylesheet_hrefs(markup: str) -> list[str]:
    hrefs = []
    for m in re.finditer(r"<link\b[^>]*>", markup, re.I):
        tag = m.group(0)
        rel = re.search(r"\brel\s*=\s*[\"']([^\"']*)[\"']", tag, re.I)
        href = re.search(r"\bhref\s*=\s*[\"']([^\"']*)[\"']", tag, re.I)
        if rel and href and re.search(
            r"stylesheet|preload|modulepreload|icon|prefetch", rel.group(1), re.I
        ):
            hrefs.append(html_lib.unescape(href.group(1)))
    return hrefs


# What tqdm prints: "37%|###   | 37/100 [00:01<00:02, 30.1it/s]".
TQDM_RE = re.compile(r"\d+%\|[^\n|]*\|\s*\d+/\d+|\d+/\d+ \[\d+:\d+<|\d+(?:\.\d+)?(?:it|s)/(?:s|it)\]")
# A Python object's default repr: "<function <lambda> at 0x7f3a...>".
ADDRESS_RE = re.compile(r"\bat 0x[0-9a-fA-F]{6,}|\b0x7f[0-9a-fA-F]{6,}")

# A cell output that is only "None", as Sphinx writes it.
STRAY_NONE_RE = re.compile(r"<pre><span></span>None\s*</pre>")

# Sphinx writes maths as <span|div class="math notranslate nohighlight">\(...\)</...>.
STATIC_MATH_RE = re.compile(
    r"<(?:span|div)\b[^>]*class=\"(?:[^\"]*\s)?math(?:\s[^\"]*)?\"", re.I
)


# Build mechanics and numbers a reader cannot use (issue: "pages a reader trusts").
# A machine path in a cell's output: a path under a system folder, or a pathlib repr.
ABSOLUTE_PATH_RE = re.compile(
    r"(?<![\w.~-])/(?:work|home|root|tmp|Users|opt|srv|mnt|var|usr|private)/[^\s'\"<>)]+"
    r"|\b(?:Posix|Windows)Path\(|\b[A-Za-z]:\\[\w.-]"
)
# The budget the page was built at, printed as a line ("budget: full").
BUDGET_LINE_RE = re.compile(r"\bbudget:\s*(?:full|smoke|paper)\b", re.I)
# A spread that says nothing: one run's "± 0.0000", or "± nan".
EMPTY_SPREAD_RE = re.compile(r"±\s*(?:0\.0{3,}(?![0-9])|nan\b)", re.I)
# A table cell that is only a NaN or an infinity, with no word on what it means.
BARE_NAN_CELL_RE = re.compile(r"^[-+]?(?:nan|inf|infinity)$", re.I)


def cell_outputs(static: str) -> list[str]:
    """The text of every code cell's output on a built page (inputs left out)."""
    outputs = []
    for cell in re.split(r'<div class="cell(?: [^"]*)? docutils container"', static)[1:]:
        start = cell.find('class="cell_output')
        if start < 0:
            continue
        text = re.sub(r"<[^>]+>", " ", cell[start:])
        outputs.append(html_lib.unescape(text))
    return outputs


def build_mechanics_problems(static: str, page_text: str) -> list[str]:
    """Machine paths and budget lines in outputs, empty spreads and bare NaN cells."""
    problems = []
    roots = {str(ROOT)}
    if BUILT_HTML:
        roots.add(str(Path(BUILT_HTML).resolve().parents[1]))
    for text in cell_outputs(static):
        found = ABSOLUTE_PATH_RE.search(text)
        if found:
            problems.append(f"a machine path in an output: {found.group(0)!r}")
        for root in roots:
            if root in text:
                problems.append(f"the build's own path in an output: {root!r}")
    found = BUDGET_LINE_RE.search(page_text)
    if found:
        problems.append(f"a budget line on the page: {found.group(0)!r} (the smoke banner "
                        "says so on a smoke build; nothing is printed at the full budget)")
    found = EMPTY_SPREAD_RE.search(page_text)
    if found:
        i = found.start()
        problems.append(f"a spread that says nothing (one run? write '—'): "
                        f"{page_text[max(0, i - 40):i + 20]!r}")
    for cell in re.findall(r"<td\b[^>]*>(.*?)</td>", static, re.S | re.I):
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        if BARE_NAN_CELL_RE.match(text):
            problems.append(f"a table cell that reads {text!r} with no word on what it means")
    return problems


def layout_report(dom: str, what: str) -> list:
    """What book/_static/layout-check.js measured on the page (``figures``, ``equations``)."""
    found = re.search(rf'data-layout-{what}="([^"]*)"', dom)
    return json.loads(html_lib.unescape(found.group(1))) if found else []


# A figure may be shown smaller than it was drawn, but not below this share of its width.
MIN_SHOWN_SHARE = 0.6


def figure_problems(figures: list[dict]) -> list[str]:
    """Figures without a number, a caption or alt text, and figures shrunk below
    MIN_SHOWN_SHARE of their width at 1280 px (minigrad.plot draws them for the column)."""
    problems = []
    for fig in figures:
        name = Path(urlsplit(fig["src"]).path).name if not fig["src"].startswith("data:") \
            else "an inline image"
        if not fig["number"] or not fig["caption"]:
            problems.append(f"a figure without a number and a caption ({name}): show it "
                            "with minigrad.plot.show and a {glue:figure} cell")
        alt = fig["alt"].strip()
        if not alt or re.fullmatch(r"[\w.-]+\.(?:png|svg|jpe?g)", alt):
            problems.append(f"a figure whose alt text does not describe it ({name}): {alt!r}")
        if fig["natural"] and fig["shown"] < MIN_SHOWN_SHARE * fig["natural"]:
            problems.append(f"a figure shown at {fig['shown'] / fig['natural']:.0%} of its "
                            f"width at 1280 px ({name}, {fig['natural']} px drawn): draw it "
                            "at minigrad.plot.FIGURE_WIDTH")
    return problems


def test_figure_problems_are_found():
    """The figure rules catch what they are meant to catch (and pass a good figure)."""
    good = {"src": "_images/a.png", "alt": "Variance against temperature, three lines",
            "natural": 700, "shown": 700, "caption": "The variance.", "number": "Fig. 7.1"}
    assert figure_problems([good]) == []
    assert len(figure_problems([dict(good, caption="", number="")])) == 1
    assert len(figure_problems([dict(good, alt="a.png")])) == 1
    assert len(figure_problems([dict(good, natural=1500, shown=700)])) == 1


def chapter_titles() -> list[str]:
    """The first heading of every chapter notebook, in reading order."""
    titles = []
    for docname in DOCNAMES:
        path = source_path(docname)
        if path.suffix != ".ipynb":
            continue
        for src in notebook_cells(path, "markdown"):
            heading = next((line for line in src.splitlines() if line.startswith("# ")), None)
            if heading:
                titles.append(heading[2:].strip())
                break
    return titles


def test_appendix_sections_are_chapter_titles_in_reading_order(built_book: Path):
    """The appendix's results sections are headed by the chapters' titles, in the order a
    reader meets the chapters, not by the keys of the results files."""
    static = (built_book / f"{APPENDIX}.html").read_text(encoding="utf8")
    headings = [html_lib.unescape(re.sub(r"<[^>]+>", "", h)).replace("#", "").strip()
                for h in re.findall(r"<h2\b[^>]*>(.*?)</h2>", static, re.S | re.I)]
    titles = chapter_titles()
    keys = [h for h in headings
            if re.search(r"^Chapter\b|\b\d\d_[a-z0-9_]+\b|^[a-z0-9]+(?:_[a-z0-9]+)+\b", h)]
    assert not keys, f"appendix headings that are file keys, not chapter titles: {keys}"
    shown = [t for h in headings for t in titles if h == t or h.startswith(t + " (")]
    assert shown, f"no appendix heading is a chapter title; headings: {headings}"
    assert shown == sorted(shown, key=titles.index), \
        f"appendix sections out of reading order: {shown}"


@pytest.mark.parametrize("docname", DOCNAMES)
def test_html_in_chromium(built_book: Path, chromium: str, docname: str):
    page = built_book / f"{docname}.html"
    assert page.exists(), f"{docname}: page not built"
    static = page.read_text(encoding="utf8")
    src = source_path(docname)
    dom = dump_dom(chromium, page)
    problems: list[str] = []

    # The page loaded.
    title = re.search(r"<title>(.*?)</title>", dom, re.S | re.I)
    if not title or not title.group(1).strip():
        problems.append("no <title>: the page did not load")
    if "<article" not in dom or "<h1" not in dom:
        problems.append("no article/heading in the page")

    # Maths typeset by MathJax.
    n_static_math = len(STATIC_MATH_RE.findall(static))
    n_mjx = len(re.findall(r"<mjx-container\b", dom))
    if source_has_math(src) and n_static_math == 0:
        problems.append("the source has maths but the page has no math elements")
    if n_mjx < n_static_math:
        problems.append(
            f"MathJax typeset {n_mjx} of {n_static_math} math elements"
            " (is MathJax loading from _static/mathjax?)"
        )
    if "<mjx-merror" in dom:
        problems.append("MathJax reported a TeX error (mjx-merror) on the page")
    shown = visible_text(dom)
    for raw in ("\\(", "\\[", "$$"):
        if raw in shown:
            i = shown.index(raw)
            problems.append(f"raw {raw!r} in the visible text: {shown[max(0, i-60):i+60]!r}")

    # Figures: every image exists in the build; notebooks that plot show images.
    imgs = attr_values(dom, "img", "src")
    for url in imgs:
        if url.startswith("data:"):
            continue
        if is_external(url):
            problems.append(f"image from another host: {url}")
            continue
        target = (page.parent / unquote(urlsplit(url).path)).resolve()
        if not target.exists():
            problems.append(f"image missing from the build: {url}")
    if notebook_makes_figures(src) and not re.search(r"<img\b", static, re.I):
        problems.append("the notebook plots, but the page has no <img>")

    # Exercises and solution dropdowns (sphinx-exercise + sphinx-togglebutton).
    markup = markup_text(src)
    if re.search(r"\{exercise(?:-start)?\}", markup) and not re.search(
        r"class=\"[^\"]*\bexercise\b", dom
    ):
        problems.append("the source has exercises but none is rendered")
    n_dropdowns = len(
        re.findall(r"<div class=\"(?=[^\"]*\bdropdown\b)[^\"]*\badmonition\b", static)
    )
    n_toggles = len(re.findall(r"<button\b[^>]*class=\"[^\"]*\btoggle-button\b", dom))
    if n_toggles < n_dropdowns:
        problems.append(
            f"{n_dropdowns} dropdowns but only {n_toggles} toggle buttons"
            " (togglebutton JavaScript did not run?)"
        )

    # Clean pages: no progress bar, no raw TeX left in the text, no memory address, nothing
    # that scrolls sideways at 1280 px.
    page_text = html_lib.unescape(re.sub(r"<[^>]+>", " ", re.sub(
        r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)))
    if TQDM_RE.search(page_text):
        problems.append(f"a progress bar on the page: {TQDM_RE.search(page_text).group(0)!r}")
    if "$" in shown:
        i = shown.index("$")
        problems.append(f"a '$' left in the text (untypeset maths?): {shown[max(0, i-60):i+60]!r}")
    if STRAY_NONE_RE.search(static):
        problems.append("an output that is just 'None' (display(None), or a cell ending in a "
                        "call that returns None?)")
    address = ADDRESS_RE.search(page_text)
    if address:
        problems.append(f"a memory address on the page: {address.group(0)!r}")
    problems += build_mechanics_problems(static, page_text)
    if BUILT_BUDGET == "smoke" and src.suffix == ".ipynb" and "smoke-banner" not in static:
        problems.append("a smoke build without the smoke banner (call minigrad.budget.banner() "
                        "in the chapter's first code cell)")
    if BUILT_BUDGET != "smoke" and "smoke-banner" in static:
        problems.append(f"a {BUILT_BUDGET} build that carries the smoke banner")
    overflow = re.search(r'data-layout-overflow="([^"]*)"', dom)
    if overflow is None:
        problems.append("the layout check did not run (book/_static/layout-check.js)")
    else:
        for block in json.loads(html_lib.unescape(overflow.group(1))):
            problems.append(f"scrolls sideways at 1280 px: {block}")
        problems += figure_problems(layout_report(dom, "figures"))
        for eq in layout_report(dom, "equations"):
            problems.append(f"a display equation {eq['width']} px wide in a {eq['column']} px "
                            f"column at 1280 px (break it with aligned): {eq['text']!r}")

    # Nothing loaded from another host (ordinary hyperlinks in the text are fine).
    for markup_ in (static, dom):
        for url in attr_values(markup_, "script", "src") + stylesheet_hrefs(markup_):
            if is_external(url):
                problems.append(f"external resource: {url}")
        for url in attr_values(markup_, "iframe", "src"):
            if is_external(url):
                problems.append(f"external iframe: {url}")

    assert not problems, f"{docname}:\n  " + "\n  ".join(dict.fromkeys(problems))

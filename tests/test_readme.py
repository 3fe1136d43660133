"""The README's example runs as printed (with fewer steps)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(capsys):
    text = README.read_text(encoding="utf8")
    section = text[text.index("## minigrad in a few lines"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "range(2000)" in code
    exec(compile(code.replace("range(2000)", "range(30)"), "README.md", "exec"), {})
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= accuracy <= 1.0


def _paragraph(text: str, start: str) -> str:
    """The README from ``start`` to the next blank line or bullet, on one line."""
    at = text.index(start)
    end = min(i for i in (text.find("\n\n", at), text.find("\n- ", at)) if i > 0)
    return " ".join(text[at:end].split())


def test_the_readme_lists_every_estimator_and_model_of_the_command_line():
    from minigrad.experiments.runs import CLASSIFIER_MODELS
    from minigrad.estimators.catalogue import SBN_ESTIMATORS as ESTIMATORS

    families = _paragraph(README.read_text(encoding="utf8"), "- **Families**")
    listed = re.search(r"`--estimator` one of (.*?), `--dataset", families).group(1)
    assert listed == ", ".join(ESTIMATORS)
    neurons = re.search(r"`--model` the hidden neuron: (.*?)\)", families).group(1)
    assert neurons == ", ".join(CLASSIFIER_MODELS)


def test_the_readme_lists_the_vae_estimators_and_shapes_of_the_command_line():
    from minigrad.estimators.catalogue import VAE_ESTIMATORS
    from minigrad.experiments.runs import VAE_MODELS

    families = _paragraph(README.read_text(encoding="utf8"), "- **Families**")
    listed = re.search(r"`--estimator` one of \(separated here by semicolons\) (.*?)\. ",
                       families).group(1)
    assert listed == "; ".join(VAE_ESTIMATORS)
    shapes = re.search(r"`--model nNkK`, N categorical variables of K classes, e\.g\. "
                       r"(.*?), 24 bits each", families).group(1)
    assert shapes == ", ".join(VAE_MODELS)


def test_the_readme_layout_names_every_estimator_module():
    text = README.read_text(encoding="utf8")
    layout = text[text.index("  estimators/"):text.index("  validate.py")]
    modules = sorted(p.name for p in (README.parent / "minigrad" / "estimators").glob("*.py")
                     if p.name != "__init__.py")
    missing = [m for m in modules if m not in layout]
    assert not missing, f"README.md's layout does not name {missing}"
    named = set(re.findall(r"(\w+)\.py", layout))
    gone = sorted(n for n in named if f"{n}.py" not in modules)
    assert not gone, f"README.md's layout names modules that are not there: {gone}"


def test_the_readme_test_count_is_the_suites():
    import os
    import subprocess
    import sys

    text = " ".join(README.read_text(encoding="utf8").split())
    stated = int(re.search(r"about ([\d,]+) tests", text).group(1).replace(",", ""))
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q"],
                          cwd=README.parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MINIGRAD_BUDGET": "smoke"})
    collected = int(re.search(r"(\d+) tests? collected", done.stdout).group(1))
    # stated to the nearest hundred: as many as are collected, within 5 %
    assert abs(stated - collected) <= 0.05 * collected, (stated, collected)

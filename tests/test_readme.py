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

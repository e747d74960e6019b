"""The README's worked examples run: every ```python block after a ``<!-- readme-example -->``."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
EXAMPLES = re.findall(r"<!-- readme-example -->\n```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_examples():
    assert any("model=\"sine\"" in c for c in EXAMPLES)  # the worked example is found


@pytest.mark.parametrize("code", EXAMPLES, ids=lambda c: c.splitlines()[0][:40])
def test_readme_example_runs(code):
    exec(compile(code, "README.md", "exec"), {})

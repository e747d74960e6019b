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


ROOT = Path(__file__).resolve().parents[1]
LAYOUT = re.search(r"## Layout\n.*?```\n(.*?)```", README, flags=re.S).group(1)
PACKAGES = ("functional_fit", "parity", "comparison", "functional_fit_cli")
#: Old import paths kept as aliases (tests/test_layers.py): not part of the layout.
ALIASES = {"functional_fit/files.py", "functional_fit/resources.py", "functional_fit/cli",
           "parity/comparison"}


def _section(package: str) -> str:
    """The layout's lines for `package`: from its own line to the next top-level one."""
    lines = LAYOUT.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{package}/"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "")),
               len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("package", PACKAGES)
def test_the_layout_names_every_module_and_only_modules_that_exist(package):
    folder = ROOT / package
    names = set(re.findall(r"[\w]+\.py|[\w]+/", _section(package))) - {f"{package}/"}
    here = {p.name for p in folder.glob("*.py")
            if p.name not in ("__init__.py", "__main__.py")
            and f"{package}/{p.name}" not in ALIASES}
    here |= {f"{d.name}/" for d in folder.iterdir()
             if (d / "__init__.py").exists() and f"{package}/{d.name}" not in ALIASES}
    assert here <= names, f"the README's layout leaves out {sorted(here - names)}"
    every = {p.name for p in folder.rglob("*.py")} | {f"{d.name}/" for d in folder.rglob("*")
                                                     if d.is_dir()}
    assert names <= every, f"the README's layout names {sorted(names - every)}, not in the tree"

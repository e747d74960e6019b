"""The three layers and the direction of their imports, module by module.

1. `functional_fit`'s library modules need no torch and never import `parity`.
2. `parity`'s torch side uses only the public modules of `functional_fit` (no ``_private``
   ones), and none of the comparison layer.
3. The comparison layer (`parity.comparison`) and the command line (`functional_fit.cli`) sit
   on top of both. Nothing below them imports them.

Checked twice: statically, from each module's import statements (so a lazy import inside a
function counts too), and dynamically, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement of the file, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _layer(module: str) -> str:
    if module.startswith("functional_fit.cli") or module == "functional_fit.__main__":
        return "top"
    if module.startswith("parity.comparison"):
        return "top"
    if module.startswith("parity"):
        return "torch"
    return "jax"


#: Imports that cross the layers on purpose: `parity.compare`, the comparison layer's entry
#: point, is re-exported by the package lazily (in its ``__getattr__``), so that importing
#: `parity` loads nothing of the layer above (test_the_torch_side_loads_without_the_comparison).
ALLOWED = {("parity", "parity.comparison.compare"), ("parity", "parity.comparison.compare.compare")}

MODULES = dict(list(_modules("functional_fit")) + list(_modules("parity")))


def test_the_layers_are_all_there():
    layers = {_layer(m) for m in MODULES}
    assert layers == {"jax", "torch", "top"}
    assert "parity.comparison.lecture" in MODULES and "functional_fit.fit" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_one_way(module):
    layer = _layer(module)
    bad = []
    for name in sorted(_imports(MODULES[module])):
        if (module, name) in ALLOWED:
            continue
        top = name.split(".")[0]
        if layer == "jax" and top in ("torch", "parity"):
            bad.append(f"{name} (the JAX library needs no torch and no parity)")
        if layer == "torch":
            if name.startswith("parity.comparison") or name.startswith("functional_fit.cli"):
                bad.append(f"{name} (the comparison layer sits on top)")
            if top == "functional_fit" and any(p.startswith("_") for p in name.split(".")[1:]):
                bad.append(f"{name} (a private module of functional_fit)")
        if layer == "jax" and name.startswith("functional_fit.cli") and not module.startswith(
                "functional_fit.cli"):
            bad.append(f"{name} (the command line sits on top)")
    assert not bad, f"{module} imports " + "; ".join(bad)


def _fresh_interpreter(code: str) -> str:
    """What `code` prints in a new Python process (nothing imported before it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout


def test_the_jax_library_loads_without_torch():
    code = ("import sys; import functional_fit, functional_fit.fit, functional_fit.surface, "
            "functional_fit.sweep, functional_fit.plot, functional_fit.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'parity')))")
    assert _fresh_interpreter(code).strip() == "[]"


def test_the_torch_side_loads_without_the_comparison():
    code = ("import sys; import parity, parity.fit, parity.surface, parity.sweep; "
            "print(sorted(m for m in sys.modules if m.startswith('parity.comparison') or "
            "m.startswith('functional_fit.cli'))); print(parity.compare.__module__)")
    assert _fresh_interpreter(code).split("\n")[:2] == ["[]", "parity.comparison.compare"]

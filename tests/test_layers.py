"""The four layers, the direction of their imports, and what importing a library module changes.

1. `functional_fit`, the JAX core: needs no torch, no signal handling, no file-swap plumbing.
2. `parity`, the torch mirror: the core's public names only.
3. `comparison`, the two side by side: both of the above.
4. `functional_fit_cli`, the command line and its plumbing (files, signals, memory): on top.

A module imports only from its own layer and the layers below; no module (tests, benchmarks,
scripts and notebooks included) uses another module's private (``_underscored``) names. Old
import paths are kept as aliases (`ALIASES`): modules that only re-export the module that
moved, which nothing of the project imports.

Checked statically, from each module's source (so a lazy import inside a function counts too),
and dynamically, in a fresh interpreter: importing a layer loads nothing above it, and
importing any library module changes no global state.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The layers, bottom up: package -> its number.
LAYERS = {"functional_fit": 1, "parity": 2, "comparison": 3, "functional_fit_cli": 4}
#: The library: every layer but the command line.
LIBRARY = ("functional_fit", "parity", "comparison")

#: Old import paths, kept working: alias module -> the module it stands for.
ALIASES = {
    "functional_fit.__main__": "functional_fit_cli",
    "functional_fit.cli": "functional_fit_cli",
    "functional_fit.files": "functional_fit_cli.files",
    "functional_fit.resources": "functional_fit_cli.resources",
    "parity.comparison": None,
    **{f"parity.comparison.{m}": f"comparison.{m}"
       for m in ("background", "compare", "figures", "handout", "lecture", "report")},
}

#: Names that a package re-exports from a layer above, loaded on first use (a module
#: ``__getattr__``), so that importing the package loads nothing of that layer:
#: ``parity.compare`` is `comparison.compare.compare`, and ``parity.testing``'s names are
#: `comparison.testing`'s, under the names users know.
UPWARD_NAMES = {("parity", "comparison.compare"), ("parity.testing", "comparison.testing")}

#: Standard-library modules that only the command line's plumbing may use.
PLUMBING = ("signal", "ctypes")


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = {name: path for package in LAYERS for name, path in _modules(package)}
#: Every Python file of the project that is not a package module: tests, benchmarks, scripts,
#: notebooks (their jupytext text form).
OTHER_FILES = sorted(p for folder in ("tests", "benchmarks", "scripts", "notebooks")
                     for p in (ROOT / folder).rglob("*.py"))
PROJECT = tuple(LAYERS)


def _tree(path: Path):
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import statement, anywhere in the file."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PROJECT


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_layers_are_all_there():
    assert {_layer(m) for m in MODULES} == {1, 2, 3, 4}
    for alias, target in ALIASES.items():
        assert alias in MODULES, alias
        assert target is None or target in MODULES, target


@pytest.mark.parametrize("module", sorted(set(MODULES) - set(ALIASES)))
def test_imports_flow_one_way(module):
    layer, bad = _layer(module), []
    for name, _ in _imports(_tree(MODULES[module])):
        top = name.split(".")[0]
        if (module, name) in UPWARD_NAMES:
            continue
        if name in ALIASES:
            bad.append(f"{name} (an old name kept for users; import {ALIASES[name]})")
        elif _is_project(name) and _layer(name) > layer:
            bad.append(f"{name} (layer {_layer(name)} sits above layer {layer})")
        elif top == "torch" and layer == 1:
            bad.append(f"{name} (the JAX core needs no torch)")
        elif top in PLUMBING and layer < 4:
            bad.append(f"{name} (signals and file swaps are the command line's plumbing)")
    assert not bad, f"{module} imports " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(ALIASES))
def test_an_alias_only_stands_for_the_module_that_moved(module):
    """An alias holds a docstring, imports of its target, and ``sys.modules[__name__] = it``
    or a re-export; nothing else of the project's logic lives there."""
    tree = _tree(MODULES[module])
    target = ALIASES[module]
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(n == "sys" or n == target or n.startswith(f"{target}.") for n in names), \
                ast.unparse(node)
            continue
        text = ast.unparse(node)
        assert text in (f"sys.modules[__name__] = {target}", "sys.exit(main())") \
            or text.startswith("__all__ =") or text.startswith("if __name__ == '__main__':"), text


def _private_uses(path: Path) -> list[str]:
    """Another project module's private names that the file uses: imported, or read as an
    attribute of an imported project module."""
    tree, bad = _tree(path), []
    bound = set()  # local names bound to a project module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_project(a.name):
                    if any(_private(p) for p in a.name.split(".")):
                        bad.append(f"import {a.name}")
                    bound.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and _is_project(node.module):
            if any(_private(p) for p in node.module.split(".")):
                bad.append(f"from {node.module} import ...")
            for a in node.names:
                if _private(a.name):
                    bad.append(f"from {node.module} import {a.name}")
                elif f"{node.module}.{a.name}" in MODULES:
                    bound.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                bad.append(f"{ast.unparse(node)}")
    return sorted(set(bad))


@pytest.mark.parametrize("path", sorted(MODULES.values()) + OTHER_FILES,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path):
    assert not _private_uses(path), f"{path.relative_to(ROOT)} uses " + ", ".join(_private_uses(path))


def _fresh_interpreter(code: str) -> str:
    """What `code` prints in a new Python process (nothing imported before it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout


@pytest.mark.parametrize("package", LIBRARY)
def test_a_layer_loads_nothing_above_it(package):
    above = [p for p in LAYERS if LAYERS[p] > LAYERS[package]]
    if package == "functional_fit":
        above.append("torch")
    modules = [m for m in MODULES if m.split(".")[0] == package and m not in ALIASES]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(above)!r}))")
    assert _fresh_interpreter(code).strip() == "[]"


#: What importing a module must leave as it found it, read in a fresh interpreter.
_STATE = """
import codecs, json, os, signal, sys, warnings
def state():
    try:
        codecs.lookup_error("functional_fit.ascii")
        codec = True
    except LookupError:
        codec = False
    jax = sys.modules.get("jax")
    return {
        "signals": {str(s): repr(signal.getsignal(s)) for s in signal.valid_signals()
                    if s not in (signal.SIGKILL, signal.SIGSTOP)},
        "argv": list(sys.argv), "environ": dict(os.environ), "codec": codec,
        "hooks": [repr(sys.excepthook), repr(sys.unraisablehook)],
        "warnings": len(warnings.filters),
        "jax": None if jax is None else {k: repr(v) for k, v in jax.config.values.items()},
    }
"""


@pytest.mark.parametrize("package", LIBRARY)
def test_importing_a_library_module_changes_no_global_state(package):
    modules = [m for m in MODULES if m.split(".")[0] == package and m not in ALIASES]
    code = _STATE + (
        # the third-party libraries first: torch's own import adds warning filters
        "import jax, numpy, optax, matplotlib.figure, torch\nbefore = state()\nimport importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "after = state()\n"
        "print(json.dumps({k: [before[k], after[k]] for k in before if before[k] != after[k]}))")
    assert json.loads(_fresh_interpreter(code)) == {}


def test_the_command_line_package_imports_only_the_standard_library():
    """So that `main` handles a Ctrl-C before the library's heavy imports begin."""
    code = ("import sys; before = set(sys.modules); import functional_fit_cli\n"
            "print(sorted(m.split('.')[0] for m in set(sys.modules) - before "
            "if m.split('.')[0] in ('jax', 'numpy', 'torch', 'functional_fit', 'parity', "
            "'comparison')))")
    assert _fresh_interpreter(code).strip() == "[]"


def test_old_import_paths_are_the_same_modules():
    code = ("import importlib\n"
            f"aliases = {ALIASES!r}\n"
            "print(all(importlib.import_module(a) is importlib.import_module(t) "
            "for a, t in aliases.items() if t and not a.endswith(('__main__', '.cli'))))\n"
            "import functional_fit.cli, functional_fit_cli\n"
            "print(functional_fit.cli.main is functional_fit_cli.main)")
    assert _fresh_interpreter(code).split() == ["True", "True"]

"""Small functions: no function of the packages over 60 lines of code or 8 parameters without a
reason written beside its signature.

A workflow is a short function that calls named steps, each of which a reader can test alone.
Public functions whose keyword arguments are their interface (`functional_fit.sweep.sweep`, a
figure with its styling options) and compiled functions whose static settings are keywords
carry the reason as a comment on their signature. Lines of code are counted from the first
statement after the docstring to the end.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("functional_fit", "parity", "comparison", "functional_fit_cli")
#: The longest function, in lines of code, and the most parameters, without a reason.
MAX_LINES = 60
MAX_PARAMETERS = 8


def _functions():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node, lines


def _measure(node, lines) -> tuple[int, int, bool]:
    """(lines of code, parameters, whether the signature carries a comment)."""
    body = node.body
    documented = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                  and isinstance(body[0].value.value, str))
    start = (body[1].lineno if len(body) > 1 else body[0].end_lineno + 1) if documented \
        else body[0].lineno
    a = node.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [v for v in (a.vararg, a.kwarg) if v]
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    signature = lines[node.lineno - 1 : body[0].lineno - 1]
    return node.end_lineno - start + 1, len(params), any("#" in line for line in signature)


FUNCTIONS = {name: _measure(node, lines) for name, node, lines in _functions()}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_are_small_or_say_why(name):
    n_lines, n_params, reason = FUNCTIONS[name]
    if n_lines > MAX_LINES or n_params > MAX_PARAMETERS:
        assert reason, (f"{name}: {n_lines} lines, {n_params} parameters: split it into named "
                        "steps, or say why beside its signature")


def test_the_measure_counts_code_not_docstrings():
    source = 'def f(a, b, *, c):\n    """doc\n\n    more doc\n    """\n    x = 1\n    return x\n'
    node = ast.parse(source).body[0]
    assert _measure(node, source.splitlines()) == (2, 3, False)
    source = "def g(self, a):  # why\n    return a\n"
    assert _measure(ast.parse(source).body[0], source.splitlines()) == (1, 1, True)

"""Shared by the benchmark scripts: machine and versions, medians, and BENCHMARKS.md sections.

Each benchmark owns one section of BENCHMARKS.md, between ``<!-- BEGIN name -->`` and
``<!-- END name -->``; re-running a benchmark replaces its own section and leaves the others.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every figure here was written by a script in `benchmarks/`; re-run it to refresh its "
    "section. Ratios are measured side by side in one run; times are medians over repeats. "
    "On a shared CPU machine only the ratios mean much; absolute times mean something on a GPU.\n"
)


def machine() -> str:
    """One line naming the machine, JAX's devices, the Python and the library versions
    (`functional_fit.runtime.environment`, as the handout page shows them)."""
    from functional_fit.runtime import environment

    env = environment()
    return (
        f"{env['machine']}, JAX devices: {env['jax devices']}; Python {env['python']}, jax {env['jax']}, "
        f"optax {env['optax']}, torch {env['torch']}, numpy {env['numpy']}"
    )


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md with `text`."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    body = f"{begin}\n{text.rstrip()}\n{end}"
    doc = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: body, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + body + "\n"
    BENCHMARKS_MD.write_text(doc)

"""Options as arguments: the runtime's sizes, compiler options and memory limit, per platform."""

from __future__ import annotations

import pytest

import functional_fit as ff
from functional_fit import runtime


def test_defaults_per_platform_and_changes():
    cpu, gpu = runtime.defaults("cpu"), runtime.defaults("gpu")
    assert cpu.chunk_points == 2**20 and gpu.chunk_points == 2**24
    assert cpu.dot_options and gpu.dot_options == ()
    assert runtime.defaults("tpu").chunk_work == gpu.chunk_work  # any other platform: the GPU's
    changed = runtime.defaults("cpu", chunk_points=4096, memory_limit="2M")
    assert (changed.chunk_points, changed.memory_limit) == (4096, 2 * 2**20)
    assert changed.vmap_items == cpu.vmap_items
    assert runtime.resolve(None, "cpu") == cpu and runtime.resolve(changed) is changed


@pytest.mark.parametrize("kwargs, says", [
    (dict(chunk_size=3), "runtime has no setting 'chunk_size'"),
    (dict(chunk_points=0), "chunk_points must be a positive integer"),
    (dict(memory_limit="plenty"), "memory_limit='plenty' must be a number of bytes"),
])
def test_bad_settings_name_themselves(kwargs, says):
    with pytest.raises(ff.InputError, match=says):
        runtime.defaults("cpu", **kwargs)


def test_resolve_refuses_what_is_not_a_runtime():
    with pytest.raises(ff.InputError, match="runtime must be a functional_fit.runtime.Runtime"):
        runtime.resolve({"chunk_points": 3})


def test_require_memory_refuses_beyond_the_limit_naming_the_setting():
    small = runtime.defaults("cpu", memory_limit=2**20)
    runtime.require_memory(2**19, what="half", change="steps", runtime=small)  # fits
    with pytest.raises(ff.InputError) as exc:
        runtime.require_memory(2**21, what="the path", change="steps", runtime=small,
                               source="FUNCTIONAL_FIT_MEMORY_LIMIT")
    assert str(exc.value) == ("steps: this run needs about 2.0 MiB of memory (the path), more than "
                              "the 1.0 MiB available (FUNCTIONAL_FIT_MEMORY_LIMIT); lower steps")


def test_environment_names_the_versions_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from functional_fit import runtime; env = runtime.environment(); "
            "print(sorted(env), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ("['jax', 'jax devices', 'machine', 'numpy', 'optax', 'python', "
                           "'torch'] False")


def test_a_run_keeps_a_margin_below_the_machines_available_memory(monkeypatch):
    """The issue's fit: a path estimated at 22.35 GiB with 24 GiB available was OOM-killed; the
    margin for what no estimate counts refuses it, before any work, naming steps."""
    import numpy as np

    from functional_fit import fit

    monkeypatch.setattr(runtime, "available_memory", lambda: 24 * 2**30)
    x, y = np.linspace(-1, 1, 10), np.linspace(0, 1, 10)
    with pytest.raises(ff.InputError) as exc:
        fit.gradient_descent(np.zeros(2), x, y, steps=10**9)
    assert str(exc.value).startswith("steps: this run needs about 22.4 GiB of memory")
    assert "more than the 18.7 GiB available to a run (of the machine's 24.0 GiB" in str(exc.value)
    # The margin is a fraction and a fixed amount: small machines keep the fixed part.
    assert runtime.usable_memory(24 * 2**30) == int(24 * 2**30 * runtime.HEADROOM_FRACTION) - runtime.RESERVED_BYTES
    assert runtime.usable_memory(2**28) == 0
    # An explicit limit is what the caller allows: taken as given, below the machine's margin.
    assert runtime.memory_available(runtime.defaults("cpu", memory_limit=2**30)) == 2**30

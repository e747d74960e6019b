"""Strict test configuration: a silent broadcast or a silent float32 is a failure.

The tests, like the command line, are an application of the library, so they (not the library)
turn on JAX's 64-bit mode. Rank promotion raises, so (n, 1) against (n,) cannot slip through;
dtype promotion is strict, as equinox's tests make it, so mixed-dtype arithmetic (float32
parameters meeting float64 data, an int32 step count meeting an int64 index) is found rather
than promoted: where the library means it, it says so with an explicit cast.
"""

import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# The command line keeps JAX's compiled programs in the user's cache folder; the tests (and the
# command lines they start) keep theirs in a folder of their own.
os.environ.setdefault("FUNCTIONAL_FIT_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "functional-fit-tests-jax-cache"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lecture_xy():
    """The lecture's data, float64 numpy arrays of shape (100,)."""
    import functional_fit as ff

    return ff.lecture_data()


# Hypothesis profiles (tests/test_property_parity.py): "ci", the default, runs a few derandomized
# examples per property; "thorough" runs 2,000 per property with fresh random draws:
#     HYPOTHESIS_PROFILE=thorough pytest tests/test_property_parity.py
from hypothesis import Phase, settings  # noqa: E402

_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]  # no "explain":
# it reruns a failing example a hundred times, minutes of compiling here
settings.register_profile("ci", max_examples=12, derandomize=True, deadline=None, database=None,
                          print_blob=True, phases=_PHASES)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True,
                          phases=_PHASES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module", autouse=True)
def _compiled_programs_dropped_after_each_module():
    """Drop JAX's compiled programs after each test file. Each executable holds several memory
    maps; kept for the whole run, the suite's thousands of them approach the kernel's limit on a
    process's maps (vm.max_map_count, 65530), and XLA's compiler then segfaults (three full
    runs died so in tests/test_property_parity.py once the landscape tests were added)."""
    yield
    jax.clear_caches()

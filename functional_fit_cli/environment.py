"""JAX's environment variables, checked where JAX reads them, so a bad one is one clear line.

JAX parses its boolean variables (``JAX_ENABLE_X64``, ``JAX_DEBUG_NANS``, ...) when it is
imported and its ``JAX_PLATFORMS`` when it first starts a backend; a bad value is a
``ValueError``, ``RuntimeError`` or (for a platform that is known but not installed, such as
``cuda`` on a CPU-only machine) a bare ``AssertionError`` traceback from deep inside JAX. XLA
parses ``XLA_FLAGS`` when the backend starts, and a flag it does not know ends the process
with XLA's own fatal log line. `import_problem`, `flags_problem` and `backend_problem` turn
each into one line naming the variable, which the command prints with exit status 2.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

#: glog's prefix on XLA's log lines: severity, date, time, thread, file:line.
_GLOG = re.compile(r"^([EF])\d{4} [\d:.]+\s+\d+ [^\]]+\] (.*)$")


def _named(exc: Exception, default: str | None = None) -> str:
    m = re.search(r"environment '?([A-Z0-9_]+)'?", str(exc))
    name = m.group(1) if m else default
    if name is None:
        return str(exc).splitlines()[0]
    return f"environment variable {name}={os.environ.get(name, '')!r}: {str(exc).splitlines()[0]}"


def import_problem() -> str | None:
    """Import JAX; None when it imports, else one line naming the bad JAX variable."""
    try:
        import jax  # noqa: F401
    except ValueError as exc:  # JAX_ENABLE_X64=maybe and the like
        return _named(exc)
    return None


def flags_problem(timeout: float = 120.0) -> str | None:
    """None when ``XLA_FLAGS`` is unset or XLA accepts it; else one line naming it.

    XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend, and ends the process on a
    flag it does not know, a value it cannot parse or a flags file it cannot open. That cannot
    be caught in this process, so when the variable is set a child process starts the backend
    first (about a second) and its fatal log line becomes the reason given.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if not flags.strip():
        return None
    try:
        proc = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"],
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no verdict: this process starts the backend itself
    if proc.returncode == 0:
        return None
    logged = [m.groups() for m in map(_GLOG.match, proc.stderr.splitlines()) if m]
    if not logged:
        return None  # a Python error, not XLA's: `backend_problem` reports it in this process
    errors = [text for level, text in logged if level == "E"]
    reason = (errors or [text for _, text in logged])[0].strip()
    return f"environment variable XLA_FLAGS={flags!r}: {reason}"


def backend_problem() -> str | None:
    """None when JAX's backend starts; else one line naming XLA_FLAGS, JAX_PLATFORMS (or JAX's
    reason)."""
    problem = flags_problem()
    if problem:
        return problem
    import jax

    try:
        jax.devices()
    except Exception as exc:  # noqa: BLE001  (a RuntimeError, or a bare AssertionError)
        platforms = os.environ.get("JAX_PLATFORMS")
        if str(exc).strip() and platforms is not None:
            return _named(exc, "JAX_PLATFORMS")
        reason = (str(exc).splitlines()[0] if str(exc).strip() else
                  f"JAX has no working backend for it here ({type(exc).__name__}; is that "
                  "platform's JAX plugin installed?)")
        if platforms is not None:
            return f"environment variable JAX_PLATFORMS={platforms!r}: {reason}"
        return f"JAX cannot start a backend: {reason}"
    return None

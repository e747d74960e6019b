"""JAX's environment variables, checked where JAX reads them, so a bad one is one clear line.

JAX parses its boolean variables (``JAX_ENABLE_X64``, ``JAX_DEBUG_NANS``, ...) when it is
imported and its ``JAX_PLATFORMS`` when it first starts a backend; a bad value is a
``ValueError`` or ``RuntimeError`` traceback from deep inside JAX. Here the first becomes an
``ImportError`` naming the variable (and, for the ``functional-fit`` command, one line on stderr
and exit status 2, since it happens while the command is imported); `check_backend` does the
same for the second.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading


def _named(exc: Exception, default: str | None = None) -> str:
    m = re.search(r"environment '?([A-Z0-9_]+)'?", str(exc))
    name = m.group(1) if m else default
    if name is None:
        return str(exc).splitlines()[0]
    return f"environment variable {name}={os.environ.get(name, '')!r}: {str(exc).splitlines()[0]}"


def _running_command() -> bool:
    """Whether this process is the ``functional-fit`` command (console script or ``-m``)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    if os.path.basename(sys.argv[0] if sys.argv else "") == "functional-fit":
        return True
    return any(a == "-m" and b in ("functional_fit", "functional_fit.cli")
               for a, b in zip(argv, argv[1:]))


def _interrupted_while_starting(signum, frame):
    sys.stderr.write("functional-fit: interrupted\n")
    os._exit(130)  # nothing is written yet: end now, not in the middle of an import


def starting() -> None:
    """For the ``functional-fit`` command: a Ctrl-C while it imports ends it in one line and
    exit status 130 (the command's own handler takes over once it runs)."""
    if _running_command() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def import_jax():
    """Import JAX; a bad JAX environment variable raises ImportError naming it."""
    try:
        import jax
    except ValueError as exc:  # JAX_ENABLE_X64=maybe and the like
        message = _named(exc)
        if _running_command():
            print(f"functional-fit: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None
        raise ImportError(message) from None
    return jax


def check_backend() -> str | None:
    """None when JAX's backend starts; else one line naming JAX_PLATFORMS (or JAX's reason)."""
    import jax

    try:
        jax.devices()
    except RuntimeError as exc:
        if os.environ.get("JAX_PLATFORMS") is not None:
            return _named(exc, "JAX_PLATFORMS")
        return f"JAX cannot start a backend: {str(exc).splitlines()[0]}"
    return None

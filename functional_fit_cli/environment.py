"""JAX's environment variables, checked where JAX reads them, so a bad one is one clear line.

JAX parses its boolean variables (``JAX_ENABLE_X64``, ``JAX_DEBUG_NANS``, ...) when it is
imported and its ``JAX_PLATFORMS`` when it first starts a backend; a bad value is a
``ValueError`` or ``RuntimeError`` traceback from deep inside JAX. `import_problem` and
`backend_problem` turn each into one line naming the variable, which the command prints with
exit status 2.
"""

from __future__ import annotations

import os
import re


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


def backend_problem() -> str | None:
    """None when JAX's backend starts; else one line naming JAX_PLATFORMS (or JAX's reason)."""
    import jax

    try:
        jax.devices()
    except RuntimeError as exc:
        if os.environ.get("JAX_PLATFORMS") is not None:
            return _named(exc, "JAX_PLATFORMS")
        return f"JAX cannot start a backend: {str(exc).splitlines()[0]}"
    return None

"""Memory for the command line: the environment's limit, and estimates checked before a run.

A command that would outgrow the machine's memory is refused at once with one line that gives
the estimate and the option to change, rather than growing until the kernel kills it (or
numpy raises ``MemoryError``) minutes later.

The environment variable ``FUNCTIONAL_FIT_MEMORY_LIMIT`` (bytes, or with a suffix K, M, G)
lowers the limit below what the machine has, for a shared machine or a test. It is read here,
by the command line, and handed to the library as `functional_fit.runtime.Runtime`'s
``memory_limit`` (`runtime`); the library itself reads no environment variable.
"""

from __future__ import annotations

import os

from functional_fit import runtime as _runtime
from functional_fit.runtime import gib  # noqa: F401  (the messages' sizes, under their old name)

#: The environment variable that lowers the memory a run may use (bytes; K, M, G suffixes).
LIMIT_ENV = "FUNCTIONAL_FIT_MEMORY_LIMIT"


def parse_size(text: str) -> int:
    """``"1500"``, ``"64M"``, ``"2G"`` -> bytes; InputError naming `LIMIT_ENV` otherwise.

    Examples:
      >>> parse_size("64M")
      67108864
    """
    return _runtime.parse_size(LIMIT_ENV, text)


def runtime() -> _runtime.Runtime:
    """The library's defaults for this platform, with the memory limit of `LIMIT_ENV`."""
    limit = os.environ.get(LIMIT_ENV)
    return _runtime.defaults(memory_limit=parse_size(limit) if limit else None)


def available() -> int | None:
    """Bytes a run may use: the machine's available memory, lowered by `LIMIT_ENV`."""
    return _runtime.memory_available(runtime())


def require(nbytes: float, *, what: str, change: str) -> None:
    """`functional_fit.runtime.require_memory` under the limit of `LIMIT_ENV`."""
    _runtime.require_memory(nbytes, what=what, change=change, runtime=runtime(), source=LIMIT_ENV)


__all__ = ["LIMIT_ENV", "available", "gib", "parse_size", "require", "runtime"]

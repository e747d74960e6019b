"""Memory: what a run will need, checked against what the machine has, before the run starts.

A command that would outgrow the machine's memory is refused at once with one line that gives
the estimate and the setting to change, rather than growing until the kernel kills it (or
numpy raises ``MemoryError``) minutes later.

- `available`: the bytes a run may use: ``MemAvailable`` of ``/proc/meminfo`` (free memory
  plus what the kernel can reclaim), or ``os.sysconf`` where there is no ``/proc``. The
  environment variable ``FUNCTIONAL_FIT_MEMORY_LIMIT`` (bytes, or with a suffix K, M, G)
  lowers it, for a shared machine or a test.
- `require`: refuse an estimate above it, with `InputError` naming the setting.

Estimates count the large arrays a run holds at once (data, batch orders, paths, grids,
per-run results), not Python's own few hundred MB; they are meant to catch the runs that are
off by orders of magnitude, not to budget the last megabyte.
"""

from __future__ import annotations

import os
import re

from functional_fit.checks import InputError

#: The environment variable that lowers the memory a run may use (bytes; K, M, G suffixes).
LIMIT_ENV = "FUNCTIONAL_FIT_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parse_size(text: str) -> int:
    """``"1500"``, ``"64M"``, ``"2G"`` -> bytes; InputError naming `LIMIT_ENV` otherwise.

    Examples:
      >>> parse_size("64M")
      67108864
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise InputError(f"{LIMIT_ENV}={text!r} must be a number of bytes, e.g. 500M or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def available() -> int | None:
    """Bytes a run may use: the machine's available memory, lowered by `LIMIT_ENV`; None if unknown."""
    have = _meminfo_available()
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        limit = parse_size(limit)
        have = limit if have is None else min(have, limit)
    return have


def gib(nbytes: float) -> str:
    """A size for a message: ``"1.5 GiB"``, ``"12.0 MiB"``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.1f} MiB"


def require(nbytes: float, *, what: str, change: str) -> None:
    """Refuse a run whose estimate `nbytes` exceeds `available` memory.

    Args:
      nbytes: the estimate.
      what: what the memory is for, for the message (``"the fit's path, (steps+1) x 2 float64"``).
      change: the setting to lower, named as the user gave it (``"--steps"``, ``"steps"``).

    Raises:
      InputError: ``"<change> ...: needs about X GiB (<what>), more than the Y GiB available"``.
    """
    have = available()
    if have is not None and nbytes > have:
        source = f" ({LIMIT_ENV})" if os.environ.get(LIMIT_ENV) else ""
        raise InputError(f"{change}: this run needs about {gib(nbytes)} of memory ({what}), more "
                         f"than the {gib(have)} available{source}; lower {change}")


__all__ = ["LIMIT_ENV", "available", "gib", "parse_size", "require"]

"""What a run may use: sizes of its compiled calls, compiler options and memory, per platform.

A long fit, a sweep and a big surface each run as several compiled calls of bounded size: a
call cannot be interrupted, and a bounded call keeps both Ctrl-C and the workspace in bounds.
The sizes that make a call about a second of work, or a block of a surface fit in cache,
differ between a CPU and a GPU. They are all here, in one `Runtime`, made by `defaults` for a
platform; every function that uses one takes ``runtime=`` (None: the defaults of its
platform), so a caller (a test, a benchmark, the command line) passes its own instead of
changing a global:

    >>> from functional_fit import runtime
    >>> rt = runtime.defaults("cpu", memory_limit=2**30)
    >>> rt.chunk_points, rt.memory_limit
    (1048576, 1073741824)

None of these changes a result, except the streamed surface's `data_chunk` (the order in which
a grid point's terms are summed, so the last bits). BENCHMARKS.md ("The runtime's defaults",
`benchmarks/bench_runtime.py`) measures each default against its neighbours.

Memory: `require_memory` refuses a run whose estimate exceeds ``memory_limit`` (None: what the
machine has available, `available_memory`, less a margin) before it allocates, with one line
naming the setting to lower. The library reads no environment variable; the command line reads
``FUNCTIONAL_FIT_MEMORY_LIMIT`` and passes it here.

The margin. An estimate counts the large arrays a run holds (a fit's path, a surface's output),
not what every run needs beside them: the interpreter, JAX, XLA and the compiled programs
(about 260 MiB for a fit and a surface in one process, measured), one compiled call's output
on its way to the host, the allocators' fragmentation, and the other processes and page cache
that ``MemAvailable`` counts as free but that grow while a run of minutes goes on. So a run may
hold `HEADROOM_FRACTION` of the available memory less `RESERVED_BYTES` (`usable_memory`): a fit's
path estimated at 22.35 GiB on a machine with 24 GiB available is refused (18.7 GiB may be
used) rather than killed by the kernel after ten minutes. An explicit ``memory_limit`` is taken
as given: it is what the caller allows the run's arrays.
"""

from __future__ import annotations

import dataclasses
import os
import platform as _platform
import re

from functional_fit.checks import InputError, positive_int

PLATFORMS = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Sizes, compiler options and the memory limit of one platform (see `defaults`)."""

    platform: str  # "cpu", "gpu", "tpu", ...
    #: fit: work per compiled call, in units of one parameter on one batch point for one step
    chunk_work: int
    #: fit: one step's cost beyond its arithmetic (the loop, the update), in the same units
    step_overhead: int
    #: surface: grid points per compiled call and device (a few of them are the workspace)
    chunk_points: int
    #: surface: numbers a block may hold per grid point's share (its parameter vectors, say)
    workspace_items: int
    #: surface, vmapped layout: numbers of a block's largest intermediate array
    vmap_items: int
    #: surface, streamed layout: data points per scan step, added as a tree
    data_chunk: int
    #: surface, streamed layout: data points per pass of the loop at most
    max_terms: int
    #: surface, streamed layout: a term of e jaxpr equations gets budget // e**2 points a pass
    term_budget: int
    #: XLA options of the vmapped layout's calls when the loss has matrix products (CPU only)
    dot_options: tuple
    #: XLA options of the streamed layout's calls (CPU only): XLA's loops vectorize at 256 bits
    #: unless told to prefer 512 (AVX-512), which gcc's do; the values are the same bit for bit
    stream_options: tuple = ()
    #: bytes a run may hold; None: the machine's available memory when the run starts
    memory_limit: int | None = None


#: The defaults per platform; the GPU's serve every platform but the CPU.
_DEFAULTS = {
    "cpu": dict(chunk_work=2**28, chunk_points=2**20, vmap_items=2**21,
                dot_options=(("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"),
                             ("xla_cpu_prefer_vector_width", 512)),
                stream_options=(("xla_cpu_prefer_vector_width", 512),)),
    "gpu": dict(chunk_work=2**23, chunk_points=2**24, vmap_items=2**26, dot_options=(),
                stream_options=()),
}
_SHARED = dict(step_overhead=512, workspace_items=2**23, data_chunk=10, max_terms=100,
               term_budget=40_000)


def default_platform() -> str:
    """JAX's default backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
    import jax

    return jax.default_backend()


def defaults(platform: str | None = None, **changes) -> Runtime:
    """The `Runtime` of `platform` (default JAX's default backend), with `changes` applied.

    Args:
      platform: ``"cpu"``, ``"gpu"``, ``"tpu"`` (any platform but the CPU takes the GPU's
        sizes); None for JAX's default backend.
      changes: fields of `Runtime` to set, e.g. ``chunk_points=4096`` or ``memory_limit=2**30``
        (an int of bytes, or a string such as ``"500M"``).

    Raises:
      InputError: a platform that is not a name, an unknown field, or a size that is not a
        positive integer.
    """
    platform = default_platform() if platform is None else platform
    if not isinstance(platform, str) or not platform:
        raise InputError(f"platform must be a JAX platform's name ({', '.join(PLATFORMS)}, ...); "
                         f"got {platform!r}")
    fields = {f.name for f in dataclasses.fields(Runtime)} - {"platform"}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise InputError(f"runtime has no setting {unknown[0]!r}; it has {', '.join(sorted(fields))}")
    values = {**_SHARED, **_DEFAULTS["cpu" if platform == "cpu" else "gpu"], **changes}
    for name, value in values.items():
        if name == "memory_limit":
            values[name] = None if value is None else parse_size("memory_limit", value)
        elif name not in ("dot_options", "stream_options"):
            values[name] = positive_int(name, value)
    return Runtime(platform=platform, **values)


def resolve(runtime: Runtime | None, platform: str | None = None) -> Runtime:
    """`runtime` itself, or the defaults of `platform` when it is None."""
    if runtime is None:
        return defaults(platform)
    if not isinstance(runtime, Runtime):
        raise InputError(f"runtime must be a functional_fit.runtime.Runtime (from "
                         f"runtime.defaults()), got {type(runtime).__name__}")
    return runtime


# --------------------------------------------------------------------------- memory

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(name: str, value) -> int:
    """Bytes from an int or from text such as ``"1500"``, ``"64M"``, ``"2G"``; InputError
    naming `name` otherwise.

    Examples:
      >>> parse_size("memory_limit", "64M")
      67108864
    """
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)i?B?\s*", value, re.IGNORECASE)
        if not m:
            raise InputError(f"{name}={value!r} must be a number of bytes, e.g. 500M or 2G")
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    return positive_int(name, value)


def available_memory() -> int | None:
    """Bytes the machine can give a run now (``MemAvailable``: free memory plus what the
    kernel can reclaim), or None where it cannot tell."""
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


#: The share of the machine's available memory a run's estimate may take (see the margin, in
#: the module's docstring).
HEADROOM_FRACTION = 0.8
#: Bytes kept for the interpreter, JAX and the compiled programs, which no estimate counts.
RESERVED_BYTES = 512 * 2**20


def usable_memory(available: int) -> int:
    """Bytes a run's estimate may take of `available` bytes: `HEADROOM_FRACTION` of them, less
    `RESERVED_BYTES`, at least 0."""
    return max(0, int(available * HEADROOM_FRACTION) - RESERVED_BYTES)


def memory_available(runtime: Runtime | None = None) -> int | None:
    """Bytes a run may hold: the machine's available memory less the margin (`usable_memory`),
    lowered by ``runtime.memory_limit``."""
    have = available_memory()
    have = None if have is None else usable_memory(have)
    limit = None if runtime is None else runtime.memory_limit
    if limit is not None:
        have = limit if have is None else min(have, limit)
    return have


def gib(nbytes: float) -> str:
    """A size for a message in a unit that shows it: ``"1.5 GiB"``, ``"12.0 MiB"``, ``"1.0 KiB"``,
    ``"512 bytes"``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.1f} MiB"
    if nbytes >= 2**10:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes:.0f} bytes"


def require_memory(nbytes: float, *, what: str, change: str, runtime: Runtime | None = None,
                   source: str = "") -> None:
    """Refuse a run whose estimate `nbytes` exceeds `memory_available`.

    Args:
      nbytes: the estimate: the large arrays the run holds at once, not Python's own few
        hundred MB (it catches runs off by orders of magnitude, not the last megabyte).
      what: what the memory is for (``"the fit's path, 1001 x 16 bytes"``).
      change: the setting to lower, as the caller named it (``"steps"``, ``"--grid"``).
      runtime: its ``memory_limit`` lowers the limit.
      source: where the limit came from, for the message (``"FUNCTIONAL_FIT_MEMORY_LIMIT"``).

    Raises:
      InputError: ``"<change>: this run needs about X of memory (<what>), more than the Y
        available; lower <change>"``.
    """
    have = memory_available(runtime)
    if have is not None and nbytes > have:
        limited = runtime is not None and runtime.memory_limit == have
        source = f" ({source})" if source and limited else ""
        if not limited:  # the machine's figure, less the margin: say both
            source = (f" to a run (of the machine's {gib(available_memory())}, less a margin for "
                      "the runtime)")
        raise InputError(f"{change}: this run needs about {gib(nbytes)} of memory ({what}), more "
                         f"than the {gib(have)} available{source}; lower {change}")


# --------------------------------------------------------------------------- the machine


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"model name\s*:\s*(.*)", fh.read())
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """Versions of Python, jax, optax, torch and numpy, the machine and JAX's devices.

    The versions are read from the installed packages' metadata: torch is not imported.
    """
    import jax

    return {
        "python": _platform.python_version(),
        "jax": _version("jax"),
        "optax": _version("optax"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {_platform.system()} "
                   f"{_platform.release()}",
        "jax devices": ", ".join(sorted({d.device_kind for d in jax.devices()})),
    }


__all__ = ["HEADROOM_FRACTION", "PLATFORMS", "RESERVED_BYTES", "Runtime", "available_memory",
           "default_platform", "defaults", "environment", "gib", "memory_available",
           "parse_size", "require_memory", "resolve", "usable_memory"]

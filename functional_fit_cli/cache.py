"""JAX's persistent compilation cache for the command line: on by default, never in the way.

A second run loads what the first compiled instead of compiling it again. The cache is a
convenience, so a cache that cannot be used never stops a command and never floods its
output:

- `problem` checks the folder before JAX is told of it: it can be made, written in, and its
  disk has room (`MIN_FREE`). Otherwise the command says so in one line and runs without it.
- `used` turns the cache on for one run and watches JAX's warnings about it. JAX writes an
  entry in place, so a full disk can leave a truncated entry, which every later run fails to
  read, with one warning each. Those warnings are held back; the entries they name are
  removed at the end of the run (JAX compiles them again next time), and the command says so
  in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

#: Below this much free space on the cache's disk the command runs without the cache: its
#: entries are up to a few MiB, and a full disk is what leaves them truncated.
MIN_FREE = 64 * 2**20
#: JAX's warnings about an entry it could not read or write, naming the entry's program or key.
_WARNING = re.compile(r"Error (reading|writing) persistent compilation cache entry for "
                      r"'([^']+)'(?:: (.*))?", re.DOTALL)
#: JAX's file names: "<key>-cache" and, with a size limit, "<key>-atime"; a key is the
#: program's name, "-", and a 64-digit hex hash.
_SUFFIXES = ("-cache", "-atime")
_HASH = re.compile(r"-[0-9a-f]{64}")


#: The packages whose source decides a kept result (`source_hash`).
SOURCES = ("functional_fit", "parity", "comparison")


def cache_dir() -> Path:
    """Where the command line keeps JAX's compiled programs between runs.

    ``$FUNCTIONAL_FIT_CACHE_DIR`` when set, else ``functional-fit/jax`` in the user's cache
    folder (``$XDG_CACHE_HOME``, by default ``~/.cache``).
    """
    if os.environ.get("FUNCTIONAL_FIT_CACHE_DIR"):
        return Path(os.environ["FUNCTIONAL_FIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "functional-fit" / "jax"


def problem(path: Path, min_free: int = MIN_FREE) -> str | None:
    """Why the cache folder `path` cannot be used (made, written in, room on its disk), or None.

    Makes the folder when it is missing; writes and removes one small file in it.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be made ({exc.strerror or exc})"
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe.")
        try:
            os.write(fd, bytes(4096))
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return f"cannot be written in ({exc.strerror or exc})"
    free = shutil.disk_usage(path).free
    if free < min_free:
        return f"is on a disk with only {free / 2**20:.1f} MiB free"
    return None


def entries_of(path: Path, name: str) -> list[Path]:
    """The files of the cache at `path` that hold the entry `name`: a whole key, or a program's
    name (every key of that program)."""
    found = []
    for entry in path.iterdir():
        for suffix in _SUFFIXES:
            stem = entry.name.removesuffix(suffix)
            if stem != entry.name and (stem == name or (
                    stem.startswith(name) and _HASH.fullmatch(stem[len(name):]))):
                found.append(entry)
    return sorted(found)


def repair(path: Path, names) -> int:
    """Remove every file of the entries `names` from the cache at `path`; how many went."""
    removed = 0
    for name in names:
        for entry in entries_of(path, name):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def used(no_cache: bool, say: Callable[[str], None]):
    """Run the block with JAX's persistent compilation cache on, unless `no_cache`.

    Every program is kept, however quick its compilation (JAX keeps only those over 1 s by
    default); the compiled code, and so every number, is the same as without the cache. A
    folder that cannot be used (`problem`) leaves the cache off, and `say` is given one line
    saying why. JAX's warnings about entries it could not read or write are held back; the
    entries are removed when the block ends, and `say` is given one line.

    Yields:
      The cache folder, or None when the cache is off.
    """
    if no_cache:
        yield None
        return
    path = cache_dir()
    why = problem(path)
    if why:
        say(f"note: the compilation cache {str(path)!r} {why}: running without it")
        yield None
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    damaged: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message="Error (reading|writing) persistent compilation")
        show = warnings.showwarning

        def held_back(message, category, filename, lineno, file=None, line=None):
            m = _WARNING.match(str(message))
            if m is None:
                show(message, category, filename, lineno, file, line)
            else:
                damaged.setdefault(m.group(2), (m.group(3) or m.group(1)).splitlines()[0])

        warnings.showwarning = held_back
        try:
            yield path
        finally:
            if damaged:
                removed = repair(path, damaged)
                first = next(iter(damaged.values()))
                say(f"note: {len(damaged)} entr{'y' if len(damaged) == 1 else 'ies'} of the "
                    f"compilation cache {str(path)!r} could not be read or written ({first}); "
                    f"their {removed} file(s) were removed, to be compiled afresh next time")


def source_hash(packages=SOURCES) -> str:
    """SHA-256 of every ``.py`` file of `packages` and the versions of jax, optax, torch and
    numpy: a result kept under it is one these sources and libraries computed."""
    import importlib
    from importlib import metadata

    digest = hashlib.sha256()
    for name in ("jax", "jaxlib", "optax", "torch", "numpy"):
        digest.update(f"{name}={metadata.version(name)};".encode())
    for package in packages:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def kept(name: str, key: bytes, make: Callable[[], dict], folder: Path | None) -> dict:
    """`make()`, a JSON-ready dict, kept in `folder` under `name` and the hash of `key` and of
    the sources (`source_hash`), so that a later run with the same key reads it instead of
    computing it again; `folder` None (``--no-cache``, or no usable cache) always computes.

    The file is written to a temporary name and renamed, so a run stopped half-way leaves
    nothing half-written; a kept file that cannot be read is computed and written again.
    """
    if folder is None:
        return make()
    digest = hashlib.sha256(key + source_hash().encode()).hexdigest()
    path = Path(folder) / f"{name}-{digest}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    doc = make()
    tmp = None
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, delete=False,
                                         prefix=f".{name}-", suffix=".tmp") as fh:
            tmp = fh.name
            json.dump(doc, fh, separators=(",", ":"), allow_nan=False)
        os.replace(tmp, path)
    except (OSError, ValueError):  # unwritten, the next run computes it again: nothing more
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return doc


__all__ = ["MIN_FREE", "SOURCES", "cache_dir", "entries_of", "kept", "problem", "repair",
           "source_hash", "used"]

"""Writing outputs all or nothing: a reader (or an interrupted run) never sees a half-written file.

- `atomic_path`: one file, written to a temporary name beside it and renamed over it at the end.
- `atomic_dir`: a whole folder of outputs (``lecture --out DIR``), built in a temporary folder
  beside it and swapped into place at the end: the folder holds the complete old set or the
  complete new set, never a mix.

Written files and folders follow the user's umask, as ``open`` would make them (a bare
``tempfile.mkstemp`` makes them 0600).

An operating-system error while writing (a full disk, a read-only file system, no permission)
removes what was begun and raises `WriteError`, an ``OSError`` naming the output path; the
command line reports it in one line with exit status 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

from functional_fit_cli import signals
from functional_fit_cli.signals import interrupted  # noqa: F401  (its old name here)


class WriteError(OSError):
    """Writing an output failed; nothing was left half-written. ``filename`` is the output."""

    def __str__(self) -> str:
        return f"cannot write {str(self.filename)!r}: {self.strerror}"


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def _write_error(exc: OSError, path) -> WriteError:
    if isinstance(exc, WriteError):
        return exc
    return WriteError(exc.errno or errno.EIO, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.

    The temporary file keeps the suffix of `path`, so writers that choose a format by suffix
    (``numpy.savez``, ``Figure.savefig``) behave as they would on `path` itself. The file gets
    the permissions of the umask. An ``OSError`` raises `WriteError` naming `path`.

    Examples:
      >>> import numpy as np, tempfile, os
      >>> out = os.path.join(tempfile.mkdtemp(), "a.npy")
      >>> with atomic_path(out) as tmp:
      ...     np.save(tmp, np.zeros(3))
      >>> np.load(out).shape
      (3,)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
    except OSError as exc:
        raise _write_error(exc, path) from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        signals.check()  # an interrupted run writes nothing
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt included: leave nothing behind
        with signals.held(), contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(exc, path) from None
        raise


def write_text(path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- folders

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # the kernel or the file system cannot: rename twice instead
    raise OSError(code, os.strerror(code), b)


def _swap_in(tmp: str, path: Path) -> None:
    """Put folder `tmp` at `path`, replacing what was there as one step where the OS allows."""
    with signals.held():
        if not path.exists():
            os.rename(tmp, path)
            return
        if _exchange(tmp, str(path)):  # tmp now holds the old set
            _remove(tmp)
            return
        old = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.")
        os.rename(path, os.path.join(old, "set"))  # both renames with signals held
        os.rename(tmp, path)
        _remove(old)


def _remove(path: str) -> None:
    """Remove a folder (or a link to one) without following links."""
    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` as a whole.

    Write every file of the set into the yielded folder. When the block ends normally the
    folder is moved to `path` (a folder from an earlier run is replaced in one step: Linux's
    ``renameat2(RENAME_EXCHANGE)``, or two renames with SIGINT held); when it raises (an
    error, Ctrl-C) the temporary folder is removed and `path` is left as it was. Files
    already in `path` that the block does not write again are gone afterwards: the caller
    checks that `path` holds nothing else of the user's.

    Raises:
      WriteError: an ``OSError`` while making, filling or moving the folder, naming `path`.

    Examples:
      >>> import os, tempfile
      >>> out = os.path.join(tempfile.mkdtemp(), "set")
      >>> with atomic_dir(out) as tmp:
      ...     write_text(os.path.join(tmp, "a.txt"), "new")
      >>> os.listdir(out)
      ['a.txt']
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise _write_error(exc, path) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        signals.check()  # an interrupted run writes nothing
        _swap_in(tmp, path)
    except BaseException as exc:
        with signals.held():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # name the file as the user will know it, not its temp name
            name = str(getattr(exc, "filename", None) or path).replace(tmp, str(path), 1)
            raise WriteError(exc.errno or errno.EIO, exc.strerror or str(exc), name) from None
        raise


__all__ = ["WriteError", "atomic_dir", "atomic_path", "interrupted", "write_text"]

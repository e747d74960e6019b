"""Writing outputs all or nothing: a reader (or an interrupted run) never sees a half-written file.

- `atomic_path`: one file, written to a temporary name beside it and renamed over it at the end.
- `atomic_dir`: a whole folder of outputs (``lecture --out DIR``), built in a temporary folder
  beside it and swapped into place at the end: the folder holds the complete old set or the
  complete new set, never a mix. It leaves a `MANIFEST` naming what it wrote (`manifest`).
- `together`: all of a command's outputs (``surface --out s.npz --plot s.png``), each written
  to its temporary and all renamed into place only when all are written: none lands when
  the command fails.

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
import json
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
    with together() as outputs:
        yield outputs.file(path)


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


def _swap_in(tmp: str, path: Path) -> tuple[str, str] | None:
    """Put folder `tmp` at `path`, replacing what was there as one step where the OS allows.

    Returns:
      None when `path` was new; else (where the old set is now, the folder to remove when it
      is no longer needed), so that the caller can drop it or put it back.
    """
    with signals.held():
        if not path.exists():
            os.rename(tmp, path)
            return None
        if _exchange(tmp, str(path)):  # tmp now holds the old set
            return tmp, tmp
        old = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.")
        os.rename(path, os.path.join(old, "set"))  # both renames with signals held
        os.rename(tmp, path)
        return os.path.join(old, "set"), old


def _put_folder(tmp: str, path: Path):
    """Swap folder `tmp` in at `path`: (undo, done), which put the old set back or drop it."""
    old = _swap_in(tmp, path)

    def undo():
        _remove(str(path))
        if old is not None:
            os.rename(old[0], path)
            if old[1] != old[0]:
                _remove(old[1])

    def done():
        if old is not None:
            _remove(old[1])

    return undo, done


def _put_file(tmp: str, path: Path):
    """Rename file `tmp` over `path`, keeping a hard link to the old file until `done`:
    (undo, done), which put the old file back (or remove a new one) or drop the link."""
    existed, keep = os.path.lexists(path), None
    if existed:
        keep = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.")
        try:
            os.link(path, os.path.join(keep, "file"), follow_symlinks=False)
        except OSError:  # no hard links here: the old file cannot be put back
            _remove(keep)
            keep = None
    try:
        os.replace(tmp, path)
    except OSError:
        if keep is not None:
            _remove(keep)
        raise

    def undo():
        if keep is not None:
            os.replace(os.path.join(keep, "file"), path)
            _remove(keep)
        elif not existed:
            os.unlink(path)

    def done():
        if keep is not None:
            _remove(keep)

    return undo, done


def _remove(path: str) -> None:
    """Remove a folder (or a link to one) without following links."""
    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` as a whole.

    Write every file of the set into the yielded folder. When the block ends normally a
    `MANIFEST` naming the files is added and the folder is moved to `path` (a folder from an
    earlier run is replaced in one step: Linux's ``renameat2(RENAME_EXCHANGE)``, or two
    renames with signals held); when it raises (an error, Ctrl-C) the temporary folder is
    removed and `path` is left as it was. Files already in `path` that the block does not
    write again are gone afterwards: the caller checks that `path` holds nothing else of the
    user's (`manifest`). A `path` that is a symbolic link to a folder is written through: the
    folder it points to is replaced, the link stays.

    Raises:
      WriteError: an ``OSError`` while making, filling or moving the folder, naming `path`.

    Examples:
      >>> import os, tempfile
      >>> out = os.path.join(tempfile.mkdtemp(), "set")
      >>> with atomic_dir(out) as tmp:
      ...     write_text(os.path.join(tmp, "a.txt"), "new")
      >>> sorted(os.listdir(out)), manifest(out)
      (['a.txt', 'manifest.json'], ['a.txt'])
    """
    with together() as outputs:
        yield outputs.folder(path)


# --------------------------------------------------------------------------- manifests

#: The file naming what a command wrote into an output folder, so that a later run replaces
#: that folder only when it holds nothing else (JSON: ``{"written_by": ..., "files": [...]}``).
MANIFEST = "manifest.json"


def _write_manifest(folder: str) -> None:
    """Name every entry of `folder` (its own name aside) in its `MANIFEST`."""
    names = sorted(e for e in os.listdir(folder) if e != MANIFEST)
    doc = {"written_by": "functional-fit", "files": names}
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.chmod(os.path.join(folder, MANIFEST), 0o666 & ~_umask())


def manifest(folder) -> list[str] | None:
    """The names that `folder`'s `MANIFEST` lists; None when it has none (or not a readable one).

    Args:
      folder: a folder written by `atomic_dir` (or any folder).
    """
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return files


# --------------------------------------------------------------------------- several outputs


class Outputs:
    """The outputs of one command, each written to a temporary beside it until `together` ends.

    `file` and `folder` make the temporary and return its path; the caller writes there.
    """

    def __init__(self):
        self.staged = []  # [(temporary, final path, "file" or "folder")], in order

    def file(self, path) -> str:
        """A temporary file beside `path` (same suffix, so writers that go by it behave), or
        beside the file a symbolic link `path` names: the link is written through, as ``open``
        would, and stays a link."""
        path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                       suffix=path.suffix)
            os.close(fd)
        except OSError as exc:
            raise _write_error(exc, path) from None
        self.staged.append((tmp, path, "file"))
        return tmp

    def folder(self, path) -> str:
        """A temporary folder beside `path`, or beside the folder a symbolic link `path` names."""
        path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")
            os.chmod(tmp, 0o777 & ~_umask())
        except OSError as exc:
            raise _write_error(exc, path) from None
        self.staged.append((tmp, path, "folder"))
        return tmp

    def commit(self) -> None:
        """Move every output into place, with signals held so that all of the renames finish.

        A rename that fails puts back what the earlier ones replaced, so that none lands.
        """
        with signals.held():
            for tmp, _, kind in self.staged:
                if kind == "folder":
                    _write_manifest(tmp)
                else:
                    os.chmod(tmp, 0o666 & ~_umask())
            moved = []
            try:
                for tmp, path, kind in self.staged:
                    moved.append((_put_folder if kind == "folder" else _put_file)(tmp, path))
            except OSError:
                for undo, _ in reversed(moved):
                    with contextlib.suppress(OSError):
                        undo()
                raise
            for _, done in moved:
                done()

    def discard(self) -> None:
        """Remove every temporary that is still there."""
        with signals.held():
            for tmp, _, kind in self.staged:
                if kind == "folder":
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)

    def named(self, exc: OSError) -> WriteError:
        """`exc` naming the output as the user knows it, not its temporary name."""
        if isinstance(exc, WriteError):
            return exc
        name = str(getattr(exc, "filename", None) or "")
        for tmp, path, _ in self.staged:
            if name == tmp or name.startswith(tmp + os.sep):
                name = str(path) + name[len(tmp):]
                break
        else:
            name = str(self.staged[-1][1])  # the output being written
        return WriteError(exc.errno or errno.EIO, exc.strerror or str(exc), name)


@contextlib.contextmanager
def together():
    """All of a command's outputs, or none: yield `Outputs`; each lands only when all are written.

    Write each output to the temporary that ``outputs.file(path)`` or ``outputs.folder(path)``
    returns. When the block ends normally every one is renamed into place, one after another
    with SIGINT, SIGTERM and SIGHUP held; when it raises (an error, a signal, a full disk while
    the last figure is written) every temporary is removed and no output is touched.

    Raises:
      WriteError: an ``OSError`` while writing or moving an output, naming that output.

    Examples:
      >>> import os, tempfile
      >>> d = tempfile.mkdtemp()
      >>> with together() as outputs:
      ...     write_text(outputs.file(os.path.join(d, "a.txt")), "a")
      ...     write_text(outputs.file(os.path.join(d, "b.txt")), "b")
      >>> sorted(os.listdir(d))
      ['a.txt', 'b.txt']
    """
    outputs = Outputs()
    try:
        yield outputs
        signals.check()  # an interrupted run writes nothing
        outputs.commit()
    except BaseException as exc:  # a signal included: leave nothing behind
        outputs.discard()
        if isinstance(exc, OSError) and outputs.staged:
            raise outputs.named(exc) from None
        raise


__all__ = ["MANIFEST", "Outputs", "WriteError", "atomic_dir", "atomic_path", "interrupted",
           "manifest", "together", "write_text"]

"""Writing files atomically: a reader (or an interrupted run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.

    The temporary file keeps the suffix of `path`, so writers that choose a format by suffix
    (``numpy.savez``, ``Figure.savefig``) behave as they would on `path` itself.

    Examples:
      >>> import numpy as np, tempfile, os
      >>> out = os.path.join(tempfile.mkdtemp(), "a.npy")
      >>> with atomic_path(out) as tmp:
      ...     np.save(tmp, np.zeros(3))
      >>> np.load(out).shape
      (3,)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: leave nothing behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)

"""Ctrl-C for the command: one line and exit status 130, never a traceback, never half an output.

- While the command starts (its imports, parsing the options) nothing is written yet: a SIGINT
  ends the process at once (`exit_at_once`), rather than raising inside an import.
- While it runs, a SIGINT raises ``KeyboardInterrupt`` (`raise_interrupt`), which the command
  reports; it is also recorded in `interrupted`, because Python drops an exception raised
  inside a garbage-collector callback or a ``__del__`` ("Exception ignored"). Every commit of
  an output (`functional_fit_cli.files`) and every progress update checks it first.
- `held` blocks SIGINT and SIGTERM while a few renames or a clean-up run, so they finish.

This is the application's state, not the library's: `functional_fit` installs no handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: Set when the command is interrupted; cleared when `functional_fit_cli.main` returns.
interrupted = threading.Event()


def exit_at_once(signum, frame):
    """SIGINT while the command starts: one line, exit status 130, nothing to undo."""
    sys.stderr.write("functional-fit: interrupted\n")
    os._exit(130)


def raise_interrupt(signum, frame):
    """SIGINT while the command runs: recorded in `interrupted`, raised as KeyboardInterrupt."""
    interrupted.set()
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt when a Ctrl-C was recorded (and perhaps dropped on its way)."""
    if interrupted.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def held():
    """Hold SIGINT (and SIGTERM) while a few renames or a clean-up run, so they finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def on_main_thread() -> bool:
    """Whether handlers can be installed here (only the main thread may)."""
    return threading.current_thread() is threading.main_thread()

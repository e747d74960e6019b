"""Signals for the command: one line and exit status 128 + the signal's number, never a
traceback, never half an output.

Ctrl-C (SIGINT), ``kill`` (SIGTERM) and a closed terminal (SIGHUP) are treated alike
(`HANDLED`); a signal that the process inherited as ignored (``nohup``) stays ignored.

- While the command starts (its imports, parsing the options) nothing is written yet: a signal
  ends the process at once (`exit_at_once`), rather than raising inside an import.
- While it runs, a signal raises `Interrupted`, a ``KeyboardInterrupt`` (`raise_interrupt`),
  which the command reports; it is also recorded in `interrupted`, because Python drops an
  exception raised inside a garbage-collector callback or a ``__del__`` ("Exception ignored").
  Every commit of an output (`functional_fit_cli.files`) and every progress update checks it
  first (`check`).
- `held` blocks these signals while a few renames or a clean-up run, so they finish.

This is the application's state, not the library's: `functional_fit` installs no handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: The signals that stop the command cleanly: Ctrl-C, ``kill``, a closed terminal.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Set when the command is interrupted; cleared when `functional_fit_cli.main` returns.
interrupted = threading.Event()
#: The number of the signal recorded in `interrupted` (SIGINT until one is received).
_received = [signal.SIGINT]


class Interrupted(KeyboardInterrupt):
    """The command was stopped by signal `signum` (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


def status(signum: int) -> int:
    """The exit status of a process stopped by `signum`, as the shell reports it: 128 + signum."""
    return 128 + int(signum)


def describe(signum: int) -> str:
    """``"interrupted"`` for Ctrl-C, ``"interrupted by SIGTERM"`` for another signal."""
    if signum == signal.SIGINT:
        return "interrupted"
    return f"interrupted by {signal.Signals(signum).name}"


def exit_at_once(signum, frame):
    """A signal while the command starts: one line, exit status 128 + signum, nothing to undo."""
    sys.stderr.write(f"functional-fit: {describe(signum)}\n")
    os._exit(status(signum))


def raise_interrupt(signum, frame):
    """A signal while the command runs: recorded in `interrupted`, raised as `Interrupted`."""
    _received[0] = signum
    interrupted.set()
    raise Interrupted(signum)


def check() -> None:
    """Raise `Interrupted` when a signal was recorded (and perhaps dropped on its way)."""
    if interrupted.is_set():
        raise Interrupted(_received[0])


def clear() -> None:
    """Forget a recorded signal: the process goes on (a test, a notebook), writes work again."""
    interrupted.clear()
    _received[0] = signal.SIGINT


def install(handler) -> dict:
    """Set `handler` for each of `HANDLED` that is not ignored; the previous handlers, to restore.

    A signal ignored when the process started (``nohup`` ignores SIGHUP) stays ignored.
    """
    previous = {}
    for signum in HANDLED:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers that `install` returned."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def held():
    """Hold `HANDLED` signals while a few renames or a clean-up run, so they finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(HANDLED))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def on_main_thread() -> bool:
    """Whether handlers can be installed here (only the main thread may)."""
    return threading.current_thread() is threading.main_thread()

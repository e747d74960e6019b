"""One part of the comparison in a second process, while this one does another.

The lecture's two sides are independent until they are compared: the JAX side (compiled
fits, surfaces, the figures of JAX's fits) and the torch side (the lecture's Python loops).
Both are mostly Python holding the GIL, so threads would take turns; two processes use the
machine's two cores. `start(fn, ...)` runs ``fn(...)`` in a process started with "spawn"
(forking a process whose JAX threads are running can deadlock), handing it this process's
JAX settings (64-bit mode, the compilation cache, rank and dtype promotion), which a new
process would not otherwise have; `Background.result()` waits for what ``fn`` returned. Its
numbers are the ones ``fn`` would have computed here: the same code, compiled with the same
settings.

The torch side stays in the calling process: it is the longer of the two, and the caller has
already paid for importing torch; the second process pays for its own imports (torch, JAX,
matplotlib) while the torch loops run. That pays only where a core is free for it: on two
cores, shared with other work, the lecture is slower in two processes than in one
(BENCHMARKS.md, lecture), so `worthwhile` says yes only with more than two cores.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os

import jax

from functional_fit.checks import InputError

#: JAX settings handed to the second process, beside 64-bit mode (read as the caller sees it,
#: inside a ``with functional_fit.float64():`` block too).
JAX_SETTINGS = (
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
    "jax_default_matmul_precision",
)


def worthwhile() -> bool:
    """Whether a second process is likely to pay: more than two cores are there for this one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        cores = os.cpu_count() or 1
    return cores > 2


def _settings() -> dict:
    values = {name: jax.config.values[name] for name in JAX_SETTINGS if name in jax.config.values}
    values["jax_enable_x64"] = bool(jax.config.read("jax_enable_x64"))
    return values


def _child(send, fn, args, kwargs, settings) -> None:
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        out = fn(*args, **kwargs)
        for value in (out if inspect.isgenerator(out) else [out]):
            send.send((True, value))  # each as soon as it is ready
    except InputError as exc:  # sent as text: DivergenceError does not pickle
        send.send((False, str(exc)))
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; the parent handles it and ends this process,
        # which must not print a traceback of its own.
        os._exit(130)
    send.close()


class Background:
    """``fn(*args, **kwargs)`` running in a second process (`start`)."""

    def __init__(self, process, receive):
        self._process, self._receive = process, receive

    def result(self):
        """Wait for ``fn``'s result, or for the next value it yields if it is a generator.

        An `InputError` raised by ``fn`` (a divergence, say) is raised here.
        """
        try:
            ok, payload = self._receive.recv()
        except EOFError:
            self.cancel()
            raise RuntimeError("the second process of the lecture ended without a result "
                               f"(exit code {self._process.exitcode})") from None
        except BaseException:  # KeyboardInterrupt included: do not leave the process behind
            self.cancel()
            raise
        if not ok:
            self.close()
            raise InputError(payload)
        return payload

    def close(self) -> None:
        """Wait for the process to end (after its last result)."""
        self._receive.close()
        self._process.join()

    def cancel(self) -> None:
        """End the process now, if it still runs."""
        self._process.terminate()
        self.close()


class _Here(Background):
    """``fn`` run in this process, where no second one could be started."""

    def __init__(self, fn, args, kwargs):
        self._call, self._values = (fn, args, kwargs), None

    def result(self):
        if self._values is None:
            fn, args, kwargs = self._call
            out = fn(*args, **kwargs)
            self._values = out if inspect.isgenerator(out) else iter([out])
        return next(self._values)

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        pass


def start(fn, *args, **kwargs) -> Background:
    """Start ``fn(*args, **kwargs)`` in a second process; `Background.result()` waits for it.

    `fn` and its arguments must pickle (a module-level function, numpy arrays, plain values).
    A generator function sends each value it yields as soon as it is ready: one
    `Background.result()` call for each. Where no process can be started, ``fn`` runs in this
    one when `result` is called.
    """
    ctx = multiprocessing.get_context("spawn")
    try:
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_child, args=(send, fn, args, kwargs, _settings()),
                              daemon=True)
        process.start()
    except OSError:
        return _Here(fn, args, kwargs)
    send.close()
    return Background(process, receive)


__all__ = ["Background", "JAX_SETTINGS", "start", "worthwhile"]

"""Ctrl-C and SIGTERM while compiled code runs: deferred to the moment it returns.

Python's own SIGINT handler raises KeyboardInterrupt wherever signals are next checked,
and a numba-compiled function checks them inside itself: the exception is then set while
the compiled code goes on, and the process ends in "SystemError: CPUDispatcher(...)
returned a result with an exception set" or, worse, a segmentation fault. `install()`
replaces the SIGINT and SIGTERM handlers with one that raises at once outside
`enter()`/`leave()` sections and, inside one, only records the signal: `leave()` raises it
as soon as the compiled call has returned. SIGINT raises KeyboardInterrupt, SIGTERM
`Terminated` (a KeyboardInterrupt, so the same clean-up runs; its `exit_status` is 143,
128 + 15, as a shell reports a process ended by SIGTERM).

Only the main thread runs signal handlers, and an exception raised there interrupts only
the main thread, so only the main thread's sections count: a section opened in another
thread changes nothing (its compiled call is never interrupted), and `leave()` in another
thread never raises the main thread's interrupt. The counter is therefore the main
thread's alone and needs no lock. A section costs two calls and a comparison (a fraction
of a microsecond); without `install()` (a library user's process) sections change nothing.

`uninstall()` (or the context manager `handling()`) puts back the handlers found by
`install()`, for a library that wants this only around its own work.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler's stop), handled as Ctrl-C."""

    exit_status = 128 + signal.SIGTERM


_depth = 0          # open sections of the main thread
_pending = None     # the signal that came inside a section, raised by leave()
_previous: dict = {}  # handlers replaced by install(), by signal number


def _raise(signum) -> None:
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _on_signal(signum, frame):
    # runs in the main thread, between two of its bytecodes: one that lands inside enter()
    # before its store raises before the compiled call starts; one inside leave() before
    # its store is left pending and raised by that leave()
    global _pending
    if _depth:
        _pending = signum   # raised by leave(), once the compiled call has returned
        return
    _raise(signum)


def installed() -> bool:
    """Whether this process' SIGINT handler is ours (`install()` and no `uninstall()`)."""
    return signal.getsignal(signal.SIGINT) is _on_signal


def install() -> None:
    """Take over SIGINT and SIGTERM in this process; only from its main thread, elsewhere
    nothing. The handlers found are kept for `uninstall()`."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current is not _on_signal:
            _previous[signum] = current
        signal.signal(signum, _on_signal)


def uninstall() -> None:
    """Put back the handlers `install()` replaced (from the main thread; elsewhere
    nothing). A signal still pending is dropped."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, handler in list(_previous.items()):
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        del _previous[signum]
    _pending = None


@contextlib.contextmanager
def handling():
    """`install()` for the duration of a `with` block, then `uninstall()`."""
    install()
    try:
        yield
    finally:
        uninstall()


def _in_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def enter() -> None:
    """A compiled call starts: a signal to the main thread now waits for `leave()`."""
    global _depth
    if _in_main_thread():
        _depth += 1


def leave() -> None:
    """The compiled call has returned: raise the interrupt that came meanwhile, if any."""
    global _depth, _pending
    if not _in_main_thread():
        return
    _depth -= 1
    if _pending is not None and not _depth:
        signum, _pending = _pending, None
        _raise(signum)


__all__ = ["install", "uninstall", "handling", "installed", "enter", "leave", "Terminated"]

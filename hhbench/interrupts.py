"""Ctrl-C while compiled code runs: deferred to the moment it returns.

Python's own SIGINT handler raises KeyboardInterrupt wherever signals are next checked,
and a numba-compiled function checks them inside itself: the exception is then set while
the compiled code goes on, and the process ends in "SystemError: CPUDispatcher(...)
returned a result with an exception set" or, worse, a segmentation fault. `install()`
(called by the command line, in the main thread) replaces the handler with one that raises
KeyboardInterrupt at once outside `compiled()` sections and, inside one, only records the
interrupt: `leave()` raises it as soon as the compiled call has returned. A section costs
two calls and a counter (a fraction of a microsecond); without `install()` (a library user's
process) the sections change nothing.
"""

from __future__ import annotations

import signal
import threading

_depth = 0
_pending = False


def _on_sigint(signum, frame):
    global _pending
    if _depth:
        _pending = True   # raised by leave(), once the compiled call has returned
        return
    raise KeyboardInterrupt


def install() -> None:
    """Take over SIGINT, and SIGTERM (a `kill`, a job scheduler's stop: handled as Ctrl-C,
    so workers are stopped and nothing is left half-written), in this process; only from
    its main thread, elsewhere nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        signal.signal(signal.SIGTERM, _on_sigint)


def enter() -> None:
    """A compiled call starts: an interrupt now waits for `leave()`."""
    global _depth
    _depth += 1


def leave() -> None:
    """The compiled call has returned: raise the interrupt that came meanwhile, if any."""
    global _depth, _pending
    _depth -= 1
    if _pending and not _depth:
        _pending = False
        raise KeyboardInterrupt


__all__ = ["install", "enter", "leave"]

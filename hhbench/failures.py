"""One policy for what goes wrong with one backend on one device.

Whatever happens while a backend is resolved to a device, prepared or run becomes a
recorded line (a case, a floor line, a scaling series, a lab row), never a lost section
or an aborted command:
  * `CannotRunHere` (its runtime is missing, sees no such device, or the backend does not
    run on that kind of device): status "skipped", with the exception's words;
  * any other exception: status "failed", with its type and first line.
Bad input (an `HHBenchError` that is not `CannotRunHere`) is checked before any work
starts and stops the command (exit 2) there; once work has started it is "failed" too.
"""

from __future__ import annotations

from dataclasses import dataclass

from hhbench.errors import CannotRunHere

#: the longest reason recorded (a compiler's error can run to pages)
MAX_REASON = 300


@dataclass(frozen=True)
class NotRun:
    """Why a backend did not run on a device: status "skipped" or "failed", and a reason."""

    status: str
    reason: str

    def __str__(self):
        return self.reason


def words(exc: BaseException) -> str:
    """The exception in one line: its own words for CannotRunHere, else "Type: first line"."""
    text = str(exc).strip()
    first = text.splitlines()[0][:MAX_REASON] if text else ""
    if isinstance(exc, CannotRunHere):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def not_run(exc: BaseException) -> NotRun:
    """The recorded line of an exception met while resolving, preparing or running."""
    return NotRun("skipped" if isinstance(exc, CannotRunHere) else "failed", words(exc))


__all__ = ["NotRun", "not_run", "words", "MAX_REASON"]

"""Errors and warnings that hhbench reports to its users.

`HHBenchError` is raised for bad input (an unknown backend, a NaN current, a missing
file ...). Its message is a single line meant for a person; the command line prints it
on stderr and exits with status 2, without a traceback.
"""


class HHBenchError(ValueError):
    """Bad input or an impossible request, explained in one line."""


class CannotRunHere(HHBenchError):
    """A backend cannot run here, or not on the device asked for: its runtime is missing,
    sees no such device, or the backend does not run on that kind of device. The one
    exception for it: the harness records the case (or line, or series) as skipped with
    these words and goes on with the others."""


class DivergenceWarning(RuntimeWarning):
    """An integrator overflowed (went non-finite) on at least one trace."""

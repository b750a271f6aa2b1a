"""Errors and warnings that hhbench reports to its users.

`HHBenchError` is raised for bad input (an unknown backend, a NaN current, a missing
file ...). Its message is a single line meant for a person; the command line prints it
on stderr and exits with status 2, without a traceback.
"""


class HHBenchError(ValueError):
    """Bad input or an impossible request, explained in one line."""


class DivergenceWarning(RuntimeWarning):
    """An integrator overflowed (went non-finite) on at least one trace."""

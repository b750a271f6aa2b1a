"""What every asv benchmark shares: the same cases as `hhbench run` (hhbench.suite)."""

from hhbench import threads
from hhbench.backends import backend_classes
from hhbench.suite import SuiteConfig

# the thread pools `hhbench run`'s workers use (numba's layer, OpenMP waiting), set before
# any pool starts, so that asv times the same configuration
threads.apply()

#: the CPU backends the benchmarks time (the default `hhbench run` is every installed
#: backend; odeint-lab is timed against odeint in bench_kernels, the GPU backends in
#: their own reports), on the stimuli and batches of the default run
BACKENDS = ["numpy", "numba", "odeint", "exp-euler", "reference", "cnn"]
STIMULI = list(SuiteConfig().stimuli)
BATCHES = list(SuiteConfig().batches)


def skip_if_unavailable(backend: str) -> None:
    """asv skips a benchmark whose setup raises NotImplementedError."""
    cls = backend_classes()[backend]
    if not cls.is_available():
        raise NotImplementedError(f"{backend} needs {cls.requires}")
    if "model" in cls.option_defaults:  # a surrogate: its model must be found too
        from hhbench.errors import HHBenchError
        try:
            from hhbench.model_location import locate_model
            locate_model()
        except HHBenchError as exc:
            raise NotImplementedError(str(exc)) from None

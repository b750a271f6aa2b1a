"""hhbench: benchmark Hodgkin-Huxley simulators and CNN surrogates — latency and accuracy.

The few names most users need:
    stimuli: step, sine, white_noise, Stimulus
    backends: get_backend(name, **options), backend_names()
    the suite: SuiteConfig, run_suite(config) -> RunResults, load_results(path) -> DataFrame
"""

from hhbench.backends import backend_names, get_backend
from hhbench.errors import DivergenceWarning, HHBenchError
from hhbench.results import RunResults, load_results
from hhbench.stimuli import Stimulus, sine, step, white_noise
from hhbench.suite import SuiteConfig, run_suite

__version__ = "0.1.0"

__all__ = ["Stimulus", "step", "sine", "white_noise", "get_backend", "backend_names",
           "SuiteConfig", "run_suite", "RunResults", "load_results", "HHBenchError",
           "DivergenceWarning", "__version__"]

"""Warm time per call of every backend × stimulus × batch, with the accuracy attached.

Groups are the stimuli; ids say backend and batch (e.g. ``numba-b16``). Each benchmark is
warmed up (compiled, traced) before pytest-benchmark starts its rounds, and its
`extra_info` holds the accuracy against the converged reference, so a saved run carries
both speed and accuracy. Cases come from `hhbench.suite`, as for `hhbench run` and asv.
"""

import pytest

from hhbench.backends import backend_classes
from hhbench.suite import SuiteConfig, accuracy, cached_reference, case_stimulus, make_backend
from hhbench.timing import finish

CONFIG = SuiteConfig(backends=("numpy", "numba", "odeint", "exp-euler", "reference",
                               "cnn"))
# forward Euler diverges on the lab's sine: recorded in extra_info["diverged"] instead
pytestmark = pytest.mark.filterwarnings("ignore::hhbench.errors.DivergenceWarning")


def _backend(name):
    cls = backend_classes()[name]
    if not cls.is_available():
        pytest.skip(f"{name} needs {cls.requires}")
    return make_backend(name, device="cpu")


@pytest.mark.parametrize("batch", CONFIG.batches, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("backend", CONFIG.backends)
@pytest.mark.parametrize("stimulus", CONFIG.stimuli)
def test_simulate(benchmark, stimulus, backend, batch):
    sim = _backend(backend)
    stim = case_stimulus(stimulus, batch)
    sim.prepare()
    finish(sim.run(stim))  # compile / trace before timing

    def call():
        result = sim.run(stim)
        finish(result)
        return result

    benchmark.group = stimulus
    result = benchmark(call)
    acc = accuracy(result, cached_reference(stimulus, batch))
    benchmark.extra_info.update(
        backend=backend, stimulus=stimulus, batch=batch, device=result.device,
        reference="converged", diverged=bool(result.any_diverged),
        rmse_mv=acc["rmse_mv_median"], gamma=acc["gamma_median"],
        spike_count_error=acc["spike_count_abs_error_mean"])

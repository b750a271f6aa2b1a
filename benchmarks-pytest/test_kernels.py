"""pytest-benchmark cases of the HH kernels against their baselines: forward Euler (`numba`)
against the straightforward numba kernel (groups "euler-b1", "euler-b1024"), and `odeint`
against the lab's way `odeint-lab`, with `exp-euler` (groups "odeint-<stimulus>")."""

import pytest

from hhbench.backends import backend_classes
from hhbench.suite import case_stimulus, make_backend
from hhbench.timing import finish

pytestmark = pytest.mark.filterwarnings("ignore::hhbench.errors.DivergenceWarning")


def _available(name):
    cls = backend_classes()[name]
    if not cls.is_available():
        pytest.skip(f"{name} needs {cls.requires}")


@pytest.mark.parametrize("batch", [1, 1024], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("kernel", ["straightforward", "numba"])
def test_euler(benchmark, kernel, batch):
    _available("numba")
    stim = case_stimulus("noise", batch)
    if kernel == "numba":
        backend = make_backend("numba", device="cpu")
        backend.prepare()

        def call():
            finish(backend.run(stim))
    else:
        from hhbench.backends.compiled.baseline import run_straightforward

        def call():
            run_straightforward(stim.current_ua, stim.dt_ms)
    call()  # compile before timing
    benchmark.group = f"euler-b{batch}"
    benchmark.extra_info.update(kernel=kernel, batch=batch, neuron_steps=stim.current_ua.size)
    benchmark(call)


@pytest.mark.parametrize("backend", ["odeint", "odeint-lab", "exp-euler"])
@pytest.mark.parametrize("stimulus", ["step", "sine", "noise"])
def test_odeint(benchmark, stimulus, backend):
    _available(backend)
    sim = make_backend(backend, device="cpu")
    stim = case_stimulus(stimulus, 1)
    sim.prepare()
    finish(sim.run(stim))
    benchmark.group = f"odeint-{stimulus}"
    benchmark.extra_info.update(backend=backend, stimulus=stimulus)
    if backend == "odeint-lab" and stimulus != "step":
        # seconds per call: a few rounds are enough
        benchmark.pedantic(lambda: finish(sim.run(stim)), rounds=3, iterations=1)
    else:
        benchmark(lambda: finish(sim.run(stim)))

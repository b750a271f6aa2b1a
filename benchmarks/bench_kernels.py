"""asv benchmarks of the HH kernels against their baselines (the targets of the kernel report,
scripts/kernel_report.py): forward Euler (`numba`) against the straightforward numba kernel,
batched and on one trace; `odeint` against the lab's way (`odeint-lab`); `exp-euler`."""

import warnings

from hhbench.backends.compiled.baseline import run_straightforward, straightforward_euler
from hhbench.errors import DivergenceWarning
from hhbench.suite import case_stimulus, make_backend
from hhbench.timing import finish

from .common import skip_if_unavailable

warnings.simplefilter("ignore", DivergenceWarning)


class EulerKernel:
    """Warm time of forward Euler on noise: the `numba` backend against the straightforward
    kernel, for one trace and a batch of 1024 (the batch is the SIMD axis)."""

    params = (["straightforward", "numba"], [1, 1024])
    param_names = ["kernel", "batch"]
    timeout = 300

    def setup(self, kernel, batch):
        skip_if_unavailable("numba")
        self.stimulus = case_stimulus("noise", batch)
        if kernel == "numba":
            backend = make_backend("numba", device="cpu")
            backend.prepare()
            self.call = lambda: finish(backend.run(self.stimulus))
        else:
            straightforward_euler()
            self.call = lambda: run_straightforward(self.stimulus.current_ua, self.stimulus.dt_ms)
        self.call()

    def time_euler(self, kernel, batch):
        self.call()


class OdeintKernel:
    """Warm time of one trace: `odeint` (restarted LSODA, compiled right-hand side) against
    the lab's way (`odeint-lab`), and the gates-first `exp-euler`."""

    params = (["odeint", "odeint-lab", "exp-euler"], ["step", "sine", "noise"])
    param_names = ["backend", "stimulus"]
    timeout = 600
    repeat = (1, 5, 20.0)  # odeint-lab needs seconds per call on sine and noise

    def setup(self, backend, stimulus):
        skip_if_unavailable(backend)
        self.backend = make_backend(backend, device="cpu")
        self.stimulus = case_stimulus(stimulus, 1)
        self.backend.prepare()
        finish(self.backend.run(self.stimulus))

    def time_simulate(self, backend, stimulus):
        finish(self.backend.run(self.stimulus))

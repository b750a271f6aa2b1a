"""asv benchmarks: warm simulation time, cold start, peak memory, and accuracy tracks.

Every case is built by `hhbench.suite` (the functions `hhbench run` uses); set-up that is
expensive and not what is measured (loading the CNN, numba compilation, the reference
traces) happens in `setup` / `setup_cache`, never in the timed function.
"""

import numpy as np

from hhbench import stimuli
import warnings

from hhbench.backends import backend_classes, get_backend
from hhbench.errors import DivergenceWarning
from hhbench.suite import accuracy, cached_reference, case_stimulus, make_backend
from hhbench.timing import TimingSettings, finish, measure

from .common import BACKENDS, BATCHES, STIMULI, skip_if_unavailable

# forward Euler diverges on the lab's sine: that is recorded by the accuracy tracks, and the
# warning would only repeat in every timing process
warnings.simplefilter("ignore", DivergenceWarning)


class Simulate:
    """Warm time of one call (the backend prepared and called once before timing)."""

    params = (BACKENDS, STIMULI, BATCHES)
    param_names = ["backend", "stimulus", "batch"]
    timeout = 600
    # odeint needs seconds per call on noise: keep asv's sampling bounded
    repeat = (1, 5, 20.0)

    def setup(self, backend, stimulus, batch):
        skip_if_unavailable(backend)
        self.backend = make_backend(backend, device="cpu")
        self.stimulus = case_stimulus(stimulus, batch)
        self.backend.prepare()
        finish(self.backend.run(self.stimulus))  # compile / trace outside the timing

    def time_simulate(self, backend, stimulus, batch):
        finish(self.backend.run(self.stimulus))

    def peakmem_simulate(self, backend, stimulus, batch):
        self.backend.run(self.stimulus)


class ColdStart:
    """Set-up plus first call of a fresh backend in a fresh process: numba's on-disk cache
    load (numba compiles only when its cache is missing or stale), the CNN's model loading
    and tracing. Library imports happen in `setup`; the measurement is the harness' own
    cold timing, so no warm-up can leak into it."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 600

    def setup(self, backend):
        skip_if_unavailable(backend)
        self.stimulus = case_stimulus("step", 1)
        # importing a library is not part of a backend's cold start: import the runtime
        # the backend declares (TensorFlow, JAX, CUDA), else numba
        import importlib
        runtime = backend_classes()[backend].runtime_of()
        if runtime == "tensorflow":  # quietly, as hhbench imports it
            from hhbench.cnn import import_tensorflow
            import_tensorflow()
        else:
            importlib.import_module({"cuda": "numba.cuda", "jax": "hhbench.jax_runtime",
                                     None: "numba"}.get(runtime, runtime))

    def track_cold_start(self, backend):
        fresh = make_backend(backend, device="cpu")
        timing, _ = measure(lambda: (fresh.prepare(), fresh.run(self.stimulus))[1],
                            TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0))
        return timing.cold_s

    track_cold_start.unit = "seconds"


class Accuracy:
    """Accuracy against the converged reference (batch 1, the lab's stimuli). The whole
    backend × stimulus matrix is computed once in `setup_cache`; the tracks read it."""

    params = (BACKENDS, STIMULI)
    param_names = ["backend", "stimulus"]
    timeout = 900

    def setup_cache(self):
        table = {}
        for backend in BACKENDS:
            try:
                skip_if_unavailable(backend)
            except NotImplementedError:
                continue
            sim = make_backend(backend, device="cpu")
            for kind in STIMULI:
                table[backend, kind] = accuracy(sim.run(case_stimulus(kind, 1)),
                                                cached_reference(kind, 1))
        return table

    def setup(self, table, backend, stimulus):
        if (backend, stimulus) not in table:
            raise NotImplementedError(f"{backend} is not available here")
        self.acc = table[backend, stimulus]

    def track_rmse(self, table, backend, stimulus):
        return self.acc["rmse_mv_median"]

    track_rmse.unit = "mV"

    def track_spike_count_error(self, table, backend, stimulus):
        return self.acc["spike_count_abs_error_mean"]

    track_spike_count_error.unit = "spikes"

    def track_gamma(self, table, backend, stimulus):
        return self.acc["gamma_median"]

    track_gamma.unit = "coincidence factor"


class NumpyNumbaAgreement:
    """The largest |V_numpy − V_numba| (should stay ~1e-11 mV). The lab's 80 µA/cm² sine
    makes forward Euler diverge, and comparing runaway values says nothing: the sine here
    is the 20 µA/cm² one at 0.2 kHz, where Euler stays finite."""

    params = (STIMULI,)
    param_names = ["stimulus"]

    def setup(self, stimulus):
        skip_if_unavailable("numba")
        self.stimulus = (stimuli.sine(0.2, amplitude_ua=20.0).repeat(4) if stimulus == "sine"
                         else case_stimulus(stimulus, 4))

    def track_max_abs_diff(self, stimulus):
        a = get_backend("numpy").run(self.stimulus).v_batch
        b = get_backend("numba").run(self.stimulus).v_batch
        return float(np.max(np.abs(a - b)))

    track_max_abs_diff.unit = "mV"

"""`numba-cuda`: the engine's step kernels on an NVIDIA GPU, compiled with numba-cuda.

One CUDA thread per trace, the whole time loop inside the kernel, the state in registers;
the step is the model's, built by the same `model.build_kernels` as the CPU engine's (see
`cuda_engine`, which imports numba.cuda only when a kernel is built, and docs/gpu.md).
In float64 it equals the `numpy` backend within 1e-9 mV ("euler") and the CPU `exp-euler`
backend ("exp-euler"), with the same traces flagged diverged.

Options: `kernel`, any registered step kernel ("euler", the lab's method, by default);
`precision` "float64" or "float32" (arithmetic in float32 throughout; V comes back as
float32); `device` "gpu" or "gpu:N" (one GPU; "auto" resolves to the first GPU).
`run` is the round trip from host arrays to host arrays; `device_call` times the kernel
alone on a current already on the device. Under NUMBA_ENABLE_CUDASIM=1 numba's CUDA
simulator plays one GPU (slow: for tests).
"""

from __future__ import annotations

from hhbench.backends import kernels as kernel_registry
from hhbench.backends import register
from hhbench.backends.base import Backend
from hhbench.devices import parse_device
from hhbench.errors import CannotRunHere, HHBenchError
from hhbench.runtimes.numba_cuda import RUNTIME

#: what `precision` takes: the numba-cuda runtime's precisions
PRECISIONS = RUNTIME.precisions


@register
class NumbaCuda(Backend):
    name = "numba-cuda"
    summary = "the engine's step kernels on one NVIDIA GPU (numba-cuda): a thread per trace"
    # numba 0.68 still ships a deprecated numba.cuda of its own: the package is numba-cuda
    requires = ("numba", "numba_cuda")
    install_hint = "pip install 'hhbench[cuda]'"
    device_kinds = ("gpu",)
    runtime = "cuda"
    option_defaults = {"device": "gpu", "kernel": "euler", "precision": "float64"}
    option_choices = {"kernel": tuple(kernel_registry.kernel_classes()),
                      "precision": PRECISIONS}

    @classmethod
    def resolve_device(cls, request="auto", options=None) -> str:
        """As `Backend.resolve_device`, but "gpu:all" is CannotRunHere (the case is
        skipped): this backend runs on one GPU."""
        if parse_device(request).index == "all":
            raise CannotRunHere(f"{cls.name} runs on one GPU (gpu or gpu:N), not gpu:all")
        return super().resolve_device(request, options)

    def __init__(self, *, device: str = "gpu", kernel: str = "euler",
                 precision: str = "float64"):
        self.check_choices({"kernel": kernel, "precision": precision})
        self.kernel = kernel
        self.precision = precision
        # the harness passes a resolved device; a request made directly is resolved here
        # (CannotRunHere for "cpu"; and for a GPU numba-cuda does not see)
        self._device = self.resolve_device(device, {"kernel": kernel, "precision": precision})
        self._gpu = int(self._device.split(":", 1)[1])
        self._prepared = False

    @property
    def device(self) -> str:
        return self._device

    def prepare(self):
        if not self._prepared:
            from hhbench.backends import cuda_engine
            cuda_engine.compile_kernel(self.kernel, self.precision, self._gpu)
            self._prepared = True

    def settings(self) -> dict:
        from hhbench.backends import cuda_engine
        return {"kernel": self.kernel, "precision": self.precision, "device": self._device,
                "device_name": cuda_engine.device_name(self._gpu),
                "threads_per_block": cuda_engine.THREADS_PER_BLOCK,
                "simulator": cuda_engine.simulator_enabled(),
                "layout": "(samples, batch) on the device", "divergence": "on device"}

    def run(self, stimulus, *, gates=False):
        if gates:
            raise HHBenchError("backend 'numba-cuda' records V only, not the gates")
        self.prepare()
        from hhbench.backends import cuda_engine
        v, diverged = cuda_engine.integrate_marked(stimulus.current_ua, stimulus.dt_ms,
                                                   self.kernel, self.precision, 1, self._gpu)
        return self._result(stimulus, v, stimulus.t_ms, 0, diverged=diverged)

    def device_call(self, stimulus):
        """A zero-argument callable that launches the integration of `stimulus` from a
        current already on the GPU (copied, and the kernel compiled, now) into V's buffer
        there, copying nothing back: the "device only" time, once the harness has waited
        through the runtime (`hhbench.runtimes.device_only_call`); `run` is the round
        trip."""
        self.prepare()
        from hhbench.backends import cuda_engine
        return cuda_engine.DeviceRun(stimulus.current_ua, stimulus.dt_ms, self.kernel,
                                     self.precision, 1, self._gpu)

"""`jax`: the lab's forward Euler (or exponential Euler) in JAX, on the CPU or GPUs.

`jax.jit` around a `lax.scan` over time, vectorised over the traces, in float64 (x64
enabled locally, as a context around the engine's own work) or float32; `device` "gpu:all"
spreads the batch over every visible GPU. The engine (`jax_engine`, which imports JAX) is
imported only when the backend prepares or asks JAX about GPUs, so listing backends and
checking options stay JAX-free. See docs/gpu-jax.md.

Options: `kernel` "euler" (the lab's method on the fused rates, as the `numba` backend;
equal to `numpy` within 1e-9 mV in float64) or "exp-euler" (as the `exp-euler` backend);
`precision` "float64" or "float32"; `device` a request ("auto", "cpu", "gpu", "gpu:N",
"gpu:all"), resolved through JAX.
"""

from __future__ import annotations

from hhbench.backends import register
from hhbench.backends.base import Backend
from hhbench.devices import parse_device
from hhbench.runtimes.jax import RUNTIME

#: registered step kernels whose step traces with jnp (see jax_engine.JAX_STEPS)
KERNELS = ("euler", "exp-euler")
#: what `precision` takes: the JAX runtime's precisions
PRECISIONS = RUNTIME.precisions


@register
class JaxEuler(Backend):
    name = "jax"
    summary = "forward Euler (or exp-euler) in JAX: jit, lax.scan over time; CPU or GPUs"
    requires = ("jax",)
    install_hint = "pip install 'hhbench[jax]'"
    device_kinds = ("cpu", "gpu")
    runtime = "jax"
    option_defaults = {"device": "auto", "kernel": "euler", "precision": "float64"}
    option_choices = {"kernel": KERNELS, "precision": PRECISIONS}

    def __init__(self, *, device: str = "auto", kernel: str = "euler",
                 precision: str = "float64"):
        self.check_choices({"kernel": kernel, "precision": precision})
        self.kernel = kernel
        self.precision = precision
        # the harness passes a resolved device; a request made directly is resolved here
        # ("cpu" and "gpu:N" are checked too: a GPU JAX does not see is refused now)
        parse_device(device)
        self._device = self.resolve_device(device, {"kernel": kernel, "precision": precision})
        self._devices = None

    def prepare(self):
        if self._devices is None:
            from hhbench.backends import jax_engine
            self._devices = jax_engine.devices_for(self._device)

    @property
    def device(self) -> str:
        return self._device

    def settings(self) -> dict:
        self.prepare()
        import jax
        first = self._devices[0]
        return {"kernel": self.kernel, "precision": self.precision, "device": self._device,
                "jax": jax.__version__, "platform": first.platform,
                "device_kind": getattr(first, "device_kind", first.platform),
                "n_devices": len(self._devices),
                # TF32 applies to float32 matrix products and convolutions only: HH has none
                "tf32": False, "divergence": "on device"}

    def call_settings(self, batch: int) -> dict:
        from hhbench.backends import jax_engine
        out = self.settings()
        n_call = len(jax_engine.call_devices(self._devices, batch))
        out.update(call_devices=n_call, padded_batch=jax_engine.padded_batch(batch, n_call))
        return out

    def run(self, stimulus, *, gates=False):
        self.prepare()
        from hhbench.backends import jax_engine
        v, gate_arrays, diverged = jax_engine.integrate(
            stimulus.current_ua, stimulus.dt_ms, self.kernel, self.precision, self._devices,
            gates)
        return self._result(stimulus, v, stimulus.t_ms, 0, gate_arrays, diverged=diverged)

    def device_call(self, stimulus):
        """A zero-argument callable that runs `stimulus` on a current already on the
        device(s) (copied and compiled now), returning V there as JAX dispatches it,
        without copying it back: the "device only" time, once the harness has waited for
        it through the runtime (`hhbench.runtimes.device_only_call`); `run` is the round
        trip."""
        self.prepare()
        from hhbench.backends import jax_engine
        return jax_engine.device_call(stimulus.current_ua, stimulus.dt_ms, self.kernel,
                                      self.precision, self._devices)

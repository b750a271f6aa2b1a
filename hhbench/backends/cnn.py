"""`cnn`: the CNN surrogate (a lab model or hhbench's own), through TensorFlow or JAX.

Two runtimes run the same network from the same files:
  * "tensorflow": `hhbench.cnn.runner` (tf_keras loads the files; modes "lite", "compiled",
    "lab-graph", "predict"; precision is the fast graph's dtype: float32, float16,
    bfloat16, float64);
  * "jax": `hhbench.cnn.jaxgraph` (h5py reads the files, no TensorFlow; one jitted graph;
    precision float32 (convolutions at HIGHEST: no TF32), tf32 (TF32 on Ampere+ GPUs) or
    bfloat16; mode must stay "auto").
The option `runtime` chooses; "auto" (default) is TensorFlow when tensorflow, tf_keras and
h5py are installed, else JAX when jax and h5py are. The option `chunk` is the windows per
network call: None (default) puts every window of a call's batch through the network in
one call (the chunk follows the batch), a number caps it; either way no call takes more
windows than a quarter of the device's free memory holds, as the runtime reports it (8 GiB
assumed where it cannot: TensorFlow on a GPU) (`memory_chunk`, from the network's
per-window activations; `hhbench.cnn.windows.memory_chunk`). `settings()`
records the runtime that ran, the precision that applied, the device, the chunk asked
for, the memory bound and, after a run, the windows per network call and network calls
of the last run.

Its output covers the central window of the stimulus only (context cropped), so results
carry their own `t_ms`; compare with other backends on those samples.
"""

from __future__ import annotations

from hhbench.backends import register
from hhbench.backends.base import Backend
from hhbench.cnn.windows import check_chunk
from hhbench.cnn_modes import (STACKS, check_runtime_options, choose_runtime, module_found,
                                stacks_present)
from hhbench.devices import parse_device
from hhbench.errors import CannotRunHere, HHBenchError

INSTALL_HINT = "pip install 'hhbench[cnn]' (TensorFlow) or 'hhbench[jax]' (JAX)"


@register
class Cnn(Backend):
    name = "cnn"
    summary = "CNN surrogate (lab's Keras model, TensorFlow or JAX), on the CPU or a chosen GPU"
    requires = STACKS["tensorflow"]  # or STACKS["jax"]: see is_available
    install_hint = INSTALL_HINT
    device_kinds = ("cpu", "gpu")
    runtime = "tensorflow"
    option_defaults = {"model": None, "device": "auto", "mode": "auto", "runtime": "auto",
                       "precision": "float32", "jit_compile": False, "chunk": None}
    #: set-up reuses a model this process already loaded from the same files (False: it
    #: reads them, as a user's first run does; set before `prepare`)
    share_model = True

    def __init__(self, *, model=None, device: str = "auto", mode: str = "auto",
                 runtime: str = "auto", input_scale: float | None = None,
                 output_scale: float | None = None, precision: str = "float32",
                 jit_compile: bool = False, chunk: int | None = None):
        self.runtime_request = runtime
        self.runtime_name = choose_runtime(runtime)
        check_runtime_options(self.runtime_name, mode=mode, precision=precision,
                              devices=(device,))
        #: windows per network call asked for (None: the batch's windows in one call)
        self.chunk = check_chunk(chunk)
        self.options = dict(model=model, device=device, mode=mode, input_scale=input_scale,
                            output_scale=output_scale)
        self.precision = precision
        # the fast graph's precision (float16 / bfloat16 are meant for GPUs) and XLA
        self.fast = dict(dtype=precision, impl="conv1d", jit_compile=jit_compile)
        self.runner = None

    # -- what the harness asks before any work ---------------------------------------------

    @classmethod
    def runtime_of(cls, options=None) -> str:
        return choose_runtime((options or {}).get("runtime", "auto"))

    def device_runtime(self):
        """The runtime that runs the network (TensorFlow or JAX, as chosen)."""
        from hhbench.runtimes import get_runtime
        return get_runtime(self.runtime_name)

    @classmethod
    def is_available(cls) -> bool:
        return any(stacks_present().values())

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if cls.is_available():
            return None
        missing = [m for m in dict.fromkeys(STACKS["tensorflow"] + STACKS["jax"])
                   if not module_found(m)]
        return (f"needs tensorflow, tf_keras and h5py (or jax and h5py, for the JAX "
                f"runtime): {', '.join(missing)} not installed; install with: {INSTALL_HINT}")

    @classmethod
    def check_options(cls, options, devices=()) -> dict:
        options = super().check_options(options, devices)
        request = options.get("runtime", "auto")
        runtime = choose_runtime(request)
        if request != "auto" and not stacks_present()[runtime]:
            raise HHBenchError(f"CNN runtime {runtime!r} needs {', '.join(STACKS[runtime])}, "
                               f"not all installed; install with: {INSTALL_HINT}")
        check_runtime_options(runtime, mode=options.get("mode", "auto"),
                              precision=options.get("precision", "float32"), devices=devices)
        check_chunk(options.get("chunk"))
        return options

    @classmethod
    def resolve_device(cls, request="auto", options=None) -> str:
        """As `Backend.resolve_device`; "gpu:all" is CannotRunHere (the case is
        skipped): the network runs on one device."""
        if parse_device(request).index == "all":
            raise CannotRunHere(f"{cls.name} runs on one device (cpu, gpu or gpu:N), "
                                     "not gpu:all")
        return super().resolve_device(request, options)


    # -- running ---------------------------------------------------------------------------

    def prepare(self):
        if self.runner is not None:
            return
        opts = self.options
        if self.runtime_name == "jax":
            from hhbench.cnn.jaxgraph import JaxRunner
            self.runner = JaxRunner(opts["model"], device=opts["device"],
                                    precision=self.precision, input_scale=opts["input_scale"],
                                    output_scale=opts["output_scale"],
                                    max_windows_per_call=self.chunk)
        else:
            from hhbench.cnn.fastgraph import FastGraphOptions
            from hhbench.cnn.runner import CnnRunner
            self.runner = CnnRunner(**opts, fast_options=FastGraphOptions(**self.fast),
                                    max_windows_per_call=self.chunk,
                                    share_model=self.share_model)
        # a batch's windows go through in one call only as far as the device's memory
        # allows (a million traces would not fit any card)
        from hhbench.cnn.windows import memory_chunk
        self.runner.memory_windows = memory_chunk(
            self.runner.activation_values(), self.device_runtime().memory_capacity(self.device))

    @property
    def device(self) -> str:
        if self.runner is None:
            return str(self.options["device"])
        if self.runtime_name == "jax":
            return self.runner.device
        from hhbench.cnn.devices import short_device_name
        # TensorFlow's "CPU:0" / "GPU:1" in hhbench's names, as every backend reports them
        kind, _, index = short_device_name(self.runner.last_device
                                           or self.runner.tf_device).partition(":")
        return "cpu" if kind.upper() == "CPU" else f"gpu:{index or 0}"

    def settings(self):
        self.prepare()
        r = self.runner
        common = {"runtime": self.runtime_name, "runtime_request": self.runtime_request,
                  "precision_request": self.precision, "device_request": r.device_request,
                  "input_scale": r.input_scale, "output_scale": r.output_scale,
                  "context": r.context, "window": r.window,
                  # windows per network call: asked for ("batch": all of a call's), and
                  # what the last run did
                  "chunk": "batch" if self.chunk is None else self.chunk,
                  "memory_chunk": r.memory_windows}
        if r.last_chunk is not None:
            common.update(windows_per_call=r.last_chunk, network_calls=r.last_calls)
        if self.runtime_name == "jax":
            import jax
            g = r.graph
            return {"model": r.loaded.source, **common, "precision": g.precision_applied,
                    "device": g.device_name, "jax_device": str(g.jax_device),
                    "mode": "jax", "mode_request": self.options["mode"],
                    "graph": f"jax ({g.transpose} transposed convolutions, jit/XLA)",
                    "jax_version": jax.__version__}
        return {"model": r.loaded.source, **common, "precision": self._tf_precision(),
                "device": self.device, "mode": r.mode, "mode_request": r.mode_request,
                "tf_device": r.tf_device, "graph": r.graph}

    def _tf_precision(self) -> str:
        """The fast graph's dtype; on a GPU, float32 says whether TensorFlow allows TF32."""
        dtype = self.precision if self.runner.graph.startswith("fast") else "float32"
        if dtype == "float32" and "GPU" in self.runner.tf_device.upper():
            import tensorflow as tf
            if tf.config.experimental.tensor_float_32_execution_enabled():
                return "float32 (TensorFlow allows TF32 on Ampere+ GPUs)"
        return dtype

    def trace_work(self, n_samples: int) -> dict:
        """The network's arithmetic for one trace of `n_samples`: per window, counted from
        the model's layers (TensorFlow: the loaded Keras model, `flops.count_flops`; JAX:
        its plan, `flops.plan_flops`), times the windows a trace of that length is cut
        into."""
        from hhbench.cnn.flops import count_flops, plan_flops
        from hhbench.cnn.windows import window_starts
        self.prepare()
        r = self.runner
        counts = plan_flops(r.graph.plan) if self.runtime_name == "jax" else count_flops(r.model)
        windows = len(window_starts(max(n_samples, r.window), r.window, r.out_len))
        graph = "jax" if self.runtime_name == "jax" else r.graph
        return {"matmul_flops": counts["matmul_flops"] * windows,
                "bias_adds": counts["bias_adds"] * windows,
                "activations": counts["activations"] * windows,
                "precision": self.matmul_precision(),
                "note": f"{graph}, {windows} window(s) per trace"}

    def matmul_precision(self) -> str:
        """What the matrix products computed in, in one word: float32, tf32, bfloat16,
        float16 or float64 (the floor takes the machine's rate in that precision)."""
        applied = (self.runner.graph.precision_applied if self.runtime_name == "jax"
                   else self._tf_precision())
        if applied == "tf32" or "allows TF32" in applied:  # TensorFlow's float32 on a GPU
            return "tf32"
        return applied.split()[0]  # "float32 (highest)", "float32 (tf32 asked; ...)" ...

    def device_call(self, stimulus):
        """JAX runtime: a function of no arguments running the network on the stimulus'
        windows already on the device, returning the outputs still on the device (no copy
        back; the harness waits for them through the runtime). None for TensorFlow."""
        if self.runtime_name != "jax":
            return None
        self.prepare()
        return self.runner.device_call(stimulus.current_ua)

    def run(self, stimulus, *, gates=False):
        self.prepare()
        out = self.runner.run(stimulus.current_ua, stimulus.fs_khz)
        return self._result(stimulus, out.v_mv, out.t_ms, out.first_sample, None,
                            {"padded_samples": out.padded_samples, "n_windows": out.n_windows,
                             "windows_per_call": out.windows_per_call,
                             "network_calls": out.network_calls,
                             "device": out.device, "runtime": self.runtime_name})

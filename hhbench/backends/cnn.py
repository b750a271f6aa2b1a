"""`cnn`: the CNN surrogate (a lab model or hhbench's own) through `hhbench.cnn.runner`.

Its output covers the central window of the stimulus only (context cropped), so results
carry their own `t_ms`; compare with other backends on those samples.
"""

from __future__ import annotations

from hhbench.backends import register
from hhbench.backends.base import Backend
from hhbench.cnn_modes import check_mode


@register
class Cnn(Backend):
    name = "cnn"
    summary = "CNN surrogate (Keras model, TensorFlow), on the CPU or a chosen GPU"
    requires = ("tensorflow", "tf_keras", "h5py")
    install_hint = "pip install 'hhbench[cnn]'"

    def __init__(self, *, model=None, device: str = "auto", mode: str = "auto",
                 input_scale: float | None = None, output_scale: float | None = None,
                 precision: str = "float32", jit_compile: bool = False):
        self.options = dict(model=model, device=device, mode=check_mode(mode, (device,)),
                            input_scale=input_scale,
                            output_scale=output_scale)
        # the fast graph's precision (float16 / bfloat16 are meant for GPUs) and XLA
        self.fast = dict(dtype=precision, impl="conv1d", jit_compile=jit_compile)
        self.runner = None

    def prepare(self):
        if self.runner is None:
            from hhbench.cnn.fastgraph import FastGraphOptions
            from hhbench.cnn.runner import CnnRunner
            self.runner = CnnRunner(**self.options, fast_options=FastGraphOptions(**self.fast))

    @property
    def device(self) -> str:
        if self.runner is None:
            return str(self.options["device"])
        from hhbench.cnn.devices import short_device_name
        return short_device_name(self.runner.last_device or self.runner.tf_device)

    def settings(self):
        self.prepare()
        r = self.runner
        return {"model": r.loaded.source, "mode": r.mode, "mode_request": r.mode_request,
                "device_request": r.device_request,
                "tf_device": r.tf_device, "input_scale": r.input_scale,
                "output_scale": r.output_scale, "context": r.context, "window": r.window,
                "graph": r.graph}

    def run(self, stimulus, *, gates=False):
        self.prepare()
        out = self.runner.run(stimulus.current_ua, stimulus.fs_khz)
        return self._result(stimulus, out.v_mv, out.t_ms, out.first_sample, None,
                            {"padded_samples": out.padded_samples, "n_windows": out.n_windows,
                             "device": out.device})

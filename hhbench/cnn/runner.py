"""Running a CNN surrogate on currents in µA/cm², returning V in mV on the right clock.

The runner owns everything between a stimulus and the network:
  * scaling: the network sees I·input_scale; V = output / output_scale (SPEC: 1e-3, 1e-2);
  * context: output sample k belongs to input sample k + context;
  * windows: a stimulus of N ≥ window samples is cut into windows of `window` samples
    whose outputs tile samples [context, N − context): window j starts at j·out_len, the
    last one is moved back to end at N, and of two overlapping outputs the earlier window
    keeps its samples. A stimulus shorter than the window is zero-padded on the right
    (`padded_samples` says how much) and its output trimmed to the stimulus (the cutting
    and stitching are `hhbench.cnn.windows`, shared with the JAX runner);
  * chunks: a call's windows go through the network `max_windows_per_call` at a time;
    None (default) is all of them in one network call, so the chunk follows the batch
    (`last_chunk` and `last_calls` say what the last run did);
  * device: everything runs under one TensorFlow device scope, and the device that
    produced the output is read back from TensorFlow (TensorFlow Lite runs on the CPU);
  * mode: "compiled" calls the fast graph of `hhbench.cnn.fastgraph` — the same network
    and weights on 1-D tensors, in a `tf.function` (traced once, batch dimension free);
    "lite" runs that fast graph through TensorFlow Lite's interpreter (XNNPACK; CPU only,
    float32, `hhbench.cnn.litegraph`), which is what wins on a CPU at small batches;
    "auto" (default) is "lite" on the CPU and "compiled" on a GPU or with options Lite
    does not run (another precision, XLA); "lab-graph" calls a `tf.function` over the
    lab's own Keras graph ((k, 1) Conv2D layers), kept so that the fast graph's speed-up
    stays measured; "predict" calls `model.predict` as the lab did. A model the fast
    graph cannot map (a Keras 3 file, another layer type) runs through the lab graph in
    "compiled" and "lite" modes; `graph` says which graph ran and why.
Asynchronous work (a GPU) is finished before `run` returns: the output is copied to NumPy.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hhbench.cnn import files, import_tensorflow
from hhbench.cnn.devices import short_device_name
from hhbench.cnn.windows import (CnnOutput, call_cap, check_chunk, check_rate, chunk_size,
                                 chunks, cut,
                                 stitch, window_starts)
from hhbench.cnn_modes import check_mode
from hhbench.errors import HHBenchError
from hhbench.model_location import locate_model

import_tensorflow()  # quietly, where installed (see hhbench.cnn)


class CnnRunner:
    """Load a model once, then run it on batches of currents.

    model: a path (lab folder or .keras file), a `files.LoadedModel`, or None for the
    default model. Scales given here override those stored with the model.
    fast_options: a `fastgraph.FastGraphOptions` (impl, dtype, XLA) for the fast graph.
    `mode_request` is the mode asked for, `mode` the one that runs ("auto" resolved).
    `max_windows_per_call`: windows per network call (None: all of a run's windows).
    """

    def __init__(self, model=None, *, device: str = "auto", mode: str = "auto",
                 input_scale: float | None = None, output_scale: float | None = None,
                 max_windows_per_call: int | None = None, fast_options=None,
                 share_model: bool = True):
        import tensorflow as tf

        from hhbench.cnn.devices import resolve_device

        self.max_windows_per_call = check_chunk(max_windows_per_call)
        #: the most windows a call may take in the device's memory (None: no bound set;
        #: `hhbench.cnn.windows.memory_chunk`, set by the backend)
        self.memory_windows: int | None = None
        #: windows per network call and network calls of the last run (None before one)
        self.last_chunk: int | None = None
        self.last_calls: int | None = None
        self.device_request = device
        self.tf_device = resolve_device(device)
        self.mode_request = mode
        self.mode = resolve_mode(mode, self.tf_device, fast_options)
        #: where the model came from (--model, HHBENCH_MODEL, package data, checkout)
        self.location = None if isinstance(model, files.LoadedModel) else locate_model(model)
        with tf.device(self.tf_device):
            # shared: this runner only runs the model, so a process' runners of one model
            # (`hhbench run` makes one per case) read and build it once; not shared where
            # the set-up must read the files, as a user's cold start does (the lab)
            self.loaded = model if self.location is None else files.load_model(
                self.location.path, shared_on=self.tf_device if share_model else None)
        self.model = self.loaded.keras_model
        meta = self.loaded.meta
        self.input_scale = float(input_scale if input_scale is not None else meta.input_scale)
        self.output_scale = float(output_scale if output_scale is not None else meta.output_scale)
        if not (self.input_scale > 0 and self.output_scale > 0):
            raise HHBenchError("input and output scales must be > 0")
        self.fs_khz = meta.fs_khz
        self.window = int(self.model.input_shape[1])
        self.out_len = int(self.model.output_shape[1])
        self.context = files.shape_context(self.model)
        self.lab_network = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, self.window, 1], tf.float32)])
        #: the compiled callables: `network` is what "lite", "compiled" and "lab-graph" call
        #: (the fast graph through TensorFlow Lite or in a tf.function, or the lab graph;
        #: `graph` says which), `lab_network` the lab graph always
        self.network, self.graph = self.lab_network, "lab"
        if self.mode in ("compiled", "lite"):
            self.network, self.graph = self._fast_graph(fast_options)
        self.last_device: str | None = None
        #: seconds of the first `run` (tracing, conversion for TensorFlow Lite, kernel choice,
        #: weight upload); None before it
        self.cold_start_s: float | None = None

    def _fast_graph(self, options):
        """(callable, description) of the fast graph, or of the lab graph with the reason
        the fast one could not be built."""
        from hhbench.cnn.fastgraph import FastGraph, FastGraphError, FastGraphOptions

        options = options or FastGraphOptions()
        if self.loaded.format != "keras2-folder":
            return self.lab_network, f"lab (fast graph: not built for {self.loaded.format} models)"
        try:
            graph = FastGraph(self.model, options, self.tf_device)
        except FastGraphError as exc:
            return self.lab_network, f"lab ({exc})"
        if self.mode == "lite":
            from hhbench.cnn.litegraph import LiteGraph
            lite = LiteGraph(graph)
            return lite, (f"fast ({options.impl}, {options.dtype}, TensorFlow Lite/XNNPACK, "
                          f"{lite.num_threads} threads)")
        xla = ", XLA" if options.jit_compile else ""
        return graph, f"fast ({options.impl}, {options.dtype}{xla})"

    # -- the network on whole windows --------------------------------------------------

    def predict_windows(self, x_scaled: np.ndarray) -> np.ndarray:
        """Network output for windows (n, window) of scaled input → (n, out_len), unscaled."""
        import tensorflow as tf

        outs = []
        cap = call_cap(self.max_windows_per_call, self.memory_windows)
        self.last_chunk = chunk_size(len(x_scaled), cap)
        with tf.device(self.tf_device):
            for chunk in chunks(x_scaled, cap):
                chunk = chunk[:, :, None]
                if self.mode == "lite" and self.network is not self.lab_network:
                    # TensorFlow Lite's interpreter: NumPy in, NumPy out, on the CPU
                    outs.append(self.network(chunk)[..., 0])  # it converts to float32
                    self.last_device = self.network.device
                elif self.mode != "predict":
                    y = self.network(tf.constant(chunk, tf.float32))
                    self.last_device = y.device
                    outs.append(y.numpy()[..., 0])  # .numpy() waits for the device
                else:
                    outs.append(self.model.predict(chunk, verbose=0,
                                                   batch_size=len(chunk))[..., 0])
                    # predict() hands back NumPy: where it ran is where the weights live
                    self.last_device = self.model.weights[0].device
        self.last_calls = len(outs)
        return np.concatenate(outs, axis=0)

    # -- stimulus in, V out --------------------------------------------------------------

    def window_starts(self, n_samples: int) -> list[int]:
        """Start index of each window covering a stimulus of n_samples ≥ window samples."""
        return window_starts(n_samples, self.window, self.out_len)

    def run(self, current_ua: np.ndarray, fs_khz: float | None = None) -> CnnOutput:
        """Run on a (batch, samples) or (samples,) current in µA/cm² (sampled at fs_khz,
        which must be the model's rate). The first call's duration is kept as
        `cold_start_s`."""
        if self.cold_start_s is None:
            start = time.perf_counter()
            out = self._run(current_ua, fs_khz)
            self.cold_start_s = time.perf_counter() - start
            return out
        return self._run(current_ua, fs_khz)

    def _run(self, current_ua, fs_khz) -> CnnOutput:
        check_rate(fs_khz, self.fs_khz)
        win = cut(current_ua, window=self.window, out_len=self.out_len, context=self.context,
                  input_scale=self.input_scale)
        y = self.predict_windows(win.x)
        v, t_ms = stitch(y, win, out_len=self.out_len, context=self.context,
                         output_scale=self.output_scale, fs_khz=self.fs_khz)
        return CnnOutput(v_mv=v, t_ms=t_ms, first_sample=self.context,
                         padded_samples=win.padded, n_windows=len(win.starts),
                         device=short_device_name(self.last_device),
                         windows_per_call=self.last_chunk, network_calls=self.last_calls)

    def warmup(self, batch: int = 1, calls: int = 1) -> None:
        """Run `calls` times on zeros of `batch` traces (tracing, kernel choice, upload), so
        that the next call is warm; the first of them sets `cold_start_s`."""
        zeros = np.zeros((batch, self.window))
        for _ in range(calls):
            self.run(zeros)

    # -- description ---------------------------------------------------------------------

    def receptive_field(self) -> dict:
        return receptive_field(self.model, self.fs_khz)

    def activation_values(self) -> int:
        """Values the network's leaf layers produce for one window (sum over layers of
        the per-window output size)."""
        total = 0
        for layer in iter_layers(self.model):
            shape = layer.output_shape
            shape = shape[0] if isinstance(shape, list) else shape
            total += int(np.prod([int(d) for d in shape[1:]]))
        return total

    def describe(self) -> dict:
        """Everything `hhbench model-info` prints, JSON-ready."""
        layers = list(iter_layers(self.model))
        return {"source": self.loaded.source, "format": self.loaded.format,
                "origin": self.location.origin if self.location else "a loaded model",
                "parameters": int(self.model.count_params()),
                "input_shape": list(self.model.input_shape),
                "output_shape": list(self.model.output_shape), "context": self.context,
                "input_scale": self.input_scale, "output_scale": self.output_scale,
                "fs_khz": self.fs_khz, "receptive_field": self.receptive_field(),
                "layers": [_layer_line(layer) for layer in layers],
                "device": self.tf_device, "mode": self.mode, "graph": self.graph}


def resolve_mode(mode: str, tf_device: str, fast_options) -> str:
    """The mode that runs: "auto" → "lite" on the CPU for the float32 fast graph without
    XLA, else "compiled"; an explicit "lite" elsewhere is refused."""
    from hhbench.cnn.fastgraph import FastGraphOptions
    from hhbench.cnn.litegraph import supports

    check_mode(mode, (tf_device,))
    plain = supports(fast_options or FastGraphOptions())
    if mode == "auto":
        return "lite" if "CPU" in tf_device.upper() and plain else "compiled"
    if mode == "lite" and not plain:
        raise HHBenchError("CNN mode 'lite' runs the float32 fast graph without XLA only; "
                           "use mode 'compiled' for another precision or XLA")
    return mode


def default_model_path() -> Path:
    """The model used when none is given: $HHBENCH_MODEL, else the shipped one (package
    data, or the repository's models/ in a checkout); see `hhbench.model_location`."""
    location = locate_model()
    if location.origin == "HHBENCH_MODEL" and not (
            location.path.is_file() or (location.path / files.WEIGHTS_FILE).exists()):
        raise HHBenchError(f"no CNN model at HHBENCH_MODEL={location.path}")
    return location.path


def iter_layers(model):
    """All leaf layers of a (possibly nested) Keras model, in order."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from iter_layers(layer)
        else:
            yield layer


def receptive_field(model, fs_khz: float) -> dict:
    """Receptive field of the encoder, read from the model's own strided convolutions.

    Walking the convolutions in order, r grows by (k − 1)·j and the jump j (input samples
    between neighbouring outputs) is multiplied by the stride s; for N identical layers this
    is Drakopoulos et al.'s r = (k − 1)(sᴺ − 1)/(s − 1) + 1.
    """
    from hhbench.cnn.description import receptive_field_of
    convs = [(int(layer.kernel_size[0]), int(layer.strides[0])) for layer in iter_layers(model)
             if type(layer).__name__ in ("Conv2D", "Conv1D")]
    return receptive_field_of(convs, fs_khz)


def _layer_line(layer) -> str:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        shape = "?"
    return f"{layer.name} ({type(layer).__name__}) {tuple(shape)} params={layer.count_params()}"


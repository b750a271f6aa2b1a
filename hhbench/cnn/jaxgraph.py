"""The CNN surrogate in JAX: the lab's network from its files, with no TensorFlow installed.

`JaxGraph` evaluates the steps of `hhbench.cnn.plan` (the lab's Keras 2 config, read with the
weights by `hhbench.cnn.h5weights`, h5py only) on (batch, length, channels) arrays — the
same 1-D graph as `fastgraph`, in one `jax.jit`-compiled function (traced once per batch
size; the weights are arguments, put on the device once):

  * a Conv2D with kernel (k, 1) is `lax.conv_general_dilated` over NWC / WIO with
    TensorFlow's "same" padding (the extra sample on the right);
  * a Conv2DTranspose (stride s) is, by default, the polyphase form of `fastgraph`: ONE
    stride-1 convolution with s·Cout output channels over the input padded by
    Q − 1 = ⌈k/s⌉ − 1 zeros on both sides, its phases interleaved by a reshape, then the
    window that Keras's "same" keeps (offset `left` of the full scatter of length (L − 1)·s + k);
    `transpose="dilated"` computes the same as a convolution of the input dilated by s (zeros
    between samples, `lhs_dilation`) with the flipped kernel — s times the work, kept as a
    check of the polyphase form.

Precision (`PRECISIONS`), and what `precision_applied` records:
  * "float32": float32 weights and activations, convolutions at `lax.Precision.HIGHEST`, so
    that a GPU does not use TF32 → "float32 (highest)";
  * "tf32": float32 with `Precision.DEFAULT`: TF32 (10-bit mantissa) on NVIDIA GPUs from
    Ampere on → "tf32"; a CPU, or an older GPU, computes float32 → "float32 (tf32 asked;
    the CPU has no TF32)";
  * "bfloat16": weights and activations in bfloat16, the output cast back to float32 →
    "bfloat16".

`JaxRunner` is the TensorFlow runner's counterpart: scaling, context, windows and stitching
are `hhbench.cnn.windows`, shared with it, so the samples are cut and stitched identically.
Devices: "cpu", "gpu", "gpu:N" or "auto" (a GPU when JAX sees one);
JAX is imported through `hhbench.jax_runtime`, set up by the JAX runtime
(`hhbench.runtimes.jax`: no preallocation of 75 % of the GPU's memory at start).
"""

from __future__ import annotations

import time

import numpy as np  # noqa: E402

from hhbench.cnn import windows as winlib  # noqa: E402
from hhbench.cnn.plan import Plan, build_plan, polyphase_kernel  # noqa: E402
from hhbench.cnn_modes import PRECISIONS as _PRECISIONS  # noqa: E402
from hhbench.cnn_modes import check_precision as _check_precision  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402

PRECISIONS = _PRECISIONS["jax"]
TRANSPOSES = ("polyphase", "dilated")


def _jax():
    from hhbench.jax_runtime import jax  # set up before its first use (see there)
    return jax


def check_precision(precision: str) -> str:
    return _check_precision("jax", precision)


def gpu_count() -> int:
    """GPUs JAX sees (0 when its GPU backend is absent or finds none)."""
    from hhbench.runtimes import get_runtime
    return get_runtime("jax").gpu_count()


def resolve_jax_device(request: str = "auto"):
    """(jax device, name "cpu" / "gpu:N") for a request; HHBenchError in one line when a GPU
    is asked for and JAX sees none, or not that one."""
    from hhbench.devices import parse_device, pick_gpu

    req = parse_device(request)
    jax = _jax()
    n_gpus = gpu_count() if req.kind != "cpu" else 0
    if req.kind == "cpu" or (req.kind == "auto" and n_gpus == 0):
        return jax.devices("cpu")[0], "cpu"
    if req.kind == "auto":
        return jax.devices("gpu")[0], "gpu:0"
    name = pick_gpu(req, n_gpus, "JAX")
    if name == "gpu:all":
        raise HHBenchError("device 'gpu:all' is not supported by the CNN's JAX runtime; "
                           "use gpu or gpu:N")
    return jax.devices("gpu")[int(name.split(":")[1])], name


def _prepare(plan: Plan, transpose: str) -> dict:
    """The weights each step uses, rearranged once in NumPy: {step name: {w, b}}."""
    params = {}
    for step in plan.steps:
        p = step.params
        if step.kind in ("conv", "dense"):
            params[step.name] = {"w": p["w"], "b": p["b"]}
        elif step.kind == "conv_transpose":
            if transpose == "polyphase":
                w = polyphase_kernel(p["w"], p["k"], p["s"])
            else:  # flipped taps, (k, Cin, Cout)
                w = np.ascontiguousarray(p["w"][::-1].transpose(0, 2, 1))
            params[step.name] = {"w": w, "b": p["b"]}
    return params


def _apply_activation(jnp, jax, name: str, x):
    if name == "linear":
        return x
    return {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu,
            "elu": jax.nn.elu, "softplus": jax.nn.softplus, "swish": jax.nn.silu,
            "silu": jax.nn.silu}[name](x)


def make_forward(plan: Plan, precision: str = "float32", transpose: str = "polyphase"):
    """forward(params, x) for x (batch, window, 1) float32 → (batch, *out_shape) float32;
    pure, to be jitted."""
    jax = _jax()
    import jax.numpy as jnp
    from jax import lax

    check_precision(precision)
    if transpose not in TRANSPOSES:
        raise HHBenchError(f"unknown transpose {transpose!r}; use {', '.join(TRANSPOSES)}")
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    prec = lax.Precision.HIGHEST if precision == "float32" else lax.Precision.DEFAULT
    dims = ("NWC", "WIO", "NWC")

    def conv(x, w, stride, pads, lhs_dilation=(1,)):
        return lax.conv_general_dilated(x, w, (stride,), [pads], lhs_dilation=lhs_dilation,
                                        dimension_numbers=dims, precision=prec)

    def bias_act(y, b, act):
        return _apply_activation(jnp, jax, act, y if b is None else y + b)

    def forward(params, x):
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
        values = {}
        batch = x.shape[0]
        for step in plan.steps:
            p, ins = step.params, [values[i] for i in step.inputs]
            kind = step.kind
            if kind == "input":
                values[step.name] = x.reshape(batch, *step.shape).astype(dtype)
                continue
            if kind == "reshape":
                y = ins[0].reshape(batch, *step.shape)
            elif kind == "conv":
                w = params[step.name]
                y = bias_act(conv(ins[0], w["w"], p["s"], p["pads"]), w["b"], p["act"])
            elif kind == "conv_transpose":
                w, k, s, left, n_out = (params[step.name], p["k"], p["s"], p["left"],
                                        p["n_out"])
                length = ins[0].shape[1]
                if transpose == "polyphase":
                    q_taps = -(-k // s)
                    y = conv(ins[0], w["w"], 1, (q_taps - 1, q_taps - 1))
                    y = y.reshape(batch, (length + q_taps - 1) * s, -1)[:, left:left + n_out]
                else:
                    # full scatter of length (L − 1)·s + k, window [left, left + n_out)
                    pad_left = k - 1 - left
                    pad_right = n_out - ((length - 1) * s + 1) - pad_left + k - 1
                    y = conv(ins[0], w["w"], 1, (pad_left, pad_right), lhs_dilation=(s,))
                y = bias_act(y, w["b"], p["act"])
            elif kind == "dense":
                w = params[step.name]
                y = bias_act(jnp.einsum("blc,cu->blu", ins[0], w["w"], precision=prec),
                             w["b"], p["act"])
            elif kind == "activation":
                y = _apply_activation(jnp, jax, p["act"], ins[0])
            elif kind == "concat":
                y = jnp.concatenate(ins, axis=-1)
            elif kind == "add":
                y = sum(ins[1:], ins[0])
            elif kind == "crop":
                y = ins[0][:, p["left"]:ins[0].shape[1] - p["right"]]
            else:  # pragma: no cover - plan.py makes no other kind
                raise HHBenchError(f"JAX graph: unknown step kind {kind}")
            values[step.name] = y
        return values[plan.output].astype(jnp.float32).reshape(batch, *plan.out_shape)

    return forward


def precision_applied(precision: str, device) -> str:
    """What the convolutions compute in, on `device` (see the module docstring)."""
    if precision == "float32":
        return "float32 (highest)"
    if precision == "bfloat16":
        return "bfloat16"
    if device.platform != "gpu" and device.platform != "cuda":
        return "float32 (tf32 asked; the CPU has no TF32)"
    cc = getattr(device, "compute_capability", None)
    try:
        if cc is not None and float(cc) < 8.0:
            return f"float32 (tf32 asked; compute capability {cc} has no TF32)"
    except ValueError:
        pass
    return "tf32"


class JaxGraph:
    """`graph(x)` for x (batch, window, 1) or (batch, window) of scaled input → the network's
    output (batch, *out_shape) float32 NumPy, computed on `device` ("cpu", "gpu", "gpu:N",
    "auto").

    model: a lab folder path or an `h5weights.LabModel`."""

    def __init__(self, model, *, precision: str = "float32", device: str = "auto",
                 transpose: str = "polyphase"):
        jax = _jax()
        from hhbench.cnn.h5weights import LabModel, read_lab_folder

        self.model = model if isinstance(model, LabModel) else read_lab_folder(model)
        self.plan = build_plan(self.model.config, self.model.weights)
        self.precision = check_precision(precision)
        self.transpose = transpose
        self.jax_device, self.device_name = resolve_jax_device(device)
        self.precision_applied = precision_applied(precision, self.jax_device)
        self.window, self.out_len = self.plan.window, self.plan.out_len
        self.params = jax.device_put(_prepare(self.plan, transpose), self.jax_device)
        self._fn = jax.jit(make_forward(self.plan, precision, transpose))

    def put(self, x):
        """`x` (batch, window[, 1]) as float32 on the graph's device."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[1:] != tuple(self.plan.in_shape):
            raise HHBenchError(f"JAX graph: input of shape {x.shape}, expected "
                               f"(batch, {self.window}, 1)")
        return _jax().device_put(x, self.jax_device)

    def apply(self, x_device):
        """The jitted network on an array already on the device (asynchronous)."""
        return self._fn(self.params, x_device)

    def __call__(self, x) -> np.ndarray:
        return np.asarray(self.apply(self.put(x)))

    def device_call(self, x):
        """A function of no arguments that runs the network on `x`, put on the device now,
        returning its output on the device as JAX dispatches it (the caller waits through
        the runtime's `synchronize`); nothing is copied back."""
        x_device = self.put(x)

        def call():
            return self.apply(x_device)
        return call


class JaxRunner:
    """The JAX counterpart of `hhbench.cnn.runner.CnnRunner`: load a lab folder once (h5py),
    then run it on batches of currents in µA/cm², returning V in mV on the right clock.

    Scales given here override those stored with the model. `max_windows_per_call` caps the
    windows of one call of the network (None, the default: all of a run's windows in one;
    each distinct number of windows is traced once); `last_chunk` and `last_calls` say
    what the last run did."""

    def __init__(self, model=None, *, device: str = "auto", precision: str = "float32",
                 input_scale: float | None = None, output_scale: float | None = None,
                 max_windows_per_call: int | None = None, transpose: str = "polyphase"):
        from hhbench.cnn.h5weights import LabModel, read_lab_folder
        from hhbench.model_location import locate_model

        self.max_windows_per_call = winlib.check_chunk(max_windows_per_call)
        #: the most windows a call may take in the device's memory (None: no bound set;
        #: `hhbench.cnn.windows.memory_chunk`, set by the backend)
        self.memory_windows: int | None = None
        self.last_chunk: int | None = None
        self.last_calls: int | None = None
        self.device_request = device
        self.location = None if isinstance(model, LabModel) else locate_model(model)
        loaded = model if self.location is None else read_lab_folder(self.location.path)
        self.loaded = loaded
        self.graph = JaxGraph(loaded, precision=precision, device=device, transpose=transpose)
        meta = loaded.meta
        self.input_scale = float(input_scale if input_scale is not None else meta.input_scale)
        self.output_scale = float(output_scale if output_scale is not None else meta.output_scale)
        if not (self.input_scale > 0 and self.output_scale > 0):
            raise HHBenchError("input and output scales must be > 0")
        self.fs_khz = meta.fs_khz
        self.window, self.out_len = self.graph.window, self.graph.out_len
        # as the TensorFlow runner: half of what the output lacks against the input
        self.context = (self.window - self.out_len) // 2
        self.cold_start_s: float | None = None

    @property
    def device(self) -> str:
        return self.graph.device_name

    def _chunks(self, x: np.ndarray):
        """`x`'s windows a network call at a time (`hhbench.cnn.windows.chunks`), noted in
        `last_chunk` and `last_calls`."""
        cap = winlib.call_cap(self.max_windows_per_call, self.memory_windows)
        self.last_chunk = winlib.chunk_size(len(x), cap)
        self.last_calls = -(-len(x) // self.last_chunk)
        return winlib.chunks(x, cap)

    def activation_values(self) -> int:
        """Values the network's steps produce for one window (`plan.activation_values`)."""
        from hhbench.cnn.plan import activation_values
        return activation_values(self.graph.plan)

    def predict_windows(self, x_scaled: np.ndarray) -> np.ndarray:
        """Network output for windows (n, window) of scaled input → (n, out_len), unscaled."""
        # every chunk is dispatched before the first is read back
        outs = [self.graph.apply(self.graph.put(chunk)) for chunk in self._chunks(x_scaled)]
        return np.concatenate([np.asarray(y).reshape(len(y), -1) for y in outs], axis=0)

    def run(self, current_ua: np.ndarray, fs_khz: float | None = None) -> winlib.CnnOutput:
        """Run on a (batch, samples) or (samples,) current (see `CnnRunner.run`)."""
        start = time.perf_counter()
        winlib.check_rate(fs_khz, self.fs_khz)
        win = winlib.cut(current_ua, window=self.window, out_len=self.out_len,
                         context=self.context, input_scale=self.input_scale)
        y = self.predict_windows(win.x)
        v, t_ms = winlib.stitch(y, win, out_len=self.out_len, context=self.context,
                                output_scale=self.output_scale, fs_khz=self.fs_khz)
        if self.cold_start_s is None:
            self.cold_start_s = time.perf_counter() - start
        return winlib.CnnOutput(v_mv=v, t_ms=t_ms, first_sample=self.context,
                                padded_samples=win.padded, n_windows=len(win.starts),
                                device=self.device, windows_per_call=self.last_chunk,
                                network_calls=self.last_calls)

    def device_call(self, current_ua: np.ndarray):
        """A function of no arguments that runs the network on the windows of `current_ua`,
        put on the device now, and returns the network's outputs per chunk of windows as
        JAX dispatches them, left on the device (the caller waits through the runtime's
        `synchronize`; nothing is copied back)."""
        win = winlib.cut(current_ua, window=self.window, out_len=self.out_len,
                         context=self.context, input_scale=self.input_scale)
        chunks = [self.graph.put(chunk) for chunk in self._chunks(win.x)]

        def call():
            return [self.graph.apply(chunk) for chunk in chunks]
        return call

    def warmup(self, batch: int = 1, calls: int = 1) -> None:
        zeros = np.zeros((batch, self.window))
        for _ in range(calls):
            self.run(zeros)

    # -- description (as CnnRunner's) ---------------------------------------------------

    def receptive_field(self) -> dict:
        from hhbench.cnn.description import receptive_field
        return receptive_field(self.loaded.config, self.fs_khz)

    def describe(self) -> dict:
        """Everything `hhbench model-info` prints, JSON-ready (`hhbench.cnn.description`)."""
        from hhbench.cnn.description import describe
        return describe(self.loaded, origin=self.location.origin if self.location
                        else "a loaded model", input_scale=self.input_scale,
                        output_scale=self.output_scale, device=self.device,
                        graph=f"jax ({self.graph.precision_applied})")

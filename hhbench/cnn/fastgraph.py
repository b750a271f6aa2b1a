"""A faster graph for a loaded lab model: the same network on 1-D tensors, same weights.

The lab's network is 1-D at heart but written with Conv2D / Conv2DTranspose layers whose
kernels are (k, 1) over a (window, 1, channels) image. `build_fast_graph` walks the loaded
Keras model's own layer graph (its config: layer types, settings and which layers feed
which) and evaluates it on (batch, length, channels) tensors:

  * Conv2D kernel (k, 1, Cin, Cout), strides (s, 1)  ->  a 1-D convolution, kernel (k, Cin, Cout);
  * Conv2DTranspose kernel (k, 1, Cout, Cin)         ->  a 1-D transposed convolution with
    the output length Keras computes (L·s for "same", L·s + max(k − s, 0) for "valid"),
    which is exactly the (k, 1) transposed convolution restricted to its one column;
  * Reshape to (L, 1, C) or (L, C) -> (L, C); Activation, Concatenate, Cropping1D, Dense,
    Conv1D/Conv1DTranspose, nested functional models as themselves.

Nothing about the weights or sizes is written in here: a model this module cannot map
(another layer type, a kernel wider than one column, dilation) raises `FastGraphError`,
and the runner keeps the lab graph for it.

Transposed convolutions are computed in polyphase form: output phase r of block b is
Σ_q x[b − q]·W[q·s + r], q = 0 … ceil(k/s) − 1, so a stride-s transposed convolution is ONE
stride-1 convolution with s·Cout output channels over the input, and the s phases are
interleaved by a reshape (no multiplication by inserted zeros, no scatter). Its kernel is
rearranged once, in NumPy, when the graph is built (`polyphase_kernel`).

Two implementations of the convolutions ("impl"):
  * "conv1d": `tf.nn.conv1d` (TensorFlow turns it into a (1, k) 2-D convolution, the layout
    its CPU kernels (oneDNN) handle best), for the transposed ones too (polyphase). Measured
    at batch 1 on a 2-core CPU, oneDNN's own transposed convolution (backprop-input) costs
    130-270 µs even on the deepest, 5-40-sample layers; with the polyphase forward
    convolution and the weights as constants the network takes about a quarter less time;
  * "matmul": every convolution as one matrix product over frames of the input
    (`tf.signal.frame`), transposed ones in the same polyphase form.
Weights are embedded as constants of the traced graph (created while tracing, not captured
from outside), so TensorFlow may fold and cache anything derived from them.
`dtype` "float32" (default), "float16" or "bfloat16" runs the network in that precision
(weights and activations; the output is returned as float32) — meant for GPUs.
`jit_compile=True` compiles the function with XLA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from hhbench.cnn import import_tensorflow
# the 1-D arithmetic both runtimes share lives in the framework-free plan module
from hhbench.cnn.plan import (PlanError, as_1d, polyphase_kernel,  # noqa: F401
                              same_padding, transpose_length)
from hhbench.errors import HHBenchError
from hhbench.runtimes import get_runtime

import_tensorflow()  # quietly, where installed (see hhbench.cnn)

IMPLS = ("conv1d", "matmul")
#: the dtypes it computes in: the TensorFlow runtime's network precisions
DTYPES = get_runtime("tensorflow").network_precisions


class FastGraphError(HHBenchError):
    """The model has a layer the fast graph cannot map (the lab graph still runs it)."""


@dataclass(frozen=True, kw_only=True)
class FastGraphOptions:
    impl: str = "conv1d"
    dtype: str = "float32"
    jit_compile: bool = False

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise HHBenchError(f"unknown fast-graph impl {self.impl!r}; use {', '.join(IMPLS)}")
        if self.dtype not in DTYPES:
            raise HHBenchError(f"unknown dtype {self.dtype!r}; use {', '.join(DTYPES)}")


def _as_1d_shape(shape, layer_name: str) -> tuple[int, ...]:
    """`plan.as_1d` (the rule both runtimes share), refused as this graph's own error (the
    runner then keeps the lab graph)."""
    try:
        return as_1d(shape, layer_name)
    except PlanError:
        raise FastGraphError(f"fast graph: layer {layer_name!r} reshapes to {tuple(shape)}, "
                             "not 1-D") from None


def _column_kernel(layer) -> tuple[int, int]:
    """(kernel length, stride) of a convolution that acts along axis 1 only."""
    cls = type(layer).__name__
    k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise FastGraphError(f"fast graph: {layer.name} is not channels_last")
    if cls.startswith("Conv2D"):
        if k[1] != 1 or s[1] != 1:
            raise FastGraphError(f"fast graph: {layer.name} kernel {k} stride {s} is not (k, 1)")
    if any(int(v) != 1 for v in d):
        raise FastGraphError(f"fast graph: {layer.name} is dilated")
    if cls.endswith("Transpose") and getattr(layer, "output_padding", None) is not None:
        raise FastGraphError(f"fast graph: {layer.name} has output_padding")
    if layer.padding not in ("same", "valid"):
        raise FastGraphError(f"fast graph: {layer.name} has padding {layer.padding!r}")
    return int(k[0]), int(s[0])


class _Ops:
    """The tensor operations of one implementation. Weights are held as NumPy arrays and
    become constants of the dtype when a traced function uses them (`tensor`)."""

    def __init__(self, tf, options: FastGraphOptions):
        self.tf, self.impl = tf, options.impl
        self.dtype = getattr(tf, options.dtype)

    def tensor(self, array):
        """`array` as a constant of the graph being traced (a Const node: foldable)."""
        return self.tf.constant(array, dtype=self.dtype)

    def conv(self, x, w, k: int, s: int, padding: str):
        """x (B, L, Cin), w (k, Cin, Cout) NumPy → (B, L', Cout) as Keras' convolution."""
        tf = self.tf
        if self.impl == "conv1d":
            return tf.nn.conv1d(x, self.tensor(w), stride=s, padding=padding.upper())
        cin, cout = w.shape[1], w.shape[2]
        if padding == "same":
            left, right = same_padding(x.shape[1], k, s)
            x = tf.pad(x, [[0, 0], [left, right], [0, 0]])
        frames = tf.signal.frame(x, k, s, axis=1)                  # (B, L', k, Cin)
        n_out = frames.shape[1]
        y = tf.matmul(tf.reshape(frames, [-1, k * cin]), self.tensor(w.reshape(k * cin, cout)))
        return tf.reshape(y, [-1, n_out, cout])

    def conv_transpose(self, x, w_poly, k: int, s: int, padding: str):
        """x (B, L, Cin), w_poly (Q, Cin, s·Cout) from `polyphase_kernel` → (B, L_out, Cout)
        as Keras' transposed convolution."""
        tf = self.tf
        length = x.shape[1]
        q_taps, cin, cout = w_poly.shape[0], w_poly.shape[1], w_poly.shape[2] // s
        n_out = transpose_length(length, k, s, padding)
        # the full scatter has length (L−1)·s + k; keep the window the forward
        # convolution's padding selects
        left = same_padding(n_out, k, s)[0] if padding == "same" else 0
        xp = tf.pad(x, [[0, 0], [q_taps - 1, q_taps - 1], [0, 0]])
        n_blocks = length + q_taps - 1
        if self.impl == "conv1d":
            y = tf.nn.conv1d(xp, self.tensor(w_poly), stride=1, padding="VALID")
        else:
            frames = tf.signal.frame(xp, q_taps, 1, axis=1)             # (B, L+Q−1, Q, Cin)
            y = tf.matmul(tf.reshape(frames, [-1, q_taps * cin]),
                          self.tensor(w_poly.reshape(q_taps * cin, s * cout)))
        y = tf.reshape(y, [-1, n_blocks * s, cout])                     # phases interleaved
        return y[:, left:left + n_out]


def _activation(tf, layer, x):
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "linear")
    if name == "linear":
        return x
    table = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu,
             "softplus": tf.nn.softplus, "swish": tf.nn.silu, "silu": tf.nn.silu}
    if name not in table:
        raise FastGraphError(f"fast graph: activation {name!r} of {layer.name} not supported")
    return table[name](x)


def _plan(model, ops: _Ops):
    """A function evaluating `model`'s layer graph on 1-D tensors; weights prepared once."""
    tf = ops.tf
    config = model.get_config()
    if "layers" not in config or "input_layers" not in config:
        raise FastGraphError(f"fast graph: {model.name} is not a functional Keras 2 model")
    steps = []  # (name, [input names], fn)
    for spec in config["layers"]:
        layer = model.get_layer(spec["name"])
        cls = spec["class_name"]
        nodes = spec.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise FastGraphError(f"fast graph: layer {layer.name} is shared")
        inputs = [entry[0] for entry in nodes[0]] if nodes else []
        steps.append((layer.name, inputs, _step(cls, layer, ops, tf)))
    in_names = [entry[0] for entry in config["input_layers"]]
    out_names = [entry[0] for entry in config["output_layers"]]
    if len(in_names) != 1 or len(out_names) != 1:
        raise FastGraphError("fast graph: one input and one output expected")

    def run(x):
        values = {in_names[0]: x}
        for name, inputs, fn in steps:
            if not inputs:
                continue  # the input layer
            values[name] = fn(*[values[i] for i in inputs])
        return values[out_names[0]]

    return run


def _step(cls: str, layer, ops: _Ops, tf):
    if cls == "InputLayer":
        return None
    if cls in ("Functional", "Model", "Sequential"):
        if cls == "Sequential":
            raise FastGraphError("fast graph: nested Sequential models are not supported")
        return _plan(layer, ops)
    if cls == "Reshape":
        target = _as_1d_shape(layer.target_shape, layer.name)
        return lambda x: tf.reshape(x, [-1, *target])
    if cls in ("Conv2D", "Conv1D", "Conv2DTranspose", "Conv1DTranspose"):
        k, s = _column_kernel(layer)
        w = layer.kernel.numpy().reshape(k, *layer.kernel.shape[-2:])
        if cls.endswith("Transpose"):
            op, w = ops.conv_transpose, polyphase_kernel(w, k, s)
        else:
            op = ops.conv
        b = layer.bias.numpy() if layer.use_bias else None
        padding = layer.padding

        def conv(x):
            y = op(x, w, k, s, padding)
            return _activation(tf, layer, y if b is None else y + ops.tensor(b))
        return conv
    if cls == "Dense":
        w = layer.kernel.numpy()
        b = layer.bias.numpy() if layer.use_bias else None

        def dense(x):
            y = tf.tensordot(x, ops.tensor(w), axes=1)
            return _activation(tf, layer, y if b is None else y + ops.tensor(b))
        return dense
    if cls == "Activation":
        return lambda x: _activation(tf, layer, x)
    if cls == "Concatenate":
        rank = len(layer.input_shape[0])
        if layer.axis % rank != rank - 1:  # only the channel axis maps to the 1-D graph
            raise FastGraphError(f"fast graph: {layer.name} concatenates along axis {layer.axis}")
        return lambda *xs: tf.concat(xs, axis=-1)
    if cls == "Add":
        return lambda *xs: tf.add_n(list(xs))
    if cls == "Cropping1D":
        left, right = (int(v) for v in layer.cropping)
        return lambda x: x[:, left:x.shape[1] - right]
    raise FastGraphError(f"fast graph: layer type {cls} ({layer.name}) is not supported")


class FastGraph:
    """`graph(x)` for x (batch, window, 1) float32 → the model's output (batch, out, 1) float32.

    Built from a loaded tf_keras model; `options` chooses impl, dtype and XLA. The traced
    function has a free batch dimension.
    """

    def __init__(self, keras_model, options: FastGraphOptions = FastGraphOptions(),
                 device: str = "/CPU:0"):
        import tensorflow as tf

        self.options, self.device = options, device
        self._keras_model = keras_model
        ops = _Ops(tf, options)
        body = _plan(keras_model, ops)  # creates no tensor: weights become constants when traced
        window = int(keras_model.input_shape[1])
        self._in_shape = (window, 1)
        out_shape = [int(v) for v in keras_model.output_shape[1:]]

        def call(x):
            y = body(tf.cast(x, ops.dtype))
            # back to the model's own output shape and float32
            return tf.reshape(tf.cast(y, tf.float32), [-1, *out_shape])

        self._fn = tf.function(call, jit_compile=options.jit_compile, reduce_retracing=True,
                               input_signature=[tf.TensorSpec([None, window, 1], tf.float32)])
        self._concrete = None
        self._traced_digest = None

    @property
    def traced(self):
        """The `tf.function` (what a converter or exporter takes)."""
        return self._fn

    def concrete_function(self):
        """The one concrete function of the fixed signature (traced at the first request)."""
        if self._concrete is None:
            digest = self._digest()  # of the weights the trace is about to read
            self._concrete = self._fn.get_concrete_function()
            self._traced_digest = digest
        return self._concrete

    def fingerprint(self) -> str:
        """A digest of what the graph computes: the model's config, the options and the
        weights the traced graph holds as constants — read when it was traced, or, before
        that, the model's weights now (what a trace would read). Two graphs with the same
        fingerprint are the same function, even if the model's weights change later."""
        return self._traced_digest or self._digest()

    def _digest(self) -> str:
        digest = hashlib.sha256(self._keras_model.to_json().encode())
        digest.update(repr(self.options).encode())
        for weight in self._keras_model.get_weights():
            digest.update(str(weight.shape).encode())
            digest.update(np.ascontiguousarray(weight).tobytes())
        return digest.hexdigest()

    def check_input_shape(self, shape) -> None:
        """HHBenchError unless `shape` is (batch, window, 1)."""
        shape = tuple(shape)
        if len(shape) != 3 or tuple(shape[1:]) != self._in_shape:
            # the concrete function does not check its input (a wrong shape would give a
            # wrong answer or abort inside oneDNN)
            raise HHBenchError(f"fast graph: input of shape {shape}, expected "
                               f"(batch, {self._in_shape[0]}, 1)")

    def __call__(self, x):
        import tensorflow as tf
        self.check_input_shape(x.shape)
        concrete = self.concrete_function()
        with tf.device(self.device):  # where the ops run (the graph pins no device itself)
            # the one concrete function of the fixed signature, called directly: skips
            # tf.function's argument binding and dispatch (~0.15 ms a call at batch 1)
            return concrete(tf.convert_to_tensor(x, tf.float32))


def build_fast_graph(keras_model, *, impl: str = "conv1d", dtype: str = "float32",
                     jit_compile: bool = False, device: str = "/CPU:0") -> FastGraph:
    """The fast graph of `keras_model` (see the module docstring); FastGraphError if a
    layer cannot be mapped."""
    return FastGraph(keras_model, FastGraphOptions(impl=impl, dtype=dtype,
                                                   jit_compile=jit_compile), device)

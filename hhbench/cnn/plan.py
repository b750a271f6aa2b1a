"""The lab's network as a list of 1-D operations, read from its Keras 2 config: no framework.

`fastgraph` walks a loaded tf_keras model; this module walks the same config (Gmodel.json,
as parsed by `h5weights`) with the weights read by h5py, and gives the JAX runtime
(`jaxgraph`) a flat list of `Step`s on (batch, length, channels) tensors, with every
per-example shape computed and every weight's shape checked against its layer:

  * Conv2D kernel (k, 1, Cin, Cout), strides (s, 1) -> "conv": kernel (k, Cin, Cout), stride
    s, TensorFlow's padding for "same" (`same_padding`: the extra sample on the right);
  * Conv2DTranspose kernel (k, 1, Cout, Cin) -> "conv_transpose": kernel (k, Cout, Cin), the
    output length Keras computes (L·s for "same") and the offset of that window in the full
    scatter of length (L − 1)·s + k;
  * Reshape to (L, 1, C) or (L, C) -> "reshape"; Activation, Concatenate (channel axis),
    Add, Cropping1D, Dense, Conv1D / Conv1DTranspose; nested functional models flattened in
    place (their steps' names prefixed "model_2/").
A layer this cannot map (another type, a kernel wider than one column, dilation,
output_padding, channels_first, an activation other than ACTIVATIONS) is an HHBenchError
naming it — the same models `fastgraph` refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hhbench.errors import HHBenchError

ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "elu", "softplus", "swish", "silu")
CONVS = ("Conv2D", "Conv1D", "Conv2DTranspose", "Conv1DTranspose")


class PlanError(HHBenchError):
    """The model has a layer the JAX runtime cannot map."""


@dataclass(frozen=True, kw_only=True)
class Step:
    """One operation: `kind`, the names of its inputs, its per-example output shape
    (length, channels) and `kshape` (Keras's per-example shape), and its parameters
    (weights as NumPy arrays)."""

    name: str
    kind: str
    inputs: tuple
    shape: tuple
    kshape: tuple
    params: dict = field(default_factory=dict)


def same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (left, right) of a strided convolution along one axis:
    out = ceil(L/s) samples, total = max((out − 1)·s + k − L, 0), the extra one on the
    right."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def transpose_length(length: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a transposed convolution as Keras computes it (no output_padding)."""
    return length * stride if padding == "same" else length * stride + max(kernel - stride, 0)


def polyphase_kernel(w: np.ndarray, k: int, s: int) -> np.ndarray:
    """The kernel (Q, Cin, s·Cout), Q = ceil(k/s), of the stride-1 convolution that computes
    a stride-s transposed convolution with Keras kernel w (k, Cout, Cin) in polyphase form:
    block b of the full output holds phases r = 0 … s−1, y[b·s + r] = Σ_q x[b − q]·W[q·s + r];
    over an input padded by Q − 1 zeros on both sides, frame b covers x[b−Q+1] … x[b], so
    the taps run in reverse. NumPy in, NumPy out (both runtimes' graphs use it)."""
    cout, cin = w.shape[1], w.shape[2]
    q_taps = -(-k // s)
    padded = np.zeros((q_taps * s, cout, cin), dtype=w.dtype)
    padded[:k] = w
    phases = padded.reshape(q_taps, s, cout, cin)[::-1]              # (Q, s, Cout, Cin)
    return np.ascontiguousarray(phases.transpose(0, 3, 1, 2)).reshape(q_taps, cin, s * cout)


def as_1d(shape, name: str) -> tuple[int, int]:
    """A per-example shape as (length, channels): (L, 1, C) and (L, C) map, others do not."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3 and shape[1] == 1:
        return (shape[0], shape[2])
    if len(shape) == 2:
        return shape
    if len(shape) == 1:
        return (shape[0], 1)
    raise PlanError(f"JAX graph: layer {name!r} has shape {shape}, not 1-D")


def _activation(cfg: dict, name: str) -> str:
    act = cfg.get("activation", "linear")
    if act is None:
        return "linear"
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise PlanError(f"JAX graph: activation {act!r} of {name} not supported")
    return act


def _weights(weights: dict | None, name: str, kernel_shape: tuple, bias_shape: tuple | None):
    if weights is None:  # planning shapes only
        return (np.zeros(kernel_shape, np.float32),
                None if bias_shape is None else np.zeros(bias_shape, np.float32))
    got = weights.get(name.rsplit("/", 1)[-1])  # leaf layer names are unique in a model
    if got is None or "kernel" not in got:
        raise PlanError(f"JAX graph: no weights for layer {name!r}")
    kernel, bias = got["kernel"], got.get("bias")
    if tuple(kernel.shape) != tuple(kernel_shape):
        raise PlanError(f"JAX graph: layer {name!r} kernel has shape {tuple(kernel.shape)}, "
                        f"the layer needs {tuple(kernel_shape)}")
    if (bias is None) != (bias_shape is None) or (
            bias is not None and tuple(bias.shape) != tuple(bias_shape)):
        raise PlanError(f"JAX graph: layer {name!r} bias does not match its layer")
    return np.asarray(kernel, np.float32), None if bias is None else np.asarray(bias, np.float32)


def _conv_step(cls, cfg, name, inputs, shape, kshape, weights) -> Step:
    k, s = list(cfg["kernel_size"]), list(cfg["strides"])
    dil = list(cfg.get("dilation_rate", [1] * len(k)))
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise PlanError(f"JAX graph: {name} is not channels_last")
    if cls.startswith("Conv2D") and (k[1] != 1 or s[1] != 1):
        raise PlanError(f"JAX graph: {name} kernel {tuple(k)} stride {tuple(s)} is not (k, 1)")
    if any(int(v) != 1 for v in dil) or int(cfg.get("groups", 1)) != 1:
        raise PlanError(f"JAX graph: {name} is dilated or grouped")
    padding = cfg["padding"]
    if padding not in ("same", "valid"):
        raise PlanError(f"JAX graph: {name} has padding {padding!r}")
    k, s, filters = int(k[0]), int(s[0]), int(cfg["filters"])
    length, cin = shape
    column = (1,) if cls.startswith("Conv2D") else ()
    bias_shape = (filters,) if cfg.get("use_bias", True) else None
    act = _activation(cfg, name)
    if cls.endswith("Transpose"):
        if cfg.get("output_padding") is not None:
            raise PlanError(f"JAX graph: {name} has output_padding")
        kernel, bias = _weights(weights, name, (k, *column, filters, cin), bias_shape)
        n_out = transpose_length(length, k, s, padding)
        left = same_padding(n_out, k, s)[0] if padding == "same" else 0
        return Step(name=name, kind="conv_transpose", inputs=inputs, shape=(n_out, filters),
                    kshape=(n_out, *column, filters),
                    params=dict(w=kernel.reshape(k, filters, cin), b=bias, k=k, s=s,
                                left=left, n_out=n_out, act=act))
    kernel, bias = _weights(weights, name, (k, *column, cin, filters), bias_shape)
    if padding == "same":
        pads, n_out = same_padding(length, k, s), -(-length // s)
    else:
        pads, n_out = (0, 0), (length - k) // s + 1
    if n_out < 1:
        raise PlanError(f"JAX graph: {name} gets {length} samples, fewer than its kernel")
    return Step(name=name, kind="conv", inputs=inputs, shape=(n_out, filters),
                kshape=(n_out, *column, filters),
                params=dict(w=kernel.reshape(k, cin, filters), b=bias, k=k, s=s, pads=pads,
                            act=act))


def _step(cls: str, cfg: dict, name: str, inputs: tuple, shapes: list, kshapes: list,
          weights: dict) -> Step:
    if cls == "Reshape":
        target = tuple(int(v) for v in cfg["target_shape"])
        if int(np.prod(target)) != int(np.prod(kshapes[0])):
            raise PlanError(f"JAX graph: {name} reshapes {kshapes[0]} to {target}")
        return Step(name=name, kind="reshape", inputs=inputs, shape=as_1d(target, name),
                    kshape=target)
    if cls in CONVS:
        return _conv_step(cls, cfg, name, inputs, shapes[0], kshapes[0], weights)
    if cls == "Dense":
        units = int(cfg["units"])
        kernel, bias = _weights(weights, name, (shapes[0][1], units),
                                (units,) if cfg.get("use_bias", True) else None)
        kshape = (*kshapes[0][:-1], units)
        return Step(name=name, kind="dense", inputs=inputs, shape=(shapes[0][0], units),
                    kshape=kshape, params=dict(w=kernel, b=bias, act=_activation(cfg, name)))
    if cls == "Activation":
        return Step(name=name, kind="activation", inputs=inputs, shape=shapes[0],
                    kshape=kshapes[0], params=dict(act=_activation(cfg, name)))
    if cls == "Concatenate":
        rank = len(kshapes[0]) + 1  # with the batch axis
        if int(cfg.get("axis", -1)) % rank != rank - 1:
            raise PlanError(f"JAX graph: {name} concatenates along axis {cfg.get('axis')}")
        if len({s[0] for s in shapes}) != 1:
            raise PlanError(f"JAX graph: {name} joins inputs of lengths {[s[0] for s in shapes]}")
        channels = sum(s[1] for s in shapes)
        return Step(name=name, kind="concat", inputs=inputs, shape=(shapes[0][0], channels),
                    kshape=(*kshapes[0][:-1], channels))
    if cls == "Add":
        return Step(name=name, kind="add", inputs=inputs, shape=shapes[0], kshape=kshapes[0])
    if cls == "Cropping1D":
        left, right = (int(v) for v in cfg["cropping"])
        n = shapes[0][0] - left - right
        return Step(name=name, kind="crop", inputs=inputs, shape=(n, shapes[0][1]),
                    kshape=(n, kshapes[0][-1]), params=dict(left=left, right=right))
    raise PlanError(f"JAX graph: layer type {cls} ({name}) is not supported")


def _input_names(spec: dict, name: str) -> list[str]:
    nodes = spec.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise PlanError(f"JAX graph: layer {name} is shared")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3's format
        raise PlanError("JAX graph: a Keras 3 config; the JAX runtime reads Keras 2 files")
    return [entry[0] for entry in node]


def _plan(config: dict, prefix: str, outer_inputs: list, outer_shapes: list, weights: dict,
          steps: list) -> tuple[str, tuple, tuple]:
    """Append `config`'s steps; return (name, shape, kshape) of its output."""
    if "layers" not in config or "input_layers" not in config:
        raise PlanError(f"JAX graph: {config.get('name')} is not a functional Keras 2 model")
    in_names = [entry[0] for entry in config["input_layers"]]
    out_names = [entry[0] for entry in config["output_layers"]]
    if len(in_names) != 1 or len(out_names) != 1:
        raise PlanError("JAX graph: one input and one output expected")
    alias: dict[str, str] = {}   # layer name in this scope -> step name
    known: dict[str, tuple] = {}  # step name -> (shape, kshape)
    for spec in config["layers"]:
        cls, cfg = spec["class_name"], spec["config"]
        name = spec.get("name", cfg.get("name"))
        inputs = [alias[i] for i in _input_names(spec, name)]
        if cls == "InputLayer":
            kshape = tuple(int(v) for v in cfg["batch_input_shape"][1:])
            if outer_inputs:  # a nested model's input is the outer tensor
                alias[name] = outer_inputs[0]
                known[outer_inputs[0]] = outer_shapes[0]
                if tuple(outer_shapes[0][1]) != kshape:
                    raise PlanError(f"JAX graph: {name} expects {kshape}, gets "
                                    f"{outer_shapes[0][1]}")
            else:
                alias[name] = prefix + name
                known[prefix + name] = (as_1d(kshape, name), kshape)
                steps.append(Step(name=prefix + name, kind="input", inputs=(),
                                  shape=as_1d(kshape, name), kshape=kshape))
            continue
        if cls in ("Functional", "Model"):
            out, shape, kshape = _plan(cfg, prefix + name + "/", inputs,
                                       [known[i] for i in inputs], weights, steps)
            alias[name] = out
            known[out] = (shape, kshape)
            continue
        if cls == "Sequential":
            raise PlanError("JAX graph: nested Sequential models are not supported")
        step = _step(cls, cfg, prefix + name, tuple(inputs), [known[i][0] for i in inputs],
                     [known[i][1] for i in inputs], weights)
        steps.append(step)
        alias[name] = step.name
        known[step.name] = (step.shape, step.kshape)
    out = alias[out_names[0]]
    return out, *known[out]


@dataclass(frozen=True, kw_only=True)
class Plan:
    steps: list
    output: str
    in_shape: tuple   # Keras per-example input shape, e.g. (2560, 1)
    out_shape: tuple  # Keras per-example output shape, e.g. (2048, 1)

    @property
    def window(self) -> int:
        return int(self.in_shape[0])

    @property
    def out_len(self) -> int:
        return int(self.out_shape[0])


def build_plan(config: dict, weights: dict | None = None) -> Plan:
    """The steps of a Keras 2 functional config with `weights` ({layer: {"kernel", "bias"}});
    without weights, the shapes only (zero arrays stand in)."""
    steps: list = []
    out, shape, kshape = _plan(config, "", [], [], weights, steps)
    if len(steps[0].kshape) > 2 or steps[0].shape[1] != 1:
        raise PlanError(f"JAX graph: input of shape {steps[0].kshape}, expected (window, 1)")
    return Plan(steps=steps, output=out, in_shape=steps[0].kshape, out_shape=kshape)


def activation_values(plan: Plan) -> int:
    """Values every step of `plan` produces for one window (the sum of length × channels
    of each step's output): what a network call holds per window if the framework keeps
    every layer's output."""
    return sum(int(np.prod(step.shape)) for step in plan.steps)


def model_shapes(config: dict) -> tuple[tuple, tuple]:
    """(input, output) per-example shapes of a Keras 2 functional config."""
    plan = build_plan(config)
    return plan.in_shape, plan.out_shape

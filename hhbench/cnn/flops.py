"""Counting the arithmetic of a Keras model from its layers (per example, i.e. per window).

For each layer with weights that multiply (one multiply-add = 2 floating-point operations):
  * convolution (Conv1D/Conv2D): 2 · prod(kernel) · Cin · Cout · output positions;
  * transposed convolution: 2 · prod(kernel) · Cin · Cout · input positions (every input
    position scatters its kernel into the output; none of it multiplies inserted zeros);
  * Dense: 2 · inputs · units · positions (all axes but the last);
  * bias: one addition per output element; activations (tanh, sigmoid, ...): one
    transcendental per element, counted apart.
Padding is not subtracted: "same" padding's border products are counted as computed,
as every library computes them. The matmul FLOPs are what the floor divides by the
machine's matrix-multiply rate.
"""

from __future__ import annotations

import math

CONV = ("Conv1D", "Conv2D", "Conv3D")
CONV_T = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")


def _positions(shape) -> int:
    """Product of the spatial dimensions of a (batch, ..., channels) shape."""
    return math.prod(int(d) for d in shape[1:-1])


def layer_flops(keras_model) -> list[dict]:
    """One row per leaf layer that computes: name, type, matmul_flops, bias_adds,
    activations (transcendental evaluations), all per example."""
    from hhbench.cnn.runner import iter_layers

    rows = []
    for layer in iter_layers(keras_model):
        cls = type(layer).__name__
        out_shape, in_shape = layer.output_shape, layer.input_shape
        matmul = bias = act = 0
        if cls in CONV or cls in CONV_T:
            k = math.prod(int(v) for v in layer.kernel_size)
            cin, cout = int(in_shape[-1]), int(out_shape[-1])
            where = _positions(out_shape if cls in CONV else in_shape)
            matmul = 2 * k * cin * cout * where
        elif cls == "Dense":
            matmul = 2 * int(in_shape[-1]) * int(out_shape[-1]) * _positions(in_shape)
        if getattr(layer, "use_bias", False) and matmul:
            bias = math.prod(int(d) for d in out_shape[1:])
        name = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if name not in ("linear", "relu"):
            act = math.prod(int(d) for d in out_shape[1:])
        if matmul or bias or act:
            rows.append({"layer": layer.name, "type": cls, "matmul_flops": matmul,
                         "bias_adds": bias, "activations": act})
    return rows


def count_flops(keras_model) -> dict:
    """Totals per example: matmul_flops, bias_adds, activations, and the layers counted."""
    rows = layer_flops(keras_model)
    return {"matmul_flops": sum(r["matmul_flops"] for r in rows),
            "bias_adds": sum(r["bias_adds"] for r in rows),
            "activations": sum(r["activations"] for r in rows), "layers": rows}


def plan_flops(plan) -> dict:
    """The same totals per example as `count_flops`, from the JAX runtime's plan
    (`hhbench.cnn.plan.Plan`, read from the model's config without any framework): a
    convolution 2·k·Cin·Cout·output positions, a transposed one 2·k·Cin·Cout·input
    positions, Dense 2·inputs·units·positions; one bias addition per output element; one
    transcendental per element of a non-linear activation (not relu)."""
    shapes = {}
    totals = {"matmul_flops": 0, "bias_adds": 0, "activations": 0}
    for step in plan.steps:
        shapes[step.name] = step.shape
        p = step.params
        length, channels = step.shape
        matmul = 0
        if step.kind == "conv":
            k, cin, cout = p["w"].shape
            matmul = 2 * k * cin * cout * length
        elif step.kind == "conv_transpose":
            k, cout, cin = p["w"].shape
            matmul = 2 * k * cin * cout * shapes[step.inputs[0]][0]
        elif step.kind == "dense":
            n_in, units = p["w"].shape
            matmul = 2 * n_in * units * length
        totals["matmul_flops"] += matmul
        if matmul and p.get("b") is not None:
            totals["bias_adds"] += length * channels
        if p.get("act", "linear") not in ("linear", "relu"):
            totals["activations"] += length * channels
    return totals

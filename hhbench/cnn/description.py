"""What `hhbench model-info` and the lab say about a lab model, read from its files with no
framework: Gmodel.json (the Keras 2 config), Gmodel.h5 (the weights, through
`hhbench.cnn.h5weights`, h5py only) and hhbench_model.json.

`describe()` gives the dict of `CnnRunner.describe()` (the TensorFlow runner's, which reads
the loaded Keras model): each leaf layer as "name (Class) (None, *shape) params=N" with
the per-example shape Keras computes (`hhbench.cnn.plan`) and the size of its weights;
`receptive_field()` walks the config's strided convolutions as
`hhbench.cnn.runner.receptive_field` walks the Keras layers (`receptive_field_of`).
`time_base()` reads only the JSON files: the window, output length, context, scaling and
rate of a lab folder, for work that needs the model's clock but not the network.
"""

from __future__ import annotations

from pathlib import Path

from hhbench.cnn.architecture import receptive_field_samples
from hhbench.cnn.h5weights import NESTED, LabModel, leaf_layers, read_architecture

CONVS = ("Conv2D", "Conv1D")


def receptive_field_of(convs: list[tuple[int, int]], fs_khz: float) -> dict:
    """Receptive field of encoder convolutions [(kernel, stride), …] in order: r grows by
    (k − 1)·j and the jump j (input samples between neighbouring outputs) is multiplied by
    the stride s; for N identical layers this is Drakopoulos et al.'s
    r = (k − 1)(sᴺ − 1)/(s − 1) + 1 (`formula_samples`)."""
    r, jump = 1, 1
    for k, s in convs:
        r += (k - 1) * jump
        jump *= s
    uniform = len(set(convs)) == 1
    formula = receptive_field_samples(len(convs), *convs[0]) if uniform else None
    return {"samples": r, "ms": r / fs_khz, "encoder_layers": len(convs),
            "formula_samples": formula, "kernel": convs[0][0] if uniform else None,
            "stride": convs[0][1] if uniform else None}


def receptive_field(config: dict, fs_khz: float) -> dict:
    """`receptive_field_of` the config's Conv2D/Conv1D layers, nested models walked in place."""
    convs = [(int(spec["config"]["kernel_size"][0]), int(spec["config"]["strides"][0]))
             for cls, spec in leaf_layers(config) if cls in CONVS]
    return receptive_field_of(convs, fs_khz)


def _input_layers(config: dict) -> str:
    return ", ".join(spec["config"]["name"] for spec in config.get("layers", [])
                     if spec.get("class_name") == "InputLayer") or "none"


def nesting_lines(config: dict) -> list[str]:
    """One line per model used as a layer of another (as `hhbench.cli.nesting_lines` says it
    for a loaded Keras model)."""
    lines = []
    name = config.get("name", "model")
    for spec in config.get("layers", []):
        if spec.get("class_name") in NESTED:
            inner = spec["config"]
            lines.append(f"nested       {name} wraps the network {inner.get('name')} as one "
                         f"layer, so both input layers are listed: {_input_layers(config)} "
                         f"({name}'s) and {_input_layers(inner)} ({inner.get('name')}'s)")
            lines += nesting_lines(inner)
    return lines


def layer_lines(model: LabModel) -> list[str]:
    """"name (Class) (None, *shape) params=N" of every leaf layer, in config order."""
    from hhbench.cnn.plan import build_plan

    shapes = {step.name.rsplit("/", 1)[-1]: step.kshape
              for step in build_plan(model.config, model.weights).steps}
    lines = []
    for cls, spec in leaf_layers(model.config):
        cfg = spec["config"]
        name = cfg["name"]
        if cls == "InputLayer":
            shape = tuple(cfg["batch_input_shape"][1:])
        else:
            shape = shapes.get(name)
        params = sum(int(a.size) for a in model.weights.get(name, {}).values())
        shown = "?" if shape is None else (None, *(int(v) for v in shape))
        lines.append(f"{name} ({cls}) {shown} params={params}")
    return lines


def describe(model: LabModel, *, origin: str, input_scale: float, output_scale: float,
             device: str, graph: str) -> dict:
    """The dict of `CnnRunner.describe()` for a lab folder read by h5weights."""
    from hhbench.cnn.plan import model_shapes

    (window, ch_in), (out_len, ch_out) = (
        tuple(int(v) for v in s) for s in model_shapes(model.config))
    return {"source": model.source, "format": "keras2-folder", "origin": origin,
            "parameters": int(model.count_params()),
            "input_shape": [None, window, ch_in], "output_shape": [None, out_len, ch_out],
            "context": model.meta.context, "input_scale": input_scale,
            "output_scale": output_scale, "fs_khz": model.meta.fs_khz,
            "receptive_field": receptive_field(model.config, model.meta.fs_khz),
            "layers": layer_lines(model), "nesting": nesting_lines(model.config),
            "device": device, "mode": "auto", "graph": graph}


def time_base(folder: str | Path) -> dict:
    """{"window", "out_len", "context", "fs_khz", "input_scale", "output_scale"} of a lab
    folder, from Gmodel.json and hhbench_model.json only (no weights, no framework)."""
    from hhbench.cnn.files import ARCH_FILE, read_meta
    from hhbench.cnn.plan import model_shapes

    folder = Path(folder)
    config = read_architecture(folder / ARCH_FILE)["config"]
    (window, _), (out_len, _) = model_shapes(config)
    meta, _ = read_meta(folder, lambda: (int(window) - int(out_len)) // 2)
    return {"window": int(window), "out_len": int(out_len), "context": meta.context,
            "fs_khz": meta.fs_khz, "input_scale": meta.input_scale,
            "output_scale": meta.output_scale}


__all__ = ["describe", "receptive_field", "receptive_field_of", "nesting_lines",
           "layer_lines", "time_base"]

"""Reading the lab's model folder with h5py and the standard library: no TensorFlow, no Keras.

A lab folder holds Gmodel.json (Keras 2 `model.to_json()`: a functional model, possibly
nesting others — the lab's `model_3` holds `model_2`) and Gmodel.h5 (Keras 2 `save_weights`:
the file's attribute `layer_names`, one group per layer, each with an attribute
`weight_names` naming its datasets, e.g. "enc_conv1/kernel:0" under group "model_2").

The weights are assigned as Keras 2's `load_weights` assigns them (topological loading):
the file's layers that hold weights are matched by ORDER with the model's top-level layers
that hold weights, and each one's arrays, in `weight_names` order, with that layer's
weights in order — for a nested model, the weights of its own layers in the order of its
config (kernel, then bias). A count or a shape that does not match is an HHBenchError, as
Keras refuses it. `LabModel.get_weights()` is therefore Keras's `model.get_weights()`.

Only the layers the CNN runtimes map are known here (`WEIGHTED`); a weighted layer of
another type (BatchNormalization, …) is refused, not guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hhbench.cnn.files import ARCH_FILE, WEIGHTS_FILE, ModelMeta, read_meta
from hhbench.errors import HHBenchError

#: layer types with weights that this reader assigns, and the names of their weights
WEIGHTED = {"Conv1D": ("kernel", "bias"), "Conv2D": ("kernel", "bias"),
            "Conv1DTranspose": ("kernel", "bias"), "Conv2DTranspose": ("kernel", "bias"),
            "Dense": ("kernel", "bias")}
#: layer types without weights
UNWEIGHTED = ("InputLayer", "Reshape", "Activation", "Concatenate", "Add", "Cropping1D")
NESTED = ("Functional", "Model")


@dataclass(frozen=True, kw_only=True)
class LabModel:
    """A lab folder read without Keras.

    config: the top-level model's config (Gmodel.json's "config");
    weights: {leaf layer name: {"kernel": array, "bias": array}} (nested models' layers by
        their own names);
    order: the leaf layers with weights, in Keras's `get_weights()` order;
    meta: scaling, context and rate (hhbench_model.json, else SPEC's, context from shapes).
    """

    config: dict
    weights: dict
    order: list
    meta: ModelMeta
    source: str
    keras_version: str | None = None
    extra: dict = field(default_factory=dict)

    def get_weights(self) -> list:
        """The arrays in Keras's `model.get_weights()` order."""
        out = []
        for name in self.order:
            out.extend(self.weights[name].values())
        return out

    def count_params(self) -> int:
        return int(sum(w.size for w in self.get_weights()))


def _fail(path, why: str):
    raise HHBenchError(f"{path}: {why}")


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def leaf_layers(config: dict):
    """(class name, layer spec) of every leaf layer of a functional config, nested models
    walked in place, in config order."""
    for spec in config.get("layers", []):
        if spec.get("class_name") in NESTED:
            yield from leaf_layers(spec["config"])
        else:
            yield spec["class_name"], spec


def _layer_has_weights(spec: dict) -> bool:
    cls = spec.get("class_name")
    if cls in NESTED:
        return any(_layer_has_weights(s) for s in spec["config"].get("layers", []))
    return cls in WEIGHTED


def _weight_slots(spec: dict, where) -> list[tuple[str, str]]:
    """(leaf layer name, weight name) of a top-level layer's weights, in Keras order."""
    cls = spec.get("class_name")
    if cls in NESTED:
        return [slot for s in spec["config"].get("layers", []) for slot in _weight_slots(s, where)]
    if cls in WEIGHTED:
        use_bias = spec["config"].get("use_bias", True)
        return [(spec["config"]["name"], w) for w in WEIGHTED[cls] if w != "bias" or use_bias]
    if cls in UNWEIGHTED:
        return []
    _fail(where, f"layer type {cls} ({spec.get('name')}) is not supported without Keras")


def read_architecture(path: str | os.PathLike) -> dict:
    """Gmodel.json parsed: {"class_name", "config", "keras_version", …}; HHBenchError in one
    line if it is not a Keras functional model description."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(errors="replace"))
    except ValueError as exc:
        _fail(path, f"not JSON ({exc.args[0]})")
    except OSError as exc:
        _fail(path, f"unreadable ({exc.strerror})")
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        _fail(path, "JSON is not a Keras model description")
    if spec["class_name"] not in NESTED or "layers" not in spec["config"]:
        _fail(path, f"not a functional Keras 2 model (class {spec['class_name']!r})")
    return spec


def read_weights(path: str | os.PathLike, config: dict, where=None) -> tuple[dict, list]:
    """The weights of `config`'s layers from a Keras 2 `save_weights` HDF5 file, assigned as
    Keras's topological `load_weights` does (see the module docstring)."""
    import h5py

    path = Path(path)
    where = where or path
    slots = [_weight_slots(spec, where) for spec in config["layers"] if _layer_has_weights(spec)]
    from hhbench.model_location import check_model_files
    if path.name == WEIGHTS_FILE:  # a damaged file named as such, not as a mismatch
        check_model_files(path.parent)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        _fail(path, f"not an HDF5 weights file ({exc})")
    with fh:
        root = fh["model_weights"] if "layer_names" not in fh.attrs and "model_weights" in fh \
            else fh  # a whole-model save keeps the weights one level down
        if "layer_names" not in root.attrs:
            _fail(path, "no 'layer_names' attribute: not a Keras 2 weights file")
        groups = []
        for name in (_text(n) for n in root.attrs["layer_names"]):
            names = [_text(n) for n in root[name].attrs.get("weight_names", [])]
            if names:
                groups.append((name, [np.asarray(root[name][n]) for n in names], names))
    if len(groups) != len(slots):
        _fail(path, f"weights do not match the architecture in {ARCH_FILE} (the file has "
                    f"{len(groups)} layers with weights, the model {len(slots)})")
    weights, order = {}, []
    for (group, arrays, names), layer_slots in zip(groups, slots):
        if len(arrays) != len(layer_slots):
            _fail(path, f"weights do not match the architecture in {ARCH_FILE} (layer "
                        f"{group!r} has {len(arrays)} weights, the model expects "
                        f"{len(layer_slots)})")
        for array, (layer, weight) in zip(arrays, layer_slots):
            if layer not in weights:
                weights[layer] = {}
                order.append(layer)
            weights[layer][weight] = array
    return weights, order


def read_lab_folder(folder: str | os.PathLike) -> LabModel:
    """Gmodel.json + Gmodel.h5 (+ hhbench_model.json) of a lab folder, read without Keras.
    The shapes of the weights are checked against the layers by the graph built from it
    (`hhbench.cnn.jaxgraph`); the context defaults to half of what the output lacks."""
    folder = Path(folder)
    if not folder.is_dir():
        _fail(folder, "no such model folder" if not folder.exists() else
              "not a lab model folder (the JAX runtime reads Gmodel.json + Gmodel.h5)")
    arch_path, weights_path = folder / ARCH_FILE, folder / WEIGHTS_FILE
    for needed in (arch_path, weights_path):
        if not needed.exists():
            _fail(needed, "missing (a lab model folder holds Gmodel.json and Gmodel.h5)")
    spec = read_architecture(arch_path)
    weights, order = read_weights(weights_path, spec["config"])
    def context():
        from hhbench.cnn.plan import model_shapes
        (window, _), (out_len, _) = model_shapes(spec["config"])
        return (window - out_len) // 2
    meta, extra = read_meta(folder, context)
    return LabModel(config=spec["config"], weights=weights, order=order, meta=meta,
                    source=str(folder), keras_version=spec.get("keras_version"), extra=extra)

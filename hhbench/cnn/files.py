"""Reading and writing CNN models in the lab's layout and in Keras 3's `.keras` format.

The lab's layout is a folder with
  Gmodel.json  the architecture, `model.to_json()` of Keras 2
  Gmodel.h5    the weights, Keras 2 `save_weights`
which TensorFlow ≥ 2.16's Keras 3 cannot read; `tf_keras` (the Keras 2 API) can.
hhbench adds an optional `hhbench_model.json` beside them with the scaling and context
it trained with; a folder without it gets SPEC.md's values.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hhbench.atomic import atomic_write
from hhbench.errors import HHBenchError
from hhbench.model_location import WEIGHTS_FILE  # noqa: F401  (named once, re-exported)

ARCH_FILE, META_FILE = "Gmodel.json", "hhbench_model.json"


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """What the runner must know beyond the weights (SPEC.md defaults)."""

    input_scale: float = 1e-3   # network input = I[µA/cm²] · input_scale
    output_scale: float = 1e-2  # V[mV] = network output / output_scale
    context: int = 256          # samples cropped on each side
    fs_khz: float = 20.0

    def __post_init__(self):
        if not (self.input_scale > 0 and self.output_scale > 0 and self.fs_khz > 0):
            raise HHBenchError("model scaling and sampling rate must be positive")
        if self.context < 0:
            raise HHBenchError("model context must be >= 0")


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    keras_model: Any
    meta: ModelMeta
    source: str
    format: str   # "keras2-folder" or "keras3"
    extra: dict = field(default_factory=dict)


def _fail(path, why: str):
    raise HHBenchError(f"{path}: {why}")


#: models loaded with `shared_on`, by device and the identity of their files (`_identity`),
#: the most recently used last
_SHARED: dict[tuple, LoadedModel] = {}
_KEEP_SHARED = 2


def load_model(path: str | os.PathLike, *, shared_on: str | None = None) -> LoadedModel:
    """Load a lab folder (Gmodel.json + Gmodel.h5) or a Keras 3 `.keras` file.

    `shared_on=DEVICE` (the TensorFlow device whose scope the caller loads in, where the
    weights are placed): a model already loaded this way in this process from the same
    files (same path, modification times and sizes) for the same device is returned again
    instead of being read and built anew (~0.3 s for the lab's model). For callers that
    only run the model, such as `hhbench run`'s CNN cases, which make a runner each; never
    for one that trains it."""
    path = Path(path)
    key = None
    if shared_on is not None and (ident := _identity(path)) is not None:
        key = (shared_on, ident)
    if key is not None and key in _SHARED:
        _SHARED[key] = _SHARED.pop(key)  # now the most recently used
        return _SHARED[key]
    if path.is_dir():
        loaded = _load_lab_folder(path)
    elif path.suffix == ".keras":
        loaded = _load_keras3(path)
    elif not path.exists():
        _fail(path, "no such model folder or file")
    else:
        _fail(path, "not a model: expected a folder with Gmodel.json + Gmodel.h5 or a .keras "
                    "file")
    if key is not None:
        while len(_SHARED) >= _KEEP_SHARED:
            _SHARED.pop(next(iter(_SHARED)))
        _SHARED[key] = loaded
    return loaded


def _identity(path: Path) -> tuple | None:
    """(resolved path, (name, modification time, size) of each file the model is read
    from), or None when one cannot be read (the load then fails with its own message)."""
    names = (ARCH_FILE, WEIGHTS_FILE, META_FILE) if path.is_dir() else ("",)
    try:
        stats = [(name, (path / name).stat()) for name in names
                 if name != META_FILE or (path / name).exists()]
        return (str(path.resolve()),
                tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats))
    except OSError:
        return None


def read_meta(folder: Path, default_context) -> tuple[ModelMeta, dict]:
    """(ModelMeta, the whole hhbench_model.json) of a lab folder; without that file, the
    defaults with the context `default_context()` gives (half of what the output lacks)."""
    meta_path = folder / META_FILE
    if not meta_path.exists():
        return ModelMeta(context=default_context()), {}
    try:
        extra = json.loads(meta_path.read_text())
        return ModelMeta(**extra.get("meta", {})), extra
    except (ValueError, TypeError) as exc:
        _fail(meta_path, f"unreadable model metadata ({exc})")


def _read_meta(folder: Path, keras_model) -> tuple[ModelMeta, dict]:
    return read_meta(folder, lambda: shape_context(keras_model))


def shape_context(keras_model) -> int:
    """Samples cropped on each side: half of what the output lacks against the input."""
    return (keras_model.input_shape[1] - keras_model.output_shape[1]) // 2


def _load_lab_folder(folder: Path) -> LoadedModel:
    from hhbench.cnn import import_tensorflow
    import_tensorflow()
    import tf_keras

    arch_path, weights_path = folder / ARCH_FILE, folder / WEIGHTS_FILE
    for needed in (arch_path, weights_path):
        if not needed.exists():
            _fail(needed, "missing (a lab model folder holds Gmodel.json and Gmodel.h5)")
    text = arch_path.read_text(errors="replace")
    try:
        spec = json.loads(text)
    except ValueError as exc:
        _fail(arch_path, f"not JSON ({exc.args[0]})")
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        _fail(arch_path, "JSON is not a Keras model description")
    try:
        model = tf_keras.models.model_from_json(text)
    except Exception as exc:  # Keras raises many types for a malformed config
        _fail(arch_path, f"not a Keras 2 model ({type(exc).__name__}: {_first_line(exc)})")
    from hhbench.model_location import check_model_files
    check_model_files(folder)  # a damaged file named as such, not as a mismatch
    try:
        model.load_weights(str(weights_path))
    except Exception as exc:
        _fail(weights_path, f"weights do not match the architecture in {ARCH_FILE} "
                            f"({type(exc).__name__}: {_first_line(exc)})")
    meta, extra = _read_meta(folder, model)
    return LoadedModel(keras_model=model, meta=meta, source=str(folder), format="keras2-folder",
                       extra=extra)


def _load_keras3(path: Path) -> LoadedModel:
    if not path.exists():
        _fail(path, "no such file")
    from hhbench.cnn import import_tensorflow
    import_tensorflow()
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        _fail(path, f"not a loadable Keras 3 model ({type(exc).__name__}: {_first_line(exc)})")
    return LoadedModel(keras_model=model, meta=ModelMeta(context=shape_context(model)),
                       source=str(path), format="keras3")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def save_lab_model(model, folder: str | os.PathLike, *, meta: ModelMeta | None = None,
                   config=None, best: bool = True) -> None:
    """Write `model` (tf_keras) in the lab layout; files are replaced atomically.

    `best=False` writes only the architecture and metadata (the weights come later).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if meta is None:
        meta = ModelMeta() if config is None else ModelMeta(
            input_scale=config.input_scale, output_scale=config.output_scale,
            context=config.arch.context, fs_khz=config.data.fs_khz)
    atomic_write(folder / ARCH_FILE, model.to_json())
    extra = {"meta": asdict(meta)}
    if config is not None:
        extra["architecture"] = config.arch.as_dict()
    atomic_write(folder / META_FILE, json.dumps(extra, indent=1))
    if best:
        tmp = folder / "Gmodel.tmp.h5"
        model.save_weights(str(tmp))
        tmp.replace(folder / WEIGHTS_FILE)

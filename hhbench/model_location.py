"""Where the CNN model comes from: an explicit path, $HHBENCH_MODEL, or the shipped model.

The shipped model (`models/hh-step-cnn` in the repository) is installed with hhbench as
package data of `hhbench.models` (a wheel, `pip install .` and `pip install -e .` all carry
it) and found through `importlib.resources`. Running from a source checkout that is not
installed (PYTHONPATH pointing at the repository), it is read from the repository's
`models/` folder instead. The order, first match wins:

  1. an explicit path (`--model PATH`, or `model=` in Python);
  2. the environment variable HHBENCH_MODEL;
  3. package data `hhbench.models/hh-step-cnn`;
  4. the repository checkout `models/hh-step-cnn` beside the `hhbench` folder.

Nothing here imports TensorFlow, so a missing model can be reported before loading it.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

from hhbench.errors import HHBenchError

#: the shipped model's folder name, under the package data and under the repository's models/
DEFAULT_MODEL = "hh-step-cnn"
#: the lab's weights file, whose presence makes a folder a model
WEIGHTS_FILE = "Gmodel.h5"

ORIGINS = ("--model", "HHBENCH_MODEL", "package data", "repository checkout")


@dataclass(frozen=True, kw_only=True)
class ModelLocation:
    """A model's path and where it came from (one of ORIGINS)."""

    path: Path
    origin: str

    def __post_init__(self):
        if self.origin not in ORIGINS:
            raise ValueError(f"unknown model origin {self.origin!r}")

    def describe(self) -> str:
        return f"{self.path} (from {self.origin})"


def _is_model(path: Path) -> bool:
    return path.is_file() or (path / WEIGHTS_FILE).is_file()


def check_model_path(model: str | os.PathLike) -> Path:
    """`model` if it is a model folder (holding Gmodel.h5) or a file, else HHBenchError
    naming it: what a run checks before any worker loads the model."""
    path = Path(model)
    if not path.exists():
        raise HHBenchError(f"{path}: no such model folder or file")
    if not _is_model(path):
        raise HHBenchError(f"{path}: not a model: expected a folder with Gmodel.json + "
                           f"{WEIGHTS_FILE} or a .keras file")
    return path


def packaged_model_path() -> Path | None:
    """The shipped model installed as package data, or None when hhbench is not installed
    with it (e.g. run from a source checkout through PYTHONPATH)."""
    try:
        root = importlib.resources.files("hhbench.models")
    except ModuleNotFoundError:
        return None
    path = Path(str(root / DEFAULT_MODEL))
    return path if _is_model(path) else None


def checkout_model_path() -> Path:
    """Where the shipped model lies in a source checkout: <repository>/models/hh-step-cnn."""
    return Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL


def locate_model(model: str | os.PathLike | None = None) -> ModelLocation:
    """The model to load and its origin, in the order of the module docstring.

    An explicit path or $HHBENCH_MODEL is returned as given (loading it reports a missing
    one); without either, HHBenchError when no shipped model is found.
    """
    if model is not None:
        return ModelLocation(path=Path(model), origin="--model")
    env = os.environ.get("HHBENCH_MODEL")
    if env:
        return ModelLocation(path=Path(env), origin="HHBENCH_MODEL")
    packaged = packaged_model_path()
    if packaged is not None:
        return ModelLocation(path=packaged, origin="package data")
    checkout = checkout_model_path()
    if _is_model(checkout):
        return ModelLocation(path=checkout, origin="repository checkout")
    raise HHBenchError("no default CNN model: this installation carries none; train one with "
                       "`hhbench train` and pass --model PATH (or set HHBENCH_MODEL)")


__all__ = ["ModelLocation", "locate_model", "check_model_path", "packaged_model_path", "checkout_model_path",
           "DEFAULT_MODEL"]

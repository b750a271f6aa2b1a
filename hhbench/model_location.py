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
    """`model` if it is a model folder (holding Gmodel.h5) or a file whose contents are
    whole (`check_model_files`), else HHBenchError naming it: what a command checks
    before any work (and before any worker loads the model)."""
    path = Path(model)
    if not path.exists():
        raise HHBenchError(f"{path}: no such model folder or file")
    if not _is_model(path):
        raise HHBenchError(f"{path}: not a model: expected a folder with Gmodel.json + "
                           f"{WEIGHTS_FILE} or a .keras file")
    check_model_files(path)
    return path


def check_model_files(path: Path) -> None:
    """HHBenchError naming the file and the cause when a model's weights cannot be read
    in full: a folder's Gmodel.h5 is opened with h5py and every dataset read (a file cut
    short, e.g. by a full disk or an interrupted copy, fails here with its length and
    the length it should have); a .keras file's zip members are read and checked (CRC).
    Without h5py (the CNN cannot run then anyway) the HDF5 file is not checked."""
    import re
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        try:
            import h5py
        except ImportError:
            return
        try:
            with h5py.File(weights, "r") as fh:
                fh.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset)
                              else None)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            text = str(exc)
            cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
            why = (f"truncated: {int(cut[1]):,} of {int(cut[2]):,} bytes" if cut else
                   text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
            raise HHBenchError(f"{weights}: damaged HDF5 weights file ({why})") from None
    elif path.suffix == ".keras":
        import zipfile
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise HHBenchError(f"{path}: damaged .keras file (not a readable zip archive: "
                               f"{exc})") from None
        if bad is not None:
            raise HHBenchError(f"{path}: damaged .keras file (member {bad} fails its "
                               "checksum)")


def check_model(model: str | os.PathLike | None = None) -> Path:
    """The model `locate_model(model)` finds, checked as `check_model_path` does."""
    return check_model_path(locate_model(model).path)


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


__all__ = ["ModelLocation", "locate_model", "check_model_path", "check_model_files",
           "check_model", "packaged_model_path", "checkout_model_path", "DEFAULT_MODEL"]

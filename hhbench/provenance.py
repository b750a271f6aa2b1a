"""What ran: the runtime a case ran through, and which copy of hhbench was measured.

  * `runtime_word`: the framework a backend's calls ran through — what the case recorded
    (the CNN records the runtime it chose: tensorflow, tflite or jax), else what the
    backend declares (`Backend.runtime_of`: jax, cuda, tensorflow), else the library its
    compiled or vectorised code comes from (`requires`: numba, scipy), else numpy.
  * `checkout_note`: when the current folder is an hhbench checkout whose sources differ
    from the package Python imported, which of the two a run measures, and how to measure
    the other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def runtime_word(backend: str, settings: dict | None = None, options: dict | None = None
                 ) -> str | None:
    """The runtime of one case (see the module doc); None for a backend not registered."""
    recorded = (settings or {}).get("runtime")
    if recorded:
        return str(recorded)
    from hhbench.backends import backend_classes
    cls = backend_classes().get(backend)
    if cls is None:
        return None
    try:
        declared = cls.runtime_of(options or {})
    except Exception:  # noqa: BLE001 - a runtime that cannot be chosen here: say nothing
        declared = None
    if declared:
        return declared
    for lib in ("numba", "scipy"):
        if lib in cls.requires or any(lib in getattr(base, "requires", ())
                                      for base in cls.__mro__):
            return lib
    return "numpy"


def source_hash(package_dir: Path) -> str:
    """SHA-256 of every .py under `package_dir` by relative path and content (the same
    digest as `hhbench.workers.package_source`)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode() + b"\0" + path.read_bytes()
                      + b"\0")
    return digest.hexdigest()


def checkout_note(cwd: Path | None = None) -> str | None:
    """A note when `cwd` (default: the current folder) holds an hhbench checkout whose
    sources differ from the imported package; None otherwise."""
    import hhbench
    here = Path(cwd or Path.cwd()).resolve()
    local = here / "hhbench"
    if not (local / "__init__.py").is_file() or not (here / "pyproject.toml").is_file():
        return None
    imported = Path(hhbench.__file__).resolve().parent
    if imported == local.resolve() or source_hash(local) == source_hash(imported):
        return None
    return (f"note: this folder is an hhbench checkout whose sources differ from the "
            f"installed package; measuring the installed one ({imported}). To measure this "
            f"checkout: PYTHONPATH={here} python -m hhbench ... (or pip install -e {here})")

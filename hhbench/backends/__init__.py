"""The registry of simulators: every module in this package registers its backends by name.

Adding a backend is adding one module here whose class is decorated with `@register`.
Heavy libraries (numba, TensorFlow) are imported by the backend modules only when they
prepare, so listing the backends stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

from hhbench.backends.base import Backend, SimResult
from hhbench.errors import HHBenchError

_REGISTRY: dict[str, type[Backend]] = {}
_discovered = False


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make `cls` available under `cls.name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"backend name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if not _discovered:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in ("base",):
                importlib.import_module(f"{__name__}.{mod.name}")
        _discovered = True


def backend_classes() -> dict[str, type[Backend]]:
    """All registered backend classes by name, in a stable order."""
    _discover()
    order = ["numpy", "numba", "odeint", "odeint-lab", "exp-euler", "reference", "cnn"]
    return dict(sorted(_REGISTRY.items(),
                       key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def backend_names() -> list[str]:
    return list(backend_classes())


def check_name(name: str) -> type[Backend]:
    """The class registered as `name`, else HHBenchError listing the valid names."""
    classes = backend_classes()
    if name not in classes:
        raise HHBenchError(f"unknown backend {name!r}; valid backends: {', '.join(classes)}")
    return classes[name]


def get_backend(name: str, **options) -> Backend:
    """Instantiate the backend called `name` with its options (e.g. model=, device= for cnn)."""
    cls = check_name(name)
    if not cls.is_available():
        raise HHBenchError(f"backend {name!r} needs {', '.join(cls.requires)}, which is not installed")
    return cls(**options)


__all__ = ["Backend", "SimResult", "register", "check_name", "get_backend", "backend_names",
           "backend_classes"]

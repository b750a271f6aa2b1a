"""The registry of simulators: every module in this package registers its backends by name,
and so does every installed plugin.

Adding a backend is adding one module here whose class is decorated with `@register`.
Heavy libraries (numba, TensorFlow) are imported by the backend modules only when they
prepare, so listing the backends stays fast.

Plugins: another distribution declares an entry point in the group `hhbench.backends`
whose object is a `Backend` subclass (registered under its `name`) or a module that
registers its classes with `@register`, e.g. in its pyproject.toml

    [project.entry-points."hhbench.backends"]
    passive = "hhbench_passive:PassiveMembrane"

A plugin that fails to load (an import error, a name taken twice, not a Backend) is left
out, and `plugin_errors()` says why in one line each (`hhbench backends` prints them).
See docs/plugins.md and examples/hhbench-plugin-example.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from hhbench.backends.base import Backend, SimResult
from hhbench.errors import HHBenchError

_REGISTRY: dict[str, type[Backend]] = {}
_discovered = False
#: entry-point group through which other distributions add backends
PLUGIN_GROUP = "hhbench.backends"
_PLUGIN_ERRORS: dict[str, str] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make `cls` available under `cls.name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"backend name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


#: modules of this package that hold no backend: the interface, and the engines (compiled
#: drivers and what they share), which import their framework (JAX, CUDA) when loaded and
#: are loaded by their backends only when these prepare
NOT_BACKENDS = ("base",)
ENGINE_SUFFIXES = ("_engine", "_cache", "_rhs")


def _discover() -> None:
    global _discovered
    if not _discovered:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in NOT_BACKENDS and not mod.name.endswith(ENGINE_SUFFIXES):
                importlib.import_module(f"{__name__}.{mod.name}")
        _discovered = True
        _load_plugins()


def _load_plugins() -> None:
    """Register the backends of every entry point in PLUGIN_GROUP; record failures."""
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type):
                if not issubclass(obj, Backend):
                    raise TypeError(f"{ep.value} is not a hhbench Backend subclass")
                if _REGISTRY.get(getattr(obj, "name", None)) is not obj:
                    register(obj)
        except Exception as exc:  # a broken plugin must not break hhbench: one line
            dist = getattr(ep, "dist", None)
            origin = f" (from {dist.name})" if dist is not None else ""
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _PLUGIN_ERRORS[ep.name] = (f"plugin {ep.name!r} = {ep.value}{origin} failed to "
                                       f"load: {type(exc).__name__}: {message}"[:400])


def plugin_errors() -> dict[str, str]:
    """Entry-point name → one line saying why that plugin is not available."""
    _discover()
    return dict(_PLUGIN_ERRORS)


def backend_classes() -> dict[str, type[Backend]]:
    """All registered backend classes by name, in a stable order."""
    _discover()
    order = ["numpy", "numba", "odeint", "odeint-lab", "exp-euler", "reference", "jax",
             "numba-cuda", "cnn"]
    return dict(sorted(_REGISTRY.items(),
                       key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def backend_names() -> list[str]:
    return list(backend_classes())


def check_name(name: str) -> type[Backend]:
    """The class registered as `name`, else HHBenchError listing the valid names."""
    classes = backend_classes()
    if name not in classes:
        broken = f" ({_PLUGIN_ERRORS[name]})" if name in _PLUGIN_ERRORS else ""
        raise HHBenchError(f"unknown backend {name!r}; valid backends: "
                           f"{', '.join(classes)}{broken}")
    return classes[name]


def get_backend(name: str, **options) -> Backend:
    """Instantiate the backend called `name` with its options (e.g. model=, device= for cnn)."""
    cls = check_name(name)
    reason = cls.unavailable_reason()
    if reason:
        raise HHBenchError(f"backend {name!r} {reason}")
    return cls(**options)


__all__ = ["Backend", "SimResult", "register", "check_name", "get_backend", "backend_names",
           "backend_classes", "plugin_errors", "PLUGIN_GROUP"]

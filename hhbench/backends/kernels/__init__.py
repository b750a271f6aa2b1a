"""The registry of step kernels: the integration methods the compiled engine can run.

A step kernel advances one neuron by one step, (v, m, h, n, i, dt) -> (v, m, h, n), with
the current i held constant over the step. Its maths lives in `hhbench.model` (written once,
run by NumPy and by numba); a kernel module here names it, states its order and registers
it with `@register_kernel`. Adding an integration method is adding one module in this
package (and its step function in the model); the engine (`numba_engine`) drives every
kernel with the same loop, so nothing else changes. This package does not import numba.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC
from typing import Callable, ClassVar

from hhbench import model
from hhbench.errors import HHBenchError

_KERNELS: dict[str, type["StepKernel"]] = {}
_discovered = False


class StepKernel(ABC):
    """An integration method: `name` (registry key), `order` (global order in dt),
    `summary`, and `step`, the name of its step function in `model.build_kernels()`."""

    name: ClassVar[str]
    order: ClassVar[int]
    summary: ClassVar[str]
    step: ClassVar[str]

    @classmethod
    def build(cls, kernels) -> Callable:
        """This method's step function from a namespace made by `model.build_kernels`."""
        return getattr(kernels, cls.step)

    @classmethod
    def operation_count(cls) -> dict[str, int]:
        """Operations of one step of one neuron (see `model.count_step_operations`)."""
        return model.count_step_operations(cls.step)


def register_kernel(cls: type[StepKernel]) -> type[StepKernel]:
    """Class decorator: make `cls` available to the engine under `cls.name`."""
    if cls.name in _KERNELS and _KERNELS[cls.name] is not cls:
        raise RuntimeError(f"step kernel name {cls.name!r} registered twice")
    if not hasattr(model.NUMPY_KERNELS, cls.step):
        raise RuntimeError(f"step kernel {cls.name!r}: the model has no {cls.step!r}")
    _KERNELS[cls.name] = cls
    return cls


def kernel_classes() -> dict[str, type[StepKernel]]:
    """Every registered step kernel by name (sorted)."""
    global _discovered
    if not _discovered:
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
        _discovered = True
    return dict(sorted(_KERNELS.items()))


def get_kernel(name: str) -> type[StepKernel]:
    """The step kernel registered as `name`, else HHBenchError listing the valid names."""
    kernels = kernel_classes()
    if name not in kernels:
        raise HHBenchError(f"unknown step kernel {name!r}; valid kernels: {', '.join(kernels)}")
    return kernels[name]


__all__ = ["StepKernel", "register_kernel", "kernel_classes", "get_kernel"]

"""Rush-Larsen exponential Euler: V and gates updated exactly over the step with rates and
conductances all frozen at the old state (hhbench's former `exp-euler`). First order and
unconditionally stable, but its spikes drift ~0.3 ms each at dt = 0.05 ms."""

from hhbench.backends.kernels import StepKernel, register_kernel


@register_kernel
class RushLarsen(StepKernel):
    name = "rush-larsen"
    order = 1
    summary = "Rush-Larsen: V and gates exactly, everything frozen at the old state"
    step = "rush_larsen_step"

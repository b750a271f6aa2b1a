"""Forward Euler (the lab's method) on the fused rates: four exponentials per step instead
of six, and no branch, so the engine's loop over traces runs as SIMD code. Equal to the
NumPy backend's forward Euler to rounding (~1e-12 mV on the lab's step; < 1e-9 mV on the
noise traces near threshold, whose dynamics amplify the exponentials' last-bit differences)."""

from hhbench.backends.kernels import StepKernel, register_kernel


@register_kernel
class Euler(StepKernel):
    name = "euler"
    order = 1
    summary = "forward Euler, the lab's method (fused rates: 4 exponentials per step)"
    step = "euler_step_fused"

"""Exponential midpoint: a Rush-Larsen half step predicts the midpoint, whose frozen rates
and conductances drive the exact update over the whole step. Second order and stable for
the stiff gate rates of a hyperpolarised membrane; the converged reference uses it."""

from hhbench.backends.kernels import StepKernel, register_kernel


@register_kernel
class ExpMidpoint(StepKernel):
    name = "exp-midpoint"
    order = 2
    summary = "exponential midpoint, second order (the converged reference's method)"
    step = "exp_midpoint_step"

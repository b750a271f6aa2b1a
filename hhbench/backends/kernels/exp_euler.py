"""Exponential Euler, gates first: each gate relaxes exactly towards x∞ = α/(α+β) with the
rates frozen at the old V, then V relaxes exactly towards E* + I/G with the conductances of
the new gates. Every update is a convex combination (stable for any step and current);
first order, with a spike-time drift ~20 times smaller than Rush-Larsen's."""

from hhbench.backends.kernels import StepKernel, register_kernel


@register_kernel
class ExpEuler(StepKernel):
    name = "exp-euler"
    order = 1
    summary = "exponential Euler: gates exactly, then V with the new gates' conductances"
    step = "exp_euler_step"

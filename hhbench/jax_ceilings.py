"""A device's arithmetic ceilings measured with JAX: what the floor of a GPU backend is
computed from (`hhbench.floor`), on the device it runs on, in the same run.

  * matmul: FLOP/s of an n×n by n×n product (2·n³ FLOPs) in float32 at full precision
    (`Precision.HIGHEST`: no TF32), in float32 as the device does it by default (TF32 on
    NVIDIA GPUs from Ampere on) and in bfloat16, and in float64;
  * exp: evaluations/s of elementwise exp, float64 and float32: each element goes through a
    chain of `CHAIN` dependent exponentials, x ← −exp(x) (bounded in [−1, 0)), inside one
    fused kernel, so the rate is the arithmetic's, not the memory's;
  * fma: fused multiply-adds/s, float64 and float32, the same way (x ← x·a + b).
JAX is imported only here (and in the JAX backends); a device is "cpu" or "gpu:N".
"""

from __future__ import annotations

from hhbench.errors import HHBenchError
from hhbench.timing import TimingSettings, measure

#: dependent operations per element in one fused kernel
CHAIN = 64


def jax_device(device: str):
    """The JAX device for "cpu" or "gpu:N" (the JAX runtime's `native_device`);
    CannotRunHere if JAX does not see it."""
    from hhbench.runtimes import get_runtime
    return get_runtime("jax").native_device(device)


def _wait(device: str):
    """`measure`'s finish: the JAX runtime's wait for a call's output on `device`."""
    from hhbench.runtimes import get_runtime
    runtime = get_runtime("jax")
    return lambda value: runtime.synchronize(device, value)


def matmul_rate(device: str, dtype: str, *, precision: str = "highest", n: int | None = None,
                settings: TimingSettings = TimingSettings(min_repeats=5, min_time_s=0.3)
                ) -> float:
    """FLOP/s of an n×n product in `dtype` ("float32", "float64", "bfloat16") with JAX's
    matmul precision `precision` ("highest" or "default"); n 4096 on a GPU, 1024 on a CPU."""
    import jax.numpy as jnp

    from hhbench.jax_runtime import jax, x64

    dev = jax_device(device)
    n = n or (4096 if device.startswith("gpu") else 1024)
    with x64("float64" if dtype == "float64" else "float32"):  # float64 here only
        key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
        a = jax.device_put(jax.random.normal(key_a, (n, n), dtype=dtype), dev)
        b = jax.device_put(jax.random.normal(key_b, (n, n), dtype=dtype), dev)
        prec = (jax.lax.Precision.HIGHEST if precision == "highest"
                else jax.lax.Precision.DEFAULT)
        # the sum comes back as a scalar: timing waits for the device, copying no product
        product = jax.jit(lambda x, y: jnp.sum(jnp.matmul(x, y, precision=prec)))
        timed, _ = measure(lambda: product(a, b), settings, finish=_wait(device))
    return 2.0 * n ** 3 / timed.median_s


def elementwise_rate(device: str, op: str, dtype: str, *, n: int | None = None,
                     settings: TimingSettings = TimingSettings(min_repeats=5, min_time_s=0.3)
                     ) -> float:
    """Evaluations/s of `op` ("exp": x ← −exp(x); "fma": x ← x·a + b) in `dtype`, CHAIN
    per element in one fused kernel over n elements (2²⁴ on a GPU, 2¹⁶ on a CPU)."""
    import jax.numpy as jnp

    from hhbench.jax_runtime import jax, x64

    if op not in ("exp", "fma"):
        raise HHBenchError(f"unknown elementwise operation {op!r}")
    dev = jax_device(device)
    n = n or (2 ** 24 if device.startswith("gpu") else 2 ** 16)
    with x64("float64" if dtype == "float64" else "float32"):  # float64 here only
        x0 = jax.device_put(-jnp.linspace(0.0, 1.0, n, dtype=dtype), dev)
        a, b = jnp.asarray(0.999, dtype), jnp.asarray(-0.001, dtype)

        def chain(x):
            for _ in range(CHAIN):  # unrolled: one fused kernel, CHAIN dependent operations
                x = -jnp.exp(x) if op == "exp" else x * a + b
            return jnp.sum(x)

        run = jax.jit(chain)
        timed, _ = measure(lambda: run(x0), settings, finish=_wait(device))
    return n * CHAIN / timed.median_s


def measure_device_ceilings(device: str) -> dict:
    """Every ceiling of the module docstring for `device`, as a dict of rates."""
    return {
        "matmul_f32_flops": matmul_rate(device, "float32", precision="highest"),
        "matmul_tf32_flops": matmul_rate(device, "float32", precision="default"),
        "matmul_bf16_flops": matmul_rate(device, "bfloat16", precision="default"),
        "matmul_f64_flops": matmul_rate(device, "float64", precision="highest"),
        "exp_f64_per_s": elementwise_rate(device, "exp", "float64"),
        "exp_f32_per_s": elementwise_rate(device, "exp", "float32"),
        "fma_f64_per_s": elementwise_rate(device, "fma", "float64"),
        "fma_f32_per_s": elementwise_rate(device, "fma", "float32"),
    }

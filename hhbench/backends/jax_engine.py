"""The JAX engine of the `jax` backend (JAX is imported here, and only here).

`integrate(current, dt_ms, kernel, precision, devices, gates)` runs one step kernel over a
(batch, samples) current with `jax.jit` and `lax.scan` over time, vectorised over the
traces: the scan's carry is the state, v, m, h and n as four (batch,) rows, with one
"diverged" flag per trace, and it scans over the (samples, batch) current. (Four arrays,
not one stacked (4, batch) array: XLA compiles the stacked update as one loop over 4·batch
elements each recomputing the rates it needs, every exponential four times.) As in the lab's method,
V[:, 0] is the initial state (`model.V0_MV`, ...) and the step from sample i uses the state
and the current at sample i to give sample i+1.

What runs: the model's kernels (`model.build_kernels`) built with `jnp.exp` and
`jnp.expm1`, so the arithmetic is written once for NumPy, numba and JAX. Only the kernels
built on the fused rates take those exponentials: `rates`, `x_over_expm1` and `gate_exact`
call `np.exp` / `np.expm1` themselves (which would not trace), so the engine runs the
registered kernels whose step is `euler_step_fused` ("euler", the lab's forward Euler) or
`exp_euler_step` ("exp-euler"), and refuses the others ("rush-larsen", "exp-midpoint").
In float32 the fused rates' guard against αm's and αn's 0/0 (TINY = 1e-300, added to x and
to expm1(x)) would round to 0; the engine then passes `rate_exponentials` that add 1e-30
instead (a normal float32, far below any non-zero x, which is ≥ 1.2e-7 in size there).

float64: JAX computes in float32 unless x64 is enabled. The engine enables it locally,
with the `jax.enable_x64(True)` context around its tracing, compiling, transfers and calls
(thread-local; the process' global setting, and with it every other JAX user in the
process such as a JAX CNN, is left as it was). Every array it makes has an explicit dtype.

Divergence is found on the device, in the scan: a trace is flagged at its first sample
that is non-finite or beyond ±`base.DIVERGED_ABS_MV`, and from there its V (and gates)
are NaN (a cumulative OR along time carried with the state). It costs a compare and a
select per trace-step next to the step's ~70 flops, and no memory traffic, whereas
`base.mark_divergence` on the host would read all of V once more (20 GB at 10^6 traces
of 2,560 float64 samples), after copying it back.

Devices: a call runs on a list of devices; the batch is split over them along a 1-D mesh
("batch") with a `NamedSharding` (padded with zero-current traces to a multiple of the
device count, and to at least two traces a device: see MIN_PER_DEVICE; the padding is
dropped on the host), on as many of them as give each two traces (`call_devices`). One
device is the same code with a mesh of one. `gpu:all` is every `jax.devices("gpu")`;
"cpu" is every CPU device, and the engine has JAX show one per usable core
(`hhbench.jax_runtime`): that is how a batch uses more than one core.

Compilation: one executable per (batch, samples, kernel, precision, gates, devices), made
ahead of time (`jit(...).lower(...).compile()`) and kept in `_COMPILED`; dt is an argument,
so another sampling rate does not recompile.

Timing semantics: `integrate` is the round trip (host NumPy current in, host NumPy V out);
`device_call` returns a zero-argument callable that runs on a current already on the
devices and blocks until V is ready there, without copying it back.
"""

from __future__ import annotations

import functools
import warnings

# JAX set up as hhbench runs it (no preallocation, a CPU device per core): before any use
from hhbench.jax_runtime import gpu_count, jax, x64  # noqa: F401  (gpu_count: re-exported)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from hhbench import model  # noqa: E402
from hhbench.backends import kernels as kernel_registry  # noqa: E402
from hhbench.backends.base import DIVERGED_ABS_MV  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402

#: the model's step functions that trace with jnp (built on the fused rates only)
JAX_STEPS = ("euler_step_fused", "exp_euler_step")
DTYPES = {"float64": np.float64, "float32": np.float32}
#: time steps per iteration of the compiled loop (fewer loop iterations; measured on a CPU,
#: see docs/gpu-jax.md)
UNROLL = 1
#: the fused rates' 0/0 guard in float32 (model.TINY = 1e-300 rounds to 0 there)
TINY32 = 1e-30
AXIS = "batch"

_COMPILED: dict[tuple, object] = {}


def devices_for(device: str, gpus=None) -> tuple:
    """The JAX devices of a resolved hhbench device ("cpu", "gpu:N", "gpu:all"): "cpu" is
    every CPU device (one per core, see `_cpu_devices_per_core`); the JAX runtime's
    `devices` (CannotRunHere for a GPU it does not see). `gpus` stands in for
    `jax.devices("gpu")` (tests pick among forced host devices with it)."""
    from hhbench.runtimes import get_runtime
    return get_runtime("jax").devices(device, gpus)


def step_name(kernel: str) -> str:
    """The model step function of registered kernel `kernel`, if it runs under JAX."""
    step = kernel_registry.get_kernel(kernel).step
    if step not in JAX_STEPS:
        raise HHBenchError(f"kernel {kernel!r} does not run under jax (its step {step!r} "
                           f"calls NumPy's exponentials); use euler or exp-euler")
    return step


def _rate_exponentials32(u):
    """The fused rates' exponents and exponentials with a float32 0/0 guard (see
    `model.build_kernels`): x + TINY32 and expm1(x) + TINY32 for αm and αn."""
    (off_m, off_n, _, _), (slope_m, slope_n, slope_80, slope_18) = (
        model.RATE_EXPONENT_OFFSETS, model.RATE_EXPONENT_SLOPES)
    xm = off_m - slope_m * u
    xn = off_n - slope_n * u
    return (xm + TINY32, xn + TINY32, jnp.expm1(xm) + TINY32, jnp.expm1(xn) + TINY32,
            jnp.exp(-slope_80 * u), jnp.exp(-slope_18 * u))


@functools.cache
def step_function(kernel: str, precision: str):
    """The step (v, m, h, n, i, dt) -> (v, m, h, n) of `kernel` on jnp arrays."""
    kernels = model.build_kernels(
        exp=jnp.exp, expm1=jnp.expm1,
        rate_exponentials=_rate_exponentials32 if precision == "float32" else None)
    return getattr(kernels, step_name(kernel))


def integrator(kernel: str, precision: str, gates: bool, time_major: bool = False):
    """f(current (batch, samples), dt) -> (V (batch, samples), diverged (batch,)), or with
    `gates` (state (4, batch, samples), diverged): the function that is compiled. With
    `time_major` the current and V are (samples, batch), as the scan reads and writes
    them: no transpose on either side (the device-only call)."""
    step = step_function(kernel, precision)
    dtype = DTYPES[precision]

    def integrate(current, dt):
        batch = current.shape[1] if time_major else current.shape[0]
        init = tuple(jnp.full(batch, x, dtype)
                     for x in (model.V0_MV, model.M0, model.H0, model.N0))

        def advance(carry, i_now):
            state, bad = carry
            # flagged from the first sample non-finite or beyond the bound (NaN fails <=)
            bad = bad | ~(jnp.abs(state[0]) <= DIVERGED_ABS_MV)
            out = tuple(jnp.where(bad, jnp.nan, x) for x in (state if gates else state[:1]))
            new = tuple(x.astype(dtype) for x in step(*state, i_now, dt))
            return (new, bad), out

        (_, bad), ys = lax.scan(advance, (init, jnp.zeros(batch, bool)),
                                current if time_major else current.T, unroll=UNROLL)
        # ys: one (samples, batch) array per recorded variable
        if time_major:
            return ys[0], bad
        return (jnp.stack([y.T for y in ys]) if gates else ys[0].T), bad

    return integrate


def _mesh(devices) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object), (AXIS,))


#: fewest traces per device: XLA compiles a batch of one (shape (1,)) to other code than
#: a batch of several, whose exp-euler results differ in the last bits (~3e-12 mV after
#: 2,560 steps; forward Euler happens to agree); a lone trace runs with a resting twin, so
#: that a trace gives the same bits alone and in any batch
MIN_PER_DEVICE = 2


def call_devices(devices, batch: int) -> tuple:
    """The devices a call over `batch` traces runs on: the first of `devices`, as many as
    give each at least MIN_PER_DEVICE traces (a batch of one runs on one device)."""
    devices = tuple(devices)
    return devices[:max(1, min(len(devices), batch // MIN_PER_DEVICE))]


def padded_batch(batch: int, n_devices: int) -> int:
    """`batch` rounded up to a multiple of the device count, at least MIN_PER_DEVICE
    traces a device."""
    return max(-(-batch // n_devices), MIN_PER_DEVICE) * n_devices


def compiled(batch: int, samples: int, kernel: str, precision: str, devices, gates=False,
             time_major: bool = False):
    """The executable for this shape (batch already padded) on `devices`, made once.

    Batch-major (the round trip): the current is donated, since the call's fresh device
    copy is not needed again, so XLA may write V (the same shape and dtype) into it: at
    10⁶ float64 traces that is one 20 GB buffer less. Time-major (the device-only call,
    `time_major`): (samples, batch) in and out, as the scan reads and writes them; the
    input is kept for the next call."""
    devices = tuple(devices)
    key = (batch, samples, kernel, precision, bool(gates), devices, bool(time_major))
    exe = _COMPILED.get(key)
    if exe is None:
        mesh = _mesh(devices)
        spec = PartitionSpec(None, AXIS) if time_major else PartitionSpec(AXIS, None)
        cur_sh = NamedSharding(mesh, spec)
        dt_sh = NamedSharding(mesh, PartitionSpec())
        v_sh = NamedSharding(mesh, PartitionSpec(None, AXIS, None) if gates else spec)
        flag_sh = NamedSharding(mesh, PartitionSpec(AXIS))
        dtype = DTYPES[precision]
        shape = (samples, batch) if time_major else (batch, samples)
        with x64(precision):
            fn = jax.jit(integrator(kernel, precision, bool(gates), bool(time_major)),
                         in_shardings=(cur_sh, dt_sh), out_shardings=(v_sh, flag_sh),
                         donate_argnums=() if time_major else (0,))
            exe = fn.lower(jax.ShapeDtypeStruct(shape, dtype, sharding=cur_sh),
                           jax.ShapeDtypeStruct((), dtype, sharding=dt_sh)).compile()
        _COMPILED[key] = exe
    return exe


def _to_devices(current: np.ndarray, dt_ms: float, precision: str, devices,
                time_major: bool = False):
    """The (padded) current and dt on the devices, sharded over the batch; `time_major`:
    the current laid out (samples, batch) there (transposed on the device)."""
    dtype = DTYPES[precision]
    batch = current.shape[0]
    padded = padded_batch(batch, len(devices))
    host = np.asarray(current, dtype=dtype)
    if padded != batch:  # zero-current traces: they rest and never diverge
        host = np.concatenate([host, np.zeros((padded - batch, host.shape[1]), dtype)])
    mesh = _mesh(devices)
    cur = jax.device_put(host, NamedSharding(mesh, PartitionSpec(AXIS, None)))
    if time_major:  # the transpose runs on the device, once, outside the timed call
        cur = jax.jit(jnp.transpose, out_shardings=NamedSharding(
            mesh, PartitionSpec(None, AXIS)), donate_argnums=0)(cur)
    dt = jax.device_put(np.asarray(dt_ms, dtype), NamedSharding(mesh, PartitionSpec()))
    return cur, dt


def integrate(current: np.ndarray, dt_ms: float, kernel: str = "euler",
              precision: str = "float64", devices=None, gates: bool = False):
    """Integrate a host (batch, samples) current on `devices` (default: the CPU devices),
    as many of them as `call_devices` gives the batch.

    Returns host NumPy (V (batch, samples), gates {"m", "h", "n"} or None, diverged (batch,)),
    V and gates in `precision`, NaN from each diverged trace's first bad sample."""
    batch, samples = current.shape
    devices = call_devices(devices or devices_for("cpu"), batch)
    with x64(precision), warnings.catch_warnings():
        # a platform that cannot reuse a donated buffer says so; the result is the same
        warnings.filterwarnings("ignore", "Some donated buffers were not usable")
        exe = compiled(padded_batch(batch, len(devices)), samples, kernel, precision,
                       devices, gates)
        cur, dt = _to_devices(current, dt_ms, precision, devices)
        out, bad = exe(cur, dt)
        del cur  # donated
        out = np.asarray(out)  # waits for the result and copies it back
        bad = np.asarray(bad)
    if gates:
        out = out[:, :batch]
        return out[0], {"m": out[1], "h": out[2], "n": out[3]}, bad[:batch]
    return out[:batch], None, bad[:batch]


def device_call(current: np.ndarray, dt_ms: float, kernel: str = "euler",
                precision: str = "float64", devices=None):
    """A zero-argument callable that integrates `current` (copied to the devices now, laid
    out (samples, batch) as the scan reads it, and compiled for now); it returns the device
    arrays (V (samples, batch), diverged), padding included, as JAX dispatches them (the
    caller waits for them through the runtime's `synchronize`), copying nothing back."""
    batch, samples = current.shape
    devices = call_devices(devices or devices_for("cpu"), batch)
    with x64(precision), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some donated buffers were not usable")
        exe = compiled(padded_batch(batch, len(devices)), samples, kernel, precision, devices,
                       time_major=True)
        cur, dt = _to_devices(current, dt_ms, precision, devices, time_major=True)
        jax.block_until_ready((cur, dt))

    def call():
        with x64(precision):
            return exe(cur, dt)

    return call


def clear_cache() -> None:
    """Forget every compiled executable (tests; a long session over many shapes)."""
    _COMPILED.clear()

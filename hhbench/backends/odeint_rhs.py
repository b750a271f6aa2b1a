"""The HH right-hand side and its Jacobian compiled for `scipy.integrate.odeint` (the
`odeint` backend's; numba is imported only when they are built).

`odeint_functions(batch)` gives (f, jacobian, band) as odeint wants them. They are built on
`compiled_ode`, the model's `derivatives` compiled with numba, cached on disk (`numba_cache`
keeps that cache in step with the model), and called through the compiled functions' C
entry points: odeint calls f thousands of times per trace, and numba's dispatcher would add
~0.2 µs to a ~1 µs call.

Safety of those entry points: each is compiled for 1-D float64 arrays of any strides
(numba's layout "A"), so a view (y[::-1], a column) is read through its strides, never
past its buffer, and each checks its arrays' sizes against one another (ValueError: 4
states per current, and per derivative), so a short or long array is refused instead of
read or written out of bounds. What they cannot tell apart is an array of another dtype of
the same item size (int64 data is read as float64: wrong numbers, no out-of-bounds access);
other objects (None, a list, float32 data) are TypeErrors. `odeint_functions`' f and
jacobian check on top that the batch's currents are float64 of `batch` (once per currents
object, not per call: LSODA passes the same one every call).
"""

from __future__ import annotations

import functools

import numpy as np

from hhbench.backends.numba_engine import _compiled_kernels, _copy_function, jit_options

_derivatives = None  # the model's right-hand side, set in the copies `compiled_ode` makes
_neuron_block = None  # the compiled `_fill_neuron_block`, likewise

#: a batch's Jacobian is banded: the states are interleaved per neuron (v, m, h, n, v, …),
#: so each neuron's 4×4 block lies within 3 diagonals of the main one
BAND = 3
#: forward-difference steps of the Jacobian: √ε times |state|, at least this much of it
#: (mV for V, the gates' own scale for m, h, n)
_FD_FLOOR = (1.0, 1e-3, 1e-3, 1e-3)


def _rhs(y, t, i, dy):
    # dy/dt of `batch` neurons stacked as y = (v0, m0, h0, n0, v1, …), currents i (batch,),
    # written into `dy` (4·batch); nothing is returned (see `odeint_functions`)
    if y.size != 4 * i.size or dy.size != y.size:
        raise ValueError("odeint right-hand side: y and dy need 4 states per current")
    for b in range(i.size):
        k = 4 * b
        dv, dm, dh, dn = _derivatives(y[k], y[k + 1], y[k + 2], y[k + 3], i[b])
        dy[k] = dv
        dy[k + 1] = dm
        dy[k + 2] = dh
        dy[k + 3] = dn


def _rhs_one(y, t, i, dy):
    # one neuron, current i a float (nothing to unbox but a number)
    if y.size != 4 or dy.size != 4:
        raise ValueError("odeint right-hand side of one neuron: y and dy need 4 states")
    dv, dm, dh, dn = _derivatives(y[0], y[1], y[2], y[3], i)
    dy[0] = dv
    dy[1] = dm
    dy[2] = dh
    dy[3] = dn


def _fill_neuron_block(block, y, k, i):
    # block[row, col] = d f_row / d y_col for the neuron whose states start at y[k], by
    # forward differences: what LSODA would do, but without a call from Fortran into
    # Python per state
    f0 = _derivatives(y[k], y[k + 1], y[k + 2], y[k + 3], i)
    for c in range(4):
        r = 1.4901161193847656e-08 * max(abs(y[k + c]), _FD_FLOOR[c])
        f1 = _derivatives(y[k] + (r if c == 0 else 0.0), y[k + 1] + (r if c == 1 else 0.0),
                          y[k + 2] + (r if c == 2 else 0.0), y[k + 3] + (r if c == 3 else 0.0),
                          i)
        for row in range(4):
            block[row, c] = (f1[row] - f0[row]) / r


def _jacobian(y, t, i):
    # odeint's banded storage, jac[row - col + BAND, col] = d f_row / d y_col
    if y.size != 4 * i.size:
        raise ValueError("odeint Jacobian: y needs 4 states per current")
    jac = np.zeros((2 * BAND + 1, y.size))
    block = np.empty((4, 4))
    for b in range(i.size):
        k = 4 * b
        _neuron_block(block, y, k, i[b])
        for row in range(4):
            for c in range(4):
                jac[row - c + BAND, k + c] = block[row, c]
    return jac


def _jacobian_one(y, t, i):
    if y.size != 4:
        raise ValueError("odeint Jacobian of one neuron: y needs 4 states")
    block = np.empty((4, 4))
    _neuron_block(block, y, 0, i)
    return block


@functools.cache
def compiled_ode(one_neuron: bool = False):
    """The model's right-hand side and its Jacobian compiled for `scipy.integrate.odeint`,
    cached on disk: (f, jacobian), the compiled functions' C entry points (see the module's
    docstring for what they check). `odeint_functions` wraps them as odeint wants them;
    call these directly only with what the signatures below say.

    Batch form: f(y, t, i, dy) with y the 4·batch states interleaved per neuron (v, m, h, n,
    v, …) and i the batch's currents writes the derivatives into dy (4·batch) and returns
    nothing; jacobian(y, t, i) is banded, (2·BAND + 1, 4·batch): pass `ml=mu=BAND`. LSODA
    then needs one call per Jacobian instead of 4·batch calls of f (measured: 3.9× fewer
    calls in all on 16 steps of different amplitudes). `one_neuron=True`: the same with i a
    float, and jacobian(y, t, i) the full 4×4 matrix (banded storage makes LSODA
    re-evaluate its Jacobian six times as often on one neuron).

    The entry points rather than numba's dispatchers: odeint calls them thousands of times
    per trace, and the dispatcher's argument type resolution costs ~0.2 µs of a ~1 µs call
    here. An entry point unboxes its arguments as the compiled signature says without
    resolving their types first: y, i and dy are 1-D float64 arrays of any strides, t and
    (one neuron) i floats.
    """
    import numba

    njit = functools.partial(numba.njit, cache=True, **jit_options())
    kernels = dict(_derivatives=_compiled_kernels().derivatives)
    block = numba.njit(inline="always", **jit_options())(
        _copy_function(_fill_neuron_block, "_fill_neuron_block_compiled", **kernels))
    current = "float64" if one_neuron else "float64[:]"
    rhs_sig = f"(float64[:], float64, {current}, float64[:])"
    jac_sig = f"(float64[:], float64, {current})"
    if one_neuron:
        f = njit(rhs_sig)(_copy_function(_rhs_one, "_rhs_one_compiled", **kernels))
        jac = njit(jac_sig)(_copy_function(_jacobian_one, "_jacobian_one_compiled",
                                           _neuron_block=block))
    else:
        f = njit(rhs_sig)(_copy_function(_rhs, "_rhs_compiled", **kernels))
        jac = njit(jac_sig)(_copy_function(_jacobian, "_jacobian_compiled",
                                           _neuron_block=block))
    return tuple(getattr(next(iter(d.overloads.values())), "entry_point", d) for d in (f, jac))


def _check_currents(i, batch: int) -> None:
    """TypeError/ValueError unless i is what the batch form reads: float64, 1-D, `batch`."""
    if not isinstance(i, np.ndarray) or i.dtype != np.float64:
        raise TypeError(f"odeint currents: expected a float64 array, got "
                        f"{getattr(i, 'dtype', type(i).__name__)}")
    if i.shape != (batch,):
        raise ValueError(f"odeint currents: expected shape ({batch},), got {i.shape}")


def odeint_functions(batch: int):
    """(f, jacobian, band) for `scipy.integrate.odeint` on `batch` neurons interleaved as in
    `compiled_ode`, to be called with `args=(i,)`: i the currents (a float for one neuron,
    a float64 array of `batch` otherwise) and `ml=mu=band` (None for one neuron: full
    Jacobian). The states y must be 4·batch (ValueError otherwise); currents of another
    dtype or shape are TypeError/ValueError, checked the first time each currents object
    is seen (odeint passes the same one every call, so this costs one identity test).

    f(y, t, i) fills a buffer of its own with the compiled right-hand side and returns it.
    odeint copies what f returns at once, so one buffer serves every call; and an array
    handed back from Python costs odeint nothing to convert, where the compiled function's
    own return value would be a tuple that odeint converts by sequence discovery or an
    array that numba boxes anew: ~17 % of the default step's time (measured, one trace).
    """
    one = batch == 1
    rhs, jacobian = compiled_ode(one_neuron=one)
    dy = np.empty(4 * batch)
    if one:
        def f(y, t_ms, i):
            rhs(y, t_ms, i, dy)
            return dy

        return f, jacobian, None

    checked = [None]  # the last currents object found valid

    def f(y, t_ms, i):
        if i is not checked[0]:
            _check_currents(i, batch)
            checked[0] = i
        rhs(y, t_ms, i, dy)
        return dy

    def jac(y, t_ms, i):
        if i is not checked[0]:
            _check_currents(i, batch)
            checked[0] = i
        return jacobian(y, t_ms, i)

    return f, jac, BAND

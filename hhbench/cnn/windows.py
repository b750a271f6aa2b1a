"""Cutting a stimulus into the CNN's windows and stitching the outputs, without any framework.

Shared by the TensorFlow runner (`hhbench.cnn.runner`) and the JAX runner
(`hhbench.cnn.jaxgraph`), so that both give the same samples the same way:
  * scaling: the network sees I·input_scale; V = output / output_scale;
  * context: output sample k belongs to input sample k + context;
  * windows: a stimulus of N ≥ window samples is cut into windows of `window` samples
    whose outputs tile samples [context, N − context): window j starts at j·out_len, the
    last one is moved back to end at N, and of two overlapping outputs the earlier window
    keeps its samples. A stimulus shorter than the window is zero-padded on the right
    (`padded_samples` says how much) and its output trimmed to the stimulus;
  * chunks: the windows of a call go through the network `chunk` at a time
    (`chunk_size`): all of them in one network call unless a chunk is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hhbench.errors import HHBenchError


@dataclass(frozen=True, kw_only=True)
class CnnOutput:
    """V (batch, out_samples) in mV at times t_ms; `first_sample` is the stimulus index of
    the first output sample."""

    v_mv: np.ndarray
    t_ms: np.ndarray
    first_sample: int
    padded_samples: int
    n_windows: int
    device: str
    #: windows per network call, and network calls, of this run (`chunk_size`)
    windows_per_call: int | None = None
    network_calls: int | None = None


@dataclass(frozen=True, kw_only=True)
class Windows:
    """A stimulus cut into windows: `x` (batch · n_windows, window) of scaled input, float64,
    trace by trace (the windows of trace 0 first)."""

    x: np.ndarray
    starts: list
    batch: int
    n_samples: int
    padded: int


def window_starts(n_samples: int, window: int, out_len: int) -> list[int]:
    """Start index of each window covering a stimulus of n_samples ≥ window samples."""
    last = n_samples - window
    starts = list(range(0, last + 1, out_len))
    if starts[-1] != last:
        starts.append(last)
    return starts


def check_chunk(chunk) -> int | None:
    """`chunk` (windows per network call) as an int ≥ 1, or None (all the windows of a
    call at once); HHBenchError naming any other value."""
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise HHBenchError(f"CNN chunk must be a whole number of windows >= 1 (or None: "
                           f"the batch's windows in one call), got {chunk!r}")
    return int(chunk)


#: bytes one window holds in a network call per value its layers produce: every layer's
#: float32 output kept (4 bytes), twice over for the framework's temporaries (im2col,
#: padded copies); an upper bound of the right order, which is what a cap needs
BYTES_PER_ACTIVATION = 8
#: the share of a device's free memory one network call's windows may take
CALL_MEMORY_SHARE = 0.25
#: the memory assumed where the runtime cannot say what the device has (TensorFlow on a
#: GPU): 8 GiB, which every CUDA card of the last decade has; the shipped model then
#: takes about 270 windows a call
UNKNOWN_CAPACITY_BYTES = 8 * 2**30


def memory_chunk(activation_values: int, capacity_bytes: int | None) -> int:
    """The most windows one network call may take on a device with `capacity_bytes` free
    (None: unknown, `UNKNOWN_CAPACITY_BYTES`): `CALL_MEMORY_SHARE` of it over
    `BYTES_PER_ACTIVATION` × `activation_values` (the values one window's layers produce,
    `hhbench.cnn.plan.activation_values`); at least 1."""
    capacity = UNKNOWN_CAPACITY_BYTES if capacity_bytes is None else int(capacity_bytes)
    per_window = BYTES_PER_ACTIVATION * max(1, int(activation_values))
    return max(1, int(CALL_MEMORY_SHARE * capacity) // per_window)


def call_cap(asked: int | None, memory: int | None) -> int | None:
    """Windows per network call: the chunk asked for (None: the whole batch), never more
    than the memory bound (`memory_chunk`; None: none known)."""
    caps = [c for c in (asked, memory) if c is not None]
    return min(caps) if caps else None


def chunk_size(n_windows: int, chunk: int | None) -> int:
    """Windows per network call for a call over `n_windows` windows: all of them when
    `chunk` is None, else at most `chunk` (at least 1); the network is then called
    ceil(n_windows / chunk_size) times."""
    return max(1, n_windows if chunk is None else min(chunk, n_windows))


def chunks(x: np.ndarray, chunk: int | None):
    """`x`'s rows (windows) `chunk_size(len(x), chunk)` at a time, in order."""
    size = chunk_size(len(x), chunk)
    for start in range(0, len(x), size):
        yield x[start:start + size]


def check_rate(fs_khz, model_fs_khz: float) -> None:
    if fs_khz is not None and abs(fs_khz - model_fs_khz) > 1e-9:
        raise HHBenchError(f"the CNN was trained at {model_fs_khz} kHz; the stimulus is "
                           f"sampled at {fs_khz} kHz")


def cut(current_ua, *, window: int, out_len: int, context: int,
        input_scale: float) -> Windows:
    """The windows of a (batch, samples) or (samples,) current in µA/cm², scaled."""
    current = np.atleast_2d(np.asarray(current_ua, dtype=np.float64))
    batch, n = current.shape
    if n <= 2 * context:
        raise HHBenchError(f"stimulus of {n} samples is too short for the CNN: it needs "
                           f"more than 2 x {context} samples of context")
    padded = max(0, window - n)
    x = np.pad(current, ((0, 0), (0, padded))) * input_scale
    starts = window_starts(n + padded, window, out_len)
    windows = np.stack([x[:, s:s + window] for s in starts], axis=1)
    return Windows(x=windows.reshape(-1, window), starts=starts, batch=batch, n_samples=n,
                   padded=padded)


def stitch(y: np.ndarray, win: Windows, *, out_len: int, context: int, output_scale: float,
           fs_khz: float) -> tuple[np.ndarray, np.ndarray]:
    """(V in mV (batch, samples − 2·context), t_ms) from the network's outputs `y`
    (batch · n_windows, out_len) of the windows `win`."""
    starts = win.starts
    y = y.reshape(win.batch, len(starts), -1)
    # output of window j covers stimulus samples [s_j + context, s_j + context + out_len)
    n_out = win.n_samples + win.padded - 2 * context
    v = np.empty((win.batch, n_out), dtype=np.float64)
    for j in reversed(range(len(starts))):  # earlier windows overwrite the shifted last one
        v[:, starts[j]:starts[j] + out_len] = y[:, j]
    v /= output_scale
    keep = win.n_samples - 2 * context  # padding gives no output: context on the right too
    t_ms = (np.arange(keep) + context) / fs_khz
    return v[:, :keep], t_ms

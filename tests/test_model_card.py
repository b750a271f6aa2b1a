"""The model card's lost-spike table on hand-made traces with known spikes."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")  # hhbench.cnn imports TensorFlow (the [cnn] extra)

from hhbench.cnn.model_card import lost_spikes  # noqa: E402


def _trace(spike_ms, n=2000, fs=20.0):
    """-65 mV with a 12-sample bump to +30 mV centred on each spike time."""
    v = np.full(n, -65.0)
    for t in spike_ms:
        k = int(round(t * fs))
        v[k - 6:k + 6] = 30.0
        v[k] = 40.0
    return v


def test_lost_spikes_by_index_and_by_time_after_onset():
    # reference: 3 spikes in each trace; the CNN reproduces the first two of trace 1 and
    # only the first of trace 2 (its second spike is 5 ms late: outside ±2 ms)
    ref = np.stack([_trace([20, 40, 60]), _trace([25, 45, 65])])
    cnn = np.stack([_trace([20.5, 40]), _trace([25, 50])])
    lost = lost_spikes(ref, cnn, fs_khz=20.0, t0_ms=0.0, onset_ms=np.array([10.0, 15.0]),
                       min_traces=1)
    assert [(r["k"], r["n"], r["matched"]) for r in lost["by_index"]] == [
        (1, 2, 1.0), (2, 2, 0.5), (3, 2, 0.0)]
    # times after onset: 10, 30, 50 ms (trace 1) and 10, 30, 50 ms (trace 2)
    by_time = {(r["from_ms"], r["to_ms"]): (r["n"], r["matched"]) for r in lost["by_time_after_onset"]}
    assert by_time == {(10.0, 20.0): (2, 1.0), (30.0, 50.0): (2, 0.5), (50.0, 70.0): (2, 0.0)}

"""asv benchmarks of the CNN's graphs: the fast 1-D graph through TensorFlow Lite (mode
"lite", the CPU default) and in a tf.function ("compiled"), the lab's Keras graph in a
tf.function ("lab-graph") and `model.predict` ("predict"), at batch 1 and 64, through the
runner; tracks of per-trace cost against the floor and of the fast graph's agreement with
the lab graph (in both runtimes)."""

import numpy as np

from hhbench.suite import case_stimulus
from hhbench.timing import TimingSettings, finish

from .common import skip_if_unavailable

MODES = ["lite", "compiled", "lab-graph", "predict"]
GRAPH_BATCHES = [1, 64]


def _runner(mode):
    skip_if_unavailable("cnn")
    from hhbench.cnn.runner import CnnRunner
    return CnnRunner(device="cpu", mode=mode)


class CnnGraph:
    """Warm time of one runner call on the step stimulus."""

    params = (MODES, GRAPH_BATCHES)
    param_names = ["mode", "batch"]
    timeout = 900
    repeat = (1, 5, 30.0)

    def setup(self, mode, batch):
        self.runner = _runner(mode)
        self.current = case_stimulus("step", batch).current_ua
        self.runner.warmup(batch=batch, calls=2)

    def time_run(self, mode, batch):
        finish(self.runner.run(self.current))


class CnnFloor:
    """Per-trace time of the runner over the floor (matmul FLOPs / TensorFlow's float32
    matmul rate, both measured in this process): 1 would be the machine's limit."""

    params = (MODES, GRAPH_BATCHES)
    param_names = ["mode", "batch"]
    timeout = 900

    def setup(self, mode, batch):
        from hhbench.cnn.flops import count_flops
        from hhbench.floor import cnn_floor_s, measure_ceilings

        self.runner = _runner(mode)
        self.current = case_stimulus("step", batch).current_ua
        self.floor_s = cnn_floor_s(count_flops(self.runner.model)["matmul_flops"],
                                   measure_ceilings(self.runner.tf_device))

    def track_floor_ratio(self, mode, batch):
        from hhbench.timing import measure
        timed, _ = measure(lambda: self.runner.run(self.current),
                           TimingSettings(warmup_calls=2, min_repeats=5, min_time_s=1.0))
        return timed.median_s / self.current.shape[0] / self.floor_s

    track_floor_ratio.unit = "x floor"


class CnnGraphAgreement:
    """Largest |V_fast − V_lab-graph| in mV on the three stimuli (float32 rounding only),
    for the fast graph through TensorFlow Lite and in a tf.function."""

    params = (["lite", "compiled"],)
    param_names = ["mode"]

    def setup(self, mode):
        self.fast, self.lab = _runner(mode), _runner("lab-graph")

    def track_max_abs_diff(self, mode):
        worst = 0.0
        for kind in ("step", "sine", "noise"):
            cur = case_stimulus(kind, 4).current_ua
            worst = max(worst, float(np.max(np.abs(self.fast.run(cur).v_mv
                                                   - self.lab.run(cur).v_mv))))
        return worst

    track_max_abs_diff.unit = "mV"

"""Warm runner call of the CNN per graph: the fast 1-D graph through TensorFlow Lite
("lite", the CPU default) and in a tf.function ("compiled"), the lab's Keras graph
("lab-graph") and `model.predict`, at batch 1 and 64 (step stimulus).
`extra_info` holds the per-trace time and which graph ran."""

import pytest

from hhbench.backends import backend_classes
from hhbench.suite import case_stimulus
from hhbench.timing import finish


@pytest.mark.parametrize("batch", [1, 64], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("mode", ["lite", "compiled", "lab-graph", "predict"])
def test_cnn_graph(benchmark, mode, batch):
    if not backend_classes()["cnn"].is_available():
        pytest.skip("the CNN needs TensorFlow and tf_keras")
    from hhbench.cnn.runner import CnnRunner
    from hhbench.errors import HHBenchError
    try:
        runner = CnnRunner(device="cpu", mode=mode)
    except HHBenchError as exc:  # no default model here
        pytest.skip(str(exc))
    current = case_stimulus("step", batch).current_ua
    runner.warmup(batch=batch, calls=2)
    benchmark.group = f"cnn-b{batch}"
    benchmark(lambda: finish(runner.run(current)))
    benchmark.extra_info.update(mode=mode, graph=runner.graph, batch=batch,
                                per_trace_s=benchmark.stats.stats.median / batch)

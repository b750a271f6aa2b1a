"""The fast graph run by TensorFlow Lite's interpreter (XNNPACK) on the CPU.

`LiteGraph` converts a float32 `FastGraph` (its one traced function, weights as constants)
to a TensorFlow Lite flatbuffer with TensorFlow's own converter, and runs it with
`tf.lite.Interpreter`, whose default CPU delegate, XNNPACK, executes the convolutions.
Nothing is quantised or approximated: the converter keeps float32 throughout, and the
result differs from the fast graph by summation order only (tested against the float64
evaluation of the same weights, as the fast graph is).

Why: at batch 1 the TensorFlow runtime costs more than the arithmetic. Measured on a
2-core CPU (docs/performance-cnn.md), a warm batch-1 call of the fast graph took 4.6-6.6 ms
a trace in a `tf.function` (per-op dispatch, oneDNN's pool preempted by TensorFlow's
executor threads) and 2.9-3.6 ms here, by process; at batch 64 the `tf.function` is 1-4 %
faster.

An interpreter has a fixed input shape, so there is one per batch size, the two most
recently used kept (a stimulus cut into chunks of a set `max_windows_per_call` windows
calls with two sizes; by default a call's windows go in one chunk; a new one costs ~10 ms,
weight packing included). `num_threads` is each
interpreter's thread pool; `default_threads()` follows TensorFlow's intra-op setting (the
usable cores when unset), so both runtimes get the same cores. An interpreter is not
thread-safe: one LiteGraph serves one thread.
"""

from __future__ import annotations

import warnings

import numpy as np

from hhbench.cnn import import_tensorflow
from hhbench.errors import HHBenchError

import_tensorflow()  # quietly, where installed (see hhbench.cnn)

#: TensorFlow's device name for the CPU, where the interpreter runs
CPU_DEVICE = "/job:localhost/replica:0/task:0/device:CPU:0"


def default_threads() -> int:
    """TensorFlow's intra-op thread count, or the usable cores when it is unset (0)."""
    import tensorflow as tf

    from hhbench.environment import usable_cores

    n = tf.config.threading.get_intra_op_parallelism_threads()
    return int(n) if n > 0 else usable_cores()


def supports(options) -> bool:
    """Whether TensorFlow Lite runs the fast graph built with `options` (a
    `FastGraphOptions`): float32, without XLA."""
    return options.dtype == "float32" and not options.jit_compile


#: flatbuffers converted in this process, by `FastGraph.fingerprint()` (the most
#: recently used few)
_CONVERTED: dict[str, bytes] = {}
_KEEP_CONVERTED = 4


def flatbuffer(fast_graph) -> bytes:
    """The TensorFlow Lite model (float32, batch dimension free) of a float32 `FastGraph`.

    Converted once per process and model: the conversion takes ~0.4 s, and a fresh runner
    of the same weights (`hhbench run` makes one per case) gets the same bytes, as a fresh
    numba backend gets the kernels compiled earlier in the process."""
    if not supports(fast_graph.options):
        raise HHBenchError("TensorFlow Lite runs the float32 fast graph without XLA only "
                           f"(got {fast_graph.options.dtype}"
                           f"{', XLA' if fast_graph.options.jit_compile else ''})")
    return _recall(_CONVERTED, fast_graph.fingerprint(), lambda: _convert(fast_graph),
                   keep=_KEEP_CONVERTED)


def _recall(cache: dict, key, make, *, keep: int):
    """cache[key], made by make() when absent; the cache keeps the `keep` most recently
    used entries (a dict keeps insertion order: the first is the least recently used)."""
    if key in cache:
        cache[key] = cache.pop(key)  # now the most recent
    else:
        while len(cache) >= keep:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _convert(fast_graph) -> bytes:
    import tensorflow as tf

    from hhbench.cnn import quiet_native_stderr

    concrete = fast_graph.concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fast_graph.traced)
    with quiet_native_stderr():  # the MLIR converter logs its passes to descriptor 2
        return converter.convert()


class LiteGraph:
    """`graph(x)` for x (batch, window, 1) float32 NumPy → (batch, out, 1) float32 NumPy:
    the fast graph through TensorFlow Lite (see the module docstring). The conversion
    (`flatbuffer`) happens at the first call, so that it counts as cold start, like
    tracing does."""

    device = CPU_DEVICE

    def __init__(self, fast_graph, *, num_threads: int | None = None):
        if num_threads is not None and num_threads < 1:
            raise HHBenchError("num_threads must be >= 1")
        self.fast_graph = fast_graph
        self.num_threads = int(num_threads or default_threads())
        #: the flatbuffer, kept: another batch size's interpreter needs no new fingerprint
        self._model: bytes | None = None
        #: batch size → (interpreter, input index, output index), most recently used last
        self._interpreters: dict[int, tuple] = {}

    def _new_interpreter(self, batch: int, window_shape) -> tuple:
        import tensorflow as tf

        from hhbench.cnn import quiet_native_stderr

        if self._model is None:
            self._model = flatbuffer(self.fast_graph)
        with warnings.catch_warnings(), quiet_native_stderr():  # XNNPACK announces itself
            # TensorFlow ≥ 2.20 warns that tf.lite.Interpreter moves to the ai_edge_litert
            # package; hhbench's TensorFlow range (< 2.22) still ships it
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_content=self._model,
                                              num_threads=self.num_threads)
            index_in = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index_in, [batch, *window_shape])
            interpreter.allocate_tensors()
        return interpreter, index_in, interpreter.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.fast_graph.check_input_shape(x.shape)
        batch = int(x.shape[0])
        interpreter, index_in, index_out = _recall(
            self._interpreters, batch, lambda: self._new_interpreter(batch, x.shape[1:]), keep=2)
        interpreter.set_tensor(index_in, np.ascontiguousarray(x, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(index_out)  # a copy: the buffer is reused

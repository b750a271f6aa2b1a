"""The CNN surrogate: architecture, Keras file formats, runner, training.

Importing this package imports no framework: the JAX runtime (`jaxgraph`, with the h5py
reader `h5weights`) runs where TensorFlow is not installed. The modules that use TensorFlow
(`runner`, `fastgraph`, `litegraph`, `devices`, `training`, `model_card`, and `files` when it
loads a model with Keras) call `import_tensorflow()` first, which imports TensorFlow and
tf_keras, where installed, with the C++ side's start-up log lines (oneDNN notices, "could
not find cuda drivers", absl's pre-init warning) silenced: TensorFlow ≥ 2.17 prints them to
file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says, and they would bury hhbench's own
one-line messages. Python exceptions are unaffected.
"""

import contextlib
import os
import sys
from importlib.util import find_spec


@contextlib.contextmanager
def quiet_native_stderr():
    """Send file descriptor 2 to /dev/null for the duration (native libraries' logging)."""
    if os.environ.get("HHBENCH_TF_LOGS"):  # set to see TensorFlow's native logs
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow() -> None:
    """Import TensorFlow and tf_keras quietly (see the module docstring), where installed;
    nothing when TensorFlow is not (without it, `architecture` and `keras3_phase` still
    import: a GPU machine with Keras 3 on JAX or PyTorch but no TensorFlow can train the
    network, and `jaxgraph` runs it)."""
    if "tensorflow" in sys.modules and "tf_keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if find_spec("tensorflow") is None:
        return
    with quiet_native_stderr():
        import tensorflow  # noqa: F401
        if find_spec("tf_keras") is not None:
            import tf_keras  # noqa: F401

"""The CNN surrogate: architecture, Keras file formats, runner, training (TensorFlow inside).

Importing this package imports TensorFlow and tf_keras, where installed, with the C++ side's
start-up log lines (oneDNN notices, "could not find cuda drivers", absl's pre-init warning) silenced:
TensorFlow ≥ 2.17 prints them to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says,
and they would bury hhbench's own one-line messages. Python exceptions are unaffected.
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
# Without TensorFlow, `architecture` and `keras3_phase` still import: a GPU machine with
# Keras 3 on JAX or PyTorch but no TensorFlow can train the network.
if find_spec("tensorflow") is not None:
    with quiet_native_stderr():
        import tensorflow  # noqa: E402,F401
        import tf_keras  # noqa: E402,F401

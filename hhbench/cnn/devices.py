"""Choosing where TensorFlow runs: "cpu", "gpu", "gpu:N" or "auto".

`resolve_device` checks the request against the devices TensorFlow actually sees and
returns the TensorFlow device name ("/CPU:0", "/GPU:1"), so a GPU that is asked for but
absent is an error, not a silent fallback.
"""

from __future__ import annotations

import re

from hhbench.cnn import import_tensorflow
from hhbench.errors import HHBenchError

import_tensorflow()  # quietly, where installed (see hhbench.cnn)

_SPEC = re.compile(r"^(cpu|gpu|auto)(?::(\d+))?$")


def visible_devices() -> dict[str, list[str]]:
    """{"CPU": [...], "GPU": [...]} physical devices that TensorFlow sees."""
    import tensorflow as tf

    from hhbench.cnn import quiet_native_stderr
    with quiet_native_stderr():  # the first query logs "failed call to cuInit" without a GPU
        return {kind: [d.name for d in tf.config.list_physical_devices(kind)]
                for kind in ("CPU", "GPU")}


def resolve_device(spec: str = "auto") -> str:
    """Turn a device request into a TensorFlow device name; HHBenchError if it is not here."""
    match = _SPEC.match(str(spec).strip().lower())
    if not match or (match.group(1) != "gpu" and match.group(2) is not None):
        raise HHBenchError(f"unknown device {spec!r}; use cpu, gpu, gpu:N or auto")
    kind, index = match.group(1), match.group(2)
    gpus = visible_devices()["GPU"]
    if kind == "cpu" or (kind == "auto" and not gpus):
        return "/CPU:0"
    if kind == "auto":
        return "/GPU:0"
    n = int(index or 0)
    if n >= len(gpus):
        seen = ", ".join(visible_devices()["CPU"] + gpus) or "none"
        raise HHBenchError(f"device {spec!r} requested but TensorFlow sees no such GPU "
                           f"(devices seen: {seen})")
    return f"/GPU:{n}"


def device_description(tf_device: str) -> dict:
    """Name and details of a TensorFlow device, as TensorFlow reports them."""
    import tensorflow as tf
    kind, _, index = tf_device.strip("/").partition(":")
    desc = {"tf_device": tf_device, "kind": kind.lower()}
    if kind.upper() == "GPU":
        gpu = tf.config.list_physical_devices("GPU")[int(index)]
        details = tf.config.experimental.get_device_details(gpu)
        desc.update(name=details.get("device_name", gpu.name),
                    compute_capability=details.get("compute_capability"))
    return desc


def short_device_name(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:GPU:0' or '/GPU:0' → 'GPU:0'."""
    return name.rsplit("device:", 1)[-1].strip("/")


def matmul_call(dtype: str, n: int, tf_device: str):
    """A function computing the sum of an n×n by n×n product (2·n³ FLOPs) in `dtype` on
    `tf_device` with TensorFlow's matmul: what the floor's matmul ceiling is timed with.
    The sum (n² more additions) comes back as a scalar, so that timing the call waits for
    the device without copying the product."""
    import tensorflow as tf

    with tf.device(tf_device):
        a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=getattr(tf, dtype))
        b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=getattr(tf, dtype))

    def call():
        with tf.device(tf_device):
            return tf.reduce_sum(tf.matmul(a, b))
    return call

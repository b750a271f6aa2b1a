"""TensorFlow (the CNN's Keras runtime).

  * devices: the GPUs TensorFlow lists (`tf.config.list_physical_devices("GPU")`);
    "gpu:N" is TensorFlow's "/GPU:N";
  * process set-up: TF_CPP_MIN_LOG_LEVEL=2 (its start-up logging off);
  * precisions: the CNN's fast graph's dtypes, float32, float16, bfloat16, float64
    (TensorFlow's own TF32 switch applies to float32 on Ampere+ GPUs);
  * synchronisation: a TensorFlow call returns its result on the host when it is done;
  * memory in use: `tf.config.experimental.get_memory_info`'s current bytes;
  * energy: NVML's counter of a GPU, RAPL's on the CPU (`hhbench.energy`), where readable.
"""

from __future__ import annotations

from hhbench.runtimes.base import Runtime


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    label = "TensorFlow"
    requires = ("tensorflow", "tf_keras", "h5py")
    install_hint = "pip install 'hhbench[cnn]'"
    precisions = network_precisions = ("float32", "float16", "bfloat16", "float64")

    def process_env(self, env: dict) -> None:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def gpu_count(self) -> int:
        if not self.is_available():
            return 0
        from hhbench.cnn.devices import visible_devices
        return len(visible_devices()["GPU"])

    def native_device(self, device: str) -> str:
        """TensorFlow's device name: "/CPU:0" or "/GPU:N"."""
        if device == "cpu":
            return "/CPU:0"
        return f"/GPU:{self.gpu_index(device)}"

    def energy_where(self, device: str) -> str | None:
        """NVML's counter of GPU N of "gpu:N" (None for a GPU TensorFlow does not see); RAPL's
        CPU packages for "cpu"."""
        return "cpu" if device == "cpu" else self.nvml_counter(device)

    def memory_in_use(self, device: str) -> int | None:
        import tensorflow as tf
        name = self.native_device(device).strip("/")
        try:
            return int(tf.config.experimental.get_memory_info(name)["current"])
        except (ValueError, RuntimeError):  # not tracked on this device (the CPU)
            return None


RUNTIME = TensorFlowRuntime()

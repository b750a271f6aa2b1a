"""Make tests/data/cnn_golden.npz: the lab graph's V for the JAX runtime to be checked against.

With TensorFlow and tf_keras, the TensorFlow runner in mode "lab-graph" (a tf.function over
the lab's own Keras graph, as loaded by tf_keras from Gmodel.json + Gmodel.h5) computes V in
mV, float32, for the lab's three default stimuli (`hhbench.stimuli.make`: step, sine, noise;
2,560 samples each, so 2,048 output samples) on

  * the shipped model models/hh-step-cnn   → keys  shipped_step, shipped_sine, shipped_noise
  * the tiny fixture tests/data/lab_small  → keys  small_step, small_sine, small_noise

and stores with them what they were made with and from: TensorFlow's and tf_keras's versions,
the SHA-256 of each Gmodel.h5 (a test skips, rather than fails, when the model changed),
the first output sample, and the lab graph's RMS error against the converged reference on
the default step (`shipped_step_rmse_mv`), against which the JAX runtime's accuracy change
is measured. Run from the repository root (needs TensorFlow; a minute on a 2-core CPU):

    python scripts/make_cnn_golden.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "tests" / "data" / "cnn_golden.npz"
MODELS = {"shipped": ROOT / "models" / "hh-step-cnn",
          "small": ROOT / "tests" / "data" / "lab_small"}
KINDS = ("step", "sine", "noise")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    from hhbench import metrics, stimuli
    from hhbench.cnn.runner import CnnRunner
    from hhbench.suite import reference_run

    import tensorflow as tf
    import tf_keras

    arrays: dict = {"tensorflow_version": np.array(tf.__version__),
                    "tf_keras_version": np.array(tf_keras.__version__),
                    "graph": np.array("TensorFlow runner, mode lab-graph, CPU")}
    for key, folder in MODELS.items():
        runner = CnnRunner(folder, device="cpu", mode="lab-graph")
        arrays[f"{key}_sha256"] = np.array(sha256(folder / "Gmodel.h5"))
        for kind in KINDS:
            out = runner.run(stimuli.make(kind).current_ua)
            arrays[f"{key}_{kind}"] = out.v_mv[0].astype(np.float32)
            arrays["first_sample"] = np.array(out.first_sample)
            if (key, kind) == ("shipped", "step"):  # its accuracy, from the float64 V
                ref = reference_run(stimuli.make("step")).v_mv
                first, n = out.first_sample, out.v_mv.shape[1]
                arrays["shipped_step_rmse_mv"] = np.array(
                    float(metrics.rmse_mv(ref[first:first + n], out.v_mv[0])))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); TensorFlow {tf.__version__}, "
          f"tf_keras {tf_keras.__version__}; lab graph RMS error on the step "
          f"{float(arrays['shipped_step_rmse_mv']):.4f} mV")


if __name__ == "__main__":
    main()

"""The CPU targets of the JAX backends, each ratio from one run of this script:

  * `jax` float64 against `numba` on 1,024 traces × 2,560 samples of the lab's step
    (round trip and device only), target within 3×;
  * the CNN through JAX against the TensorFlow Lite runtime at batch 64, per trace,
    target within 2×.

    python scripts/cpu_targets.py [--repeats N]

Each backend is prepared and warmed first; the calls of the two sides alternate, so a
change of the machine's load meets both; medians of `--repeats` calls. Run it on a quiet
machine (`hhbench check`)."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from hhbench.errors import DivergenceWarning
from hhbench.suite import case_stimulus, make_backend


def _alternate(calls: dict, repeats: int) -> dict:
    """Median seconds of each call, the calls alternating, after one warm-up each."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", DivergenceWarning)

    stim = case_stimulus("step", 1024)
    numba = make_backend("numba", device="cpu")
    jax64 = make_backend("jax", device="cpu", options={"precision": "float64"})
    for b in (numba, jax64):
        b.prepare()
    call, runtime = jax64.device_call(stim), jax64.device_runtime()

    def device():  # the device-only call, waited for through JAX's runtime
        runtime.synchronize("cpu", call())
    t = _alternate({"numba": lambda: numba.run(stim), "jax": lambda: jax64.run(stim),
                    "jax device only": device}, args.repeats)
    print(f"1,024 traces x 2,560 samples, float64: numba {t['numba'] * 1e3:.1f} ms, jax "
          f"{t['jax'] * 1e3:.1f} ms (round trip; {t['jax device only'] * 1e3:.1f} ms device "
          f"only): jax/numba {t['jax'] / t['numba']:.2f}x round trip, "
          f"{t['jax device only'] / t['numba']:.2f}x device only (target <= 3x)")

    stim = case_stimulus("step", 64)
    lite = make_backend("cnn", device="cpu", options={"runtime": "tensorflow"})
    jcnn = make_backend("cnn", device="cpu", options={"runtime": "jax"})
    for b in (lite, jcnn):
        b.prepare()
    t = _alternate({"lite": lambda: lite.run(stim), "jax": lambda: jcnn.run(stim)},
                   max(5, args.repeats // 2))
    print(f"CNN, batch 64, per trace: TensorFlow Lite {t['lite'] / 64 * 1e3:.2f} ms, JAX "
          f"{t['jax'] / 64 * 1e3:.2f} ms: JAX/Lite {t['jax'] / t['lite']:.2f}x "
          f"(target <= 2x; Lite graph: {lite.settings()['graph']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

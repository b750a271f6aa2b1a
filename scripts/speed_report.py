"""Speed figures for the README, measured in one run on this machine (ratios, not absolutes).

    python scripts/speed_report.py [--model PATH] [--device cpu|gpu|auto]

1. HH simulators, one 2560-sample step trace: warm numpy vs numba (same process, same
   stimulus), and numba's compilation time on its own: a fresh process with an empty
   numba cache directory compiles; a second fresh process loads the on-disk cache.
2. The CNN, batch 1: warm latency of hhbench's runner vs the lab's `model.predict` vs a bare
   compiled call (the runner's own compiled graph on a ready tensor, nothing else), the
   runner's cold start, and the per-trace cost at batch 1, 8 and 64.
All timings use hhbench.timing.measure (cold call apart, warm-up, repeats).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile


from hhbench import stimuli
from hhbench.backends import get_backend
from hhbench.environment import describe_machine, one_line
from hhbench.timing import TimingSettings, measure

SETTINGS = TimingSettings(warmup_calls=2, min_repeats=20, min_time_s=1.0)

COMPILE_PROBE = """
import time
t0 = time.perf_counter()
from hhbench.backends import numba_engine
numba_engine.compile_engine()
print(time.perf_counter() - t0)
"""


def numba_compile_seconds() -> tuple[float, float]:
    """(compile in a fresh process with an empty cache, cache load in a second one)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [float(subprocess.run([sys.executable, "-c", COMPILE_PROBE], env=env, check=True,
                                     capture_output=True, text=True).stdout) for _ in range(2)]
    return runs[0], runs[1]


def simulators() -> None:
    stim = stimuli.step(20.0)
    numpy_b, numba_b = get_backend("numpy"), get_backend("numba")
    numba_b.prepare()
    t_numpy, _ = measure(lambda: numpy_b.run(stim), TimingSettings(warmup_calls=1, min_repeats=10,
                                                                   min_time_s=1.0))
    t_numba, _ = measure(lambda: numba_b.run(stim), SETTINGS)
    compile_s, cache_s = numba_compile_seconds()
    print("| simulator, one 2560-sample step | warm median | IQR |")
    print("|---|---|---|")
    for name, t in (("numpy (Python loop)", t_numpy), ("numba", t_numba)):
        print(f"| {name} | {t.median_s * 1e3:.3f} ms | {t.iqr_s * 1e3:.3f} ms |")
    print(f"\nnumba is **{t_numpy.median_s / t_numba.median_s:.0f}x** faster than numpy, warm. "
          f"numba's compilation (fresh process, empty cache): {compile_s:.2f} s; "
          f"loading its on-disk cache in a fresh process: {cache_s:.2f} s.\n")


def cnn(model: str | None, device: str) -> None:
    import numpy as np

    from hhbench.cnn.runner import CnnRunner  # first: imports TensorFlow quietly

    import tensorflow as tf

    stim = stimuli.step(20.0)
    cold, _ = measure(lambda: CnnRunner(model, device=device).run(stim.current_ua),
                      TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0))
    runner = CnnRunner(model, device=device)
    first, _ = measure(lambda: runner.run(stim.current_ua),
                       TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0))
    x = tf.constant(stim.current_ua[..., None] * runner.input_scale, tf.float32)
    with tf.device(runner.tf_device):
        bare = runner.network  # the compiled graph the runner calls (the fast graph)
        t_bare, _ = measure(lambda: bare(x).numpy(), SETTINGS)
        t_runner, _ = measure(lambda: runner.run(stim.current_ua), SETTINGS)
        xn = x.numpy()
        t_predict, _ = measure(lambda: runner.model.predict(xn, verbose=0), SETTINGS)
    print(f"CNN on {runner.tf_device} ({runner.loaded.source}), batch 1:\n")
    print("| call | warm median | IQR | vs bare call |")
    print("|---|---|---|---|")
    for name, t in (("bare compiled call", t_bare), ("hhbench runner", t_runner),
                    ("model.predict (the lab's way)", t_predict)):
        print(f"| {name} | {t.median_s * 1e3:.2f} ms | {t.iqr_s * 1e3:.2f} ms | "
              f"{t.median_s / t_bare.median_s:.2f}x |")
    print(f"\nRunner overhead over the bare call: "
          f"{(t_runner.median_s / t_bare.median_s - 1) * 100:+.1f} %. Cold start "
          f"(load the model + trace + first call): {cold.cold_s:.2f} s; first call of a "
          f"loaded runner (tracing): {first.cold_s * 1e3:.0f} ms.\n")
    print("| batch | warm median per call | per trace |")
    print("|---|---|---|")
    for batch in (1, 8, 64):
        cur = np.repeat(stim.current_ua, batch, axis=0)
        t, _ = measure(lambda: runner.run(cur), TimingSettings(warmup_calls=1, min_repeats=5,
                                                               min_time_s=1.0))
        print(f"| {batch} | {t.median_s * 1e3:.2f} ms | {t.median_s / batch * 1e3:.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-cnn", action="store_true")
    args = parser.parse_args()
    print(f"Machine: {one_line(describe_machine())}\n")
    simulators()
    if not args.skip_cnn:
        cnn(args.model, args.device)


if __name__ == "__main__":
    main()

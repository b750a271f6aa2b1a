"""pytest-benchmark case of the calibration kernel (`hhbench.calibration`): times one
calibration and records, in extra_info, the ratio of two back-to-back calibrations and
their spreads (on a quiet machine the ratio lies within 1.00 ± 0.05)."""

from hhbench.calibration import calibrate


def test_calibration_back_to_back(benchmark):
    first = calibrate()
    second = benchmark.pedantic(calibrate, rounds=1, iterations=1)
    benchmark.extra_info["back_to_back_ratio"] = second["min_s"] / first["min_s"]
    benchmark.extra_info["spread_pct"] = 100 * max(first["spread"], second["spread"])
    print(f"\ncalibration back-to-back ratio {second['min_s'] / first['min_s']:.3f}, "
          f"spreads {first['spread']:.1%} and {second['spread']:.1%}")

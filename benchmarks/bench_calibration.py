"""asv benchmarks of the calibration kernel (`hhbench.calibration`): the NEW/OLD ratio of
two back-to-back calibrations on one machine (on a quiet machine within 1.00 ± 0.05: the
ratio `compare` shows is then about the machines, not the moment) and the kernel's own
spread."""

from hhbench.calibration import calibrate


class CalibrationStability:
    """Two calibrations, one after the other, in one process."""

    timeout = 120

    def setup(self):
        self.first, self.second = calibrate(), calibrate()

    def track_back_to_back_ratio(self):
        return self.second["min_s"] / self.first["min_s"]

    track_back_to_back_ratio.unit = "ratio"

    def track_spread_pct(self):
        return 100 * max(self.first["spread"], self.second["spread"])

    track_spread_pct.unit = "%"

    def time_calibrate(self):
        calibrate()

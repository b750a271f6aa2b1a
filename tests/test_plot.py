"""Tests of hhbench.plot on a small hand-made RunResults (no suite run: fast)."""

import numpy as np
import pytest

from hhbench.errors import HHBenchError
from hhbench.plot import plot_results
from hhbench.results import CaseResult, RunResults
from hhbench.timing import Timing

ENV = {"cpu": "Test CPU", "logical_cores": 2, "memory_gib": 8.0, "gpus": []}
COMMON = dict(n_samples=200, dt_ms=0.05, reference="converged")


def case(backend, stimulus, batch, *, status="ok", median_s=1e-3, rmse=1.0, gamma=0.9,
         device="cpu"):
    """One case; a failed case has no timing and no accuracy."""
    if status == "failed":
        return CaseResult(backend=backend, stimulus=stimulus, batch=batch, device=device,
                          status="failed", error="RuntimeError: boom", **COMMON)
    return CaseResult(backend=backend, stimulus=stimulus, batch=batch, device=device,
                      status=status, prepare_s=0.1,
                      timing=Timing(cold_s=2 * median_s,
                                    samples_s=(0.9 * median_s, median_s, 1.1 * median_s)),
                      accuracy={"rmse_mv_median": rmse, "gamma_median": gamma,
                                "frac_diverged": 1.0 if status == "diverged" else 0.0},
                      **COMMON)


def example(t0_cnn=2.0):
    t = np.round(np.arange(200) * 0.05, 4)
    current = np.where(t > 1.0, 10.0, 0.0)
    ref = -65 + 90 * np.exp(-((t - 5.0) / 0.3) ** 2)
    diverged = list(ref[:80] + 1.0) + [None] * 120    # NaN saved as None in JSON
    t_cnn = t[(t >= t0_cnn) & (t < 8.0)]
    return {"t_ms": t.tolist(), "current_ua": current.tolist(), "reference": ref.tolist(),
            "backends": {"numba": {"t_ms": t.tolist(), "v_mv": (ref + 0.5).tolist()},
                         "numpy": {"t_ms": t.tolist(), "v_mv": diverged},
                         "cnn@CPU:0": {"t_ms": t_cnn.tolist(),
                                       "v_mv": (-60 + 0 * t_cnn).tolist()}}}


def make_results(cases, examples=None):
    return RunResults(settings={"reference": "converged", "batches": [1, 4]}, environment=ENV,
                      calibration={}, cases=tuple(cases), examples=examples or {})


@pytest.fixture
def results():
    cases = [
        case("numba", "step", 1, median_s=2e-3, rmse=0.5, gamma=1.0),
        case("numba", "step", 4, median_s=3e-3, rmse=0.5, gamma=1.0),
        case("numpy", "step", 1, median_s=9e-3, rmse=0.5, gamma=1.0),
        case("numpy", "step", 4, median_s=2e-2, rmse=0.5, gamma=1.0),
        case("cnn", "step", 1, median_s=4e-3, rmse=12.0, gamma=0.3, device="CPU:0"),
        case("cnn", "step", 4, status="failed", device="CPU:0"),
        case("numba", "sine", 1, median_s=2e-3, rmse=0.7, gamma=0.95),
        case("numpy", "sine", 1, status="diverged", median_s=9e-3, rmse=None, gamma=None),
        case("cnn", "sine", 1, status="failed", device="CPU:0"),
    ]
    return make_results(cases, {"step": example(), "sine": example(3.0)})


def check_png(path, min_px=200):
    assert path.read_bytes()[:4] == b"\x89PNG"
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert min_px <= img.shape[0] <= 4000 and min_px <= img.shape[1] <= 6000
    assert img.std() > 0.01          # not a blank image


def test_writes_expected_files(results, tmp_path):
    out = tmp_path / "figs"                       # created: its parent exists
    paths = plot_results(results, out)
    names = [p.name for p in paths]
    assert names == ["cost_vs_batch.png", "accuracy.png", "overlay_step.png",
                     "overlay_sine.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)   # no temporary leftovers
    for p in paths:
        assert p.parent == out
        check_png(p)


def test_existing_folder_and_overwrite(results, tmp_path):
    first = plot_results(results, tmp_path)
    second = plot_results(results, str(tmp_path))   # str path, files replaced in place
    assert [p.name for p in first] == [p.name for p in second]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first)


def test_no_examples_no_overlays(results, tmp_path):
    res = make_results(results.cases)
    assert [p.name for p in plot_results(res, tmp_path)] == ["cost_vs_batch.png",
                                                             "accuracy.png"]


def test_only_failed_cases_raise(tmp_path):
    res = make_results([case("numba", "step", 1, status="failed"),
                        case("cnn", "step", 1, status="failed", device="CPU:0")])
    with pytest.raises(HHBenchError, match="nothing to plot"):
        plot_results(res, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(HHBenchError, match="nothing to plot"):
        plot_results(make_results([]), tmp_path)


def test_missing_parent_raises_and_writes_nothing(results, tmp_path):
    target = tmp_path / "missing" / "figs"
    with pytest.raises(HHBenchError) as info:
        plot_results(results, target)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "missing").exists()
    assert list(tmp_path.iterdir()) == []


def test_leaves_pyplot_alone(results, tmp_path):
    """No pyplot import, no backend switch, no figure left open."""
    import sys
    had_pyplot = "matplotlib.pyplot" in sys.modules
    plot_results(results, tmp_path)
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_bad_format(results, tmp_path):
    with pytest.raises(HHBenchError, match="format"):
        plot_results(results, tmp_path, fmt="docx")
    assert list(tmp_path.iterdir()) == []

"""The harness end to end: `hhbench run`, results files, compare, plot, bad input."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from hhbench import load_results
from hhbench.cli import main
from hhbench.compare import Tolerances, compare, parse_threshold
from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults
from hhbench.suite import accuracy, case_stimulus, reference_run
from hhbench.timing import ProcessTiming, Timing

from conftest import needs_tf


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, lab_small):
    folder = tmp_path_factory.mktemp("run")
    out = folder / "results.json"
    code = main(["run", "--quick", "--no-progress", "--backends", "numpy,numba,exp-euler,cnn",
                 "--model", str(lab_small), "-o", str(out)])
    assert code == 0
    return out


def test_run_writes_valid_json_and_csv(quick_run, capsys):
    data = json.loads(quick_run.read_text())
    assert data["schema"] == "hhbench-results/2"
    assert len(data["cases"]) == 4 * 3
    env = data["environment"]
    assert env["cpu"] and env["logical_cores"] >= 1 and env["versions"]["numpy"]
    assert data["calibration"]["kernel"] == "exp_f64_4096_x20"
    assert 0 < data["calibration"]["min_s"] <= data["calibration"]["median_s"]
    # the calibration's blocks are spread over the run and its processes (a core slowed
    # for a second by another tenant makes one moment's blocks slow, not the run's): 9
    # before the workers, one between each two worker processes, 3 in each, 3 after
    workers = len(env["workers"])
    assert workers == 2 * 3  # the simulators' and TensorFlow's groups, 3 processes each
    calibration = data["calibration"]
    assert len(calibration["block_min_s"]) == 9 + (workers - 1) + 3 * workers + 3
    assert calibration["moments"] == 1 + (workers - 1) + workers + 1
    assert all(len(w["calibration_block_min_s"]) == 3 for w in env["workers"])
    assert calibration["min_s"] == min(calibration["block_min_s"])
    # the spread: (lower quartile - min) / min of the blocks of the start, the end and
    # the workers, not of those right after a worker exited (index 9 to 9 + workers - 2)
    blocks = calibration["block_min_s"]
    clean = blocks[:9] + blocks[9 + workers - 1:]
    assert calibration["spread"] == pytest.approx(
        (np.percentile(clean, 25) - min(clean)) / min(clean))
    assert env["load_during"]["wall_s"] > 0 and env["load_during"]["other_cores"] >= 0
    case = next(c for c in data["cases"] if c["backend"] == "numba" and c["stimulus"] == "step")
    assert case["status"] == "ok" and len(case["timing"]["samples_s"]) >= 2
    assert case["timing"]["cold_s"] > 0 and case["prepare_s"] >= 0
    # every case in 3 fresh processes, each with its own set-up, first call and samples
    assert len(case["processes"]) == 3
    assert all(p["cold_s"] > 0 and len(p["samples_s"]) >= 3 for p in case["processes"])
    pids = {w["pid"] for w in env["workers"]}
    assert len(env["workers"]) == 3 * 2 and len(pids) == 6  # simulators and TensorFlow groups
    numba_worker = next(w for w in env["workers"] if w["group"] == "simulators")
    assert numba_worker["threads"]["numba"]["threading_layer"] == "omp"
    # a lone trace is one chunk: it runs on the calling thread whatever the pool's size
    assert case["settings"]["call_threads"] == 1 and case["settings"]["threads"] >= 1
    assert numba_worker["numba_cache"]["cache_hits"] + numba_worker["numba_cache"]["cache_misses"] > 0
    assert env["state"]["load_average"] is not None
    assert case["accuracy"]["spike_count_abs_error_mean"] == 0  # 10 spikes, like the reference
    table = pd.read_csv(quick_run.with_suffix(".csv"))
    assert len(table) == 12 and {"cold_ms", "warm_median_ms", "gamma", "rmse_mv"} <= set(table)


def test_diverging_backend_is_recorded_and_the_run_goes_on(quick_run):
    res = RunResults.load(quick_run)
    assert res.case("numba", "sine", 1).status == "diverged"
    assert res.case("exp-euler", "sine", 1).status == "ok"
    assert res.case("cnn", "step", 1).device == "cpu"


def test_load_results_gives_a_dataframe(quick_run):
    df = load_results(quick_run)
    assert len(df) == 12 and df["cpu"].notna().all()
    row = df[(df.backend == "numba") & (df.stimulus == "noise")].iloc[0]
    assert row.traces_per_s == pytest.approx(1e3 / row.warm_median_ms)


def test_accuracy_of_a_backend_against_itself_is_perfect():
    stim = case_stimulus("step", 2)
    ref = reference_run(stim, "lab")
    acc = accuracy(ref, ref)
    assert acc["rmse_mv_median"] == 0 and acc["gamma_median"] == 1.0
    assert acc["frac_spike_count_exact"] == 1.0


def test_accuracy_is_measured_on_the_cnn_window(lab_small):
    from hhbench.backends import get_backend
    stim = case_stimulus("step", 1)
    ref = reference_run(stim)
    cnn = get_backend("cnn", model=lab_small, device="cpu").run(stim)
    acc = accuracy(cnn, ref)
    window = ref.v_batch[:, 256:256 + 2048]
    expected = np.sqrt(np.mean((window - cnn.v_batch) ** 2))
    assert acc["rmse_mv_median"] == pytest.approx(expected)


# -- compare -------------------------------------------------------------------------------

def _case(backend, samples, processes=5, **accuracy) -> CaseResult:
    """A case timed in `processes` processes whose levels differ by about ±1 %."""
    effects = 1 + 0.01 * np.sin(np.arange(processes) + 1.0)
    procs = tuple(ProcessTiming(prepare_s=0.1, cold_s=0.5, samples_s=tuple(np.asarray(samples) * e))
                  for e in effects)
    return CaseResult(backend=backend, stimulus="step", batch=1, device="cpu", status="ok",
                      n_samples=2560, dt_ms=0.05, reference="converged", processes=procs,
                      accuracy={"rmse_mv_median": 1.0, "gamma_median": 0.95,
                                "spike_count_abs_error_mean": 0.0, **accuracy})


def _results(*cases) -> RunResults:
    return RunResults(settings={}, environment={"cpu": "test"}, calibration={"exp_f64_1m_s": 0.01},
                      cases=tuple(cases))


# 20 synthetic warm samples of 10 ms ± 0.1 ms per process
BASE = 0.010 + 0.0001 * np.sin(np.arange(20))


def test_compare_passes_equal_files(tmp_path, capsys):
    res = _results(_case("numba", BASE), _case("numpy", 50 * BASE))
    res.save(tmp_path / "a.json")
    res.save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert "no regression" in capsys.readouterr().out
    assert {r["speed"] for r in compare(res, res).rows} == {"same"}


def test_compare_flags_an_injected_slowdown(tmp_path, capsys):
    old = _results(_case("numba", BASE), _case("numpy", 50 * BASE))
    new = _results(_case("numba", 1.5 * BASE), _case("numpy", 50 * BASE))
    report = compare(old, new)
    row = next(r for r in report.rows if r["backend"] == "numba")
    assert row["speed"] == "slower" and row["ratio"] == pytest.approx(1.5)
    assert 1 < row["ci_low"] < 1.5 < row["ci_high"] and report.regressed
    assert next(r for r in report.rows if r["backend"] == "numpy")["speed"] == "same"
    old.save(tmp_path / "old.json")
    new.save(tmp_path / "new.json")
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "REGRESSION (exit 1): 1 slower"


def test_compare_threshold_decides_what_matters():
    old = _results(_case("numba", BASE))
    new = _results(_case("numba", 1.05 * BASE))
    assert compare(old, new).rows[0]["speed"] == "same"            # 5 % < 10 %
    assert compare(old, new, Tolerances(threshold=0.01)).regressed  # 5 % > 1 %


def test_compare_without_enough_processes_is_inconclusive_never_no_regression(tmp_path, capsys):
    # 50 % slower, but one process a side (the old --quick): no verdict is possible
    old = _results(_case("numba", [0.010, 0.011], processes=1))
    new = _results(_case("numba", [0.015, 0.016], processes=1))
    report = compare(old, new)
    row = report.rows[0]
    assert row["speed"] == "inconclusive" and "too few processes" in row["why"]
    assert report.status == 0 and compare(old, new, Tolerances(strict=True)).status == 3
    old.save(tmp_path / "old.json")
    new.save(tmp_path / "new.json")
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out
    assert "no regression" not in out and "cannot be ruled out" in out
    assert main(["compare", "--strict", str(tmp_path / "old.json"),
                 str(tmp_path / "new.json")]) == 3
    assert parse_threshold("10%") == pytest.approx(0.1) and parse_threshold("0.2") == 0.2


def test_schema_1_files_load_as_one_process(tmp_path):
    data = _results(_case("numba", BASE, processes=1)).to_dict()
    data["schema"] = "hhbench-results/1"
    for case in data["cases"]:
        del case["processes"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = RunResults.load(tmp_path / "old.json")
    assert len(old.cases[0].processes) == 1
    assert old.cases[0].processes[0].samples_s == tuple(old.cases[0].timing.samples_s)
    assert compare(old, _results(_case("numba", BASE))).rows[0]["speed"] == "inconclusive"


def test_compare_flags_an_accuracy_loss():
    old = _results(_case("exp-euler", BASE))
    for worse in ({"rmse_mv_median": 6.0}, {"gamma_median": 0.5},
                  {"spike_count_abs_error_mean": 2.0}):
        row = compare(old, _results(_case("exp-euler", BASE, **worse))).rows[0]
        assert row["accuracy"].startswith("WORSE"), worse
    diverged = dataclasses.replace(_case("exp-euler", BASE), status="diverged")
    assert compare(old, _results(diverged)).regressed


def test_compare_matches_a_failed_case_on_another_device_and_flags_missing_ones():
    old = _results(_case("cnn", BASE))
    failed = CaseResult(backend="cnn", stimulus="step", batch=1, device="auto", status="failed",
                        n_samples=2560, dt_ms=0.05, reference="converged", error="model not found")
    report = compare(old, _results(failed))
    assert len(report.rows) == 1 and report.rows[0]["accuracy"] == "WORSE (failed)"
    gone = compare(_results(_case("cnn", BASE), _case("numba", BASE)), _results(_case("numba", BASE)))
    assert gone.regressed and gone.rows[0]["speed"] == "MISSING in NEW"


BROKEN_BACKEND = """
from hhbench.backends import register
from hhbench.backends.base import Backend

@register
class Broken(Backend):
    name = "broken-for-test"
    summary = "fails in prepare"

    def prepare(self):
        raise RuntimeError("the engine is on fire")
"""


@pytest.fixture
def restore_registry(monkeypatch):
    """Backends registered by a test's extra module vanish afterwards."""
    import sys

    from hhbench import backends
    backends.backend_classes()  # discover the package's own backends first
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    yield
    sys.modules.pop("hhbench_extra_broken_backend", None)


def test_a_failed_case_is_loud_exit_1_with_its_reason(tmp_path, capsys, restore_registry):
    module = tmp_path / "broken_backend.py"
    module.write_text(BROKEN_BACKEND)
    config = tmp_path / "suite.json"
    config.write_text(json.dumps({"backends": ["exp-euler", "broken-for-test"],
                                  "stimuli": ["step"], "batches": [1], "processes": 2,
                                  "extra_backend_modules": [str(module)],
                                  "timing": {"warmup_calls": 0, "min_repeats": 3,
                                             "min_time_s": 0.0}}))
    out = tmp_path / "r.json"
    assert main(["run", "--config", str(config), "--no-progress", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    # the reason in full below the table, not cut to fit a cell
    assert ("failed broken-for-test step x1 on cpu: RuntimeError: the engine is on fire"
            in captured.out) and "(in 2 of 2 processes)" in captured.out
    assert "1 of 2 cases has failed" in captured.err
    res = RunResults.load(out)  # written all the same
    assert res.case("exp-euler", "step", 1).status == "ok"
    assert "in 2 of 2 processes" in res.case("broken-for-test", "step", 1).error


# -- plot ----------------------------------------------------------------------------------

def test_plot_writes_pngs(quick_run, tmp_path):
    assert main(["plot", str(quick_run), "-o", str(tmp_path / "plots")]) == 0
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"cost_vs_batch.png", "accuracy.png", "overlay_step.png", "overlay_sine.png",
            "overlay_noise.png"} <= names


# -- bad input: one line on stderr, exit 2, no file ------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", "--backends", "nest"], "unknown backend 'nest'"),
    (["run", "--stimuli", "ramp"], "unknown stimulus 'ramp'"),
    (["run", "--batch", "0"], "batch sizes must be positive"),
    (["run", "--batch", "x"], "comma-separated list"),
    pytest.param(["run", "--backends", "cnn", "--device", "gpu"], "'gpu' requested but",
                 marks=needs_tf),
    (["run", "-o", "/no/such/folder/r.json"], "does not exist"),
    (["simulate", "--backend", "nest"], "valid backends"),
    (["simulate", "--stimulus", "noise", "--sigma", "-2"], "sigma"),
    (["simulate", "--stimulus", "sine", "--freq-khz", "-1"], "frequency"),
    (["simulate", "--samples", "0"], "samples"),
    (["simulate", "--fs-khz", "0"], "sampling rate"),
    (["simulate", "--fs-khz", "-20"], "sampling rate"),
    (["simulate", "--amplitude", "nan"], "amplitude must be finite"),
    (["simulate", "-o", "/no/such/folder/t.csv"], "does not exist"),
    pytest.param(["simulate", "--backend", "cnn", "--model", "/no/such/model"], "no such model", marks=needs_tf),
    pytest.param(["simulate", "--backend", "cnn", "--device", "gpu:3"], "'gpu:3' requested but",
                 marks=needs_tf),
    pytest.param(["model-info", "--model", "/no/such/model"], "no such model", marks=needs_tf),
    (["plot", "/no/such/results.json"], "no such results file"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_rejects_foreign_files(tmp_path, capsys):
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"benchmarks": []}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    for path in (foreign, broken):
        assert main(["compare", str(path), str(path)]) == 2
        assert "not" in capsys.readouterr().err


def test_failed_run_leaves_no_file(tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", "--backends", "nest", "-o", str(out)]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_file(tmp_path):
    from hhbench.atomic import atomic_write, atomic_writer
    path = tmp_path / "results.json"
    atomic_write(path, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(path) as fh:
            fh.write("half of the new")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize("argv, message", [
    (["simulate", "-o", "."], "is a folder"),
    (["simulate", "--plot", "trace.xyz"], "unknown image format"),
])
def test_output_paths_checked_before_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_config_file_and_lab_reference(tmp_path, capsys):
    config = tmp_path / "suite.toml"
    config.write_text('backends = ["numba", "exp-euler"]\nstimuli = ["step"]\nbatches = [2]\n'
                      'reference = "lab"\n[timing]\nwarmup_calls = 0\nmin_repeats = 4\n'
                      'min_time_s = 0.0\n')
    out = tmp_path / "r.json"
    assert main(["run", "--config", str(config), "--no-progress", "-o", str(out)]) == 0
    res = RunResults.load(out)
    assert [(c.backend, c.batch) for c in res.cases] == [("numba", 2), ("exp-euler", 2)]
    assert len(res.case("numba", "step", 2).processes) == 3  # the default
    numba = res.case("numba", "step", 2)
    # against the lab reference (forward Euler), the numba backend is exact
    assert numba.reference == "lab" and numba.accuracy["rmse_mv_median"] == 0.0
    assert len(numba.timing.samples_s) >= 4
    assert res.case("exp-euler", "step", 2).accuracy["rmse_mv_median"] > 1.0
    assert "against the lab reference" in capsys.readouterr().out


def test_bad_config_file(tmp_path, capsys):
    config = tmp_path / "suite.toml"
    config.write_text('backends = ["numba"]\nbogus = 3\n')
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "unknown setting 'bogus'" in err


def test_an_unknown_cnn_mode_is_refused_before_any_worker_starts(tmp_path, capsys):
    """Checked in the parent without TensorFlow: one line, exit 2, no file."""
    import sys
    config = tmp_path / "suite.toml"
    config.write_text('backends = ["numba", "cnn"]\ncnn_mode = "fast-ish"\n')
    out = tmp_path / "r.json"
    tf_before = "tensorflow" in sys.modules
    assert main(["run", "--config", str(config), "--no-progress", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hhbench: error: {config}: unknown CNN mode "
                                               "'fast-ish'; choose one of: auto, lite, ")
    assert not out.exists() and ("tensorflow" in sys.modules) == tf_before
    from hhbench.scaling import ScalingConfig
    with pytest.raises(HHBenchError, match="unknown CNN mode 'lab'"):
        ScalingConfig(backends=("cnn",), options={"cnn": {"mode": "lab"}})


def test_tiled_cases_get_the_tiled_reference_of_their_one_trace():
    from hhbench.suite import cached_reference, case_stimulus, reference_run
    tiled = cached_reference("step", 3, 600, 0, "lab")
    direct = reference_run(case_stimulus("step", 3, n_samples=600), "lab")
    np.testing.assert_array_equal(tiled.v_batch, direct.v_batch)
    assert tiled.v_mv.shape == (3, 600) and tiled.stimulus.batch_size == 3
    assert tiled.diverged.tolist() == direct.diverged.tolist()

"""The harness end to end: `hhbench run`, results files, compare, plot, bad input."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from hhbench import load_results
from hhbench.cli import main
from hhbench.compare import Tolerances, compare, parse_threshold
from hhbench.results import RunResults
from hhbench.suite import SuiteConfig, accuracy, case_stimulus, reference_run, run_suite
from hhbench.timing import Timing, TimingSettings


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
    assert data["schema"] == "hhbench-results/1"
    assert len(data["cases"]) == 4 * 3
    env = data["environment"]
    assert env["cpu"] and env["logical_cores"] >= 1 and env["versions"]["numpy"]
    assert set(data["calibration"]) == {"matmul_f32_512_s", "exp_f64_1m_s"}
    case = next(c for c in data["cases"] if c["backend"] == "numba" and c["stimulus"] == "step")
    assert case["status"] == "ok" and len(case["timing"]["samples_s"]) >= 2
    assert case["timing"]["cold_s"] > 0 and case["prepare_s"] >= 0
    assert case["accuracy"]["spike_count_abs_error_mean"] == 0  # 10 spikes, like the reference
    table = pd.read_csv(quick_run.with_suffix(".csv"))
    assert len(table) == 12 and {"cold_ms", "warm_median_ms", "gamma", "rmse_mv"} <= set(table)


def test_diverging_backend_is_recorded_and_the_run_goes_on(quick_run):
    res = RunResults.load(quick_run)
    assert res.case("numba", "sine", 1).status == "diverged"
    assert res.case("exp-euler", "sine", 1).status == "ok"
    assert res.case("cnn", "step", 1).device == "CPU:0"


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

@pytest.fixture(scope="module")
def baseline():
    config = SuiteConfig(backends=("numba", "exp-euler"), stimuli=("step",), batches=(1,),
                         timing=TimingSettings(warmup_calls=1, min_repeats=20, min_time_s=0.0))
    return run_suite(config, progress=False)


def _scaled(res: RunResults, backend: str, factor: float, **accuracy) -> RunResults:
    cases = []
    for c in res.cases:
        if c.backend == backend:
            t = Timing(cold_s=c.timing.cold_s, samples_s=tuple(s * factor for s in c.timing.samples_s))
            c = dataclasses.replace(c, timing=t, accuracy={**c.accuracy, **accuracy})
        cases.append(c)
    return dataclasses.replace(res, cases=tuple(cases))


def test_compare_passes_equal_files(baseline, tmp_path):
    baseline.save(tmp_path / "a.json")
    baseline.save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert not compare(baseline, baseline).regressed


def test_compare_flags_an_injected_slowdown(baseline, tmp_path, capsys):
    slow = _scaled(baseline, "numba", 1.5)
    report = compare(baseline, slow)
    row = next(r for r in report.rows if r["backend"] == "numba")
    assert row["speed"] == "SLOWER" and row["ratio"] == pytest.approx(1.5)
    assert report.regressed
    baseline.save(tmp_path / "old.json")
    slow.save(tmp_path / "new.json")
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    # a 5 % slowdown is below the 10 % threshold; above a 1 % threshold it counts
    assert not compare(baseline, _scaled(baseline, "numba", 1.05)).regressed
    assert compare(baseline, _scaled(baseline, "numba", 1.05), Tolerances(threshold=0.01)).regressed


def test_compare_flags_an_accuracy_loss(baseline):
    old_rmse = baseline.case("exp-euler", "step", 1).accuracy["rmse_mv_median"]
    worse = _scaled(baseline, "exp-euler", 1.0, rmse_mv_median=old_rmse + 5.0)
    row = next(r for r in compare(baseline, worse).rows if r["backend"] == "exp-euler")
    assert row["accuracy"].startswith("WORSE") and "rmse" in row["accuracy"]
    assert compare(baseline, worse).regressed


def test_compare_needs_significance():
    few = RunResults(settings={}, environment={}, calibration={}, cases=())
    assert parse_threshold("10%") == pytest.approx(0.1) and parse_threshold("0.2") == 0.2
    assert not compare(few, few).regressed


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
    (["run", "--backends", "cnn", "--device", "gpu"], "no such GPU"),
    (["run", "-o", "/no/such/folder/r.json"], "does not exist"),
    (["simulate", "--backend", "nest"], "valid backends"),
    (["simulate", "--stimulus", "noise", "--sigma", "-2"], "sigma"),
    (["simulate", "--stimulus", "sine", "--freq-khz", "-1"], "frequency"),
    (["simulate", "--samples", "0"], "samples"),
    (["simulate", "--fs-khz", "0"], "sampling rate"),
    (["simulate", "--fs-khz", "-20"], "sampling rate"),
    (["simulate", "--amplitude", "nan"], "amplitude must be finite"),
    (["simulate", "-o", "/no/such/folder/t.csv"], "does not exist"),
    (["simulate", "--backend", "cnn", "--model", "/no/such/model"], "no such model"),
    (["simulate", "--backend", "cnn", "--device", "gpu:3"], "no such GPU"),
    (["model-info", "--model", "/no/such/model"], "no such model"),
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

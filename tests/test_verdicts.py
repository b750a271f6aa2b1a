"""Verdicts CI can act on: exit statuses 0 / 1 / 3 (and --strict), busy runs discounted
with their evidence shown, pairing on the full key, notes on what differs, the default
suite's note and `python -m hhbench`."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from hhbench.busy import busy_reasons
from hhbench.cli import main
from hhbench.compare import Tolerances, compare, format_comparison, format_markdown
from hhbench.results import CaseResult, RunResults
from hhbench.timing import ProcessTiming

ROOT = Path(__file__).resolve().parents[1]
QUIET_LOAD = {"wall_s": 60.0, "own_cores": 1.0, "other_cores": 0.05, "steal_fraction": 0.0,
              "logical_cores": 2}
#: what two busy-loop processes beside a run on 2 cores leave (measured with LoadMeter)
LOADED = {**QUIET_LOAD, "other_cores": 1.3}


def _case(backend, medians, *, device="cpu", settings=None, status="ok"):
    # three samples per process around its median, so the median is exact
    procs = tuple(ProcessTiming(prepare_s=0.0, cold_s=0.1, samples_s=(m * 0.99, m, m * 1.01))
                  for m in medians)
    return CaseResult(backend=backend, stimulus="step", batch=1, device=device, status=status,
                      n_samples=100, dt_ms=0.05, reference="lab", processes=procs,
                      settings=settings or {},
                      accuracy={"rmse_mv_median": 1.0, "gamma_median": 1.0,
                                "spike_count_abs_error_mean": 0.0})


def _run(*cases, load=QUIET_LOAD, env=None, settings=None):
    return RunResults(settings=settings or {}, calibration={},
                      environment={"cpu": "test", "load_during": load, **(env or {})},
                      cases=tuple(cases))


#: a synthetic backend of 2 ms per call, 5 processes; NEW 2x slower (the planted slowdown)
A = [2.00e-3, 2.02e-3, 1.98e-3, 2.01e-3, 1.99e-3]
B = [4.00e-3, 4.05e-3, 3.96e-3, 4.02e-3, 3.98e-3]


def test_exit_statuses_0_1_and_3_name_themselves_in_the_last_line(tmp_path, capsys):
    same, slow = _run(_case("synthetic", A)), _run(_case("synthetic", B))
    busy_slow = _run(_case("synthetic", B), load=LOADED)
    for name, run in (("a", same), ("b", slow), ("c", busy_slow)):
        run.save(tmp_path / f"{name}.json")
    path = lambda n: str(tmp_path / f"{n}.json")  # noqa: E731
    assert main(["compare", path("a"), path("a")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("no regression (exit 0)")
    assert main(["compare", path("a"), path("b")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "REGRESSION (exit 1): 1 slower"
    assert main(["compare", path("a"), path("c")]) == 3
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("SUSPECTED REGRESSION (exit 3)") and "quiet machine" in last
    assert main(["compare", "--allow-busy", path("a"), path("c")]) == 1


def test_a_loaded_a_b_shows_its_ratio_and_interval_whatever_the_load():
    report = compare(_run(_case("synthetic", A)), _run(_case("synthetic", B), load=LOADED))
    row = report.rows[0]
    assert row["speed"] == "slower?" and row["ratio"] == pytest.approx(2.0, rel=0.01)
    assert row["ci_low"] > 1.1
    text = format_comparison(report)
    assert "slower? synthetic step x1 cpu" in text and "NEW other work on 1.3 of 2 cores" in text
    assert f"{row['ci_low']:.3f}-{row['ci_high']:.3f}" in text
    assert "no slowdown shown" not in text


def test_load_only_slows_a_run_so_a_busy_old_hides_what_a_busy_new_cannot():
    quiet, busy = _run(_case("synthetic", A)), _run(_case("synthetic", A), load=LOADED)
    # NEW busy and still the same: no slowdown (load could only have made NEW slower)
    assert compare(quiet, busy).rows[0]["speed"] == "same" and compare(quiet, busy).status == 0
    # OLD busy: its load may hide a slowdown of NEW
    row = compare(busy, quiet).rows[0]
    assert row["speed"] == "inconclusive" and "OLD's load may hide" in row["why"]
    assert compare(busy, quiet).status == 0


def test_strict_turns_an_inconclusive_case_into_exit_3():
    wide = [2.0e-3, 2.4e-3, 1.7e-3]
    old, new = _run(_case("synthetic", wide)), _run(_case("synthetic", [2.1e-3, 2.5e-3, 1.8e-3]))
    assert compare(old, new).rows[0]["speed"] == "inconclusive"
    assert compare(old, new).status == 0
    strict = compare(old, new, Tolerances(strict=True))
    assert strict.status == 3 and strict.conclusion.startswith("UNDECIDED, --strict (exit 3)")
    assert "of 1 case is inconclusive" in strict.conclusion


def test_the_default_interval_is_99_percent():
    # a case whose interval is inside ±10 % at 95 % and reaches past it at 99 %
    # (Welch on 3 + 3 log medians of spread ~1 %: half-width ~2.3 % at 95 %, ~3.8 % at 99 %)
    old = _run(_case("synthetic", [1.00, 1.01, 0.99]))
    new = _run(_case("synthetic", [1.07, 1.07 * 1.01, 1.07 * 0.99]))
    assert compare(old, new, Tolerances(alpha=0.05)).rows[0]["speed"] == "same"
    assert compare(old, new).rows[0]["speed"] == "inconclusive"


def test_busy_rule_reads_the_measured_load_steal_and_calibration_spread():
    assert busy_reasons({"load_during": QUIET_LOAD}) == []
    assert busy_reasons({"load_during": LOADED}) == ["other work on 1.3 of 2 cores"]
    assert "stolen" in busy_reasons({"load_during": {**QUIET_LOAD, "steal_fraction": 0.2}})[0]
    assert "calibration kernel spread 25%" in busy_reasons({}, {"spread": 0.25})
    # no measurement (an older file): the load average at its start
    assert busy_reasons({"state": {"logical_cores": 2, "load_average": [3.5, 3, 3]}})


def test_a_cpu_row_never_meets_a_gpu_row():
    old = _run(_case("jax", A, device="cpu"))
    new = _run(_case("jax", B, device="gpu:0"))
    report = compare(old, new)
    assert [r["speed"] for r in report.rows] == ["not paired", "not paired"]
    assert {r["device"] for r in report.rows} == {"cpu", "gpu:0"}
    assert "NEW ran it on gpu:0" in report.rows[0]["why"]
    assert report.status == 0 and compare(old, new, Tolerances(strict=True)).status == 3
    # options are part of the key too
    opts = lambda p: {"options": {"jax": {"precision": p}}}  # noqa: E731
    report = compare(_run(_case("jax", A), settings=opts("float64")),
                     _run(_case("jax", B), settings=opts("float32")))
    assert [r["speed"] for r in report.rows] == ["not paired", "not paired"]


def test_a_slowdown_between_differing_runtimes_is_suspected_and_said_per_case():
    old = _run(_case("cnn", A, settings={"runtime": "jax"}))
    new = _run(_case("cnn", B, settings={"runtime": "tensorflow"}))
    report = compare(old, new)
    row = report.rows[0]
    assert row["speed"] == "slower?" and "runtime jax vs tensorflow" in row["why"]
    assert report.status == 3
    assert "differs cnn step x1 cpu: runtime jax vs tensorflow" in format_comparison(report)
    assert "runtime jax vs tensorflow" in format_markdown(report)


def test_sources_dirty_trees_versions_and_restarts_are_said():
    env_old = {"git": {"commit": "a" * 40, "dirty": False},
               "hhbench_source": {"sha256": "1" * 64}, "versions": {"numba": "0.60.0"}}
    env_new = {"git": {"commit": "a" * 40, "dirty": True},
               "hhbench_source": {"sha256": "2" * 64}, "versions": {"numba": "0.61.0"},
               "workers": [{"restarted_after": "worker killed by signal 9"}]}
    report = compare(_run(_case("numba", A), env=env_old), _run(_case("numba", A), env=env_new))
    for text in (format_comparison(report), format_markdown(report)):
        assert "same commit aaaaaaaaaa but measured different sources" in text
        assert "NEW had uncommitted changes" in text
        assert "numba 0.60.0 vs 0.61.0" in text
        assert "NEW: 1 worker process restarted (first after: worker killed by signal 9)" in text
    from hhbench.check import restart_warnings
    assert restart_warnings(_run(env=env_new)) == [
        "a worker process was restarted after: worker killed by signal 9 (the cases it had "
        "not finished were timed again in a fresh process)"]
    assert "sources 1111111111" in format_markdown(report)  # the hash, in Markdown too


def test_markdown_and_text_share_the_conclusion():
    report = compare(_run(_case("synthetic", A)), _run(_case("synthetic", B), load=LOADED))
    assert format_comparison(report).splitlines()[-1] == report.conclusion
    assert format_markdown(report).splitlines()[0] == f"**{report.conclusion}**"


def test_compare_bad_threshold_and_alpha_name_the_value(tmp_path, capsys):
    run = _run(_case("synthetic", A))
    run.save(tmp_path / "a.json")
    a = str(tmp_path / "a.json")
    assert main(["compare", a, a, "--threshold", "-10%"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'-10%'" in err and "expected one argument" not in err
    assert main(["compare", a, a, "--alpha", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "got 5" in err


def test_the_default_suite_names_what_it_left_out(tmp_path, capsys):
    from hhbench.cli import skip_notes
    from hhbench.suite import SuiteConfig, leave_out_unrunnable, plan_devices
    config = SuiteConfig()
    assert config.all_backends and set(config.backends) >= {"numpy", "numba", "numba-cuda"}
    results = RunResults(settings={"left_out": {"numba-cuda": "runs on GPUs only"}},
                         environment={}, calibration={}, cases=())
    assert skip_notes(results) == ["note: the default suite is every installed backend that "
                                   "can run on the requested devices; left out: numba-cuda "
                                   "(runs on GPUs only)"]
    # on the CPU, numba-cuda (GPUs only) is left out with its reason; numpy stays
    plan = plan_devices(dataclasses.replace(config, devices=("cpu",)))
    assert all(why for _, why in plan["numba-cuda"]) and not plan["numpy"][0][1]
    kept, left_out = leave_out_unrunnable(dataclasses.replace(config, devices=("cpu",)))
    assert "numba-cuda" not in kept.backends and "numpy" in kept.backends
    assert left_out["numba-cuda"] == plan["numba-cuda"][0][1].reason
    # a suite whose backends were named keeps every one (skipped cases say why)
    named = SuiteConfig(backends=("numpy", "numba-cuda"), devices=("cpu",))
    assert leave_out_unrunnable(named) == (named, {})


def test_the_default_suite_runs_the_slow_baselines_on_less_and_says_so():
    # bug caught: odeint-lab (1.3-1.5 s per trace on sine and noise) or the converged
    # reference run everywhere by default, making the default run take minutes; or a
    # baseline left out of a suite that names it
    from hhbench.backends import backend_classes
    from hhbench.suite import SuiteConfig, leave_out_unrunnable, planned_cases
    classes = backend_classes()
    assert (classes["odeint-lab"].default_batch_limit,
            classes["odeint-lab"].default_stimuli) == (1, ("step",))
    assert (classes["reference"].default_batch_limit,
            classes["reference"].default_stimuli) == (1, None)
    assert (classes["numba"].default_batch_limit, classes["numba"].default_stimuli) == \
        (None, None)
    config = SuiteConfig(devices=("cpu",), batches=(1, 16))
    kept, notes = leave_out_unrunnable(config)
    cases = {(b, s, n) for b, s, n, _, _ in planned_cases(kept)}
    assert {(s, n) for b, s, n in cases if b == "odeint-lab"} == {("step", 1)}
    assert {(s, n) for b, s, n in cases if b == "reference"} == {
        ("step", 1), ("sine", 1), ("noise", 1)}
    assert {(s, n) for b, s, n in cases if b == "numpy"} == {
        (s, n) for s in ("step", "sine", "noise") for n in (1, 16)}
    assert "--backends" in notes["odeint-lab on sine, noise and at batch 16"]
    assert "reference at batch 16" in notes
    assert not any(k.startswith("numpy") for k in notes)
    # a request outside what a baseline runs by default: left out whole, and said so;
    # only what its declaration excludes is named, never a batch or stimulus it runs at
    sine = SuiteConfig(devices=("cpu",), stimuli=("sine",), batches=(1, 16))
    notes = sine.default_limit_notes()
    assert "on step" in notes["odeint-lab"] and "at batches up to 1" in notes["odeint-lab"]
    assert set(notes) == {"odeint-lab", "reference at batch 16"}
    assert set(SuiteConfig(devices=("cpu",), batches=(64,)).default_limit_notes()) == {
        "odeint-lab", "reference"}
    assert SuiteConfig(devices=("cpu",), stimuli=("step",), batches=(1,)
                       ).default_limit_notes() == {}
    # named, they run on every stimulus and batch asked for, with no note
    named = SuiteConfig(backends=("odeint-lab", "numpy"), batches=(1, 16))
    assert {(s, n) for b, s, n, _, _ in planned_cases(named) if b == "odeint-lab"} == {
        (s, n) for s in ("step", "sine", "noise") for n in (1, 16)}
    assert leave_out_unrunnable(named) == (named, {})


def test_python_dash_m_hhbench_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "hhbench", "--version"], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0 and done.stdout.startswith("hhbench ")


def test_run_says_which_copy_it_measures_in_a_differing_checkout(tmp_path):
    from hhbench.provenance import checkout_note
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'hhbench'\n")
    (tmp_path / "hhbench").mkdir()
    (tmp_path / "hhbench" / "__init__.py").write_text("# a modified copy\n")
    note = checkout_note(tmp_path)
    assert note and f"PYTHONPATH={tmp_path}" in note and "measuring the installed one" in note
    assert checkout_note(ROOT) is None  # the imported package itself


def test_runtime_is_a_word_of_each_case():
    from hhbench.provenance import runtime_word
    assert runtime_word("numba") == "numba" and runtime_word("numpy") == "numpy"
    assert runtime_word("cnn", {"runtime": "jax"}) == "jax"
    assert runtime_word("numba-cuda") == "cuda"


def test_the_machine_speed_ratio_is_shown_only_where_both_calibrations_were_stable():
    from hhbench.calibration import KERNEL, spread_of
    # (lower quartile - min) / min, the quartile interpolated: 1.005 of [1, 1.01, 1.02]
    assert spread_of([1.0, 1.02, 1.01]) == pytest.approx(0.005)
    # one block hit by an interrupt burst, or one moment of a run caught in a slow
    # second, is not a shared core; most blocks slow are
    assert spread_of([1.0, 1.01, 1.3, 1.0, 1.01]) == pytest.approx(0.0)
    assert spread_of([1.0] * 9 + [1.3] * 3) == pytest.approx(0.0)
    assert spread_of([1.0, 1.3, 1.3, 1.3, 1.3]) == pytest.approx(0.3)
    steady = {"kernel": KERNEL, "min_s": 1e-4, "spread": 0.01}
    shaky = {**steady, "spread": 0.2}
    faster = {**steady, "min_s": 0.5e-4}
    text = lambda old, new: format_comparison(compare(  # noqa: E731
        dataclasses.replace(_run(_case("synthetic", A)), calibration=old),
        dataclasses.replace(_run(_case("synthetic", A)), calibration=new)))
    assert "machine speed (single-core calibration kernel, NEW/OLD time): 0.50" in \
        text(steady, faster)
    shown = text(steady, shaky)
    assert "machine speed not shown" in shown and "0.50" not in shown


@pytest.mark.parametrize("command, words", [
    ("lab", ["q1", "q6", "receptive field"]),
    ("floor", ["achieved/floor", "below 1x the ceiling was measured too low", "bound"]),
    ("scaling", ["growth exponent", "spread", "\"*\" marks", "busy machine"])])
def test_lab_floor_and_scaling_help_describe_the_command_and_its_columns(command, words,
                                                                         capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    usage_end = text.index("options:") if "options:" in text else len(text)
    assert len(text[:usage_end].split("]")[-1].strip()) > 60  # a description, not only usage
    for word in words:
        assert word in text, word


def test_json_output_carries_the_same_model(tmp_path, capsys):
    old = _run(_case("synthetic", A), env={"git": {"commit": "b" * 40, "dirty": True}})
    new = _run(_case("synthetic", B), load=LOADED)
    old.save(tmp_path / "a.json")
    new.save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--format", "json"]) == 3
    import json
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == 3 and data["conclusion"].startswith("SUSPECTED REGRESSION")
    assert data["rows"][0]["speed"] == "slower?" and data["machines"]["busy"]["NEW"]
    assert any("OLD had uncommitted changes" in n for n in data["machines"]["notes"])


def test_check_and_run_warn_about_load_measured_while_a_run_ran():
    from hhbench.check import report
    lines, warned = report({}, _run(_case("synthetic", A), load=LOADED))
    assert "while it ran: other work on 1.3 of 2 cores, 0% of CPU time stolen" in lines
    assert any(w.startswith("while it ran: other work on 1.3 of 2 cores") for w in warned)
    assert not any("while it ran" in w for w in report({}, _run(_case("synthetic", A)))[1])


def test_run_table_has_a_runtime_column_dashes_and_full_failure_reasons():
    from hhbench.cli import failure_lines, format_table
    reason = "RuntimeError: " + "a reason far longer than any table cell could hold " * 3
    failed = CaseResult(backend="numpy", stimulus="step", batch=1, device="cpu",
                        status="failed", n_samples=100, dt_ms=0.05, reference="lab",
                        error=reason)
    results = _run(_case("numba", A), failed, settings={"processes": 1, "reference": "lab"})
    text = format_table(results)
    assert "None" not in "\n".join(text.splitlines()[2:]) and "1 fresh process " in text
    header, numba_row, numpy_row = text.splitlines()[2:5]
    assert header.split()[4] == "runtime"
    assert numba_row.split()[4] == "numba" and numpy_row.split()[4] == "numpy"
    assert numpy_row.split()[5] == "-" and numpy_row.split()[-1] == "failed"
    assert failure_lines(results) == [f"failed numpy step x1 on cpu: {reason}"]


def test_a_run_whose_core_ran_slower_on_the_same_machine_discounts_its_slowdowns():
    # the A/A false alarm this catches: another tenant of the host slows all of one run
    # (5 processes alike) by 30 %; only the calibration kernel, timed through the run,
    # shows that the machine itself was slower
    from hhbench.calibration import KERNEL
    cal = lambda us: {"kernel": KERNEL, "min_s": us * 1e-6, "spread": 0.01}  # noqa: E731
    slow = [m * 1.3 for m in A]
    pair = lambda old_us, new_us, cpu="test": compare(  # noqa: E731
        dataclasses.replace(_run(_case("synthetic", A)), calibration=cal(old_us)),
        dataclasses.replace(_run(_case("synthetic", slow), env={"cpu": cpu}),
                            calibration=cal(new_us)))
    report = pair(68.0, 68.0 * 1.08)
    assert report.rows[0]["speed"] == "slower?" and report.status == 3
    assert "NEW its core ran 8% slower than OLD's" in report.rows[0]["why"]
    # within the tolerance of back-to-back runs (±5 %): the verdict stands
    assert pair(68.0, 68.0 * 1.04).rows[0]["speed"] == "slower"
    assert pair(68.0, 68.0 * 1.04).status == 1
    # another kind of machine: its speed is the hardware, not interference; nor is a
    # machine that is not described, or another NumPy (the kernel is its `exp`)
    assert pair(68.0, 68.0 * 1.08, cpu="other").rows[0]["speed"] == "slower"
    unknown = compare(
        dataclasses.replace(_run(_case("synthetic", A), env={"cpu": None}), calibration=cal(68.0)),
        dataclasses.replace(_run(_case("synthetic", slow), env={"cpu": None}),
                            calibration=cal(68.0 * 1.08)))
    assert unknown.rows[0]["speed"] == "slower"
    other_numpy = compare(
        dataclasses.replace(_run(_case("synthetic", A), env={"versions": {"numpy": "2.3.1"}}),
                            calibration=cal(68.0)),
        dataclasses.replace(_run(_case("synthetic", slow), env={"versions": {"numpy": "2.4.0"}}),
                            calibration=cal(68.0 * 1.08)))
    assert other_numpy.rows[0]["speed"] == "slower"
    # OLD's core slower: it may hide a slowdown, so "same" is no longer sure
    same = compare(dataclasses.replace(_run(_case("synthetic", A)), calibration=cal(75.0)),
                   dataclasses.replace(_run(_case("synthetic", A)), calibration=cal(68.0)))
    assert same.rows[0]["speed"] == "inconclusive" and same.status == 0
    assert "OLD its core ran 10% slower than NEW's" in same.rows[0]["why"]

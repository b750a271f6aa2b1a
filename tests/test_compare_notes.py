"""`compare` says what it compares before any verdict, its "processes needed" figure is
more than either side already has, its Markdown output carries the same verdicts, and
`check` warns (exit 1) only where a spread keeps `compare` from resolving 10 %."""

import math

import numpy as np
import pytest

from hhbench.check import spread_warnings
from hhbench.cli import main
from hhbench.compare import compare, format_comparison
from hhbench.results import CaseResult, RunResults
from hhbench.stats import compare_processes, resolvable_change
from hhbench.timing import ProcessTiming


def _case(backend, medians, batch=1):
    procs = tuple(ProcessTiming(prepare_s=0.0, cold_s=0.1, samples_s=(m, m, m))
                  for m in medians)
    return CaseResult(backend=backend, stimulus="step", batch=batch, device="cpu",
                      status="ok", n_samples=10, dt_ms=0.05, reference="lab", processes=procs)


QUIET = {"logical_cores": 8, "load_average": [0.2, 0.3, 0.3],
         "cpu_frequency": {"governor": "performance", "intel_no_turbo": "1",
                           "current_mhz": 3000.0, "max_mhz": 3000.0},
         "threading_policy": {"enabled": True}}


def _results(*cases, settings=None):
    return RunResults(settings=settings or {}, environment={"cpu": "test", "state": QUIET},
                      calibration={}, cases=tuple(cases))


def test_the_processes_needed_are_more_than_either_side_has():
    # 3 processes a side, a wide interval: "about 3 would resolve it" was the old answer
    v = compare_processes([1.00, 1.08, 0.93], [1.02, 0.95, 1.10])
    assert v.verdict == "inconclusive"
    assert v.processes_needed > 3
    assert f"about {v.processes_needed} processes per side" in v.why


def test_one_process_a_side_gives_no_verdict_and_no_division_by_zero():
    with pytest.raises(ValueError, match="at least 2 processes"):
        compare_processes([1.0], [1.0], min_processes=1)


def test_the_same_run_on_both_sides_is_said_before_the_verdicts():
    run = _results(_case("numba", [1.0, 1.01, 0.99]))
    text = format_comparison(compare(run, run))
    assert "note: OLD and NEW are the same run" in text
    other = _results(_case("numba", [1.0, 1.02, 0.98]))
    assert "same run" not in format_comparison(compare(run, other))


def test_different_timing_settings_are_said_before_the_verdicts():
    old = _results(_case("numba", [1.0, 1.01, 0.99]),
                   settings={"timing": {"warmup_calls": 1, "min_repeats": 2}, "processes": 3})
    new = _results(_case("numba", [1.0, 1.02, 0.98]),
                   settings={"timing": {"warmup_calls": 0, "min_repeats": 3}, "processes": 3})
    text = format_comparison(compare(old, new))
    assert ("note: the runs differ in timing (min_repeats 2 vs 3, warmup_calls 1 vs 0)"
            in text)
    assert "differ in processes" not in text


def test_markdown_has_the_verdicts_of_the_text_report(tmp_path, capsys):
    old = _results(_case("numba", [1.0, 1.01, 0.99]), _case("numpy", [5.0, 5.05, 4.95]))
    new = _results(_case("numba", [1.5, 1.52, 1.48]), _case("numpy", [5.0, 5.04, 4.96]))
    old.save(tmp_path / "a.json")
    new.save(tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| numba")]
    assert len(rows) == 1 and "**slower**" in rows[0]
    assert any(line.startswith("| numpy") and "| same |" in line for line in out.splitlines())
    assert out.startswith("**REGRESSION (exit 1): 1 slower**")


def test_resolvable_change_is_welchs_half_width():
    from scipy import stats
    medians = [1.0, 1.05, 0.95]
    sd = np.std(np.log(medians), ddof=1)
    df = 4  # equal spreads and counts: Welch's df is 2n - 2
    expected = math.expm1(stats.t.ppf(0.995, df) * sd * math.sqrt(2 / 3))
    assert resolvable_change(medians) == pytest.approx(expected, rel=1e-9)


def test_check_warns_only_where_compare_could_not_resolve_ten_percent(tmp_path, capsys):
    tight = _case("numba", [1.00, 1.01, 0.99])                 # resolves ~4 %
    loose = _case("exp-euler", [1.0, 1.05, 0.95])              # 5 % over 3: ~19 %
    many = _case("numpy", list(np.linspace(0.95, 1.05, 10)))   # 5 % over 10: ~7 %
    warned = spread_warnings(_results(tight, loose, many))
    assert len(warned) == 1 and warned[0].startswith("exp-euler step x1")
    assert "would call a 10% change inconclusive" in warned[0]
    path = tmp_path / "r.json"
    _results(tight, loose, many).save(path)
    assert main(["check", str(path)]) == 1
    _results(tight, many).save(path)
    assert main(["check", str(path)]) == 0


def test_run_sums_up_many_spread_warnings_in_one_line():
    loose = [_case(f"b{i}", [1.0, 1.0 + 0.05 * (i + 1), 1.0 - 0.05 * (i + 1)])
             for i in range(5)]
    every = spread_warnings(_results(*loose))
    assert len(every) == 5
    (summary,) = spread_warnings(_results(*loose), detail=False)
    assert summary.startswith("5 of 5 cases: their processes disagree too much")
    # the worst three, worst first: the widest spreads
    assert summary.index("b4 step x1") < summary.index("b3 step x1") < summary.index("b2 step")
    assert "b1 step" not in summary


def test_what_a_case_measured_of_its_run_is_no_difference_of_settings():
    """Catches a real 1.5x slowdown discounted as "settings differ" because the CNN's
    memory bound (from the free memory of the moment), its windows per call, network
    calls or the device memory in use came out otherwise in NEW; a precision that differs
    still discounts it."""
    import dataclasses

    from hhbench.compare import case_differences

    def cnn(medians, **settings):
        return dataclasses.replace(_case("cnn", medians), settings={
            "precision": "float32", **settings})

    measured_old = {"memory_chunk": 680, "windows_per_call": 16, "network_calls": 1,
                    "device_memory_bytes": 10 ** 9, "device_only_s": 0.1}
    measured_new = {"memory_chunk": 702, "windows_per_call": 32, "network_calls": 2,
                    "device_memory_bytes": 2 * 10 ** 9, "device_only_s": 0.2}
    o = cnn([1.0, 1.01, 0.99], **measured_old)
    n = cnn([1.5, 1.52, 1.48], **measured_new)
    old, new = _results(o), _results(n)
    assert case_differences(old, new, o, n)[0] == []
    assert compare(old, new).rows[0]["speed"] == "slower"
    other = cnn([1.5, 1.52, 1.48], **{**measured_new, "precision": "bfloat16"})
    assert case_differences(old, _results(other), o, other)[0] == [
        "precision float32 vs bfloat16"]
    assert compare(old, _results(other)).rows[0]["speed"] == "slower?"

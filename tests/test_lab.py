"""`hhbench lab`: every section and figure, numbers in the Markdown equal to the results,
and to values from outside hhbench where there are some (the lab's printed peaks, the
transcribed equations of tests/test_oracles.py, the parameter count of the published
architecture, spikes counted here by hand or by SciPy directly); elsewhere recomputed from
the backends' outputs, which checks the plumbing (windows, alignment), not the science.
q4's bisection on known answers, bad input."""

import itertools
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from hhbench import stimuli  # noqa: E402
from hhbench.backends import get_backend  # noqa: E402
from hhbench.backends.base import Backend  # noqa: E402
from hhbench.cli import main  # noqa: E402
from hhbench.errors import DivergenceWarning, HHBenchError  # noqa: E402
from hhbench.lab import LabSettings, bisect_boundary, run_lab  # noqa: E402
from hhbench.lab import q4_sine, q6_receptive_field  # noqa: E402
from hhbench.timing import TimingSettings  # noqa: E402
from scipy.signal import find_peaks  # noqa: E402
from test_oracles import LAB_STEP_PEAKS_MV, PRINTED_DIGITS_MV, oracle_euler, oracle_step  # noqa: E402

QUESTIONS = ["q1", "q2", "q3", "q4", "q5", "q6"]


def runs_above_0_mv(v, min_samples=10) -> int:
    """Spikes under "run-above-0mV", counted by hand: runs of >= 10 samples above 0 mV."""
    runs = [len(list(g)) for above, g in itertools.groupby(x > 0.0 for x in v) if above]
    return sum(n >= min_samples for n in runs)


def hand_counts(v_batch) -> list[int]:
    return [runs_above_0_mv(row) for row in np.atleast_2d(v_batch)]


def lab_rule_counts(v_batch) -> list[int]:
    """Spikes under "lab-find-peaks": the lab's SciPy call itself."""
    return [len(find_peaks(row, height=0, width=10)[0]) for row in np.atleast_2d(v_batch)]


def lab_architecture_parameters(filters: int, k: int = 16, layers: int = 9) -> int:
    """Parameters of the lab's encoder/decoder (SPEC: `layers` Conv2D and as many
    Conv2DTranspose of kernel (k, 1), skip connections concatenated), counted by hand."""
    f = filters
    encoder = (k * 1 * f + f) + (layers - 1) * (k * f * f + f)
    decoder = (k * f * f + f) + (layers - 2) * (k * 2 * f * f + f) + (k * 2 * f * 1 + 1)
    return encoder + decoder


@pytest.fixture(scope="module")
def lab_out(tmp_path_factory, lab_small):
    """`hhbench lab all` on the small fixture model, once for the module."""
    out = tmp_path_factory.mktemp("lab") / "report"
    assert main(["lab", "all", "--model", str(lab_small), "--device", "cpu", "-o", str(out),
                 "--no-progress"]) == 0
    return out


def load(out: Path, key: str) -> dict:
    return json.loads((out / f"{key}.json").read_text())


def tables(md: str) -> list[list[list[str]]]:
    """The Markdown tables of a section: rows of cells (header row first, rule dropped)."""
    found, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(---\|)+", line.strip()):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def close(cell: str, value, rel=1e-3) -> bool:
    """The number shown in `cell` is `value` (to the 4 significant digits shown)."""
    if value is None:
        return cell == "–"
    return math.isclose(float(cell), float(value), rel_tol=rel, abs_tol=1e-12)


# -- the whole lab --------------------------------------------------------------------------

def test_every_section_and_figure_is_written(lab_out):
    names = {p.name for p in lab_out.iterdir()}
    report = (lab_out / "report.md").read_text()
    for key in QUESTIONS:
        assert f"{key}.md" in names and f"{key}.json" in names
        assert f"]({key}.md)" in report           # report.md links every section
        md = (lab_out / f"{key}.md").read_text()
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
        assert figures, f"{key} has no figure"
        for fig in figures:
            assert (lab_out / fig).read_bytes()[:4] == b"\x89PNG"
    # nothing left over from the staging folder
    assert not [p for p in lab_out.parent.iterdir() if p.name.startswith(".")]


def test_q1_markdown_shows_the_model_and_timing(lab_out, lab_small):
    r, md = load(lab_out, "q1"), (lab_out / "q1.md").read_text()
    assert r["input_shape"] == [None, 2560, 1] and r["output_shape"] == [None, 2048, 1]
    # the lab's model has 1,511,489 parameters with 64 filters; the fixture has 4
    assert lab_architecture_parameters(64) == 1_511_489
    assert r["parameters"] == lab_architecture_parameters(4) and r["context_samples"] == 256
    assert "`(None, 2560, 1)`" in md and "`(None, 2048, 1)`" in md
    timing_row = tables(md)[1][1]
    t = r["analytic"]
    assert timing_row[0] == "numpy"
    for cell, key in zip(timing_row[1:5], ("cold_ms", "warm_median_ms", "warm_iqr_ms", "warm_min_ms")):
        assert close(cell, t[key])
    assert len(t["samples_ms"]) == t["repeats"] >= 5


def test_q2_spikes_are_those_of_the_lab_reference(lab_out):
    r, md = load(lab_out, "q2"), (lab_out / "q2.md").read_text()
    # independently: the amplitudes the lab printed, and the peak times of the transcribed
    # forward Euler (sample index / 20 kHz)
    np.testing.assert_allclose(r["spike_amplitudes_mv"], LAB_STEP_PEAKS_MV, rtol=0,
                               atol=PRINTED_DIGITS_MV)
    peaks, _ = find_peaks(oracle_euler(oracle_step(20.0))[0], height=0, width=10)
    np.testing.assert_allclose(r["spike_times_ms"], peaks / 20.0, rtol=0, atol=1e-12)
    assert r["lab_rule_agrees"] is True and "finds\nthe same peaks" in md
    amp_table = tables(md)[0]
    assert len(amp_table) - 1 == len(LAB_STEP_PEAKS_MV)
    for row, t, a in zip(amp_table[1:], r["spike_times_ms"], r["spike_amplitudes_mv"]):
        assert close(row[1], t) and close(row[2], a)
    rows = {row[0].split()[0]: row for row in tables(md)[1][1:]}
    assert set(rows) == {"numpy", "numba", "odeint", "exp-euler", "reference"}
    for b in r["backends"]:
        row = rows[b["backend"]]
        assert int(row[2]) == b["n_spikes"]
        assert close(row[3], b["first_amplitude_mv"]) and close(row[4], b["later_mean_mv"])
        assert close(row[5], b["timing"]["cold_ms"])
        assert close(row[6], b["timing"]["warm_median_ms"])


def test_q3_alignment_comes_from_the_context(lab_out, lab_small):
    r, md = load(lab_out, "q3"), (lab_out / "q3.md").read_text()
    assert r["first_sample"] == 256 and r["output_samples"] == 2048
    assert r["window_start_ms"] == pytest.approx(12.8) and r["window_end_ms"] == pytest.approx(115.2)
    # recomputed from the fixture CNN's output and forward Euler on the same samples (the
    # alignment and the scoring; spikes counted by hand)
    from hhbench.cnn.runner import CnnRunner
    cnn = CnnRunner(lab_small, device="cpu").run(stimuli.step().current_ua)
    hh = get_backend("numba").run(stimuli.step()).v_batch[:, 256:2304]
    score = next(s for s in r["scores"] if s["against"] == "numba")
    assert score["rmse_mv"] == pytest.approx(np.sqrt(np.mean((cnn.v_mv - hh) ** 2)), rel=1e-6)
    assert score["n_spikes_hh"] == hand_counts(hh)[0]
    assert score["n_spikes_cnn"] == hand_counts(cnn.v_mv)[0]
    row = tables(md)[0][1]
    assert close(row[1], score["rmse_mv"]) and int(row[3]) == score["n_spikes_hh"]
    timing_row = tables(md)[1][1]
    assert timing_row[0].startswith("cnn") and close(timing_row[4], r["cnn"]["warm_median_ms"])


def test_q4_boundaries_hold_and_match_the_markdown(lab_out):
    r, md = load(lab_out, "q4"), (lab_out / "q4.md").read_text()
    freqs = np.asarray(r["sweep_khz"])
    assert freqs[0] == pytest.approx(0.001) and freqs[-1] == pytest.approx(5.0)
    assert r["rules"] == ["run-above-0mV", "lab-find-peaks"]
    window = slice(r["first_sample"], r["first_sample"] + r["output_samples"])
    rows = {(row[0], row[1]): row for row in tables(md)[0][1:]}
    by_key = {(b["backend"], b["rule"]): b for b in r["backends"]}
    assert set(by_key) == {(n, rule) for n in ("numpy", "numba", "exp-euler", "reference", "cnn")
                           for rule in r["rules"]}
    # spikes counted outside hhbench: runs above 0 mV by hand, and SciPy's find_peaks itself
    count = {"run-above-0mV": hand_counts, "lab-find-peaks": lab_rule_counts}
    for name in ("numba", "exp-euler", "reference"):
        for rule in r["rules"]:
            b = by_key[name, rule]
            assert b["status"] == "found"
            assert b["hi_khz"] / b["lo_khz"] - 1 <= r["rel_tol"] * (1 + 1e-9)
            # a spike at lo, none at hi, on the same window
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DivergenceWarning)
                v = get_backend(name).run(stimuli.sine([b["lo_khz"], b["hi_khz"]])).v_batch
            assert [n >= 1 for n in count[rule](v[:, window])] == [True, False]
            row = rows[name, rule]
            assert row[6] == "found" and close(row[7], b["lo_khz"]) and close(row[8], b["hi_khz"])
    # the sweep counts of forward Euler, None where it diverged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        res = get_backend("numba").run(stimuli.sine(freqs))
    for rule in r["rules"]:
        expected = [None if d else n for n, d in zip(count[rule](res.v_batch[:, window]),
                                                     res.diverged)]
        assert by_key["numba", rule]["counts"] == expected and None in expected
        assert by_key["numpy", rule]["counts"] == expected
    assert "**Divergence.**" in md
    assert rows["numba", "run-above-0mV"][3] != "none"
    assert rows["reference", "run-above-0mV"][3] == "none"
    # where a trace at a bracket's hi end crosses 0 mV, the section says so
    for b in r["backends"]:
        c = b["at_hi"]
        if c and c["crossings"]:
            assert f"`{b['backend']}` at {c['freq_khz']:.4g} kHz crosses 0 mV" in md
            assert c["spikes"][b["rule"]] == 0


def test_q5_statistics_are_those_of_the_trials(lab_out, lab_small):
    r, md = load(lab_out, "q5"), (lab_out / "q5.md").read_text()
    assert r["trials"] == 100
    # recomputed from the backends' outputs, spikes counted by hand
    stim = stimuli.white_noise(seed=0, batch=100)
    counts = np.array(hand_counts(get_backend("numpy").run(stim).v_batch[:, 256:2304]))
    assert r["hh"]["counts"] == counts.tolist()
    assert r["hh"]["count_total"] == counts.sum()
    assert r["hh"]["count_mean"] == pytest.approx(counts.mean())
    assert r["hh"]["count_sd"] == pytest.approx(counts.std(ddof=1))
    from hhbench.cnn.runner import CnnRunner
    cnn_counts = np.array(hand_counts(CnnRunner(lab_small, device="cpu").run(stim.current_ua).v_mv))
    assert r["cnn"]["count_total"] == cnn_counts.sum()
    assert r["frac_count_exact"] == pytest.approx(np.mean(cnn_counts == counts))
    rows = {row[0]: row for row in tables(md)[0][1:]}
    for label, key in (("HH (numba)", "hh"), ("CNN", "cnn")):
        st = r[key]
        assert int(rows[label][1]) == st["count_total"]
        assert close(rows[label][2], st["count_mean"]) and close(rows[label][3], st["count_sd"])
        assert int(rows[label][7]) == st["n_amplitudes"]
        assert close(rows[label][8], st["amplitude_mean_mv"])


def test_q6_receptive_field_is_the_formula(lab_out):
    r, md = load(lab_out, "q6"), (lab_out / "q6.md").read_text()
    k, s = 16, 2
    nine = (k - 1) * (s ** 9 - 1) // (s - 1) + 1
    two = (k - 1) * (s ** 2 - 1) // (s - 1) + 1
    assert (r["layers_samples"], r["formula_samples"], r["two_layers_samples"]) == (nine, nine, two)
    assert r["layers_ms"] == pytest.approx(nine / 20.0) and r["two_layers_ms"] == pytest.approx(2.3)
    rows = tables(md)[0][1:]
    assert [int(row[1]) for row in rows] == [nine, nine, two]
    assert [float(row[2]) for row in rows] == pytest.approx([nine / 20, nine / 20, 2.3])
    assert dict(map(tuple, r["by_layers"]))[2] == two


# -- a model with its own window and context --------------------------------------------------

def test_lab_uses_the_models_own_window_and_context(tmp_path):
    from hhbench.cnn.architecture import Architecture, build_model
    from hhbench.cnn.files import ModelMeta, save_lab_model

    folder = tmp_path / "short"
    save_lab_model(build_model(Architecture(n_layers=3, filters=2, window=512, context=64)),
                   folder, meta=ModelMeta(context=64))
    quick = LabSettings(timing=TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0),
                        step_backends=("numba",), sine_backends=("numba", "cnn"),
                        sweep_points=6, rel_tol=0.2, noise_trials=5)
    out = tmp_path / "report"
    results = run_lab(["q3", "q4", "q5", "q6"], model=folder, device="cpu", out_dir=out,
                      progress=False, settings=quick)
    q3 = results["q3"]
    assert (q3.first_sample, q3.output_samples, q3.stimulus["n_samples"]) == (64, 384, 512)
    assert q3.window_start_ms == pytest.approx(3.2)
    assert results["q4"].first_sample == 64 and results["q4"].output_samples == 384
    assert len(results["q5"].hh.counts) == 5
    assert results["q6"].layers_samples == 15 * 7 + 1 and results["q6"].window_samples == 512
    assert not (out / "report.md").exists() and (out / "q3.md").exists()
    assert load(out, "q6")["layers_samples"] == 106


# -- q4's bisection on known answers ----------------------------------------------------------

def test_bisection_finds_a_known_threshold():
    threshold = 1 / math.pi
    calls = []

    def below(f):
        calls.append(f)
        return f < threshold

    b = bisect_boundary(below, 0.01, 3.0, rel_tol=0.001)
    assert b.lo < threshold <= b.hi and b.hi / b.lo - 1 <= 0.001 and b.resolved
    # each step halves log(hi/lo): the number of steps needed, from the first bracket
    assert b.steps == math.ceil(math.log2(math.log(3.0 / 0.01) / math.log(1.001)))
    assert len(calls) == b.steps + 1  # predicate(lo) once, as lo_value was not given
    assert b.lo_value is True and b.midpoint == pytest.approx(math.sqrt(b.lo * b.hi))


def test_bisection_stops_where_the_predicate_cannot_answer():
    b = bisect_boundary(lambda f: None if f > 0.4 else f < 0.2, 0.1, 2.0, rel_tol=0.01,
                        lo_value=True)
    assert b.undecided_at is not None and b.undecided_at == pytest.approx(math.sqrt(0.2)) and not b.resolved
    with pytest.raises(HHBenchError):
        bisect_boundary(lambda f: True, 2.0, 1.0)


class Synthetic(Backend):
    """A fake neuron with known answers: one 20-sample spike at sample 300 for sine
    frequencies below `stop_khz`, silence above; NaN (diverged) inside `diverge_khz`."""

    name = "synthetic"
    summary = "test backend"

    def __init__(self, stop_khz, diverge_khz=(0.0, 0.0), hump_khz=0.0):
        self.stop_khz, self.diverge_khz, self.hump_khz = stop_khz, diverge_khz, hump_khz

    def run(self, stimulus, *, gates=False):
        freqs = np.atleast_1d(stimulus.params["freq_khz"])
        v = np.full((freqs.size, stimulus.n_samples), -65.0)
        # below hump_khz, a hump at sample 700 that tops 0 mV for 7 samples but is 33 wide
        # at half its prominence: a spike for the lab's find_peaks only
        x = np.arange(stimulus.n_samples) - 700.0
        v[freqs < self.hump_khz] += 67.0 * np.exp(-x * x / 400.0)
        v[freqs < self.stop_khz, 300:320] = 30.0
        lo, hi = self.diverge_khz
        v[(freqs >= lo) & (freqs <= hi), 500:] = np.nan
        return self._result(stimulus, v, stimulus.t_ms, 0)


def probe(backend):
    return q4_sine.SineProbe(backend, amplitude_ua=80.0, stim_kw={"n_samples": 1000},
                             first=100, n_out=800)


@pytest.mark.filterwarnings("ignore::hhbench.errors.DivergenceWarning")
def test_sweep_and_bisect_on_a_synthetic_backend():
    freqs = np.geomspace(0.001, 5.0, 20)
    b = q4_sine.sweep_and_bisect("synthetic", probe(Synthetic(0.7, (0.01, 0.05))), freqs, 0.005)
    assert b.status == "found" and b.lo_khz < 0.7 <= b.hi_khz and b.hi_khz / b.lo_khz - 1 <= 0.005
    in_div = (freqs >= 0.01) & (freqs <= 0.05)
    assert b.diverged_khz == pytest.approx(freqs[in_div].tolist())
    assert b.counts == tuple(None if d else int(f < 0.7) for f, d in zip(freqs, in_div))
    assert b.repetitive_up_to_khz is None  # never two spikes
    # the bracket's upper end diverges: the answer is "diverged", not a number
    d = q4_sine.sweep_and_bisect("synthetic", probe(Synthetic(0.7, (0.7, 1.0))), freqs, 0.005)
    assert d.status == "diverged"
    # a bisection step lands in a diverged strip inside the bracket
    lo = freqs[freqs < 0.7].max()
    s = q4_sine.sweep_and_bisect("synthetic", probe(Synthetic(0.7, (lo * 1.05, 0.69))), freqs, 0.005)
    assert s.status == "diverged" and s.lo_khz >= lo
    assert q4_sine.sweep_and_bisect("synthetic", probe(Synthetic(99.0)), freqs, 0.01).status \
        == "spikes throughout"
    assert q4_sine.sweep_and_bisect("synthetic", probe(Synthetic(0.0)), freqs, 0.01).status \
        == "no spikes"


def test_the_boundary_under_each_spike_rule():
    """A backend whose traces below 2 kHz carry a hump that only the lab's find_peaks calls
    a spike: the boundary is 0.7 kHz under run-above-0mV, 2 kHz under lab-find-peaks, and
    at the run rule's hi end the hump is reported as crossing 0 mV once, up to +2 mV, for 7
    samples. The traces are simulated once: the second rule's sweep reuses them."""
    freqs = np.geomspace(0.001, 5.0, 20)
    backend = Synthetic(0.7, hump_khz=2.0)
    calls = []
    backend_run = backend.run
    backend.run = lambda stim, **kw: calls.append(stim.batch_size) or backend_run(stim, **kw)
    p = probe(backend)
    run_rule = q4_sine.sweep_and_bisect("synthetic", p, freqs, 0.005, rule="run-above-0mV")
    lab_rule = q4_sine.sweep_and_bisect("synthetic", p, freqs, 0.005, rule="lab-find-peaks")
    assert run_rule.rule == "run-above-0mV" and lab_rule.rule == "lab-find-peaks"
    assert run_rule.lo_khz < 0.7 <= run_rule.hi_khz and lab_rule.lo_khz < 2.0 <= lab_rule.hi_khz
    c = run_rule.at_hi
    assert (c.crossings, c.max_mv, c.longest_run_samples) == (1, 2.0, 7)
    assert c.spikes == {"run-above-0mV": 0, "lab-find-peaks": 1}
    assert lab_rule.at_hi.crossings == 0
    assert set(run_rule.crossing_without_spike_khz) == {float(f) for f in freqs if 0.7 <= f < 2.0}
    assert calls[0] == freqs.size and sum(calls) == freqs.size + run_rule.steps + lab_rule.steps


# -- bad input ---------------------------------------------------------------------------------

def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("hhbench: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_question(tmp_path, capsys, lab_small):
    out = tmp_path / "r"
    assert main(["lab", "q7", "--model", str(lab_small), "-o", str(out)]) == 2
    assert "q7" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_missing_model(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["lab", "q6", "--model", str(tmp_path / "nope"), "-o", str(out),
                 "--no-progress"]) == 2
    assert "nope" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_a_file_or_has_no_folder(tmp_path, capsys, lab_small):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["lab", "q6", "--model", str(lab_small), "-o", str(target), "--no-progress"]) == 2
    assert "is a file" in one_line_error(capsys) and target.read_text() == "keep me"
    assert main(["lab", "q6", "--model", str(lab_small), "-o", str(tmp_path / "a" / "b"),
                 "--no-progress"]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_failure_leaves_nothing_half_written(tmp_path, lab_small, monkeypatch):
    out = tmp_path / "r"
    out.mkdir()
    (out / "q6.md").write_text("old")

    def broken(result, folder):
        real_write(result, folder)
        raise HHBenchError("disk full, say")

    real_write = q6_receptive_field.write
    monkeypatch.setattr(q6_receptive_field, "write", broken)
    with pytest.raises(HHBenchError):
        run_lab(["q6"], model=lab_small, device="cpu", out_dir=out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert [p.name for p in out.iterdir()] == ["q6.md"] and (out / "q6.md").read_text() == "old"


def test_one_question_into_an_existing_folder_keeps_the_rest(tmp_path, lab_small, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["lab", "q6", "--model", str(lab_small), "--device", "cpu", "-o", str(out),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt", "q6.json", "q6.md", "q6_receptive_field_vs_layers.png"]
    assert "q6.md" in capsys.readouterr().out


def test_a_gpu_that_is_not_there(tmp_path, capsys, lab_small):
    from hhbench.cnn.devices import visible_devices
    if len(visible_devices()["GPU"]) > 7:
        pytest.skip("this machine has a GPU 7")
    out = tmp_path / "r"
    assert main(["lab", "q6", "--model", str(lab_small), "--device", "gpu:7", "-o", str(out),
                 "--no-progress"]) == 2
    assert "gpu:7" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_question_whose_backend_fails_is_a_recorded_line_and_the_others_go_on(
        tmp_path, lab_small):
    """Catches a backend failure that aborts `hhbench lab` (losing every question after
    it): q2 with a backend whose prepare raises is written as not answered, with the
    exception's words, in its section and JSON; q6 is still answered."""
    from hhbench.failures import NotRun
    from hhbench.suite import import_backend_module
    import_backend_module(str(Path(__file__).parent / "data" / "fault_backends.py"))
    out = tmp_path / "r"
    quick = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
    results = run_lab(["q2", "q6"], model=lab_small, device="cpu", out_dir=out,
                      progress=False, settings=LabSettings(
                          timing=quick, step_backends=("numpy", "fault-prepare")))
    assert isinstance(results["q2"], NotRun) and results["q2"].status == "failed"
    assert "RuntimeError: planted prepare failure" in results["q2"].reason
    assert "planted prepare failure" in (out / "q2.md").read_text()
    assert json.loads((out / "q2.json").read_text())["status"] == "failed"
    assert not isinstance(results["q6"], NotRun) and (out / "q6.md").exists()

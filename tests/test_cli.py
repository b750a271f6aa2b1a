"""The command line: what `simulate`, `backends` and `model-info` write and print."""

import numpy as np
import pandas as pd
import pytest

from hhbench import stimuli
from hhbench.backends import get_backend
from hhbench.cli import main
from hhbench.errors import DivergenceWarning


def test_simulate_writes_the_trace_csv_and_plot(tmp_path, capsys):
    out, png = tmp_path / "trace.csv", tmp_path / "trace.png"
    assert main(["simulate", "--backend", "numba", "--stimulus", "step", "--amplitude", "10",
                 "-o", str(out), "--plot", str(png)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["t_ms", "current", "v_mV"] and len(df) == 2560
    expected = get_backend("numpy").run(stimuli.step(10.0)).v_mv
    np.testing.assert_allclose(df.v_mV, expected, atol=1e-8)
    assert df.current.iloc[-1] == 10.0 and df.t_ms.iloc[1] == 0.05
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "8 spikes" in capsys.readouterr().out


def test_simulate_noise_is_seeded(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        assert main(["simulate", "--stimulus", "noise", "--seed", "4", "--sigma", "5",
                     "--samples", "500", "-o", str(path)]) == 0
    assert a.read_text() == b.read_text()


def test_simulate_cnn_covers_the_output_window(tmp_path, lab_small):
    out = tmp_path / "cnn.csv"
    assert main(["simulate", "--backend", "cnn", "--model", str(lab_small), "--device", "cpu",
                 "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 2048 and df.t_ms.iloc[0] == 12.8 and df.t_ms.iloc[-1] == 115.15
    # the current column is the stimulus at those times: the 20 µA/cm² step from 17.8 ms
    assert (df.current[df.t_ms < 17.8] == 0).all() and (df.current[df.t_ms >= 17.8] == 20).all()


def test_diverging_simulation_says_so(capsys):
    assert main(["simulate", "--backend", "numpy", "--amplitude", "-20"]) == 0
    captured = capsys.readouterr()
    assert "DIVERGED" in captured.out and captured.err.count("warning:") == 1


def test_backends_lists_every_backend(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    from hhbench.backends import backend_classes
    names = [l.split()[0] for l in lines]
    assert names == list(backend_classes())          # one line each, in the registry's order
    assert {"numpy", "numba", "odeint", "odeint-lab", "exp-euler", "reference",
            "cnn"} <= set(names)


def test_model_info(lab_small, capsys):
    assert main(["model-info", "--model", str(lab_small)]) == 0
    out = capsys.readouterr().out
    assert "parameters   6,149" in out and "7666 samples = 383.30 ms" in out
    assert "(None, 2560, 1)" in out and "context      256" in out


# -- what a person reads: words, files, plots -----------------------------------------------

def test_simulate_says_one_spike_not_one_spikes(capsys):
    # 30 ms of the default 20 µA/cm² step: exactly one spike
    assert main(["simulate", "--backend", "numba", "--samples", "600"]) == 0
    out = capsys.readouterr().out
    assert "1 spike " in out and "1 spikes" not in out
    assert main(["simulate", "--backend", "numba", "--samples", "700"]) == 0
    assert "2 spikes" in capsys.readouterr().out


def test_simulate_names_every_file_it_wrote(tmp_path, capsys):
    out, png = tmp_path / "v.csv", tmp_path / "v.png"
    assert main(["simulate", "--samples", "600", "-o", str(out), "--plot", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    wrote = [line for line in lines if line.startswith("wrote ")]
    assert len(wrote) == 2 and str(out) in wrote[0] and str(png) in wrote[1]
    assert out.exists() and png.exists()


def test_simulate_prints_the_stimulus_in_words_not_a_dict(capsys):
    assert main(["simulate", "--amplitude", "10", "--samples", "600"]) == 0
    out = capsys.readouterr().out
    assert "step of 10 µA/cm² from 17.8 ms, 600 samples at 20 kHz (30 ms)" in out
    assert "{" not in out and "amplitude_ua" not in out
    assert main(["simulate", "--stimulus", "sine", "--samples", "600"]) == 0
    assert "sine of 80 µA/cm² at 0.05 kHz from 18.7 ms" in capsys.readouterr().out
    assert main(["simulate", "--stimulus", "noise", "--sigma", "5", "--seed", "3",
                 "--samples", "600"]) == 0
    assert "white noise of σ = 5 µA/cm² from 18.7 ms, seed 3" in capsys.readouterr().out


def test_a_diverged_trace_plot_keeps_the_finite_part_readable(tmp_path, monkeypatch):
    import hhbench.plot as plot
    seen = {}
    real_save = plot._save

    def save(fig, path, fmt):  # what the V axes show, read before _save clears the figure
        ax_v = fig.axes[1]
        seen.update(ylim=ax_v.get_ylim(), texts=[t.get_text().strip() for t in ax_v.texts],
                    marks=[line.get_xdata()[0] for line in ax_v.lines
                           if line.get_linestyle() == "--"])
        return real_save(fig, path, fmt)

    monkeypatch.setattr(plot, "_save", save)
    with pytest.warns(DivergenceWarning):
        result = get_backend("numpy").run(stimuli.step(-20.0))   # forward Euler overflows
    assert result.any_diverged
    assert plot.plot_trace(result, tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    lo, hi = seen["ylim"]
    assert np.isfinite([lo, hi]).all() and hi < 200 and lo > -200
    assert lo < -65 < hi          # the finite part before the overflow (rest at ~ -65 mV)
    assert "diverged" in seen["texts"]
    # one dashed line, where V stops being finite or physiological (after the 17.8 ms onset)
    assert len(seen["marks"]) == 1 and 17.8 < seen["marks"][0] < 40


def test_diverged_ylim_ignores_nan_and_overflow():
    from hhbench.plot import diverged_ylim
    v = np.array([[-65.0, -70.0, 30.0, 1e300, np.inf, np.nan]])
    lo, hi = diverged_ylim(v)
    assert -80 < lo < -70 and 60 < hi < 70          # 1e300 is clipped to 60 mV
    lo, hi = diverged_ylim(np.full((1, 4), np.nan))          # nothing finite: the range
    assert (lo, hi) == (-108.0, 68.0)


def _run_table_columns():
    from hhbench.cli import format_table
    from hhbench.results import CaseResult, RunResults
    from hhbench.timing import Timing
    case = CaseResult(backend="numba", stimulus="step", batch=1, device="cpu", status="ok",
                      n_samples=200, dt_ms=0.05, reference="converged", prepare_s=0.1,
                      timing=Timing(cold_s=2e-3, samples_s=(1e-3, 1.1e-3, 0.9e-3)),
                      accuracy={"rmse_mv_median": 1.0, "gamma_median": 1.0,
                                "spike_count_abs_error_mean": 0.0, "frac_diverged": 0.0})
    results = RunResults(settings={"reference": "converged", "processes": 1},
                         environment={"cpu": "Test CPU", "logical_cores": 2},
                         calibration={}, cases=(case,), examples={})
    return format_table(results).splitlines()[2].split()


def test_run_help_explains_every_column_the_table_prints(capsys):
    columns = _run_table_columns()
    assert "warm_median_ms" in columns and "status" in columns
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for column in columns + ["device_only_ms"]:
        assert column in text, column
    flat = " ".join(text.split())
    # what the figures are, not just their names
    assert "the median over processes of each process' median" in flat
    assert "coefficient of variation" in flat and "interquartile range" in flat
    assert "batch / warm median" in flat and "|spikes - reference spikes|" in flat


def test_check_help_has_a_description(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "load average" in flat and "governor" in flat and "warning:" in flat
    assert "10 % change" in flat and "Exit status: 0 without warnings, 1 with any" in flat


def test_model_info_explains_the_two_input_layers(lab_small, capsys):
    assert main(["model-info", "--model", str(lab_small)]) == 0
    out = capsys.readouterr().out
    assert out.count("(InputLayer)") == 2
    nested = [line for line in out.splitlines() if line.startswith("nested")]
    assert nested == ["nested       model_3 wraps the network model_2 as one layer, so both "
                      "input layers are listed: input_3 (model_3's) and input_2 (model_2's)"]

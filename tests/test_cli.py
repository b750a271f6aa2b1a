"""The command line: what `simulate`, `backends` and `model-info` write and print."""

import numpy as np
import pandas as pd

from hhbench import stimuli
from hhbench.backends import get_backend
from hhbench.cli import main


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
    assert [l.split()[0] for l in lines] == ["numpy", "numba", "odeint", "odeint-lab",
                                             "exp-euler", "reference", "cnn"]


def test_model_info(lab_small, capsys):
    assert main(["model-info", "--model", str(lab_small)]) == 0
    out = capsys.readouterr().out
    assert "parameters   6,149" in out and "7666 samples = 383.30 ms" in out
    assert "(None, 2560, 1)" in out and "context      256" in out

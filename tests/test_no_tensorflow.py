"""Where TensorFlow is not installed (a GPU machine with JAX): `model-info` reads the model
with h5py, the lab's CNN questions run the network through JAX, `lab q2` needs no CNN
framework at all, and `train` says in one line what it needs. Each is checked against the
TensorFlow path on the same model (here TensorFlow is hidden: a `sys.modules` entry of None
makes its import fail, as `hhbench.cnn_modes.module_found` reads it)."""

import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from hhbench.cli import main

from conftest import LAB_SMALL, needs_tf

HIDE_TF = ("tensorflow", "tf_keras", "keras")
ROOT = Path(__file__).resolve().parents[1]


def _hide(monkeypatch, *names):
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@needs_tf
def test_model_info_without_tensorflow_prints_what_tensorflow_prints(capsys, monkeypatch):
    assert main(["model-info", "--model", str(LAB_SMALL)]) == 0
    with_tf = capsys.readouterr().out
    _hide(monkeypatch, *HIDE_TF)
    assert main(["model-info", "--model", str(LAB_SMALL)]) == 0
    assert capsys.readouterr().out == with_tf
    assert "nested       model_3 wraps the network model_2" in with_tf


@pytest.mark.skipif(find_spec("h5py") is None, reason="model-info reads the files with h5py, "
                    "not installed here (the core install)")
def test_model_info_without_tensorflow_reads_the_lab_folder(capsys, monkeypatch):
    _hide(monkeypatch, *HIDE_TF)
    assert main(["model-info", "--model", str(LAB_SMALL)]) == 0
    out = capsys.readouterr().out
    # 9 encoder layers of kernel 16, stride 2: (16 - 1)(2^9 - 1) + 1 = 7666 samples
    assert "parameters   6,149" in out and "7666 samples = 383.30 ms" in out
    assert "input        (None, 2560, 1)\noutput       (None, 2048, 1)" in out
    assert "  enc_conv1 (Conv2D) (None, 1280, 1, 4) params=68" in out  # 16*1*4 + 4


def test_model_info_without_any_reader_says_what_to_install(capsys, monkeypatch):
    _hide(monkeypatch, *HIDE_TF, "h5py")
    assert main(["model-info", "--model", str(LAB_SMALL)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'hhbench[cnn]'" in err


def test_train_says_what_it_needs_in_one_line(capsys, monkeypatch, tmp_path):
    _hide(monkeypatch, *HIDE_TF)
    assert main(["train", "--tiny", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train needs tensorflow" in err and "pip install 'hhbench[cnn]'" in err
    assert not (tmp_path / "t").exists()


def test_lab_cnn_questions_without_any_runtime_say_what_to_install(capsys, monkeypatch,
                                                                   tmp_path):
    _hide(monkeypatch, *HIDE_TF, "jax", "h5py")
    assert main(["lab", "q3", "-o", str(tmp_path / "lab"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'hhbench[jax]'" in err
    assert not (tmp_path / "lab").exists()


@needs_tf
def test_the_lab_runs_its_cnn_through_jax_without_tensorflow(monkeypatch):
    pytest.importorskip("jax")
    from hhbench import stimuli
    from hhbench.cnn.jaxgraph import JaxRunner
    from hhbench.cnn.runner import CnnRunner
    from hhbench.lab import q6_receptive_field
    from hhbench.lab.common import LabSetup

    tf_setup = LabSetup(str(LAB_SMALL), device="cpu")
    assert isinstance(tf_setup.runner, CnnRunner)
    tf_info = tf_setup.runner.describe()
    tf_rf = q6_receptive_field.compute(tf_setup)
    step = stimuli.step(**tf_setup.stim_kw())
    tf_v = tf_setup.backend("cnn").run(step).v_mv

    _hide(monkeypatch, *HIDE_TF)
    setup = LabSetup(str(LAB_SMALL), device="cpu")
    assert isinstance(setup.runner, JaxRunner)
    info = setup.runner.describe()
    for key in ("parameters", "input_shape", "output_shape", "context", "input_scale",
                "output_scale", "fs_khz", "receptive_field", "layers", "source"):
        assert info[key] == tf_info[key], key
    assert q6_receptive_field.compute(setup) == tf_rf
    assert setup.stim_kw() == tf_setup.stim_kw() and setup.context == tf_setup.context
    cnn = setup.backend("cnn")
    assert cnn.settings()["runtime"] == "jax"
    np.testing.assert_allclose(cnn.run(step).v_mv, tf_v, atol=1e-3)  # mV: float32 both
    assert setup.describe()["tf_device"] == "cpu"


NO_FRAMEWORK_Q2 = textwrap.dedent("""
    import sys
    for name in ("tensorflow", "tf_keras", "keras", "jax", "h5py"):
        sys.modules[name] = None  # any import of them fails
    from hhbench.lab import LabSettings, run_lab
    from hhbench.timing import TimingSettings
    quick = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
    run_lab(["q2"], model=sys.argv[1], out_dir=sys.argv[2], progress=False,
            settings=LabSettings(timing=quick, step_backends=("numpy",)))
    print("ok")
""")


def test_lab_q2_needs_no_cnn_framework(tmp_path):
    out = tmp_path / "lab"
    done = subprocess.run([sys.executable, "-c", NO_FRAMEWORK_Q2, str(LAB_SMALL), str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok"]
    text = (out / "q2.md").read_text()
    assert "2560" in text or "128 ms" in text  # the model's window: its JSON was read
    assert (out / "q2.json").exists()


def test_the_time_base_of_a_folder_is_read_without_a_framework(monkeypatch):
    """window, context, rate and scaling from Gmodel.json (+ hhbench_model.json) alone."""
    _hide(monkeypatch, *HIDE_TF, "jax", "h5py")
    from hhbench.cnn.description import time_base
    from hhbench.lab.common import LabSetup
    assert time_base(LAB_SMALL) == {"window": 2560, "out_len": 2048, "context": 256,
                                    "fs_khz": 20.0, "input_scale": 1e-3, "output_scale": 1e-2}
    setup = LabSetup(str(LAB_SMALL), load_cnn=False)
    assert (setup.n_samples, setup.context, setup.fs_khz) == (2560, 256, 20.0)
    assert setup.model_path == str(LAB_SMALL)

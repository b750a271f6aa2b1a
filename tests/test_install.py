"""hhbench installed like a library: a wheel built from this checkout carries the shipped
CNN (and only what inference needs), and an installation found from another folder runs it.

Builds a real wheel with pip (build isolation, as asv does) and installs it into a folder
with `pip install --no-deps --target`; tens of seconds, marked `install`.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
INFERENCE_FILES = {"Gmodel.json", "Gmodel.h5", "hhbench_model.json", "MODEL_CARD.md",
                   "model_card.json"}

pytestmark = pytest.mark.install


def _source_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the wheel test builds from the checkout's files")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, target): a wheel of a copy of this checkout that also holds a training
    checkpoint (which must stay out), installed into `target`."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    ckpt = src / "models" / "hh-step-cnn" / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "ckpt-1.index").write_bytes(b"training state")
    (ckpt / "Gmodel.h5").write_bytes(b"not for the wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("hhbench-*.whl")
    target = tmp / "target"
    subprocess.run(pip + ["install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return wheel, target


def _run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HHBENCH_MODEL"}
    env["PYTHONPATH"] = str(target)  # the installed copy only, not this checkout
    return subprocess.run([sys.executable, "-m", "hhbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_wheel_carries_only_the_inference_files(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    model_files = {n for n in names if n.startswith("hhbench/models/")}
    assert model_files == {f"hhbench/models/hh-step-cnn/{f}" for f in INFERENCE_FILES}
    assert not [n for n in names if "checkpoint" in n or "train_state" in n]
    # every module of the checkout is in it
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "hhbench").rglob("*.py")} <= set(names)


def test_installed_copy_finds_its_packaged_model(installed, tmp_path):
    _, target = installed
    code = ("from hhbench.model_location import locate_model; l = locate_model(); "
            "print(l.origin); print(l.path)")
    env = {k: v for k, v in os.environ.items() if k != "HHBENCH_MODEL"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "package data"
    assert Path(out[1]).is_relative_to(target)
    assert {p.name for p in Path(out[1]).iterdir()} == INFERENCE_FILES


def test_installed_copy_runs_the_default_cnn(installed, tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    from hhbench import stimuli
    from hhbench.backends import get_backend
    from hhbench.model_location import checkout_model_path

    _, target = installed
    info = _run_installed(target, tmp_path, "model-info")
    assert info.returncode == 0, info.stderr
    assert "from         package data" in info.stdout
    out = tmp_path / "v.csv"
    sim = _run_installed(target, tmp_path, "simulate", "--backend", "cnn", "--device", "cpu",
                         "-o", str(out))
    assert sim.returncode == 0, sim.stderr
    # the same files loaded from this checkout give the same trace
    expected = get_backend("cnn", model=checkout_model_path(), device="cpu").run(stimuli.step())
    got = pd.read_csv(out)
    np.testing.assert_allclose(got["t_ms"], expected.t_ms, atol=1e-6)
    np.testing.assert_allclose(got["v_mV"], expected.v_mv, atol=1e-3)

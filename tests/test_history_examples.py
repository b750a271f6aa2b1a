"""The examples for many machines (examples/history/) parse: the GitHub Actions workflow as
YAML with the jobs and commands it promises, the Slurm scripts with `bash -n`."""

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_ci_matrix_and_slurm_examples_parse():
    wf = yaml.safe_load((ROOT / "examples/history/github-actions-matrix.yml").read_text())
    job = wf["jobs"]["benchmark"]
    assert "self-hosted" in job["runs-on"][0] or "self-hosted" in job["runs-on"]
    steps = " ".join(s.get("run", "") for s in job["steps"])
    assert "hhbench run" in steps and "--store" in steps
    gate = " ".join(s.get("run", "") for s in wf["jobs"]["gate"]["steps"])
    assert "hhbench history regressions" in gate and "--since" in gate
    for script in ("slurm-array.sh", "collect.sh"):
        path = ROOT / "examples/history" / script
        subprocess.run([shutil.which("bash") or "bash", "-n", str(path)], check=True)
    slurm = (ROOT / "examples/history/slurm-array.sh").read_text()
    assert "#SBATCH --array=" in slurm and "hhbench run" in slurm

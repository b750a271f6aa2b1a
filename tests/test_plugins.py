"""Backends from other distributions (entry-point group `hhbench.backends`): the example
plugin under examples/ is installed with pip and run through `hhbench run`; a broken
plugin costs one line, not hhbench."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hhbench import stimuli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hhbench-plugin-example"

pytestmark = pytest.mark.install


def _hhbench(*args, paths, cwd):
    env = dict(os.environ)
    # the plugin's folder, then this checkout's hhbench (as an installed hhbench would be)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in paths] + [str(ROOT)])
    return subprocess.run([sys.executable, "-m", "hhbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    target = tmp_path_factory.mktemp("plugin")
    source = tmp_path_factory.mktemp("plugin-src") / EXAMPLE.name
    # built from a copy: pip's build folder must not land in the repository
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install",
                    "--no-deps", "-q", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def passive_membrane_exact(stim) -> np.ndarray:
    """V of C dV/dt = g_L (E_L - V) + I written in closed form: piecewise exponential
    relaxation towards E_L + I/g_L between the points where the current changes."""
    g, e, v0 = 0.3, -54.4, -70.0
    current = stim.current_ua[0]
    t = stim.t_ms
    v = np.empty_like(t)
    t_start, v_start = 0.0, v0
    changes = [0] + [k for k in range(1, len(current)) if current[k] != current[k - 1]]
    for i, k in enumerate(changes):
        end = changes[i + 1] if i + 1 < len(changes) else len(t)
        v_inf = e + current[k] / g
        seg = slice(k, end + 1)
        v[seg] = v_inf + (v_start - v_inf) * np.exp(-g * (t[seg] - t_start))
        if end < len(t):
            t_start, v_start = t[end], v[end]
    return v


def test_plugin_is_listed(plugin, tmp_path):
    out = _hhbench("backends", paths=[plugin], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names[-1] == "passive" and "numba" in names
    assert out.stderr == ""


def test_plugin_runs_in_the_suite_with_the_right_voltage(plugin, tmp_path):
    res = tmp_path / "r.json"
    out = _hhbench("run", "--backends", "passive,numpy", "--stimuli", "step", "--quick",
                   "--no-progress", "-o", str(res), paths=[plugin], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(res.read_text())
    cases = {c["backend"]: c for c in data["cases"]}
    assert cases["passive"]["status"] == "ok"
    assert cases["passive"]["settings"] == {"g_l_ms": 0.3, "e_l_mv": -54.4, "c_uf": 1.0,
                                            "timed": "host arrays in and out"}
    example = data["examples"]["step"]["backends"]["passive"]
    expected = passive_membrane_exact(stimuli.step())
    np.testing.assert_allclose(example["v_mv"], expected, atol=1e-3)
    # the leak alone: V settles at E_L + I/g_L = -54.4 + 20/0.3 mV, and no spike
    assert abs(expected[-1] - (-54.4 + 20 / 0.3)) < 1e-6
    assert cases["passive"]["accuracy"]["spike_count_abs_error_mean"] > 0


def test_a_broken_plugin_is_one_line(tmp_path):
    site = tmp_path / "site"
    dist = site / "hhbench_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hhbench-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hhbench.backends]\nbroken = no_such_module:Thing\n")
    out = _hhbench("backends", paths=[site], cwd=tmp_path)
    assert out.returncode == 0
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "plugin 'broken'" in out.stderr and "hhbench-broken" in out.stderr
    assert "No module named 'no_such_module'" in out.stderr
    assert "numba" in out.stdout
    used = _hhbench("simulate", "--backend", "broken", paths=[site], cwd=tmp_path)
    assert used.returncode == 2 and used.stderr.count("\n") == 1
    assert "unknown backend 'broken'" in used.stderr and "failed to load" in used.stderr

"""scripts/gpu_report.py on a machine without a GPU: what it keeps when things break.

Each test runs the script as a user does (`--quick`, a section or two), with numba's CUDA
simulator playing the GPU for numba-cuda; faults are planted with the script's test-only
HHBENCH_GPU_REPORT_FAULT ("SECTION:raise|die|hang", after the section's first row).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_report.py"

pytestmark = pytest.mark.skipif(
    find_spec("numba_cuda") is None or find_spec("jax") is None,
    reason="needs numba-cuda and JAX (the GPU machines' package set)")


def _run(tmp: Path, *args, fault: str = "", **env_extra):
    """Run the script into tmp/out (JAX's compilation cache in tmp/cache); (the finished
    process, the report, seconds taken)."""
    out = tmp / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        JAX_COMPILATION_CACHE_DIR=str(tmp / "cache"))
    env.pop("HHBENCH_GPU_REPORT_FAULT", None)
    if fault:
        env["HHBENCH_GPU_REPORT_FAULT"] = fault
    env.update(env_extra)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), "--quick", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu_report.json").read_text()) \
        if (out / "gpu_report.json").exists() else None
    return proc, report, time.monotonic() - start


def test_sections_that_raise_or_die_keep_their_rows_and_fail_the_run(tmp_path):
    """Catches a section failure that loses the others or the rows measured before it,
    a dead section process reported as success, and tracebacks on the terminal: the
    agreement section's process dies after its first row and throughput raises after
    its first; each keeps that row, is marked failed, the run exits 1, the terminal
    has one line per section and the tracebacks are in the log."""
    proc, report, _ = _run(tmp_path, "--device", "cpu", "--sections", "agreement,throughput",
                           fault="agreement:die,throughput:raise")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("gpu_report: ")]
    assert [ln.split()[1] for ln in lines[:3]] == ["probe", "agreement", "throughput"]
    sections = report["sections"]
    assert sections["agreement"]["status"].startswith("failed: its process exited with "
                                                      "status 9")
    assert sections["throughput"]["status"] == "failed: RuntimeError: planted fault (test)"
    for name in ("agreement", "throughput"):
        rows = sections[name]["rows"]
        assert len(rows) == 1 and rows[0]["backend"] == "numba-cuda", rows
    assert rows[0]["neuron_steps_per_s"] > 0  # measured on the simulator, kept
    assert "Traceback" in (tmp_path / "out" / "gpu_report.log").read_text()
    md = (tmp_path / "out" / "gpu_report.md").read_text()
    # titled by what ran: both rows ran on the simulator (not "on a GPU")
    assert md.startswith("# hhbench on the CUDA simulator, ")
    assert "failed: RuntimeError: planted fault" in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "gpu_report.json", "gpu_report.log", "gpu_report.md"]


def test_a_deadline_mid_section_keeps_what_was_measured(tmp_path):
    """Catches a deadline that is not enforced (a hung section holds the run), or one that
    throws away the rows of the section it cuts: agreement hangs after its first row; the
    run ends within the deadline and a grace, with that row kept in JSON and Markdown, and
    the sections after it recorded as skipped."""
    deadline = 30
    proc, report, took = _run(tmp_path, "--device", "cpu", "--deadline-s", str(deadline),
                              "--sections", "agreement,throughput", fault="agreement:hang")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # --deadline-s covers the whole run, output included (a deadline not enforced hangs
    # until the 600 s timeout); the rest is the parent's own start
    assert took < deadline + 3
    state = report["sections"]["agreement"]
    assert state["status"] == "cut by the deadline (1 rows kept)"
    assert state["rows"][0]["max_abs_diff_mv"] < 1e-9
    assert report["sections"]["throughput"]["status"] == "skipped: deadline"
    assert "| numba-cuda | euler | float64 |" in (tmp_path / "out" / "gpu_report.md").read_text()


def test_simulator_with_jax_seeing_no_gpu(tmp_path):
    """Catches a JAX without a GPU that loses the numba-cuda rows, or JAX rows that say
    nothing: under the CUDA simulator with JAX on the CPU only, `--device gpu` measures
    every numba-cuda row, and each JAX row says that JAX sees no GPU."""
    proc, report, _ = _run(tmp_path, "--sections", "agreement,throughput",
                           NUMBA_ENABLE_CUDASIM="1", JAX_PLATFORMS="cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probe = report["probe"]
    assert probe["numba_cuda"]["works"] and not probe["jax"]["works"]
    for name in ("agreement", "throughput"):
        rows = report["sections"][name]["rows"]
        cuda_rows = [r for r in rows if r["backend"] == "numba-cuda"]
        jax_rows = [r for r in rows if r["backend"] == "jax"]
        assert len(cuda_rows) == len(jax_rows) == (4 if name == "agreement" else 2)
        assert all("error" not in r for r in cuda_rows), cuda_rows
        assert all("sees no GPU" in r["error"] for r in jax_rows), jax_rows
    assert all(r["max_abs_diff_mv"] < 1e-9 for r in report["sections"]["agreement"]["rows"]
               if r["backend"] == "numba-cuda" and r["precision"] == "float64")


def test_no_gpu_runtime_stops_after_the_probe(tmp_path):
    """Catches a run that goes on (every row an error) when neither GPU runtime works:
    without the simulator and with JAX on the CPU only, `--device gpu` stops after the
    probe with one line saying why, exit 1, and the sections marked not run."""
    proc, report, _ = _run(tmp_path, "--sections", "agreement", JAX_PLATFORMS="cpu")
    assert proc.returncode == 1
    why = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(why) == 1 and why[0].startswith("gpu_report: no GPU runtime works here")
    assert "JAX sees no gpu" in why[0]
    assert report["sections"]["agreement"]["status"] == "not run: no GPU runtime works"


@pytest.mark.parametrize("args, word", [(["--sections", "agreement,bogus"], "bogus"),
                                        (["--deadline-s", "-5"], "-5")])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, word):
    """Catches an unknown section or a negative deadline that starts work anyway."""
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2 and word in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def _script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_report_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_estimates_for_h100_and_h200():
    """Catches estimates that would refuse a case an H100 holds, or let one through that
    it cannot: 10⁶ × 2,560 float64 samples are 20.48 GB an array; numba-cuda holds two
    (41 GB), JAX three in its round trip (61 GB); both fit 95 % of an H100's 80 GB, and a
    40 GB card is too small for JAX float64 but not for float32 (30.7 GB)."""
    g = _script()
    n = 10 ** 6 * 2560
    assert g._memory_needed("numba-cuda", "float64", 10 ** 6, 2560) == n * 16
    assert g._memory_needed("numba-cuda", "float32", 10 ** 6, 2560) == n * 12
    assert g._memory_needed("jax", "float64", 10 ** 6, 2560) == n * 24
    h100, h200, small = 80e9, 141e9, 40e9
    for card in (h100, h200):
        assert g._memory_needed("jax", "float64", 10 ** 6, 2560) < card * g.MEM_FRACTION
    assert g._memory_needed("jax", "float64", 10 ** 6, 2560) > small * g.MEM_FRACTION
    assert g._memory_needed("jax", "float32", 10 ** 6, 2560) < small * g.MEM_FRACTION


def test_title_and_energy_headline_name_the_devices_that_ran():
    """Catches a report titled "on a GPU" whose rows ran on the CPU, and an energy
    headline that sets a GPU simulator against a CNN measured on another device."""
    g = _script()
    row = lambda dev, j, **kw: {"device": dev, "energy": {"j_per_trace": j}, **kw}  # noqa
    report = {"date": "2026-12-07", "probe": {"gpu_name": "NVIDIA H100 80GB HBM3"},
              "sections": {
                  "throughput": {"rows": [row("gpu:0", 2e-6, backend="numba-cuda",
                                              precision="float32", traces=10,
                                              samples=2560, round_trip_s=1.0)]},
                  "cnn": {"rows": [row("cpu", 1e-3, precision="float32", batch=64,
                                       round_trip_s=1.0)]}}}
    md = g.markdown(report)
    assert md.startswith("# hhbench on NVIDIA H100 80GB HBM3 and the CPU, 2026-12-07")
    assert "Energy per trace" not in md  # no CNN row on gpu:0
    report["sections"]["cnn"]["rows"].append(row("gpu:0", 4e-3, precision="bfloat16",
                                                 batch=4096, round_trip_s=1.0))
    md = g.markdown(report)
    assert "numba-cuda float32 2e-06 J on gpu:0 against CNN bfloat16 batch 4096 0.004 J" in md
    assert "2e+03x" in md
    report["sections"] = {"throughput": {"rows": [{"device": "cpu", "backend": "jax",
                                                   "precision": "float64", "traces": 4,
                                                   "samples": 64, "round_trip_s": 1.0}]}}
    assert g.markdown(report).startswith("# hhbench on the CPU, ")


@pytest.mark.parametrize("inherited", [
    {}, {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"},
    {"XLA_CLIENT_MEM_FRACTION": "0.6", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}])
@pytest.mark.parametrize("section", ["probe", "agreement", "throughput", "scaling", "run"])
def test_no_section_gets_both_jax_memory_fraction_variables(monkeypatch, inherited, section):
    """Catches the throughput and scaling sections' processes getting both
    XLA_CLIENT_MEM_FRACTION and the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION: jaxlib
    raises ValueError for the pair inside the CUDA plugin's start, and JAX then runs on
    the CPU only (every JAX GPU row of those sections lost). jaxlib's own option builder
    is run on the environment each section gets."""
    g = _script()
    for name in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)
    args = g.parse([str(ROOT / "tests"), "--device", "gpu"])
    env = g.child_env(g.section_env(args), section)
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env
    if section in ("throughput", "scaling"):
        assert env["XLA_CLIENT_MEM_FRACTION"] == str(g.MEM_FRACTION)
    elif inherited:
        assert env["XLA_CLIENT_MEM_FRACTION"] == inherited.get("XLA_CLIENT_MEM_FRACTION",
                                                                 "0.5")
    xla_client = pytest.importorskip("jaxlib.xla_client")
    if hasattr(xla_client, "generate_pjrt_gpu_plugin_options"):
        for name in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
            monkeypatch.delenv(name, raising=False)
        for name in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
            if name in env:
                monkeypatch.setenv(name, env[name])
        options = xla_client.generate_pjrt_gpu_plugin_options()  # raised for the pair
        if section in ("throughput", "scaling"):
            assert float(options["memory_fraction"]) == pytest.approx(g.MEM_FRACTION)


def test_agreement_leaves_out_traces_that_diverged_on_either_side():
    """Catches an agreement row whose max |ΔV| counts the pre-blow-up samples of a trace
    on which forward Euler diverges: there a one-ulp difference (a GPU's FMA against
    NumPy) grows to hundreds of mV, and float64's 1e-9 mV bar failed on a real GPU. Each
    side's diverged traces and first bad sample are kept, and whether they agree."""
    import numpy as np
    g = _script()
    n = 20
    ref = np.tile(np.linspace(-65.0, 30.0, n), (3, 1))
    gpu = ref + 1e-12  # the agreeing traces: 1e-12 mV apart
    # trace 1 diverges on both sides, the GPU's at 9, the CPU's at 11, 300 mV apart before
    ref[1, 11:], gpu[1, 9:] = np.nan, np.nan
    gpu[1, 5:9] = ref[1, 5:9] + 300.0
    # trace 2 diverges on the GPU only, at sample 15, 200 mV off before
    gpu[2, 15:] = np.nan
    gpu[2, 10:15] += 200.0
    rec = g.agreement(ref, [False, True, False], gpu, [False, True, True])
    assert rec["max_abs_diff_mv"] == pytest.approx(1e-12, rel=1e-3)
    assert rec["traces_compared"] == 1
    assert rec["first_bad"] == [None, 9, 15] and rec["first_bad_cpu"] == [None, 11, None]
    assert rec["flags_agree"] is False and rec["first_bad_agree"] is False
    rec = g.agreement(ref, [False, True, False], gpu[:2].tolist() + [ref[2] + 1e-12],
                      [False, True, False])
    assert rec["flags_agree"] and rec["first_bad_agree"]  # 9 against 11: within 3
    assert rec["traces_compared"] == 2
    assert rec["max_abs_diff_mv"] == pytest.approx(1e-12, rel=1e-3)
    # a value beyond the divergence limit counts as bad even before the NaNs
    big = ref.copy()
    big[1, 7] = 2e4
    assert g.agreement(ref, [False, True, False], big, [False, True, False])[
        "first_bad"][1] == 7
    md = g.markdown({"sections": {"agreement": {"rows": [
        {"backend": "jax", "kernel": "euler", "precision": "float64", **rec}]}}})
    assert "| 2 | 1@9 / 1@11 | True |" in md


def test_agreement_on_the_sections_stimuli_with_numba_fma_against_numpy():
    """The same on the section's own stimuli: the CPU's numba (FMA) against NumPy, forward
    Euler in float64. The sine and the −20 µA/cm² step diverge; before their blow-up the
    two differ by hundreds of mV (595 mV on this machine), the other traces by ~1e-12."""
    from hhbench.suite import make_backend
    g = _script()
    stim = g._agreement_stimulus(2560)
    ref = make_backend("numpy", device="cpu").run(stim)
    r = make_backend("numba", device="cpu").run(stim)
    rec = g.agreement(ref.v_batch, ref.diverged, r.v_batch, r.diverged)
    assert rec["diverged"] == rec["diverged_cpu"] == [False, True, False, True]
    assert rec["first_bad_agree"], rec
    assert rec["max_abs_diff_mv"] < 1e-9


def test_the_whole_run_ends_within_its_deadline_by_arithmetic():
    """Catches a run that ends ~10 s past --deadline-s: a section ran to the deadline plus
    its grace, `_stop` then waited 2 s after SIGTERM and up to 5 s after SIGKILL, and the
    parent wrote the report after that. Now the sections' deadline is the run's less the
    grace, the stop waits and the last writes, so the worst case ends in time."""
    g = _script()
    deadline_at = 1000.0 + 60.0
    for now in (1000.0, 1030.0, 1050.0):
        limit = g.child_limit(deadline_at, now)
        # a section cut at its limit: stopped, the report written, the warm compile killed
        worst_end = now + limit + g.TERM_WAIT_S + g.KILL_WAIT_S + g.WRITE_S + g.KILL_WAIT_S
        assert worst_end <= deadline_at + 1e-9
        # the section itself sees a deadline GRACE_S before the parent stops it
        assert g.sections_deadline(deadline_at) == pytest.approx(now + limit - g.GRACE_S)
    assert g.child_limit(deadline_at, 1000.0, probe=True) == g.PROBE_S
    assert g.child_limit(deadline_at, 1040.0, probe=True) == pytest.approx(
        g.sections_deadline(deadline_at) - 1040.0)


def test_stop_returns_within_its_waits_for_a_process_that_ignores_sigterm():
    """`_stop` on a process group that ignores SIGTERM: back within TERM_WAIT_S +
    KILL_WAIT_S (the margin the deadline arithmetic counts), the process dead; with
    term_wait_s=0 SIGKILL at once."""
    g = _script()
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('ready', flush=True); time.sleep(60)"
    for term_wait, bound in ((g.TERM_WAIT_S, g.TERM_WAIT_S + g.KILL_WAIT_S),
                             (0, g.KILL_WAIT_S)):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "ready"
        start = time.monotonic()
        g._stop(proc, term_wait_s=term_wait)
        assert time.monotonic() - start <= bound + 0.5
        assert proc.poll() is not None
        proc.stdout.close()


def test_the_run_section_leaves_time_for_scaling(monkeypatch, tmp_path):
    """Catches `hhbench run` taking every second left when scaling follows it (the scaling
    figure then lost to the deadline): it leaves 60 s, or a third of what it has where
    that is less, and the section's process is told which sections run."""
    g = _script()
    assert g.run_budget(300.0, scaling_follows=False) == pytest.approx(300.0 - g.GRACE_S)
    assert g.run_budget(300.0, True) == pytest.approx(300.0 - g.GRACE_S - 60.0)
    assert g.run_budget(63.0, True) == pytest.approx((63.0 - g.GRACE_S) * 2 / 3)
    seen = []

    class _Proc:
        pid = 0

        def __init__(self, cmd, **kw):
            seen.append((cmd, kw["env"]))

        def wait(self, timeout=None):
            return 0
    monkeypatch.setattr(g.subprocess, "Popen", _Proc)
    args = g.parse([str(tmp_path), "--sections", "run,scaling"])
    args.deadline_at = time.time() + 100
    with open(tmp_path / "log", "w") as log:
        assert g._child(args, "run", {}, log, 10.0) == ("done", 0)
    cmd = seen[0][0]
    assert cmd[cmd.index("--sections") + 1] == "run,scaling"
    assert g.parse([str(tmp_path), "--sections", "run"]).sections == ("run",)


def test_scaling_writes_its_table_and_figure_after_each_series(monkeypatch, tmp_path):
    """Catches a scaling section that writes its table and scaling.png only after its last
    series: a deadline (a kill) in a later series lost every figure. Here the second
    series is interrupted; the first's table and figure are already on disk."""
    import hhbench.plot
    import hhbench.scaling as scaling
    g = _script()
    args = g.parse([str(tmp_path), "--quick", "--device", "cpu"])
    args.deadline_at = time.time() + 300
    g.write_report(tmp_path, {"sections": {"scaling": {"status": "pending"}}})
    calls, plotted = [], []

    def fake_run(config, progress=False):
        calls.append(config.backends[0])
        if len(calls) > 1:
            raise KeyboardInterrupt("the deadline's SIGTERM, say")
        pts = tuple(scaling.ScalingPoint(backend="numba", axis="batch", batch=b,
                                         n_samples=640, call_s=1e-3 * b) for b in (1, 4))
        return scaling.ScalingResults(config=scaling.ScalingConfig(backends=("numba",)),
                                      points=pts)

    def fake_plot(results, path, **kw):
        plotted.append(len(results.points))
        Path(path).write_text("png")
        return Path(path)
    monkeypatch.setattr(scaling, "run_scaling", fake_run)
    monkeypatch.setattr(hhbench.plot, "plot_scaling", fake_plot)
    with pytest.raises(KeyboardInterrupt):
        g.section_scaling(g.Section("scaling", args))
    state = g.read_report(tmp_path)["sections"]["scaling"]
    assert "| numba |" in state["markdown"] and plotted == [2]
    assert (tmp_path / "scaling.png").exists()
    assert "| numba |" in (tmp_path / "gpu_report.md").read_text()


def test_a_warm_throughput_row_makes_no_extra_round_trip():
    """Catches a throughput row that pays a cold round trip (seconds at 10⁶ traces) after
    its device-only call has already run the round trip's kernels at the same shape
    (numba-cuda): the device-only call first, then one round trip, not two; a JAX row (its
    round trip another compiled function) and a row whose device-only call failed keep
    the cold call, the failure raised after the round trip is measured."""
    from types import SimpleNamespace
    g = _script()
    assert "numba-cuda" in g.WARMED_BY_DEVICE_ONLY and "jax" not in g.WARMED_BY_DEVICE_ONLY

    class _Backend:
        device = "gpu:0"

        def __init__(self, broken=False):
            self.calls, self.broken = [], broken

        def run(self, stim):
            self.calls.append("run")

        def device_call(self, stim):
            if self.broken:
                raise RuntimeError("device-only failed")
            return lambda: self.calls.append("device")

        def device_runtime(self):
            return SimpleNamespace(synchronize=lambda device, out: None,
                                   memory_in_use=lambda device: None)
    stim = SimpleNamespace(batch_size=10 ** 6)
    from hhbench.timing import TimingSettings
    settings = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
    for warm, runs in ((True, 1), (False, 2)):
        b = _Backend()
        row = g._timed_pair(b, stim, settings, warm=warm)
        assert b.calls == ["device", "device"] + ["run"] * runs
        assert row["round_trip_cold_call"] is (not warm) and "device_only_s" in row
    b = _Backend(broken=True)
    row = {}
    with pytest.raises(RuntimeError, match="device-only failed"):
        g._timed_pair(b, stim, settings, warm=True, out=row)
    assert b.calls == ["run", "run"] and "round_trip_s" in row


def _fake_smi(monkeypatch, g, line):
    """nvidia-smi answering `line` to the probe's query (and a table to the plain call)."""
    from types import SimpleNamespace

    def run(cmd, **kw):
        out = line if any("--query-gpu" in c for c in cmd) else "| CUDA Version: 13.0 |"
        return SimpleNamespace(returncode=0, stdout=out + "\n", stderr="")
    monkeypatch.setattr(g.subprocess, "run", run)


def test_probe_survives_nvidia_smi_saying_not_available(monkeypatch, tmp_path):
    """Catches `int(float("[N/A]"))` raising out of the probe (the whole probe lost, a
    MIG or vGPU instance says [N/A] for memory.total): the field is recorded as unknown,
    the rest kept, and numba-cuda's figure of the card's memory is taken where given."""
    g = _script()
    assert g.parse_smi("NVIDIA H100 80GB HBM3, 580.65, 81559") == {
        "gpu_name": "NVIDIA H100 80GB HBM3", "driver": "580.65",
        "gpu_memory_bytes": 81559 * 2 ** 20, "gpu_memory_from": "nvidia-smi"}
    rec = g.parse_smi("NVIDIA H100 80GB HBM3 MIG 1g.10gb, 580.65, [N/A]")
    assert rec["gpu_memory_bytes"] is None and "[N/A]" in rec["gpu_memory_unknown"]
    _fake_smi(monkeypatch, g, "NVIDIA H200, 580.65, [N/A]")
    monkeypatch.setattr(g, "_probe_jax", lambda args: {"works": False})
    monkeypatch.setattr(g, "_probe_numba_cuda", lambda: {"works": True})
    args = g.parse([str(tmp_path), "--quick"])
    out = g.probe(args)
    assert out["gpu_name"] == "NVIDIA H200" and out["cuda_driver_version"] == "13.0"
    assert out["gpu_memory_bytes"] is None
    monkeypatch.setattr(g, "_probe_numba_cuda",
                        lambda: {"works": True, "memory_total_bytes": 150_000_000_000})
    out = g.probe(args)
    assert out["gpu_memory_bytes"] == 150_000_000_000
    assert out["gpu_memory_from"] == "numba-cuda"


def test_probe_records_the_host_fill_rate_and_the_jax_pjrt_versions(monkeypatch, tmp_path):
    """Catches a probe that leaves the operator no way to judge the budget's host side
    (building a 10⁶-trace current is 20.5 GB of fresh memory) or that does not say which
    JAX CUDA PJRT package is installed."""
    g = _script()
    rec = g.host_fill_rate(2 ** 20)
    assert rec["bytes"] == 2 ** 20 and rec["gb_per_s"] > 0
    _fake_smi(monkeypatch, g, "NVIDIA H200, 580.65, 143771")
    monkeypatch.setattr(g, "_probe_jax", lambda args: {"works": False})
    monkeypatch.setattr(g, "_probe_numba_cuda", lambda: {"works": False})
    out = g.probe(g.parse([str(tmp_path), "--quick"]))
    assert out["host_fill"]["bytes"] == 2 ** 26 and out["host_fill"]["gb_per_s"] > 0
    for name in ("jax-cuda12-pjrt", "jax-cuda13-pjrt", "jax-cuda12-plugin",
                 "jax-cuda13-plugin"):
        assert name in out["versions"]
    assert "host memory fill: " in g.markdown({"probe": out, "sections": {}})


def test_energy_sections_measure_idle_power_first(monkeypatch, tmp_path):
    """Catches the idle power measured right after the timing loop, on a hot GPU (the
    work's energy above idle under-counted): throughput and cnn make their recorders and
    measure idle before any work, one recorder per runtime and device."""
    g = _script()
    args = g.parse([str(tmp_path), "--quick", "--device", "cpu"])
    args.deadline_at = time.time() + 300
    g.write_report(tmp_path, {"sections": {"throughput": {}, "cnn": {}}})
    made = []

    class _Rec:
        def __init__(self, b):
            self.b, self.idle = b, 0

        def measure_idle(self):
            self.idle += 1
    monkeypatch.setattr(g, "_energy", lambda sec, b: made.append(_Rec(b)) or made[-1])
    energies = g._idle_first(g.Section("throughput", args),
                             [("jax", {}), ("jax", {"precision": "float32"})])
    assert list(energies) == [("jax", "cpu")] and [r.idle for r in made] == [1]

    class _First(Exception):
        pass

    def first(sec, backends):
        raise _First([n for n, _ in backends])
    monkeypatch.setattr(g, "_idle_first", first)
    for name, runner, expect in (("throughput", g.section_throughput, list(g.HH_GPU)),
                                 ("cnn", g.section_cnn, ["cnn"])):
        monkeypatch.setattr(g, "_ceilings", lambda sec: pytest.fail("work before idle"))
        with pytest.raises(_First) as got:
            runner(g.Section(name, args))
        assert got.value.args[0] == expect

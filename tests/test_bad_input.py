"""Bad input that used to escape: a batch larger than memory, option values out of range,
training on a GPU that is not there. Each gets one line on stderr, exit status 2, and
leaves nothing behind."""

from importlib.util import find_spec

import pytest

from hhbench.backends import check_name
from hhbench.cli import main
from hhbench.errors import HHBenchError
from hhbench.memory import available_bytes, case_bytes, check_fits, suite_bytes

from conftest import needs_tf


def _one_line_exit_2(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_suite_memory_estimate_counts_references_and_a_working_set():
    # 2 cases of 10 traces x 100 samples (float64 = 8000 bytes each) and 1 case of 20 traces
    cases = [("step", 10), ("step", 10), ("sine", 20)]
    references = 8000 + 16000          # one per (stimulus, batch)
    working = 6 * 16000                # the largest case
    assert suite_bytes(cases, 100) == references + working
    assert case_bytes(1, 1000) == 6 * 8 * 1000


def test_check_fits_refuses_beyond_what_is_available():
    check_fits(1000, "x", available=1000)
    with pytest.raises(HHBenchError, match="needs about 1.0 GiB.*0.5 GiB available"):
        check_fits(2**30, "x", available=2**29)


def test_a_batch_beyond_memory_is_refused_before_anything_runs(tmp_path, capsys):
    batch = available_bytes() // (2560 * 8) + 1   # one float64 array alone would not fit
    out = tmp_path / "r.json"
    err = _one_line_exit_2(["run", "--backends", "numpy", "--stimuli", "step",
                            "--batch", str(batch), "--no-progress", "-o", str(out)], capsys)
    assert f"largest batch {batch}" in err and "available" in err
    assert list(tmp_path.iterdir()) == []


def test_a_trace_beyond_memory_is_refused(tmp_path, capsys):
    samples = available_bytes() // 8 + 1
    err = _one_line_exit_2(["simulate", "--samples", str(samples), "-o",
                            str(tmp_path / "t.csv")], capsys)
    assert "memory" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, words", [
    (["run", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
    (["run", "--repeats", "two"], "argument --repeats: must be a whole number"),
    (["run", "--min-time", "-1"], "argument --min-time: must be 0 or more"),
    (["run", "--min-time", "nan"], "argument --min-time: must be 0 or more"),
    (["simulate", "--samples", "0"], "argument --samples: must be at least 1"),
    (["train", "--epochs", "0"], "argument --epochs: must be at least 1"),
    (["train", "--max-minutes", "0"], "argument --max-minutes: must be more than 0"),
    (["train", "--input-scale", "-1"], "argument --input-scale: must be more than 0"),
])
def test_option_errors_name_the_option(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(argv, capsys)
    assert words in err
    assert "min_repeats" not in err and "min_time_s" not in err
    assert list(tmp_path.iterdir()) == []


@needs_tf
def test_train_on_a_missing_gpu_leaves_no_folder(tmp_path, capsys):
    from hhbench.cnn.devices import visible_devices
    if visible_devices()["GPU"]:
        pytest.skip("this machine has a GPU")
    out = tmp_path / "new-model"
    err = _one_line_exit_2(["train", "--tiny", "--device", "gpu", "--out", str(out),
                            "--no-progress"], capsys)
    assert "no such GPU" in err
    assert not out.exists()


def test_version(capsys):
    import hhbench
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hhbench {hhbench.__version__}"


@pytest.mark.parametrize("command, words", [
    ("run", ["ok ", "diverged", "failed", "skipped", "--repeats", "--min-time", "--reference"]),
    ("simulate", ["DIVERGED", "--backend", "--onset-ms", "--sigma"]),
    ("compare", ["slower", "faster", "same", "inconclusive", "--threshold", "--alpha"]),
    ("model-info", ["package data", "HHBENCH_MODEL"]),
    ("backends", ["unavailable"]),
])
def test_help_explains_the_words_each_command_prints(command, words, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for word in words:
        assert word in text, word


def test_every_option_has_a_help_text():
    from hhbench.cli import build_parser
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}"


#: whether the cnn backend runs here at all: TensorFlow, or JAX with h5py (the GPU
#: machines run it through JAX without TensorFlow)
CNN_RUNS = check_name("cnn").is_available()


def test_backends_says_how_to_install_what_is_missing(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    has_tf = all(find_spec(m) is not None for m in ("tensorflow", "tf_keras", "h5py"))
    cnn_line = next(line for line in out.splitlines() if line.startswith("cnn "))
    if has_tf:
        assert "unavailable" not in out
    elif CNN_RUNS:  # through JAX, without TensorFlow (the GPU machines)
        assert "unavailable" not in cnn_line
    else:
        assert "unavailable: needs tensorflow" in out and "pip install 'hhbench[cnn]'" in out


@pytest.mark.skipif(all(find_spec(m) for m in ("tensorflow", "tf_keras", "h5py")),
                    reason="TensorFlow is installed: this checks a core install")
@pytest.mark.parametrize("argv", [
    pytest.param(["model-info"], marks=pytest.mark.skipif(
        find_spec("h5py") is not None, reason="model-info reads the files with h5py here")),
    ["train", "--tiny"],
    pytest.param(["simulate", "--backend", "cnn"], marks=pytest.mark.skipif(
        CNN_RUNS, reason="the cnn runs here through JAX"))])
def test_without_tensorflow_the_cnn_commands_say_how_to_install_it(argv, capsys, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(argv, capsys)
    assert "needs tensorflow" in err and "pip install 'hhbench[cnn]'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(CNN_RUNS, reason="the cnn runs here (TensorFlow, or JAX): this checks "
                                     "a core install")
def test_without_tensorflow_run_skips_the_cnn_and_records_why(tmp_path, capsys):
    import json
    out = tmp_path / "r.json"
    assert main(["run", "--quick", "--no-progress", "--stimuli", "step",
                 "--backends", "numba,cnn", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: cnn skipped: needs tensorflow" in printed
    cases = {c["backend"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["numba"]["status"] == "ok"
    assert cases["cnn"]["status"] == "skipped"
    assert "pip install 'hhbench[cnn]'" in cases["cnn"]["error"]


def test_the_suite_checks_its_own_cases():
    from hhbench.suite import SuiteConfig, check_memory
    config = SuiteConfig(backends=("numba", "exp-euler"), stimuli=("step",), batches=(4, 8))
    one = 4 * 2560 * 8                      # bytes of a (4, 2560) float64 array
    references = one + 2 * one              # one per (stimulus, batch)
    assert check_memory(config) == references + 6 * (2 * one)


# -- refused before any work (one line, exit 2, nothing written) ----------------------------

@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no file can be created in: a read-only tmpfs where this user may mount one
    (root, as in CI), else a folder without write permission (other users)."""
    import os
    import subprocess
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root cannot mount a read-only file system here")
        folder.chmod(0o555)
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)
    else:
        folder.chmod(0o755)


@pytest.mark.parametrize("argv", [
    ["run", "--backends", "numpy", "--stimuli", "step", "--batch", "1", "-o", "{ro}/r.json"],
    ["run", "--backends", "numpy", "--stimuli", "step", "--batch", "1", "--csv", "{ro}/r.csv"],
    ["simulate", "--backend", "numpy", "--plot", "{ro}/v.png"],
    ["simulate", "--backend", "numpy", "-o", "{ro}/v.csv"],
    ["lab", "q6", "-o", "{ro}/lab"],
])
def test_an_output_that_cannot_be_written_is_refused_by_its_path(argv, read_only_folder,
                                                                 capsys):
    argv = [a.replace("{ro}", str(read_only_folder)) for a in argv]
    err = _one_line_exit_2(argv + (["--no-progress"] if argv[0] in ("run", "lab") else []),
                           capsys)
    assert str(read_only_folder) in err and ".tmp" not in err, err


@pytest.mark.parametrize("argv, words", [
    (["simulate", "--stimulus", "noise", "--seed", "-1"], "--seed: must be 0 or more"),
    (["run", "--backends", ""], "needs at least one backend"),
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["lab", "q7"], "unknown question 'q7'"),
    (["lab", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_values_are_refused_in_one_line(argv, words, capsys):
    assert words in _one_line_exit_2(argv, capsys)


@pytest.mark.parametrize("text, words", [
    ('{"seed": -1}', "seed must be a whole number >= 0, got -1"),
    ('{"backends": "numba"}', "backends must be a list"),
    ('{"foo": 1}', "unknown setting 'foo'; the settings are:"),
    ('{"timing": {"warmup": 1}}', "unknown timing setting 'warmup'"),
    ('{"timing": {"min_repeats": "x"}}', "timing: min_repeats must be a whole number, got 'x'"),
    ('{"timing": {"min_time_s": [1]}}', "timing: min_time_s must be a number of seconds"),
    ('{"options": {"numba": {"precision": "float32"}}}', "has no option 'precision'"),
])
def test_bad_config_settings_are_refused_before_any_work(text, words, tmp_path, capsys):
    config = tmp_path / "suite.json"
    config.write_text(text)
    out = tmp_path / "r.json"
    assert words in _one_line_exit_2(["run", "--config", str(config), "-o", str(out)], capsys)
    assert not out.exists()


def test_a_case_named_twice_runs_once_with_a_note(tmp_path, capsys):
    from hhbench.results import RunResults
    out = tmp_path / "r.json"
    assert main(["run", "--backends", "numpy,numpy", "--stimuli", "step", "--batch", "1,1",
                 "--processes", "1", "--repeats", "1", "--min-time", "0", "--no-progress",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: --backends names 'numpy' more than once" in err
    assert "note: --batch names 1 more than once" in err
    assert len(RunResults.load(out).cases) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"start_substeps": 0}, "substeps must be a positive integer, got 0"),
    ({"start_substeps": 2.5}, "substeps must be a positive integer, got 2.5"),
    ({"tol_mv": 0.0}, "reference tolerance must be > 0 mV"),
    ({"tol_mv": float("nan")}, "reference tolerance must be > 0 mV"),
    ({"start_substeps": 64, "max_substeps": 64}, "at least twice start_substeps"),
])
def test_the_converged_reference_refuses_settings_that_cannot_converge(kwargs, words):
    # start_substeps=0 used to return a flat -70 mV line called "converged"
    from hhbench.backends.reference import Reference
    with pytest.raises(HHBenchError, match=words.replace("(", r"\(")):
        Reference(**kwargs)


@pytest.mark.parametrize("name", ["odeint", "odeint-lab"])
@pytest.mark.parametrize("kwargs", [{"rtol": 0.0}, {"atol": -1e-8}, {"rtol": float("nan")},
                                    {"atol": "small"}])
def test_odeint_refuses_tolerances_that_are_no_tolerance(name, kwargs):
    from hhbench.backends import get_backend
    key = next(iter(kwargs))
    with pytest.raises(HHBenchError, match=f"odeint {key} must be a finite number > 0"):
        get_backend(name, **kwargs)


def test_a_missing_model_is_refused_before_any_worker_starts(tmp_path, capsys):
    out = tmp_path / "r.json"
    err = _one_line_exit_2(["run", "--backends", "cnn", "--model", str(tmp_path / "nope"),
                            "--no-progress", "-o", str(out)], capsys)
    assert str(tmp_path / "nope") in err and not out.exists()


def test_plot_into_a_read_only_folder_is_refused_by_its_path(read_only_folder, tmp_path,
                                                             capsys):
    from hhbench.results import RunResults
    results = tmp_path / "r.json"
    RunResults(settings={}, environment={}, calibration={}, cases=()).save(results)
    err = _one_line_exit_2(["plot", str(results), "-o", str(read_only_folder)], capsys)
    assert str(read_only_folder) in err


# -- found by a newcomer's walk through the commands (issue 31) --------------------------

def test_train_refuses_a_negative_seed_before_making_its_folder(tmp_path, capsys):
    out = tmp_path / "tr"
    err = _one_line_exit_2(["train", "--tiny", "--seed", "-1", "--out", str(out)], capsys)
    assert "--seed: must be 0 or more, got -1" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HHBenchError, match="seed must be a whole number >= 0, got -1"):
        from hhbench.cnn.training import TrainConfig
        TrainConfig.tiny(seed=-1)


def test_train_defaults_to_a_new_folder_not_the_shipped_models(monkeypatch):
    """Run from a checkout's root, `hhbench train` with no --out must not write into the
    shipped model's folder (where --resume would train it in place)."""
    from pathlib import Path

    from hhbench.cli import build_parser
    from hhbench.model_location import checkout_model_path, packaged_model_path
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    out = Path(build_parser().parse_args(["train"]).out).resolve()
    for shipped in filter(None, (checkout_model_path(), packaged_model_path())):
        shipped = shipped.resolve()
        assert out != shipped and shipped not in out.parents and out not in shipped.parents


def _damaged_model(tmp_path):
    """A copy of the shipped model whose Gmodel.h5 is cut in half (an interrupted copy)."""
    import shutil

    from hhbench.model_location import locate_model
    shipped = locate_model().path
    bad = tmp_path / "bad-model"
    bad.mkdir()
    for name in ("Gmodel.json", "Gmodel.h5", "hhbench_model.json"):
        if (shipped / name).exists():
            shutil.copy(shipped / name, bad / name)
    weights = bad / "Gmodel.h5"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.truncate(size // 2)
    return bad, size


@pytest.mark.skipif(find_spec("h5py") is None, reason="no h5py: no CNN can run here")
@pytest.mark.parametrize("argv", [
    ["simulate", "--backend", "cnn", "--device", "cpu", "-o", "{out}/v.csv"],
    ["model-info"],
    ["lab", "q3", "--no-progress", "-o", "{out}/lab"],
    ["scaling", "--backends", "cnn", "--device", "cpu", "--no-progress", "-o", "{out}/s"],
    ["run", "--backends", "cnn", "--stimuli", "step", "--device", "cpu", "--no-progress",
     "-o", "{out}/r.json"],
    ["floor", "--backends", "cnn", "--device", "cpu", "--json", "{out}/f.json"],
])
def test_a_damaged_model_is_refused_before_any_work_with_its_cause(argv, tmp_path, capsys):
    """Gmodel.h5 cut in half: every command that loads the model refuses it in one line
    naming the file and saying it is truncated (not "weights do not match"), exit 2,
    before any work, and nothing is written."""
    bad, size = _damaged_model(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.replace("{out}", str(out)) for a in argv] + ["--model", str(bad)]
    err = _one_line_exit_2(argv, capsys)
    assert err.strip() == (f"hhbench: error: {bad / 'Gmodel.h5'}: damaged HDF5 weights file "
                           f"(truncated: {size // 2:,} of {size:,} bytes)"), err
    assert list(out.iterdir()) == []


def test_simulate_notes_an_onset_after_the_end_of_the_trace(capsys):
    assert main(["simulate", "--backend", "numpy", "--samples", "200",
                 "--onset-ms", "1e9"]) == 0
    printed = capsys.readouterr().out
    assert "0 spikes" in printed
    assert ("note: the onset (1e+09 ms) comes after the end of the trace (last sample at "
            "9.95 ms): the current never starts") in printed
    assert main(["simulate", "--backend", "numpy", "--samples", "200",
                 "--onset-ms", "9.95"]) == 0  # the last sample: it starts there
    assert "note:" not in capsys.readouterr().out


def test_lab_into_a_read_only_file_system_says_why(read_only_folder, capsys):
    import os
    err = _one_line_exit_2(["lab", "q1", "--no-progress", "-o",
                            str(read_only_folder / "lab")], capsys)
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert err.strip() == (f"hhbench: error: cannot write the lab report into "
                           f"{read_only_folder / 'lab'}: {reason}"), err


def test_run_without_an_output_file_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--backends", "numpy", "--stimuli", "step", "--batch", "1",
                 "--processes", "1", "--repeats", "1", "--min-time", "0",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "note: no file written; -o FILE.json keeps every sample" in printed
    assert list(tmp_path.iterdir()) == []

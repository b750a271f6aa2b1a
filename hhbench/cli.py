"""The `hhbench` command: a thin dispatch from arguments to library functions.

Every subcommand validates its paths before working, lets the library do the work, and
turns an `HHBenchError` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from hhbench.compare import plural
from hhbench.errors import DivergenceWarning, HHBenchError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise HHBenchError(message)


def _out_path(value: str | None) -> Path | None:
    """An output path, checked before any work is done (its folder exists, it is no folder)."""
    from hhbench.atomic import check_output_path
    return None if value is None else check_output_path(value)


def _csv_list(text: str, cast=str) -> tuple:
    try:
        return tuple(cast(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise HHBenchError(f"not a comma-separated list of numbers: {text!r}") from None


def _unique(option: str, values: tuple) -> tuple:
    """`values` with repeats dropped, saying so on stderr (a case named twice runs once)."""
    unique = tuple(dict.fromkeys(values))
    if len(unique) < len(values):
        twice = next(v for v in unique if values.count(v) > 1)
        print(f"note: {option} names {twice!r} more than once; each case runs once",
              file=sys.stderr)
    return unique


def _backend_options(items: list[str] | None, *, single: str | None = None) -> dict:
    """`--option` values, BACKEND.KEY=VALUE (with `single`, a one-backend command, also
    KEY=VALUE), as {backend: {key: value}}; a VALUE that reads as JSON (a number, true,
    null) is that, else a string."""
    import json
    options: dict = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        name, dot, option = key.strip().rpartition(".")
        if not sep or not option or not (dot or single):
            raise HHBenchError(f"--option {item!r}: write BACKEND.KEY=VALUE, e.g. "
                               "cnn.precision=tf32")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options.setdefault(name or single, {})[option] = value
    return options


# -- subcommands ---------------------------------------------------------------------------

def cmd_backends(args) -> int:
    from hhbench.backends import backend_classes, plugin_errors
    for line in plugin_errors().values():
        print(f"hhbench: warning: {line}", file=sys.stderr)
    for name, cls in backend_classes().items():
        reason = cls.unavailable_reason()
        options = [k for k in cls.option_defaults if k != "device"]
        can = f" ({', '.join(cls.device_kinds)}" + (f"; options {', '.join(options)})"
                                                     if options else ")")
        print(f"{name:10s} {cls.summary}{can}" + (f" [unavailable: {reason}]" if reason else ""))
    return 0


def cmd_simulate(args) -> int:
    from hhbench import stimuli
    from hhbench.backends import check_name
    from hhbench.memory import case_bytes, check_fits
    from hhbench.suite import make_backend
    from hhbench.metrics import spike_count
    from hhbench.results import write_trace_csv

    csv_path = _out_path(args.output)
    if args.plot:
        from hhbench.plot import check_plot_path
        check_plot_path(args.plot)
    check_fits(case_bytes(1, args.samples), f"a trace of {args.samples} samples")
    # what is not given takes the lab's defaults (stimuli.step, sine, white_noise)
    params = {"n_samples": args.samples, "fs_khz": args.fs_khz, "onset_ms": args.onset_ms}
    if args.stimulus in ("step", "sine"):
        params["amplitude_ua"] = args.amplitude
    if args.stimulus == "sine":
        params["freq_khz"] = args.freq_khz
    if args.stimulus == "noise":
        params.update(sigma_ua=args.sigma, seed=args.seed)
    stim = stimuli.make(args.stimulus, **{k: v for k, v in params.items() if v is not None})
    options = _backend_options(args.option, single=args.backend)
    others = sorted(set(options) - {args.backend})
    if others:
        raise HHBenchError(f"--option for {others[0]!r}, but the backend is {args.backend!r}")
    if args.model and "model" not in check_name(args.backend).option_defaults:
        raise HHBenchError(f"--model: backend {args.backend!r} takes no model")
    _check_model(args.model, [args.backend])
    backend = make_backend(args.backend, device=args.device,
                           options=options.get(args.backend), model=args.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DivergenceWarning)
        result = backend.run(stim)
    state = "DIVERGED: the integrator overflowed" if result.any_diverged else \
        plural(int(spike_count(result.v_batch)[0]), "spike")
    from hhbench.provenance import runtime_word
    runtime = runtime_word(args.backend, backend.settings(), options.get(args.backend))
    # what was found first: a full disk must not cost it
    print(f"{args.backend} ({runtime}) on {result.device}: {describe_in_words(stim)}\n"
          f"{state} (output {result.t_ms[0]:.2f}-{result.t_ms[-1]:.2f} ms)", flush=True)
    late = _onset_note(stim)
    if late:
        print(late)
    from hhbench.atomic import write_files
    written = write_files(*([(csv_path, lambda p: write_trace_csv(result, p))]
                            if csv_path else []),
                          *([(Path(args.plot), lambda p: _plot_trace(result, p))]
                            if args.plot else []))
    for path in written:
        print(f"wrote {path}" + (" (columns t_ms, current, v_mV)" if path == csv_path else ""))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


def _plot_trace(result, path) -> None:
    from hhbench.plot import plot_trace
    plot_trace(result, path)


def _onset_note(stim) -> str | None:
    """A note when the stimulus' onset lies at or after the end of the trace: the current
    never starts, and 0 spikes says nothing about it."""
    onset = stim.params.get("onset_ms")
    if not isinstance(onset, (int, float)) or onset <= float(stim.t_ms[-1]):
        return None
    return (f"note: the onset ({_num(onset)} ms) comes after the end of the trace (last "
            f"sample at {float(stim.t_ms[-1]):.2f} ms): the current never starts")


def _num(value) -> str:
    """A stimulus setting as a person writes it: 20, 17.8, 0.05; a batch's values joined."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_num(v) for v in value)
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def describe_in_words(stim) -> str:
    """The stimulus in words, e.g. 'step of 20 µA/cm² from 17.8 ms, 2560 samples at 20 kHz
    (128 ms)' (`Stimulus.describe()` gives the same settings as a dict, for files)."""
    p = stim.params
    onset = f"from {_num(p['onset_ms'])} ms" if "onset_ms" in p else ""
    if stim.kind == "step":
        what = f"step of {_num(p.get('amplitude_ua'))} µA/cm²"
    elif stim.kind == "sine":
        what = f"sine of {_num(p.get('amplitude_ua'))} µA/cm² at {_num(p.get('freq_khz'))} kHz"
    elif stim.kind == "noise":
        what = f"white noise of σ = {_num(p.get('sigma_ua'))} µA/cm²"
        onset += f", seed {p['seed']}" if p.get("seed") is not None else ""
    else:  # a stimulus made some other way: its kind and settings as they are
        what = stim.kind + "".join(f", {k} {_num(v)}" for k, v in p.items())
        onset = ""
    rows = f", {plural(stim.batch_size, 'trace')}" if stim.batch_size > 1 else ""
    return (f"{what} {onset}".strip() + f", {stim.n_samples} samples at {_num(stim.fs_khz)} kHz "
            f"({_num(stim.duration_ms)} ms){rows}")


def _require_tensorflow(command: str) -> None:
    """One line instead of an ImportError when TensorFlow (the [cnn] extra) is missing: these
    commands train with tf_keras (the cnn backend's JAX runtime runs a model; it does not
    train one)."""
    from hhbench.cnn_modes import STACKS, module_found
    missing = [m for m in STACKS["tensorflow"] if not module_found(m)]
    if missing:
        raise HHBenchError(f"{command} needs {', '.join(missing)} (it trains with TensorFlow's "
                           "Keras 2); install with: pip install 'hhbench[cnn]'")


def _require_cnn_runtime(command: str) -> None:
    """One line when neither CNN runtime is installed (TensorFlow, or JAX and h5py)."""
    from hhbench.cnn_modes import stacks_present
    if not any(stacks_present().values()):
        raise HHBenchError(f"{command} runs the CNN, through TensorFlow or JAX, and neither is "
                           "installed; install with: pip install 'hhbench[cnn]' or "
                           "'hhbench[jax]'")


def _check_model(model: str | None, backends) -> None:
    """The model the backends that take one would load, whole (`check_model`), before any
    work: a damaged file is refused with its cause."""
    from hhbench.backends import check_name
    from hhbench.model_location import check_model_path, locate_model
    if model is not None:
        check_model_path(model)
    elif any("model" in check_name(b).option_defaults for b in backends):
        try:
            path = locate_model().path
        except HHBenchError:  # no default model here: the backend says so in its place
            return
        check_model_path(path)


def cmd_model_info(args) -> int:
    from hhbench.model_location import check_model
    check_model(args.model)
    from hhbench.cnn_modes import module_found, stacks_present
    if stacks_present()["tensorflow"]:
        from hhbench.cnn.runner import CnnRunner
        runner = CnnRunner(args.model, device=args.device)
        info, nested = runner.describe(), nesting_lines(runner.model)
    elif module_found("h5py"):  # a lab folder read without a framework
        from hhbench.cnn.description import describe
        from hhbench.cnn.h5weights import read_lab_folder
        from hhbench.devices import parse_device
        from hhbench.model_location import locate_model
        parse_device(args.device)
        location = locate_model(args.model)
        model = read_lab_folder(location.path)
        info = describe(model, origin=location.origin, input_scale=model.meta.input_scale,
                        output_scale=model.meta.output_scale, device=args.device,
                        graph="none (read with h5py)")
        nested = info["nesting"]
    else:
        raise HHBenchError("model-info needs tensorflow, tf_keras and h5py, or h5py alone, to "
                           "read the model; install with: pip install 'hhbench[cnn]' or "
                           "'hhbench[jax]'")
    rf = info["receptive_field"]
    print(f"model        {info['source']} ({info['format']})\n"
          f"from         {info['origin']}\n"
          f"parameters   {info['parameters']:,}\n"
          f"input        {tuple(info['input_shape'])}\noutput       {tuple(info['output_shape'])}\n"
          f"context      {info['context']} samples each side ({info['context'] / info['fs_khz']} ms)\n"
          f"scaling      input x{info['input_scale']:g}, output / {info['output_scale']:g}\n"
          f"receptive    {rf['samples']} samples = {rf['ms']:.2f} ms "
          f"({rf['encoder_layers']} encoder layers)")
    for line in nested:
        print(line)
    print("layers:")
    for line in info["layers"]:
        print(f"  {line}")
    return 0


def nesting_lines(model) -> list[str]:
    """One line per Keras model used as a layer of another: the lab's files hold a functional
    model (e.g. `model_3`) that wraps the network (`model_2`), so the leaf layers listed by
    `model-info` include the input layer of each."""
    def inputs(m):
        return ", ".join(layer.name for layer in m.layers
                         if type(layer).__name__ == "InputLayer") or "none"
    lines = []
    for layer in model.layers:
        if getattr(layer, "layers", None):
            lines.append(f"nested       {model.name} wraps the network {layer.name} as one "
                         f"layer, so both input layers are listed: {inputs(model)} "
                         f"({model.name}'s) and {inputs(layer)} ({layer.name}'s)")
            lines += nesting_lines(layer)
    return lines


def cmd_train(args) -> int:
    _require_tensorflow("train")
    from hhbench.cnn.training import TrainConfig, train
    settings = _given(args, "epochs", "n_samples", "input_scale", "output_scale", "lr_schedule")
    if args.tiny:
        config = TrainConfig.tiny(seed=args.seed, **settings)
    else:
        config = TrainConfig(seed=args.seed, **settings, **_given(args, "batch_size"))
    if args.early_fraction is not None and not args.resume:
        config = replace(config, data=replace(config.data, early_fraction=args.early_fraction))
    # --epochs sizes a new run, or (with --resume) extends one; the rest only resume
    phase = dict(learning_rate=args.learning_rate,
                 early_fraction=args.early_fraction if args.resume else None,
                 epochs=args.epochs if args.resume else None)
    state = train(config, args.out, resume=args.resume, device=args.device,
                  max_minutes=args.max_minutes, progress=not args.no_progress,
                  finish=args.finish, **phase).state
    best = state["best_val_loss"]
    print(f"{args.out}: {state['epoch']} epochs, best validation loss "
          f"{best if best is None else round(best, 5)} at epoch {state['best_epoch']}; "
          + ("finished (" + str(state["stop_reason"]) + "), model card written" if state["finished"]
             else "not finished: continue with --resume"))
    return 0


def _given(args, *names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def cmd_run(args) -> int:
    from hhbench.suite import SuiteConfig, run_suite

    out, csv = _out_path(args.output), _out_path(args.csv)
    overrides = {}
    # an option given empty ('--backends ""') is refused by the suite, not taken as "all"
    if args.backends is not None:
        overrides["backends"] = _unique("--backends", _csv_list(args.backends))
    if args.stimuli is not None:
        overrides["stimuli"] = _unique("--stimuli", _csv_list(args.stimuli))
    if args.batch is not None:
        overrides["batches"] = _unique("--batch", _csv_list(args.batch, int))
    if args.device is not None:
        overrides["devices"] = _unique("--device", _csv_list(args.device))
    if args.option:
        overrides["options"] = _backend_options(args.option)
    for name in ("reference", "model"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.processes is not None:
        overrides["processes"] = args.processes
    if args.case_timeout is not None:
        overrides["case_timeout_s"] = args.case_timeout
    if args.config:
        config = SuiteConfig.from_file(args.config, **overrides)
    else:
        config = (SuiteConfig.quick if args.quick else SuiteConfig)(**overrides)
    timing = {}
    if args.repeats is not None:
        timing.update(min_repeats=args.repeats,
                      max_repeats=max(config.timing.max_repeats, args.repeats))
    if args.min_time is not None:
        timing["min_time_s"] = args.min_time
    if timing:
        config = replace(config, timing=replace(config.timing, **timing))
    store = None
    if args.store is not None:  # checked (reachable, its schema) before the work starts
        from hhbench.history.cli import open_store_for_run
        store = open_store_for_run(args.store)
    from hhbench.provenance import checkout_note
    if (note := checkout_note()):  # said before the work, and again with the results
        print(note, file=sys.stderr)
    results = run_suite(config, progress=not args.no_progress,
                        reference_cache=not args.no_reference_cache)
    csv = csv or (out.with_suffix(".csv") if out else None)
    # the table first: a full disk must not cost what the run found
    print(format_table(results), flush=True)
    for line in failure_lines(results) + skip_notes(results):
        print(line)
    if note:
        print(note)
    from hhbench.atomic import write_files
    written = write_files(*([(out, results.save)] if out else []),  # the JSON first
                          *([(csv, results.save_table)] if csv else []))
    if written:
        print(f"wrote {' and '.join(map(str, written))}")
    else:
        print("note: no file written; -o FILE.json keeps every sample, setting and the "
              "machine's description (and the table as CSV beside it)")
    if store is not None:
        from hhbench.history.cli import record_run
        with store:
            print(record_run(store, results, str(out) if out else None))
    from hhbench.check import report
    _, warned = report(results.environment.get("state", {}), results, detail=False)
    for line in warned:
        print(f"warning: {line}", file=sys.stderr)
    failed = [c for c in results.cases if c.status == "failed"]
    if failed:
        print(f"hhbench: {len(failed)} of {plural(len(results.cases), 'case')} "
              f"{'has' if len(failed) == 1 else 'have'} failed (reasons below the table)",
              file=sys.stderr)
        return 1
    return 0


def skip_notes(results) -> list[str]:
    """One note per backend whose cases were skipped, with the reason stored in the results."""
    reasons = {c.backend: c.error for c in results.cases if c.status == "skipped"}
    notes = [f"note: {name} skipped: {why}" for name, why in reasons.items()]
    left_out = results.settings.get("left_out") or {}
    if left_out:
        notes.append("note: the default suite is every installed backend that can run on the "
                     "requested devices; left out: " + "; ".join(
                         f"{name} ({why})" for name, why in left_out.items()))
    return notes


def failure_lines(results) -> list[str]:
    """Each failed case's reason in full, for below the table."""
    return [f"failed {c.backend} {c.stimulus} x{c.batch} on {c.device}: {c.error}"
            for c in results.cases if c.status == "failed"]


def _cell(value) -> str:
    """A table cell: '-' for a value that does not exist, 3 significant digits."""
    import math
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_table(results) -> str:
    """The run's table as text: times in ms, accuracy against the stated reference."""
    import pandas as pd
    from hhbench.environment import one_line

    from hhbench.compare import case_options
    from hhbench.provenance import runtime_word

    df = results.table()
    df["runtime"] = [runtime_word(c.backend, c.settings, case_options(results, c.backend))
                     or "-" for c in results.cases]
    cols = ["backend", "stimulus", "batch", "device", "runtime", "cold_ms", "warm_median_ms", "warm_iqr_ms",
            "spread_pct", "per_trace_ms", "traces_per_s", "device_only_ms", "rmse_mv",
            "spike_count_error", "gamma", "status"]
    if "device_only_ms" in df and df["device_only_ms"].isna().all():
        df = df.drop(columns="device_only_ms")  # no GPU case: a column of dashes
    df = df[[c for c in cols if c in df.columns]].astype(object)
    df = df.map(_cell) if hasattr(df, "map") else df.applymap(_cell)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        text = df.to_string(index=False)
    ref = results.settings.get("reference")
    n = results.settings.get("processes", 1)
    return (f"{one_line(results.environment)}\naccuracy against the {ref} reference; "
            f"times in ms, each case timed in {plural(n, 'fresh process', 'fresh processes')} "
            f"(cold = set-up + first call; runtime = what the calls ran through; "
            f"warm = median over processes of each one's median; spread_pct = variation "
            f"between processes)\n{text}")


def cmd_compare(args) -> int:
    from hhbench.compare import (Tolerances, compare, format_comparison, format_json,
                                 format_markdown, parse_threshold)
    from hhbench.results import RunResults
    tol = Tolerances(threshold=parse_threshold(args.threshold), alpha=args.alpha,
                     strict=args.strict, allow_busy=args.allow_busy)  # before any loading
    old, new = RunResults.load(args.old), RunResults.load(args.new)
    report = compare(old, new, tol)
    render = {"markdown": format_markdown, "json": format_json}.get(args.format,
                                                                     format_comparison)
    print(render(report))
    return report.status


def cmd_check(args) -> int:
    from hhbench.check import report
    from hhbench.environment import machine_state
    from hhbench.results import RunResults

    results = RunResults.load(args.results) if args.results else None
    state = machine_state() if results is None else results.environment.get("state")
    if state is None:
        raise HHBenchError(f"{args.results}: this results file has no machine state "
                           "(written before hhbench recorded it)")
    lines, warned = report(state, results)
    print(("this machine now:" if results is None else f"{args.results} at its start:"))
    for line in lines:
        print(f"  {line}")
    for line in warned:
        print(f"warning: {line}")
    if not warned:
        print("no warnings: the machine looks stable" + ("" if results is None else
                                                         " and the processes agree"))
    return 1 if warned else 0


def cmd_plot(args) -> int:
    from hhbench.atomic import check_output_folder
    from hhbench.plot import plot_results
    from hhbench.results import RunResults
    check_output_folder(args.output)  # before reading and drawing
    results = RunResults.load(args.results)
    for path in plot_results(results, args.output):
        print(f"wrote {path}")
    return 0


def cmd_lab(args) -> int:
    # questions, device and folder refused before the simulation stack and TensorFlow load
    from hhbench.devices import parse_device
    from hhbench.lab import check_questions
    check_questions(args.questions)
    parse_device(args.device)
    from hhbench.lab.report import check_out_dir
    check_out_dir(args.output)
    from hhbench.model_location import check_model
    check_model(args.model)
    from hhbench.lab import NO_CNN
    if any(q not in NO_CNN for q in check_questions(args.questions)):
        _require_cnn_runtime("lab " + " ".join(args.questions or ["all"]))
    from hhbench.lab import run_lab
    results = run_lab(args.questions, model=args.model, device=args.device,
                      out_dir=args.output, progress=not args.no_progress)
    main_file = "report.md" if len(results) == 6 else ", ".join(f"{k}.md" for k in results)
    print(f"wrote {args.output}: {main_file} with its figures")
    from hhbench.failures import NotRun
    not_answered = {k: r for k, r in results.items() if isinstance(r, NotRun)}
    for key, why in not_answered.items():  # said, after the others were written
        print(f"hhbench lab: {key} not answered ({why.status}): {why.reason}", file=sys.stderr)
    return 1 if not_answered else 0


def cmd_floor(args) -> int:
    import json

    from hhbench.floor import floor_report, format_floor
    from hhbench.timing import TimingSettings

    out = _out_path(args.json)
    backends = _csv_list(args.backends) if args.backends else ("numpy", "numba", "exp-euler",
                                                                "cnn")
    _check_model(args.model, backends)
    settings = TimingSettings(min_repeats=args.repeats, min_time_s=args.min_time)
    report = floor_report(backends, batch=args.batch, device=args.device, model=args.model,
                          settings=settings, options=_backend_options(args.option))
    print(format_floor(report), flush=True)
    if out:
        from hhbench.atomic import atomic_write, write_files
        write_files((out, lambda p: atomic_write(p, json.dumps(report, indent=1))))
        print(f"wrote {out}")
    return 0


def cmd_scaling(args) -> int:
    from hhbench.scaling import ScalingConfig, run_scaling, write_scaling

    options = {"max_batch": args.max_batch, "budget_s": args.budget_s,
               "devices": _csv_list(args.device), "model": args.model,
               "n_samples": args.samples, "options": _backend_options(args.option)}
    if args.backends:
        options["backends"] = _csv_list(args.backends)
    if args.lengths:
        options["lengths"] = _csv_list(args.lengths, int)
    config = ScalingConfig(**options)
    _check_model(args.model, config.backends)
    from hhbench.atomic import check_output_folder
    check_output_folder(args.output)  # before the work, without creating it
    results = run_scaling(config, progress=not args.no_progress)
    print(results.to_markdown(), flush=True)
    for path in write_scaling(results, args.output):
        print(f"wrote {path}")
    for line in results.warnings():
        print(f"warning: {line}", file=sys.stderr)
    return 0


# -- the parser ----------------------------------------------------------------------------

def _int_option(text: str, minimum: int, rule: str) -> int:
    """argparse type body: a whole number >= `minimum`, else "must be <rule>" in the
    option's own words."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (a seed)."""
    return _int_option(text, 0, "0 or more")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1, refused in the option's own words."""
    return _int_option(text, 1, "at least 1")


def _float_option(text: str, ok, rule: str) -> float:
    """argparse type body: a number for which `ok(value)` holds (NaN never does), else
    "must be <rule>" in the option's own words."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    return _float_option(text, lambda v: v >= 0, "0 or more")


def _positive_float(text: str) -> float:
    return _float_option(text, lambda v: v > 0, "more than 0")


_FMT = argparse.RawDescriptionHelpFormatter


def _wrap(text: str) -> str:
    """A long description as lines of at most 88 characters (the raw formatter keeps lines)."""
    import textwrap
    return textwrap.fill(text, 88)

RUN_WORDS = """\
what `hhbench run` prints: a line describing the machine, a line saying the reference and
the number of processes, then one row per case (backend x stimulus x batch x device), then
a note per skipped backend (and, for the default suite, one note naming the installed
backends that cannot run on the requested devices), "wrote FILE" per file written, and warnings (e.g. a busy
machine, or processes that disagree too much for `compare`) on stderr.

columns (times in ms; every case is timed in --processes fresh processes):
  backend, stimulus, batch, device
                     the case: simulator, current waveform, traces per call, and where
                     it ran (as the backend names it, e.g. cpu or CPU:0)
  runtime            what the calls ran through: numpy, numba, scipy, jax, cuda,
                     tensorflow, tflite
  cold_ms            set-up (model loading, compilation or cache load) + first call,
                     the median over processes
  warm_median_ms     the median over processes of each process' median warm call:
                     the process, not the sample, is the unit
  warm_iqr_ms        interquartile range (75th - 25th percentile) of the warm calls of all
                     processes together: how much single calls vary
  spread_pct         how much the processes disagree: coefficient of variation (standard
                     deviation / mean) of the per-process medians, in %; when it is too
                     large for `compare` to tell a 10 % change, `run` and `check` warn
  per_trace_ms       warm_median_ms / batch
  traces_per_s       batch / warm median, in traces per second
  device_only_ms     GPU cases only: one more timing with the data already on the device
                     (no copies); the column is left out when no case ran on a GPU
  rmse_mv            median over the case's traces of the RMS difference from the
                     reference, mV
  spike_count_error  mean over traces of |spikes - reference spikes|
  gamma              coincidence factor, median over traces: 1 = every spike matched within
                     2 ms, 0 = no better than chance
  status             see below
  -                  no figure: the case diverged, failed or was skipped (or no GPU ran)

status of each case (the table's last column, and "status" in the JSON):
  ok        ran; timing and accuracy are in the row
  diverged  ran, but the integrator overflowed on at least one trace (forward Euler on
            a strong current); timed, and those traces have no accuracy figures
  failed    the backend raised an error; its reason is printed in full below the table
            and kept in the results ("error"); the exit status is then 1
  skipped   the backend cannot run here (e.g. cnn without TensorFlow, or a GPU-only
            backend without a GPU); the reason is in the results ("error") and printed
            as a note below the table"""

COMPARE_WORDS = """\
Cases pair on backend, stimulus, batch, device and options: a CPU case never meets a GPU
case ("not paired"). Speed verdict per case, from NEW/OLD = ratio of the geometric means
of the per-process medians and its (1 - alpha) Welch interval:
  slower        ratio beyond 1 + threshold, the interval above 1
  slower?       slower with the whole interval beyond 1 + threshold, but discounted: a
                run was busy (other work measured while it ran, steal time, an unstable
                calibration kernel) or the cases' settings differ (runtime, precision,
                threads, timing)
  faster        ratio below 1/(1 + threshold), the interval below 1
  same          the interval inside [1/(1 + threshold), 1 + threshold]
  inconclusive  too few processes, an interval too wide or straddling the threshold, or
                a verdict OLD's load could hide; the line under the table says why
accuracy verdict: "same", or "WORSE (rmse, gamma, spike count)" when one grew beyond its
tolerance, or "WORSE (diverged/failed)" when an ok case no longer runs.
exit status (the last line names it and why):
  0  no regression shown (undecided cases are named in the last line)
  1  regression: a case slower, WORSE accuracy, or a case of OLD missing in NEW
  2  bad input
  3  suspected regression: a case slower? (with --strict also an inconclusive or unpaired
     case)"""


def build_parser() -> argparse.ArgumentParser:
    from hhbench import __version__

    p = _Parser(prog="hhbench", formatter_class=_FMT,
                description="Benchmark Hodgkin-Huxley simulators and CNN surrogates: latency "
                            "and accuracy together.",
                epilog="Bad input gets one line on stderr and exit status 2. "
                       "`hhbench COMMAND --help` explains each command.")
    p.add_argument("--version", action="version", version=f"hhbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser,
                           metavar="COMMAND")

    s = sub.add_parser("backends", help="list the simulators", formatter_class=_FMT,
                       description="List the simulators, one line each: name, what it "
                                   "computes, and in parentheses the kinds of device it runs "
                                   "on (cpu, gpu) and the options it takes (--option). A "
                                   "backend that cannot run here is followed by "
                                   "'unavailable:' with what is missing and the one command "
                                   "that installs it.")
    s.set_defaults(func=cmd_backends)

    s = sub.add_parser("simulate", help="simulate one stimulus with one backend",
                       formatter_class=_FMT,
                       description=_wrap("Simulate one stimulus with one backend. Prints the "
                                   "backend and the device it ran on, the stimulus in words "
                                   "(waveform, amplitude in µA/cm², onset, samples and sampling "
                                   "rate), then the number of spikes (peaks of V above 0 mV) "
                                   "or DIVERGED when the integrator overflowed (forward Euler "
                                   "on a strong current; V is then NaN from that point), with "
                                   "the time span of the output (the cnn's output window is "
                                   "shorter than the stimulus), and one 'wrote FILE' line for "
                                   "each file written (-o, --plot)."),
                       epilog="Stimulus settings not given take the lab's defaults.")
    s.add_argument("--backend", default="numba",
                   help="a name from `hhbench backends` (default: numba)")
    s.add_argument("--stimulus", choices=("step", "sine", "noise"), default="step",
                   help="current waveform (default: step)")
    s.add_argument("--amplitude", type=float,
                   help="step height or sine amplitude in µA/cm² (default: step 20, sine 80)")
    s.add_argument("--onset-ms", type=float,
                   help="time the current starts, ms (default: step 17.8, sine and noise 18.7)")
    s.add_argument("--freq-khz", type=float, help="sine frequency in kHz (default: 0.05)")
    s.add_argument("--sigma", type=float, help="noise standard deviation in µA/cm² (default: 20)")
    s.add_argument("--seed", type=_nonnegative_int, default=0, help="noise seed (default: 0)")
    s.add_argument("--samples", type=_positive_int, default=2560,
                   help="trace length in samples (default: 2560 = 128 ms)")
    s.add_argument("--fs-khz", type=float, default=20.0,
                   help="sampling rate in kHz (default: 20, the CNN's rate)")
    s.add_argument("--model", help="cnn only: a model folder (Gmodel.json + Gmodel.h5) or "
                                    ".keras file (default: $HHBENCH_MODEL, else the shipped model)")
    s.add_argument("--device", default="auto",
                   help="cpu, gpu, gpu:N, gpu:all or auto (default: auto = a GPU if the backend "
                        "runs on one and one is here)")
    s.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a backend option, e.g. precision=float32 (repeatable; `hhbench "
                        "backends` lists each backend's options)")
    s.add_argument("-o", "--output", help="write the trace as CSV with columns t_ms,current,v_mV "
                                          "(for the cnn: its output window)")
    s.add_argument("--plot", help="write a PNG of current and voltage")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("model-info", help="describe a CNN model", formatter_class=_FMT,
                       description=_wrap("Describe a CNN model: where it came from (--model, "
                                   "HHBENCH_MODEL, package data = the model installed with "
                                   "hhbench, or repository checkout), parameters, input and "
                                   "output shapes, context (input samples each side that the "
                                   "output window leaves out), scaling (network input = I x "
                                   "input scale; V = network output / output scale), receptive "
                                   "field (input samples one output sample depends on), and "
                                   "every leaf layer with its output shape and parameters. A "
                                   "'nested' line says when one model wraps another (the lab's "
                                   "files: a functional model around the network), which is "
                                   "why two input layers are listed."))
    s.add_argument("--model", help="a model folder or .keras file (default: $HHBENCH_MODEL, "
                                    "else the shipped model)")
    s.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N or auto (default: cpu)")
    s.set_defaults(func=cmd_model_info)

    s = sub.add_parser("train", help="train the CNN on HH step responses", formatter_class=_FMT,
                       description="Train the lab's CNN on forward-Euler responses to steps, "
                                   "with a progress bar. The folder receives the model "
                                   "(Gmodel.json + Gmodel.h5: the best weights so far), "
                                   "train_state.json and checkpoint/ after every epoch; the "
                                   "model card when training is finished.")
    s.add_argument("--out", default="hhbench-model",
                   help="output folder, created (default: hhbench-model in the current "
                        "folder; never the shipped model's)")
    s.add_argument("--epochs", type=_positive_int,
                   help="epochs of a new run; with --resume: the run's new total")
    s.add_argument("--samples", dest="n_samples", type=_positive_int,
                   help="training + validation traces")
    s.add_argument("--batch-size", type=_positive_int, help="traces per optimisation step")
    s.add_argument("--seed", type=_nonnegative_int, default=1,
                   help="seed of data and weights, 0 or more (default: 1)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run stored in --out (its settings are kept)")
    s.add_argument("--learning-rate", type=_positive_float,
                   help="with --resume: a new phase's rate")
    s.add_argument("--early-fraction", type=_nonnegative_float,
                   help="share of training onsets early in the window (default 0.5; with "
                        "--resume: a new phase's share)")
    s.add_argument("--input-scale", type=_positive_float,
                   help="network input = I [µA/cm²] x this (lab: 0.001); stored with the model")
    s.add_argument("--output-scale", type=_positive_float,
                   help="network output = V [mV] x this (lab: 0.01); stored with the model")
    s.add_argument("--lr-schedule", choices=("plateau", "cosine"),
                   help="halve the rate on plateaus (default) or cosine decay over --epochs")
    s.add_argument("--device", default="auto", help="cpu, gpu, gpu:N or auto (default: auto)")
    s.add_argument("--max-minutes", type=_positive_float,
                   help="end this sitting after the epoch that passes this many minutes")
    s.add_argument("--finish", action="store_true",
                   help="with --resume: end the run where it stands and write the model card")
    s.add_argument("--tiny", action="store_true", help="a tiny model for tests (seconds)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("run", help="run the benchmark suite", formatter_class=_FMT,
                       description=_wrap("Run every backend x stimulus x batch x device, each case in "
                                         "several fresh processes: set-up, first call (cold), "
                                         "warm-up, timed calls; then accuracy against the "
                                         "reference. Prints a table (below: what each column "
                                         "means); writes every sample, setting and the "
                                         "machine's description (-o JSON, and CSV)."),
                       epilog=RUN_WORDS)
    s.add_argument("-o", "--output", help="results JSON (and a CSV table beside it unless --csv)")
    s.add_argument("--csv", help="the table as CSV")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="CI size: batch 1, 3 repeats per process, no warm-up")
    size.add_argument("--config", help="suite settings from a JSON or TOML file")
    s.add_argument("--backends", help="comma-separated names (default: every backend of `hhbench backends` "
                        "that can run here on the requested devices; the others are named in "
                        "one note, as are the cases a slow baseline skips unless named: "
                        "odeint-lab runs on the step at batch 1, reference at batch 1)")
    s.add_argument("--stimuli", help="comma-separated: step,sine,noise (default: all)")
    s.add_argument("--batch", help="comma-separated batch sizes, e.g. 1,8,64 (default: 1,16)")
    s.add_argument("--device", help="devices, comma-separated: cpu,gpu,gpu:N,gpu:all,auto "
                                    "(default: auto); every backend runs on each device it "
                                    "can, the rest are skipped with the reason")
    s.add_argument("--option", action="append", metavar="BACKEND.KEY=VALUE",
                   help="a backend option, e.g. cnn.precision=tf32 or jax.precision=float32 "
                        "(repeatable; also `options` in --config)")
    s.add_argument("--case-timeout", type=_positive_float, metavar="SECONDS",
                   help="stop a worker that spends longer on one case, and start it again "
                        "once for what it had not finished (default 600)")
    s.add_argument("--processes", type=_positive_int,
                   help="fresh processes that time each case (default 3; compare needs >= 3)")
    s.add_argument("--repeats", type=_positive_int,
                   help="at least this many timed calls per case and process")
    s.add_argument("--min-time", type=_nonnegative_float,
                   help="and at least this many seconds of timed calls per case and process")
    s.add_argument("--reference", choices=("converged", "lab"),
                   help="accuracy against the converged reference (default) or the lab's "
                        "forward Euler")
    s.add_argument("--model", help="cnn model folder or .keras file (default: $HHBENCH_MODEL, "
                                    "else the shipped model)")
    s.add_argument("--no-reference-cache", action="store_true",
                   help="compute the references again and keep none on disk (default: kept "
                        "in the user's cache folder, $HHBENCH_CACHE_DIR overrides it, at "
                        "most $HHBENCH_REFERENCE_CACHE_MB MiB, default 1024)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--store", help="also record the run in this history store (a SQLite "
                                   "file or postgresql://…; see `hhbench history`)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("lab", help="answer the lab's questions: Markdown sections and figures",
                       formatter_class=_FMT,
                       description=_wrap(
                           "Answer the lab exercise's six questions with the CNN model and the "
                           "HH simulators, each as a Markdown section with its figures and "
                           "numbers, in the report folder."),
                       epilog="""\
questions:
  q1  the model: its input and output layers; the analytic model timed
  q2  the HH step response: spikes, their amplitudes, each HH backend's cold and warm time
  q3  the CNN on the same step, aligned with the HH trace, timed cold and warm
  q4  a sine of 80 uA/cm2: up to which frequency each model spikes
  q5  white noise, 100 seeded trials: spike counts and amplitudes, HH against CNN
  q6  the CNN's receptive field, from its layers and from the formula
what it prints: "wrote FOLDER: report.md with its figures" (all six) or the sections
written; each section's tables name their columns and units (mV, ms, Hz).""")
    s.add_argument("questions", nargs="*", metavar="QUESTION",
                   help="q1 … q6 or all (default: all)")
    s.add_argument("--model", help="CNN model folder or .keras file (default: the shipped one)")
    s.add_argument("--device", default="auto", help="CNN device: cpu, gpu, gpu:N or auto")
    s.add_argument("-o", "--output", default="lab-report", help="report folder (lab-report)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_lab)

    s = sub.add_parser("floor", help="each backend against the floor the hardware allows",
                       formatter_class=_FMT,
                       description=_wrap(
                           "Time each backend at one batch and set it against the floor this "
                           "machine allows: the counted work of one unit divided by ceilings "
                           "(matmul and exp rates) measured in the same run."),
                       epilog="""\
what it prints: one line per device with its measured ceilings, the batch, then a table:
  backend         the backend
  unit            what one row is per: a neuron-step (HH integrators) or a trace (CNN)
  work per unit   the counted operations of one unit (exp, div, mul, add; CNN FLOPs)
  floor           the least time per unit the ceilings allow (ns per neuron-step, ms per
                  trace)
  bound           the ceiling that sets the floor: exp rate or flop (matmul/fma) rate
  achieved        the measured warm time per unit
  achieved/floor  achieved over floor: 1.00x is at the floor, 10x ten times above it;
                  below 1x the ceiling was measured too low (a faster path than the one
                  measured), not a backend beating the hardware
  note            why a backend has no floor (uncounted work, e.g. odeint's adaptive steps)
                  or a remark on its ceiling
  -               no figure""")
    s.add_argument("--backends", help="comma-separated (default numpy,numba,exp-euler,cnn)")
    s.add_argument("--batch", type=_positive_int, default=64, help="traces per timed call (64)")
    s.add_argument("--device", default="auto",
                   help="cpu, gpu, gpu:N or auto: each backend on it where it can run there "
                        "(auto: a GPU for the backends that run on one); a GPU's ceilings are "
                        "measured with JAX")
    s.add_argument("--option", action="append", metavar="BACKEND.KEY=VALUE",
                   help="a backend option, e.g. jax.precision=float32 (repeatable)")
    s.add_argument("--model", help="cnn model folder or .keras file (default: the shipped one)")
    s.add_argument("--repeats", type=_positive_int, default=3, help="minimum timed repeats (3)")
    s.add_argument("--min-time", type=_nonnegative_float, default=0.5,
                   help="minimum timed seconds (0.5)")
    s.add_argument("--json", help="write the report as JSON")
    s.set_defaults(func=cmd_floor)

    s = sub.add_parser("scaling", help="cost against batch size and stimulus length",
                       formatter_class=_FMT,
                       description=_wrap(
                           "Time each backend over a batch sweep (1, 4, 16, ... traces) and a "
                           "length sweep (one trace of doubling sample counts), within a time "
                           "budget, and fit how the time per call grows."),
                       epilog="""\
what it prints (and writes as scaling.md, with CSV, JSON and a figure):
  points: backend, sweep (batch or length), batch, samples, per call (warm median),
          per trace (per call / batch), spread (interquartile range / median of the warm
          calls, in %)
  exponents: growth exponent p of the time per call, fitted by least squares on
          log(time) = p log(size) + c: 1 = linear, below 1 on the batch sweep = fixed cost
          that batching amortises; "*" marks one fitted through a point whose spread is
          above 10 % (one slow point bends the fit); "stopped early" says when a sweep
          ran out of its budget
  break-even (with a CPU and a GPU): the batch from which the GPU is cheaper per trace
warnings on stderr, as `run` gives them: a busy machine at the start or while the sweeps
ran (other work measured on the cores), frequency scaling, noisy exponents.""")
    s.add_argument("-o", "--output", default="hhbench-scaling", help="folder for CSV/MD/JSON/PNG")
    s.add_argument("--backends", help="comma-separated, default all")
    s.add_argument("--max-batch", type=_positive_int, default=4096,
                   help="largest batch of the batch sweep (4096)")
    s.add_argument("--samples", type=_positive_int, default=2560,
                   help="samples per trace, batch sweep")
    s.add_argument("--lengths", help="comma-separated sample counts for the length sweep")
    s.add_argument("--budget-s", type=_positive_float, default=30.0,
                   help="seconds per backend and sweep")
    s.add_argument("--device", default="auto",
                   help="devices, comma-separated (cpu,gpu,gpu:N,gpu:all,auto; default auto): "
                        "every backend on each device it runs on; with a CPU and a GPU, the "
                        "batch from which the GPU is cheaper per trace is reported")
    s.add_argument("--option", action="append", metavar="BACKEND.KEY=VALUE",
                   help="a backend option, e.g. jax.precision=float32 (repeatable)")
    s.add_argument("--model", help="cnn model folder or .keras file (default: the shipped one)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_scaling)

    s = sub.add_parser("compare", help="compare two results files; exit 1 on a regression, "
                                       "3 on a suspected one",
                       formatter_class=_FMT,
                       description="Compare two `hhbench run` results files case by case: "
                                   "speed (NEW/OLD ratio of the per-process medians, with its "
                                   "interval) and accuracy. From two machines, both machines "
                                   "and their calibration kernels are shown.",
                       epilog=COMPARE_WORDS)
    s.add_argument("old", help="results JSON of the baseline")
    s.add_argument("new", help="results JSON to judge")
    s.add_argument("--threshold", default="10%",
                   help="smallest relative change worth reporting, as 10%% or 0.1 "
                        "(default: 10%%)")
    s.add_argument("--alpha", type=float, default=0.01,
                   help="significance level: 1 - confidence of the ratio's interval "
                        "(default 0.01: 99%%)")
    s.add_argument("--strict", action="store_true",
                   help="also exit 3 when a case is inconclusive or not paired")
    s.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="text (default), markdown (a table for a pull-request comment or a "
                        "CI job summary) or json; same verdicts and exit status")
    s.add_argument("--allow-busy", action="store_true",
                   help="take the verdicts of runs measured on a busy machine at face value "
                        "(by default their slowdowns are discounted: exit 3, not 1)")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("check", help="warn when this machine (or a run's) looks unstable "
                                     "for timing", formatter_class=_FMT,
                       description=_wrap("Say whether this machine now, or the machine a results "
                                   "file was written on (at the run's start), looks fit for "
                                   "timing, as pyperf's `system check` does. Prints the load "
                                   "average (runnable processes, averaged over 1, 5 and 15 "
                                   "minutes) against the logical cores, the CPU frequency and "
                                   "its governor, whether hhbench's threading policy is on "
                                   "(numba's threading layer), and the thread-pool variables "
                                   "set (OMP_*, NUMBA_*, MKL_*, TF_*)."),
                       epilog=_wrap("A 'warning:' line is printed for: a load average above 0.5 "
                                    "per logical core (other work competes), a governor "
                                    "other than 'performance' or turbo boost on (the clock "
                                    "moves), a clock below 80 % of its maximum, the "
                                    "threading policy switched off, and, for a results "
                                    "file, each case whose processes disagree so much "
                                    "(spread_pct) that `compare` could not tell a 10 % "
                                    "change from noise against a run like it (it says "
                                    "which change it could tell; more --processes narrow "
                                    "it), and cases timed in a single process. Without "
                                    "warnings it says 'no warnings'. Exit status: 0 "
                                    "without warnings, 1 with any."))
    s.add_argument("results", nargs="?", help="a results file: its machine state at the "
                                              "start and the spread between its processes")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("plot", help="plot a results file", formatter_class=_FMT,
                       description="Plot a results file: cost_vs_batch.png (per-trace cost "
                                   "against batch, log-log), accuracy.png, "
                                   "overlay_<stimulus>.png (each backend over the reference).")
    s.add_argument("results", help="results JSON from `hhbench run`")
    s.add_argument("-o", "--output", default="hhbench-plots",
                   help="output folder (default: hhbench-plots)")
    s.set_defaults(func=cmd_plot)

    from hhbench.history.cli import add_history_parser
    add_history_parser(sub, _Parser, _FMT)
    return p


def main(argv: list[str] | None = None) -> int:
    from hhbench import interrupts
    # Ctrl-C (and SIGTERM) inside compiled code: raised when it returns; the handlers
    # found are put back on the way out (main() may be called by a library user)
    with interrupts.handling():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(_join_negative_values(
            sys.argv[1:] if argv is None else list(argv)))
        return args.func(args)
    except HHBenchError as exc:
        print(f"hhbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hhbench ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a disk full, a permission denied: still one line
        print(f"hhbench: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _interrupt_status(exc)
    except SystemError as exc:
        # Ctrl-C while a numba-compiled function runs: the dispatcher returns with the
        # KeyboardInterrupt set and Python reports a SystemError on top of it
        interrupt = _interrupted(exc)
        if interrupt is not None:
            return _interrupt_status(interrupt)
        raise


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--threshold -10%` as `--threshold=-10%`: argparse takes a value that starts with
    '-' (and is not a plain number) for an option and reports "expected one argument"
    instead of the value; joined, the value reaches its own check, which names it."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("--threshold", "--alpha") and i + 1 < len(argv) \
                and argv[i + 1].startswith("-") and argv[i + 1] != "--":
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _interrupt_status(exc: KeyboardInterrupt) -> int:
    """Say so on stderr; the exit status a shell gives that signal: 130 for Ctrl-C
    (SIGINT), 143 for SIGTERM."""
    from hhbench.interrupts import Terminated
    print("hhbench: terminated" if isinstance(exc, Terminated) else "hhbench: interrupted",
          file=sys.stderr)
    return getattr(exc, "exit_status", 130)


def _interrupted(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt being handled while `exc` was raised, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())

"""Quality of a trained CNN on traces it never saw, and the model card that records it.

Held-out steps (a seed the training never used), onsets uniform over the first 90 % of the
window, split by amplitude:
  * supra-threshold: 6–40 µA/cm² — where the model must produce spike trains; the bars
    apply here;
  * sub-threshold: −10–6 µA/cm² — "no spike" is (nearly always) right here, so these traces
    would flatter the spike figures if they were mixed in; reported apart.
The target is the lab reference (forward Euler at the model's rate); traces on which Euler
diverges are dropped and counted. Figures, on the output window, with `hhbench.metrics`:
  * median coincidence factor Γ (Δ = 2 ms)                     bar: ≥ 0.9
  * spike count within ±1 of the reference / exactly right      bars: ≥ 90 % / ≥ 60 %
  * first spike within 0.5 ms of the reference's, among traces where the reference spikes
    (no CNN spike counts as a miss)                            bar: ≥ 95 %
  * mean absolute voltage error (mV)                            reported
  * which spikes of a train are lost: the share of the reference's k-th spike that the CNN
    matches within ±2 ms (one-to-one, `metrics.matched_reference_spikes`), by k and by
    time after the onset
  * the lab's default step (20 µA/cm² from 17.8 ms): spike counts of reference and CNN.
The same figures for sine (20 µA/cm², log-uniform 1 Hz–200 Hz) and white noise (σ = 20)
are descriptive: the model only saw steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hhbench import metrics, stimuli
from hhbench.environment import describe_machine, one_line

BARS = {"gamma_median": 0.9, "frac_spike_count_within_1": 0.9, "frac_spike_count_exact": 0.6,
        "frac_first_spike_within_0p5ms": 0.95}
SUPRA_RANGE_UA = (6.0, 40.0)
SUB_RANGE_UA = (-10.0, 6.0)
#: bins of time after the onset (ms) for the lost-spike table
AFTER_ONSET_BINS_MS = (0.0, 10.0, 20.0, 30.0, 50.0, 70.0, 100.0, 130.0)


def _figures(v_ref: np.ndarray, v_cnn: np.ndarray, fs_khz: float, t0_ms: float) -> dict:
    """metrics.summarise of the comparison, plus the first-spike criterion."""
    per = metrics.compare_traces(v_ref, v_cnn, fs_khz=fs_khz, t0_ms=t0_ms)
    figures = metrics.summarise(per)
    spikes = per["n_spikes_ref"] > 0
    shift = np.nan_to_num(np.abs(per["first_spike_shift_ms"][spikes]), nan=np.inf)
    figures["n_traces_with_spikes"] = int(spikes.sum())
    figures["frac_first_spike_within_0p5ms"] = (float(np.mean(shift <= 0.5)) if spikes.any()
                                                else float("nan"))
    figures["spikes_ref_total"] = int(per["n_spikes_ref"].sum())
    figures["spikes_cnn_total"] = int(per["n_spikes_cmp"].sum())
    return figures


def lost_spikes(v_ref: np.ndarray, v_cnn: np.ndarray, *, fs_khz: float, t0_ms: float,
                onset_ms: np.ndarray, max_index: int = 12, min_traces: int = 5) -> dict:
    """Which reference spikes the CNN reproduces: for the k-th spike of each reference train
    (k = 1 … max_index), the share matched by a CNN spike within ±2 ms; and the same share
    for reference spikes grouped by time after the step's onset (AFTER_ONSET_BINS_MS).
    Rows with fewer than `min_traces` reference spikes are left out."""
    detect = dict(fs_khz=fs_khz, t0_ms=t0_ms)
    trains_ref = metrics.detect_spikes(np.atleast_2d(v_ref), **detect)
    trains_cnn = metrics.detect_spikes(np.atleast_2d(v_cnn), **detect)
    index, after, hit = [], [], []
    for ref, cnn, onset in zip(trains_ref, trains_cnn, np.broadcast_to(onset_ms, len(trains_ref))):
        matched = metrics.matched_reference_spikes(ref, cnn)
        index.append(np.arange(1, len(ref) + 1))
        after.append(ref.times_ms - onset)
        hit.append(matched)
    index, after, hit = (np.concatenate(a) if a else np.zeros(0) for a in (index, after, hit))
    by_index = [{"k": k, "n": int((index == k).sum()), "matched": float(hit[index == k].mean())}
                for k in range(1, max_index + 1) if (index == k).sum() >= min_traces]
    edges = AFTER_ONSET_BINS_MS
    by_time = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (after >= lo) & (after < hi)
        if sel.sum() >= min_traces:
            by_time.append({"from_ms": lo, "to_ms": hi, "n": int(sel.sum()),
                            "matched": float(hit[sel].mean())})
    return {"by_index": by_index, "by_time_after_onset": by_time}


def _aligned(runner, stim: stimuli.Stimulus):
    """(v_ref, v_cnn, t0_ms, kept) for `stim`: lab reference and CNN on the CNN's window;
    traces on which the reference diverges are dropped."""
    from hhbench.suite import reference_run

    ref = reference_run(stim, "lab")
    keep = ~ref.diverged
    out = runner.run(stim.current_ua[keep], stim.fs_khz)
    first = out.first_sample
    v_ref = ref.v_batch[keep, first:first + out.v_mv.shape[1]]
    return v_ref, out.v_mv, float(out.t_ms[0]), keep


def _score(runner, stim: stimuli.Stimulus, *, onset_ms=None) -> dict:
    v_ref, v_cnn, t0_ms, keep = _aligned(runner, stim)
    figs = _figures(v_ref, v_cnn, stim.fs_khz, t0_ms)
    figs["n_diverged_dropped"] = int((~keep).sum())
    if onset_ms is not None:
        figs["lost_spikes"] = lost_spikes(v_ref, v_cnn, fs_khz=stim.fs_khz, t0_ms=t0_ms,
                                          onset_ms=np.asarray(onset_ms)[keep])
    return figs


def _held_out_steps(rng, amplitude_range_ua, n: int, window: int, fs: float):
    amps = rng.uniform(*amplitude_range_ua, n)
    onsets = rng.uniform(0.0, 0.9 * window / fs, n)
    return stimuli.step(amps, onset_ms=onsets, n_samples=window, fs_khz=fs), onsets


def evaluate(runner, *, n_traces: int = 300, seed: int = 20_000) -> dict:
    """Quality figures of `runner` (a CnnRunner) on held-out steps (supra- and
    sub-threshold), the lab's default step, sines and noise."""
    rng = np.random.default_rng(seed)
    window, fs = runner.window, runner.fs_khz
    supra, supra_onsets = _held_out_steps(rng, SUPRA_RANGE_UA, n_traces, window, fs)
    sub, sub_onsets = _held_out_steps(rng, SUB_RANGE_UA, max(n_traces // 3, 4), window, fs)
    freqs = 10 ** rng.uniform(-3, np.log10(0.2), n_traces)
    sines = stimuli.sine(freqs, amplitude_ua=20.0, onset_ms=18.7, n_samples=window, fs_khz=fs)
    noise = stimuli.white_noise(20.0, seed=seed, batch=n_traces, n_samples=window, fs_khz=fs)
    supra_figs = _score(runner, supra, onset_ms=supra_onsets)
    supra_figs["bars"] = {k: {"bar": v, "value": supra_figs[k], "met": bool(supra_figs[k] >= v)}
                          for k, v in BARS.items()}
    default = stimuli.make("step", fs_khz=fs)  # the lab's trace, windows stitched if longer
    v_ref, v_cnn, _, _ = _aligned(runner, default)
    lab_step = {"n_spikes_ref": int(metrics.spike_count(v_ref[0])),
                "n_spikes_cnn": int(metrics.spike_count(v_cnn[0])), **default.describe()}
    lab_step["count_within_1"] = abs(lab_step["n_spikes_cnn"] - lab_step["n_spikes_ref"]) <= 1
    return {"steps_supra": supra_figs, "steps_sub": _score(runner, sub, onset_ms=sub_onsets),
            "lab_step": lab_step, "sine": _score(runner, sines), "noise": _score(runner, noise),
            "held_out": {"n_traces": n_traces, "seed": seed,
                         "supra_amplitude_range_ua": list(SUPRA_RANGE_UA),
                         "sub_amplitude_range_ua": list(SUB_RANGE_UA),
                         "step_onset_range_ms": [0.0, 0.9 * window / fs],
                         "sine": "A = 20 µA/cm², f log-uniform 0.001-0.2 kHz, onset 18.7 ms",
                         "noise": "sigma = 20 µA/cm², onset 18.7 ms"}}


def write_model_card(folder: str | Path, state: dict, *, n_traces: int | None = None) -> dict:
    """Evaluate the model in `folder` and write model_card.json and MODEL_CARD.md."""
    from hhbench.cnn.runner import CnnRunner
    from hhbench.cnn.training import TrainConfig
    from hhbench.atomic import atomic_write

    folder = Path(folder)
    config = TrainConfig.from_dict(state["config"])
    runner = CnnRunner(folder, device="auto")
    tiny = config.n_samples < 500
    quality = evaluate(runner, n_traces=n_traces or (16 if tiny else 300))
    last = state["history"][-1] if state["history"] else {}
    card = {"name": folder.name, "architecture": config.arch.as_dict(),
            "parameters": int(runner.model.count_params()),
            "data": {**config.data.__dict__, **state.get("data", {}),
                     "n_samples": config.n_samples, "val_fraction": config.val_fraction,
                     "validation_distribution": state.get("val_data", config.data.__dict__)},
            "training": {"seed": config.seed, "epochs_run": state["epoch"],
                         "best_epoch": state["best_epoch"], "stop_reason": state["stop_reason"],
                         "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                         "lr_schedule": config.lr_schedule,
                         "min_learning_rate": config.min_learning_rate,
                         "lr_patience": config.lr_patience,
                         "final_loss": last.get("loss"), "final_val_loss": last.get("val_loss"),
                         "best_val_loss": state["best_val_loss"], "wall_s": state["wall_s"],
                         "phases": state.get("phases", []),
                         "keras3_phase": state.get("keras3_phase"),
                         "devices": state.get("devices", [])},
            "scaling": {"input_scale": config.input_scale, "output_scale": config.output_scale},
            "hardware": describe_machine(), "quality": quality}
    atomic_write(folder / "model_card.json", json.dumps(card, indent=1))
    atomic_write(folder / "MODEL_CARD.md", _markdown(card))
    return card


def _phases(phases: list) -> str:
    if not phases:
        return ""
    return " Resumed in phases: " + "; ".join(
        f"from epoch {p['from_epoch']}: " + ", ".join(f"{k} = {v}" for k, v in p["changes"].items())
        for p in phases) + "."


_SCHEDULES = {"plateau": "halved after {p} epochs without improvement, down to {m}",
              "cosine": "decayed along half a cosine over the run's epochs, down to {m}"}


def _quality_rows(q: dict) -> str:
    def row(name, f):
        return (f"| {name} | {f['n_traces']} | {f['gamma_median']:.3f} "
                f"| {f['frac_spike_count_exact']:.1%} | {f['frac_spike_count_within_1']:.1%} "
                f"| {f['frac_first_spike_within_0p5ms']:.1%} | {f['mae_mv_mean']:.2f} "
                f"| {f['spikes_cnn_total']} / {f['spikes_ref_total']} |")
    return "\n".join([row("steps, supra-threshold (6-40 µA/cm²)", q["steps_supra"]),
                      row("steps, sub-threshold (-10-6 µA/cm²)", q["steps_sub"]),
                      row("sine, 20 µA/cm² (descriptive)", q["sine"]),
                      row("noise, σ = 20 (descriptive)", q["noise"])])


def _lost_rows(lost: dict) -> str:
    idx = " | ".join(f"{r['k']}" for r in lost["by_index"])
    share = " | ".join(f"{r['matched']:.0%}" for r in lost["by_index"])
    n = " | ".join(f"{r['n']}" for r in lost["by_index"])
    sep = "|---" * (len(lost["by_index"]) + 1) + "|"
    times = "\n".join(f"| {r['from_ms']:g}-{r['to_ms']:g} ms | {r['n']} | {r['matched']:.0%} |"
                      for r in lost["by_time_after_onset"])
    return (f"| k-th reference spike | {idx} |\n{sep}\n| matched by the CNN | {share} |\n"
            f"| traces | {n} |\n\n| time after onset | reference spikes | matched |\n"
            f"|---|---|---|\n{times}")


def _hosts(training: dict, card: dict) -> str:
    """The machines the sittings ran on (recorded per sitting), else "this machine"."""
    hosts = list(dict.fromkeys(d["host"] for d in training.get("devices", []) if "host" in d))
    return "; ".join(hosts) if hosts else "the machine named below"


def _trainer(training: dict) -> str:
    phase = training.get("keras3_phase")
    if phase:
        return f"a Keras 3 phase (`scripts/gpu_keras3.py train`; {phase['device']})"
    return "`hhbench train`"


def _markdown(card: dict) -> str:
    q, t, d = card["quality"], card["training"], card["data"]
    bars = "\n".join(f"- {k}: {v['value']:.3f} (bar {v['bar']}) — {'met' if v['met'] else 'NOT met'}"
                     for k, v in q["steps_supra"]["bars"].items())
    lab = q["lab_step"]
    schedule = _SCHEDULES[t.get("lr_schedule", "plateau")].format(
        p=t.get("lr_patience", 3), m=t.get("min_learning_rate", 1e-4))
    if t.get("keras3_phase"):  # trained by keras3_phase.run_phase: a time budget, not epochs
        schedule = (f"decayed along half a cosine over a {t['keras3_phase']['minutes']:g}-"
                    f"minute budget, down to {t.get('min_learning_rate')}")
    return f"""# Model card: {card['name']}

The lab's CNN architecture ({card['parameters']:,} parameters) trained by {_trainer(t)}
to reproduce the lab reference (forward Euler, dt = 0.05 ms) on step currents.

## Data
Step currents, amplitude uniform in [{d['amplitude_min_ua']}, {d['amplitude_max_ua']}] µA/cm²;
onsets: {d['early_fraction']:.0%} uniform in [0, {d['early_onset_max_ms']}] ms (long spike
trains), the rest uniform over the whole {card['architecture']['window']}-sample window
(including the left context and the right edge); that is the last phase's mix (see
Training), the validation traces keep the first phase's
({d['validation_distribution']['early_fraction']:.0%} early). {d.get('train')} training and {d.get('val')}
validation traces; {d.get('diverged_dropped')} traces dropped because Euler diverged.
Input scaled by {card['scaling']['input_scale']} (network input = I · scale), target by
{card['scaling']['output_scale']} (network output = V · scale); both are stored with the
model in `hhbench_model.json` and applied by hhbench's runner.

## Training
Adam, learning rate {t['learning_rate']} {schedule}; mean absolute error, batch
{t['batch_size']}, seed {t['seed']}.{_phases(t['phases'])} {t['epochs_run']} epochs ({t['stop_reason']}), best epoch
{t['best_epoch']}; best validation loss {t['best_val_loss']:.5f} (final training loss
{t['final_loss']:.5f}). Wall time {t['wall_s'] / 60:.1f} min on {_hosts(t, card)}; quality
evaluated on {one_line(card['hardware'])}.

## Quality on held-out traces (against the lab reference, output window)
| stimulus | traces | median Γ | count exact | count ±1 | 1st spike ±0.5 ms | MAE (mV) | spikes CNN / ref |
|---|---|---|---|---|---|---|---|
{_quality_rows(q)}

The lab's default step ({lab['amplitude_ua']} µA/cm² from {lab['onset_ms']} ms): the reference
fires {lab['n_spikes_ref']} spikes in the output window, the CNN {lab['n_spikes_cnn']}.

Bars on held-out supra-threshold steps:
{bars}

Which spikes of a train are lost (supra-threshold steps; a reference spike is matched when
the CNN has a spike within ±2 ms, one-to-one):

{_lost_rows(q['steps_supra']['lost_spikes'])}
"""

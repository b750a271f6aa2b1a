"""Quality of a trained CNN on traces it never saw, and the model card that records it.

Held-out steps: amplitudes uniform over the training range, onsets uniform over the first
90 % of the window, a seed the training never used. The target is the lab reference
(forward Euler at the model's rate); traces on which Euler diverges are dropped and
counted. Figures, on the output window, with `hhbench.metrics`:
  * median coincidence factor Γ (Δ = 2 ms)                     bar: ≥ 0.9
  * spike count within ±1 of the reference / exactly right      bars: ≥ 90 % / ≥ 60 %
  * first spike within 0.5 ms of the reference's, among traces where the reference spikes
    (no CNN spike counts as a miss)                            bar: ≥ 95 %
  * mean absolute voltage error (mV)                            reported
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


def _figures(v_ref: np.ndarray, v_cnn: np.ndarray, fs_khz: float, t0_ms: float) -> dict:
    """metrics.summarise of the comparison, plus the first-spike criterion."""
    per = metrics.compare_traces(v_ref, v_cnn, fs_khz=fs_khz, t0_ms=t0_ms)
    figures = metrics.summarise(per)
    spikes = per["n_spikes_ref"] > 0
    shift = np.nan_to_num(np.abs(per["first_spike_shift_ms"][spikes]), nan=np.inf)
    figures["n_traces_with_spikes"] = int(spikes.sum())
    figures["frac_first_spike_within_0p5ms"] = (float(np.mean(shift <= 0.5)) if spikes.any()
                                                else float("nan"))
    return figures


def _score(runner, stim: stimuli.Stimulus) -> dict:
    from hhbench.suite import reference_run

    ref = reference_run(stim, "lab")
    keep = ~ref.diverged
    out = runner.run(stim.current_ua[keep], stim.fs_khz)
    first = out.first_sample
    v_ref = ref.v_batch[keep, first:first + out.v_mv.shape[1]]
    figs = _figures(v_ref, out.v_mv, stim.fs_khz, float(out.t_ms[0]))
    figs["n_diverged_dropped"] = int((~keep).sum())
    return figs


def evaluate(runner, *, amplitude_range_ua: tuple[float, float], n_traces: int = 300,
             seed: int = 20_000) -> dict:
    """Quality figures of `runner` (a CnnRunner) on held-out steps, sines and noise."""
    rng = np.random.default_rng(seed)
    window, fs = runner.window, runner.fs_khz
    window_ms = window / fs
    amps = rng.uniform(*amplitude_range_ua, n_traces)
    onsets = rng.uniform(0.0, 0.9 * window_ms, n_traces)
    steps = stimuli.step(amps, onset_ms=onsets, n_samples=window, fs_khz=fs)
    freqs = 10 ** rng.uniform(-3, np.log10(0.2), n_traces)
    sines = stimuli.sine(freqs, amplitude_ua=20.0, onset_ms=18.7, n_samples=window, fs_khz=fs)
    noise = stimuli.white_noise(20.0, seed=seed, batch=n_traces, n_samples=window, fs_khz=fs)
    steps_figs = _score(runner, steps)
    steps_figs["bars"] = {k: {"bar": v, "value": steps_figs[k], "met": bool(steps_figs[k] >= v)}
                          for k, v in BARS.items()}
    return {"steps": steps_figs, "sine": _score(runner, sines), "noise": _score(runner, noise),
            "held_out": {"n_traces": n_traces, "seed": seed,
                         "step_amplitude_range_ua": list(amplitude_range_ua),
                         "step_onset_range_ms": [0.0, 0.9 * window_ms],
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
    quality = evaluate(runner, amplitude_range_ua=(config.data.amplitude_min_ua,
                                                   config.data.amplitude_max_ua),
                       n_traces=n_traces or (16 if tiny else 300))
    last = state["history"][-1] if state["history"] else {}
    card = {"name": folder.name, "architecture": config.arch.as_dict(),
            "parameters": int(runner.model.count_params()),
            "data": {**config.data.__dict__, **state.get("data", {}),
                     "n_samples": config.n_samples, "val_fraction": config.val_fraction,
                     "validation_distribution": state.get("val_data", config.data.__dict__)},
            "training": {"seed": config.seed, "epochs_run": state["epoch"],
                         "best_epoch": state["best_epoch"], "stop_reason": state["stop_reason"],
                         "batch_size": config.batch_size, "learning_rate": (state["history"][0]["lr"] if state["history"]
                                           else config.learning_rate),
                         "final_loss": last.get("loss"), "final_val_loss": last.get("val_loss"),
                         "best_val_loss": state["best_val_loss"], "wall_s": state["wall_s"],
                         "phases": state.get("phases", []),
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


def _markdown(card: dict) -> str:
    q, t, d = card["quality"], card["training"], card["data"]
    def row(name, f):
        return (f"| {name} | {f['n_traces']} | {f['gamma_median']:.3f} "
                f"| {f['frac_spike_count_exact']:.1%} | {f['frac_spike_count_within_1']:.1%} "
                f"| {f['frac_first_spike_within_0p5ms']:.1%} | {f['mae_mv_mean']:.2f} |")
    bars = "\n".join(f"- {k}: {v['value']:.3f} (bar {v['bar']}) — {'met' if v['met'] else 'NOT met'}"
                     for k, v in q["steps"]["bars"].items())
    return f"""# Model card: {card['name']}

The lab's CNN architecture ({card['parameters']:,} parameters) trained by `hhbench train`
to reproduce the lab reference (forward Euler, dt = 0.05 ms) on step currents.

## Data
Step currents, amplitude uniform in [{d['amplitude_min_ua']}, {d['amplitude_max_ua']}] µA/cm²;
onsets: {d['early_fraction']:.0%} uniform in [0, {d['early_onset_max_ms']}] ms (long spike
trains), the rest uniform over the whole {card['architecture']['window']}-sample window
(including the left context and the right edge); that is the last phase's mix (see
Training), the validation traces keep the first phase's
({d['validation_distribution']['early_fraction']:.0%} early). {d.get('train')} training and {d.get('val')}
validation traces; {d.get('diverged_dropped')} traces dropped because Euler diverged.
Input scaled by {card['scaling']['input_scale']}, target by {card['scaling']['output_scale']}.

## Training
Adam, learning rate {t['learning_rate']} halved on plateaus, mean absolute error, batch
{t['batch_size']}, seed {t['seed']}.{_phases(t['phases'])} {t['epochs_run']} epochs ({t['stop_reason']}), best epoch
{t['best_epoch']}; best validation loss {t['best_val_loss']:.5f} (final training loss
{t['final_loss']:.5f}). Wall time {t['wall_s'] / 60:.1f} min on {one_line(card['hardware'])}.

## Quality on held-out traces (against the lab reference, output window)
| stimulus | traces | median Γ | count exact | count ±1 | 1st spike ±0.5 ms | MAE (mV) |
|---|---|---|---|---|---|---|
{row('steps', q['steps'])}
{row('sine (descriptive)', q['sine'])}
{row('noise (descriptive)', q['noise'])}

Bars on held-out steps:
{bars}
"""

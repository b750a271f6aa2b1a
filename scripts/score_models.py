"""Score CNN model folders side by side on the same held-out traces (the model card's).

    python scripts/score_models.py LABEL=FOLDER [LABEL=FOLDER ...] [--traces 300]

Prints one Markdown row per model: validation loss and minutes of training (from its
train_state.json), then the model card's figures on held-out supra-threshold steps
(against the lab reference) and the spike counts on the lab's default step. Used to
compare training recipes at equal training time (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="LABEL=FOLDER")
    p.add_argument("--traces", type=int, default=300)
    args = p.parse_args()

    from hhbench.cnn.model_card import evaluate
    from hhbench.cnn.runner import CnnRunner

    print("| recipe | epochs | minutes | best val loss | median Γ | count ±1 | exact "
          "| 1st spike ±0.5 ms | MAE (mV) | default step: CNN / ref spikes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for item in args.models:
        label, _, folder = item.partition("=")
        state = json.loads((Path(folder) / "train_state.json").read_text())
        q = evaluate(CnnRunner(folder, device="cpu"), n_traces=args.traces)
        s, lab = q["steps_supra"], q["lab_step"]
        print(f"| {label} | {state['epoch']} | {state['wall_s'] / 60:.0f} "
              f"| {state['best_val_loss']:.4f} | {s['gamma_median']:.2f} "
              f"| {s['frac_spike_count_within_1']:.0%} | {s['frac_spike_count_exact']:.0%} "
              f"| {s['frac_first_spike_within_0p5ms']:.0%} | {s['mae_mv_mean']:.2f} "
              f"| {lab['n_spikes_cnn']} / {lab['n_spikes_ref']} |", flush=True)


if __name__ == "__main__":
    main()

"""Question 6: the CNN's receptive field, from its layers and from the formula, and what
it would be with 2 layers.

From the layers: `hhbench.cnn.runner.receptive_field` walks the model's strided
convolutions. The formula (Drakopoulos et al. 2021, eq. 4) is
`hhbench.cnn.architecture.receptive_field_samples`: r = (k − 1)(sᴺ − 1)/(s − 1) + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hhbench.cnn.architecture import receptive_field_samples
from hhbench.errors import HHBenchError
from hhbench.lab.common import LabSetup, figure, md_table, num, save_figure, write_section

KEY = "q6"
TITLE = "Q6. The receptive field of the CNN, and with only 2 layers"


@dataclass(frozen=True, kw_only=True)
class ReceptiveFieldAnswer:
    """Receptive fields in samples and ms (fs_khz from the model)."""

    encoder_layers: int
    kernel: int
    stride: int
    fs_khz: float
    layers_samples: int
    layers_ms: float
    formula_samples: int
    formula_ms: float
    two_layers_samples: int
    two_layers_ms: float
    window_samples: int
    window_ms: float
    by_layers: tuple[tuple[int, int], ...]   # (N, samples) for N = 1 … max(depth, 9)


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> ReceptiveFieldAnswer:
    rf = setup.runner.receptive_field()
    if rf["kernel"] is None:
        raise HHBenchError("the model's convolutions differ in kernel or stride: the formula "
                           "for N identical layers does not apply")
    k, s, n, fs = rf["kernel"], rf["stride"], rf["encoder_layers"], setup.fs_khz
    two = receptive_field_samples(2, k, s)
    by = tuple((i, receptive_field_samples(i, k, s)) for i in range(1, max(n, 9) + 1))
    return ReceptiveFieldAnswer(encoder_layers=n, kernel=k, stride=s, fs_khz=fs,
                                layers_samples=rf["samples"], layers_ms=rf["ms"],
                                formula_samples=rf["formula_samples"],
                                formula_ms=rf["formula_samples"] / fs,
                                two_layers_samples=two, two_layers_ms=two / fs,
                                window_samples=setup.n_samples, window_ms=setup.n_samples / fs,
                                by_layers=by)


def headline(a: ReceptiveFieldAnswer) -> str:
    return (f"{a.layers_samples} samples = {num(a.layers_ms)} ms with {a.encoder_layers} layers; "
            f"{a.two_layers_samples} samples = {num(a.two_layers_ms)} ms with 2")


def write(a: ReceptiveFieldAnswer, out_dir: Path) -> list[Path]:
    fig_name = f"{KEY}_receptive_field_vs_layers.png"
    agree = "equal to" if a.layers_samples == a.formula_samples else "different from"
    beyond = (f" That is more than the {a.window_samples}-sample input window "
              f"({num(a.window_ms)} ms): the deepest encoder layer sees the whole window "
              f"(and the zero padding around it)." if a.layers_samples > a.window_samples else "")
    short = (": about the duration of one spike, far shorter than the tens of "
             "milliseconds between spikes (Q2), so such a network could not know how long "
             "ago the last spike was" if a.two_layers_ms < 5 else "")
    rows = [[f"this model ({a.encoder_layers} layers), from its layers", a.layers_samples, a.layers_ms],
            [f"formula, N = {a.encoder_layers}", a.formula_samples, a.formula_ms],
            ["formula, N = 2", a.two_layers_samples, a.two_layers_ms]]
    md = f"""## {TITLE}

**Question.** How many input samples (and ms) can one output of the encoder depend on,
and what would that be with only 2 layers?

**Method.** Walking the model's convolutions in order, the receptive field grows by
(k − 1)·j per layer, where j, the jump (input samples between neighbouring outputs), is
multiplied by the stride s after each layer. For N identical layers this is the formula
of Drakopoulos et al. (2021, eq. 4): r = (k − 1)(sᴺ − 1)/(s − 1) + 1 samples; divided by
the sampling rate ({num(a.fs_khz)} kHz) it is in ms. This model's encoder has
N = {a.encoder_layers} layers with kernel k = {a.kernel} and stride s = {a.stride}.

**Answer.** The receptive field read from the layers is {a.layers_samples} samples
({num(a.layers_ms)} ms), {agree} the formula's {a.formula_samples}.{beyond} With only
2 layers it would be {a.two_layers_samples} samples = {num(a.two_layers_ms)} ms{short}.

{md_table(["", "samples", "ms"], rows)}

![receptive field against the number of layers]({fig_name})
"""
    n = np.array([x[0] for x in a.by_layers])
    r = np.array([x[1] for x in a.by_layers])
    fig = figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    ax.semilogy(n, r, "o-", label=f"r = (k−1)(sᴺ−1)/(s−1)+1, k = {a.kernel}, s = {a.stride}")
    ax.axhline(a.window_samples, color="0.5", ls="--",
               label=f"input window: {a.window_samples} samples")
    ax.plot([a.encoder_layers], [a.layers_samples], "s", color="C3", ms=9,
            label=f"this model: {a.layers_samples} samples ({num(a.layers_ms)} ms)")
    ax.plot([2], [a.two_layers_samples], "D", color="C2", ms=8,
            label=f"2 layers: {a.two_layers_samples} samples ({num(a.two_layers_ms)} ms)")
    ax.set_xlabel("number of encoder layers N")
    ax.set_ylabel("receptive field (samples)")
    sec = ax.secondary_yaxis("right", functions=(lambda x: x / a.fs_khz, lambda x: x * a.fs_khz))
    sec.set_ylabel("receptive field (ms)")
    ax.set_xticks(n)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("receptive field of the encoder against its depth")
    return write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / fig_name)]


__all__ = ["ReceptiveFieldAnswer", "compute", "write", "headline", "KEY", "TITLE"]

"""`hhbench lab`: the lab's six questions, each answered by one command, with figures.

One module per question (`q1_model` … `q6_receptive_field`), each with
`compute(setup, done, progress) -> frozen result`, `write(result, folder)` (Markdown
section, JSON numbers, PNG figures) and `headline(result)`; `common` holds the shared
set-up (the model's window, context and scaling) and report helpers, `boundary` the
bisection of q4, `report.run_lab` the whole run.
"""

from hhbench.lab.boundary import Bracket, bisect_boundary
from hhbench.lab.common import LabSettings, LabSetup
from hhbench.lab.report import QUESTIONS, run_lab

__all__ = ["run_lab", "QUESTIONS", "LabSettings", "LabSetup", "bisect_boundary", "Bracket"]

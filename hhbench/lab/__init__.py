"""`hhbench lab`: the lab's six questions, each answered by one command, with figures.

One module per question (`q1_model` … `q6_receptive_field`), each with
`compute(setup, done, progress) -> frozen result`, `write(result, folder)` (Markdown
section, JSON numbers, PNG figures) and `headline(result)`; `common` holds the shared
set-up (the model's window, context and scaling) and report helpers, `boundary` the
bisection of q4, `report.run_lab` the whole run.

The names below are imported on first use: the question modules import the plotting and
simulation stack, and `QUESTION_KEYS` is all a command needs to refuse a question that
does not exist before any of that loads.
"""

#: the lab's questions in their order (`report.QUESTIONS` maps each to its module)
QUESTION_KEYS = ("q1", "q2", "q3", "q4", "q5", "q6")
#: the questions that run no CNN (they need only the model's time base: no CNN framework)
NO_CNN = ("q2",)

_LAZY = {"Bracket": "boundary", "bisect_boundary": "boundary", "LabSettings": "common",
         "LabSetup": "common", "QUESTIONS": "report", "run_lab": "report"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_questions(questions) -> list[str]:
    """The question keys in the lab's order; "all" means all six. HHBenchError naming an
    unknown one."""
    from hhbench.errors import HHBenchError
    asked = list(questions) or ["all"]
    unknown = [q for q in asked if q != "all" and q not in QUESTION_KEYS]
    if unknown:
        raise HHBenchError(f"unknown question {unknown[0]!r}; choose from "
                           f"{', '.join(QUESTION_KEYS)} or all")
    return list(QUESTION_KEYS) if "all" in asked else [q for q in QUESTION_KEYS if q in asked]


__all__ = ["run_lab", "QUESTIONS", "QUESTION_KEYS", "NO_CNN", "check_questions", "LabSettings",
           "LabSetup", "bisect_boundary", "Bracket"]

"""`python -m distill_core distill ...` with a stopwatch: the same `distill_core.cli.main(argv)`, plus timestamps.

Usage: python benchmarks/_timed_distill.py TIMINGS.json distill --data ... (everything after TIMINGS.json is the
CLI's own argv). Nothing in the loop changes: `train.fit` is wrapped to note when it starts (tokenisation, the
teacher pass and the epochs follow) and the CLI's progress printer notes when each event arrives, so the end-to-end
span can be cut exactly where the seed baseline cuts its own (from tokenisation to the end of the last epoch).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from distill_core.malloc_choice import reexec_with_chosen_malloc

# The malloc `python -m distill_core distill` runs on (tcmalloc where installed: distill_core/malloc_choice.py);
# the re-executed process starts this script again, inside the parent's clock.
reexec_with_chosen_malloc(sys.argv[2:])

from distill_core import cli, train  # noqa: E402

T0 = time.perf_counter()
marks: list[dict] = []


def mark(kind: str, **fields) -> None:
    marks.append({"t": time.perf_counter() - T0, "kind": kind, **fields})


original_fit = train.fit


def timed_fit(*args, **kwargs):
    mark("fit_start")
    try:
        return original_fit(*args, **kwargs)
    finally:
        mark("fit_end")


original_call = cli.ProgressPrinter.__call__


def timed_call(self, event):
    kind = event.get("kind")
    if kind in ("phase", "start", "epoch", "checkpoint", "early_stop"):
        mark(kind, **{k: event[k] for k in ("phase", "epoch", "seconds", "samples_per_s", "valid_accuracy",
                                            "train_examples", "steps_per_epoch") if k in event})
    elif kind == "step":
        mark("step", step=event["step"], epoch=event["epoch"])
    return original_call(self, event)


train.fit = timed_fit
cli.ProgressPrinter.__call__ = timed_call

if __name__ == "__main__":
    out = Path(sys.argv[1])
    code = 1
    try:
        code = cli.main(sys.argv[2:])
    finally:
        mark("exit", returncode=code)
        out.write_text(json.dumps({"marks": marks}, indent=1), encoding="utf-8")
    sys.exit(code)

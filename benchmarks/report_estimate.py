"""BENCHMARKS.md section 11: the estimate told before Start against the run's real time, on a first visit
(results/estimate_accuracy.json from benchmarks/estimate_accuracy.py)."""
from __future__ import annotations

from typing import Any

from report_format import f, provenance, table

PHASES = ("preparing", "tokenising", "teacher_logits", "training", "validation", "saving", "test_evaluation")


def _ratio(told: float | None, actual: float) -> str | None:
    return None if told is None or not actual else f"{told / actual:.2f}x"


def _phase_rows(case: dict[str, Any]) -> list[list[Any]]:
    """Estimated against recorded seconds per phase; "preparing" is what no phase recorded (the process's start,
    imports and model loading: a foreground command records no preparing phase)."""
    told, before = case["estimate"]["phases"], (case.get("baseline_estimate") or {}).get("phases", {})
    actual = {**case["actual_phases_s"], "preparing": case["not_in_a_phase_s"]}
    return [[case["name"] if i == 0 else "", phase, f(told.get(phase)), f(before.get(phase)), f(actual.get(phase)),
             _ratio(told.get(phase), actual.get(phase, 0.0))]
            for i, phase in enumerate(p for p in PHASES if told.get(p) or actual.get(p))]


def section_estimate_accuracy(result: dict[str, Any] | None) -> str:
    title = "## 11. The estimate before Start against the run, on a first visit\n"
    if not result:
        return title + "\n_Not measured yet: `python benchmarks/estimate_accuracy.py --teacher RUN_DIR`._\n"
    cases = result["cases"]
    before = bool(result.get("baseline"))
    head = ["case", "estimate s (source)", *(["estimate before s"] if before else []), "actual s (wall)",
            "estimate / actual", *(["before / actual"] if before else []), "trained in", "load start-end"]
    rows = []
    for case in cases:
        told, old = case["estimate"], case.get("baseline_estimate") or {}
        rows.append([case["name"], f"{told['seconds']:.0f} ({told['source']})",
                     *([f(old.get("seconds"), 0)] if before else []), f(case["actual_wall_s"], 0),
                     _ratio(told["seconds"], case["actual_wall_s"]),
                     *([_ratio(old.get("seconds"), case["actual_wall_s"])] if before else []),
                     "; ".join(case["precisions"]), f"{case['load_start'][0]:.1f}-{case['load_end'][0]:.1f}"])
    phase_rows = [row for case in cases for row in _phase_rows(case)]
    return "\n".join([title, (
        "What the Train page (and `python -m distill_core estimate`) tells before Start when the store has no past "
        "runs and the probe cache is cold, so the estimate comes from the probe, against the same command run for "
        "real right after it with a cold cache (the teacher's logit pass inside the clock). *Actual* = the "
        "command's wall time. "
        + (f"*Before* = the estimate of the version at `{result['baseline']}`, asked the same way. " if before else "")
        + "Each case ran once: a single run on a 2-core machine moves by about 10%.\n"),
        table(head, rows) + "\n",
        "Per phase (seconds; *preparing* actual = the wall time no phase recorded: start-up, imports, loading the "
        "models):\n",
        table(["case", "phase", "estimate", *(["before"] if before else []), "actual", "estimate / actual"],
              phase_rows if before else [r[:3] + r[4:] for r in phase_rows]) + "\n",
        provenance(result) + "\n"])

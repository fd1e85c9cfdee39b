"""BENCHMARKS.md sections 7f and 7g: where each training loop's time goes, and the ceiling that sets on the
ratios.

Issue 11 asks that a missed target come with "the profile that explains it". Every loop in
benchmarks/peers_train.py times its phases under the same names (KD Studio's own phase timer; the Trainer recipe
and the seed loop time theirs in benchmarks/trainer_recipe.py and seed_loop.py), so one table sets them side by
side. The arithmetic is Amdahl's: a ratio target against a peer fixes how long KD Studio may take in all; what its
phases other than the student's training already take is then the most the training may use.
"""
from __future__ import annotations

import statistics
from typing import Any

from report_format import f, table
from report_peers import LABELS, SEED_TARGET, TRAINER_TARGET, _best_trainer

# Phase names as the loops record them, in the order a run meets them, with what each holds.
PHASES = (("startup", "startup: imports, model loading, process exit"),
          ("tokenising", "tokenising"),
          ("teacher_logits", "teacher forward (KD Studio: once per training row; peers: every batch of every epoch)"),
          ("training", "student training: forward, loss, backward, clip and update"),
          ("extra_accuracy_forward", "extra forward to score training accuracy (seed loop)"),
          ("validation", "validation, once per epoch"),
          ("saving", "saving the model"))
AFTER_SAVE = ("test_evaluation",)  # KD Studio scores the test split after the model is saved: outside the clock


def run_phases(run: dict[str, Any]) -> dict[str, float]:
    """One run's seconds per phase up to the saved model; `startup` is what the phase timers do not cover."""
    timed = {name: s for name, s in (run.get("phases_s") or {}).items() if name not in AFTER_SAVE}
    return {"startup": run["to_saved_model_s"] - sum(timed.values()), **timed}


def median_phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median over rounds of each phase (a phase a loop does not have is left out)."""
    per_run = [run_phases(run) for run in runs if run.get("phases_s")]
    names = {name for phases in per_run for name in phases}
    return {name: statistics.median(p.get(name, 0.0) for p in per_run) for name in names} if per_run else {}


def training_budget(kd: dict[str, float], peer_total_s: float, target: float) -> dict[str, float]:
    """What reaching `target` x against a peer taking `peer_total_s` leaves for KD Studio's student training.

    allowed_total_s: KD Studio's whole time at the target; other_s: its phases other than training, as measured;
    training_allowed_s: what is left for training (negative: out of reach even if training took no time);
    training_speedup_needed: how much faster the training would have to get (inf where out of reach).
    """
    allowed = peer_total_s / target
    other = sum(s for name, s in kd.items() if name != "training")
    left = allowed - other
    return {"allowed_total_s": allowed, "other_s": other, "training_allowed_s": left,
            "training_speedup_needed": kd["training"] / left if left > 0 else float("inf")}


def _phase_table(medians: dict[str, dict[str, float]]) -> str:
    names = list(medians)
    rows = []
    for phase, label in PHASES:
        if not any(phase in medians[n] for n in names):
            continue
        rows.append([label] + [f(medians[n].get(phase)) if phase in medians[n] else "—" for n in names])
    rows.append(["**to a saved model**"] + [f"**{f(sum(medians[n].values()))}**" for n in names])
    return table(["phase (median s over rounds)"] + [LABELS.get(n, n) for n in names], rows)


def _budget_rows(medians: dict[str, dict[str, float]]) -> list[list[Any]]:
    kd = medians["kd_studio"]
    rows = []
    for name, phases in medians.items():
        target = _target(name)
        if target is None:
            continue
        budget = training_budget(kd, sum(phases.values()), target)
        need = budget["training_speedup_needed"]
        rows.append([LABELS.get(name, name), f"{target:g}x", f(sum(phases.values())), f(budget["allowed_total_s"]),
                     f(budget["other_s"]), f(budget["training_allowed_s"]), f(kd["training"]),
                     "out of reach: the other phases alone exceed it" if need == float("inf") else f"{need:.2f}x"])
    return rows


def _target(peer: str) -> float | None:
    """The ratio issue 11 asks of KD Studio against ``peer`` (None: not a peer with a target)."""
    return SEED_TARGET if peer == "seed" else TRAINER_TARGET if peer.startswith("trainer_") else None


def why_text(medians: dict[str, dict[str, float]], trainer: str | None) -> str:
    """The explanation in words, from the numbers (also quoted under the targets table), for the peers the targets
    name: ``trainer`` (the Trainer variant the targets table compares with) and the seed loop."""
    kd = medians["kd_studio"]
    total = sum(kd.values())
    parts = [f"KD Studio spends {f(kd['training'])} s of its {f(total)} s in the student's own training "
             f"({100 * kd['training'] / total:.0f}%)"]
    for name in (trainer, "seed"):
        phases = medians.get(name or "", {})
        target = _target(name or "")
        if target is None or "training" not in phases:
            continue
        peer_total = sum(phases.values())
        budget = training_budget(kd, peer_total, target)
        reach = (f"at {target:g}x KD Studio would have {f(budget['allowed_total_s'])} s in all, less than the "
                 f"{f(budget['other_s'])} s its other phases take, so no faster student step reaches it"
                 if budget["training_allowed_s"] <= 0 else
                 f"at {target:g}x KD Studio would have {f(budget['allowed_total_s'])} s in all: its student training "
                 f"would have to run {budget['training_speedup_needed']:.2f}x faster")
        parts.append(f"{LABELS.get(name, name)} takes {f(peer_total)} s, of which {f(phases['training'])} s train the "
                     f"student (x{phases['training'] / kd['training']:.2f} KD Studio's) and "
                     f"{f(phases.get('teacher_logits'))} s run the teacher on every batch (KD Studio: one pass, "
                     f"{f(kd.get('teacher_logits'))} s)"
                     + (f", {f(phases['extra_accuracy_forward'])} s an extra forward for training accuracy"
                        if phases.get("extra_accuracy_forward") else "") + f"; {reach}")
    return "; ".join(parts) + "."


def phase_medians(result: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per loop, the median seconds per phase over the result's rounds; {} where KD Studio's were not recorded."""
    medians = {name: median_phases(runs) for name, runs in ((result or {}).get("runs") or {}).items()}
    medians = {name: m for name, m in medians.items() if m}
    return medians if "kd_studio" in medians else {}


def _trainer_of_targets(result: dict[str, Any]) -> str | None:
    """The Trainer variant the targets table compares with (report_peers._best_trainer: fastest median)."""
    best = _best_trainer(result.get("summary") or {})
    return best[0] if best else None


def section_phases(result: dict[str, Any] | None) -> str:
    """The subsection under the peers table of the same runs (report.py places it)."""
    medians = phase_medians(result)
    if not medians:
        return ""
    return "\n".join([
        "### Where each loop's time goes, and the ceiling it sets on the ratios\n",
        "The runs above, timed by each loop's own phase timer (KD Studio's `phase_end` events; "
        "`benchmarks/trainer_recipe.py` and `seed_loop.py` time theirs under the same names: on a CPU every op is "
        "synchronous, so a clock around a call is its cost). *Startup* is what no phase covers.\n",
        _phase_table(medians) + "\n",
        why_text(medians, _trainer_of_targets(result or {})) + "\n",
        "What each target leaves for KD Studio's student training (Amdahl: the target fixes KD Studio's whole "
        "time; its other phases, as measured, take their share first):\n",
        table(["peer", "target", "peer s", "KD Studio allowed s", "KD Studio's other phases s",
               "left for training s", "KD Studio's training now s", "training must get faster by"],
              _budget_rows(medians)) + "\n",
    ])


def targets_note(result: dict[str, Any] | None, section: str) -> str:
    """One paragraph under the targets table: why the training targets are missed, pointing at the profile."""
    medians = phase_medians(result)
    if not medians:
        return ""
    return (f"Why the training targets are missed (the profile in section {section}): "
            f"{why_text(medians, _trainer_of_targets(result or {}))}\n")

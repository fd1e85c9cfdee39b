"""The estimate a newcomer is told before Start, against the run's real time, on a cold machine.

    python benchmarks/estimate_accuracy.py --teacher RUN_DIR [--baseline CHECKOUT]
        -> benchmarks/results/estimate_accuracy.json (BENCHMARKS.md section 11)

For each case it asks `python -m distill_core estimate` (a fresh cache and an empty store: the estimate comes from
the probe, as on a first visit), then runs the same command line for real (the same fresh cache: the teacher's
pass is paid) and records the process's wall time and the seconds of every phase the run recorded. Cases: the
Offline quick start pipeline (bundled data), and section 7's distillation (`truncate:3` of a MiniLM teacher, 2,000
AG News rows, 2 epochs) in the precision `auto` picks here and in fp32. With ``--baseline`` the estimate is also
asked from another checkout (e.g. a clone of the version before a change), for a before/after column.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import AG_NEWS, REPO, header, offline_env, run_child, write_result

SECTION_7 = ["--student", "truncate:3", "--train-samples", "2000", "--eval-samples", "2000", "--epochs", "2",
             "--batch-size", "32", "--lr", "1e-4", "--max-length", "128", "--temperature", "2", "--alpha", "0.5",
             "--seed", "42"]
QUICK_START = ["--preset", "Offline quick start", "--data", "ag_news_sample"]


def cases(teacher: Path, data: Path) -> list[dict[str, Any]]:
    distill = ["--teacher", str(teacher), "--data", str(data), *SECTION_7]
    return [
        {"name": "Offline quick start (pipeline: fine-tune the bundled MiniLM, then distil it)",
         "estimate": QUICK_START, "run": ["pipeline", *QUICK_START, "--out", "{runs}/quick"]},
        {"name": "distil `truncate:3`, 2,000 rows x 2 epochs, `--mixed-precision auto` (the default)",
         "estimate": distill, "run": ["distill", *distill, "--out", "{runs}/auto"]},
        {"name": "the same, `--mixed-precision no` (fp32)",
         "estimate": [*distill, "--mixed-precision", "no"],
         "run": ["distill", *distill, "--mixed-precision", "no", "--out", "{runs}/fp32"]},
    ]


def ask_estimate(checkout: Path, flags: list[str], work: Path) -> dict[str, Any]:
    """`estimate`'s JSON from ``checkout`` with a cold cache and no past runs (so the probe answers)."""
    env = offline_env(work / "estimate-cache")
    env["PYTHONPATH"] = str(checkout)
    (work / "no-runs").mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "distill_core", "estimate", *flags, "--runs-dir",
                           str(work / "no-runs")], env=env, cwd=checkout, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: estimate failed in {checkout}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def phases_of(runs_dir: Path) -> dict[str, float]:
    """Seconds per phase, summed over the runs (a pipeline's two stages), from their phase_end rows."""
    spent: dict[str, float] = {}
    for metrics in runs_dir.glob("*/metrics.jsonl"):
        for line in metrics.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kind") == "phase_end":
                spent[row["phase"]] = spent.get(row["phase"], 0.0) + float(row["seconds"])
    return {phase: round(seconds, 1) for phase, seconds in spent.items()}


def precisions_of(runs_dir: Path) -> list[str]:
    found = []
    for config in sorted(runs_dir.glob("*/config.json")):
        provenance = json.loads(config.read_text(encoding="utf-8")).get("provenance", {})
        found.append(f"{config.parent.name}: {provenance.get('mixed_precision')}")
    return found


def measure(case: dict[str, Any], work: Path, baseline: Path | None) -> dict[str, Any]:
    told = ask_estimate(REPO, case["estimate"], work)
    before = ask_estimate(baseline, case["estimate"], work / "baseline") if baseline else None
    runs_dir = work / "runs"
    argv = [a.replace("{runs}", str(runs_dir)) for a in case["run"]]
    env = offline_env(work / "run-cache")  # cold: the teacher's logit pass is inside the clock
    env["KD_RUNS_DIR"] = str(runs_dir)
    load_start = list(os.getloadavg())
    child = run_child([sys.executable, "-m", "distill_core", *argv, "--quiet"], env=env, log=work / "run.log")
    if child["returncode"] != 0:
        raise SystemExit(f"error: {argv[0]} failed:\n{(work / 'run.log').read_text(encoding='utf-8')[-3000:]}")
    phases = phases_of(runs_dir)
    print(f"[estimate] {case['name']}: told {told['seconds']:.0f} s ({told['source']}), took "
          f"{child['wall_s']:.0f} s" + (f"; before: {before['seconds']:.0f} s" if before else ""), file=sys.stderr)
    return {"name": case["name"], "estimate": told, "baseline_estimate": before,
            "actual_wall_s": round(child["wall_s"], 1), "actual_phases_s": phases,
            "not_in_a_phase_s": round(child["wall_s"] - sum(phases.values()), 1),
            "precisions": precisions_of(runs_dir), "load_start": load_start, "load_end": list(os.getloadavg())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a finished fine-tune run folder (model/)")
    parser.add_argument("--data", type=Path, default=AG_NEWS)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout: its estimate, for comparison")
    parser.add_argument("--name", default="estimate_accuracy")
    args = parser.parse_args()
    if not (args.teacher / "model").is_dir():
        parser.error(f"--teacher {args.teacher}: no trained model there (expected a run folder with model/)")
    result = header("estimate_accuracy")
    result["baseline"] = str(args.baseline) if args.baseline else None
    result["cases"] = []
    for index, case in enumerate(cases(args.teacher / "model", args.data)):
        with tempfile.TemporaryDirectory(prefix=f"kd-estimate-{index}-") as tmp:
            result["cases"].append(measure(case, Path(tmp), args.baseline))
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

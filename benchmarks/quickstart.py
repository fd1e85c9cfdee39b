"""The Offline quick start as a new user meets it: a fresh clone with no ../shared, the README's command, a cold
cache, timed from the command to both finished runs.

    python benchmarks/quickstart.py            # -> benchmarks/results/quickstart.json (BENCHMARKS.md's target row)

It clones this repository's committed HEAD into a temporary folder (so nothing outside the clone can be found),
runs `python -m distill_core pipeline --preset "Offline quick start" --data ag_news_sample --out runs/quick` there
with empty KD_CACHE_DIR and KD_RUNS_DIR, and records the wall time, the peak RSS of the process, each stage's
phase times and both runs' test accuracy (on the sample's 200 test rows) with the load average around it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import REPO, header, offline_env, run_child, write_result

COMMAND = ["-m", "distill_core", "pipeline", "--preset", "Offline quick start", "--data", "ag_news_sample",
           "--out", "runs/quick", "--quiet"]


def stage_record(run_dir: Path) -> dict[str, Any]:
    """A stage's state, accuracy and where its time went (the run's own phase timer)."""
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    spent = status.get("progress", {}).get("spent", {})
    return {"run": run_dir.name, "state": status.get("state"), "test_accuracy": status.get("test_accuracy"),
            "best_valid_accuracy": status.get("best_valid_accuracy"), "wall_s": status.get("wall_s"),
            "phases_s": {phase: round(seconds, 1) for phase, seconds in spent.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="quickstart", help="results/<name>.json")
    args = parser.parse_args()
    result = header("quickstart")
    with tempfile.TemporaryDirectory(prefix="kd-quickstart-") as tmp:
        clone = Path(tmp) / "kd-studio"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        assert not (clone.parent / "shared").exists(), "the clone must not see ../shared"
        env = offline_env(Path(tmp) / "cache")
        env["KD_RUNS_DIR"] = str(clone / "runs")
        child = run_child([sys.executable, *COMMAND], env=env, log=Path(tmp) / "quickstart.log", cwd=clone)
        if child["returncode"] != 0:
            print((Path(tmp) / "quickstart.log").read_text(encoding="utf-8")[-3000:], file=sys.stderr)
            sys.exit(f"error: the quick start failed ({child['returncode']})")
        stages = [stage_record(d) for d in sorted((clone / "runs").iterdir()) if (d / "status.json").is_file()]
    result.update({"command_run": "python " + " ".join(f'"{a}"' if " " in a else a for a in COMMAND),
                   "wall_s": child["wall_s"], "peak_rss_mb": child["peak_rss_mb"],
                   "user_cpu_s": child["user_cpu_s"], "stages": stages})
    print(f"[quickstart] {child['wall_s']:.0f} s wall, peak {child['peak_rss_mb']:.0f} MB; "
          + "; ".join(f"{s['run']}: test {s['test_accuracy']}" for s in stages), file=sys.stderr)
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

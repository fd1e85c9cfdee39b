"""The CUDA path, proved on a machine with a GPU: the same distillation in fp32, bf16 and fp16 mixed precision
(and on every GPU at once through `accelerate launch` when there are several), each with its throughput and test
accuracy. One script, run once where the `device` tool lends a GPU; never part of CI.

    python benchmarks/gpu_check.py                 # on the GPU machine: -> benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --smoke         # on a CPU: the script itself (fp32 only, a few steps)

Every run is the real CLI a user types, on the repository's own `ag_news_sample` (no ../shared, no Hub): a teacher
fine-tuned once from the bundled MiniLM-L6 (`finetune`), then `distill --mixed-precision P` into `truncate:3`.
`train_samples_per_s` is the run's own training throughput (status.json); accuracy is on the sample's test rows.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import REPO, header, offline_env, run_child, write_result

DATA = ["--data", "ag_news_sample", "--max-length", "128", "--quiet"]
TEACHER = ["finetune", "--model", "bundled:minilm-l6", "--epochs", "2", "--lr", "1e-4", "--batch-size", "32"]
STUDENT = ["--student", "truncate:3", "--epochs", "3", "--lr", "1e-4", "--batch-size", "64", "--patience", "0"]


def cuda_facts() -> dict[str, Any]:
    code = ("import json, torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
            "print(json.dumps({'cuda': torch.cuda.is_available(), 'devices': n, 'torch': torch.__version__,\n"
            " 'cuda_version': torch.version.cuda, 'names': [torch.cuda.get_device_name(i) for i in range(n)],\n"
            " 'bf16_supported': bool(n) and torch.cuda.is_bf16_supported()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout)


def run_cli(argv: list[str], work: Path, name: str, launcher: list[str] | None = None) -> dict[str, Any]:
    """One CLI run as a child process; its status (throughput, accuracy, wall) and the process's own figures."""
    command = [*(launcher or [sys.executable]), "-m", "distill_core", *argv, "--out", str(work / name)]
    child = run_child(command, env=offline_env(work / "cache"), log=work / f"{name}.log", timeout_s=3600)
    status_path = work / name / "status.json"
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    record = {"run": name, "command": " ".join(command[1:] if not launcher else command), "returncode":
              child["returncode"], "wall_s": round(child["wall_s"], 1), "state": status.get("state"),
              "train_samples_per_s": status.get("train_samples_per_s"), "test_accuracy": status.get("test_accuracy"),
              "best_valid_accuracy": status.get("best_valid_accuracy"), "error": status.get("error")}
    if child["returncode"] != 0:
        record["log_tail"] = (work / f"{name}.log").read_text(errors="replace")[-2000:]
    print(f"[gpu] {name}: {record['state']} {record['train_samples_per_s']} samples/s, test "
          f"{record['test_accuracy']}", file=sys.stderr, flush=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU check of the script: fp32, a few steps")
    parser.add_argument("--name", default=None, help="results/<name>.json (default gpu_check[_smoke])")
    args = parser.parse_args()
    facts = cuda_facts()
    if not facts["cuda"] and not args.smoke:
        sys.exit("error: no CUDA device here; run with --smoke to check the script on a CPU")
    precisions = ["no"] if args.smoke else ["no", "bf16", "fp16"] if facts["bf16_supported"] else ["no", "fp16"]
    short = ["--max-steps", "4", "--train-samples", "128", "--eval-samples", "64"] if args.smoke else []
    result = {**header("gpu_check"), "cuda": facts, "runs": []}
    with tempfile.TemporaryDirectory(prefix="kd-gpu-check-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        teacher = run_cli([*TEACHER, *DATA, *short], work, "teacher")
        result["runs"].append(teacher)
        distill = ["distill", "--teacher", str(work / "teacher"), *STUDENT, *DATA, *short]
        for precision in precisions:
            result["runs"].append(run_cli([*distill, "--mixed-precision", precision], work, f"student-{precision}"))
        if facts["devices"] > 1 and shutil.which("accelerate"):
            launcher = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(facts["devices"])]
            best = "bf16" if "bf16" in precisions else "fp16"
            result["runs"].append(run_cli([*distill, "--mixed-precision", best], work,
                                          f"student-{best}-{facts['devices']}gpu", launcher=launcher))
    write_result(args.name or ("gpu_check_smoke" if args.smoke else "gpu_check"), result)
    return 0 if all(r["returncode"] == 0 for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())

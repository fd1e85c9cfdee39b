"""Peak memory (resident set) of a distillation run and of the dashboard serving the offline teacher/student pair.

1. Distillation: `python -m distill_core distill` (teacher-minilm -> truncate:3, AG News, fresh caches) as a child
   process; its peak RSS is `ru_maxrss` from `os.wait4` on that child. The offline reference runs were started
   under `/usr/bin/time -v`; their "Maximum resident set size" is read from their logs when present (full 8,000-row
   training, 4 epochs, batch 32) as a second data point.
2. The app: `python -m streamlit run streamlit_app.py` headless on a free localhost port, with a runs folder holding a
   copy of the distilled student-kd run (whose teacher is teacher-minilm). Headless Chromium (Playwright) opens the
   Playground, whose default selection is that student and its teacher; the script waits until both predictions
   are drawn, i.e. both models are loaded through the Playground's own `st.cache_resource` ->
   `inference.load_for_inference` path at fp32, then reads the server's peak RSS (VmHWM) and current RSS. If the
   browser cannot start, it falls back to loading both models with `inference.load_for_inference` in a child
   process (the Playground's call) and says so in the JSON.

3. Stages: where a distillation run's memory goes. A child process runs `train.prepare` and `train.execute` (the
   CLI's foreground path) with an event callback that reads its own VmRSS and VmHWM (/proc/self/status) as each
   stage ends: after imports, data load, teacher load, student build, tokenising, teacher logits,
   accelerate.prepare, the first optimizer step, the first epoch, the test evaluation, and the peak. The teacher is
   a MiniLM-L6 fine-tuned on AG News when ``--teacher`` (default: the offline chain's teacher, else
   /tmp/m12runs/teacher) exists, else the bundled MiniLM-L6 with a seeded random head (memory does not depend on
   the weights' values).

    python benchmarks/memory.py           # ~8 minutes on 2 shared cores
    python benchmarks/memory.py --parts stages --train-samples 2000
    python benchmarks/memory.py --smoke
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    AG_NEWS,
    OFFLINE,
    REPO,
    header,
    offline_env,
    read_result,
    require_offline_models,
    run_child,
    write_result,
)

GIB = 1024.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--parts", nargs="+", choices=["stages", "distill", "app"],
                        default=["stages", "distill", "app"])
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="stages part: validation and test rows (default: all; --smoke: 64)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="fine-tuned teacher run or model folder for the stages part (default: see above)")
    parser.add_argument("--label", default="", help="stored with the stages result, e.g. 'before' / 'after'")
    parser.add_argument("--stages-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--app-timeout-s", type=float, default=420)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.train_samples = 128
    return args


def distill_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    (teacher,) = require_offline_models("teacher-minilm")
    argv = [sys.executable, "-m", "distill_core", "distill", "--data", str(AG_NEWS), "--teacher", str(teacher),
            "--student", "truncate:3", "--train-samples", str(args.train_samples), "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--out", str(work / "distill-run"), "--quiet"]
    if args.smoke:
        argv += ["--eval-samples", "64"]
    env = offline_env(work / "distill-cache")
    env["KD_RUNS_DIR"] = str(work)
    child = run_child(argv, env=env, log=work / "distill.log", timeout_s=900)
    if child["returncode"] != 0:
        raise SystemExit(f"error: distill failed; see {work / 'distill.log'}:\n"
                         + (work / "distill.log").read_text(errors="replace")[-3000:])
    config = json.loads((work / "distill-run" / "config.json").read_text())
    child["split_sizes"] = config["provenance"]["split_sizes"]
    child["command"] = " ".join(argv[1:])
    return child


# ----------------------------------------------------------------------------------------------------------------
# stages: where a distillation run's resident set goes

MIB = 1024.0 * 1024.0


def _own_memory_mb() -> dict[str, float]:
    """This process's resident set now (VmRSS) and its peak so far (VmHWM), in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values["rss_mb" if key == "VmRSS" else "peak_mb"] = round(int(rest.split()[0]) / 1024.0, 1)
    return values


def _stage_of(event: dict[str, Any], seen: set[str]) -> str | None:
    """The stage that has just ended when ``event`` arrives (each named once), or None.

    The events are the run's own progress events: "loading teacher" is emitted after the data is loaded, the
    teacher-logits phase starts after tokenising, the last teacher_progress row ends the teacher pass, "start"
    follows accelerate.prepare, the first step row follows the first optimizer step (log_every_steps=1)."""
    kind, words = event.get("kind"), str(event.get("phase", ""))
    stage = None
    if kind == "phase" and words.startswith("preparing: loading teacher"):
        stage = "data loaded"
    elif kind == "phase" and words.startswith("preparing: loading student"):
        stage = "teacher loaded"
    elif kind == "phase" and event.get("id") == "tokenising":
        stage = "student built"
    elif kind == "phase" and event.get("id") == "teacher_logits":
        stage = "splits tokenised"
    elif kind == "teacher_progress" and event.get("split") == "train" and event["done"] >= event["total"]:
        stage = "teacher logits (train)"
    elif kind == "start":
        stage = "accelerate.prepare"
    elif kind == "step":
        stage = "first optimizer step"
    elif kind == "epoch":
        stage = "first epoch (+ validation)"
    elif kind == "phase" and event.get("id") == "test_evaluation":
        stage = "model saved"
    if stage is None or stage in seen:
        return None
    seen.add(stage)
    return stage


def stages_child(spec_path: Path) -> None:
    """Run one distillation in this process and record the resident set as each stage ends (see the docstring)."""
    spec = json.loads(spec_path.read_text())
    marks: list[dict[str, Any]] = []
    started = time.perf_counter()

    def mark(stage: str) -> None:
        marks.append({"stage": stage, **_own_memory_mb(), "t_s": round(time.perf_counter() - started, 1)})

    mark("python started")
    import accelerate  # noqa: F401  (what a run imports, measured as one stage)
    import datasets  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from distill_core import train
    from distill_core.config import DataConfig, TrainConfig

    mark("imports")
    config = TrainConfig(
        mode="distill", student="truncate:3", teacher=spec["teacher"], epochs=spec["epochs"],
        batch_size=spec["batch_size"], lr=1e-4, log_every_steps=1, seed=42,
        data=DataConfig(source=spec["data"], train_samples=spec["train_samples"],
                        eval_samples=spec.get("eval_samples"), transfer=spec.get("transfer"),
                        transfer_samples=spec.get("transfer_samples")))
    seen: set[str] = set()

    def on_event(event: dict[str, Any]) -> None:
        stage = _stage_of(event, seen)
        if stage:
            mark(stage)

    prepared = train.prepare(config, on_event=on_event)
    run_dir = Path(spec["run_dir"])
    from distill_core import runs

    runs.create_run(run_dir.parent, run_dir.name, train.run_record(prepared))
    train.execute(prepared, run_dir, on_event=on_event)
    mark("test evaluation (end)")
    result = {"marks": marks, "peak_rss_mb": _own_memory_mb()["peak_mb"], "torch_threads": torch.get_num_threads(),
              "split_sizes": json.loads((run_dir / "config.json").read_text())["provenance"]["split_sizes"]}
    Path(spec["out"]).write_text(json.dumps(result, indent=2))


def _stages_teacher(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """A fine-tuned MiniLM-L6 teacher if one exists, else the bundled MiniLM-L6 with a seeded random head."""
    candidates = [args.teacher] if args.teacher else [OFFLINE / "teacher-minilm", Path("/tmp/m12runs/teacher")]
    for candidate in candidates:
        for folder in (candidate / "model", candidate):
            if folder.is_dir() and (folder / "config.json").is_file() and list(folder.glob("*.safetensors")):
                return folder, "fine-tuned on AG News"
    code = ("import sys, torch; from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            "from distill_core.specs import bundled_path; from distill_core.models import label_maps\n"
            "torch.manual_seed(0); names = ['World', 'Sports', 'Business', 'Sci/Tech']\n"
            "model = AutoModelForSequenceClassification.from_pretrained(bundled_path(), **label_maps(names))\n"
            "model.config.architectures = ['BertForSequenceClassification']\n"
            "model.save_pretrained(sys.argv[1], safe_serialization=True)\n"
            "AutoTokenizer.from_pretrained(bundled_path()).save_pretrained(sys.argv[1])\n")
    folder = work / "bundled-teacher-with-head"
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=REPO, env=offline_env())
    return folder, "bundled MiniLM-L6 with a random head (no fine-tuned teacher found)"


def stages_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    teacher, teacher_kind = _stages_teacher(args, work)
    spec = {"teacher": str(teacher), "data": str(AG_NEWS), "train_samples": args.train_samples,
            "epochs": args.epochs, "batch_size": args.batch_size,
            "eval_samples": 64 if args.smoke else args.eval_samples,
            "run_dir": str(work / "stages-runs" / "run"), "out": str(work / "stages.json")}
    (work / "stages-spec.json").write_text(json.dumps(spec))
    argv = [sys.executable, str(Path(__file__).resolve()), "--stages-child", str(work / "stages-spec.json")]
    child = run_child(argv, env=offline_env(work / "stages-cache"), log=work / "stages.log", timeout_s=1800)
    if child["returncode"] != 0:
        log_tail = (work / "stages.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"error: the stages child failed:\n{log_tail}")
    found = json.loads((work / "stages.json").read_text())
    marks = found["marks"]
    for before, after in zip([{"rss_mb": 0.0}, *marks[:-1]], marks, strict=True):
        after["delta_rss_mb"] = round(after["rss_mb"] - before["rss_mb"], 1)
    return {"label": args.label, "teacher": str(teacher), "teacher_kind": teacher_kind,
            "settings": {k: spec[k] for k in ("train_samples", "epochs", "batch_size", "eval_samples")},
            "split_sizes": found["split_sizes"], "torch_threads": found["torch_threads"],
            "marks": marks, "peak_rss_mb": found["peak_rss_mb"], "child_ru_maxrss_mb": child["peak_rss_mb"],
            "wall_s": round(child["wall_s"], 1), "load_average": list(os.getloadavg())}


def reference_runs_memory() -> list[dict[str, Any]]:
    """'Maximum resident set size' of the offline chain's runs (started under /usr/bin/time -v), if logged."""
    found = []
    for log in sorted(OFFLINE.glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
        command = re.search(r'Command being timed: "([^"]+)"', text)
        if match:
            found.append({"log": str(log), "peak_rss_mb": int(match.group(1)) / 1024.0,
                          "wall": wall.group(1) if wall else None,
                          "command": command.group(1) if command else None})
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_status_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values


def _copy_run(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for name in ("config.json", "status.json", "eval.json", "metrics.jsonl"):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    shutil.copytree(source / "model", target / "model")


def app_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    teacher, student = require_offline_models("teacher-minilm", "student-kd")
    root = work / "app-runs"
    _copy_run(student, root / student.name)
    env = offline_env(work / "app-cache")
    env.update(KD_RUNS_DIR=str(root), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    port = _free_port()
    argv = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with open(work / "streamlit.log", "w") as log:
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        result: dict[str, Any] = {"mode": "streamlit server + headless Chromium on the Playground", "port": port,
                                  "models": [str(teacher), str(student)], "precision": "fp32"}
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 120
            import urllib.request

            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read()
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        log_text = (work / "streamlit.log").read_text()
                        raise SystemExit(f"error: streamlit did not start; log:\n{log_text}") from None
                    time.sleep(0.5)
            result["idle_server"] = _proc_status_mb(server.pid)
            try:
                from playwright.sync_api import sync_playwright

                start = time.perf_counter()
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=shutil.which("chromium") or None, headless=True,
                                                 args=["--no-sandbox"])
                    page = browser.new_page()
                    page.goto(url, timeout=120_000)
                    page.locator('[data-testid="stSidebarNav"] a', has_text="Playground").click(timeout=120_000)
                    page.get_by_role("heading", name="Playground", exact=True).wait_for(timeout=120_000)
                    # Each model card shows a "Prediction" metric once that model is loaded and has predicted.
                    page.locator('[data-testid="stMetric"]').nth(1).wait_for(timeout=args.app_timeout_s * 1000)
                    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                           state="attached", timeout=args.app_timeout_s * 1000)
                    result["predictions_drawn"] = page.locator('[data-testid="stMetric"]').count()
                    result["prediction_cards"] = page.locator('[data-testid="stMetric"]').all_inner_texts()
                    result["seconds_to_both_predictions"] = time.perf_counter() - start
                    time.sleep(2)  # let the script run finish (figures) before reading the peak
                    result["loaded_server"] = _proc_status_mb(server.pid)
                    browser.close()
            except Exception as exc:  # no browser here: load the pair the way the Playground does, in a child
                result["browser_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                result["mode"] = "fallback: inference.load_for_inference of both models in a child process"
                code = ("import sys; from distill_core import inference\n"
                        "models = [inference.load_for_inference(p, 'fp32') for p in sys.argv[1:]]\n"
                        "[inference.predict_texts(m, ['Stocks rallied after the central bank held rates.']) "
                        "for m in models]\n")
                child = run_child([sys.executable, "-c", code, str(teacher), str(root / student.name)], env=env)
                result["loaded_server"] = {"VmHWM": child["peak_rss_mb"]}
        finally:
            server.terminate()
            try:
                _, _, usage = __import__("os").wait4(server.pid, 0)
                result["server_ru_maxrss_mb"] = usage.ru_maxrss / 1024.0
            except ChildProcessError:
                pass
    result["peak_rss_mb"] = result["loaded_server"]["VmHWM"]
    result["target_mb"] = 2 * GIB
    result["meets_target"] = result["peak_rss_mb"] < 2 * GIB
    return result


def main() -> int:
    args = parse_args()
    if args.stages_child:
        stages_child(args.stages_child)
        return 0
    result = header("memory")
    result["settings"] = vars(args)
    with tempfile.TemporaryDirectory(prefix="kd-memory-bench-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        if "stages" in args.parts:
            print("[memory] stages ...", file=sys.stderr, flush=True)
            # Stages measured under another label (before/after a change) are kept beside this one.
            earlier = (read_result("memory") or {}).get("stages", {})
            result["stages"] = {**earlier, args.label or "latest": stages_memory(args, work)}
        if "distill" in args.parts:
            print("[memory] distill ...", file=sys.stderr, flush=True)
            result["distill"] = distill_memory(args, work)
            result["reference_runs"] = reference_runs_memory()
        if "app" in args.parts:
            print("[memory] app ...", file=sys.stderr, flush=True)
            result["app"] = app_memory(args, work)
        if not args.smoke:  # parts not measured this time keep their last measurement
            result = {**{k: v for k, v in (read_result("memory") or {}).items() if k in ("distill", "reference_runs",
                                                                                      "app")}, **result}
        write_result("memory_smoke" if args.smoke else "memory", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

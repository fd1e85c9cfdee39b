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

    python benchmarks/memory.py           # ~8 minutes on 2 shared cores
    python benchmarks/memory.py --smoke
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import AG_NEWS, OFFLINE, REPO, header, offline_env, require_offline_models, run_child, write_result

GIB = 1024.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--parts", nargs="+", choices=["distill", "app"], default=["distill", "app"])
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
    work = Path(tempfile.mkdtemp(prefix="kd-memory-bench-"))
    result = header("memory")
    result["settings"] = vars(args)
    try:
        if "distill" in args.parts:
            print("[memory] distill ...", file=sys.stderr, flush=True)
            result["distill"] = distill_memory(args, work)
            result["reference_runs"] = reference_runs_memory()
        if "app" in args.parts:
            print("[memory] app ...", file=sys.stderr, flush=True)
            result["app"] = app_memory(args, work)
        write_result("memory_smoke" if args.smoke else "memory", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

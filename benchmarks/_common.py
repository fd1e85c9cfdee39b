"""Shared by the benchmark scripts: where results go, how they are written, and what each result records.

Every script writes one JSON file into benchmarks/results/ holding its numbers, the exact command that produced
them, the machine (`distill_core.hardware.machine_info`), the thread count and the date; `benchmarks/report.py`
rebuilds BENCHMARKS.md from those files only, so no number in it is typed by hand.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OFFLINE = Path(os.environ.get("KD_OFFLINE_RUNS", "/work/runs_offline"))  # the reference runs (teacher, students)
AG_NEWS = Path(os.environ.get("KD_AG_NEWS", REPO.parent / "shared" / "data" / "ag_news"))


def command_line() -> str:
    """The command as typed, relative to the repository root, for the 'reproduce with' line of each table."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", shlex.quote(script_text), *map(shlex.quote, sys.argv[1:])])


def header(kind: str) -> dict[str, Any]:
    from distill_core.hardware import machine_info

    return {"benchmark": kind, "command": command_line(), "machine": machine_info(),
            "load_average_at_start": list(os.getloadavg())}


def write_result(name: str, result: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Atomic write (temp file + rename): a reader never sees half a result."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {**result, "load_average_at_end": list(os.getloadavg()),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = out_dir / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}", file=sys.stderr)
    return path


def read_result(name: str, out_dir: Path | None = None) -> dict[str, Any] | None:
    path = (out_dir or RESULTS) / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None,
              timeout_s: float | None = None, cwd: Path = REPO) -> dict[str, Any]:
    """Run a child process; return its exit code, wall seconds and peak RSS (from wait4, i.e. that child only).

    `ru_maxrss` of `os.wait4` is the peak resident set of the waited child (Linux: KiB), not the running maximum
    over all children that RUSAGE_CHILDREN gives, so each measurement stands alone.
    """
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") if log else contextlib.nullcontext(subprocess.DEVNULL) as handle:
        process = subprocess.Popen(list(argv), env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)
        deadline = None if timeout_s is None else start + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"argv": list(argv), "returncode": process.returncode, "wall_s": time.perf_counter() - start,
            "peak_rss_mb": usage.ru_maxrss / 1024.0, "user_cpu_s": usage.ru_utime, "system_cpu_s": usage.ru_stime}


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def offline_env(cache_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if cache_dir is not None:
        env["KD_CACHE_DIR"] = str(cache_dir)
    return env


def require_offline_models(*names: str) -> list[Path]:
    paths = [OFFLINE / name for name in names]
    missing = [str(p) for p in paths if not (p / "model" / "config.json").is_file()]
    if missing:
        sys.exit(f"error: offline reference model(s) missing: {', '.join(missing)} (run the offline chain first "
                 "or set KD_OFFLINE_RUNS)")
    return paths

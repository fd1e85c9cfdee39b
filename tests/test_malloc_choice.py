"""distill_core.malloc_choice: which malloc a training command runs on, chosen at process start (real re-exec)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill_core import malloc_choice
from distill_core.errors import UserError

LIB = "libtcmalloc_minimal.so.4"


def _plan(environ: dict[str, str], found: str | None = LIB, platform: str = "linux"):
    return malloc_choice.plan(environ, platform=platform, find=lambda: found)


@pytest.mark.parametrize("environ, found, platform, preload, why_has", [
    ({}, LIB, "linux", LIB, "KD_MALLOC=auto: tcmalloc preloaded by KD Studio"),
    ({"KD_MALLOC": "TCMalloc"}, LIB, "linux", LIB, "KD_MALLOC=tcmalloc"),
    ({}, None, "linux", None, "apt install libtcmalloc-minimal4"),
    ({"KD_MALLOC": "system"}, LIB, "linux", None, "KD_MALLOC=system"),
    ({}, LIB, "darwin", None, "not Linux"),
    ({"LD_PRELOAD": "/opt/libjemalloc.so.2"}, LIB, "linux", None, "jemalloc: LD_PRELOAD set by whoever"),
    ({"KD_MALLOC_MMAP_THRESHOLD": "1048576"}, LIB, "linux", None, "because KD_MALLOC_MMAP_THRESHOLD"),
    ({"KD_MALLOC_TRIM_EVERY": "10"}, LIB, "linux", None, "because KD_MALLOC_TRIM_EVERY"),
    ({"KD_MALLOC_TRIM_EVERY": "0"}, LIB, "linux", LIB, "preloaded by KD Studio"),  # 0 = the lever is off
    ({"KD_MALLOC": "tcmalloc", "KD_MALLOC_TRIM_EVERY": "10"}, LIB, "linux", LIB, "KD_MALLOC=tcmalloc"),
    ({"LD_PRELOAD": LIB, "KD_MALLOC_PRELOADED": "1"}, LIB, "linux", None, "preloaded by KD Studio"),
    # an explicit choice wins over what the caller preloaded (the Docker image preloads tcmalloc for everything)
    ({"LD_PRELOAD": f"{LIB}:libfoo.so", "KD_MALLOC": "system"}, LIB, "linux", "libfoo.so", "KD_MALLOC=system"),
    ({"LD_PRELOAD": LIB, "KD_MALLOC_PRELOADED": "1", "KD_MALLOC": "system"}, LIB, "linux", "", "KD_MALLOC=system"),
    ({"LD_PRELOAD": "libjemalloc.so.2", "KD_MALLOC": "tcmalloc"}, LIB, "linux", LIB, "KD_MALLOC=tcmalloc"),
    ({"LD_PRELOAD": "libfoo.so"}, LIB, "linux", f"{LIB} libfoo.so", "preloaded by KD Studio"),
])
def test_the_plan_follows_the_documented_rule(environ, found, platform, preload, why_has):
    chosen, why = _plan(environ, found, platform)
    assert chosen == preload
    assert why_has in why


def test_asking_for_tcmalloc_where_it_is_missing_or_a_bad_value_is_refused_by_name():
    with pytest.raises(UserError, match="KD_MALLOC=tcmalloc but tcmalloc is not installed: apt install"):
        _plan({"KD_MALLOC": "tcmalloc"}, found=None)
    with pytest.raises(UserError, match="KD_MALLOC must be one of auto, tcmalloc, system, got 'jemalloc'"):
        _plan({"KD_MALLOC": "jemalloc"})
    with pytest.raises(UserError, match="KD_MALLOC=tcmalloc needs Linux"):
        _plan({"KD_MALLOC": "tcmalloc"}, platform="darwin")


def test_the_re_executed_environment_is_stable_under_the_rule():
    preload, _ = _plan({"LD_PRELOAD": "libfoo.so", "PATH": "/bin"})
    environ = malloc_choice.preloading_environment({"LD_PRELOAD": "libfoo.so", "PATH": "/bin"}, preload)
    assert environ["LD_PRELOAD"] == f"{LIB} libfoo.so" and environ["PATH"] == "/bin"
    assert environ[malloc_choice.PRELOADED_HERE_ENV_VAR] == "1"
    assert _plan(environ) == (None, "KD_MALLOC=auto: tcmalloc preloaded by KD Studio at start (BENCHMARKS.md 4g)")
    # taking tcmalloc out again (KD_MALLOC=system) drops the mark and an empty LD_PRELOAD: no second re-exec
    system = {**environ, "KD_MALLOC": "system"}
    stripped = malloc_choice.preloading_environment(system, _plan(system)[0])
    assert "KD_MALLOC_PRELOADED" not in stripped and stripped["LD_PRELOAD"] == "libfoo.so"
    assert _plan(stripped) == (None, "KD_MALLOC=system: the C library's malloc")


@pytest.mark.parametrize("argv, command", [(["distill", "--data", "x"], "distill"), (["--help"], None),
                                           (["worker", "--run-dir", "r"], "worker"), ([], None)])
def test_the_command_is_the_first_word_that_is_not_a_flag(argv, command):
    assert malloc_choice.command_of(argv) == command


def test_the_record_says_when_the_preload_did_not_happen_and_why():
    assert "did not load" in malloc_choice.record_reason({"LD_PRELOAD": "libtcmalloc.so.4"}, "glibc")
    imported = malloc_choice.record_reason({"LD_PRELOAD": LIB, "KD_MALLOC": "system"}, "tcmalloc")
    assert imported.startswith("KD_MALLOC=system: tcmalloc;") and "not in a process that imports" in imported


TCMALLOC = malloc_choice.find_tcmalloc()
TINY = ["--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--train-samples", "32", "--eval-samples", "16",
        "--max-length", "32", "--quiet"]


def _finetune(tmp_path: Path, data: Path, model: Path, name: str, **env: str) -> tuple[int, dict]:
    """Run a tiny `finetune` as a real `python -m distill_core` process; (its pid as started, status.json)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "KD_MALLOC", "KD_MALLOC_PRELOADED")}
    environ.update(HF_HUB_OFFLINE="1", KD_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", **env)
    process = subprocess.Popen([sys.executable, "-m", "distill_core", "finetune", "--data", str(data), "--model",
                                str(model), "--out", str(tmp_path / name), *TINY], env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return process.pid, json.loads((tmp_path / name / "status.json").read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux") or not TCMALLOC,
                    reason="gperftools' tcmalloc is not installed (apt: libtcmalloc-minimal4)")
def test_a_training_command_reruns_itself_on_tcmalloc_keeping_its_pid(tmp_path, tiny_data_dir, tiny_teacher_dir):
    pid, status = _finetune(tmp_path, tiny_data_dir, tiny_teacher_dir, "auto")
    assert status["pid"] == pid  # execve keeps the process: the job store's pid stays the worker's
    record = status["allocator"]
    assert record["malloc"] == "tcmalloc" and "preloaded by KD Studio" in record["malloc_why"]
    assert record["malloc_trim_after_eval"] is False and record["malloc_trim_every_steps"] == 0

    _, status = _finetune(tmp_path, tiny_data_dir, tiny_teacher_dir, "system", KD_MALLOC="system")
    record = status["allocator"]
    assert record["malloc"] == "glibc" and record["malloc_why"] == "KD_MALLOC=system: the C library's malloc"
    assert record["malloc_trim_after_eval"] is True


@pytest.mark.parametrize("command", ["finetune", "pipeline"])
def test_a_bad_choice_stops_a_training_command_naming_the_variable(command, tmp_path, tiny_data_dir,
                                                                     tiny_teacher_dir):
    environ = {**os.environ, "KD_MALLOC": "fast", "HF_HUB_OFFLINE": "1", "KD_RUNS_DIR": str(tmp_path / "runs")}
    model = ["--model", str(tiny_teacher_dir)] if command == "finetune" else [
        "--base", str(tiny_teacher_dir), "--student", "truncate:1"]
    proc = subprocess.run([sys.executable, "-m", "distill_core", command, "--data", str(tiny_data_dir), *model,
                           "--out", str(tmp_path / "runs" / "bad"), *TINY],
                          env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: KD_MALLOC must be one of auto, tcmalloc, system, got 'fast'" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder made


def test_the_glibc_levers_are_the_allocator_settings_of_those_names():
    from distill_core import allocator  # the owner of the names; malloc_choice loads before it and cannot import it

    assert set(malloc_choice.GLIBC_LEVERS) == {allocator.ENV_VAR, allocator.TRIM_ENV_VAR}


def test_the_named_malloc_is_found_in_preload_values_and_process_maps():
    assert malloc_choice.malloc_named_in(f"/usr/lib/{LIB}") == "tcmalloc"
    assert malloc_choice.malloc_named_in("libfoo.so:/opt/libmimalloc.so.2") == "mimalloc"
    assert malloc_choice.malloc_named_in("libfoo.so") is None

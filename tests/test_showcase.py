"""The showcase (distill_core.showcase), built for real with the smoke recipe: the same code path as the full
build (bundled MiniLM, embedded AG News sample, fine-tune, two distillations, evaluation, benchmark) at toy size,
offline. Also: the Dockerfile's own build line run outside Docker, the read-only rule, the progress the page
shows, and the dashboard's first visit (AppTest): an empty store offers the build, a built one opens on it.

Each smoke build takes about a minute on 2 busy cores; the module builds twice (in-process locally, and the
Dockerfile's command in hosted mode) and every test reuses those two stores.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import hosting, runs, showcase, storage
from distill_core.app import catalog
from distill_core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
TIMEOUT_S = 180
SHOWCASE_LINE = "RUN python -m distill_core showcase"


def dockerfile_command() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's showcase build step (its `python -m distill_core showcase ...` part, before any `&&`)
    and the image's ENV settings, as a command line and an environment."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line.startswith(SHOWCASE_LINE)]
    assert len(lines) == 1, f"expected one line starting {SHOWCASE_LINE!r} in the Dockerfile, found {lines}"
    command = shlex.split(lines[0][len("RUN "):].split("&&")[0])
    env_block = text.split("ENV ", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    image_env = dict(item.split("=", 1) for item in shlex.split(env_block))
    return command, image_env


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> Path:
    """A fresh local store with the smoke showcase built in this process (events recorded)."""
    store = tmp_path_factory.mktemp("showcase-local") / "runs"
    events: list[dict] = []
    old = {key: os.environ.get(key) for key in ("KD_HOSTED", "KD_CACHE_DIR", "HF_HUB_OFFLINE")}
    os.environ.update(KD_CACHE_DIR=str(store.parent / "cache"), HF_HUB_OFFLINE="1")
    os.environ.pop("KD_HOSTED", None)
    try:
        result = showcase.build(store, "smoke", on_event=events.append)
    finally:
        for key, value in old.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    (store.parent / "events.json").write_text(json.dumps({"result": result, "events": events}, default=str))
    return store


@pytest.fixture(scope="module")
def docker_store(tmp_path_factory) -> Path:
    """The Dockerfile's build line, run outside Docker with the image's ENV on a fresh store, smoke recipe appended
    (so the default suite stays short: the image itself builds the full recipe)."""
    tmp = tmp_path_factory.mktemp("showcase-docker")
    command, image_env = dockerfile_command()
    assert command[:4] == ["python", "-m", "distill_core", "showcase"], command
    env = {**os.environ, **image_env, "KD_RUNS_DIR": str(tmp / "runs"), "KD_CACHE_DIR": str(tmp / "cache"),
           "KD_UPLOADS_DIR": str(tmp / "uploads"), "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, *command[1:], "--recipe", "smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["built"] is True
    return tmp / "runs"


def test_the_smoke_showcase_builds_three_finished_evaluated_benchmarked_runs(local_store):
    assert showcase.is_complete(local_store)
    for name in showcase.RUN_NAMES:
        run_dir = local_store / name
        status = runs.read_status(run_dir)
        assert status["state"] == "done" and status["showcase"] is True
        config = storage.read_json(run_dir / runs.CONFIG_FILE)
        assert config["provenance"]["showcase"] is True and config["data"]["source"] == showcase.DATA
        evaluation = storage.read_json(runs.eval_path(run_dir))
        assert 0.0 <= evaluation["student"]["accuracy"] <= 1.0
        bench = storage.read_json(run_dir / runs.BENCH_FILE)
        assert {(r["batch_size"], r["precision"]) for r in bench} == {(1, "fp32"), (1, "int8"), (32, "fp32"),
                                                                     (32, "int8")}
        assert all(r["model"] == str(run_dir) and r["latency_ms_p50"] > 0 for r in bench)
        assert (run_dir / runs.MODEL_DIR).is_dir() and not (run_dir / runs.CHECKPOINT_DIR).exists()
    students = [storage.read_json(runs.eval_path(local_store / name)) for name, _ in showcase.STUDENTS]
    assert all(e["teacher"]["spec"] == str(local_store / showcase.TEACHER) for e in students)
    assert [r["id"] for r in catalog.finished_runs(local_store)] and all(
        r["showcase"] for r in catalog.finished_runs(local_store))


def test_the_build_reports_stages_and_steps_as_events(local_store):
    recorded = json.loads((local_store.parent / "events.json").read_text())
    phases = [e["phase"] for e in recorded["events"] if e.get("kind") == "phase"]
    assert [p.split(":")[0] for p in phases if p.startswith("showcase ")] == [f"showcase {i}/4" for i in range(1, 5)]
    assert any(e.get("kind") == "step" for e in recorded["events"])
    assert any(e.get("kind") == "bench" for e in recorded["events"])
    view = showcase.progress_view(local_store)
    assert view["state"] == "done" and view["fraction"] == 1.0


def test_a_second_build_does_nothing_and_says_so(local_store):
    before = {p: p.stat().st_mtime_ns for p in local_store.rglob("*") if p.is_file()}
    notes: list[dict] = []
    result = showcase.build(local_store, "smoke", on_event=notes.append)
    assert result["built"] is False and result["message"] == "already built"
    assert any("already built" in e.get("message", "") for e in notes)
    assert {p: p.stat().st_mtime_ns for p in local_store.rglob("*") if p.is_file()} == before
    with pytest.raises(UserError, match="already"):
        showcase.start_background(local_store, "smoke")


def test_showcase_runs_are_read_only(local_store):
    for name in showcase.RUN_NAMES:
        with pytest.raises(UserError, match="showcase and is read-only"):
            runs.delete_run(local_store, name)
        assert (local_store / name / runs.CONFIG_FILE).is_file()


def test_the_dockerfile_build_line_fills_the_gallery_the_hosted_app_reads(docker_store, monkeypatch):
    monkeypatch.setenv("KD_HOSTED", "1")
    monkeypatch.setenv("KD_RUNS_DIR", str(docker_store))
    gallery = hosting.gallery_root(docker_store)
    assert showcase.is_complete(gallery) and not showcase.is_complete(docker_store)
    visitor = hosting.visitor_root(hosting.new_visitor_id(), docker_store)
    offered = hosting.with_gallery(lambda r: catalog.model_catalog(r, include_bundled=False), visitor)
    assert catalog.default_pair(visitor, offered) == [str(gallery / name) for name in showcase.RUN_NAMES]


def test_unknown_recipe_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="unknown showcase recipe 'huge'"):
        showcase.build(tmp_path, "huge")
    assert not any(runs.iter_run_dirs(tmp_path))


def test_a_dead_build_reads_as_failed(tmp_path):
    storage.write_json_atomic(tmp_path / showcase.PROGRESS_FILE, {"state": "running", "pid": 2 ** 22 + 7,
                                                                  "stage": 2, "stages": 4, "step": 5,
                                                                  "total_steps": 10})
    view = showcase.progress_view(tmp_path)
    assert view["state"] == "failed" and "ended unexpectedly" in view["error"]
    assert view["fraction"] == pytest.approx(showcase.STAGE_WEIGHTS[0] + showcase.STAGE_WEIGHTS[1] / 2)


# ---------------------------------------------------------------- the dashboard (AppTest)
PAGES = ["app_pages/train.py", "app_pages/compare.py", "app_pages/benchmark.py", "app_pages/playground.py"]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_offers_the_showcase_on_every_page(page, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page(page)
    assert [b.label for b in at.button if b.label == "Build the showcase"], [b.label for b in at.button]


def test_a_hosted_visitor_cannot_start_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KD_HOSTED", "1")
    at = open_page("app_pages/compare.py")
    assert not [b for b in at.button if b.label == "Build the showcase"]
    assert any("operator builds it" in i.value for i in at.info)


def test_a_built_showcase_is_what_compare_benchmark_and_playground_open_on(local_store, monkeypatch):
    monkeypatch.setenv("KD_RUNS_DIR", str(local_store))
    at = open_page("app_pages/compare.py")
    assert not [b for b in at.button if b.label == "Build the showcase"]
    assert sorted(at.multiselect(key="c_runs").value) == sorted(name for name, _ in showcase.STUDENTS)
    specs = [str(local_store / name) for name in showcase.RUN_NAMES]
    assert open_page("app_pages/playground.py").multiselect(key="p_models").value == specs
    assert open_page("app_pages/benchmark.py").multiselect(key="b_models").value == specs

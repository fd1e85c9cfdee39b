"""The Runs page through Streamlit's AppTest: the empty store, the table's rows, its filters, and every action on a
selection (delete with its confirmation, rename, stop, resume, clone, open). Rows are selected as a click in the
table does it: through the table's widget state."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from runs_support import make_run, tiny_config, trained_run
from streamlit.testing.v1 import AppTest

from distill_core import jobs, pipeline, runs, storage
from distill_core.app import runs_table

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
PAGE = "app_pages/runs.py"
TIMEOUT_S = 180  # first loads import the engine; generous for a busy 2-core machine
WAIT_S = 600


@pytest.fixture
def env(monkeypatch, tmp_path, tiny_data_dir):
    root = (tmp_path / "runs").resolve()
    monkeypatch.setenv("KD_RUNS_DIR", str(root))
    monkeypatch.setenv("KD_DATA_DIR", str(tiny_data_dir.parent))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root.mkdir()
    yield SimpleNamespace(root=root)
    for run_dir in runs.iter_run_dirs(root):
        pipeline.stop_run(run_dir)  # never leave a worker behind


def open_runs() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.switch_page(PAGE).run()  # straight to the Runs page: the router's default page is Train
    assert not at.exception, at.exception
    return at


def table(at: AppTest):
    return at.dataframe[0].value


def select(at: AppTest, *names: str) -> AppTest:
    """Tick the rows of ``names`` in the table, as a click on their boxes does."""
    shown = list(table(at)["name"])
    rows = runs_table.filter_rows(runs_table.load_rows(runs.runs_root()), at.multiselect(key="r_states").value,
                                  at.text_input(key="r_text").value)
    assert [r["name"] for r in rows] == shown
    at.session_state[runs_table.table_key(rows)] = {"selection": {"rows": [shown.index(n) for n in names],
                                                                  "columns": []}}
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_an_empty_store_says_so_and_points_at_train(env):
    at = open_runs()
    assert at.title[0].value == "Runs"
    assert "No runs yet: start one on Train" in texts(at.info)
    assert not at.dataframe


def test_the_table_lists_every_run_with_state_kind_models_duration_and_accuracy(env):
    teacher = make_run(env.root, "pipe-teacher")
    runs.update_status(teacher, started_at=1000.0, finished_at=1125.0)
    runs.append_metric(teacher, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.8125})
    storage.write_json_atomic(runs.eval_path(teacher), {"student": {"accuracy": 0.79}})
    make_run(env.root, "pipe", "queued", teacher=str(teacher), depends_on="pipe-teacher")
    make_run(env.root, "broken", "failed")
    make_run(env.root, "gallery", showcase=True)
    frame = table(open_runs())
    assert set(runs_table.COLUMNS) <= set(frame.columns)
    rows = {row["name"]: row for row in frame.to_dict("records")}
    assert list(frame["name"]) == ["gallery", "broken", "pipe", "pipe-teacher"]  # newest first
    assert rows["pipe"]["state"] == "Queued (after pipe-teacher)"
    assert rows["pipe"]["kind"] == "pipeline 2/2: distil" and rows["pipe-teacher"]["kind"].startswith("pipeline 1/2")
    assert rows["pipe"]["models"] == "run pipe-teacher → truncate:1"
    assert rows["pipe-teacher"]["duration"].total_seconds() == 125
    assert rows["pipe-teacher"]["best_valid_accuracy"] == pytest.approx(81.25)
    assert rows["pipe-teacher"]["test_accuracy"] == pytest.approx(79.0)
    assert rows["broken"]["state"] == "Failed" and rows["gallery"]["state"] == "Done, read-only"


def test_filters_by_state_and_by_name_or_model(env):
    make_run(env.root, "alpha")
    make_run(env.root, "beta", "failed")
    make_run(env.root, "gamma", teacher="org/big-teacher")
    at = open_runs()
    assert at.multiselect(key="r_states").options == ["Done", "Failed"]
    at.multiselect(key="r_states").set_value(["Done"]).run()
    assert list(table(at)["name"]) == ["gamma", "alpha"]
    at.text_input(key="r_text").set_value("BIG-teach").run()  # a model, case-insensitive
    assert list(table(at)["name"]) == ["gamma"]
    at.text_input(key="r_text").set_value("nothing like it").run()
    assert "No run matches these filters" in texts(at.info) and not at.dataframe


def test_delete_asks_first_and_refuses_live_runs_offering_stop(env):
    make_run(env.root, "old-1")
    make_run(env.root, "old-2", "cancelled")
    make_run(env.root, "waiting", "queued")
    at = select(open_runs(), "waiting", "old-1")
    assert at.button(key="r_delete").disabled and "waiting still queued or running" in at.button(key="r_delete").help
    assert not at.button(key="r_stop").disabled and at.button(key="r_open").disabled  # two runs: one-run actions off
    at.button(key="r_stop").click().run()
    assert runs.read_status(env.root / "waiting")["state"] == "cancelled"
    assert "Stopping waiting" in texts(at.success)

    at = select(at, "old-1", "old-2")
    at.button(key="r_delete").click().run()
    assert "Delete **old-1, old-2** and all their files" in texts(at.markdown)
    assert (env.root / "old-1").is_dir(), "nothing is deleted before the confirmation"
    at.button(key="r_delete_yes").click().run()
    assert not (env.root / "old-1").exists() and not (env.root / "old-2").exists()
    assert "Deleted old-1, old-2." in texts(at.success)
    assert list(table(at)["name"]) == ["waiting"]


def test_rename_checks_the_new_name_in_the_words_of_the_form(env):
    teacher = make_run(env.root, "first-try")
    make_run(env.root, "student", teacher=str(teacher))
    make_run(env.root, "gallery", showcase=True)
    at = select(open_runs(), "gallery")
    assert at.button(key="r_rename").disabled and "read-only" in at.button(key="r_rename").help
    at = select(at, "first-try")
    at.button(key="r_rename").click().run()
    at.text_input(key="r_new_name").set_value("student").run()
    at.button(key="r_rename_yes").click().run()
    assert "New name: a run named 'student' already exists" in texts(at.error)
    at.text_input(key="r_new_name").set_value("no spaces please").run()
    at.button(key="r_rename_yes").click().run()
    assert "New name: invalid run name 'no spaces please'" in texts(at.error)
    at.text_input(key="r_new_name").set_value("good-teacher").run()
    at.button(key="r_rename_yes").click().run()
    assert "Renamed first-try to good-teacher (updated the runs that name it: student)." in texts(at.success)
    assert sorted(table(at)["name"]) == ["gallery", "good-teacher", "student"]
    assert storage.read_json(env.root / "student" / runs.CONFIG_FILE)["teacher"] == str(env.root / "good-teacher")


def test_clone_hands_the_run_to_the_train_form_and_open_shows_it_there(env, tiny_data_dir, tiny_teacher_dir):
    recipe = runs.create_run(env.root, "recipe", pipeline.run_record(tiny_config(tiny_data_dir, tiny_teacher_dir)))
    runs.set_status(recipe, "done")
    at = select(open_runs(), "recipe")
    at.button(key="r_clone").click().run()
    assert at.title[0].value == "Train"
    assert "t_clone" not in at.session_state, "the Train page takes the run it was handed"
    assert "Settings copied from run recipe." in texts(at.info)  # the Train page's word (app_pages/train.py)
    at = select(open_runs(), "recipe")
    at.button(key="r_open").click().run()
    assert at.title[0].value == "Train" and at.query_params["run"] == "recipe"


def test_resume_is_offered_only_for_a_stopped_run_with_a_checkpoint_and_continues_it(env, tiny_data_dir,
                                                                                     tiny_teacher_dir,
                                                                                     one_torch_thread):
    trained_run(env.root, "stopped", tiny_config(tiny_data_dir, tiny_teacher_dir), stop_after_first_epoch=True)
    make_run(env.root, "no-checkpoint", "cancelled")
    make_run(env.root, "finished")
    at = select(open_runs(), "no-checkpoint")
    assert at.button(key="r_resume").disabled and "no checkpoint" in at.button(key="r_resume").help
    at = select(at, "finished")
    assert at.button(key="r_resume").disabled and "it has finished" in at.button(key="r_resume").help
    at = select(at, "stopped")
    assert not at.button(key="r_resume").disabled
    at.button(key="r_resume").click().run()
    assert "Resumed stopped: it continues in the background" in texts(at.success)
    run_dir = env.root / "stopped"
    deadline = time.monotonic() + WAIT_S
    while runs.read_status(run_dir)["state"] in runs.LIVE_STATES and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runs.read_status(run_dir)["state"] == "done", runs.log_path(run_dir).read_text()[-2000:]
    assert [r["from_epoch"] for r in runs.read_metrics(run_dir) if r["kind"] == "resume"] == [1]
    assert jobs.default_worker_argv(run_dir)[-1] == "--resume"  # the status remembers it
    shutil.rmtree(run_dir)

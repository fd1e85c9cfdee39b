"""What a visitor can do to the server, and what the server refuses.

- Bad input through the Train page (AppTest, default mode): bad uploads and bad hyperparameters each show a
  specific st.error, never an exception, and leave no run behind.
- Hosted mode (KD_HOSTED=1): no server path can be named (data, teacher, student, run name), each visitor has
  their own runs and uploads plus a shared gallery, one job cap holds across visitors, one visitor cannot queue
  without limit.
- In every mode: only safetensors weights load, and a model folder asking for custom code never runs it.
(A planted HF_TOKEN in real workers' environments is checked in test_faults.py, whose workers already run.)
"""
from __future__ import annotations

import builtins
import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import LABEL_NAMES, make_rows
from streamlit.testing.v1 import AppTest

from distill_core import hosting, inference, jobs, locations, models, pipeline, runs, storage
from distill_core.app import datasets, playground
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
TIMEOUT_S = 240  # AppTest's first run imports torch and transformers; generous on a busy 2-core machine
VISITOR_A, VISITOR_B = "a" * 32, "b" * 32
REAL_START_JOB = jobs.start_job  # the env fixture replaces it; the cap test needs real (stand-in) processes


def csv_bytes(rows, header=("text", "label")) -> bytes:
    lines = [",".join(header)] + [f"{text},{label}" for text, label in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


GOOD_ROWS = make_rows(20, seed=5)  # 80 rows, 4 classes: enough to split into train/validation/test


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def env(monkeypatch, tmp_path, tiny_data_dir, tiny_teacher_dir):
    """A private store, the tiny dataset as the only data folder, the tiny teacher and a 3-class copy listed by
    the operator (KD_EXTRA_MODELS), and no real workers: start_job only records that it was asked."""
    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_root / "tiny")
    three_class = tmp_path / "teacher-3-classes"
    shutil.copytree(tiny_teacher_dir, three_class)
    config = json.loads((three_class / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(LABEL_NAMES[:3])}
    config["label2id"] = {name: i for i, name in enumerate(LABEL_NAMES[:3])}
    (three_class / "config.json").write_text(json.dumps(config))
    for key, value in {"KD_RUNS_DIR": tmp_path / "runs", "KD_DATA_DIR": data_root,
                       "KD_UPLOADS_DIR": tmp_path / "uploads",
                       "KD_EXTRA_MODELS": f"{tiny_teacher_dir}:{three_class}"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("KD_HOSTED", raising=False)
    started: list[Path] = []
    monkeypatch.setattr(jobs, "start_job", lambda run_dir, **_: started.append(Path(run_dir)))
    return SimpleNamespace(tmp=tmp_path, runs=tmp_path / "runs", data=data_root / "tiny", teacher=tiny_teacher_dir,
                           three_class=three_class, uploads=tmp_path / "uploads", started=started)


@pytest.fixture
def hosted(env, monkeypatch):
    monkeypatch.setenv("KD_HOSTED", "1")
    return env


def all_run_folders(store: Path) -> list[Path]:
    """Every run folder anywhere in the store (top level, visitors, gallery)."""
    return sorted(p.parent for p in Path(store).rglob("status.json")) if Path(store).exists() else []


def open_train_page(visitor: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    if visitor:
        at.query_params[hosting.VISITOR_KEY] = visitor
    at.run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def run_choices(at: AppTest) -> list[str]:
    """The runs the Train page's live-run picker offers (it is absent when there are none)."""
    return next((list(s.options) for s in at.selectbox if s.key == "run"), [])


def click_start(at: AppTest, run: bool = True) -> AppTest:
    next(b for b in at.button if b.label == "Start").click()
    return at.run() if run else at


def distill_tiny_teacher(at: AppTest) -> None:
    """Distil the tiny teacher (2 layers) into truncate:1: a valid model setup, so errors come from the input."""
    at.radio(key="t_mode").set_value("distill").run()
    at.number_input(key="t_trunc_n").set_value(1).run()


def finished_run(root: Path, name: str, teacher: Path, data: Path) -> Path:
    """A finished distillation run as a worker leaves it (the tiny teacher's weights stand in for the student)."""
    config = pipeline.run_record(TrainConfig(mode="distill", data=DataConfig(source=str(data)),
                                                student="truncate:1", teacher=str(teacher)))
    run_dir = runs.create_run(root, name, config)
    shutil.copytree(teacher, run_dir / "model")
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5, "training_accuracy": 0.5})
    metrics = {"accuracy": 0.5, "macro_f1": 0.5, "n_examples": 80, "label_names": LABEL_NAMES,
               "confusion_matrix": [[5, 5, 5, 5]] * 4, "per_class": {}}
    storage.write_json_atomic(run_dir / "eval.json", {"label_names": LABEL_NAMES, "student": {**metrics,
                           "agreement": 1.0, "spec": "truncate:1"}, "teacher": {**metrics, "spec": str(teacher)}})
    runs.set_status(run_dir, "done")
    return run_dir


# ---------------------------------------------------------------- bad input through the UI (default mode)

BAD_UPLOADS = [  # (case, file name, content, part of the error); uploads capped at 20 MB
    ("empty file", "empty.csv", b"", "is empty"),
    ("whitespace only", "blank.csv", b"\n \n", "is empty"),
    ("wrong extension", "data.exe", csv_bytes(GOOD_ROWS), "unsupported file type"),
    ("no extension", "data", csv_bytes(GOOD_ROWS), "unsupported file type"),
    ("non-UTF-8 bytes", "latin1.csv", "text,label\ncaf\u00e9 cr\u00e8me,0\n".encode("latin-1")
     + csv_bytes(GOOD_ROWS)[11:], "is not UTF-8"),
    ("header only", "header.csv", b"text,label\n", "header but no data rows"),
    # (a text column named otherwise is no longer an error: the upload panel picks it from the file's columns)
    ("missing label column", "nolabel.csv", b"text\n" + b"\n".join(t.encode() for t, _ in GOOD_ROWS) + b"\n",
     "has no column named like a label"),
    ("string labels", "strings.csv", csv_bytes([(t, f"class{y}") for t, y in GOOD_ROWS]), "holds names"),
    ("negative label", "negative.csv", csv_bytes(GOOD_ROWS[:-1] + [(GOOD_ROWS[-1][0], -1)]), "out of range"),
    ("fractional label", "fraction.csv", csv_bytes(GOOD_ROWS[:-1] + [(GOOD_ROWS[-1][0], 1.5)]),
     "not an integer class id"),
    ("labels beyond the teacher's classes", "ten.csv", csv_bytes([(t, y * 3) for t, y in GOOD_ROWS]),
     "predicts 4 classes but the data has 10"),
    ("a single class", "oneclass.csv", csv_bytes([(t, 0) for t, _ in GOOD_ROWS]), "only one class"),
    ("a single row", "onerow.csv", csv_bytes([(GOOD_ROWS[0][0], 2)]), "holds a single class"),
    ("too few rows per class", "few.csv", csv_bytes(GOOD_ROWS[:4]), "too few rows"),
    ("empty text", "emptytext.csv", csv_bytes(GOOD_ROWS[:-1] + [("", 1)]), "have empty text"),
    ("empty label", "emptylabel.csv", csv_bytes(GOOD_ROWS[:-1] + [(GOOD_ROWS[-1][0], "")]), "empty label"),
    ("a 10 MB text cell", "huge.csv", csv_bytes(GOOD_ROWS[:-1] + [("w" * 10_000_000, 1)]), "characters long"),
    ("broken JSON", "broken.json", b'[{"text": "a", "label": 0},', "could not be parsed"),
    ("JSON that is not a list of records", "object.json", b'{"text": "a", "label": 0}', "expected a JSON list"),
]

# Values no widget can hold: each number input's min/max (the config's bounds) exclude them.
OUT_OF_BOUNDS = [  # (widget key, value)
    ("t_lr", 0.0), ("t_lr", -1e-4), ("t_epochs", 0), ("t_batch", 0), ("t_temperature", 0.0),
    ("t_temperature", -2.0), ("t_alpha", 1.5), ("t_alpha", -0.1), ("t_dropout", 1.0), ("t_max_length", 4),
    ("t_valid_fraction", 0.95),
]
BAD_SETTINGS = [  # (case, widget key, value a widget accepts but the run refuses, part of the error)
    ("max length above the teacher's limit", "t_max_length", 1024, "exceeds what teacher"),
    ("more layers than the teacher has", "t_trunc_n", 5, "but the teacher has 2"),
    ("one train sample", "t_train_samples", 1, "Train samples must be between 2"),
]


def test_bad_uploads_through_the_train_page_show_an_error_and_create_no_run(env, monkeypatch):
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "20")
    at = open_train_page()
    distill_tiny_teacher(at)
    at.radio(key="t_source_kind").set_value("Upload a file").run()
    failures = []
    cases = [*BAD_UPLOADS, ("oversized upload", "big.csv", csv_bytes(GOOD_ROWS) + b"x" * 1_100_000,
                            "over the 1 MB upload limit")]
    for case, name, content, message in cases:
        if case == "oversized upload":  # a new cap resets the upload widget: let it be drawn anew first
            monkeypatch.setenv("KD_MAX_UPLOAD_MB", "1")
            at.run()
        at.file_uploader(key="t_upload").set_value((name, content, "application/octet-stream"))
        click_start(at)  # one script run: the upload is saved (or refused), then Start checks the run
        if at.exception or message not in errors(at):
            failures.append(f"{case}: exception={at.exception} errors={errors(at)!r}")
    assert not failures, "\n".join(failures)
    assert all_run_folders(env.runs) == [] and env.started == []
    # refused uploads are not kept: only files that passed save_upload's checks are in the uploads folder
    kept = {p.name.rsplit("-", 1)[0] for p in env.uploads.iterdir() if p.is_file()}
    assert not kept & {"empty", "blank", "data", "big"}


def test_bad_settings_through_the_train_page_show_an_error_and_create_no_run(env):
    at = open_train_page()
    distill_tiny_teacher(at)
    assert at.radio(key="t_source_kind").value == "Local dataset"  # the tiny dataset: valid data
    failures, restore = [], {}
    for key, value in OUT_OF_BOUNDS:
        widget = at.number_input(key=key).proto
        if widget.min <= value <= widget.max:
            failures.append(f"{key} accepts {value} (bounds {widget.min}..{widget.max})")
    for case, key, value, message in BAD_SETTINGS:  # one script run per case: restore, set, press Start
        for good_key, good in restore.items():
            at.number_input(key=good_key).set_value(good)
        restore = {key: at.number_input(key=key).value}
        at.number_input(key=key).set_value(value)
        click_start(at)
        if at.exception or message not in errors(at):
            failures.append(f"{case}: exception={at.exception} errors={errors(at)!r}")
    for good_key, good in restore.items():
        at.number_input(key=good_key).set_value(good)
    # a teacher trained for another number of classes, and a Hub teacher while offline
    at.selectbox(key="t_teacher").set_value(str(env.three_class.resolve())).run()
    click_start(at)
    if "predicts 3 classes but the data has 4" not in errors(at):
        failures.append(f"3-class teacher: {errors(at)!r}")
    at.selectbox(key="t_teacher").set_value("__hub__").run()
    at.text_input(key="t_teacher_hub").set_value("some-org/unreachable-teacher").run()
    click_start(at)
    if "cannot reach the Hugging Face Hub" not in errors(at):
        failures.append(f"unreachable Hub teacher: {errors(at)!r}")
    at.selectbox(key="t_teacher").set_value(str(env.teacher.resolve())).run()
    at.text_input(key="t_name").set_value("../../etc/passwd").run()
    click_start(at)
    if "invalid run name" not in errors(at):
        failures.append(f"traversal in the run name: {errors(at)!r}")
    assert not at.exception, at.exception
    assert not failures, "\n".join(failures)
    assert all_run_folders(env.runs) == [] and env.started == []


def test_a_model_path_that_does_not_exist_or_is_not_a_model_is_refused_in_the_ui(env):
    at = open_train_page()
    distill_tiny_teacher(at)
    at.selectbox(key="t_student_kind").set_value("Other model spec").run()
    for spec, message in ((str(env.tmp / "no-such-model"), "does not exist"),
                          (str(env.data), "is not a model folder")):
        at.text_input(key="t_student_spec").set_value(spec).run()
        click_start(at)
        assert message in errors(at), errors(at)
    assert not at.exception and all_run_folders(env.runs) == []


# ---------------------------------------------------------------- hosted mode: server paths

def probe_config(env, **overrides) -> TrainConfig:
    settings = dict(mode="distill", data=DataConfig(source=str(env.data)), student="truncate:1",
                    teacher=str(env.teacher), epochs=1)
    settings.update(overrides)
    return TrainConfig(**settings)


def path_probes(env) -> list[tuple[str, dict, str]]:
    other = hosting.visitor_root(VISITOR_B)
    other_run = finished_run(other, "theirs", env.teacher, env.data)
    other_upload = datasets.save_upload("theirs.csv", csv_bytes(GOOD_ROWS), locations.uploads_for(other))
    outside = env.tmp / "outside-model"
    shutil.copytree(env.teacher, outside)
    data = lambda s: {"data": DataConfig(source=s)}  # noqa: E731
    return [
        ("data: /etc/passwd", data("/etc/passwd"), "data source '/etc/passwd' is not allowed"),
        ("data: ../../etc/passwd", data("../../etc/passwd"), "is not allowed"),
        ("data: ~/.ssh/id_rsa", data("~/.ssh/id_rsa"), "is not allowed"),
        ("data: the server's code folder", data(str(REPO)), "is not allowed"),
        ("data: a named dataset climbing out", data("tiny/../../../etc"), "is not allowed"),
        ("data: another visitor's upload", data(str(other_upload)), "is not allowed"),
        ("teacher: /etc", {"teacher": "/etc"}, "teacher '/etc' is not allowed"),
        ("teacher: a model folder outside the store", {"teacher": str(outside)}, "is not allowed"),
        ("teacher: another visitor's run", {"teacher": str(other_run)}, "is not allowed"),
        ("teacher: ../ climbing to another visitor", {"teacher": f"../{VISITOR_B}/theirs"}, "is not allowed"),
        ("teacher: Hub-looking id with ..", {"teacher": "org/.."}, "is not allowed"),
        ("student: the server's code folder", {"student": "./distill_core"}, "student './distill_core' is not"),
        ("student: app_pages/..", {"student": "app_pages/.."}, "is not allowed"),
    ]


def test_hosted_mode_refuses_every_server_path_a_visitor_names(hosted, monkeypatch):
    monkeypatch.chdir(REPO)  # relative probes resolve against the server's working folder
    mine = hosting.visitor_root(VISITOR_A)
    failures = []
    for case, overrides, message in path_probes(hosted):
        try:
            pipeline.start_run(mine, "probe", probe_config(hosted, **overrides))
            failures.append(f"{case}: accepted")
        except UserError as exc:
            if message not in str(exc):
                failures.append(f"{case}: {exc}")
    for name in ("../../etc/passwd", "../" + VISITOR_B + "/x", ".hidden", "a/b", "x" * 65, "/abs"):
        with pytest.raises(UserError, match="invalid run name"):
            pipeline.start_run(mine, name, probe_config(hosted))
    assert not failures, "\n".join(failures)
    assert runs.list_runs(mine) == [] and hosted.started == []


def test_hosted_mode_accepts_the_allowed_sources_and_models(hosted):
    mine = hosting.visitor_root(VISITOR_A)
    gallery_run = finished_run(hosting.gallery_root(), "shared", hosted.teacher, hosted.data)
    own_run = finished_run(mine, "own", hosted.teacher, hosted.data)
    upload = datasets.save_upload("mine.csv", csv_bytes(GOOD_ROWS), locations.uploads_for(mine))
    for name, overrides in [("listed-data-and-operator-model", {}), ("gallery-teacher", {"teacher": str(gallery_run)}),
                            ("own-teacher", {"teacher": str(own_run)}),
                            ("own-upload", {"data": DataConfig(str(upload))})]:
        pipeline.start_run(mine, name, probe_config(hosted, **overrides))
        runs.set_status(mine / name, "cancelled")  # keeps the visitor under the live-run limit
    assert len(hosted.started) == 4


def test_the_same_paths_are_allowed_outside_hosted_mode(env, monkeypatch):
    outside = env.tmp / "outside-model"
    shutil.copytree(env.teacher, outside)
    hosting.check_model_spec(str(outside), env.runs, role="teacher")
    hosting.check_data_source("/etc/passwd", [])  # no-op: the CLI and a local dashboard may read any file
    pipeline.start_run(env.runs, "local", probe_config(env, teacher=str(outside)))
    assert env.started == [env.runs.resolve() / "local"]


def test_hosted_train_page_refuses_typed_server_paths(hosted):
    at = open_train_page(VISITOR_A)
    distill_tiny_teacher(at)
    at.radio(key="t_source_kind").set_value("Hugging Face Hub").run()
    at.text_input(key="t_hub_id").set_value("/etc/passwd").run()
    click_start(at)
    assert "data source '/etc/passwd' is not allowed on the hosted demo" in errors(at), errors(at)
    at.radio(key="t_source_kind").set_value("Local dataset").run()
    at.selectbox(key="t_teacher").set_value("__hub__").run()
    at.text_input(key="t_teacher_hub").set_value("/etc").run()
    click_start(at)
    assert "teacher '/etc' is not allowed on the hosted demo" in errors(at), errors(at)
    assert not at.exception
    assert all_run_folders(hosted.runs) == []
    # the sidebar names the visitor's folder, not a server path
    assert str(hosted.runs) not in "\n".join(str(c.value) for c in at.sidebar.code)


# ---------------------------------------------------------------- hosted mode: visitors, gallery, caps

def test_a_visitor_id_is_made_per_session_kept_in_the_address_and_never_a_path(monkeypatch):
    monkeypatch.setenv("KD_HOSTED", "1")
    state, address = {}, {}
    visitor = hosting.session_visitor(state, address)
    assert hosting.is_visitor_id(visitor) and address[hosting.VISITOR_KEY] == visitor
    assert hosting.session_visitor(state, address) == visitor  # the same session keeps it
    assert hosting.session_visitor({}, {hosting.VISITOR_KEY: visitor}) == visitor  # a reload finds it again
    assert hosting.session_visitor({}, {}) != visitor  # another browser gets another one
    for forged in ("../../etc", "A" * 32, visitor + "0", "", None):
        assert hosting.session_visitor({}, {hosting.VISITOR_KEY: forged}) != forged
    with pytest.raises(UserError):
        hosting.visitor_root("../../etc")
    monkeypatch.delenv("KD_HOSTED")
    assert hosting.session_visitor({}, {}) is None


def test_each_visitor_sees_their_own_runs_and_the_gallery(hosted):
    mine = finished_run(hosting.visitor_root(VISITOR_A), "mine", hosted.teacher, hosted.data)
    published = hosting.main(["publish", "--run", str(mine), "--name", "shared-demo"])
    assert published == 0 and (hosting.gallery_root() / "shared-demo" / "model" / "config.json").is_file()
    theirs = open_train_page(VISITOR_B)
    assert run_choices(theirs) == []
    theirs.switch_page("app_pages/playground.py").run()
    assert not theirs.exception, theirs.exception
    models_offered = theirs.multiselect(key="p_models").options
    assert any("gallery" in label for label in models_offered), models_offered
    assert not any("run mine" in label and "gallery" not in label for label in models_offered)
    theirs.switch_page("app_pages/compare.py").run()
    assert theirs.segmented_control(key="c_store").value == "Gallery"  # B has no runs: Compare opens on the gallery
    theirs.segmented_control(key="c_store").set_value("Yours").run()
    assert any("No finished runs" in i.value for i in theirs.info)  # B has none of their own ...
    theirs.segmented_control(key="c_store").set_value("Gallery").run()
    assert not theirs.exception, theirs.exception
    assert theirs.dataframe[0].value["model"].iloc[0] == "run shared-demo"  # ... the gallery is shared
    own = open_train_page(VISITOR_A)
    assert [c.split()[0] for c in run_choices(own)] == ["mine"]


def test_publish_refuses_a_run_that_is_not_done(hosted, capsys):
    run_dir = runs.create_run(hosting.visitor_root(VISITOR_A), "unfinished", {"mode": "distill"})
    assert hosting.main(["publish", "--run", str(run_dir)]) == 2
    assert "only done runs can be shared" in capsys.readouterr().err


STAND_IN = """
import sys, time
from pathlib import Path
from distill_core import runs
run_dir = Path(sys.argv[1])
runs.set_status(run_dir, "running", pid=__import__("os").getpid())
time.sleep(float(sys.argv[2]))
runs.set_status(run_dir, "done")
"""


def test_one_job_cap_holds_across_all_visitors(hosted, monkeypatch):
    monkeypatch.setattr(jobs, "start_job", REAL_START_JOB)
    monkeypatch.setenv("KD_MAX_JOBS", "1")
    a = runs.create_run(hosting.visitor_root(VISITOR_A), "a", {"mode": "distill"})
    b = runs.create_run(hosting.visitor_root(VISITOR_B), "b", {"mode": "distill"})
    argv = lambda run_dir, hold: [sys.executable, "-c", STAND_IN, str(run_dir), str(hold)]  # noqa: E731
    scope = pipeline.scope_of(a.parent)  # hosted mode's policy: one cap for the whole store
    assert scope == pipeline.scope_of(b.parent)
    pid = jobs.start_job(a, argv=argv(a, 1.5), scope=scope)
    assert isinstance(pid, int)
    assert jobs.start_job(b, argv=argv(b, 0), scope=scope) is None  # visitor B waits for visitor A's run
    assert runs.read_status(b)["waiting"] is True
    deadline = time.monotonic() + 120
    while jobs.is_alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = jobs.start_queued(hosting.visitor_root(VISITOR_A), argv_for=lambda d: argv(d, 0), scope=scope)
    assert len(started) == 1 and storage.read_json(b / "status.json")["pid"] == started[0]
    while jobs.is_alive(started[0]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runs.read_status(b)["state"] == "done"


def test_one_visitor_cannot_queue_without_limit(hosted, monkeypatch):
    monkeypatch.setenv("KD_MAX_LIVE_PER_VISITOR", "2")
    mine = hosting.visitor_root(VISITOR_A)
    pipeline.start_run(mine, "one", probe_config(hosted))
    pipeline.start_run(mine, "two", probe_config(hosted))
    with pytest.raises(UserError, match="already have 2 run"):
        pipeline.start_run(mine, "three", probe_config(hosted))
    pipeline.start_run(hosting.visitor_root(VISITOR_B), "other-visitor", probe_config(hosted))
    assert [p.name for p in hosted.started] == ["one", "two", "other-visitor"]


def test_uploads_are_capped_and_kept_per_visitor(hosted, monkeypatch):
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "1")
    mine, theirs = (locations.uploads_for(hosting.visitor_root(v)) for v in (VISITOR_A, VISITOR_B))
    with pytest.raises(UserError, match="over the 1 MB upload limit"):
        datasets.save_upload("big.csv", b"text,label\n" + b"x" * 1_000_001, mine)
    saved = datasets.save_upload("../../etc/passwd.csv", csv_bytes(GOOD_ROWS), mine)
    assert saved.parent == mine and saved.name.startswith("passwd-")  # the name cannot climb out
    assert [d.path for d in datasets.local_datasets(mine) if d.kind == "upload"] == [str(saved)]
    assert [d for d in datasets.local_datasets(theirs) if d.kind == "upload"] == []


def test_the_dockerfile_turns_hosted_mode_on():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "KD_HOSTED=1" in dockerfile and "KD_MAX_UPLOAD_MB=" in dockerfile


# ---------------------------------------------------------------- unsafe weights and custom code (every mode)

class _Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return builtins.open, (str(self.path), "w")


def test_a_folder_with_only_pickled_weights_is_refused(env, tmp_path):
    folder = tmp_path / "bin-only"
    shutil.copytree(env.teacher, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    for load in (lambda: models.load_classifier(str(folder), LABEL_NAMES),
                 lambda: inference.load_for_inference(str(folder)),
                 lambda: pipeline.start_run(env.runs, "bin", probe_config(env, teacher=str(folder)))):
        with pytest.raises(UserError, match="only safetensors are loaded"):
            load()
    assert not marker.exists() and all_run_folders(env.runs) == []


def test_pickled_weights_beside_safetensors_are_never_unpickled(env, tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(env.teacher, folder)
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    model, _ = models.load_classifier(str(folder), LABEL_NAMES)
    assert model.config.num_labels == 4 and not marker.exists()


@pytest.mark.parametrize("model_type, loads", [("bert", True), ("kd-evil", False)], ids=["known-type", "custom-type"])
def test_custom_code_named_by_a_model_folder_is_never_executed(env, tmp_path, model_type, loads):
    folder = tmp_path / "remote-code"
    shutil.copytree(env.teacher, folder)
    marker = tmp_path / "executed"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n"
                                    "from transformers import BertConfig as EvilConfig\n"
                                    "from transformers import BertForSequenceClassification as EvilModel\n"
                                    "from transformers import BertTokenizerFast as EvilTokenizer\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModelForSequenceClassification": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if loads:  # a known architecture loads as itself; the custom classes are ignored
        model, tokenizer = models.load_classifier(str(folder), LABEL_NAMES)
        assert type(model).__module__.startswith("transformers.") and "evil" not in type(tokenizer).__module__
    else:
        with pytest.raises(UserError, match="custom code"):
            models.load_classifier(str(folder), LABEL_NAMES)
    assert not marker.exists()


# ---------------------------------------------------------------- the shared served model

def test_served_models_are_frozen_and_answer_identically_to_concurrent_sessions(env):
    """st.cache_resource hands one loaded model to every session's thread: it must be read-only."""
    from concurrent.futures import ThreadPoolExecutor

    loaded = inference.load_for_inference(str(env.teacher))
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    text = "Shares of the bank fell after the merger talks"
    with ThreadPoolExecutor(max_workers=4) as pool:  # like four visitors' script threads at once
        answers = list(pool.map(lambda _: playground.predict_interactive(loaded, [text])["logits"].tolist(),
                                range(12)))
    assert all(answer == answers[0] for answer in answers)
    assert all((loaded.model.state_dict()[k] == v).all() for k, v in before.items())

"""A finished student out of the app, as the CLI's export and push: the download zip (distill_core.bundle), a push
with a typed token (hub.push_run, hub.check_token) and the live panel's section for them (app_pages/model_out.py).

The run is real: the tiny teacher distilled into truncate:1 for two steps through train.prepare/execute, as the
worker does. Every test runs offline; none reaches the Hub.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from streamlit.testing.v1 import AppTest

from distill_core import bundle, hub, runs, train
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import HubUnreachableError, UserError
from distill_core.export import load_exported
from distill_core.inference import load_for_inference, predict_texts

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
RUN = "tiny-student"
TOKEN = "hf_" + "QwertyuiopAsdfghjklZxcvbnm1234"  # the Hub's form, not a real token
TEXTS = ["The team won the championship match", "Shares of the bank fell after the merger talks"]
PUSH_BUTTON = "Push to the Hugging Face Hub"


@pytest.fixture(scope="module", autouse=True)
def _module_isolation(tmp_path_factory):
    """The module's run is built before conftest's per-test isolation applies: keep its caches private too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("KD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kd-cache"))
        patch.setenv("KD_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "kd-runs"))
        yield


def build_finished_run(root: Path, data: Path, teacher: Path) -> Path:
    """A finished distillation run ``root/tiny-student``, as the worker leaves it (two optimiser steps: seconds)."""
    config = TrainConfig(mode="distill", data=DataConfig(source=str(data), max_length=32), student="truncate:1",
                         teacher=str(teacher), epochs=1, max_steps=2, batch_size=32, patience=None, log_every_steps=1)
    prepared = train.prepare(config)
    run_dir = runs.create_run(root, RUN, train.run_record(prepared))
    train.execute(prepared, run_dir)
    assert runs.read_status(run_dir)["state"] == "done"
    return run_dir


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data_dir, tiny_teacher_dir, one_torch_thread) -> Path:
    return build_finished_run(tmp_path_factory.mktemp("model-out"), tiny_data_dir, tiny_teacher_dir)


@pytest.fixture
def run_dir(tmp_path: Path, trained_run: Path) -> Path:
    """A private copy of the finished run in a fresh store (tmp_path/runs), for tests that change or watch it."""
    return Path(shutil.copytree(trained_run, tmp_path / "runs" / RUN))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
    (folder,) = into.iterdir()
    return folder


def stored_dtypes(folder: Path) -> set[torch.dtype]:
    dtypes = set()
    for weights in folder.glob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            dtypes |= {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118 safe_open has no __iter__
    return dtypes


# ---------------------------------------------------------------- the download zip


def test_zip_holds_the_student_tokenizer_config_and_card_and_leaves_the_run_alone(run_dir: Path, tmp_path: Path):
    before = snapshot(run_dir.parent)
    data = bundle.model_zip(run_dir, "fp32")
    assert snapshot(run_dir.parent) == before  # nothing written into the store

    folder = unzip(data, tmp_path / "unzipped")
    assert folder.name == f"{RUN}-fp32" and bundle.zip_name(run_dir, "fp32") == f"{RUN}-fp32.zip"
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer_config.json"} <= names
    assert names & {"tokenizer.json", "vocab.txt"}
    config = json.loads((folder / "config.json").read_text())
    assert config["kd_studio_precision"] == "fp32" and config["kd_studio_exported_from"] == RUN
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "## Test results" in card
    assert "## This download" in card and f'model="./{RUN}-fp32"' in card
    # no server path anywhere in the archive (in hosted mode it would name the visitor's folder)
    assert all(str(tmp_path) not in (folder / n).read_text(errors="ignore") for n in names)
    reference = predict_texts(load_for_inference(str(run_dir), "fp32"), TEXTS)["logits"]
    assert torch.allclose(torch.as_tensor(predict_texts(load_for_inference(str(folder), "fp32"), TEXTS)["logits"]),
                          torch.as_tensor(reference))


def test_bf16_zip_stores_bfloat16_and_int8_zip_records_the_hint(run_dir: Path, tmp_path: Path):
    bf16 = unzip(bundle.model_zip(run_dir, "bf16"), tmp_path / "bf16")
    assert stored_dtypes(bf16) == {torch.bfloat16}
    assert json.loads((bf16 / "config.json").read_text())["kd_studio_precision"] == "bf16"
    fp32_size = (runs.model_dir(run_dir) / "model.safetensors").stat().st_size
    assert (bf16 / "model.safetensors").stat().st_size < 0.6 * fp32_size

    int8 = unzip(bundle.model_zip(run_dir, "int8"), tmp_path / "int8")
    assert stored_dtypes(int8) == {torch.float32}
    assert json.loads((int8 / "config.json").read_text())["kd_studio_precision"] == "int8"
    assert "dynamic int8 quantization" in (int8 / "README.md").read_text()
    assert load_exported(int8).precision == "int8"


def test_zip_streams_to_an_unseekable_target(run_dir: Path):
    class Pipe(io.RawIOBase):  # write-only, no tell or seek: like a socket or an HTTP response body
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.chunks.append(bytes(b))
            return len(b)

    pipe = Pipe()
    summary = bundle.write_model_zip(run_dir, pipe, "fp32")
    with zipfile.ZipFile(io.BytesIO(b"".join(pipe.chunks))) as archive:
        assert sorted(archive.namelist()) == sorted(summary["files"])
        assert archive.testzip() is None


@pytest.mark.parametrize("state", ["queued", "running", "failed", "cancelled"])
def test_an_unfinished_run_is_refused_and_nothing_is_created(run_dir: Path, state: str):
    runs.set_status(run_dir, state)
    before = snapshot(run_dir.parent)
    with pytest.raises(UserError, match=f"run '{RUN}' is {state}: only finished runs \\(state done\\) can be "
                                        "downloaded"):
        bundle.model_zip(run_dir, "bf16")
    assert snapshot(run_dir.parent) == before


def test_a_run_without_a_model_or_a_bad_precision_is_refused(run_dir: Path, tmp_path: Path):
    with pytest.raises(UserError, match="unknown precision 'fp16': choose from fp32, bf16, int8"):
        bundle.model_zip(run_dir, "fp16")
    shutil.rmtree(runs.model_dir(run_dir))
    with pytest.raises(UserError, match="has no saved model") as caught:
        bundle.model_zip(run_dir)
    assert str(tmp_path) not in str(caught.value)  # no server path in the message
    with pytest.raises(UserError, match="no run named 'gone'"):
        bundle.model_zip(tmp_path / "runs" / "gone")


# ---------------------------------------------------------------- push with a typed token


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was asked before the input was checked")

    monkeypatch.setattr(hub, "hub_reachable", refuse)


@pytest.mark.parametrize(("typed", "message"), [
    ("", "enter a Hugging Face token"),
    ("   ", "enter a Hugging Face token"),
    ("hf_short", "that is not a Hugging Face token"),
    ("QwertyuiopAsdfghjklZxcvbnm1234", "that is not a Hugging Face token"),
    (TOKEN + "!", "that is not a Hugging Face token"),
    ("hf_Qwertyuiop Asdfghjkl Zxcvbnm1234", "that is not a Hugging Face token"),
])
def test_push_with_an_empty_or_malformed_token_is_refused_before_any_network(
    run_dir: Path, no_network: None, monkeypatch: pytest.MonkeyPatch, typed: str, message: str
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the operator's token is never a fallback for a typed one
    before = snapshot(run_dir.parent)
    with pytest.raises(UserError, match=message) as caught:
        hub.push_run(run_dir, "alice/tiny-student", token=typed)
    assert (typed.strip() or "\0") not in str(caught.value)
    assert snapshot(run_dir.parent) == before


def test_push_with_an_empty_repo_id_says_so(run_dir: Path, no_network: None):
    with pytest.raises(UserError, match="enter a repo id as USER/NAME"):
        hub.push_run(run_dir, "  ", token=TOKEN)


def test_push_offline_says_the_hub_is_unreachable_and_the_token_is_in_no_file(run_dir: Path):
    before = snapshot(run_dir.parent)
    with pytest.raises(HubUnreachableError, match="cannot reach the Hugging Face Hub to push 'alice/tiny-student'"
                       ) as caught:
        hub.push_run(run_dir, "alice/tiny-student", token=f" {TOKEN} ")
    assert TOKEN not in str(caught.value)
    after = snapshot(run_dir.parent)
    assert after == before and all(TOKEN.encode() not in data for data in after.values())


# ---------------------------------------------------------------- the live panel (AppTest)


@pytest.fixture
def app(run_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    monkeypatch.setenv("KD_RUNS_DIR", str(run_dir.parent))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params["run"] = RUN
    at.run()
    assert not at.exception, at.exception
    return at


def push(at: AppTest, repo_id: str, token: str) -> None:
    at.text_input(key="mo_repo").input(repo_id)
    at.text_input(key="mo_token").input(token)
    next(b for b in at.button if b.label == PUSH_BUTTON).click().run()
    assert not at.exception, at.exception


def test_finished_run_panel_offers_the_download_and_refuses_a_bad_token(app: AppTest, run_dir: Path):
    (button,) = app.get("download_button")
    assert button.proto.label == "Download the student (.zip)"
    app.selectbox(key="mo_precision").select("bf16").run()
    assert app.get("download_button")[0].proto.label == "Download the student (.zip)"

    push(app, "alice/tiny-student", "not-a-token")
    assert any("that is not a Hugging Face token" in e.value for e in app.error), [e.value for e in app.error]
    assert app.text_input(key="mo_token").value == ""  # used for that call only

    push(app, "alice/tiny-student", "")
    assert any("enter a Hugging Face token" in e.value for e in app.error)


def test_finished_run_panel_push_offline_shows_the_hub_message_and_keeps_no_token(app: AppTest, run_dir: Path):
    push(app, "alice/tiny-student", TOKEN)
    assert any("cannot reach the Hugging Face Hub to push 'alice/tiny-student'" in e.value for e in app.error)
    assert app.text_input(key="mo_token").value == ""
    assert "mo_repo" in repr(app.session_state) and TOKEN not in repr(app.session_state)  # every key and value
    store = snapshot(run_dir.parent)
    assert store and all(TOKEN.encode() not in data for data in store.values())


def test_the_panel_is_not_offered_for_an_unfinished_run(app: AppTest, run_dir: Path):
    runs.set_status(run_dir, "failed", error="boom")
    app.run()
    assert not app.get("download_button")
    assert not any(b.label == PUSH_BUTTON for b in app.button)


def test_hosted_a_visitor_gets_the_section_for_their_own_runs_only(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from distill_core import hosting

    mine, theirs = "a" * 32, "b" * 32
    store = tmp_path / "store"
    monkeypatch.setenv("KD_HOSTED", "1")
    monkeypatch.setenv("KD_RUNS_DIR", str(store))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    shutil.copytree(trained_run, hosting.visitor_root(mine) / RUN)
    shutil.copytree(trained_run, hosting.gallery_root() / "shared")
    for visitor, run, offered in ((mine, RUN, True), (theirs, RUN, False), (theirs, "shared", False)):
        at = AppTest.from_file(str(APP), default_timeout=180)
        at.query_params[hosting.VISITOR_KEY] = visitor
        at.query_params["run"] = run
        at.run()
        assert not at.exception, at.exception
        assert bool(at.get("download_button")) is offered, (visitor, run)
        assert any(b.label == PUSH_BUTTON for b in at.button) is offered, (visitor, run)

"""The Hub helpers: offline detection, and push_run's checks and token hygiene (the card: test_card.py).

No test reaches the real Hub. The one upload test points the endpoint at a local HTTP server (so the
reachability probe really succeeds) and records what would be sent by replacing two HfApi network methods.
"""
from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE_RUN_CONFIG, SAMPLE_RUN_EVAL

from distill_core import hub, runs, storage
from distill_core.errors import HubUnreachableError, UserError

PLANTED_TOKEN = "hf_" + "ZyxwvutsrqponmlkjihgfedcbaZYXW"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    hub.clear_reachability_cache()
    yield
    hub.clear_reachability_cache()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def done_run(tmp_path: Path) -> Path:
    run_dir = runs.create_run(tmp_path / "runs", "distilled", SAMPLE_RUN_CONFIG)
    model = runs.model_dir(run_dir)
    model.mkdir()
    (model / "config.json").write_text('{"id2label": {"0": "World", "1": "Sports", "2": "Business", '
                                       '"3": "Sci/Tech"}}', encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"\x00" * 16)
    storage.write_json_atomic(runs.eval_path(run_dir), SAMPLE_RUN_EVAL)
    runs.set_status(run_dir, "done")
    return run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- reachability


def test_offline_env_makes_the_hub_unreachable_at_once(offline: None) -> None:
    started = time.perf_counter()
    assert hub.hub_reachable() is False
    assert time.perf_counter() - started < 0.05


def test_require_hub_names_the_id_and_the_way_out(offline: None) -> None:
    with pytest.raises(HubUnreachableError) as caught:
        hub.require_hub("org/name")
    message = str(caught.value)
    assert "'org/name'" in message and "bundled:minilm-l6" in message and "local folder" in message


def test_unanswered_endpoint_is_unreachable_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    started = time.perf_counter()
    assert hub.hub_reachable(timeout_s=0.5) is False
    assert time.perf_counter() - started < 1.0


def test_hf_token_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", f"  {PLANTED_TOKEN} ")
    assert hub.hf_token() == PLANTED_TOKEN


# ---------------------------------------------------------------- push


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "/name", "user/", "user/na me", "user/-bad", "u/x..y",
                                     PLANTED_TOKEN])
def test_push_rejects_an_invalid_repo_id(done_run: Path, repo_id: str) -> None:
    with pytest.raises(UserError, match="invalid repo id") as caught:
        hub.push_run(done_run, repo_id)
    assert PLANTED_TOKEN not in str(caught.value)


@pytest.mark.parametrize("state", ["running", "failed", "cancelled"])
def test_push_rejects_an_unfinished_run(done_run: Path, state: str) -> None:
    runs.set_status(done_run, state)
    with pytest.raises(UserError, match=f"is {state}: only finished runs"):
        hub.push_run(done_run, "alice/model")


def test_push_rejects_a_run_without_a_model(done_run: Path) -> None:
    (runs.model_dir(done_run) / "config.json").unlink()
    with pytest.raises(UserError, match="has no saved model"):
        hub.push_run(done_run, "alice/model")


def test_push_offline_fails_cleanly_and_writes_nothing(
    done_run: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    before = snapshot(tmp_path)
    with pytest.raises(HubUnreachableError, match="'alice/model'") as caught:
        hub.push_run(done_run, "alice/model", token=PLANTED_TOKEN)
    assert PLANTED_TOKEN not in str(caught.value)
    assert snapshot(tmp_path) == before


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(constants, "ENDPOINT", url)
    yield url
    server.shutdown()
    server.server_close()


def test_push_uploads_model_and_card_in_one_commit_without_leaking_the_token(
    done_run: Path, tmp_path: Path, local_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    sent: dict = {}

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        sent.update(repo_id=repo_id, private=private, exist_ok=exist_ok, token=self.token)
        return f"{local_endpoint}/{repo_id}"

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        sent["files"] = {op.path_in_repo: op.path_or_fileobj for op in operations}
        return None

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    before = snapshot(tmp_path)

    url = hub.push_run(done_run, "alice/minilm-ag-news", private=True)

    assert url == f"{local_endpoint}/alice/minilm-ag-news"
    assert sent["repo_id"] == "alice/minilm-ag-news" and sent["private"] is True and sent["exist_ok"] is True
    assert sent["token"] == PLANTED_TOKEN  # handed to HfApi, and nowhere else
    assert set(sent["files"]) == {"config.json", "model.safetensors", "README.md"}
    card = sent["files"]["README.md"].decode("utf-8")
    assert "| accuracy | 0.9012 | 0.9461 |" in card and PLANTED_TOKEN not in card
    assert snapshot(tmp_path) == before  # nothing staged or written, the run folder included


def test_push_failure_message_scrubs_the_token(
    done_run: Path, local_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def create_repo(self, repo_id, **kwargs):
        raise RuntimeError(f"401 Unauthorized for header Authorization: Bearer {PLANTED_TOKEN}")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    with pytest.raises(UserError, match="push of run 'distilled' to 'alice/model' failed") as caught:
        hub.push_run(done_run, "alice/model", token=PLANTED_TOKEN)
    assert PLANTED_TOKEN not in str(caught.value) and caught.value.__cause__ is None

"""The Hugging Face Hub: reachability, token lookup and pushing a finished run (its card: card.py, gathered with
the finished-run check in bundle.py, which the app's download shares).

Tokens come from the caller (typed into the app: checked for form, used for that one call) or are read from the
environment or the huggingface_hub credential store at the moment they are needed; they are handed to ``HfApi``
and nothing else: never logged, written, stored in a run or echoed in an error message.
huggingface_hub is imported lazily so that importing distill_core stays cheap.
"""
from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from distill_core import bundle, env, specs, storage
from distill_core.errors import HubUnreachableError, UserError

REACHABILITY_TTL_S = 60.0
_reachability: dict[str, tuple[float, bool]] = {}  # endpoint -> (monotonic time checked, reachable)
_reachability_lock = threading.Lock()


# ---------------------------------------------------------------- reachability and token
def _offline_env() -> bool:
    return env.flag("HF_HUB_OFFLINE") or env.flag("TRANSFORMERS_OFFLINE")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _probe(url: str, timeout_s: float) -> bool:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "kd-studio"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status < 500
    except urllib.error.HTTPError as err:  # any answer below 500 means the Hub is there
        return err.code < 500
    except (OSError, ValueError):  # URLError, timeouts, refused connections, malformed endpoint
        return False


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hub endpoint answers within ``timeout_s``; False at once under HF_HUB_OFFLINE=1.

    The answer is cached for 60 s because the UI asks on every rerun. The probe runs in a daemon thread that
    we wait for at most ``timeout_s``: socket timeouts do not cover DNS look-ups, which can hang for much
    longer on a machine without network.
    """
    if _offline_env():
        return False
    endpoint = _endpoint()
    now = time.monotonic()
    with _reachability_lock:
        cached = _reachability.get(endpoint)
    if cached is not None and now - cached[0] < REACHABILITY_TTL_S:
        return cached[1]
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(_probe(endpoint, timeout_s)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    reachable = bool(answer and answer[0])
    with _reachability_lock:
        _reachability[endpoint] = (time.monotonic(), reachable)
    return reachable


def clear_reachability_cache() -> None:
    """Forget cached reachability answers (after the user reconnects, and in tests)."""
    with _reachability_lock:
        _reachability.clear()


def require_hub(what: str, *, action: str = "fetch") -> None:
    """Raise HubUnreachableError naming ``what`` unless the Hub can be reached."""
    if hub_reachable():
        return
    advice = "connect and retry"
    if action == "fetch":
        advice = "use a local folder or bundled:minilm-l6, or connect and retry"
    raise HubUnreachableError(
        f"cannot reach the Hugging Face Hub to {action} {redact(what)!r} (offline?): {advice}"
    )


def hf_token() -> str | None:
    """The Hub token from $HF_TOKEN or the huggingface_hub login, or None. Never log or store the result."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from huggingface_hub import get_token

        token = get_token() or ""
    except (ImportError, OSError, ValueError):
        return None
    return token.strip() or None


def redact(text: str, token: str | None = None) -> str:
    """``text`` with ``token`` and anything that looks like a Hugging Face token replaced by ``hf_***``."""
    if token and len(token) >= 8:  # a short typed value would garble the text, and cannot be a real token
        text = text.replace(token, "hf_***")
    return storage.HF_TOKEN_RE.sub("hf_***", text)


def check_token(token: Any) -> str:
    """A typed token, stripped, if it has the Hub's form (``hf_`` + letters and digits, the one rule that
    storage.refuse_tokens also uses); UserError otherwise, before any network. The message never echoes it."""
    token = token.strip() if isinstance(token, str) else ""
    if not token:
        raise UserError("enter a Hugging Face token: a write token from https://huggingface.co/settings/tokens")
    if not storage.HF_TOKEN_RE.fullmatch(token):
        raise UserError("that is not a Hugging Face token: tokens are hf_ followed by at least 20 letters and "
                        "digits; copy a write token from https://huggingface.co/settings/tokens")
    return token


# ---------------------------------------------------------------- push
def _validate_repo_id(repo_id: Any) -> str:
    if isinstance(repo_id, str) and not repo_id.strip():
        raise UserError("enter a repo id as USER/NAME (e.g. alice/minilm-ag-news)")
    if not specs.is_hub_id(repo_id, require_org=True):  # the one Hub-id rule, with the owner required
        shown = redact(repo_id) if isinstance(repo_id, str) else repo_id
        raise UserError(f"invalid repo id {shown!r}: use USER/NAME with letters, digits, '.', '_' or '-' "
                        "(e.g. alice/minilm-ag-news)")
    return repo_id


def push_run(run_dir: Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a finished run's model with a generated card to ``repo_id``; returns the repo URL.

    The card is uploaded from memory in the same commit as the model files, so nothing is staged on disk and
    the run folder is left untouched. A ``token`` passed in (typed into the app) is checked for the Hub's form
    before anything else and used for this call only; without one, $HF_TOKEN or the huggingface_hub login is used.
    """
    if token is not None:
        token = check_token(token)
    repo_id = _validate_repo_id(repo_id)
    run_dir = Path(run_dir)
    model = bundle.finished_model(run_dir, "pushed")
    require_hub(repo_id, action="push")
    token = token or hf_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`, then retry")

    from huggingface_hub import CommitOperationAdd, HfApi

    readme = bundle.run_card(run_dir, repo_id=repo_id)
    if storage.HF_TOKEN_RE.search(readme) or (len(token) >= 8 and token in readme):
        raise ValueError("refusing to push: the model card would contain a Hugging Face token")
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(model).as_posix(), path_or_fileobj=str(path))
        for path in sorted(model.rglob("*"))
        if path.is_file() and path.name != "README.md" and not path.name.startswith(".")
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8")))
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_commit(repo_id, operations, commit_message=f"Upload KD Studio run {run_dir.name}")
    except Exception as err:  # network, auth, quota: all reported the same way, with the token scrubbed
        detail = redact(f"{type(err).__name__}: {err}", token)
        # from None: the chained original may carry request details we have not scrubbed.
        raise UserError(f"push of run {run_dir.name!r} to {repo_id!r} failed ({detail}): "
                        "check the token has write access and retry") from None
    return str(url)

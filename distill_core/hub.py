"""The Hugging Face Hub: reachability, token lookup, model cards and pushing a finished run.

Tokens are read from the environment or the huggingface_hub credential store at the moment they are needed,
handed to ``HfApi`` and nothing else: never logged, written, stored in a run or echoed in an error message.
huggingface_hub is imported lazily so that importing distill_core stays cheap.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from distill_core import runs
from distill_core.errors import HubUnreachableError, UserError

HUB_URL = "https://huggingface.co"
REACHABILITY_TTL_S = 60.0
_TRUTHY = {"1", "true", "yes", "on"}
_reachability: dict[str, tuple[float, bool]] = {}  # endpoint -> (monotonic time checked, reachable)
_reachability_lock = threading.Lock()

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID_RE = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
# A Hub id as used in specs and data sources: "name" or "org/name"; no scheme, colon or leading "." / "/".
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?")


# ---------------------------------------------------------------- reachability and token
def _offline_env() -> bool:
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUTHY for name in names)


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
        f"cannot reach the Hugging Face Hub to {action} {_redact(what)!r} (offline?): {advice}"
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


def _redact(text: str, token: str | None = None) -> str:
    if token:
        text = text.replace(token, "hf_***")
    return runs.HF_TOKEN_RE.sub("hf_***", text)


# ---------------------------------------------------------------- model card
def _is_hub_id(spec: Any) -> bool:
    # A local folder that happens to look like "org/name" is local: loaders prefer it, and so do we.
    return isinstance(spec, str) and bool(_HUB_ID_RE.fullmatch(spec)) and not Path(spec).exists()


def _describe_spec(spec: Any, *, dataset: bool = False) -> str:
    """A Markdown description of a model spec or data source that never reveals local paths."""
    if not isinstance(spec, str) or not spec:
        return "unknown"
    if spec.startswith("bundled:"):
        return f"`{spec}` (the offline base bundled with KD Studio)"
    if m := re.fullmatch(r"truncate:(\d+)", spec):
        return f"the teacher's embeddings plus {m[1]} of its layers, evenly spaced (DistilBERT-style, `{spec}`)"
    if m := re.fullmatch(r"config:L(\d+)-H(\d+)", spec):
        return f"a freshly initialised BERT with {m[1]} layers and hidden size {m[2]}, teacher vocabulary (`{spec}`)"
    if _is_hub_id(spec):
        return f"[`{spec}`]({HUB_URL}/{'datasets/' if dataset else ''}{spec})"
    return f"a local folder (`{Path(spec).name or spec}`)"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):  # 4 significant digits for metrics and rates, plain decimals for large numbers
        text = f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", r"\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _split_eval(eval_metrics: dict | None) -> tuple[dict, dict]:
    """(student metrics, teacher metrics) from eval.json's {"student": ..., "teacher": ...} or one flat dict."""
    if not isinstance(eval_metrics, dict):
        return {}, {}
    student = eval_metrics.get("student")
    teacher = eval_metrics.get("teacher")
    if not isinstance(student, dict):
        student = eval_metrics
    return student, teacher if isinstance(teacher, dict) else {}


def _front_matter(train: dict, source: Any) -> str:
    # json.dumps quoting gives valid YAML scalars for any string, without needing a YAML writer.
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags:", "- knowledge-distillation", "- kd-studio"]
    if _is_hub_id(source):
        lines += ["datasets:", f"- {json.dumps(source)}"]
    lines += ["metrics:", "- accuracy", "- f1"]
    if _is_hub_id(train.get("student")):
        lines.append(f"base_model: {json.dumps(train['student'])}")
    lines.append("---")
    return "\n".join(lines)


def render_model_card(
    run_config: dict,
    eval_metrics: dict | None,
    bench_rows: list[dict] | None,
    label_names: list[str],
    *,
    repo_id: str | None = None,
) -> str:
    """README.md for the Hub: YAML front matter, then what the model is, how it was made, results and usage."""
    train = run_config if isinstance(run_config, dict) else {}  # a flat TrainConfig dict, as in config.json
    data_section = train.get("data")
    data: dict = data_section if isinstance(data_section, dict) else {}
    distilled = train.get("mode") == "distill"
    source = data.get("source")
    na = "n/a (fine-tuning)"
    hyperparameters = [
        ["temperature", train.get("temperature") if distilled else na],
        ["alpha (weight of cross-entropy)", train.get("alpha") if distilled else na],
        ["distillation loss", train.get("kd_loss") if distilled else na],
        ["epochs", train.get("epochs")],
        ["learning rate", train.get("lr")],
        ["batch size", train.get("batch_size")],
        ["max length (tokens)", data.get("max_length")],
        ["student dropout", train.get("dropout")],
        ["seed", train.get("seed")],
        ["optimizer", train.get("optimizer")],
    ]
    what = "distilled from a teacher" if distilled else "fine-tuned"
    sections = [
        _front_matter(train, source),
        f"# {repo_id.split('/')[-1] if repo_id else 'KD Studio text classifier'}",
        f"A text classifier {what} with KD Studio (`distill_core`), "
        f"for {len(label_names)} classes: {', '.join(f'`{n}`' for n in label_names) or 'unknown'}.",
        "## Model",
        _table(["component", "description"], [["student", _describe_spec(train.get("student"))],
                          ["teacher", _describe_spec(train.get("teacher")) if distilled else "none"],
                          ["dataset", _describe_spec(source, dataset=True)],
                          ["training examples", data.get("train_samples") or "all"],
                          ["validation fraction (carved from train)", data.get("valid_fraction")]]),
        "## Hyperparameters",
        _table(["hyperparameter", "value"], hyperparameters),
    ]
    student, teacher = _split_eval(eval_metrics)
    if student:
        columns = ["metric", "student"] + (["teacher"] if teacher else [])
        rows = [["accuracy", "accuracy"], ["macro-F1", "macro_f1"], ["agreement with teacher", "agreement"],
                ["ECE (15 bins, lower is better)", "ece"], ["examples", "n_examples"]]
        table = [[label, student.get(key)] + ([teacher.get(key)] if teacher else []) for label, key in rows]
        sections += ["## Test results", _table(columns, table)]
    if bench_rows:
        keys = list(dict.fromkeys(key for row in bench_rows if isinstance(row, dict) for key in row))
        table = [[row.get(key) for key in keys] for row in bench_rows if isinstance(row, dict)]
        sections += ["## Speed (CPU)", _table(keys, table)]
    model_ref = repo_id or "USER/MODEL"
    sections += [
        "## How to use",
        "```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_ref}")\n'
        'print(classifier("Stocks rallied after the central bank held rates steady."))\n```',
        "## Limitations",
        "\n".join([
            "- Trained and evaluated on one dataset only; expect lower accuracy on other domains, "
            "styles or languages.",
            f"- Inputs longer than {data.get('max_length', 'the max length')} tokens are truncated.",
            "- A distilled student inherits its teacher's errors and biases; agreement above says how closely "
            "it follows the teacher." if distilled else "- Biases of the training data are learned as-is.",
            "- Predicted probabilities may be miscalibrated (see ECE); do not read them as certainties.",
        ]),
    ]
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------- push
def _validate_repo_id(repo_id: Any) -> str:
    if (not isinstance(repo_id, str) or not _REPO_ID_RE.fullmatch(repo_id)
            or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git")):
        shown = _redact(repo_id) if isinstance(repo_id, str) else repo_id
        raise UserError(f"invalid repo id {shown!r}: use USER/NAME with letters, digits, '.', '_' or '-' "
                        "(e.g. alice/minilm-ag-news)")
    return repo_id


def _label_names(model: Path, evaluation: Any) -> list[str]:
    model_config = runs.read_json(model / "config.json", {})
    id2label = model_config.get("id2label") if isinstance(model_config, dict) else None
    if isinstance(id2label, dict):
        try:
            return [str(id2label[k]) for k in sorted(id2label, key=int)]
        except ValueError:
            pass
    student, _ = _split_eval(evaluation)
    names = student.get("label_names")
    return [str(n) for n in names] if isinstance(names, list) else []


def push_run(run_dir: Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a finished run's model with a generated card to ``repo_id``; returns the repo URL.

    The card is uploaded from memory in the same commit as the model files, so nothing is staged on disk and
    the run folder is left untouched.
    """
    repo_id = _validate_repo_id(repo_id)
    run_dir = Path(run_dir)
    state = runs.read_status(run_dir).get("state")
    if state != "done":
        raise UserError(f"run {run_dir.name!r} is {state}: only finished runs (state done) can be pushed")
    model = runs.model_dir(run_dir)
    if not (model / "config.json").is_file():
        raise UserError(f"run {run_dir.name!r} has no saved model in {model}: rerun it to produce one")
    require_hub(repo_id, action="push")
    token = token or hf_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`, then retry")

    from huggingface_hub import CommitOperationAdd, HfApi

    config = runs.read_json(run_dir / runs.CONFIG_FILE, {})
    evaluation = runs.read_json(runs.eval_path(run_dir))
    bench = runs.read_json(run_dir / "bench.json")
    card = render_model_card(config if isinstance(config, dict) else {},
                             evaluation if isinstance(evaluation, dict) else None,
                             bench if isinstance(bench, list) else None,
                             _label_names(model, evaluation), repo_id=repo_id)
    if runs.HF_TOKEN_RE.search(card) or (len(token) >= 8 and token in card):
        raise ValueError("refusing to push: the model card would contain a Hugging Face token")
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(model).as_posix(), path_or_fileobj=str(path))
        for path in sorted(model.rglob("*"))
        if path.is_file() and path.name != "README.md" and not path.name.startswith(".")
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_commit(repo_id, operations, commit_message=f"Upload KD Studio run {run_dir.name}")
    except Exception as err:  # network, auth, quota: all reported the same way, with the token scrubbed
        detail = _redact(f"{type(err).__name__}: {err}", token)
        # from None: the chained original may carry request details we have not scrubbed.
        raise UserError(f"push of run {run_dir.name!r} to {repo_id!r} failed ({detail}): "
                        "check the token has write access and retry") from None
    return str(url)

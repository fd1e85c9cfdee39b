"""The model card (README.md) pushed with a run: YAML front matter, what the model is, how it was made, results,
speed, usage and limitations. Its own module, as setfit's model_card.py: hub.py only uploads what this renders.

Pure string work on a run's config.json, eval.json and bench.json: no Hub access, no torch. Local paths never
appear in a card (only a folder's name), since a card is public.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import specs

HUB_URL = "https://huggingface.co"
_NOT_DISTILLED = "n/a (fine-tuning)"


def _is_hub_id(spec: Any) -> bool:
    # A local folder that happens to look like "org/name" is local: loaders prefer it, and so do we.
    return specs.is_hub_id(spec) and not Path(spec).exists()


def _describe_spec(spec: Any, *, dataset: bool = False) -> str:
    """A Markdown description of a model spec or data source that never reveals local paths."""
    if not isinstance(spec, str) or not spec:
        return "unknown"
    if spec.startswith("bundled:"):
        return f"`{spec}` (the offline base bundled with KD Studio)"
    if m := specs.TRUNCATE_RE.fullmatch(spec):
        return f"the teacher's embeddings plus {m[1]} of its layers, evenly spaced (DistilBERT-style, `{spec}`)"
    if m := specs.CONFIG_RE.fullmatch(spec):
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


def split_eval(eval_metrics: dict | None) -> tuple[dict, dict]:
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


def _or_models_own(value: Any) -> Any:
    return "the model's own" if value is None else value


def _model_sections(train: dict, data: dict, distilled: bool) -> list[str]:
    """The "Model" and "Hyperparameters" sections; distillation-only settings read n/a for a fine-tune."""
    hyperparameters: list[list[Any]] = [
        ["temperature", train.get("temperature") if distilled else _NOT_DISTILLED],
        ["alpha (weight of cross-entropy)", train.get("alpha") if distilled else _NOT_DISTILLED],
        ["distillation loss", train.get("kd_loss") if distilled else _NOT_DISTILLED],
        ["epochs", train.get("epochs")],
        ["learning rate", train.get("lr")],
        ["batch size", train.get("batch_size")],
        ["max length (tokens)", data.get("max_length")],
        ["student dropout", train.get("dropout")],
        ["student attention dropout", _or_models_own(train.get("attention_dropout"))],
        ["word embeddings", "frozen" if train.get("freeze_embeddings") else "trained"],
        ["seed", train.get("seed")],
        ["optimizer", train.get("optimizer")],
    ]
    components = [["student", _describe_spec(train.get("student"))],
                  ["teacher", _describe_spec(train.get("teacher")) if distilled else "none"],
                  ["dataset", _describe_spec(data.get("source"), dataset=True)],
                  ["training examples", data.get("train_samples") or "all"],
                  ["validation fraction (carved from train)", data.get("valid_fraction")]]
    return ["## Model", _table(["component", "description"], components),
            "## Hyperparameters", _table(["hyperparameter", "value"], hyperparameters)]


def _result_sections(eval_metrics: dict | None, bench_rows: list[dict] | None) -> list[str]:
    """The "Test results" (student beside teacher) and "Speed (CPU)" sections, each only when there is data."""
    sections: list[str] = []
    student, teacher = split_eval(eval_metrics)
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
    return sections


def _usage_sections(repo_id: str | None, data: dict, distilled: bool) -> list[str]:
    model_ref = repo_id or "USER/MODEL"
    return [
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
    what = "distilled from a teacher" if distilled else "fine-tuned"
    sections = [
        _front_matter(train, data.get("source")),
        f"# {repo_id.split('/')[-1] if repo_id else 'KD Studio text classifier'}",
        f"A text classifier {what} with KD Studio (`distill_core`), "
        f"for {len(label_names)} classes: {', '.join(f'`{n}`' for n in label_names) or 'unknown'}.",
        *_model_sections(train, data, distilled),
        *_result_sections(eval_metrics, bench_rows),
        *_usage_sections(repo_id, data, distilled),
    ]
    return "\n\n".join(sections) + "\n"

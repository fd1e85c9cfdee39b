"""Model specs -> (model, tokenizer), student builders, and model facts (parameters, size on disk).

The spec grammar (Hub ids, local folders, bundled:, truncate:, config:) lives in specs.py; this module loads
what a spec names. Weights load from safetensors only and `trust_remote_code` stays off: the hosted demo loads
what visitors name.
"""
from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

from . import specs
from .errors import UserError


def is_derived_spec(spec: str) -> bool:
    return specs.parse_spec(spec).kind in ("truncate", "config")


def _source(parsed: specs.ParsedSpec) -> str:
    """What from_pretrained loads: the folder of a local/bundled spec, else the Hub id (once the Hub answers)."""
    if parsed.kind in ("local", "bundled"):
        return str(specs.resolve_folder(parsed))
    from . import hub

    hub.require_hub(f"model {parsed.value!r}")
    return parsed.value


def _from_pretrained(loader, source: str, spec: str, **kwargs):
    try:
        return loader.from_pretrained(source, trust_remote_code=False, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"could not load model {spec!r}: {str(exc).strip().splitlines()[0]}") from None


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    parsed = specs.parse_spec(spec)
    if parsed.kind in ("truncate", "config"):
        raise UserError(f"{spec!r} is a student recipe, not a model: it takes the teacher's tokenizer")
    return _from_pretrained(AutoTokenizer, _source(parsed), spec)


def is_classifier(config) -> bool:
    """Whether a transformers config has a trained classification head (the rule of specs.is_classifier_config)."""
    return specs.is_classifier_config({"architectures": list(config.architectures or [])})


def label_maps(label_names: list[str]) -> dict[str, Any]:
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


def check_labels_match(config, label_names: list[str], spec: str) -> None:
    """Refuse a fine-tuned classifier whose classes differ from the data's (count, or names when it has them)."""
    if config.num_labels != len(label_names):
        raise UserError(f"model {spec!r} predicts {config.num_labels} classes but the data has "
                        f"{len(label_names)} ({', '.join(label_names)}): use a model fine-tuned on this data")
    model_names = [str(config.id2label[i]) for i in range(config.num_labels)]
    generic = all(re.fullmatch(r"LABEL_\d+|\d+", name) for name in model_names)
    data_generic = all(re.fullmatch(r"\d+", name) for name in label_names)
    if not generic and not data_generic and [n.lower() for n in model_names] != [n.lower() for n in label_names]:
        raise UserError(f"model {spec!r} has classes {model_names} but the data has {label_names}: the class "
                        "order must match")


def load_classifier(spec: str, label_names: list[str], *, require_trained: bool = False,
                    dropout: float | None = None, attention_dropout: float | None = None):
    """A Hub/local/bundled model as a sequence classifier with the data's labels; returns (model, tokenizer)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    parsed = specs.parse_spec(spec)
    if parsed.kind in ("truncate", "config"):
        raise UserError(f"{spec!r} builds a student from a teacher: it needs --teacher")
    source = _source(parsed)
    config = _from_pretrained(AutoConfig, source, spec)
    overrides: dict[str, Any] = {}
    if is_classifier(config):
        check_labels_match(config, label_names, spec)
    elif require_trained:
        raise UserError(f"teacher {spec!r} has no classification head: fine-tune it first "
                        f"(python -m distill_core finetune --model {spec} ...)")
    else:
        overrides.update(label_maps(label_names))
    overrides.update(dropout_overrides(dropout, attention_dropout))
    model = _from_pretrained(AutoModelForSequenceClassification, source, spec, use_safetensors=True, **overrides)
    if is_classifier(config):
        model.config.update(label_maps(label_names))  # names from the data, e.g. LABEL_0 -> World
    tokenizer = _from_pretrained(__import__("transformers").AutoTokenizer, source, spec)
    return model, tokenizer


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Indices of `keep` of `total` layers, first and last included (6 layers, keep 3 -> [0, 2, 5])."""
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def dropout_overrides(dropout: float | None, attention_dropout: float | None) -> dict[str, float]:
    """BERT-family config fields for the dropout settings given (None keeps the model's own)."""
    return {name: value for name, value in (("hidden_dropout_prob", dropout),
                                            ("attention_probs_dropout_prob", attention_dropout)) if value is not None}


def build_student(spec: str, teacher, label_names: list[str], *, dropout: float | None = None,
                  attention_dropout: float | None = None):
    """A student derived from a teacher (`truncate:N` / `config:L-H`) or loaded like any classifier."""
    parsed = specs.parse_spec(spec)
    if parsed.kind not in ("truncate", "config"):
        return load_classifier(spec, label_names, dropout=dropout, attention_dropout=attention_dropout)[0]
    from transformers import AutoModelForSequenceClassification, BertConfig

    if teacher is None:
        raise UserError(f"student {spec!r} is built from a teacher: pass --teacher")
    teacher_config = teacher.config
    if parsed.kind == "truncate":
        total = teacher_config.num_hidden_layers
        if not 1 <= parsed.layers < total:
            raise UserError(f"{spec!r}: the teacher has {total} layers; keep between 1 and {total - 1}")
        config = copy.deepcopy(teacher_config)
        config.num_hidden_layers = parsed.layers
        config.update({**dropout_overrides(dropout, attention_dropout), **label_maps(label_names)})
        student = AutoModelForSequenceClassification.from_config(config)
        keep = evenly_spaced_layers(total, parsed.layers)
        teacher_state = teacher.state_dict()
        student_state = {}
        layer_prefix = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")
        for key in student.state_dict():
            match = layer_prefix.match(key)
            source_key = f"{match.group(1)}{keep[int(match.group(2))]}{match.group(3)}" if match else key
            student_state[key] = teacher_state[source_key].clone()
        student.load_state_dict(student_state)
        student.config.kd_studio_kept_layers = keep
        return student
    config = BertConfig(
        vocab_size=teacher_config.vocab_size, hidden_size=parsed.hidden, num_hidden_layers=parsed.layers,
        num_attention_heads=parsed.hidden // 64, intermediate_size=4 * parsed.hidden,
        max_position_embeddings=getattr(teacher_config, "max_position_embeddings", 512),
        type_vocab_size=getattr(teacher_config, "type_vocab_size", 2),
        pad_token_id=getattr(teacher_config, "pad_token_id", 0),
        hidden_dropout_prob=0.1 if dropout is None else dropout,
        attention_probs_dropout_prob=0.1 if attention_dropout is None else attention_dropout, **label_maps(label_names),
    )
    return AutoModelForSequenceClassification.from_config(config)


def freeze_word_embeddings(model) -> int:
    """Stop training ``model``'s word-embedding matrix (config ``freeze_embeddings``); the number of weights frozen.

    Only the token table: position and type embeddings are small, and the embedding LayerNorm stays trained so the
    layers above can still rescale what the fixed table gives them."""
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


def max_positions(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 512))


def check_max_length(model, max_length: int, spec: str) -> None:
    limit = max_positions(model)
    if max_length > limit:
        raise UserError(f"max_length={max_length} exceeds what {spec!r} supports ({limit} positions): "
                        f"use at most {limit}")


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk_mb(model) -> float:
    """Bytes of the unique tensors of the state dict, as safetensors writes them (header excluded)."""
    seen, total = set(), 0
    for tensor in model.state_dict().values():
        if hasattr(tensor, "untyped_storage"):
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.numel())
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total / 1e6


def describe(model) -> str:
    config = model.config
    return (f"{getattr(config, 'model_type', 'model')} {getattr(config, 'num_hidden_layers', '?')} layers x "
            f"{getattr(config, 'hidden_size', '?')} hidden, {parameter_count(model) / 1e6:.1f}M parameters")


def model_fingerprint(model, spec: str) -> str:
    """Identifies a teacher for the logits cache: its spec's weights file hash, or a hash of its state dict."""
    parsed = specs.parse_spec(spec) if spec else None
    if parsed and parsed.kind in ("local", "bundled"):
        folder = Path(_source(parsed))
        digest = hashlib.sha256()
        for weights in sorted(folder.glob("*.safetensors")):
            with weights.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
        return digest.hexdigest()[:24]
    commit = getattr(model.config, "_commit_hash", None)
    if parsed and parsed.kind == "hub" and commit:
        return hashlib.sha256(f"{spec}@{commit}".encode()).hexdigest()[:24]
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]

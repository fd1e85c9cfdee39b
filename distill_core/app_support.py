"""What the dashboard pages need beyond the engine: allowed data folders, uploads, model choices, run
creation from the UI (including the two-stage "fine-tune a teacher, then distil" pipeline), live-run views,
comparison tables, cached per-example predictions, ETA estimates and report export.

No Streamlit here (pages read widgets, call these functions, draw). Module import stays cheap: torch,
transformers and datasets are imported inside the functions that need them.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import hosting, jobs, runs
from .config import DataConfig, TrainConfig, config_to_dict
from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
UPLOAD_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
DEFAULT_MAX_UPLOAD_MB = 50
PREDICTIONS_FILE = runs.PREDICTIONS_FILE  # written by the worker at the end of a run (evaluate.prediction_record)
BENCH_FILE = "bench.json"          # rows of the Benchmark page for a run's student (hub.push_run reads it too)
AFTER_RUN_KEY = "after_run"        # TrainConfig.extra key: this run waits for that run (its teacher) to finish

# Training throughput measured for all-MiniLM-L6-v2 (6 layers x 384 hidden) at batch 32 on AG News on the
# 2-core development VM: ~26 samples/s. Cost per sample scales roughly with layers * hidden^2 (the dense
# layers dominate at these lengths); inference is ~3x cheaper than a training step (no backward pass).
REF_SAMPLES_PER_S, REF_LAYERS, REF_HIDDEN = 26.0, 6, 384
MAX_SAMPLES_PER_S = 600.0          # tiny models are bound by per-batch overheads, not by FLOPs
STARTUP_S = 20.0                   # worker start: imports, model loading, tokenisation
# Row counts of Hub datasets we know, so the ETA works before anything is downloaded.
KNOWN_HUB_SIZES = {"ag_news": (120_000, 7_600), "SetFit/ag_news": (120_000, 7_600),
                   "fancyzhx/ag_news": (120_000, 7_600)}

SEED_TEACHER = "odunola/bert-base-uncased-ag-news-finetuned-2"
SEED_STUDENT = "google/bert_uncased_L-10_H-256_A-4"

# One line of help for every setting, shown next to its widget.
FIELD_HELP: dict[str, str] = {
    "source": "Hub dataset id, a folder with train/test files, or one file (then split into train/test).",
    "text_column": "Column holding the text; join several with + (e.g. title+description).",
    "label_column": "Column holding the class (integer ids or names).",
    "valid_fraction": "Share of the training rows held out for validation (seeded, stratified; seed: 0.2).",
    "test_fraction": "Only for a single file without a test split: share held out as the test split.",
    "train_samples": "Use a stratified subsample of this many training rows (0 = all rows).",
    "eval_samples": "Use a stratified subsample of this many validation and test rows (0 = all rows).",
    "max_length": "Truncation limit in tokens; batches are padded only to their longest row.",
    "temperature": "Softens teacher and student distributions in the KD term (seed: 2).",
    "alpha": "Weight of the label (CE) loss; 1 - alpha weights the teacher (KD) loss (seed: 0.5).",
    "kd_loss": "kl: T^2 * KL(teacher || student) on softened outputs; mse: squared error on logits.",
    "epochs": "Passes over the training rows (seed: 5); early stopping may end sooner.",
    "lr": "Peak learning rate (seed: 2e-5; small students and short runs like 1e-4).",
    "batch_size": "Training examples per optimiser step (seed: 64).",
    "optimizer": "adamw: warm-up + linear decay; adam: the seed recipe's constant-rate Adam.",
    "warmup_ratio": "Share of all steps spent warming the learning rate up (adamw only).",
    "weight_decay": "Decoupled weight decay, not applied to biases and LayerNorm (adamw only).",
    "dropout": "Student dropout override (seed: 0.3); 0 switches dropout off.",
    "patience": "Stop after this many epochs without a better validation accuracy (0 = never).",
    "seed": "Seeds the split, the subsample, the student head and the batch order.",
    "eval_batch_size": "Batch size for validation, test and teacher logits (inference only).",
    "log_every_steps": "A step point (loss, throughput) is written every this many steps.",
    "max_steps": "Stop after this many optimiser steps (0 = no limit); for time-boxed runs.",
    "teacher_cache": "Reuse teacher logits computed by earlier runs on the same examples.",
}


# ---------------------------------------------------------------- environment and locations
def is_hosted() -> bool:
    """True on the public demo (``KD_HOSTED=1``): server paths are not shown to visitors."""
    return os.environ.get("KD_HOSTED", "").strip().lower() in {"1", "true", "yes", "on"}


def data_roots() -> list[Path]:
    """Folders whose datasets the UI may offer: ``$KD_DATA_DIR`` (default ``../shared/data`` if present) and
    ``./data``. Visitors pick from these; they never type a server path."""
    roots: list[Path] = []
    configured = os.environ.get("KD_DATA_DIR", "").strip()
    if configured:
        roots.append(Path(configured).expanduser())
    elif (REPO_ROOT.parent / "shared" / "data").is_dir():
        roots.append(REPO_ROOT.parent / "shared" / "data")
    roots.append(REPO_ROOT / "data")
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved.is_dir() and resolved not in unique:
            unique.append(resolved)
    return unique


def uploads_dir() -> Path:
    """Where uploaded data files are kept: ``$KD_UPLOADS_DIR`` or ``uploads/`` beside the runs folder."""
    configured = os.environ.get("KD_UPLOADS_DIR", "").strip()
    folder = Path(configured).expanduser() if configured else runs.runs_root().parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def max_upload_mb() -> int:
    raw = os.environ.get("KD_MAX_UPLOAD_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_UPLOAD_MB
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"KD_MAX_UPLOAD_MB must be a positive integer, got {raw!r}: fix or unset it")
    return value


@dataclass(frozen=True)
class LocalDataset:
    label: str      # what the selectbox shows
    path: str       # absolute path, used as DataConfig.source
    kind: str       # "folder" | "file" | "upload"


def _has_train_file(folder: Path) -> bool:
    return any(p.stem == "train" and p.suffix.lower() in DATA_SUFFIXES for p in folder.iterdir() if p.is_file())


def uploads_for(root: Path) -> Path:
    """The uploads folder of a runs folder: uploads_dir(), or a hosted visitor's own ``uploads/visitors/<id>``."""
    visitor = hosting.visitor_of(Path(root))
    if visitor is None:
        return uploads_dir()
    folder = uploads_dir() / hosting.VISITORS_DIR / visitor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def local_datasets(uploads: Path | None = None) -> list[LocalDataset]:
    """Datasets in the allowed folders (folders with a train file, loose data files) and earlier uploads
    (those in ``uploads``, default uploads_dir())."""
    found: list[LocalDataset] = []
    for root in data_roots():
        try:
            children = sorted(root.iterdir())
        except OSError:
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            try:
                if child.is_dir() and _has_train_file(child):
                    found.append(LocalDataset(f"{child.name}  ({_short(root)})", str(child), "folder"))
                elif child.is_file() and child.suffix.lower() in DATA_SUFFIXES:
                    found.append(LocalDataset(f"{child.name}  ({_short(root)})", str(child), "file"))
            except OSError:
                continue
    try:
        for upload in sorted((uploads or uploads_dir()).iterdir()):
            if upload.is_file() and upload.suffix.lower() in UPLOAD_SUFFIXES:
                found.append(LocalDataset(f"{upload.name}  (uploaded)", str(upload), "upload"))
    except OSError:
        pass
    return found


def _short(path: Path) -> str:
    # The parent folder's name is enough to tell data roots apart and reveals nothing about the server.
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def save_upload(filename: str, content: bytes, folder: Path | None = None) -> Path:
    """Keep an uploaded data file in ``folder`` (default uploads_dir()); refuses other types and files over the
    size cap."""
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UserError(f"{filename!r}: unsupported file type {suffix or '(none)'!r}: upload .csv, .jsonl, .json "
                        "or .parquet")
    cap = max_upload_mb()
    if len(content) > cap * 1_000_000:
        raise UserError(f"{filename!r} is {len(content) / 1e6:.1f} MB, over the {cap} MB upload limit: upload a "
                        "smaller file (or raise KD_MAX_UPLOAD_MB)")
    if not content.strip():
        raise UserError(f"{filename!r} is empty: it needs a header row and at least one data row")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-")[:40] or "data"
    # The content hash makes names unique and an identical re-upload idempotent.
    target = (folder or uploads_dir()) / f"{stem}-{hashlib.sha256(content).hexdigest()[:8]}{suffix}"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, target)
    return target


def estimate_rows(source: str) -> tuple[int | None, int | None]:
    """(train rows, test rows) of a data source, cheaply: line counts of local files, known Hub sizes.

    Meant for the ETA only: quoted newlines inside CSV cells make it approximate. (None, None) when unknown.
    """
    if source in KNOWN_HUB_SIZES:
        return KNOWN_HUB_SIZES[source]
    path = Path(source)
    if not path.exists():
        return None, None
    if path.is_file():
        return _count_rows(path), None
    files = {p.stem: p for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES}
    train, test = files.get("train"), files.get("test")
    return (_count_rows(train) if train else None), (_count_rows(test) if test else None)


def _count_rows(path: Path) -> int | None:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text(encoding="utf-8-sig"))
            raw = raw.get("data", raw) if isinstance(raw, dict) else raw
            return len(raw) if isinstance(raw, list) else None
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        header = 0 if path.suffix.lower() == ".jsonl" else 1
        return max(lines - header, 0)
    except (OSError, ValueError, ImportError):
        return None


# ---------------------------------------------------------------- models
def bundled_specs() -> list[str]:
    """Bundled base models whose package is installed."""
    from . import models

    available = []
    for name in models.BUNDLED:
        try:
            models.bundled_path(name)
        except UserError:
            continue
        available.append(f"bundled:{name}")
    return available


def extra_model_specs() -> list[str]:
    """Trained model folders listed in ``$KD_EXTRA_MODELS`` (os.pathsep-separated), e.g. a teacher trained by
    the CLI outside the runs folder. Folders that do not hold a model are left out."""
    specs = []
    for item in os.environ.get("KD_EXTRA_MODELS", "").split(os.pathsep):
        item = item.strip()
        if item and _model_folder(Path(item)) is not None:
            specs.append(str(Path(item).expanduser().resolve()))
    return specs


def _model_folder(path: Path) -> Path | None:
    """The save_pretrained folder of a model folder or a run folder (its model/), or None."""
    path = path.expanduser()
    for folder in (path / runs.MODEL_DIR, path):
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            return folder
    return None


def finished_runs(root: Path) -> list[dict]:
    """Summaries (runs.list_runs) of runs that ended 'done' and hold a saved model, newest first."""
    return [r for r in runs.list_runs(root) if r["state"] == "done" and _model_folder(Path(r["path"])) is not None]


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


def model_choices(root: Path, *, include_bundled: bool, trained_only: bool = False) -> dict[str, str]:
    """spec -> label for model pickers: finished runs' models, $KD_EXTRA_MODELS folders, bundled bases.

    ``trained_only`` keeps only classifiers with a trained head (teachers for distillation, Playground).
    """
    choices: dict[str, str] = {}
    for run in finished_runs(root):
        choices[run["path"]] = f"run {run['id']} ({run['mode'] or 'model'}, {_pct(run['test_accuracy'])})"
    for spec in extra_model_specs():
        choices.setdefault(spec, f"{Path(spec).name} (local model)")
    if include_bundled and not trained_only:
        for spec in bundled_specs():
            choices.setdefault(spec, f"{spec} (base model, no classification head)")
    return choices


def _pct(value: Any) -> str:
    return f"test acc {value:.1%}" if isinstance(value, (int, float)) else "no test accuracy"


def _read_model_config(spec: str) -> dict | None:
    from . import models

    try:
        parsed = models.parse_spec(spec)
        if parsed.kind == "bundled":
            folder: Path | None = models.bundled_path(parsed.value)
        elif parsed.kind == "local":
            folder = _model_folder(Path(parsed.value))
        else:
            return None
    except UserError:
        return None
    if folder is None:
        return None
    config = runs.read_json(folder / "config.json")
    return config if isinstance(config, dict) else None


_COMPACT_RE = re.compile(r"_L-(\d+)_H-(\d+)_")


def model_shape(spec: str | None, teacher: str | None = None) -> tuple[int, int] | None:
    """(layers, hidden size) of a spec without loading weights; None when it cannot be known offline."""
    if not spec:
        return None
    if m := re.fullmatch(r"truncate:(\d+)", spec):
        teacher_shape = model_shape(teacher) if teacher else None
        return (int(m[1]), teacher_shape[1]) if teacher_shape else None
    if m := re.fullmatch(r"config:L(\d+)-H(\d+)", spec, re.IGNORECASE):
        return int(m[1]), int(m[2])
    if m := _COMPACT_RE.search(spec + "_"):
        return int(m[1]), int(m[2])
    config = _read_model_config(spec)
    if config and isinstance(config.get("num_hidden_layers"), int) and isinstance(config.get("hidden_size"), int):
        return config["num_hidden_layers"], config["hidden_size"]
    if spec == SEED_TEACHER or "bert-base" in spec:
        return 12, 768
    return None


def model_facts(spec: str | None) -> dict[str, Any]:
    """Parameters and size on disk (MB) of a local/bundled model, read from safetensors headers (no torch)."""
    from . import models

    facts: dict[str, Any] = {"parameters": None, "size_mb": None}
    if not spec:
        return facts
    try:
        parsed = models.parse_spec(spec)
        if parsed.kind == "bundled":
            folder: Path | None = models.bundled_path(parsed.value)
        elif parsed.kind == "local":
            folder = _model_folder(Path(parsed.value))
        else:
            return facts
    except UserError:
        return facts
    if folder is None:
        return facts
    parameters = size = 0
    for weights in folder.glob("*.safetensors"):
        try:
            with weights.open("rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(header_len))
        except (OSError, ValueError, struct.error):
            return facts
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            parameters += math.prod(entry.get("shape", []))
            start, end = entry.get("data_offsets", (0, 0))
            size += end - start
    facts.update(parameters=parameters, size_mb=round(size / 1e6, 2))
    return facts


# ---------------------------------------------------------------- estimates
def train_samples_per_s(shape: tuple[int, int] | None) -> float:
    """Estimated training throughput on this class of CPU for a model of (layers, hidden)."""
    layers, hidden = shape or (12, 768)  # unknown: assume BERT-base, the pessimistic common case
    rate = REF_SAMPLES_PER_S * (REF_LAYERS * REF_HIDDEN ** 2) / max(layers * hidden ** 2, 1)
    return min(rate, MAX_SAMPLES_PER_S)


def split_sizes(config: TrainConfig, train_rows: int | None, test_rows: int | None) -> tuple[int, int, int] | None:
    """(train, validation, test) rows a config will use, from the source's row counts."""
    if train_rows is None:
        return None
    data = config.data
    if test_rows is None:  # a single file: the test split is carved first
        test_rows = round(train_rows * data.test_fraction)
        train_rows -= test_rows
    valid = round(train_rows * data.valid_fraction)
    train = train_rows - valid
    if data.train_samples:
        train = min(train, data.train_samples)
    if data.eval_samples:
        valid, test_rows = min(valid, data.eval_samples), min(test_rows, data.eval_samples)
    return train, valid, test_rows


def estimate_seconds(config: TrainConfig, sizes: tuple[int, int, int]) -> float:
    """Rough wall time of a run: training epochs, validation each epoch, test evaluation, teacher logits."""
    train, valid, test = sizes
    student_rate = train_samples_per_s(model_shape(config.student, config.teacher))
    examples = train * config.epochs
    if config.max_steps:
        examples = min(examples, config.max_steps * config.batch_size)
    seconds = STARTUP_S + examples / student_rate + (valid * config.epochs + test) / (3 * student_rate)
    if config.mode == "distill" and config.teacher:
        seconds += (train + test) / (3 * train_samples_per_s(model_shape(config.teacher)))
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ---------------------------------------------------------------- creating and starting runs
def default_run_name(config: TrainConfig) -> str:
    student = re.sub(r"[^A-Za-z0-9]+", "-", spec_label(config.student).split("/")[-1]).strip("-")[:24]
    return f"{config.mode}-{student or 'model'}-{time.strftime('%m%d-%H%M%S')}"


def check_config(config: TrainConfig) -> dict[str, Any]:
    """Every check that is cheap enough to run before a run exists; raises UserError on bad input.

    Validates the config, checks the model specs resolve (local folders exist, Hub ids need the Hub) and
    loads the data (a Hub dataset only needs the Hub to answer). Returns provenance facts for config.json.
    """
    from . import hub, models
    from .data import load_data

    config.validate()
    for role, spec in (("teacher", config.teacher), ("student", config.student)):
        if not spec:
            continue
        parsed = models.parse_spec(spec)
        if parsed.kind in ("local", "bundled"):
            models._source(parsed)  # raises a UserError naming what is missing
        elif parsed.kind == "hub":
            hub.require_hub(f"{role} {spec}")
        elif parsed.kind == "truncate" and config.teacher:
            _check_truncation(spec, config.teacher)
    if config.mode == "distill" and config.teacher and models.parse_spec(config.teacher).kind in ("local",
                                                                                                  "bundled"):
        teacher_config = _read_model_config(config.teacher) or {}
        if not any(str(a).endswith("ForSequenceClassification") for a in teacher_config.get("architectures") or []):
            raise UserError(f"teacher {spec_label(config.teacher)!r} has no trained classification head: "
                            "choose 'fine-tune a teacher first' or a finished run")
    local = Path(config.data.source).exists()
    if not local and config.data.source not in KNOWN_HUB_SIZES and not re.match(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$",
                                                                                config.data.source):
        raise UserError(f"data source {config.data.source!r} does not exist: pick a local dataset, upload a file "
                        "or give a Hub dataset id")
    if not local:
        hub.require_hub(f"dataset {config.data.source}")
        return {"data": f"hub:{config.data.source}"}
    loaded = load_data(config.data, config.seed)
    _check_models_fit(config, loaded.label_names)
    return {"data": loaded.description, "label_names": loaded.label_names,
            "split_sizes": {name: len(split) for name, split in loaded.splits.items()}}


def _check_models_fit(config: TrainConfig, label_names: list[str]) -> None:
    """What the worker would refuse only after the run exists, refused before: a max length above a local
    model's position limit, and a trained classifier whose number of classes differs from the data's."""
    for role, spec in (("teacher", config.teacher), ("student", config.student)):
        model_config = _read_model_config(spec) if spec else None  # local and bundled specs; None otherwise
        if not model_config:
            continue
        limit = model_config.get("max_position_embeddings")
        if isinstance(limit, int) and config.data.max_length > limit:
            raise UserError(f"max_length={config.data.max_length} exceeds what {role} {spec_label(spec)!r} supports "
                            f"({limit} positions): use at most {limit}")
        id2label = model_config.get("id2label")
        classifier = any(str(a).endswith("ForSequenceClassification") for a in model_config.get("architectures") or [])
        if classifier and isinstance(id2label, dict) and len(id2label) != len(label_names):
            raise UserError(f"{role} {spec_label(spec)!r} predicts {len(id2label)} classes but the data has "
                            f"{len(label_names)} ({', '.join(label_names)}): use a model fine-tuned on this data")


def allowed_data_folders(root: Path) -> list[Path]:
    """Where a run in ``root`` may read data in hosted mode: the configured data folders and its uploads."""
    return [*data_roots(), uploads_for(root)]


def _check_truncation(student: str, teacher: str | None) -> None:
    match = re.fullmatch(r"truncate:(\d+)", student or "")
    teacher_shape = model_shape(teacher) if match and teacher else None
    if match and teacher_shape and int(match[1]) > teacher_shape[0]:
        raise UserError(f"student {student!r} keeps {match[1]} layers but the teacher has only "
                        f"{teacher_shape[0]}: use truncate:1 .. truncate:{teacher_shape[0]}")


def run_record(config: TrainConfig, **provenance: Any) -> dict[str, Any]:
    """config.json as the worker reads it: the TrainConfig fields plus a free-form provenance section."""
    from . import __version__

    record = config_to_dict(config)
    record["provenance"] = {"kd_studio": __version__, "created_by": "dashboard", "created_at": time.time(),
                            **provenance}
    return record


def start_run(root: Path, name: str, config: TrainConfig, *, check: bool = True) -> Path:
    """Check a config, create the run in the store and start (or queue) its worker; returns the run folder."""
    hosting.check_train_config(config, root, allowed_data_folders(root))  # hosted mode: no server paths
    hosting.check_new_runs(root)
    facts = check_config(config) if check else {}
    run_dir = runs.create_run(root, runs.sanitize_run_name(name), run_record(config, **facts))
    jobs.start_job(run_dir)
    return run_dir


def teacher_stage_config(distill: TrainConfig, base_spec: str, *, epochs: int, lr: float) -> TrainConfig:
    """The fine-tuning run that makes a teacher for ``distill`` from a base model (same data and seed)."""
    return TrainConfig(mode="finetune", data=distill.data, student=base_spec, epochs=epochs, lr=lr,
                       batch_size=distill.batch_size, optimizer="adamw", warmup_ratio=distill.warmup_ratio,
                       weight_decay=distill.weight_decay, dropout=None, patience=distill.patience,
                       seed=distill.seed, eval_batch_size=distill.eval_batch_size,
                       log_every_steps=distill.log_every_steps, extra={"stage": "teacher"})


def start_pipeline(root: Path, name: str, teacher_config: TrainConfig, distill_config: TrainConfig
                   ) -> tuple[Path, Path]:
    """Fine-tune a teacher (run ``NAME-teacher``), then distil from it (run ``NAME``).

    The distillation run is created at once, queued, with its teacher set to the teacher run's folder and
    ``extra.after_run`` naming that run; advance_pipelines() starts it when the teacher run is done, or
    cancels it when the teacher run fails. Both configs are checked before anything is created.
    """
    name = runs.sanitize_run_name(name)
    teacher_name = runs.sanitize_run_name(f"{name[:56]}-teacher")
    root = Path(root).resolve()
    for run_name in (name, teacher_name):
        if (root / run_name).exists():
            raise UserError(f"run {run_name!r} already exists: choose another name")
    hosting.check_train_config(teacher_config, root, allowed_data_folders(root))  # hosted mode: no server paths
    hosting.check_train_config(distill_config, root, allowed_data_folders(root))
    hosting.check_new_runs(root, count=2)
    facts = check_config(teacher_config)
    _check_truncation(distill_config.student, teacher_config.student)
    teacher_dir = root / teacher_name
    distill_config = TrainConfig(**{**{f.name: getattr(distill_config, f.name) for f in fields(TrainConfig)},
                                    "teacher": str(teacher_dir),
                                    "extra": {**distill_config.extra, AFTER_RUN_KEY: teacher_name}})
    distill_config.validate()
    runs.create_run(root, teacher_name, run_record(teacher_config, **facts))
    distill_dir = runs.create_run(root, name, run_record(distill_config, **facts))
    jobs.start_job(teacher_dir)
    return teacher_dir, distill_dir


def _after_run(run_dir: Path) -> str | None:
    config = runs.read_json(run_dir / runs.CONFIG_FILE, {})
    extra = config.get("extra") if isinstance(config, dict) else None
    value = extra.get(AFTER_RUN_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


def advance_pipelines(root: Path) -> list[str]:
    """Start queued runs whose prerequisite run is done; cancel those whose prerequisite failed.

    Returns the names of runs started or cancelled. Safe to call on every poll from any number of tabs:
    start_job holds the scheduler lock and starts a run at most once.
    """
    root = Path(root).resolve()
    changed = []
    for run_dir in runs.iter_run_dirs(root):
        status = runs.read_status(run_dir)
        if status.get("state") != "queued" or status.get("pid") or status.get("waiting"):
            continue
        after = _after_run(run_dir)
        if not after:
            continue
        try:
            before = runs.read_status(runs.resolve_run_dir(root, after)).get("state")
        except UserError:
            before = "unknown"
        if before == "done":
            jobs.start_job(run_dir)
            changed.append(run_dir.name)
        elif before in ("failed", "cancelled", "interrupted", "unknown"):
            runs.set_status(run_dir, "cancelled", error=f"its teacher run {after!r} ended {before}: nothing to "
                                                        "distil from")
            changed.append(run_dir.name)
    return changed


def poll(root: Path) -> None:
    """One scheduler tick for the UI: start waiting runs as slots free up and advance pipelines."""
    jobs.start_queued(root)
    advance_pipelines(root)


def successor(root: Path, run_name: str) -> str | None:
    """The run that waits for ``run_name`` (the distillation stage of a pipeline), if any."""
    for run_dir in runs.iter_run_dirs(root):
        if _after_run(run_dir) == run_name:
            return run_dir.name
    return None


# ---------------------------------------------------------------- live view of a run
@dataclass
class LiveView:
    status: dict
    config: dict
    step_rows: list[dict]
    epoch_rows: list[dict]
    step: int | None
    total_steps: int | None
    eta_s: float | None
    evaluation: dict | None

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        if self.step and self.total_steps:
            return min(self.step / self.total_steps, 1.0)
        return 0.0


def live_view(run_dir: Path) -> LiveView:
    """Everything the live panel draws, read from the store (cheap: a few small files)."""
    run_dir = Path(run_dir)
    rows = runs.read_metrics(run_dir)
    step_rows = [r for r in rows if r.get("kind") == "step"]
    epoch_rows = [r for r in rows if r.get("kind") == "epoch"]
    step = total = eta = None
    if step_rows:
        last = step_rows[-1]
        step, total = last.get("step"), last.get("total_steps")
        first = step_rows[0]
        # ETA from the step rate between the first and the last step point (both carry wall times).
        if (isinstance(step, int) and isinstance(total, int) and len(step_rows) > 1
                and isinstance(first.get("time"), (int, float)) and isinstance(last.get("time"), (int, float))
                and step > first.get("step", 0)):
            rate = (step - first["step"]) / max(last["time"] - first["time"], 1e-6)
            eta = (total - step) / rate if rate > 0 else None
    config = runs.read_json(run_dir / runs.CONFIG_FILE, {})
    evaluation = runs.read_json(runs.eval_path(run_dir))
    return LiveView(status=runs.read_status(run_dir), config=config if isinstance(config, dict) else {},
                    step_rows=step_rows, epoch_rows=epoch_rows, step=step, total_steps=total, eta_s=eta,
                    evaluation=evaluation if isinstance(evaluation, dict) else None)


def worker_log_tail(run_dir: Path, lines: int = 15) -> str:
    try:
        text = runs.log_path(run_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------- comparing runs
def _latency_ms(run_dir: Path) -> float | None:
    """Batch-1 fp32 p50 latency of the run's model from its bench.json (shortest length measured)."""
    rows = runs.read_json(run_dir / BENCH_FILE)
    if not isinstance(rows, list):
        return None
    candidates = [r for r in rows if isinstance(r, dict) and r.get("batch_size") == 1
                  and r.get("precision") == "fp32" and isinstance(r.get("latency_ms_p50"), (int, float))]
    return min(candidates, key=lambda r: r.get("seq_len", 0))["latency_ms_p50"] if candidates else None


def comparison_rows(root: Path, run_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per selected run's model, plus one per distinct teacher, for the Compare table."""
    root = Path(root).resolve()
    table: list[dict[str, Any]] = []
    teachers_seen: set[str] = set()
    for name in run_names:
        run_dir = runs.resolve_run_dir(root, name)
        config = runs.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
        evaluation = runs.read_json(runs.eval_path(run_dir), {}) or {}
        student = evaluation.get("student") or {}
        facts = model_facts(str(run_dir))
        table.append({"model": f"run {name}", "role": "student" if config.get("mode") == "distill" else "fine-tuned",
                      "spec": config.get("student"), "parameters": facts["parameters"], "size_mb": facts["size_mb"],
                      "test_accuracy": student.get("accuracy"), "macro_f1": student.get("macro_f1"),
                      "agreement": student.get("agreement"), "ece": student.get("ece"),
                      "latency_ms_b1": _latency_ms(run_dir), "n_test": student.get("n_examples")})
        teacher, teacher_spec = evaluation.get("teacher"), config.get("teacher")
        if isinstance(teacher, dict) and teacher_spec and teacher_spec not in teachers_seen:
            teachers_seen.add(teacher_spec)
            facts = model_facts(teacher_spec)
            teacher_dir = _model_folder(Path(teacher_spec))
            table.append({"model": f"teacher of {name}", "role": "teacher", "spec": spec_label(teacher_spec, root),
                          "parameters": facts["parameters"], "size_mb": facts["size_mb"],
                          "test_accuracy": teacher.get("accuracy"), "macro_f1": teacher.get("macro_f1"),
                          "agreement": 1.0, "ece": teacher.get("ece"),
                          "latency_ms_b1": _latency_ms(teacher_dir.parent) if teacher_dir else None,
                          "n_test": teacher.get("n_examples")})
    return table


def run_evaluation(root: Path, name: str) -> dict | None:
    value = runs.read_json(runs.eval_path(runs.resolve_run_dir(root, name)))
    return value if isinstance(value, dict) else None


def run_epoch_rows(root: Path, name: str) -> list[dict]:
    return [r for r in runs.read_metrics(runs.resolve_run_dir(root, name)) if r.get("kind") == "epoch"]


# ---------------------------------------------------------------- per-example predictions (Compare)
def _predict(spec: str, data, config: DataConfig, label_names: list[str]):
    from .data import Collator, tokenize_splits
    from .evaluate import predict_logits
    from .inference import load_for_inference

    loaded = load_for_inference(spec, "fp32", label_names=label_names)
    tokenized = tokenize_splits(data, loaded.tokenizer, config.max_length)["test"]
    return predict_logits(loaded.model, tokenized, Collator(loaded.tokenizer), batch_size=128)


def _cached_teacher_logits(spec: str, ids: list[str], max_length: int):
    """Teacher logits from the cache the training run filled (train.teacher_logits_for), if complete."""
    import numpy as np

    from . import models
    from .data import cache_root

    try:
        if models.parse_spec(spec).kind not in ("local", "bundled"):
            return None  # a Hub teacher's fingerprint needs the loaded model; compute instead
        key = models.model_fingerprint(None, spec)
    except UserError:
        return None
    cache_file = cache_root() / "teacher_logits" / f"{key}-len{max_length}.npz"
    if not cache_file.is_file():
        return None
    with np.load(cache_file) as stored:
        cached = dict(zip(stored["ids"].tolist(), stored["logits"]))
    if not all(i in cached for i in ids):
        return None
    return np.stack([cached[i] for i in ids]).astype(np.float32)


def run_predictions(run_dir: Path) -> dict[str, Any]:
    """Per-example test predictions of a run's student (and its teacher), from the run's predictions.json.

    Runs finished by a current worker already have the file; for older runs it is computed once here (one
    student pass over the test split; teacher logits from the training run's cache when they are there) and
    written to the run folder through runs.write_json_atomic.
    """
    from .config import train_config_from_dict
    from .data import load_data
    from .evaluate import prediction_record

    run_dir = Path(run_dir)
    cached = runs.read_json(run_dir / PREDICTIONS_FILE)
    if isinstance(cached, dict) and cached.get("version") == 1:
        return cached
    if runs.read_status(run_dir).get("state") != "done":
        raise UserError(f"run {run_dir.name!r} has not finished: predictions need its final model")
    config = train_config_from_dict(runs.read_json(run_dir / runs.CONFIG_FILE, {}))
    data = load_data(config.data, config.seed)
    test = data.splits["test"]
    student_logits = _predict(str(run_dir), data, config.data, data.label_names)
    teacher_logits = None
    if config.mode == "distill" and config.teacher:
        teacher_logits = _cached_teacher_logits(config.teacher, list(test["example_id"]), config.data.max_length)
        if teacher_logits is None:
            teacher_logits = _predict(config.teacher, data, config.data, data.label_names)
    record = prediction_record(data.label_names, test["text"], test["label"], student_logits, teacher_logits)
    runs.write_json_atomic(run_dir / PREDICTIONS_FILE, record)
    return record


def disagreements(predictions: dict[str, Any], *, only_wrong_student: bool = False) -> list[dict[str, Any]]:
    """Test examples where student and teacher predict different classes (rows for a table)."""
    names = predictions["label_names"]
    teacher = predictions.get("teacher_pred")
    if teacher is None:
        return []
    rows = []
    for i, (text, label, s, t) in enumerate(zip(predictions["text"], predictions["label"],
                                                predictions["student_pred"], teacher)):
        if s == t or (only_wrong_student and s == label):
            continue
        rows.append({"#": i, "text": text, "true": names[label], "teacher": names[t],
                     "teacher_conf": predictions["teacher_conf"][i], "student": names[s],
                     "student_conf": predictions["student_conf"][i],
                     "who is right": "teacher" if t == label else "student" if s == label else "neither"})
    return rows


# ---------------------------------------------------------------- benchmark and reports
def model_catalog(root: Path, *, include_bundled: bool, hub_ok: bool = True) -> dict[str, str]:
    """spec -> label for Benchmark and Playground: finished runs, their teachers (local folders that exist, Hub
    ids when ``hub_ok``), $KD_EXTRA_MODELS folders and, if asked, the bundled bases (no trained head)."""
    choices = model_choices(root, include_bundled=False)
    for run in finished_runs(root):
        teacher = run.get("teacher")
        if not teacher or teacher in choices or teacher.startswith(("truncate:", "config:", "bundled:")):
            continue
        if _model_folder(Path(teacher)) is not None or (hub_ok and not Path(teacher).is_absolute()):
            choices[teacher] = f"{spec_label(teacher, root)} (teacher of run {run['id']})"
    if include_bundled:
        for spec in bundled_specs():
            choices.setdefault(spec, f"{spec} (base model)")
    return choices


def default_pair(root: Path, available: Iterable[str]) -> list[str]:
    """The newest finished distillation run's student and teacher (those of them in ``available``)."""
    available = list(available)
    for run in finished_runs(root):
        if run.get("mode") == "distill":
            return [spec for spec in (run.get("teacher"), run["path"]) if spec in available]
    return available[:1]


def save_bench_rows(rows: Iterable[dict], spec_to_run_dir: dict[str, Path]) -> None:
    """Keep each run's benchmark rows in its bench.json (read by Compare and by the model card)."""
    by_spec: dict[str, list[dict]] = {}
    for row in rows:
        by_spec.setdefault(row.get("model"), []).append(row)
    for spec, run_dir in spec_to_run_dir.items():
        if spec in by_spec and Path(run_dir).is_dir():
            runs.write_json_atomic(Path(run_dir) / BENCH_FILE, by_spec[spec])


def run_dir_of_spec(root: Path, spec: str) -> Path | None:
    """The run folder a model spec belongs to (a run folder or its model/ inside the runs folder), if any."""
    path = Path(spec)
    if not path.is_absolute():
        return None
    if path.name == runs.MODEL_DIR:
        path = path.parent
    return path if path.parent == Path(root).resolve() and (path / runs.CONFIG_FILE).is_file() else None


def speed_accuracy_points(root: Path, rows: list[dict], labels: dict[str, str]) -> list[dict]:
    """Points for figures.speed_accuracy_scatter: the best throughput of each model and its test accuracy."""
    root = Path(root).resolve()
    accuracy: dict[str, float] = {}
    for run in runs.list_runs(root):
        if isinstance(run.get("test_accuracy"), (int, float)):
            accuracy[run["path"]] = run["test_accuracy"]
        if isinstance(run.get("teacher_test_accuracy"), (int, float)) and run.get("teacher"):
            accuracy.setdefault(run["teacher"], run["teacher_test_accuracy"])
    points = []
    for spec in dict.fromkeys(r.get("model") for r in rows):
        model_rows = [r for r in rows if r.get("model") == spec and isinstance(r.get("samples_per_s"), (int, float))]
        if not model_rows or spec not in accuracy:
            continue
        best = max(model_rows, key=lambda r: r["samples_per_s"])
        points.append({"name": labels.get(spec, spec), "samples_per_s": best["samples_per_s"],
                       "accuracy": accuracy[spec], "size_mb": best.get("size_mb")})
    return points


def fit_percent_axis(fig, pad: float = 0.02):
    """A y axis of fractions shown as percent that fits the data (Plotly pads a flat line to 0-200%), with
    one decimal in the ticks, because runs and epochs often differ by tenths of a percent."""
    values = [y for trace in fig.data for y in (getattr(trace, "y", None) or ())
              if isinstance(y, (int, float)) and math.isfinite(y)]
    if values:
        low, high = min(values), max(values)
        fig.update_yaxes(range=[max(low - pad - 0.05 * (high - low), 0.0), min(high + pad, 1.0) + pad / 2])
    fig.update_yaxes(tickformat=".1%")
    return fig


def rows_to_csv(rows: Sequence[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def html_report(title: str, figures: Sequence[Any], rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page: a table of ``rows`` and the Plotly figures (plotly.js inlined once)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape("" if value is None else str(value))

    table = ("<table><thead><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{cell(row.get(k))}</td>" for k in keys) + "</tr>" for row in rows)
             + "</tbody></table>")
    charts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + table + "".join(charts) + "</body></html>")


# ---------------------------------------------------------------- playground
def sample_texts(source: str, n: int = 8, seed: int = 0, text_column: str = "text") -> list[str]:
    """A few texts from the test file of a local data source (or the file itself), one per class in turn.

    Reads only that one file (no splitting, no datasets): the Playground calls this on first load.
    """
    from .data import SUPPORTED_SUFFIXES, _find_split_file, _read_table, _select_text

    path = Path(source)
    if path.is_dir():
        path = _find_split_file(path, "test") or _find_split_file(path, "train")  # type: ignore[assignment]
    if path is None or not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return []
    frame = _read_table(path)
    texts = _select_text(frame, text_column, path.name).astype(str)
    frame = frame.assign(_text=texts).sample(frac=1.0, random_state=seed)
    if "label" in frame.columns:  # round-robin over classes, so the samples cover every class
        frame = frame.assign(_rank=frame.groupby("label").cumcount()).sort_values("_rank", kind="stable")
    return [t for t in frame["_text"].head(n).tolist() if t.strip()]


# One text at a time gains little from a second thread, and when a training worker shares the CPU, OpenMP threads
# waiting for each other turned a ~20 ms MiniLM prediction into 3 s (p50, 2 threads) against 0.3 s with one.
INTERACTIVE_THREADS = 1


def predict_interactive(loaded, texts: Sequence[str]) -> dict[str, Any]:
    """inference.predict_texts for the Playground: one torch thread while it runs (see INTERACTIVE_THREADS)."""
    from .bench import _num_threads
    from .inference import predict_texts

    with _num_threads(INTERACTIVE_THREADS):
        return predict_texts(loaded, texts)


def softened(logits: Sequence[float], temperature: float) -> list[float]:
    """softmax(z / T): the distribution a student learns from at temperature T."""
    import numpy as np

    from .evaluate import softmax_np

    return softmax_np(np.asarray(logits, dtype=np.float64)[None, :], temperature)[0].tolist()

"""A finished run's student as one download: a zip of the exported model (export.py), its tokenizer and the
generated model card (card.py), the same card ``push`` uploads.

The zip holds one folder, ``<run>-<precision>/``, that ``from_pretrained`` loads as it is: ``config.json``,
``model.safetensors``, the tokenizer files and ``README.md``. The export is written to a private temporary
folder (outside the run store, removed afterwards) and streamed into the zip, so the run folder is never touched;
weights are stored uncompressed (float bytes barely compress), text files deflated. No server path appears in the
archive: the export records the run's name as its source and the card names local folders only by their name.

Also the checks and card inputs ``hub.push_run`` shares: a run must be finished (state done, with a saved model).
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

from . import card, runs, specs, storage
from .errors import UserError
from .export import EXPORT_PRECISIONS

PRECISION_NOTES = {
    "fp32": "float32 weights, exactly as trained.",
    "bf16": "bfloat16 weights (half the bytes of float32); `from_pretrained` loads them as bfloat16.",
    "int8": "float32 weights plus `\"kd_studio_precision\": \"int8\"` in `config.json`: dynamic int8 quantization is "
            "applied when loading (`distill_core.export.load_exported`, or `torch.ao.quantization.quantize_dynamic` "
            "on the `Linear` layers); any other tool loads a standard float32 model.",
}


def finished_model(run_dir: Path, action: str) -> Path:
    """The ``model/`` folder of a finished run; UserError naming the run when it is not finished or has no model.

    ``action`` completes "only finished runs (state done) can be ...", e.g. "pushed" or "downloaded".
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"no run named {run_dir.name!r}: check the name")
    state = runs.read_status(run_dir).get("state")
    if state != "done":
        raise UserError(f"run {run_dir.name!r} is {state}: only finished runs (state done) can be {action}")
    model = runs.model_dir(run_dir)
    if not (model / "config.json").is_file():
        raise UserError(f"run {run_dir.name!r} has no saved model (no {runs.MODEL_DIR}/config.json): "
                        "rerun it to produce one")
    return model


def label_names(model: Path, evaluation: Any) -> list[str]:
    """The model's id2label names, else the names eval.json recorded, else none."""
    names = specs.label_names(str(model))
    if names is None:
        recorded = card.split_eval(evaluation)[0].get("label_names")
        names = [str(n) for n in recorded] if isinstance(recorded, list) else []
    return names


def run_card(run_dir: Path, *, repo_id: str | None = None) -> str:
    """The model card (README.md) of a run, from its config.json, eval.json and bench.json."""
    run_dir = Path(run_dir)
    config = storage.read_json(run_dir / runs.CONFIG_FILE, {})
    evaluation = storage.read_json(runs.eval_path(run_dir))
    bench = storage.read_json(run_dir / runs.BENCH_FILE)
    return card.render_model_card(config if isinstance(config, dict) else {},
                                  evaluation if isinstance(evaluation, dict) else None,
                                  bench if isinstance(bench, list) else None,
                                  label_names(runs.model_dir(run_dir), evaluation), repo_id=repo_id)


def check_precision(precision: str) -> str:
    if precision not in EXPORT_PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose from {', '.join(EXPORT_PRECISIONS)}")
    return precision


def zip_name(run_dir: Path, precision: str) -> str:
    """The download's file name, ``<run>-<precision>.zip``; its folder inside is the same without ``.zip``."""
    return f"{Path(run_dir).name}-{precision}.zip"


def _download_card(run_dir: Path, folder: str, precision: str) -> str:
    note = "\n".join([
        "## This download",
        f"Exported by KD Studio from run `{Path(run_dir).name}` at **{precision}**: {PRECISION_NOTES[precision]}",
        "Load it from the unzipped folder:",
        "```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="./{folder}")\n```',
    ])
    readme = run_card(run_dir) + "\n" + note + "\n"
    storage.refuse_tokens(readme, Path(folder) / "README.md")  # a card is meant to be shared
    return readme


def write_model_zip(run_dir: Path, out: IO[bytes], precision: str = "fp32") -> dict[str, Any]:
    """Write the zip of finished run ``run_dir``'s student at ``precision`` to the binary stream ``out``.

    ``out`` needs no seeking (a socket or a pipe will do). Refuses an unknown precision and an unfinished run
    before anything is created. Returns the export summary (precision, stored dtype, size, parameters) plus the
    zip's folder and member names.
    """
    from .export import export_model

    run_dir = Path(run_dir)
    check_precision(precision)
    finished_model(run_dir, "downloaded")
    folder = zip_name(run_dir, precision).removesuffix(".zip")
    readme = _download_card(run_dir, folder, precision)
    with tempfile.TemporaryDirectory(prefix="kd-bundle-") as tmp:
        exported = Path(tmp) / folder
        summary = export_model(run_dir, exported, precision, exported_from=run_dir.name)
        members = []
        with zipfile.ZipFile(out, "w") as archive:
            for path in sorted(p for p in exported.rglob("*") if p.is_file() and p.name != "README.md"):
                name = f"{folder}/{path.relative_to(exported).as_posix()}"
                stored = path.suffix == ".safetensors"
                archive.write(path, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
                members.append(name)
            archive.writestr(f"{folder}/README.md", readme, compress_type=zipfile.ZIP_DEFLATED)
            members.append(f"{folder}/README.md")
    summary.pop("out", None)  # the temporary folder is gone
    return {**summary, "folder": folder, "files": members}


def model_zip(run_dir: Path, precision: str = "fp32") -> bytes:
    """The zip of ``write_model_zip`` as bytes (what a browser download needs: Streamlit holds it in memory)."""
    buffer = io.BytesIO()
    write_model_zip(run_dir, buffer, precision)
    return buffer.getvalue()

"""Export a trained classifier at the precision that benchmarked fastest: a `save_pretrained` folder to ship.

- ``fp32``: the model as trained (safetensors, float32).
- ``bf16``: every weight cast to bfloat16 and saved as bfloat16 safetensors (``config.json`` records
  ``dtype: bfloat16``), half the bytes of fp32. This is the same cast `precision.prepare_for_precision("bf16")` times
  and `evaluate --precision bf16` scores, so the exported model is the one that was measured. `from_pretrained`
  loads it as bfloat16 (transformers' default ``dtype="auto"``); on CPUs with AVX512-BF16/AMX it runs faster than
  fp32, elsewhere bf16 is emulated and usually slower.
- ``int8``: dynamic int8 quantization is a *runtime* transform, not a storage format: `quantize_dynamic` packs the
  Linear weights into backend-specific objects that safetensors cannot hold (only a pickle could, and this project
  loads safetensors only, because a pickle can run code), and it quantizes activations per batch while running.
  So the export stores the fp32 weights plus ``"kd_studio_precision": "int8"`` in ``config.json``;
  `load_exported` (and anything that reads the hint) applies the quantization when loading, which takes well
  under a second for these models. The folder stays a standard fp32 model for any other tool.

- ``ort-fp32`` / ``ort-int8``: ``model.onnx`` (the graph `onnx_serving` exported, and for int8 quantized, so the
  exact file that was benchmarked and scored), ``config.json`` (labels), the tokenizer and a ``README.md`` saying
  how to run it with ``onnxruntime`` alone. No safetensors: the folder is for ONNX Runtime, not for transformers.

Every export records ``kd_studio_precision`` and ``kd_studio_exported_from`` in ``config.json``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import UserError

EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")  # save_pretrained folders (bundles, the Hub)
ONNX_EXPORT_PRECISIONS: tuple[str, ...] = ("ort-fp32", "ort-int8")  # model.onnx folders for ONNX Runtime
PRECISION_HINT = "kd_studio_precision"  # config.json key: the precision to run the exported model at


def export_model(run_or_spec: str | Path, out_dir: str | Path, precision: str = "bf16", *,
                 exported_from: str | None = None) -> dict[str, Any]:
    """Write the trained classifier ``run_or_spec`` (a run folder, model folder or Hub id) to ``out_dir``.

    Refuses an ``out_dir`` that exists and is not empty, and student recipes (``truncate:N``, ``config:...``),
    which are not trained models. Writes into a staging folder beside ``out_dir`` and renames it into place, so an
    interrupted export never leaves a half-written model. Returns a summary: out, precision, stored dtype, size in
    MB, parameters, files. ``exported_from`` is what ``config.json`` records as the source (default: the spec as
    given; a download from the app records the run's name, never a server path).
    """
    from . import models
    from .inference import load_for_inference
    from .precision import prepare_for_precision

    choices = (*EXPORT_PRECISIONS, *ONNX_EXPORT_PRECISIONS)
    if precision not in choices:
        raise UserError(f"unknown export precision {precision!r}: choose from {', '.join(choices)}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"export folder {out} already exists and is not empty: choose another --out or delete it")
    spec = str(run_or_spec)
    if precision in ONNX_EXPORT_PRECISIONS:
        return _export_onnx(spec, out, precision, exported_from or spec)
    loaded = load_for_inference(spec, "fp32")  # checks: a trained classifier, safetensors only, not a recipe
    model = loaded.model
    if precision == "bf16":
        model, _ = prepare_for_precision(model, "bf16")  # the exact cast that was benchmarked and scored
    stored_dtype = "bfloat16" if precision == "bf16" else "float32"
    model.config.update({PRECISION_HINT: precision, "kd_studio_exported_from": exported_from or spec})

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        loaded.tokenizer.save_pretrained(staging)

    _write_folder(out, write)
    weights = sorted(out.glob("*.safetensors"))
    return {"out": str(out), "precision": precision, "stored_dtype": stored_dtype,
            "runtime": "dynamic int8 quantization applied at load time (load_exported)" if precision == "int8"
            else stored_dtype,
            "size_mb": round(sum(w.stat().st_size for w in weights) / 1e6, 2),
            "parameters": models.parameter_count(model), "files": sorted(p.name for p in out.iterdir())}


def _write_folder(out: Path, write: Any) -> None:
    """``write(staging)`` fills a staging folder beside ``out``, renamed into place when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.export-{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        write(staging)
        _readable_by_all(staging)
        if out.exists():
            out.rmdir()  # empty (checked by the caller)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _export_onnx(spec: str, out: Path, precision: str, exported_from: str) -> dict[str, Any]:
    """model.onnx (the cached graph ORT served and was measured with), config.json, tokenizer, README.md."""
    from .inference import load_for_inference
    from .onnx_serving import FP32_FILE

    loaded = load_for_inference(spec, precision)  # exports (or reuses the cache) and checks it loads in ORT
    served = loaded.model
    config = served.config
    config.update({PRECISION_HINT: precision, "kd_studio_exported_from": exported_from,
                   "kd_studio_parameters": loaded.parameters})

    def write(staging: Path) -> None:
        shutil.copyfile(served.path, staging / FP32_FILE)
        config.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(_onnx_readme(precision, exported_from, served.input_names),
                                           encoding="utf-8")

    _write_folder(out, write)
    return {"out": str(out), "precision": precision, "stored_dtype": "int8 weights (MatMul, Gather)"
            if precision == "ort-int8" else "float32", "runtime": "onnxruntime",
            "size_mb": round((out / FP32_FILE).stat().st_size / 1e6, 2), "parameters": loaded.parameters,
            "export_s": round(served.export_s, 1), "files": sorted(p.name for p in out.iterdir())}


def _onnx_readme(precision: str, exported_from: str, input_names: list[str]) -> str:
    kind = "dynamic int8 (per-channel int8 weights, activations quantized per batch)" if precision == "ort-int8" \
        else "float32"
    return f"""# ONNX model exported by KD Studio

`model.onnx`: the classifier `{exported_from}` for ONNX Runtime, {kind}. Inputs {", ".join(input_names)}
(int64, shape batch x sequence, any batch size and length up to the model's limit); output `logits` (float32,
batch x classes). The class names are `id2label` in `config.json`; the tokenizer files are beside it.

Run it with `onnxruntime` and `transformers` (for the tokenizer) only:

```python
import numpy as np, onnxruntime as ort
from transformers import AutoConfig, AutoTokenizer
folder = "."  # this folder
tokenizer, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
session = ort.InferenceSession(f"{{folder}}/model.onnx", providers=["CPUExecutionProvider"])
encoded = tokenizer(["Stocks rallied after the central bank held rates steady."], truncation=True, padding=True,
                    return_tensors="np")
feed = {{i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}}
logits = session.run(["logits"], feed)[0]
print([config.id2label[int(i)] for i in logits.argmax(-1)])
```

Or, with KD Studio installed: `distill_core.export.load_exported(folder)` and `distill_core.inference.predict_texts`.
"""


def _readable_by_all(folder: Path) -> None:
    """safetensors writes its file through a private temp file (mode 0600); an export is meant to be shipped
    (copied into an image, served by another user), so give every file the permissions the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)


def exported_precision(folder: str | Path) -> str:
    """The ``kd_studio_precision`` hint of an exported folder (``fp32`` when there is none)."""
    import json

    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} is not a model folder (no config.json)")
    precision = json.loads(config_file.read_text(encoding="utf-8")).get(PRECISION_HINT, "fp32")
    choices = (*EXPORT_PRECISIONS, *ONNX_EXPORT_PRECISIONS)
    if precision not in choices:
        raise UserError(f"{config_file}: unknown {PRECISION_HINT} {precision!r}: expected one of {', '.join(choices)}")
    return precision


def load_exported(folder: str | Path):
    """An exported folder ready to serve at the precision it was exported for (an `inference.InferenceModel`)."""
    from .inference import InferenceModel, load_for_inference

    precision = exported_precision(folder)
    if precision not in ONNX_EXPORT_PRECISIONS:
        return load_for_inference(str(folder), precision)
    from transformers import AutoTokenizer

    from .onnx_serving import load_onnx

    served = load_onnx(folder, precision)
    config = served.config
    return InferenceModel(spec=str(folder), precision=precision, model=served,
                          tokenizer=AutoTokenizer.from_pretrained(folder), context=contextlib.nullcontext,
                          label_names=[str(config.id2label[i]) for i in range(config.num_labels)],
                          parameters=int(getattr(config, "kd_studio_parameters", 0)), size_mb=served.size_mb)

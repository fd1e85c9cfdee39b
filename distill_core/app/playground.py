"""The Playground's engine side: sample texts to try, one-thread interactive predictions, softened outputs."""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# One text at a time gains little from a second thread, and when a training worker shares the CPU, OpenMP threads
# waiting for each other turned a ~20 ms MiniLM prediction into 3 s (p50, 2 threads) against 0.3 s with one.
# ONNX Runtime (ort-*) follows the same count: beside five training/benchmark processes (load 26-28) one MiniLM-L6
# prediction took 153 ms at 1 thread and 328 ms at 2 (PyTorch: 331 ms and 3.8 s), so 1 thread for both.
INTERACTIVE_THREADS = 1


def sample_texts(source: str, n: int = 8, seed: int = 0, text_column: str = "text") -> list[str]:
    """A few texts from the test file of a local data source (or the file itself), one per class in turn.

    Reads only that one file (no splitting, no datasets): the Playground calls this on first load.
    """
    from ..data import SUPPORTED_SUFFIXES, find_split_file, read_table, select_text

    path: Path | None = Path(source)
    if path is not None and path.is_dir():
        path = find_split_file(path, "test") or find_split_file(path, "train")
    if path is None or not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return []
    frame = read_table(path)
    texts = select_text(frame, text_column, path.name).astype(str)
    frame = frame.assign(_text=texts).sample(frac=1.0, random_state=seed)
    if "label" in frame.columns:  # round-robin over classes, so the samples cover every class
        frame = frame.assign(_rank=frame.groupby("label").cumcount()).sort_values("_rank", kind="stable")
    return [readable(t) for t in frame["_text"].head(n).tolist() if t.strip()]


def readable(text: str) -> str:
    """A sample as a person would write it: AG News keeps HTML entities without their "&" ("The nation #39;s")
    and backslashes where lines broke; shown in the text box, they read as garbage."""
    text = re.sub(r"\s?#39;", "'", text)  # "nation #39;s": the lost "&" left a space before the apostrophe
    text = re.sub(r"(?<!&)#(\d{2,4});", lambda m: chr(int(m.group(1))), text)
    return " ".join(html.unescape(text).replace("\\", " ").split())


def predict_interactive(loaded, texts: Sequence[str]) -> dict[str, Any]:
    """inference.predict_texts for the Playground: one torch thread while it runs (see INTERACTIVE_THREADS)."""
    from ..bench import _num_threads
    from ..inference import predict_texts

    with _num_threads(INTERACTIVE_THREADS):
        return predict_texts(loaded, texts)


def softened(logits: Sequence[float], temperature: float) -> list[float]:
    """softmax(z / T): the distribution a student learns from at temperature T."""
    import numpy as np

    from ..evaluate import softmax_np

    return softmax_np(np.asarray(logits, dtype=np.float64)[None, :], temperature)[0].tolist()


def cold_load_steps(spec: str, name: str, precision: str) -> dict[str, str]:
    """The words of a model's first load in the Playground, so the wait says what it does: the status line
    (name, precision, the weights' size on disk) and the step lines of reading, preparing and warming up."""
    from .. import specs
    from ..errors import UserError

    try:
        kind = specs.parse_spec(spec).kind
    except UserError:  # a broken spec: the load itself will say what is wrong
        kind = "local"
    size_mb = specs.model_facts(spec)["size_mb"]
    size = f"{size_mb:.1f}" if size_mb and size_mb < 10 else f"{size_mb or 0:,.0f}"
    weights = (f"reading weights, ~{size} MB" if size_mb
               else "fetching weights from the Hugging Face Hub" if kind == "hub" else "reading weights")
    prepare = {"int8": "quantising the linear layers to int8", "bf16": "converting to bf16",
               "ort-fp32": "exporting to ONNX (once per model, then cached) and starting ONNX Runtime",
               "ort-int8": "exporting to ONNX and quantising it to int8 (once per model, then cached), and starting "
                           "ONNX Runtime"}.get(precision)
    return {
        "label": f"Loading {name} ({precision}; first use: {weights})…",
        "read": f"Reading the weights and tokenizer of {name}"
                + (f" ({size_mb:,.1f} MB on disk)" if size_mb else "") + (f", then {prepare}" if prepare else "")
                + "…",
        "warm": "Warming up: one first prediction (memory and kernels are set up once, not in your wait)…",
        "ready": f"{name} ({precision}) is ready",
    }

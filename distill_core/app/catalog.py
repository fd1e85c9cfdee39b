"""Model choices for the pickers: finished runs' models, their teachers, operator-listed folders, bundled bases."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import runs, specs


def extra_model_specs() -> list[str]:
    """Trained model folders listed in ``$KD_EXTRA_MODELS`` (os.pathsep-separated), e.g. a teacher trained by
    the CLI outside the runs folder. Folders that do not hold a model are left out."""
    found = []
    for item in os.environ.get("KD_EXTRA_MODELS", "").split(os.pathsep):
        item = item.strip()
        if item and specs.model_folder(Path(item)) is not None:
            found.append(str(Path(item).expanduser().resolve()))
    return found


def finished_runs(root: Path) -> list[dict]:
    """Summaries (runs.list_runs) of runs that ended 'done' and hold a saved model, newest first."""
    return [r for r in runs.list_runs(root)
            if r["state"] == "done" and specs.model_folder(Path(r["path"])) is not None]


def _pct(value: Any) -> str:
    return f"test acc {value:.1%}" if isinstance(value, (int, float)) else "no test accuracy"


def model_choices(root: Path, *, include_bundled: bool, trained_only: bool = False) -> dict[str, str]:
    """spec -> label for model pickers: finished runs' models, $KD_EXTRA_MODELS folders, bundled bases.

    ``trained_only`` keeps only classifiers with a trained head (teachers for distillation, Playground).
    """
    choices: dict[str, str] = {}
    for run in finished_runs(root):
        badge = " · showcase, read-only" if run.get("showcase") else ""
        choices[run["path"]] = f"run {run['id']} ({run['mode'] or 'model'}, {_pct(run['test_accuracy'])}){badge}"
    for spec in extra_model_specs():
        choices.setdefault(spec, f"{Path(spec).name} (local model)")
    if include_bundled and not trained_only:
        for spec in specs.bundled_specs():
            choices.setdefault(spec, f"{spec} (base model, no classification head)")
    return choices


def model_catalog(root: Path, *, include_bundled: bool, hub_ok: bool = True) -> dict[str, str]:
    """spec -> label for Benchmark and Playground: finished runs, their teachers (local folders that exist, Hub
    ids when ``hub_ok``), $KD_EXTRA_MODELS folders and, if asked, the bundled bases (no trained head)."""
    choices = model_choices(root, include_bundled=False)
    for run in finished_runs(root):
        teacher = run.get("teacher")
        if not teacher or teacher in choices or teacher.startswith(("truncate:", "config:", "bundled:")):
            continue
        if specs.model_folder(Path(teacher)) is not None or (hub_ok and not Path(teacher).is_absolute()):
            choices[teacher] = f"{specs.spec_label(teacher, root)} (teacher of run {run['id']})"
    if include_bundled:
        for spec in specs.bundled_specs():
            choices.setdefault(spec, f"{spec} (base model)")
    return choices


def default_pair(root: Path, available: Iterable[str]) -> list[str]:
    """The newest finished distillation run's student and teacher (those of them in ``available``); when that
    is a showcase run, or there is none and the showcase is built (hosted: in the gallery), the showcase's
    teacher and students."""
    from .. import showcase

    available = list(available)
    for run in finished_runs(root):
        if run.get("mode") == "distill" and not run.get("showcase"):
            return [spec for spec in (run.get("teacher"), run["path"]) if spec in available]
        if run.get("mode") == "distill":
            break
    shown = [spec for spec in showcase.model_specs(root) if spec in available]
    return shown or available[:1]


def run_dir_of_spec(root: Path, spec: str) -> Path | None:
    """The run folder a model spec belongs to (a run folder or its model/ inside the runs folder), if any."""
    path = Path(spec)
    if not path.is_absolute():
        return None
    if path.name == runs.MODEL_DIR:
        path = path.parent
    return path if path.parent == Path(root).resolve() and (path / runs.CONFIG_FILE).is_file() else None

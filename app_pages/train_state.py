"""Train's form state from elsewhere: a preset, or a past run's settings (the runs table's Clone), turned into the
values of the form's widgets; and the first visit's defaults. build_configs (train.py) is the way back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app_pages import ui
from app_pages.train_fields import DATA_KEYS, FORM_DEFAULTS, SEED, TRAIN_KEYS, WIDGET_KEYS, clamped, widget_value
from distill_core import hosting, manage, presets, specs
from distill_core.config import TrainConfig, train_config_from_dict
from distill_core.errors import UserError
from distill_core.locations import uploads_for

ONLINE_PRESET, OFFLINE_PRESET = "Seed recipe", "Offline quick start"  # a first visit's preset, by Hub reachability
CUSTOM = "Custom"
# Where Train keeps uploaded transfer text: a folder of its own, so an unlabelled file is never offered as a
# labelled dataset (the Local dataset list reads the uploads folder's own files only).
TRANSFER_UPLOADS = "transfer"


def transfer_uploads(root: Path) -> Path:
    return uploads_for(root) / TRANSFER_UPLOADS


def source_values(source: str | None, found: dict[str, str]) -> dict[str, Any]:
    if source is None:  # the user's local data: AG News when it is there
        ag_news = next((path for path, label in found.items() if label.startswith("ag_news")), None)
        return {"t_source_kind": "Local dataset", "t_local": ag_news or next(iter(found), None)}
    if source in found:
        return {"t_source_kind": "Local dataset", "t_local": source}
    return {"t_source_kind": "Hugging Face Hub", "t_hub_id": source}


def student_values(student: str) -> dict[str, Any]:
    if student in specs.COMPACT_BERTS:
        return {"t_student_kind": "Google compact BERT", "t_compact": student}
    parsed = specs.parse_spec(student)
    if parsed.kind == "truncate":
        return {"t_student_kind": "Truncate the teacher", "t_trunc_n": parsed.layers}
    if parsed.kind == "config":
        return {"t_student_kind": "Fresh small BERT", "t_cfg_layers": parsed.layers, "t_cfg_hidden": parsed.hidden}
    return {"t_student_kind": "Other model spec", "t_student_spec": student}


def transfer_values(transfer: str | None, root: Path) -> dict[str, Any]:
    """The transfer widgets of a config's ``transfer``. A file Train kept from an upload (or any file, on the hosted
    demo, where nobody types a server path) comes back as the kept upload, not as a path to edit."""
    if not transfer:
        return {"t_transfer_kind": "none"}
    if transfer == "rest":
        return {"t_transfer_kind": "rest"}
    if hosting.is_hosted() or Path(transfer).parent == transfer_uploads(root):
        return {"t_transfer_kind": "upload", "t_transfer_file": transfer}
    return {"t_transfer_kind": "path", "t_transfer_path": transfer}


def preset_values(preset: presets.Preset, found: dict[str, str]) -> dict[str, Any]:
    """The widget values of a preset; what it leaves out keeps its current value. A method preset sets the loss
    settings only; a recipe sets the whole run, and switches the intermediate-layer terms off unless it names
    them (a recipe chosen after a layer method must not inherit its terms), and attention dropout to the default
    unless it names it (the Seed recipe keeps BERT's own; the next recipe must not inherit that)."""
    if preset.kind == "method":
        return {WIDGET_KEYS[field]: widget_value(field, value) for field, value in preset.train.items()}
    reset = {field: getattr(SEED, field) for field in (*presets.METHOD_FIELDS, "attention_dropout")}
    fields = {**reset, **preset.train, **preset.data}
    values = {WIDGET_KEYS[field]: widget_value(field, value) for field, value in fields.items()}
    values.update(source_values(preset.data_source, found))
    if preset.student:
        values.update(student_values(preset.student))
    stage = preset.teacher_stage
    if stage is not None:
        values.update(t_mode="pipeline", t_base=stage.base, t_teacher_epochs=stage.epochs, t_teacher_lr=stage.lr)
    else:
        values["t_mode"] = "distill"
    if stage is None and preset.teacher:
        hub_teacher = specs.parse_spec(preset.teacher).kind == "hub"
        values.update({"t_teacher": ui.HUB_OPTION, "t_teacher_hub": preset.teacher} if hub_teacher
                      else {"t_teacher": preset.teacher})
    return values


def apply_preset() -> None:
    preset = presets.PRESETS.get(st.session_state.get("t_preset"))
    if preset is not None:
        st.session_state.update(preset_values(preset, ui.local_datasets(ui.session_root())))
        st.session_state.pop("t_clone_note", None)


def cloned_values(config: TrainConfig, stage: dict[str, Any] | None, found: dict[str, str],
                  root: Path) -> dict[str, Any]:
    """The widget values that rebuild ``config`` (and its pipeline's teacher stage): build_configs reversed."""
    values = {key: widget_value(field, getattr(config, field)) for field, key in TRAIN_KEYS.items()}
    values |= {key: widget_value(field, getattr(config.data, field)) for field, key in DATA_KEYS.items()}
    values |= source_values(config.data.source, found)
    values |= transfer_values(config.data.transfer, root)
    if config.mode == "finetune":  # a fine-tune alone: its model is the base of a pipeline's teacher stage
        stage = {"base": config.student, "epochs": config.epochs, "lr": config.lr}
    else:
        values |= student_values(config.student)
    if stage is not None:
        values |= {"t_mode": "pipeline", "t_base": stage["base"],
                   "t_teacher_epochs": clamped("epochs", stage["epochs"]), "t_teacher_lr": clamped("lr", stage["lr"])}
    else:
        hub_teacher = specs.parse_spec(config.teacher or "").kind == "hub"
        values |= {"t_mode": "distill"} | ({"t_teacher": ui.HUB_OPTION, "t_teacher_hub": config.teacher}
                                           if hub_teacher else {"t_teacher": config.teacher})
    return values


def apply_clone(name: str, found: dict[str, str]) -> None:
    """Fill the form from run ``name`` (the runs table's Clone): preset Custom, the form open, a fresh run name."""
    root = ui.session_root()
    try:
        settings = manage.clone_settings(root, name)
        config = train_config_from_dict(settings["config"])
    except UserError as exc:
        st.session_state["t_clone_note"] = ("error", f"Cannot copy the settings of run {name!r}: {exc}")
        return
    st.session_state.update(cloned_values(config, settings.get("teacher_stage"), found, root))
    st.session_state.update(t_preset=CUSTOM, t_config_open=True,
                            t_clone_note=("info", f"Settings copied from run {name}."))
    st.session_state.pop("t_name", None)  # a fresh default name: the run's own is taken


def init_state(found: dict[str, str]) -> None:
    defaults = {**FORM_DEFAULTS, "t_source_kind": "Local dataset" if found else "Upload a file",
                "t_local": next(iter(found), None)}
    if "t_preset" not in st.session_state:  # first visit: the preset that works here
        st.session_state["t_preset"] = ONLINE_PRESET if ui.online() else OFFLINE_PRESET
        for key, value in defaults.items():
            st.session_state.setdefault(key, value)
        apply_preset()
    for key, value in defaults.items():  # keys dropped by Streamlit when their widget was hidden
        st.session_state.setdefault(key, value)

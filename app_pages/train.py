"""Train: configure a distillation (or a teacher fine-tune followed by one), start it, watch it live."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app_pages import estimate_panel, live_run, ui, upload_panel
from distill_core import hosting, manage, pipeline, preflight, presets, specs
from distill_core.app import catalog
from distill_core.config import FIELD_HELP as HELP
from distill_core.config import DataConfig, TrainConfig, bounds_of, settings_problems, train_config_from_dict
from distill_core.errors import UserError

CAPTION = ("Distil a fine-tuned teacher into a small student with loss = α·CE(labels) + (1 − α)·T²·KL(teacher ‖ "
           "student). Runs execute in a background worker: reloading the page or closing the tab does not stop them.")
SOURCE_KINDS = ["Local dataset", "Upload a file", "Hugging Face Hub"]
MODES = {"distill": "Distil from a fine-tuned teacher", "pipeline": "Fine-tune a teacher first, then distil"}
STUDENT_KINDS = ["Truncate the teacher", "Fresh small BERT", "Google compact BERT", "Other model spec"]
ONLINE_PRESET, OFFLINE_PRESET = "Seed recipe", "Offline quick start"  # a first visit's preset, by Hub reachability
SEED = TrainConfig(mode="distill", data=DataConfig(source=""), student="")  # TrainConfig defaults = the seed recipe
# The widget (session-state key) of each config field the form sets directly; presets map onto these too.
TRAIN_KEYS = {"temperature": "t_temperature", "alpha": "t_alpha", "kd_loss": "t_kd_loss", "epochs": "t_epochs",
              "lr": "t_lr", "batch_size": "t_batch", "optimizer": "t_optimizer", "dropout": "t_dropout",
              "warmup_ratio": "t_warmup", "weight_decay": "t_wd", "patience": "t_patience", "seed": "t_seed",
              "eval_batch_size": "t_eval_batch", "log_every_steps": "t_log_every", "max_steps": "t_max_steps",
              "teacher_cache": "t_teacher_cache"}
DATA_KEYS = {"text_column": "t_text_col", "label_column": "t_label_col", "valid_fraction": "t_valid_fraction",
             "test_fraction": "t_test_fraction", "train_samples": "t_train_samples",
             "eval_samples": "t_eval_samples", "max_length": "t_max_length"}
OPTIONAL = {"patience", "max_steps", "train_samples", "eval_samples"}  # None in a config is 0 in its widget
# Rows of four inputs: (label, config field, step, or the options of a selectbox[, number format]).
MAIN_ROWS = [
    [("Temperature T", "temperature", 0.5), ("α (label weight)", "alpha", 0.05), ("KD loss", "kd_loss", ["kl", "mse"]),
     ("Epochs", "epochs", 1)],
    [("Learning rate", "lr", 1e-5, "%.0e"), ("Batch size", "batch_size", 8),
     ("Optimizer", "optimizer", ["adamw", "adam"]), ("Student dropout", "dropout", 0.05)],
]
MORE_ROWS = [
    [("Train samples", "train_samples", 100), ("Eval samples", "eval_samples", 100),
     ("Max length (tokens)", "max_length", 8), ("Validation fraction", "valid_fraction", 0.05)],
    [("Warm-up ratio", "warmup_ratio", 0.05), ("Weight decay", "weight_decay", 0.01),
     ("Early-stopping patience", "patience", 1), ("Test fraction", "test_fraction", 0.05)],
    [("Seed", "seed", 1), ("Eval batch size", "eval_batch_size", 32), ("Log every N steps", "log_every_steps", 1),
     ("Max steps", "max_steps", 10)],
]
WIDGET_KEYS = {**TRAIN_KEYS, **DATA_KEYS}
# The form's words for every config field, so a bad setting is named as the user sees it ("Epochs", not epochs).
FORM_LABELS = {field: label for rows in (MAIN_ROWS, MORE_ROWS) for row in rows for label, field, *_ in row} | {
    "source": "Dataset", "text_column": "Text column", "label_column": "Label column", "student": "Student",
    "teacher": "Teacher", "teacher_cache": "Cache teacher logits"}
# A pipeline's teacher fine-tune: its own epochs, learning rate and model come from the teacher widgets.
TEACHER_STAGE_LABELS = FORM_LABELS | {"epochs": "Teacher epochs", "lr": "Teacher learning rate",
                                      "student": "Teacher base model"}
SHAPE_BOUNDS = {"t_trunc_n": (1, 48), "t_cfg_layers": (1, 48), "t_cfg_hidden": (64, 4096)}  # student shapes


def widget_bounds(field: str) -> tuple[float, float] | None:
    """The min and max of a field's widget: the config's own bounds, with 0 allowed where 0 means unset."""
    bounds = bounds_of(field)
    if bounds is None:
        return None
    low, high = bounds
    return (0, high) if field in OPTIONAL else (low, high)


def clamped(field: str, value: Any) -> Any:
    """A value a widget can hold (Streamlit refuses a widget value outside its min/max)."""
    bounds = widget_bounds(field)
    if bounds is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    return type(value)(min(max(value, bounds[0]), bounds[1]))


def widget_value(field: str, value: Any) -> Any:
    return 0 if value is None and field in OPTIONAL else clamped(field, value)


FORM_DEFAULTS: dict[str, Any] = {
    "t_hub_id": "ag_news", "t_mode": "distill", "t_teacher_hub": "", "t_base": presets.OFFLINE_BASE,
    "t_base_hub": "bert-base-uncased", "t_teacher_epochs": 3, "t_teacher_lr": 5e-5,
    "t_student_kind": "Truncate the teacher", "t_trunc_n": 3, "t_cfg_layers": 4, "t_cfg_hidden": 256,
    "t_compact": specs.SEED_STUDENT, "t_student_spec": "",
    **{key: widget_value(field, getattr(SEED, field)) for field, key in TRAIN_KEYS.items()},
    **{key: widget_value(field, getattr(SEED.data, field)) for field, key in DATA_KEYS.items()},
}


# ---------------------------------------------------------------- presets -> widget values
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


def preset_values(preset: presets.Preset, found: dict[str, str]) -> dict[str, Any]:
    """The widget values of a preset; what it leaves out keeps its current value."""
    fields = {**preset.train, **preset.data}
    values = {WIDGET_KEYS[field]: widget_value(field, value) for field, value in fields.items()}
    values.update(source_values(preset.data_source, found))
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


def cloned_values(config: TrainConfig, stage: dict[str, Any] | None, found: dict[str, str]) -> dict[str, Any]:
    """The widget values that rebuild ``config`` (and its pipeline's teacher stage): build_configs reversed."""
    values = {key: widget_value(field, getattr(config, field)) for field, key in TRAIN_KEYS.items()}
    values |= {key: widget_value(field, getattr(config.data, field)) for field, key in DATA_KEYS.items()}
    values |= source_values(config.data.source, found)
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
    try:
        settings = manage.clone_settings(ui.session_root(), name)
        config = train_config_from_dict(settings["config"])
    except UserError as exc:
        st.session_state["t_clone_note"] = ("error", f"Cannot copy the settings of run {name!r}: {exc}")
        return
    st.session_state.update(cloned_values(config, settings.get("teacher_stage"), found))
    st.session_state.update(t_preset="Custom", t_config_open=True,
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


# ---------------------------------------------------------------- the form
def preset_picker(found: dict[str, str]) -> None:
    st.selectbox("Preset", [*presets.PRESETS, "Custom"], key="t_preset", on_change=apply_preset,
                 help="\n\n".join(f"{p.name}: {p.summary}." for p in presets.PRESETS.values()))
    preset = presets.PRESETS.get(st.session_state["t_preset"])
    if preset and preset.data_source and preset.data_source not in found and not ui.online():
        st.warning(f"The {preset.name.lower()} downloads its teacher, student and data from the Hugging Face Hub, "
                   f"which cannot be reached: use the {OFFLINE_PRESET}.", icon=":material/cloud_off:")


def data_section(root: Path, found: dict[str, str]) -> str:
    """Where the data comes from; returns the data source ('' when none is chosen yet)."""
    st.subheader("1 · Data")
    source_kind = st.radio("Source", SOURCE_KINDS, key="t_source_kind", horizontal=True)
    source = ""
    if source_kind == "Upload a file":
        return upload_panel.render(root)  # its own column pickers, from the file's columns
    if source_kind == "Local dataset":
        if found:
            if st.session_state.get("t_local") not in found:
                st.session_state["t_local"] = next(iter(found))
            source = st.selectbox("Dataset", list(found), key="t_local", format_func=found.get,
                                  help="Folders with train/test files under the allowed data folders, and uploads.")
        else:
            st.info("No local datasets found: upload a file, or set KD_DATA_DIR to a folder of datasets.")
    else:
        source = st.text_input("Hub dataset id", key="t_hub_id", help=HELP["source"]).strip()
        if not ui.online():
            st.warning("Offline: Hub datasets cannot be downloaded. Choose a local dataset or upload a file.",
                       icon=":material/cloud_off:")
    col_text, col_label = st.columns(2)
    col_text.text_input("Text column", key="t_text_col", help=HELP["text_column"])
    col_label.text_input("Label column", key="t_label_col", help=HELP["label_column"])
    return source


def teacher_picker(root: Path) -> str:
    teachers = hosting.with_gallery(lambda r: catalog.model_choices(r, include_bundled=False, trained_only=True),
                                    root)
    return ui.spec_picker("Teacher", "t_teacher", teachers, "t_teacher_hub",
                          "A fine-tuned classifier: a finished run, a local model folder or a Hub id.")


def base_picker(root: Path) -> presets.TeacherStage | None:
    """The base model a pipeline fine-tunes into its teacher, and how (None until a base is named)."""
    bases = {**{s: f"{s} (base model)" for s in specs.bundled_specs()},
             **hosting.with_gallery(lambda r: catalog.model_choices(r, include_bundled=False), root)}
    base = ui.spec_picker("Teacher base model (fine-tuned first)", "t_base", bases, "t_base_hub",
                          "Fine-tuned on the labels into the teacher, which is then distilled.")
    c1, c2 = st.columns(2)
    epochs = c1.number_input("Teacher epochs", step=1, key="t_teacher_epochs", help="Epochs of the teacher fine-tune.",
                             **min_max("epochs"))
    lr = c2.number_input("Teacher learning rate", step=1e-5, format="%.0e", key="t_teacher_lr",
                         help="Peak learning rate of the teacher fine-tune (1e-4 suits MiniLM).", **min_max("lr"))
    return presets.TeacherStage(base, int(epochs), float(lr)) if base else None


def student_picker() -> str:
    kind = st.selectbox("Student", STUDENT_KINDS, key="t_student_kind",
                        help="Truncate: the teacher's embeddings and N evenly spaced layers (DistilBERT-style). "
                             "Fresh: a randomly initialised BERT of that shape.")
    if kind == "Truncate the teacher":
        kept = st.number_input("Layers kept (N)", step=1, key="t_trunc_n", **shape_bounds("t_trunc_n"))
        student = f"truncate:{int(kept)}"
    elif kind == "Fresh small BERT":
        c1, c2 = st.columns(2)
        layers = int(c1.number_input("Layers", step=1, key="t_cfg_layers", **shape_bounds("t_cfg_layers")))
        hidden = int(c2.number_input("Hidden size", step=64, key="t_cfg_hidden", **shape_bounds("t_cfg_hidden"),
                                     help="A multiple of 64 (heads = hidden / 64)."))
        student = f"config:L{layers}-H{hidden}"
    elif kind == "Google compact BERT":
        student = st.selectbox("Compact BERT (Turc et al., 2019)", specs.COMPACT_BERTS, key="t_compact",
                               help="Pre-trained small BERTs from the Hub; the seed recipe uses L-10_H-256.")
        if not ui.online():
            st.warning("Offline: compact BERTs come from the Hub. Truncate the teacher instead.",
                       icon=":material/cloud_off:")
    else:
        student = st.text_input("Student spec", key="t_student_spec", placeholder="org/name or a model folder",
                                help="A Hub id, a local model folder, truncate:N or config:L<n>-H<h>.").strip()
    st.caption(f"Student spec: `{student or '—'}`")
    return student


def models_section(root: Path) -> tuple[str, str, presets.TeacherStage | None]:
    """(teacher, student, teacher stage); in a pipeline the teacher is the base its first stage fine-tunes."""
    st.subheader("2 · Models")
    mode = st.radio("Mode", list(MODES), key="t_mode", format_func=MODES.get, horizontal=True)
    col_teacher, col_student = st.columns(2)
    with col_teacher:
        if mode == "distill":
            teacher, stage = teacher_picker(root), None
        else:
            stage = base_picker(root)
            teacher = stage.base if stage else ""
    with col_student:
        student = student_picker()
    return teacher, student, stage


def min_max(field: str) -> dict[str, Any]:
    """number_input's min_value/max_value for a config field, typed like its default (Streamlit refuses a mix)."""
    bounds = widget_bounds(field)
    if bounds is None:
        return {}
    kind = type(FORM_DEFAULTS.get(WIDGET_KEYS.get(field, ""), bounds[0]))
    kind = int if kind is int else float
    return {"min_value": kind(bounds[0]), "max_value": kind(bounds[1])}


def shape_bounds(key: str) -> dict[str, int]:
    low, high = SHAPE_BOUNDS[key]
    st.session_state[key] = min(max(int(st.session_state.get(key, low)), low), high)
    return {"min_value": low, "max_value": high}


def field_inputs(rows: list[list[tuple]]) -> None:
    for row in rows:
        for column, (label, field, step, *number_format) in zip(st.columns(4), row, strict=True):
            key, help = WIDGET_KEYS[field], HELP[field]
            if isinstance(step, list):
                column.selectbox(label, step, key=key, help=help)
            else:
                column.number_input(label, step=step, key=key, help=help, format=next(iter(number_format), None),
                                    **min_max(field))


def hyperparameters_section() -> None:
    st.subheader("3 · Hyperparameters")
    field_inputs(MAIN_ROWS)
    with st.expander("More settings: data sizes, schedule, runtime"):
        field_inputs(MORE_ROWS)
        st.checkbox("Cache teacher logits", key=TRAIN_KEYS["teacher_cache"], help=HELP["teacher_cache"])


def form_values(keys: dict[str, str]) -> dict[str, Any]:
    """Config fields from their widgets, in the types of the defaults (0 in an optional field is None)."""
    values = {field: type(FORM_DEFAULTS[key])(st.session_state[key]) for field, key in keys.items()}
    return {field: (value or None) if field in OPTIONAL else value for field, value in values.items()}


def build_configs(source: str, teacher: str, student: str, stage: presets.TeacherStage | None
                  ) -> tuple[TrainConfig, TrainConfig | None]:
    """The distillation config, and the teacher fine-tune that comes first in a pipeline (else None)."""
    data = DataConfig(source=source, **form_values(DATA_KEYS))
    distill = TrainConfig(mode="distill", data=data, student=student, teacher=teacher, **form_values(TRAIN_KEYS),
                          extra={"preset": st.session_state["t_preset"]})
    if stage is None:
        return distill, None
    return distill, pipeline.teacher_stage_config(distill, stage.base, epochs=stage.epochs, lr=stage.lr)


# ---------------------------------------------------------------- start
def settings_check(distill: TrainConfig, teacher: TrainConfig | None) -> bool:
    """Every bad setting at once, in the form's words, and warnings for outlandish ones; True when Start may go."""
    problems = settings_problems(distill, FORM_LABELS)
    if teacher is not None:
        problems += [p for p in settings_problems(teacher, TEACHER_STAGE_LABELS) if p not in problems]
    if not distill.data.source.strip():
        st.info("Pick a dataset (or upload a file) to start.", icon=":material/dataset:")
        return False
    if problems:
        st.error(f"{len(problems)} setting{'s' if len(problems) > 1 else ''} to fix before Start:\n\n"
                 + "\n".join(f"- {problem}" for problem in problems), icon=":material/error:")
        return False
    warnings = preflight.setting_warnings(distill, FORM_LABELS)
    if teacher is not None:
        warnings += preflight.setting_warnings(teacher, TEACHER_STAGE_LABELS)
    if warnings:
        st.warning("Unusual settings (Start still works):\n\n" + "\n".join(f"- {w}" for w in warnings),
                   icon=":material/warning:")
    return True


def start_controls(root: Path, distill: TrainConfig, teacher: TrainConfig | None) -> None:
    """Run name and Start; a started run (a pipeline's first stage) becomes the one the live panel follows."""
    ready = settings_check(distill, teacher)
    name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    st.session_state.setdefault("t_name", pipeline.default_run_name(distill))
    run_name = name_col.text_input("Run name", key="t_name", help="Letters, digits, . _ - (becomes a folder name).")
    # Never disabled: a press while settings are bad only draws their list again (above), and starts nothing.
    if not button_col.button("Start", type="primary", icon=":material/play_arrow:", width="stretch") or not ready:
        return
    try:
        with st.spinner("Checking the data and models…"):
            started = (pipeline.start_pipeline(root, run_name, teacher, distill) if teacher is not None
                       else pipeline.start_run(root, run_name, distill))
    except UserError as exc:
        ui.show_error(exc)
        return
    st.session_state["t_follow"] = started.follow.name
    st.session_state["t_collapse"] = True
    del st.session_state["t_name"]  # a fresh default name for the next run
    st.rerun()


def configure(root: Path, found: dict[str, str]) -> None:
    kind, note = st.session_state.get("t_clone_note", (None, ""))
    if kind == "info":
        st.info(note, icon=":material/content_copy:")
    elif kind == "error":
        st.error(note, icon=":material/error:")
    preset_picker(found)
    source = data_section(root, found)
    teacher, student, stage = models_section(root)
    hyperparameters_section()
    distill, teacher_config = build_configs(source, teacher, student, stage)
    st.subheader("4 · Start")
    estimate_panel.render(distill, teacher_config)
    start_controls(root, distill, teacher_config)


def render() -> None:
    root = ui.prologue("Train", CAPTION)
    found = ui.local_datasets(root)
    init_state(found)
    clone = st.session_state.pop("t_clone", None)  # set by the runs table's Clone
    if clone:
        apply_clone(clone, found)
    if st.session_state.pop("t_collapse", False):  # a run was just started: make room for its live panel
        st.session_state["t_config_open"] = False
    with st.expander("Configure a new run", expanded=bool(clone) or not st.query_params.get("run"),
                     icon=":material/tune:",
                     key="t_config_open", on_change="rerun"):
        configure(root, found)
    live_run.render(root)


render()

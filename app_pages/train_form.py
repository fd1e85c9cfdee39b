"""Train's settings form, section by section: preset, data (and transfer text), models, hyperparameters (with the
intermediate-layer terms). Each section draws its widgets and returns what the config needs from them; the
widget keys, labels and bounds live in train_fields.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app_pages import ui, upload_panel
from app_pages.train_fields import (
    FORM_LABELS,
    LAYER_ROWS,
    MAIN_ROWS,
    MORE_ROWS,
    PRECISION_WORDS,
    TRAIN_KEYS,
    field_inputs,
    min_max,
    shape_bounds,
)
from app_pages.train_state import CUSTOM, OFFLINE_PRESET, apply_preset, transfer_uploads
from distill_core import hardware, hosting, preflight, presets, specs
from distill_core.app import catalog, datasets
from distill_core.config import FIELD_HELP as HELP
from distill_core.config import MIXED_PRECISIONS, TrainConfig
from distill_core.errors import UserError

SOURCE_KINDS = ["Local dataset", "Upload a file", "Hugging Face Hub"]
MODES = {"distill": "Distil from a fine-tuned teacher", "pipeline": "Fine-tune a teacher first, then distil"}
STUDENT_KINDS = ["Truncate the teacher", "Fresh small BERT", "Google compact BERT", "Other model spec"]
# Transfer text choices; "path" only off the hosted demo, where a visitor must never name a file of the server.
TRANSFER_KINDS = {"none": "None", "rest": "The training rows left out by the subsample",
                  "upload": "Upload a file", "path": "A file path or Hub dataset id"}
LAYERS_NOTE = ("Any of these terms makes the **teacher run on every training batch** (its hidden states are too "
               "big to cache, unlike its logits), so each step costs a teacher forward pass too: slower.")


# ---------------------------------------------------------------- preset
def preset_picker(found: dict[str, str]) -> None:
    recipes = [name for name, p in presets.PRESETS.items() if p.kind == "recipe"]
    methods = [name for name, p in presets.PRESETS.items() if p.kind == "method"]
    st.selectbox("Preset", [*recipes, *methods, CUSTOM], key="t_preset", on_change=apply_preset,
                 help="Recipes set the whole run; methods (" + ", ".join(methods) + ") set only how the student "
                      "learns and keep your data, teacher and student.\n\n"
                      + "\n\n".join(f"{p.name}: {p.summary}." for p in presets.PRESETS.values()))
    preset = presets.PRESETS.get(st.session_state["t_preset"])
    if preset is None:
        return
    st.caption(f"**{preset.name}**{' (method: loss settings only)' if preset.kind == 'method' else ''}: "
               f"{preset.summary}. Source: {preset.source}.")
    if preset.data_source and preset.data_source not in found and not ui.online():
        st.warning(f"The {preset.name.lower()} downloads its teacher, student and data from the Hugging Face Hub, "
                   f"which cannot be reached: use the {OFFLINE_PRESET}.", icon=":material/cloud_off:")


# ---------------------------------------------------------------- 1 · data
def data_section(root: Path, found: dict[str, str]) -> tuple[str, str | None, Any]:
    """Where the data comes from: (data source, '' when none is chosen yet; transfer text, None for none; the
    place under the transfer field where the page says what is wrong with it, once the config is built)."""
    st.subheader("1 · Data")
    source_kind = st.radio("Source", SOURCE_KINDS, key="t_source_kind", horizontal=True)
    source = ""
    if source_kind == "Upload a file":
        source = upload_panel.render(root)  # its own column pickers, from the file's columns
    elif source_kind == "Local dataset":
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
    if source_kind != "Upload a file":
        col_text, col_label = st.columns(2)
        col_text.text_input("Text column", key="t_text_col", help=HELP["text_column"])
        col_label.text_input("Label column", key="t_label_col", help=HELP["label_column"])
    transfer = transfer_section(root)
    return source, transfer, st.empty()


def transfer_problems(config: TrainConfig) -> list[str]:
    """The transfer settings' problems (preflight's one rule, also the CLI's) in the form's words."""
    texts = []
    for problem in preflight.transfer_problems(config):
        text = problem.text(FORM_LABELS)
        if problem.field == "transfer" and config.data.train_samples is None:  # where that setting is on the form
            text += f". Set {FORM_LABELS['train_samples']} under More settings"
        texts.append(text)
    return texts


def transfer_section(root: Path) -> str | None:
    """Unlabelled text the student learns from the teacher alone: the DataConfig's ``transfer`` (None for none)."""
    kinds = [k for k in TRANSFER_KINDS if k != "path" or not hosting.is_hosted()]
    if st.session_state.get("t_transfer_kind") not in kinds:
        st.session_state["t_transfer_kind"] = "none"
    kind = st.radio(FORM_LABELS["transfer"], kinds, key="t_transfer_kind", format_func=TRANSFER_KINDS.get,
                    horizontal=True, help=HELP["transfer"] + " Its loss is the KD part only (no labels).")
    transfer: str | None = None
    if kind == "rest":
        transfer = "rest"
    elif kind == "upload":
        transfer = transfer_upload(root)
    elif kind == "path":
        transfer = st.text_input("Transfer file or Hub dataset id", key="t_transfer_path",
                                 placeholder="a .csv/.jsonl/.parquet file, or org/name").strip() or None
    if kind != "none":
        st.number_input(FORM_LABELS["transfer_samples"], step=1000, key="t_transfer_samples",
                        help=HELP["transfer_samples"], **min_max("transfer_samples"))
    return transfer


def transfer_upload(root: Path) -> str | None:
    """An uploaded file of unlabelled text, kept in Train's own transfer folder (never listed as a dataset)."""
    upload = st.file_uploader("Transfer text file (CSV, JSONL, JSON or Parquet; its text column is used, labels are "
                              "ignored)", key="t_transfer_upload")
    if upload is not None:
        content = upload.getvalue()
        problems = datasets.file_problems(upload.name, content)
        if problems:
            st.error("\n".join(problems), icon=":material/error:")
            return None
        try:
            kept = datasets.save_upload(upload.name, content, transfer_uploads(root))
        except UserError as exc:
            ui.show_error(exc)
            return None
        st.session_state["t_transfer_file"] = str(kept)
    kept_file = st.session_state.get("t_transfer_file")
    if kept_file and Path(kept_file).is_file():
        st.caption(f"Transfer text: {datasets.upload_label(Path(kept_file))}")
        return str(kept_file)
    return None


# ---------------------------------------------------------------- 2 · models
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


# ---------------------------------------------------------------- 3 · hyperparameters
def layers_section() -> None:
    """The intermediate-layer terms: off (weight 0) unless a method preset or the user turns them on."""
    weights = [st.session_state.get(TRAIN_KEYS[f], 0.0) for f in ("hidden_weight", "attention_weight",
                                                                  "cosine_weight")]
    on = any(w > 0 for w in weights)
    with st.expander("Intermediate layers" + (" (on: the teacher runs on every batch)" if on else ""),
                     expanded=on, icon=":material/layers:"):
        st.caption(LAYERS_NOTE)
        field_inputs(LAYER_ROWS)
        st.text_input(FORM_LABELS["layer_map"], key=TRAIN_KEYS["layer_map"], help=HELP["layer_map"],
                      placeholder="evenly spaced (e.g. 2,4,6 for 3 student layers on a 6-layer teacher)")


def hyperparameters_section() -> None:
    st.subheader("3 · Hyperparameters")
    field_inputs(MAIN_ROWS)
    layers_section()
    with st.expander("More settings: data sizes, schedule, runtime"):
        field_inputs(MORE_ROWS)
        col_precision, col_cache = st.columns(2, vertical_alignment="bottom")
        precision = col_precision.selectbox(FORM_LABELS["mixed_precision"], list(MIXED_PRECISIONS),
                                            key=TRAIN_KEYS["mixed_precision"], format_func=PRECISION_WORDS.get,
                                            help=HELP["mixed_precision"])
        # The worker trains on this server's hardware: say what the choice becomes here, and why.
        col_precision.caption(f"On this machine: {hardware.training_precision(precision).reason}.")
        col_cache.checkbox(FORM_LABELS["teacher_cache"], key=TRAIN_KEYS["teacher_cache"], help=HELP["teacher_cache"])
        col_cache.checkbox(FORM_LABELS["freeze_embeddings"], key=TRAIN_KEYS["freeze_embeddings"],
                           help=HELP["freeze_embeddings"])

"""Train: configure a distillation (or a teacher fine-tune followed by one), start it, watch it live.

The form is split by concern: train_fields.py (which widget holds which setting), train_state.py (presets and
clones into widget values), train_form.py (the sections); this page builds the configs and starts the run."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from app_pages import estimate_panel, live_run, train_form, ui
from app_pages.sweep_panel import sweep_section
from app_pages.train_fields import DATA_KEYS, FORM_LABELS, TEACHER_STAGE_LABELS, TRAIN_KEYS, form_values
from app_pages.train_state import apply_clone, init_state
from distill_core import pipeline, preflight, presets
from distill_core.config import DataConfig, TrainConfig, settings_problems
from distill_core.errors import UserError

CAPTION = ("Distil a fine-tuned teacher into a small student with loss = α·CE(labels) + (1 − α)·T²·KL(teacher ‖ "
           "student), optionally plus intermediate-layer terms. Runs execute in a background worker: reloading the "
           "page or closing the tab does not stop them.")


def build_configs(source: str, transfer: str | None, teacher: str, student: str,
                  stage: presets.TeacherStage | None) -> tuple[TrainConfig, TrainConfig | None]:
    """The distillation config, and the teacher fine-tune that comes first in a pipeline (else None)."""
    data_values = form_values(DATA_KEYS)
    if transfer is None:
        data_values["transfer_samples"] = None  # the cap's widget is hidden without transfer text
    data = DataConfig(source=source, transfer=transfer, **data_values)
    distill = TrainConfig(mode="distill", data=data, student=student, teacher=teacher, **form_values(TRAIN_KEYS),
                          extra={"preset": st.session_state["t_preset"]})
    if stage is None:
        return distill, None
    # The teacher fine-tune learns from labels only: transfer text (no labels, no teacher yet) is the distillation's.
    labelled = replace(distill, data=replace(data, transfer=None, transfer_samples=None))
    return distill, pipeline.teacher_stage_config(labelled, stage.base, epochs=stage.epochs, lr=stage.lr)


# ---------------------------------------------------------------- start
def form_problems(distill: TrainConfig, teacher: TrainConfig | None, form_only: list[str]) -> list[str]:
    """Every bad setting at once, in the form's words: the configs' own, then what only the form can see."""
    problems = settings_problems(distill, FORM_LABELS)
    if teacher is not None:
        problems += [p for p in settings_problems(teacher, TEACHER_STAGE_LABELS) if p not in problems]
    return problems + [p for p in form_only if p not in problems]


def settings_check(distill: TrainConfig, teacher: TrainConfig | None, problems: list[str]) -> bool:
    """The bad settings listed at once, and warnings for outlandish ones; True when Start may go."""
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


def start_controls(root: Path, distill: TrainConfig, teacher: TrainConfig | None, problems: list[str]) -> None:
    """Run name and Start; a started run (a pipeline's first stage) becomes the one the live panel follows."""
    ready = settings_check(distill, teacher, problems)
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
    train_form.preset_picker(found)
    source, transfer, transfer_slot = train_form.data_section(root, found)
    teacher, student, stage = train_form.models_section(root)
    train_form.hyperparameters_section()
    distill, teacher_config = build_configs(source, transfer, teacher, student, stage)
    transfer_problems = train_form.transfer_problems(distill)
    if transfer_problems:  # said at the transfer field too, where the choice was made
        transfer_slot.error("\n\n".join(transfer_problems), icon=":material/error:")
    problems = form_problems(distill, teacher_config, transfer_problems)
    st.subheader("4 · Start")
    estimate_panel.render(distill, teacher_config)
    start_controls(root, distill, teacher_config, problems)
    sweep(distill, teacher_config, problems)


def sweep(distill: TrainConfig, teacher: TrainConfig | None, problems: list[str]) -> None:
    """A T x alpha grid of the settings above, run as one queued group (the sweep panel's own form)."""
    with st.expander("Sweep T × α", icon=":material/grid_on:"):
        if teacher is not None:  # a sweep distils from a teacher that exists: a pipeline's is not trained yet
            problems = [*problems, "A sweep distils from a finished teacher: choose “Distil from a fine-tuned "
                                   "teacher” (Mode) and pick one; run the pipeline first to make it"]
        sweep_section(distill if distill.data.source.strip() else None, problems)


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

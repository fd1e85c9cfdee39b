"""Runs: every run of this session's runs folder in one table (state, kind, models, duration, accuracy, created),
filtered by state and by name or model, and what can be done with the selected runs: open one on Train, clone
its settings into Train's form, rename it, resume it in the background, stop or delete runs.

The rules (what may be deleted, renamed or resumed, and how other runs' references follow a rename) live in
distill_core.manage; the rows in distill_core.app.runs_table. This page reads widgets, calls them and draws.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import manage
from distill_core.app import runs_table
from distill_core.errors import UserError

CAPTION = ("Every run in your runs folder. Tick the box at the left of a row to select it (several for Stop or "
           "Delete); sort by clicking a column's header.")
PERCENT = {"format": "%.1f%%"}
COLUMN_CONFIG = {
    "name": st.column_config.TextColumn("Name"),
    "state": st.column_config.TextColumn("State"),
    "kind": st.column_config.TextColumn("Kind", help="A pipeline fine-tunes a teacher (1/2), then distils it (2/2)."),
    "models": st.column_config.TextColumn("Models", help="teacher → student for a distillation; the model trained "
                                                         "for a fine-tune."),
    "duration": st.column_config.NumberColumn("Duration", format="compact",
                                              help="From start to end; for a running run, its time so far."),
    "best_valid_accuracy": st.column_config.NumberColumn("Best validation accuracy", **PERCENT),
    "test_accuracy": st.column_config.NumberColumn("Test accuracy", **PERCENT),
    "created": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
}
FLASH = "r_flash"  # a message to show after the rerun an action ends with
# The open dialog, (action, run names): a dialog stays open while the page calls it on every rerun.
PENDING = "r_pending"


def flash(message: str) -> None:
    """End an action: close its dialog and rerun the page, which shows ``message``."""
    st.session_state[FLASH] = message
    close_dialog()
    st.rerun()


def close_dialog() -> None:
    st.session_state.pop(PENDING, None)


def filters(rows: list[dict]) -> list[dict]:
    left, right = st.columns([1, 2])
    states = left.multiselect("State", runs_table.state_options(rows), key="r_states", placeholder="All states")
    text = right.text_input("Name or model contains", key="r_text", placeholder="e.g. quickstart or truncate:3")
    return runs_table.filter_rows(rows, states, text)


@st.dialog("Delete runs", on_dismiss=close_dialog)
def confirm_delete(root: Path, names: list[str]) -> None:
    plan = manage.plan_delete(root, names)
    if plan.problems:
        for problem in plan.problems:
            ui.show_error(problem)
        return
    st.markdown(f"Delete **{', '.join(names)}** and all their files (model, metrics, checkpoint)? "
                "This cannot be undone.")
    for note in plan.notes:
        st.warning(note, icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button(f"Delete {len(names)} run(s)", type="primary", key="r_delete_yes", icon=":material/delete:"):
        try:
            manage.delete_runs(root, names)
        except UserError as exc:
            ui.show_error(exc)
            return
        flash(f"Deleted {', '.join(names)}.")
    if no.button("Cancel", key="r_delete_no"):
        close_dialog()
        st.rerun()


@st.dialog("Rename run", on_dismiss=close_dialog)
def rename_form(root: Path, name: str) -> None:
    new_name = st.text_input("New name", value=name, key="r_new_name", max_chars=64,
                             help="1-64 characters from A-Z a-z 0-9 . _ - (not starting with . or -). Runs that "
                                  "name this one as their teacher are updated.")
    if st.button("Rename", type="primary", key="r_rename_yes"):
        try:
            new_dir, updated = manage.rename_run(root, name, new_name, field="New name")
        except UserError as exc:
            ui.show_error(exc)
            return
        also = f" (updated the runs that name it: {', '.join(updated)})" if updated else ""
        flash(f"Renamed {name} to {new_dir.name}{also}.")


def actions(root: Path, selected: list[dict]) -> None:
    """The buttons for the selection; each one disabled with the reason as its help when it does not apply."""
    blocked = runs_table.blocked_actions(selected)
    names = [row["name"] for row in selected]
    st.markdown(f"**Selected:** {', '.join(names)}" if names else "_No run selected._")
    buttons = st.columns(6)
    labels = {"open": ("Open", ":material/monitoring:"), "clone": ("Clone settings", ":material/content_copy:"),
              "resume": ("Resume", ":material/play_arrow:"), "rename": ("Rename", ":material/edit:"),
              "stop": ("Stop", ":material/stop:"), "delete": ("Delete", ":material/delete:")}
    pressed = None
    for column, (action, (label, icon)) in zip(buttons, labels.items(), strict=True):
        why = blocked[action]
        if column.button(label, key=f"r_{action}", icon=icon, disabled=why is not None,
                         help=f"Not available: {why}" if why else None, use_container_width=True):
            pressed = action
    if pressed:
        act(root, pressed, names)


def act(root: Path, action: str, names: list[str]) -> None:
    name = names[0]
    if action == "open":
        st.switch_page(ui.TRAIN_PAGE, query_params={"run": name})
    elif action == "clone":
        st.session_state["t_clone"] = name  # the Train page fills its form from this run's config.json
        st.switch_page(ui.TRAIN_PAGE)
    elif action in ("rename", "delete"):
        st.session_state[PENDING] = (action, names)
    elif action == "stop":
        stopped = manage.stop_runs(root, names)
        flash(f"Stopping {', '.join(stopped)}…" if stopped else "Nothing to stop: the runs had already ended.")
    elif action == "resume":
        try:
            resumed = manage.resume_in_background(root, name)
        except UserError as exc:
            ui.show_error(exc)
            return
        when = "waits for a free worker slot" if resumed.pid is None else "continues in the background"
        also = f"; {', '.join(resumed.requeued)} queued again after it" if resumed.requeued else ""
        flash(f"Resumed {name}: it {when} from its last completed epoch{also}.")


def render() -> None:
    root = ui.prologue("Runs", CAPTION)
    if FLASH in st.session_state:
        st.success(st.session_state.pop(FLASH), icon=":material/check_circle:")
    rows = runs_table.load_rows(root)
    if not rows:
        ui.nothing_yet("No runs yet: start one on Train, and it will be listed here.")
    shown = filters(rows)
    if not shown:
        st.info("No run matches these filters: clear the state or the text to see every run.",
                icon=":material/filter_alt_off:")
        return
    event = st.dataframe(shown, key=runs_table.table_key(shown), on_select="rerun", selection_mode="multi-row",
                         hide_index=True, column_order=runs_table.COLUMNS, column_config=COLUMN_CONFIG, placeholder="—")
    st.caption(f"{len(shown)} of {len(rows)} runs shown. Durations of running runs are as of this view: "
               "any click refreshes it.")
    actions(root, [shown[i] for i in event.selection.rows if i < len(shown)])
    open_dialog(root)


def open_dialog(root: Path) -> None:
    """Draw the dialog an action opened (Delete's confirmation, Rename's form) until it is done or dismissed."""
    action, names = st.session_state.get(PENDING) or (None, [])
    if action == "delete":
        confirm_delete(root, names)
    elif action == "rename":
        rename_form(root, names[0])


render()

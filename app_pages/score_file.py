"""Compare's "score on a file": the selected runs' models (and their teachers) on every row of a test file the
user brings, an upload or a local dataset's test file. Called by compare.py as ``score_file.render(root, names)``;
the engine side is distill_core.app.scoring."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import ui
from distill_core.app import compare, scoring
from distill_core.errors import UserError
from distill_core.locations import max_upload_mb
from distill_core.test_sets import frame_to_test_set

SOURCES = ["Upload a file", "Local dataset"]
RESULT_KEY = "sf_result"
COLUMN_CONFIG = {
    "model": "Model", "role": "Role",
    "accuracy": st.column_config.NumberColumn("Accuracy", format="%.1f%%", help="Correct rows / all rows."),
    "correct": st.column_config.NumberColumn("Correct"),
    "n": st.column_config.NumberColumn("Rows", help="Every row of the file is scored."),
    "macro_f1": st.column_config.NumberColumn("Macro-F1", format="%.1f%%"),
    "agreement": st.column_config.NumberColumn("Agreement with teacher", format="%.1f%%",
                                               help="Share of rows where the model predicts its teacher's class."),
}


def pick_file(root: Path) -> tuple[pd.DataFrame, str, list[str] | None, str] | None:
    """(table, its name, classes.txt names, a fingerprint of the file) of the chosen test file, or None."""
    source = st.radio("Test file", SOURCES, key="sf_source", horizontal=True)
    try:
        if source == "Upload a file":
            cap = max_upload_mb()
            upload = st.file_uploader(f"CSV, JSONL, JSON or Parquet with a text and a label column (up to {cap} MB; "
                                      "it is read, scored and not kept)", key="sf_upload", max_upload_size=cap)
            if upload is None:
                return None
            content = upload.getvalue()
            frame = scoring.read_upload(upload.name, content)
            return frame, upload.name, None, hashlib.sha256(content).hexdigest()
        found = ui.local_datasets(ui.session_root())
        if not found:
            st.info("No local datasets found: upload a test file instead.", icon=":material/info:")
            return None
        path = st.selectbox("Dataset", list(found), key="sf_local", format_func=found.get,
                            help="A folder's test file, or a data file, scored in full.")
        frame, where, class_names = scoring.read_local(path)
        return frame, where, class_names, f"{path}:{Path(path).stat().st_mtime_ns}"
    except UserError as exc:
        ui.show_error(exc)
        return None


def pick_columns(frame: pd.DataFrame, fingerprint: str) -> tuple[str, str]:
    """The text column(s) (joined with '+') and the label column, chosen from the file's own columns."""
    columns = [str(c) for c in frame.columns]
    if st.session_state.get("sf_columns_of") != fingerprint:  # a new file: guess its columns afresh
        text, label = scoring.guess_columns(frame)
        st.session_state.update(sf_text=[text], sf_label=label, sf_columns_of=fingerprint)
    left, right = st.columns(2)
    texts = left.multiselect("Text column", columns, key="sf_text",
                             help="The text to classify; several columns are joined with a space.")
    label = right.selectbox("Label column", columns, key="sf_label",
                            help="Class names (matched to each model's classes, case does not matter) or ids.")
    return "+".join(texts), str(label)


def show_result(rows: list[dict], problems: list[str]) -> None:
    for problem in problems:
        ui.show_error(problem)
    if rows:
        percent = ("accuracy", "macro_f1", "agreement")
        shown = [{k: (v * 100 if k in percent and isinstance(v, float) else v) for k, v in row.items()}
                 for row in rows]
        agreements = [row.get("agreement") for row in rows]
        config = dict(COLUMN_CONFIG)
        if all(a is None for a in agreements):  # no teacher among the scored models: nothing to agree with
            shown = [{k: v for k, v in row.items() if k != "agreement"} for row in shown]
        elif None in agreements:  # a fine-tuned run beside students: "—" for it, never Streamlit's "None"
            for row, cell in zip(shown, compare.display_table(rows, {"agreement": "percent"}), strict=True):
                row["agreement"] = cell["agreement"]
            config["agreement"] = st.column_config.TextColumn("Agreement with teacher", alignment="right",
                                                              help=COLUMN_CONFIG["agreement"].get("help"))
        st.dataframe(shown, hide_index=True, column_config=config)


def render(root: Path, run_names: Sequence[str]) -> None:
    """The section: a file, its columns, a Score button, the table (kept until the file or choices change)."""
    st.subheader("Score on your own test file")
    st.caption(f"Every row of a file you bring (up to {scoring.PAGE_MAX_ROWS:,} rows here; any size with "
               "`python -m distill_core evaluate`), scored by each selected run's model and its teacher.")
    if not run_names:
        return
    picked = pick_file(root)
    if picked is None:
        return
    frame, where, class_names, fingerprint = picked
    st.caption(f"{where}: {len(frame):,} rows; the first ones:")
    st.dataframe(frame.head(5), hide_index=True, key="sf_preview")
    text_column, label_column = pick_columns(frame, fingerprint)
    models = scoring.models_of_runs(root, run_names)
    choice = (fingerprint, text_column, label_column, tuple(m.spec for m in models))
    if st.button(f"Score {len(models)} model(s) on all {len(frame):,} rows", key="sf_score",
                 icon=":material/fact_check:"):
        st.session_state.pop(RESULT_KEY, None)
        try:
            test_set = frame_to_test_set(frame, text_column, label_column, where, class_names=class_names,
                                         fields=scoring.FORM_FIELDS)
            scoring.check_page_size(len(test_set))
            with st.spinner(f"Scoring {len(models)} model(s) on {len(test_set):,} rows…"):
                rows, problems = scoring.score_models(models, test_set)
        except UserError as exc:
            ui.show_error(exc)
            return
        st.session_state[RESULT_KEY] = (choice, rows, problems)
    result = st.session_state.get(RESULT_KEY)
    if result and result[0] == choice:
        show_result(result[1], result[2])

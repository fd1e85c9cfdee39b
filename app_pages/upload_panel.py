"""Train's upload panel: a file judged as it arrives (preview, columns picked from the file, rows per class, every
problem at once), kept in the uploads folder only once accepted. Its own module: judging an upload is one
concern, and Train's form stays a form."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core.app import datasets, uploads
from distill_core.errors import UserError
from distill_core.locations import max_upload_mb, uploads_for

TEXT_KEY, LABEL_KEY, FILE_KEY = "t_upload_text", "t_upload_label", "t_upload_for"


def render(root: Path) -> str:
    """The uploader and its report; returns the kept file's path as the data source ('' until one is accepted).
    Sets the form's text and label columns (t_text_col, t_label_col) to the columns picked here."""
    cap = max_upload_mb()
    # No type= filter: Streamlit enforces it by raising in the script run (a file of another type sent past the
    # browser's check crashed the page); inspect_upload refuses other types in words instead.
    upload = st.file_uploader(f"CSV, JSONL, JSON or Parquet with a text and a label column (up to {cap} MB); "
                              "one file is split into train/validation/test", key="t_upload", max_upload_size=cap)
    if upload is None:
        return ""
    content = upload.getvalue()
    picked = st.session_state.get(FILE_KEY) == upload.file_id  # else a new file: guess its columns
    report = uploads.inspect_upload(upload.name, content,
                                    st.session_state.get(TEXT_KEY) if picked else None,
                                    st.session_state.get(LABEL_KEY) if picked else None)
    if not picked:
        st.session_state.update({FILE_KEY: upload.file_id, TEXT_KEY: report.text_columns,
                                 LABEL_KEY: report.label_column})
    if report.columns:
        column_pickers(report)
    if report.problems:
        st.error(f"**{report.filename} cannot be used yet** ({len(report.problems)} problem"
                 f"{'s' if len(report.problems) > 1 else ''}; nothing was kept):\n\n"
                 + "\n".join(f"- {problem}" for problem in report.problems), icon=":material/error:")
        return ""
    try:
        source = datasets.save_upload(upload.name, content, uploads_for(root))
    except UserError as exc:
        ui.show_error(exc)
        return ""
    # The form's columns follow the pick; Local dataset opens on this file from now on.
    st.session_state.update(t_text_col=report.text_column, t_label_col=report.label_column, t_local=str(source))
    st.success(f"{report.filename} is accepted: {report.rows:,} rows, {len(report.class_counts)} classes. It is "
               f"listed under Local dataset as “{datasets.upload_label(source)}”.", icon=":material/check_circle:")
    return str(source)


def column_pickers(report: uploads.UploadReport) -> None:
    """The file's first rows, its columns to pick from, and the rows per class of the picked label column."""
    st.caption(f"{report.filename}: {report.rows:,} rows; the first {len(report.preview)}:")
    st.dataframe(report.preview, hide_index=True)
    if st.session_state.get(LABEL_KEY) not in report.columns:
        st.session_state[LABEL_KEY] = None
    st.session_state[TEXT_KEY] = [c for c in st.session_state.get(TEXT_KEY) or [] if c in report.columns]
    col_text, col_label = st.columns(2)
    col_text.multiselect(uploads.TEXT_LABEL, report.columns, key=TEXT_KEY,
                         help="The column(s) holding the text; several are joined with a space (title + "
                              "description).")
    col_label.selectbox(uploads.LABEL_LABEL, report.columns, key=LABEL_KEY, index=None,
                        placeholder="Pick the column holding the class",
                        help="The column holding the class: integer ids 0..K-1.")
    if report.class_counts:
        st.caption("Rows per class")
        st.dataframe([{"class": label, "rows": count} for label, count in report.class_counts.items()],
                     hide_index=True)

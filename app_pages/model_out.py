"""The live panel's section for a finished run: take the student away, as the CLI's ``export`` and ``push`` do.

- Download: a zip of the student at a chosen precision (fp32, bf16, int8) with its tokenizer and model card
  (distill_core.bundle). The zip is built only when the button is clicked (Streamlit's deferred download), so
  drawing the panel costs nothing.
- Push: a repo id, a private switch and a token typed into a password field. The token is checked for form before
  any network (hub.check_token), handed to hub.push_run for that one call and then cleared from the field: it is
  never written to the run store, a log or this page's messages (errors are scrubbed by hub.redact).

Only runs of this session's runs folder reach this section (the live panel lists ``ui.session_root()``), so in
hosted mode a visitor downloads and pushes their own runs only; gallery runs are not offered here.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import bundle, hub
from distill_core.errors import UserError
from distill_core.export import EXPORT_PRECISIONS

PRECISION_LABELS = {"fp32": "fp32: as trained", "bf16": "bf16: half the size",
                    "int8": "int8: fp32 weights, quantized when loaded"}
REPO_KEY, PRIVATE_KEY, TOKEN_KEY, OUTCOME_KEY = "mo_repo", "mo_private", "mo_token", "mo_push_outcome"


def render(run_dir: Path) -> None:
    """Download and push controls for the finished run ``run_dir``."""
    st.markdown("##### Take the student with you")
    download_col, push_col = st.columns(2)
    with download_col:
        download(run_dir)
    with push_col:
        push_form(run_dir)


def download(run_dir: Path) -> None:
    precision = st.selectbox("Precision", EXPORT_PRECISIONS, key="mo_precision", format_func=PRECISION_LABELS.get,
                             help="bf16 halves the file; int8 keeps fp32 weights and is quantized when loaded "
                                  "(CLI: `python -m distill_core export --precision ...`).")
    st.download_button(
        "Download the student (.zip)", data=lambda: bundle.model_zip(run_dir, precision),
        file_name=bundle.zip_name(run_dir, precision), mime="application/zip", key="mo_download",
        icon=":material/download:", on_click="ignore",
        help="safetensors weights, tokenizer, config.json and a model card (README.md), built when you click.")


def push_form(run_dir: Path) -> None:
    with st.form("mo_push_form", border=False):
        st.text_input("Hub repo id", key=REPO_KEY, placeholder="USER/NAME",
                      help="Created if it does not exist (CLI: `python -m distill_core push --repo-id USER/NAME`).")
        st.checkbox("Private repository", key=PRIVATE_KEY)
        st.text_input("Hugging Face token", key=TOKEN_KEY, type="password", placeholder="hf_...",
                      help="A write token from huggingface.co/settings/tokens. Used for this push only: it is "
                           "cleared from this field afterwards and never stored, logged or written.")
        st.form_submit_button("Push to the Hugging Face Hub", icon=":material/cloud_upload:", on_click=push,
                              args=(run_dir,))
    outcome = st.session_state.pop(OUTCOME_KEY, None)
    if outcome is not None:
        kind, text = outcome
        if kind == "success":
            st.success(text, icon=":material/cloud_done:")
        else:
            ui.show_error(text)


def push(run_dir: Path) -> None:
    """The Push button's callback: runs before the page redraws, so the token field can be emptied."""
    token = st.session_state.get(TOKEN_KEY) or ""
    st.session_state[TOKEN_KEY] = ""  # used for this call only
    try:
        url = hub.push_run(run_dir, st.session_state.get(REPO_KEY) or "",
                           private=bool(st.session_state.get(PRIVATE_KEY)), token=token)
    except UserError as exc:  # the form's own words (empty or malformed token, repo id, Hub unreachable)
        st.session_state[OUTCOME_KEY] = ("error", hub.redact(str(exc), token))
    except Exception as exc:  # anything else: still one line, and never the token
        st.session_state[OUTCOME_KEY] = ("error", hub.redact(f"push failed: {type(exc).__name__}: {exc}", token))
    else:
        st.session_state[OUTCOME_KEY] = ("success", f"Pushed to {url}")

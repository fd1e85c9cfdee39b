"""Streamlit helpers every page shares: the visitor's runs folder, the sidebar, the scheduler pass, the model
picker, error boxes and the empty-state hint. The engine stays in distill_core (which never imports streamlit);
this module only draws."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import figures, hosting, hub, pipeline, runs, specs
from distill_core.app import catalog, datasets
from distill_core.errors import UserError
from distill_core.locations import uploads_for

from . import showcase as showcase_panel

# Page files as st.page_link wants them: relative to streamlit_app.py, the router that registers them.
TRAIN_PAGE = "app_pages/train.py"
COMPARE_PAGE = "app_pages/compare.py"
HUB_OPTION = "__hub__"  # the spec picker's "type a Hub id" entry


def session_root() -> Path:
    """This session's runs folder (hosted: the visitor's own, named in the address)."""
    return hosting.session_root(st.session_state, st.query_params)


def prologue(title: str, caption: str) -> Path:
    """What every page starts with: its title, a one-line caption, and the session's runs folder."""
    st.title(title)
    st.caption(caption)
    root = session_root()
    showcase_panel.hint(root)  # first visit: nothing finished yet -> the showcase offer (or its build's progress)
    return root


def online() -> bool:
    """Whether the Hugging Face Hub answers (hub caches the probe for a minute)."""
    return hub.hub_reachable()


def show_error(exc: UserError | str, where=st) -> None:
    where.error(str(exc), icon=":material/error:")


def tick(root: Path, where=st) -> None:
    """One scheduler pass: each visit also starts waiting runs and next pipeline stages; a failure is shown,
    never raised, so the page still draws."""
    try:
        pipeline.tick(root)
    except UserError as exc:
        show_error(exc, where)


def local_datasets(root: Path) -> dict[str, str]:
    """path -> label of the datasets this session may pick: the data folders and its own uploads."""
    return {d.path: d.label for d in datasets.local_datasets(uploads_for(root))}


def nothing_yet(message: str, *, link_to_train: bool = True) -> None:
    """An empty state: say what is missing, point at Train, and end this page's run here."""
    st.info(message, icon=":material/info:")
    if link_to_train:
        st.page_link(TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")
    st.stop()


def chart(fig, *, key: str, table: list[dict] | None = None, where=st) -> None:
    """A plotly chart with its title as the accessible name (the chart's alt text), and its numbers as a table a
    screen reader (or a stakeholder who wants the figures) can read: every chart in the app goes through here.
    ``table`` defaults to the points of the figure itself (figures.figure_table); pass rows to show others."""
    title = figures.figure_title(fig, default=key)
    where.plotly_chart(fig, key=key, config={"displaylogo": False}, alt=f"Chart: {title}")
    rows = figures.figure_table(fig) if table is None else table
    if rows:
        with where.expander(f"{title}: the numbers", icon=":material/table:"):
            st.dataframe(rows, hide_index=True)


def spec_picker(label: str, key: str, choices: dict[str, str], hub_key: str, help: str) -> str:
    """A selectbox over known models plus 'a Hub model id' (with a text box); returns the chosen spec."""
    options = list(choices) + [HUB_OPTION]
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    choice = st.selectbox(label, options, key=key, help=help,
                          format_func=lambda s: "A Hugging Face Hub model id…" if s == HUB_OPTION else choices[s])
    if choice != HUB_OPTION:
        return choice
    if not online():
        st.warning("Offline: Hub models cannot be downloaded. Pick a local model or a finished run.",
                   icon=":material/cloud_off:")
    return st.text_input("Hub model id", key=hub_key, placeholder="org/name").strip()


def render_sidebar(root: Path) -> None:
    """Where runs are kept, whether the Hub answers, and what works offline: the same on every page."""
    with st.sidebar:
        st.markdown("**KD Studio** · distil big text classifiers into small, fast ones")
        st.caption("Runs folder")
        st.code(root.name if hosting.is_hosted() else str(root), language=None, wrap_lines=True)
        if online():
            st.markdown(":green[:material/cloud_done:] Hugging Face Hub reachable")
        else:
            st.markdown(":orange[:material/cloud_off:] **Offline mode**: the Hub cannot be reached; "
                        "use local data and bundled or trained models.")
        found = local_datasets(root)
        bundled, extra = specs.bundled_specs(), catalog.extra_model_specs()
        with st.expander(f"Available offline: {len(found)} datasets, {len(bundled) + len(extra)} models"):
            st.markdown("**Local data**")
            st.markdown("\n".join(f"- {label}" for label in found.values()) or "_none: upload a file on Train_")
            st.markdown("**Models**")
            st.markdown("\n".join(f"- `{s}`" for s in bundled)
                        + "".join(f"\n- `{Path(s).name}` (local)" for s in extra) or "_none_")
        showcase_panel.button(root)  # "Build the showcase" while nothing is finished
        live = [r for r in runs.list_runs(root) if r["state"] in runs.LIVE_STATES]
        if live:
            st.caption(f"{len(live)} run(s) queued or running: {', '.join(r['id'] for r in live[:3])}")

"""First visit: when this session has no finished runs, offer to build the showcase with one click and show the
build's progress (the build is its own process: distill_core.showcase.start_background, so it survives a closed
tab). ui.prologue draws the hint and the progress at the top of every page, ui.render_sidebar the button. A helper
module, not a page of the router."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import hosting, showcase
from distill_core.app import catalog
from distill_core.errors import UserError

BUILD_BUTTON = "Build the showcase"
POLL_S = 2.0
EXPECTED = {"full": "about 8 minutes (measured)", "smoke": "about a minute"}


def has_finished_runs(root: Path) -> bool:
    """Whether this session has anything to show: its own finished runs or, hosted, the gallery's."""
    if catalog.finished_runs(root):
        return True
    return hosting.is_hosted() and bool(catalog.finished_runs(hosting.gallery_root(hosting.store_base(root))))


def hint(root: Path) -> None:
    """Top of every page: the build's progress while it runs; else, with nothing finished, what the showcase is
    and where its button is (the sidebar, so a page's own buttons keep their place)."""
    showcase.reap()
    target = showcase.showcase_root(root)
    view = showcase.progress_view(target)
    if view["state"] == "running":
        progress_panel(target)
        return
    if has_finished_runs(root):
        return
    if hosting.is_hosted():
        # Visitors cannot start it: the image builds it (Dockerfile), an operator can rebuild it.
        st.info("This demo's showcase (a fine-tuned teacher and two distilled students) is not in its gallery: the "
                "operator builds it with `python -m distill_core showcase` (the Docker image does this when it is "
                "built). Meanwhile, train your own model on the Train page.", icon=":material/info:")
        return
    st.info(f"**New here?** *{BUILD_BUTTON}* (in the sidebar) fine-tunes the bundled MiniLM on the embedded AG News "
            "sample, distils it into two smaller students (half and a third of its layers), and evaluates and "
            "benchmarks all three, with no download. Compare, Benchmark and Playground then open on it.",
            icon=":material/rocket_launch:")
    if view["state"] == "failed":
        st.error(f"The last showcase build did not finish: {view.get('error')}. Building again continues from the "
                 "runs it finished.", icon=":material/error:")


def button(root: Path) -> None:
    """The sidebar's one-click build, offered while this session has nothing finished and no build runs."""
    if hosting.is_hosted() or has_finished_runs(root):
        return
    target = showcase.showcase_root(root)
    if showcase.progress_view(target)["state"] == "running":
        return
    recipe = showcase.get_recipe().name
    st.caption(f"Recipe {recipe!r}: {EXPECTED.get(recipe, 'a few minutes')} on a 2-core CPU, in the background (you "
               "may close the tab). Runs named showcase-* are read-only.")
    if st.button(BUILD_BUTTON, type="primary", icon=":material/rocket_launch:", key="showcase_build"):
        try:
            showcase.start_background(target)
        except UserError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.rerun()


@st.fragment(run_every=POLL_S)
def progress_panel(target: Path) -> None:
    """The running build: stage i/N, what it does, a bar; the whole page reruns when it ends."""
    view = showcase.progress_view(target)
    if view["state"] != "running":
        st.rerun(scope="app")
    stage, stages = view.get("stage") or 0, view.get("stages") or len(showcase.STAGE_WEIGHTS)
    step, total = view.get("step"), view.get("total_steps")
    steps = f" · step {step}/{total}" if total else ""
    st.progress(float(view["fraction"]),
                text=f"Building the showcase: stage {stage}/{stages} · {view.get('label', '')}{steps}")
    st.caption("It runs in its own process: you may leave this page. Every page shows the showcase when it is done.")

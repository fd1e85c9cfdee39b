"""The Train page's live-run section: pick a run (kept in the address as ?run=NAME) and watch it: status,
progress and ETA, curves, Stop, and the test results once it is done, with the student's download and push
(model_out.py). A pipeline is followed into its next stage.

Its own module only to keep the Train page's form readable; no other page uses it.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import model_out, ui
from distill_core import figures, pipeline, runs, specs
from distill_core.app import estimate, views

STATE_COLOURS = {"running": "blue", "queued": "gray", "done": "green", "failed": "red"}


def shown_run(all_runs: list[dict]) -> str | None:
    """The run to show: one just started (or a pipeline's next stage), else the one in the address, else on a
    fresh visit the newest run still going."""
    if "t_follow" in st.session_state:
        st.query_params["run"] = st.session_state.pop("t_follow")
    wanted = st.query_params.get("run")
    if not wanted and "run" not in st.session_state:
        wanted = next((r["id"] for r in all_runs if r["state"] in runs.LIVE_STATES), None)
        if wanted:
            st.query_params["run"] = wanted
    return wanted


def remember_run() -> None:
    if st.session_state.get("run"):
        st.query_params["run"] = st.session_state["run"]
    else:
        st.query_params.pop("run", None)


def render(root: Path) -> None:
    st.divider()
    st.subheader("Live run")
    all_runs = runs.list_runs(root)
    wanted = shown_run(all_runs)
    if not all_runs:
        st.info("No runs yet: configure one above and press Start.", icon=":material/info:")
        return
    states = {r["id"]: r["state"] for r in all_runs}
    if wanted in states:  # the address decides, so a reload or a second tab shows the same run
        st.session_state["run"] = wanted
    chosen = st.selectbox("Run", list(states), index=None, key="run", on_change=remember_run,
                          placeholder="Choose a run", format_func=lambda n: f"{n}  ·  {states.get(n, '?')}",
                          help="The run shown here is kept in the page address (?run=NAME), so a reload or a "
                               "second tab shows the same run.")
    if chosen:
        live = states.get(chosen) in runs.LIVE_STATES
        st.fragment(run_every=2 if live else None)(panel)(root, chosen, states[chosen])


def panel(root: Path, name: str, shown_state: str) -> None:
    """Status, progress, curves and Stop of one run; a fragment that reruns every 2 s while the run is live."""
    run_dir = runs.resolve_run_dir(root, name)
    ui.tick(root)
    view = views.live_view(run_dir)
    if view.state != shown_state:
        following = pipeline.next_stage(run_dir)
        if view.state == "done" and following is not None:
            st.session_state["t_follow"] = following.name  # follow a pipeline into its distillation stage
        st.rerun()  # full rerun: the run list shows the new state, and polling stops once the run has ended
    header(root, name, view)
    state_notice(run_dir, view)
    progress(view)
    if view.state in runs.LIVE_STATES and st.button("Stop run", icon=":material/stop:", key="live_stop"):
        pipeline.stop_run(run_dir)
        st.toast(f"Stopping {name}…")
    if view.evaluation:
        evaluation_summary(view.evaluation)
    if view.state == "done":
        model_out.render(run_dir)


def header(root: Path, name: str, view: views.LiveView) -> None:
    config = view.config
    st.markdown(f"#### {name} &nbsp; :{STATE_COLOURS.get(view.state, 'orange')}-badge[{view.state}]")
    teacher = f" · teacher `{specs.spec_label(config['teacher'], root)}`" if config.get("teacher") else ""
    st.caption(f"{config.get('mode', '?')} · student `{specs.spec_label(config.get('student'), root)}`{teacher}"
               f" · data `{specs.spec_label((config.get('data') or {}).get('source'))}`")


def state_notice(run_dir: Path, view: views.LiveView) -> None:
    """Why a run waits, how it ended badly, and the worker's last words when it failed."""
    state, status = view.state, view.status
    if state == "queued":
        after = pipeline.depends_on(run_dir)
        st.info(f"Waits for its teacher run **{after}** to finish." if after else
                "Waiting for a free worker slot." if status.get("waiting") else "Starting…",
                icon=":material/hourglass_top:")
    if state == "failed":
        st.error(f"The run failed: {status.get('error') or 'see the worker log'}", icon=":material/error:")
    elif state in ("cancelled", "interrupted"):
        st.warning(f"The run was {state}. {status.get('error') or ''}", icon=":material/stop_circle:")
    if state in ("failed", "interrupted"):
        with st.expander("Worker log (last lines)"):
            st.code(views.worker_log_tail(run_dir) or "(empty)", language=None)


def progress(view: views.LiveView) -> None:
    """Progress bar with ETA, the headline numbers, and the loss and accuracy curves."""
    if view.total_steps:
        eta = f" · ETA {estimate.format_duration(view.eta_s)}" if view.state == "running" and view.eta_s is not None \
            else ""
        st.progress(view.progress, text=f"step {view.step} / {view.total_steps}{eta}")
    elif view.state == "running":
        st.progress(0.0, text="preparing: loading data and models, computing teacher logits…")
    last_step = view.step_rows[-1] if view.step_rows else {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Epochs done", f"{len(view.epoch_rows)} / {view.config.get('epochs', '?')}")
    c2.metric("Training loss", f"{last_step['loss']:.3f}" if "loss" in last_step else "—")
    best = max((r.get("valid_accuracy", 0) for r in view.epoch_rows), default=None)
    c3.metric("Best validation accuracy", f"{best:.1%}" if best is not None else "—")
    rate = last_step.get("samples_per_s")
    c4.metric("Throughput", f"{rate:.3g} samples/s" if isinstance(rate, (int, float)) else "—")
    chart_loss, chart_accuracy = st.columns(2)
    chart_loss.plotly_chart(figures.loss_curves(view.step_rows), key="live_loss")
    chart_accuracy.plotly_chart(figures.fit_percent_axis(figures.accuracy_curves(view.epoch_rows)),
                                key="live_accuracy")


def evaluation_summary(evaluation: dict) -> None:
    student = evaluation.get("student") or {}
    teacher = evaluation.get("teacher") or {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Test accuracy", f"{student.get('accuracy', 0):.1%}")
    c2.metric("Macro-F1", f"{student.get('macro_f1', 0):.1%}")
    if teacher:
        c3.metric("Teacher test accuracy", f"{teacher.get('accuracy', 0):.1%}")
        c4.metric("Agreement with teacher", f"{student.get('agreement', 0):.1%}")
    st.page_link(ui.COMPARE_PAGE, label="Compare this run with others", icon=":material/compare_arrows:")

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
    fresh visit the newest run still going. An address naming no run gets a warning, not silence."""
    if "t_follow" in st.session_state:
        st.query_params["run"] = st.session_state.pop("t_follow")
    wanted = st.query_params.get("run")
    names = {r["id"] for r in all_runs}
    if wanted and wanted not in names:
        st.warning(f"No run named '{wanted}' in this runs folder: it may have been deleted or renamed.",
                   icon=":material/search_off:")
        del st.query_params["run"]
        st.session_state.pop("run", None)
        return None
    if not wanted and "run" not in st.session_state:
        wanted = next((r["id"] for r in all_runs if r["state"] in runs.LIVE_STATES), None)
        if wanted:
            st.query_params["run"] = wanted
    return wanted


def remember_run(names: list[str]) -> None:
    """The address holds a run's name and nothing else (never a label: see render)."""
    chosen = st.session_state.get("run")
    if chosen in names:
        st.query_params["run"] = chosen
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
    names = list(states)
    if wanted in states:  # the address decides, so a reload or a second tab shows the same run
        st.session_state["run"] = wanted
    elif st.session_state.get("run") not in states:
        st.session_state.pop("run", None)
    # The options are shown as the bare names: Streamlit sends a selectbox's value back as its label, and a label
    # holding the run's state ("name · queued") stopped matching once the state changed, so the label itself
    # became the value, and went into the address. The state is shown in the panel's badge instead.
    chosen = st.selectbox("Run", names, index=None, key="run", on_change=remember_run, args=(names,),
                          placeholder="Choose a run",
                          help="The run shown here is kept in the page address (?run=NAME), so a reload or a "
                               "second tab shows the same run.")
    if chosen in states:
        live = states[chosen] in runs.LIVE_STATES
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
    if view.stage is not None:
        st.markdown(f"**{str(view.stage).capitalize()}**")
    mode = config.get("mode", "?")
    # a fine-tune trains one model: no student, no teacher
    model = "model" if mode == "finetune" else "student"
    teacher = f" · teacher `{specs.spec_label(config['teacher'], root)}`" if config.get("teacher") \
        and mode != "finetune" else ""
    st.caption(f"{mode} · {model} `{specs.spec_label(config.get('student'), root)}`{teacher}"
               f" · data `{specs.spec_label((config.get('data') or {}).get('source'))}`"
               + (f" · {view.precision_text}" if view.precision_text else ""))


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


def clock_text(view: views.LiveView) -> str:
    """Elapsed time always; the ETA over everything left while live; how long a queued run has waited."""
    parts = []
    if view.state == "queued" and view.waited_s is not None and view.elapsed_s is None:
        parts.append(f"waiting {estimate.format_duration(view.waited_s)}")
    if view.elapsed_s is not None:
        parts.append(f"elapsed {estimate.format_duration(view.elapsed_s)}")
    if view.state in runs.LIVE_STATES and view.eta_s is not None:
        parts.append(f"about {estimate.format_duration(view.eta_s)} left")
    return " · ".join(parts)


def progress(view: views.LiveView) -> None:
    """Progress bar (phase, counts, elapsed, ETA), the headline numbers, and the loss and accuracy curves."""
    clock = clock_text(view)
    if view.state == "running":
        st.progress(view.progress, text=" · ".join(p for p in (view.phase_text, clock) if p))
    elif view.state == "queued":
        st.progress(view.progress, text=clock or "queued")
    elif view.state == "done":
        rate = view.train_samples_per_s
        summary = f"done in {estimate.format_duration(view.wall_s)}" if view.wall_s is not None else "done"
        if view.stage is not None and view.stage.index == view.stage.count and view.elapsed_s is not None:
            summary += f" (the whole pipeline: {estimate.format_duration(view.elapsed_s)})"
        if rate is not None:
            summary += f" · average training throughput {rate:.3g} samples/s"
        st.progress(1.0, text=summary)
    else:  # failed, cancelled, interrupted: where it stopped
        st.progress(view.progress, text=" · ".join(p for p in (f"stopped during {view.phase_text}", clock) if p))
    last_step = view.step_rows[-1] if view.step_rows else {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Epochs done", f"{view.epochs_done} / {view.config.get('epochs', '?')}",
              help="Whole epochs only: an epoch cut short by Stop is not counted.")
    c2.metric("Training loss", f"{last_step['loss']:.3f}" if "loss" in last_step else "—")
    best = max((r.get("valid_accuracy", 0) for r in view.epoch_rows), default=None)
    c3.metric("Best validation accuracy", f"{best:.1%}" if best is not None else "—")
    rate = view.train_samples_per_s if view.state == "done" else last_step.get("samples_per_s")
    c4.metric("Throughput", f"{rate:.3g} samples/s" if isinstance(rate, (int, float)) else "—")
    chart_loss, chart_accuracy = st.columns(2)
    ui.chart(figures.loss_curves(view.step_rows, view.epoch_rows), key="live_loss", where=chart_loss,
             table=[{k: r.get(k) for k in ("step", "epoch", "loss", "ce_loss", "kd_loss")} for r in view.step_rows])
    ui.chart(figures.fit_percent_axis(figures.accuracy_curves(view.epoch_rows)), key="live_accuracy",
             where=chart_accuracy, table=[{k: r.get(k) for k in ("epoch", "training_accuracy", "valid_accuracy",
                                                                  "valid_loss", "partial")}
                                          for r in view.epoch_rows])


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

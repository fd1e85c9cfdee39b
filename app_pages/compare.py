"""Compare: finished runs side by side (size, accuracy, agreement, calibration, latency), confusion matrices,
per-class F1, training curves, and the test examples where teacher and student disagree."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from app_pages import score_file, ui
from distill_core import figures, figures_speed, hosting, report, runs
from distill_core.app import catalog, compare, views
from distill_core.errors import UserError

CAPTION = ("Teacher and students on the same test split: how much smaller and faster, and how much accuracy and "
           "agreement with the teacher they keep.")
# Cells are display text (distill_core.app.compare.display_table), so a missing value reads "—" or "not measured"
# instead of Streamlit's "None"; numbers are right-aligned as numbers are. Short headers, the detail in the help:
# at 1440 px every column, latency included, fits without a horizontal scroll.
SUMMARY_CELLS = {"model": "text", "role": "text", "spec": "text", "parameters": "millions", "size_mb": "one_decimal",
                 "test_accuracy": "percent", "macro_f1": "percent", "agreement": "percent",
                 "ece": "three_decimals", "latency_ms_b1": "one_decimal"}


def _number(label: str, help: str | None = None) -> st.column_config.Column:
    return st.column_config.TextColumn(label, help=help, alignment="right")


COLUMN_CONFIG = {
    "model": "Model", "role": "Role", "spec": "Spec",
    "parameters": _number("Params", "Number of weights, in millions."),
    "size_mb": _number("Size (MB)", "Size of the weights on disk."),
    "test_accuracy": _number("Accuracy", "Test accuracy: correct predictions / test rows."),
    "macro_f1": _number("Macro-F1", "F1 averaged over classes, each class counting the same (test split)."),
    "agreement": _number("Agreement", "Share of test rows where the model predicts its teacher's class (a "
                                      "teacher agrees with itself: 100%)."),
    "ece": _number("ECE", "Expected calibration error, 15 bins (lower is better)."),
    "latency_ms_b1": _number("Latency (ms)", "Median (p50) time to classify one text (batch 1, fp32), from the "
                                             "Benchmark page or the showcase build."),
}
GAIN_CELLS = {"model": "text", "baseline": "text", "speedup_b1": "times", "speedup_b32": "times", "smaller": "times",
              "accuracy_kept": "percent"}
GAIN_COLUMNS = {
    "model": "Student", "baseline": "Teacher",
    "speedup_b1": _number("× faster, batch 1", "Teacher's p50 latency over the student's (fp32, same length); "
                                               "below 1× the student is slower."),
    "speedup_b32": _number("× faster, batch 32"),
    "smaller": _number("× smaller", "Teacher's size on disk over the student's."),
    "accuracy_kept": _number("Teacher's accuracy kept", "Student's test accuracy / teacher's."),
}
MODE_WORDS = {"distill": "distilled", "finetune": "fine-tuned"}
DISAGREEMENT_COLUMNS = {
    "#": st.column_config.NumberColumn("#", width="small", help="Row of the test split."),
    "text": st.column_config.TextColumn("Text", width="large"),
    "true": "True class", "teacher": "Teacher says", "student": "Student says", "who is right": "Who is right",
    "teacher_conf": st.column_config.ProgressColumn("Teacher confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
    "student_conf": st.column_config.ProgressColumn("Student confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
}


def store(root: Path) -> Path:
    """The public demo: a visitor's own runs, or the gallery an operator shared with everyone."""
    if not hosting.is_hosted():
        return root
    default = "Yours" if catalog.finished_runs(root) else "Gallery"  # a first visit opens on the showcase
    choice = st.segmented_control("Runs", ["Yours", "Gallery"], default=default, key="c_store", required=True)
    return hosting.gallery_root(hosting.store_base(root)) if choice == "Gallery" else root


def _forget_missing() -> None:
    st.session_state.pop("c_runs_missing", None)


def pick_runs(finished: dict[str, dict]) -> list[str]:
    """The selection, which lives in the address (?runs=a,b): read on load, written on change."""
    default = [name for name, r in finished.items() if r.get("mode") == "distill"][:2] or list(finished)[:1]
    if "c_runs" not in st.session_state and "runs" in st.query_params:
        asked = [n.strip() for n in st.query_params["runs"].split(",") if n.strip()]
        default = [n for n in asked if n in finished]
        st.session_state["c_runs_missing"] = [n for n in asked if n not in finished]
    if st.session_state.get("c_runs_missing"):
        st.warning(f"The link names runs that are not finished runs of this store: "
                   f"{', '.join(st.session_state['c_runs_missing'])}. They may be unfinished, deleted, or in "
                   "another runs folder.", icon=":material/link_off:")
    selected = st.multiselect("Runs", list(finished), default=default, key="c_runs", on_change=_forget_missing,
                              format_func=lambda n: f"{n} ({MODE_WORDS.get(finished[n].get('mode'), 'model')})",
                              help="Finished runs in the runs folder. A distillation run brings its teacher along. "
                                   "The address holds the selection: share it to share this view.")
    if st.query_params.get("runs") != ",".join(selected):
        st.query_params["runs"] = ",".join(selected)
    return selected


def summary_table(root: Path, selected: list[str]) -> list[dict]:
    """The comparison table: runs that differ only in their seed as one row, mean ± std over the seeds, unless
    the toggle asks for each run. Returns the rows of every selected run (the report quotes each)."""
    rows = compare.comparison_rows(root, selected)
    grouped = compare.grouped_comparison_rows(root, selected)
    seeded = len(grouped) < len(rows)
    each_run = seeded and st.toggle("Show each seed's run", key="c_each_seed",
                                    help="Runs whose settings differ only in the seed are one row by default: the "
                                         "mean ± standard deviation over the seeds (n − 1).")
    shown = rows if each_run or not seeded else grouped
    measured = any(r.get("latency_ms_b1") is not None for r in shown)
    cells = {k: v for k, v in SUMMARY_CELLS.items() if measured or k != "latency_ms_b1"}
    st.dataframe(compare.display_table(shown, cells, missing={"latency_ms_b1": compare.NOT_MEASURED}),
                 hide_index=True, column_config=COLUMN_CONFIG, key="c_summary")
    seeds_note = (" Rows marked (n seeds) are the mean ± standard deviation over those runs." if shown is grouped
                  and seeded else "")
    st.caption(compare.scored_rows_note(shown) + seeds_note + ("" if measured else " Latency appears once the "
                                                               "models are measured on the Benchmark page."))
    gains(shown)
    speed_and_accuracy(shown)
    return rows


def speed_and_accuracy(rows: list[dict]) -> None:
    """Accuracy against throughput with the Pareto frontier; a row of several seeds is one point with error
    bars. Drawn once some model's speed is measured (Benchmark page)."""
    points, batch = compare.speed_accuracy_points(rows)
    if not points:
        return
    fig = figures.fit_percent_axis(figures_speed.speed_accuracy_scatter(points), pad=0.01)
    fig.update_layout(title=f"Accuracy vs throughput at batch {batch}")
    names = {point["name"] for point in points}
    columns = {"model": "text", "test_accuracy": "percent", f"samples_per_s_b{batch}": "one_decimal"}
    table = compare.display_table([r for r in rows if r["model"] in names], columns)
    ui.chart(fig, key="c_speed_accuracy", table=table)


def gains(rows: list[dict]) -> None:
    """Each student against its teacher: the headline sentence and its numbers (the report shows the same)."""
    trades = compare.trade_offs(rows)
    if not trades:
        return
    st.subheader("What we gain and what we lose")
    for sentence in compare.headlines(trades):
        st.success(sentence, icon=":material/insights:")
    not_measured = {"speedup_b1": compare.NOT_MEASURED, "speedup_b32": compare.NOT_MEASURED}
    st.dataframe(compare.display_table(trades, GAIN_CELLS, missing=not_measured), hide_index=True, key="c_gains",
                 column_config=GAIN_COLUMNS)


def _report_key(root: Path, selected: list[str], rows: list[dict], price: float) -> str:
    """What the report depends on: its numbers, the price and the per-example predictions it quotes."""
    stamps = [(runs.resolve_run_dir(root, n) / runs.PREDICTIONS_FILE).stat().st_mtime
              if (runs.resolve_run_dir(root, n) / runs.PREDICTIONS_FILE).is_file() else None for n in selected]
    return json.dumps([str(root), selected, rows, price, stamps], default=str)


def stakeholder_report(root: Path, selected: list[str], rows: list[dict]) -> None:
    """One self-contained HTML page for whoever decides: download it, or look at it here before printing."""
    st.subheader("Stakeholder report")
    price = st.number_input("CPU price (USD per hour of one machine)", min_value=0.0, max_value=1000.0,
                            value=report.DEFAULT_PRICE_PER_HOUR, step=0.01, format="%.2f", key="c_price",
                            help="Sets the cost per million predictions: price / 3600 / samples per second × 10⁶.")
    key = _report_key(root, selected, rows, float(price))
    cached = st.session_state.get("c_report")
    if not cached or cached["key"] != key:
        try:
            page = report.build_report(root, selected, price_per_hour=float(price))
        except UserError as exc:
            ui.show_error(exc)
            return
        cached = st.session_state["c_report"] = {"key": key, "html": page}
    size_mb = len(cached["html"].encode("utf-8")) / 1e6
    c1, c2 = st.columns([1, 3])
    c1.download_button("Download report (HTML)", cached["html"], file_name="kd-studio-report.html",
                       mime="text/html", icon=":material/description:", on_click="ignore", key="c_report_download")
    c2.caption(f"One self-contained page, {size_mb:.1f} MB (plotly.js included once): headline, accuracy with 95% "
               "intervals, latency, throughput and cost, the speed/accuracy chart, disagreement examples and "
               "provenance. Opens offline; prints on its own print layout (Ctrl+P).")
    if st.toggle("Printable view", key="c_report_view", help="The report as it prints, below."):
        components.html(cached["html"], height=900, scrolling=True)


def confusion_and_f1(root: Path, selected: list[str]) -> None:
    """A confusion matrix per distinct model of the selection (each run's, each teacher once), then F1 per class
    of them all."""
    evaluations = compare.model_evaluations(root, selected)
    shown = [(name, metrics) for name, metrics in evaluations
             if metrics.get("confusion_matrix") and metrics.get("label_names")]
    st.subheader("Confusion matrices")
    for start in range(0, len(shown), 2):
        for column, (name, metrics) in zip(st.columns(2), shown[start:start + 2], strict=False):
            title = f"Confusion matrix: {name}"
            ui.chart(figures.confusion_heatmap(metrics["confusion_matrix"], metrics["label_names"], title),
                     key=f"cm_{name}", where=column)
    st.subheader("F1 per class")
    per_class = {name: metrics.get("per_class") or {} for name, metrics in evaluations}
    ui.chart(figures.per_class_f1(per_class), key="per_class_f1")


def training_curves(root: Path, selected: list[str]) -> None:
    st.subheader("Training curves")
    metric = st.selectbox("Metric", ["valid_accuracy", "training_accuracy", "valid_loss", "training_loss"],
                          key="c_metric", format_func=lambda m: m.replace("_", " ").replace("valid ", "validation "))
    overlay = figures.overlay_curves({f"run {name}": views.run_epoch_rows(root, name) for name in selected}, metric)
    if "accuracy" in metric:
        figures.fit_percent_axis(overlay)
    ui.chart(overlay, key="overlay")


def disagreements(root: Path, distilled: list[str]) -> None:
    """The test examples a distillation run's student and its teacher classify differently."""
    st.subheader("Where teacher and student disagree")
    if not distilled:
        st.info("Select a distillation run to browse the test examples its student and teacher classify "
                "differently.", icon=":material/info:")
        return
    run_dir = runs.resolve_run_dir(root, st.selectbox("Distillation run", distilled, key="c_disagree_run"))
    if not (run_dir / runs.PREDICTIONS_FILE).is_file() and not st.button(
            "Compute per-example predictions", icon=":material/calculate:",
            help="One pass of the student (and, unless cached by training, the teacher) over the test split; kept "
                 "in the run folder for next time."):
        st.caption("Predictions are computed once per run and cached in its folder.")
        return
    try:
        with st.spinner("Predicting the test split…"):
            predictions = compare.run_predictions(run_dir)
    except UserError as exc:
        ui.show_error(exc)
        return
    only_wrong = st.toggle("Only where the student is wrong", key="c_only_wrong")
    rows = compare.disagreements(predictions, only_wrong_student=only_wrong)
    total = len(predictions["label"])
    st.caption(f"{len(rows)} of {total} test examples ({len(rows) / max(total, 1):.1%}) "
               + ("where the student is wrong and disagrees with the teacher." if only_wrong else "disagree."))
    st.dataframe(rows, hide_index=True, column_config=DISAGREEMENT_COLUMNS)


def render() -> None:
    root = store(ui.prologue("Compare", CAPTION))
    finished = {r["id"]: r for r in catalog.finished_runs(root)}
    if not finished:
        ui.nothing_yet("No finished runs yet. Start one on the Train page; it appears here when it is done.")
    selected = pick_runs(finished)
    if not selected:
        ui.nothing_yet("Pick one or more runs.", link_to_train=False)
    rows = summary_table(root, selected)
    stakeholder_report(root, selected, rows)
    confusion_and_f1(root, selected)
    training_curves(root, selected)
    disagreements(root, [name for name in selected if finished[name].get("mode") == "distill"])
    score_file.render(root, selected)


render()

"""Compare: finished runs side by side (size, accuracy, agreement, calibration, latency), confusion matrices,
per-class F1, training curves, and the test examples where teacher and student disagree."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import figures, hosting, runs
from distill_core.app import catalog, compare, views
from distill_core.errors import UserError

CAPTION = ("Teacher and students on the same test split: how much smaller and faster, and how much accuracy and "
           "agreement with the teacher they keep.")
PERCENT = {"format": "%.1f%%"}  # values are shown x100: one decimal for every model
PERCENT_KEYS = ("test_accuracy", "macro_f1", "agreement")
COLUMNS = ["model", "role", "spec", "parameters", "size_mb", "test_accuracy", "macro_f1", "agreement", "ece",
           "latency_ms_b1", "n_test"]
COLUMN_CONFIG = {
    "model": "Model", "role": "Role", "spec": "Spec",
    "parameters": st.column_config.NumberColumn("Parameters", format="compact"),
    "size_mb": st.column_config.NumberColumn("Size (MB)", format="%.1f"),
    "test_accuracy": st.column_config.NumberColumn("Test accuracy", **PERCENT),
    "macro_f1": st.column_config.NumberColumn("Macro-F1", **PERCENT),
    "agreement": st.column_config.NumberColumn("Agreement with teacher", **PERCENT,
                                               help="Share of test examples where the model predicts the teacher's "
                                                    "class."),
    "ece": st.column_config.NumberColumn("ECE", format="%.3f",
                                         help="Expected calibration error, 15 bins (lower is better)."),
    "latency_ms_b1": st.column_config.NumberColumn("Latency b=1 (ms)", format="%.1f",
                                                   help="p50 at batch 1, fp32, from the Benchmark page."),
    "n_test": st.column_config.NumberColumn("Test rows"),
}
DISAGREEMENT_COLUMNS = {
    "#": st.column_config.NumberColumn("#", width="small"),
    "text": st.column_config.TextColumn("Text", width="large"),
    "teacher_conf": st.column_config.ProgressColumn("Teacher confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
    "student_conf": st.column_config.ProgressColumn("Student confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
}


def store(root: Path) -> Path:
    """The public demo: a visitor's own runs, or the gallery an operator shared with everyone."""
    if not hosting.is_hosted():
        return root
    choice = st.segmented_control("Runs", ["Yours", "Gallery"], default="Yours", key="c_store", required=True)
    return hosting.gallery_root(hosting.store_base(root)) if choice == "Gallery" else root


def pick_runs(finished: dict[str, dict]) -> list[str]:
    default = [name for name, r in finished.items() if r.get("mode") == "distill"][:2] or list(finished)[:1]
    return st.multiselect("Runs", list(finished), default=default, key="c_runs",
                          format_func=lambda n: f"{n} ({finished[n].get('mode')})",
                          help="Finished runs in the runs folder. A distillation run brings its teacher along.")


def summary_table(root: Path, selected: list[str]) -> None:
    rows = compare.comparison_rows(root, selected)
    shown = [{k: (v * 100 if k in PERCENT_KEYS and isinstance(v, float) else v) for k, v in row.items()}
             for row in rows]
    measured = any(r.get("latency_ms_b1") is not None for r in rows)
    st.dataframe(shown, hide_index=True, column_config=COLUMN_CONFIG,
                 column_order=COLUMNS if measured else [c for c in COLUMNS if c != "latency_ms_b1"])
    if not measured:
        st.caption("Latency appears once the models are measured on the Benchmark page.")


def confusion_and_f1(root: Path, selected: list[str]) -> None:
    """A confusion matrix per selected run and per distinct teacher, then F1 per class of them all."""
    matrices: list[tuple[str, dict]] = []
    per_class: dict[str, dict] = {}
    teachers_shown: set[str] = set()
    for name in selected:
        evaluation = views.run_evaluation(root, name) or {}
        student, teacher = evaluation.get("student"), evaluation.get("teacher")
        if teacher and teacher.get("spec") not in teachers_shown:
            teachers_shown.add(teacher.get("spec"))
            matrices.append((f"Teacher of {name}", teacher))
            per_class[f"teacher of {name}"] = teacher.get("per_class", {})
        if student:
            matrices.append((f"Run {name}", student))
            per_class[name] = student.get("per_class", {})
    st.subheader("Confusion matrices")
    for start in range(0, len(matrices), 2):
        for column, (title, metrics) in zip(st.columns(2), matrices[start:start + 2], strict=False):
            if metrics.get("confusion_matrix") and metrics.get("label_names"):
                column.plotly_chart(figures.confusion_heatmap(metrics["confusion_matrix"], metrics["label_names"],
                                                              title), key=f"cm_{title}")
    st.subheader("F1 per class")
    st.plotly_chart(figures.per_class_f1(per_class), key="per_class_f1")


def training_curves(root: Path, selected: list[str]) -> None:
    st.subheader("Training curves")
    metric = st.selectbox("Metric", ["valid_accuracy", "training_accuracy", "valid_loss", "training_loss"],
                          key="c_metric", format_func=lambda m: m.replace("_", " "))
    overlay = figures.overlay_curves({name: views.run_epoch_rows(root, name) for name in selected}, metric)
    overlay.update_xaxes(dtick=1)  # whole epochs
    if "accuracy" in metric:
        figures.fit_percent_axis(overlay)
    st.plotly_chart(overlay, key="overlay")


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
    summary_table(root, selected)
    confusion_and_f1(root, selected)
    training_curves(root, selected)
    disagreements(root, [name for name in selected if finished[name].get("mode") == "distill"])


render()

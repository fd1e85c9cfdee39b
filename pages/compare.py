"""Compare: finished runs side by side (size, accuracy, agreement, calibration, latency), confusion matrices,
per-class F1, training curves, and the test examples where teacher and student disagree."""
from __future__ import annotations

import streamlit as st

from distill_core import app_support as app
from distill_core import figures, hosting, runs
from distill_core.errors import UserError

if "kd_routed" not in st.session_state:  # opened without the router (a fresh server): go through it
    st.switch_page("streamlit_app.py", query_params={**st.query_params.to_dict(), "page": "compare"})

ROOT = hosting.session_root(st.session_state, st.query_params)  # hosted: this visitor's own runs
PERCENT = {"format": "%.1f%%"}  # values are shown x100: one decimal for every model

st.title("Compare")
st.caption("Teacher and students on the same test split: how much smaller and faster, and how much accuracy "
           "and agreement with the teacher they keep.")
if hosting.is_hosted():  # the public demo: a visitor's own runs, or the gallery an operator shared with everyone
    store = st.segmented_control("Runs", ["Yours", "Gallery"], default="Yours", key="c_store", required=True)
    ROOT = hosting.gallery_root(hosting.store_base(ROOT)) if store == "Gallery" else ROOT

finished = {r["id"]: r for r in app.finished_runs(ROOT)}
if not finished:
    st.info("No finished runs yet. Start one on the Train page; it appears here when it is done.",
            icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

default = [name for name, r in finished.items() if r.get("mode") == "distill"][:2] or list(finished)[:1]
selected = st.multiselect("Runs", list(finished), default=default, key="c_runs",
                          format_func=lambda n: f"{n} ({finished[n].get('mode')})",
                          help="Finished runs in the runs folder. A distillation run brings its teacher along.")
if not selected:
    st.info("Pick one or more runs.", icon=":material/info:")
    st.stop()

# ---- summary table
rows = app.comparison_rows(ROOT, selected)
PERCENT_KEYS = ("test_accuracy", "macro_f1", "agreement")
shown = [{k: (v * 100 if k in PERCENT_KEYS and isinstance(v, float) else v) for k, v in row.items()} for row in rows]
columns = ["model", "role", "spec", "parameters", "size_mb", "test_accuracy", "macro_f1", "agreement", "ece",
           "latency_ms_b1", "n_test"]
if all(r.get("latency_ms_b1") is None for r in rows):
    columns.remove("latency_ms_b1")
st.dataframe(
    shown, hide_index=True, column_order=columns,
    column_config={
        "model": "Model", "role": "Role", "spec": "Spec",
        "parameters": st.column_config.NumberColumn("Parameters", format="compact"),
        "size_mb": st.column_config.NumberColumn("Size (MB)", format="%.1f"),
        "test_accuracy": st.column_config.NumberColumn("Test accuracy", **PERCENT),
        "macro_f1": st.column_config.NumberColumn("Macro-F1", **PERCENT),
        "agreement": st.column_config.NumberColumn("Agreement with teacher", **PERCENT,
                                                   help="Share of test examples where the model predicts the "
                                                        "teacher's class."),
        "ece": st.column_config.NumberColumn("ECE", format="%.3f", help="Expected calibration error, 15 bins "
                                                                        "(lower is better)."),
        "latency_ms_b1": st.column_config.NumberColumn("Latency b=1 (ms)", format="%.1f",
                                                       help="p50 at batch 1, fp32, from the Benchmark page."),
        "n_test": st.column_config.NumberColumn("Test rows"),
    })
if all(r.get("latency_ms_b1") is None for r in rows):
    st.caption("Latency appears once the models are measured on the Benchmark page.")

# ---- confusion matrices and per-class F1
evaluations = {name: app.run_evaluation(ROOT, name) or {} for name in selected}
matrices: list[tuple[str, dict]] = []
per_class: dict[str, dict] = {}
teachers_shown: set[str] = set()
for name, evaluation in evaluations.items():
    student, teacher = evaluation.get("student"), evaluation.get("teacher")
    teacher_spec = (teacher or {}).get("spec")
    if teacher and teacher_spec not in teachers_shown:
        teachers_shown.add(teacher_spec)
        matrices.append((f"Teacher of {name}", teacher))
        per_class[f"teacher of {name}"] = teacher.get("per_class", {})
    if student:
        matrices.append((f"Run {name}", student))
        per_class[name] = student.get("per_class", {})

st.subheader("Confusion matrices")
for start in range(0, len(matrices), 2):
    for column, (title, metrics) in zip(st.columns(2), matrices[start:start + 2]):
        if metrics.get("confusion_matrix") and metrics.get("label_names"):
            column.plotly_chart(figures.confusion_heatmap(metrics["confusion_matrix"], metrics["label_names"],
                                                          title), key=f"cm_{title}")
st.subheader("F1 per class")
st.plotly_chart(figures.per_class_f1(per_class), key="per_class_f1")

# ---- training curves
st.subheader("Training curves")
metric = st.selectbox("Metric", ["valid_accuracy", "training_accuracy", "valid_loss", "training_loss"],
                      key="c_metric", format_func=lambda m: m.replace("_", " "))
overlay = figures.overlay_curves({name: app.run_epoch_rows(ROOT, name) for name in selected}, metric)
overlay.update_xaxes(dtick=1)  # whole epochs
if "accuracy" in metric:
    app.fit_percent_axis(overlay)
st.plotly_chart(overlay, key="overlay")

# ---- disagreements
st.subheader("Where teacher and student disagree")
distilled = [name for name in selected if finished[name].get("mode") == "distill"]
if not distilled:
    st.info("Select a distillation run to browse the test examples its student and teacher classify "
            "differently.", icon=":material/info:")
    st.stop()
chosen = st.selectbox("Distillation run", distilled, key="c_disagree_run")
run_dir = runs.resolve_run_dir(ROOT, chosen)
cached = (run_dir / app.PREDICTIONS_FILE).is_file()
if not cached and not st.button("Compute per-example predictions", icon=":material/calculate:",
                                help="One pass of the student (and, unless cached by training, the teacher) over "
                                     "the test split; kept in the run folder for next time."):
    st.caption("Predictions are computed once per run and cached in its folder.")
    st.stop()
try:
    with st.spinner("Predicting the test split…"):
        predictions = app.run_predictions(run_dir)
except UserError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
only_wrong = st.toggle("Only where the student is wrong", key="c_only_wrong")
rows = app.disagreements(predictions, only_wrong_student=only_wrong)
total = len(predictions["label"])
st.caption(f"{len(rows)} of {total} test examples ({len(rows) / max(total, 1):.1%}) "
           + ("where the student is wrong and disagrees with the teacher." if only_wrong else "disagree."))
st.dataframe(rows, hide_index=True, column_config={
    "#": st.column_config.NumberColumn("#", width="small"),
    "text": st.column_config.TextColumn("Text", width="large"),
    "teacher_conf": st.column_config.ProgressColumn("Teacher confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
    "student_conf": st.column_config.ProgressColumn("Student confidence", min_value=0.0, max_value=1.0,
                                                    format="percent"),
})

"""Train: configure a distillation (or a teacher fine-tune followed by one), start it, watch it live."""
from __future__ import annotations

import streamlit as st

from distill_core import app_support as app
from distill_core import figures, hosting, hub, jobs, models, runs
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import UserError

if "kd_routed" not in st.session_state:  # opened without the router (a fresh server): go through it
    st.switch_page("streamlit_app.py", query_params={**st.query_params.to_dict(), "page": "train"})

ROOT = hosting.session_root(st.session_state, st.query_params)  # hosted: this visitor's own runs
UPLOADS = app.uploads_for(ROOT)
ONLINE = hub.hub_reachable()
HELP = app.FIELD_HELP
SOURCE_KINDS = ["Local dataset", "Upload a file", "Hugging Face Hub"]
MODES = {"distill": "Distil from a fine-tuned teacher", "pipeline": "Fine-tune a teacher first, then distil"}
STUDENT_KINDS = ["Truncate the teacher", "Fresh small BERT", "Google compact BERT", "Other model spec"]
HUB_OPTION = "__hub__"
DATASETS = {d.path: d.label for d in app.local_datasets(UPLOADS)}
AG_NEWS = next((path for path, label in DATASETS.items() if label.startswith("ag_news")), None)

# Widget values of each preset (keys are widget keys). Fields a preset leaves out keep their current value.
PRESETS: dict[str, dict] = {
    "Offline quick start": {
        "t_source_kind": "Local dataset", "t_local": AG_NEWS or next(iter(DATASETS), None), "t_mode": "pipeline",
        "t_base": "bundled:minilm-l6", "t_teacher_epochs": 2, "t_teacher_lr": 1e-4,
        "t_student_kind": "Truncate the teacher", "t_trunc_n": 3, "t_train_samples": 400, "t_eval_samples": 200,
        "t_epochs": 2, "t_lr": 1e-4, "t_batch": 32, "t_optimizer": "adamw", "t_dropout": 0.1, "t_patience": 0,
        "t_max_length": 128, "t_log_every": 2, "t_temperature": 2.0, "t_alpha": 0.5, "t_kd_loss": "kl",
        "t_max_steps": 0,
    },
    "Seed recipe": {
        "t_source_kind": "Hugging Face Hub", "t_hub_id": "ag_news", "t_mode": "distill", "t_teacher": HUB_OPTION,
        "t_teacher_hub": app.SEED_TEACHER, "t_student_kind": "Google compact BERT", "t_compact": app.SEED_STUDENT,
        "t_train_samples": 0, "t_eval_samples": 0, "t_epochs": 5, "t_lr": 2e-5, "t_batch": 64,
        "t_optimizer": "adam", "t_dropout": 0.3, "t_patience": 0, "t_max_length": 150, "t_log_every": 10,
        "t_temperature": 2.0, "t_alpha": 0.5, "t_kd_loss": "kl", "t_max_steps": 0,
    },
}
SEED = TrainConfig(mode="distill", data=DataConfig(source=""), student="")  # TrainConfig defaults = the seed recipe
DEFAULTS = {
    "t_source_kind": "Local dataset" if DATASETS else "Upload a file", "t_local": next(iter(DATASETS), None),
    "t_hub_id": "ag_news", "t_text_col": SEED.data.text_column, "t_label_col": SEED.data.label_column,
    "t_mode": "distill", "t_teacher_hub": "", "t_base": "bundled:minilm-l6", "t_base_hub": "bert-base-uncased",
    "t_teacher_epochs": 3, "t_teacher_lr": 5e-5, "t_student_kind": "Truncate the teacher", "t_trunc_n": 3,
    "t_cfg_layers": 4, "t_cfg_hidden": 256, "t_compact": app.SEED_STUDENT, "t_student_spec": "",
    "t_temperature": SEED.temperature, "t_alpha": SEED.alpha, "t_kd_loss": SEED.kd_loss, "t_epochs": SEED.epochs,
    "t_lr": SEED.lr, "t_batch": SEED.batch_size, "t_optimizer": SEED.optimizer, "t_warmup": SEED.warmup_ratio,
    "t_wd": SEED.weight_decay, "t_dropout": SEED.dropout, "t_patience": SEED.patience or 0, "t_seed": SEED.seed,
    "t_eval_batch": SEED.eval_batch_size, "t_log_every": SEED.log_every_steps, "t_max_steps": SEED.max_steps or 0,
    "t_teacher_cache": SEED.teacher_cache, "t_valid_fraction": SEED.data.valid_fraction,
    "t_test_fraction": SEED.data.test_fraction, "t_train_samples": SEED.data.train_samples or 0,
    "t_eval_samples": SEED.data.eval_samples or 0, "t_max_length": SEED.data.max_length,
}


def apply_preset() -> None:
    name = st.session_state.get("t_preset")
    for key, value in PRESETS.get(name, {}).items():
        st.session_state[key] = value


if "t_preset" not in st.session_state:  # first visit: the preset that works here
    st.session_state["t_preset"] = "Seed recipe" if ONLINE else "Offline quick start"
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    apply_preset()
for key, value in DEFAULTS.items():  # keys dropped by Streamlit when their widget was hidden
    st.session_state.setdefault(key, value)


def spec_picker(label: str, key: str, choices: dict[str, str], hub_default_key: str, help: str) -> str:
    """A selectbox over known models plus 'a Hub model id' (with a text box); returns the chosen spec."""
    options = list(choices) + [HUB_OPTION]
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    choice = st.selectbox(label, options, key=key, help=help,
                          format_func=lambda s: "A Hugging Face Hub model id…" if s == HUB_OPTION else choices[s])
    if choice != HUB_OPTION:
        return choice
    if not ONLINE:
        st.warning("Offline: Hub models cannot be downloaded. Pick a local model or a finished run.",
                   icon=":material/cloud_off:")
    return st.text_input("Hub model id", key=hub_default_key, placeholder="org/name").strip()


def optional(value: float) -> float | None:
    return value if value else None


st.title("Train")
st.caption("Distil a fine-tuned teacher into a small student with loss = α·CE(labels) + (1 − α)·T²·KL(teacher ‖ "
           "student). Runs execute in a background worker: reloading the page or closing the tab does not stop them.")

if st.session_state.pop("t_collapse", False):  # a run was just started: make room for its live panel
    st.session_state["t_config_open"] = False
with st.expander("Configure a new run", expanded=not st.query_params.get("run"), icon=":material/tune:",
                 key="t_config_open", on_change="rerun"):
    st.selectbox("Preset", ["Offline quick start", "Seed recipe", "Custom"], key="t_preset", on_change=apply_preset,
                 help="Offline quick start: fine-tune the bundled MiniLM on 400 AG News rows, then distil it into "
                      "3 of its layers (a few minutes on CPU). Seed recipe: the original article's setup (needs "
                      "the Hub).")
    if st.session_state["t_preset"] == "Seed recipe" and not ONLINE:
        st.warning("The seed recipe downloads its teacher, student and data from the Hugging Face Hub, which "
                   "cannot be reached: use the Offline quick start.", icon=":material/cloud_off:")

    # ---- 1 data
    st.subheader("1 · Data")
    source_kind = st.radio("Source", SOURCE_KINDS, key="t_source_kind", horizontal=True)
    source = ""
    if source_kind == "Local dataset":
        if DATASETS:
            if st.session_state.get("t_local") not in DATASETS:
                st.session_state["t_local"] = next(iter(DATASETS))
            source = st.selectbox("Dataset", list(DATASETS), key="t_local", format_func=DATASETS.get,
                                  help="Folders with train/test files under the allowed data folders, and uploads.")
        else:
            st.info("No local datasets found: upload a file, or set KD_DATA_DIR to a folder of datasets.")
    elif source_kind == "Upload a file":
        cap = app.max_upload_mb()
        # No type= filter: Streamlit enforces it by raising in the script run (a file of another type sent past
        # the browser's check crashed the page); app.save_upload refuses other types with an st.error instead.
        upload = st.file_uploader(f"CSV, JSONL, JSON or Parquet with a text and a label column (up to {cap} MB); "
                                  "one file is split into train/validation/test", key="t_upload",
                                  max_upload_size=cap)
        if upload is not None:
            try:
                source = str(app.save_upload(upload.name, upload.getvalue(), UPLOADS))
                st.caption(f"Saved as {source.rsplit('/', 1)[-1]}; it is listed under Local dataset from now on.")
            except UserError as exc:
                st.error(str(exc))
    else:
        source = st.text_input("Hub dataset id", key="t_hub_id", help=HELP["source"]).strip()
        if not ONLINE:
            st.warning("Offline: Hub datasets cannot be downloaded. Choose a local dataset or upload a file.",
                       icon=":material/cloud_off:")
    col_text, col_label = st.columns(2)
    text_column = col_text.text_input("Text column", key="t_text_col", help=HELP["text_column"])
    label_column = col_label.text_input("Label column", key="t_label_col", help=HELP["label_column"])

    # ---- 2 models
    st.subheader("2 · Models")
    mode = st.radio("Mode", list(MODES), key="t_mode", format_func=MODES.get, horizontal=True)
    col_teacher, col_student = st.columns(2)
    with col_teacher:
        if mode == "distill":
            teachers = hosting.with_gallery(lambda r: app.model_choices(r, include_bundled=False, trained_only=True),
                                            ROOT)
            teacher = spec_picker("Teacher", "t_teacher", teachers, "t_teacher_hub",
                                  "A fine-tuned classifier: a finished run, a local model folder or a Hub id.")
            base = None
        else:
            bases = {**{s: f"{s} (base model)" for s in app.bundled_specs()},
                     **hosting.with_gallery(lambda r: app.model_choices(r, include_bundled=False), ROOT)}
            base = spec_picker("Teacher base model (fine-tuned first)", "t_base", bases, "t_base_hub",
                               "Fine-tuned on the labels into the teacher, which is then distilled.")
            teacher = base
            c1, c2 = st.columns(2)
            teacher_epochs = c1.number_input("Teacher epochs", step=1, key="t_teacher_epochs",
                                             help="Epochs of the teacher fine-tune.")
            teacher_lr = c2.number_input("Teacher learning rate", step=1e-5, format="%.0e", key="t_teacher_lr",
                                         help="Peak learning rate of the teacher fine-tune (1e-4 suits MiniLM).")
    with col_student:
        student_kind = st.selectbox("Student", STUDENT_KINDS, key="t_student_kind",
                                    help="Truncate: the teacher's embeddings and N evenly spaced layers "
                                         "(DistilBERT-style). Fresh: a randomly initialised BERT of that shape.")
        if student_kind == "Truncate the teacher":
            student = f"truncate:{int(st.number_input('Layers kept (N)', step=1, key='t_trunc_n'))}"
        elif student_kind == "Fresh small BERT":
            c1, c2 = st.columns(2)
            layers = int(c1.number_input("Layers", step=1, key="t_cfg_layers"))
            hidden = int(c2.number_input("Hidden size", step=64, key="t_cfg_hidden",
                                         help="A multiple of 64 (heads = hidden / 64)."))
            student = f"config:L{layers}-H{hidden}"
        elif student_kind == "Google compact BERT":
            student = st.selectbox("Compact BERT (Turc et al., 2019)", models.COMPACT_BERTS, key="t_compact",
                                   help="Pre-trained small BERTs from the Hub; the seed recipe uses L-10_H-256.")
            if not ONLINE:
                st.warning("Offline: compact BERTs come from the Hub. Truncate the teacher instead.",
                           icon=":material/cloud_off:")
        else:
            student = st.text_input("Student spec", key="t_student_spec", placeholder="org/name or a model folder",
                                    help="A Hub id, a local model folder, truncate:N or config:L<n>-H<h>.").strip()
        st.caption(f"Student spec: `{student or '—'}`")

    # ---- 3 hyperparameters
    st.subheader("3 · Hyperparameters")
    c1, c2, c3, c4 = st.columns(4)
    temperature = c1.number_input("Temperature T", step=0.5, key="t_temperature", help=HELP["temperature"])
    alpha = c2.number_input("α (label weight)", step=0.05, key="t_alpha", help=HELP["alpha"])
    kd_loss = c3.selectbox("KD loss", ["kl", "mse"], key="t_kd_loss", help=HELP["kd_loss"])
    epochs = c4.number_input("Epochs", step=1, key="t_epochs", help=HELP["epochs"])
    c1, c2, c3, c4 = st.columns(4)
    lr = c1.number_input("Learning rate", step=1e-5, format="%.0e", key="t_lr", help=HELP["lr"])
    batch_size = c2.number_input("Batch size", step=8, key="t_batch", help=HELP["batch_size"])
    optimizer = c3.selectbox("Optimizer", ["adamw", "adam"], key="t_optimizer", help=HELP["optimizer"])
    dropout = c4.number_input("Student dropout", step=0.05, key="t_dropout", help=HELP["dropout"])
    with st.expander("More settings: data sizes, schedule, runtime"):
        c1, c2, c3, c4 = st.columns(4)
        train_samples = c1.number_input("Train samples", step=100, key="t_train_samples", help=HELP["train_samples"])
        eval_samples = c2.number_input("Eval samples", step=100, key="t_eval_samples", help=HELP["eval_samples"])
        max_length = c3.number_input("Max length (tokens)", step=8, key="t_max_length", help=HELP["max_length"])
        valid_fraction = c4.number_input("Validation fraction", step=0.05, key="t_valid_fraction",
                                         help=HELP["valid_fraction"])
        c1, c2, c3, c4 = st.columns(4)
        warmup = c1.number_input("Warm-up ratio", step=0.05, key="t_warmup", help=HELP["warmup_ratio"])
        weight_decay = c2.number_input("Weight decay", step=0.01, key="t_wd", help=HELP["weight_decay"])
        patience = c3.number_input("Early-stopping patience", step=1, key="t_patience", help=HELP["patience"])
        test_fraction = c4.number_input("Test fraction", step=0.05, key="t_test_fraction",
                                        help=HELP["test_fraction"])
        c1, c2, c3, c4 = st.columns(4)
        seed = c1.number_input("Seed", step=1, key="t_seed", help=HELP["seed"])
        eval_batch = c2.number_input("Eval batch size", step=32, key="t_eval_batch", help=HELP["eval_batch_size"])
        log_every = c3.number_input("Log every N steps", step=1, key="t_log_every", help=HELP["log_every_steps"])
        max_steps = c4.number_input("Max steps", step=10, key="t_max_steps", help=HELP["max_steps"])
        teacher_cache = st.checkbox("Cache teacher logits", key="t_teacher_cache", help=HELP["teacher_cache"])

    data_config = DataConfig(source=source, text_column=text_column, label_column=label_column,
                             valid_fraction=float(valid_fraction), test_fraction=float(test_fraction),
                             train_samples=optional(int(train_samples)), eval_samples=optional(int(eval_samples)),
                             max_length=int(max_length))
    distill_config = TrainConfig(
        mode="distill", data=data_config, student=student, teacher=teacher, temperature=float(temperature),
        alpha=float(alpha), kd_loss=kd_loss, epochs=int(epochs), lr=float(lr), batch_size=int(batch_size),
        optimizer=optimizer, warmup_ratio=float(warmup), weight_decay=float(weight_decay), dropout=float(dropout),
        patience=optional(int(patience)), seed=int(seed), eval_batch_size=int(eval_batch),
        log_every_steps=int(log_every), max_steps=optional(int(max_steps)), teacher_cache=teacher_cache,
        extra={"preset": st.session_state["t_preset"]})
    teacher_config = (app.teacher_stage_config(distill_config, base, epochs=int(teacher_epochs),
                                               lr=float(teacher_lr)) if mode == "pipeline" and base else None)

    # ---- 4 start
    st.subheader("4 · Start")
    sizes = app.split_sizes(distill_config, *app.estimate_rows(source)) if source else None
    if sizes:
        seconds = app.estimate_seconds(distill_config, sizes)
        stages = f"distillation ~{app.format_duration(seconds)}"
        if teacher_config is not None:
            teacher_seconds = app.estimate_seconds(teacher_config, sizes)
            stages = f"teacher fine-tune ~{app.format_duration(teacher_seconds)} + {stages}"
            seconds += teacher_seconds
        st.info(f"**Estimated time: ~{app.format_duration(seconds)}** ({stages}) on "
                f"{sizes[0]:,} training, {sizes[1]:,} validation and {sizes[2]:,} test rows. This is an estimate "
                f"from a measured CPU throughput (~{app.REF_SAMPLES_PER_S:.0f} samples/s for MiniLM-L6 at batch 32, "
                "scaled by layers × hidden²); the live panel shows the real ETA.", icon=":material/schedule:")
    name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    st.session_state.setdefault("t_name", app.default_run_name(distill_config))
    run_name = name_col.text_input("Run name", key="t_name", help="Letters, digits, . _ - (becomes a folder name).")
    if button_col.button("Start", type="primary", icon=":material/play_arrow:", width="stretch"):
        try:
            with st.spinner("Checking the data and models…"):
                if teacher_config is not None:
                    app.start_pipeline(ROOT, run_name, teacher_config, distill_config)
                    started = f"{runs.sanitize_run_name(run_name)}-teacher"
                else:
                    app.start_run(ROOT, run_name, distill_config)
                    started = runs.sanitize_run_name(run_name)
        except UserError as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            st.session_state["t_follow"] = started
            st.session_state["t_collapse"] = True
            del st.session_state["t_name"]  # a fresh default name for the next run
            st.rerun()


# ---------------------------------------------------------------- live run
def live_panel(name: str, shown_state: str) -> None:
    """Status, progress, curves and Stop of one run; a fragment that reruns every 2 s while the run is live."""
    run_dir = runs.resolve_run_dir(ROOT, name)
    try:
        app.poll(ROOT)
    except UserError as exc:
        st.error(str(exc))
    view = app.live_view(run_dir)
    state, status = view.state, view.status
    if state != shown_state:
        nxt = app.successor(ROOT, name)
        if state == "done" and nxt:
            st.session_state["t_follow"] = nxt  # follow a pipeline into its distillation stage
        st.rerun()  # full rerun: the run list shows the new state, and polling stops once the run has ended
    colour = {"running": "blue", "queued": "gray", "done": "green", "failed": "red"}.get(state, "orange")
    mode = view.config.get("mode", "?")
    st.markdown(f"#### {name} &nbsp; :{colour}-badge[{state}]")
    st.caption(f"{mode} · student `{app.spec_label(view.config.get('student'), ROOT)}`"
               + (f" · teacher `{app.spec_label(view.config.get('teacher'), ROOT)}`" if view.config.get("teacher")
                  else "") + f" · data `{app.spec_label((view.config.get('data') or {}).get('source'))}`")
    if state == "queued":
        after = (view.config.get("extra") or {}).get(app.AFTER_RUN_KEY)
        st.info(f"Waits for its teacher run **{after}** to finish." if after else
                "Waiting for a free worker slot." if status.get("waiting") else "Starting…",
                icon=":material/hourglass_top:")
    if state == "failed":
        st.error(f"The run failed: {status.get('error') or 'see the worker log'}", icon=":material/error:")
    elif state in ("cancelled", "interrupted"):
        st.warning(f"The run was {state}. {status.get('error') or ''}", icon=":material/stop_circle:")
    if state in ("failed", "interrupted"):
        with st.expander("Worker log (last lines)"):
            st.code(app.worker_log_tail(run_dir) or "(empty)", language=None)

    if view.total_steps:
        eta = f" · ETA {app.format_duration(view.eta_s)}" if state == "running" and view.eta_s is not None else ""
        st.progress(view.progress, text=f"step {view.step} / {view.total_steps}{eta}")
    elif state == "running":
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
    chart_accuracy.plotly_chart(app.fit_percent_axis(figures.accuracy_curves(view.epoch_rows)), key="live_accuracy")

    if state in runs.LIVE_STATES and st.button("Stop run", icon=":material/stop:", key="live_stop"):
        jobs.stop_job(run_dir)
        st.toast(f"Stopping {name}…")
    if view.evaluation:
        student = view.evaluation.get("student") or {}
        teacher = view.evaluation.get("teacher") or {}
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Test accuracy", f"{student.get('accuracy', 0):.1%}")
        c2.metric("Macro-F1", f"{student.get('macro_f1', 0):.1%}")
        if teacher:
            c3.metric("Teacher test accuracy", f"{teacher.get('accuracy', 0):.1%}")
            c4.metric("Agreement with teacher", f"{student.get('agreement', 0):.1%}")
        st.page_link("pages/compare.py", label="Compare this run with others", icon=":material/compare_arrows:")


st.divider()
st.subheader("Live run")
all_runs = runs.list_runs(ROOT)
names = [r["id"] for r in all_runs]
if "t_follow" in st.session_state:  # a run just started (or a pipeline moved on): show it
    st.query_params["run"] = st.session_state.pop("t_follow")
wanted = st.query_params.get("run")
if not wanted and "run" not in st.session_state:
    # A fresh visit with nothing in the address: show the newest run that is still going, if any.
    wanted = next((r["id"] for r in all_runs if r["state"] in runs.LIVE_STATES), None)
    if wanted:
        st.query_params["run"] = wanted
if not names:
    st.info("No runs yet: configure one above and press Start.", icon=":material/info:")
else:
    states = {r["id"]: r["state"] for r in all_runs}
    if wanted in states:  # the address decides, so a reload or a second tab shows the same run
        st.session_state["run"] = wanted

    def remember_run() -> None:
        if st.session_state.get("run"):
            st.query_params["run"] = st.session_state["run"]
        else:
            st.query_params.pop("run", None)

    chosen = st.selectbox("Run", names, index=None, key="run", on_change=remember_run, placeholder="Choose a run",
                          format_func=lambda n: f"{n}  ·  {states.get(n, '?')}",
                          help="The run shown here is kept in the page address (?run=NAME), so a reload or a "
                               "second tab shows the same run.")
    if chosen:
        live = states.get(chosen) in runs.LIVE_STATES
        st.fragment(run_every=2 if live else None)(live_panel)(chosen, states[chosen])

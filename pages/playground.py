"""Playground: one text through several models at once (class, probabilities, latency), and the softened teacher
distribution a student learns from."""
from __future__ import annotations

import streamlit as st

from distill_core import app_support as app
from distill_core import figures, hosting, hub, inference
from distill_core.errors import UserError

if "kd_routed" not in st.session_state:  # opened without the router (a fresh server): go through it
    st.switch_page("streamlit_app.py", query_params={**st.query_params.to_dict(), "page": "playground"})

ROOT = hosting.session_root(st.session_state, st.query_params)  # hosted: this visitor's own runs


@st.cache_resource(show_spinner=False, max_entries=8)
def load_model(spec: str, precision: str) -> inference.InferenceModel:
    """Loaded once per (spec, precision) and shared by every visitor: eval mode, never trained in place."""
    model = inference.load_for_inference(spec, precision)
    app.predict_interactive(model, ["warm-up"])  # first-call allocations and kernel selection: not a visitor's wait
    return model


@st.cache_data(show_spinner=False, ttl=3600)
def sample_headlines(source: str) -> list[str]:
    try:
        return app.sample_texts(source, n=8)
    except UserError:
        return []


def use_sample() -> None:
    st.session_state["p_text"] = st.session_state["p_sample"]


st.title("Playground")
st.caption("Type a text and compare what teacher and students predict, how sure they are and how long they take.")

catalog = hosting.with_gallery(lambda r: app.model_catalog(r, include_bundled=False, hub_ok=hub.hub_reachable()), ROOT)
if not catalog:
    st.info("No trained models yet: finish a run on the Train page (the Offline quick start takes a few minutes).",
            icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

c1, c2 = st.columns([3, 1])
specs = c1.multiselect("Models", list(catalog), default=app.default_pair(ROOT, catalog), key="p_models",
                       format_func=catalog.get,
                       help="Trained classifiers: finished runs, their teachers, local models.")
precision = c2.segmented_control("Precision", ["fp32", "bf16", "int8"], default="fp32", key="p_precision",
                                 required=True)

# Sample headlines from the test split of the data the newest run used (or a local AG News copy).
sources = ([r.get("data_source") for r in app.finished_runs(ROOT)]
           + [d.path for d in app.local_datasets(app.uploads_for(ROOT))])
samples = next((found for source in dict.fromkeys(filter(None, sources)) if (found := sample_headlines(source))), [])
if samples:
    st.selectbox("Sample from the test split", samples, index=None, key="p_sample", on_change=use_sample,
                 placeholder="Pick a sample text to fill the box…")
st.session_state.setdefault("p_text", samples[0] if samples else "Stocks rallied after the central bank held "
                                                                  "rates steady.")


@st.fragment
def classify(specs: list[str], precision: str) -> None:
    """Text box, predictions and the softened distribution. A fragment: typing or moving the temperature reruns
    only this part, not the router and the model lists, which keeps the round trip short."""
    text = st.text_area("Text", key="p_text", height=100, help="Press Ctrl+Enter (or click outside) to classify.")
    if not specs:
        st.info("Pick at least one model.", icon=":material/info:")
        return
    if not text.strip():
        st.info("Enter some text to classify.", icon=":material/info:")
        return
    results: dict[str, dict] = {}
    for spec in specs:
        try:
            with st.spinner(f"Loading {catalog[spec]} ({precision})…"):
                model = load_model(spec, precision)
            output = app.predict_interactive(model, [text])
        except UserError as exc:
            st.error(f"{catalog[spec]}: {exc}", icon=":material/error:")
            continue
        results[spec] = {"logits": output["logits"][0].tolist(), "latency_ms": output["latency_ms"],
                         "label_names": output["label_names"], "parameters": model.parameters}
    if not results:
        return

    for column, (spec, result) in zip(st.columns(len(results)), results.items()):
        probs = app.softened(result["logits"], 1.0)
        best = max(range(len(probs)), key=probs.__getitem__)
        with column.container(border=True):
            st.caption(catalog[spec])
            st.metric("Prediction", result["label_names"][best], f"{probs[best]:.1%} probability",
                      delta_color="off", delta_arrow="off")
            st.caption(f"{result['latency_ms']:.1f} ms · {result['parameters'] / 1e6:.1f} M parameters · {precision}")
    label_names = next(iter(results.values()))["label_names"]
    comparable = {catalog[s]: app.softened(r["logits"], 1.0) for s, r in results.items()
                  if r["label_names"] == label_names}
    st.plotly_chart(figures.probability_bars(comparable, label_names), key="p_probs")

    st.subheader("Softened teacher distribution")
    st.caption("In distillation the student learns from softmax(z / T) of the teacher's logits z: a higher "
               "temperature T spreads probability onto the other classes and exposes what the teacher thinks is "
               "similar.")
    teacher_spec = max(results, key=lambda s: results[s]["parameters"])
    c1, c2 = st.columns([1, 3])
    temperature = c1.slider("Temperature T", min_value=1.0, max_value=10.0, value=2.0, step=0.5,
                            key="p_temperature")
    c1.caption(f"Teacher: {catalog[teacher_spec]} (the largest selected model)")
    logits = results[teacher_spec]["logits"]
    c2.plotly_chart(figures.probability_bars({"T = 1": app.softened(logits, 1.0),
                                              f"T = {temperature:g}": app.softened(logits, temperature)},
                                             results[teacher_spec]["label_names"]), key="p_softened")


classify(specs, precision)

"""Playground: one text through several models at once (class, probabilities, latency), and the softened teacher
distribution a student learns from."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import figures, hosting, inference, specs
from distill_core.app import catalog, playground
from distill_core.errors import UserError
from distill_core.precision import PRECISION_HELP, PRECISIONS

CAPTION = "Type a text and compare what teacher and students predict, how sure they are and how long they take."
FALLBACK_TEXT = "Stocks rallied after the central bank held rates steady."


@st.cache_resource(show_spinner=False, max_entries=8)
def load_model(spec: str, precision: str) -> inference.InferenceModel:
    """Loaded once per (spec, precision) and shared by every visitor: eval mode, never trained in place."""
    return inference.load_for_inference(spec, precision)


@st.cache_resource(show_spinner=False)
def warm_models() -> set[tuple[str, str]]:
    """The (spec, precision) pairs this server has loaded and warmed up: one set shared by every session."""
    return set()


def ready_model(spec: str, name: str, precision: str) -> inference.InferenceModel:
    """The model, loaded and warmed up. The first use names what it does in a status box (reading ~N MB of
    weights, warming up) instead of a blank pause; later uses are cache hits. Warm-up runs here, once, so the
    first allocations and kernel choices are not counted in the latency a visitor sees."""
    warm = warm_models()
    if (spec, precision) in warm:
        with st.spinner(f"Loading {name} ({precision})…"):  # a cache hit, unless the cache let it go
            return load_model(spec, precision)
    steps = playground.cold_load_steps(spec, name, precision)
    started = time.perf_counter()
    with st.status(steps["label"], expanded=True) as status:
        st.write(steps["read"])
        model = load_model(spec, precision)
        st.write(steps["warm"])
        playground.predict_interactive(model, ["warm-up"])
        warm.add((spec, precision))
        status.update(label=f"{steps['ready']} (first load: {time.perf_counter() - started:.1f} s)",
                      state="complete", expanded=False)
    return model


@st.cache_data(show_spinner=False, ttl=3600)
def sample_headlines(source: str) -> list[str]:
    try:
        return playground.sample_texts(source, n=8)
    except UserError:
        return []


def use_sample() -> None:
    st.session_state["p_text"] = st.session_state["p_sample"]


def pick_models(root: Path) -> tuple[dict[str, str], list[str], str]:
    """(spec -> label of every model offered, the chosen specs, the precision)."""
    models = hosting.with_gallery(lambda r: catalog.model_catalog(r, include_bundled=False, hub_ok=ui.online()),
                                  root)
    if not models:
        ui.nothing_yet("No trained models yet: finish a run on the Train page (the Offline quick start takes a few "
                       "minutes).")
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Models", list(models), default=catalog.default_pair(root, models), key="p_models",
                            format_func=models.get, help="Trained classifiers: finished runs, their teachers, local "
                                                         "models.")
    precision = c2.selectbox("Precision", list(PRECISIONS), key="p_precision",
                             help="  \n".join(f"{p}: {PRECISION_HELP[p]}." for p in PRECISIONS))
    return models, chosen, precision


def sample_picker(root: Path) -> None:
    """Sample headlines from the test split of the data the newest run used (or a local AG News copy)."""
    sources = ([r.get("data_source") for r in catalog.finished_runs(root)] + list(ui.local_datasets(root)))
    samples = next((found for source in dict.fromkeys(filter(None, sources))
                    if (found := sample_headlines(source))), [])
    if samples:
        st.selectbox("Sample from the test split", samples, index=None, key="p_sample", on_change=use_sample,
                     placeholder="Pick a sample text to fill the box…")
    st.session_state.setdefault("p_text", samples[0] if samples else FALLBACK_TEXT)


def predict_all(models: dict[str, str], chosen: list[str], precision: str, text: str) -> dict[str, dict]:
    """spec -> logits, latency, label names and size of each chosen model's answer; failures are shown."""
    results: dict[str, dict] = {}
    root = ui.session_root()
    for spec in chosen:
        try:
            model = ready_model(spec, specs.spec_label(spec, root), precision)
            output = playground.predict_interactive(model, [text])
        except UserError as exc:
            ui.show_error(f"{models[spec]}: {exc}")
            continue
        results[spec] = {"logits": output["logits"][0].tolist(), "latency_ms": output["latency_ms"],
                         "label_names": output["label_names"], "parameters": model.parameters}
    return results


def answers(models: dict[str, str], results: dict[str, dict], precision: str) -> None:
    """One card per model (class, probability, latency), then the probabilities of all side by side."""
    for column, (spec, result) in zip(st.columns(len(results)), results.items(), strict=True):
        probs = playground.softened(result["logits"], 1.0)
        best = max(range(len(probs)), key=probs.__getitem__)
        with column.container(border=True):
            st.caption(models[spec])
            st.metric("Prediction", result["label_names"][best], f"{probs[best]:.1%} probability",
                      delta_color="off", delta_arrow="off")
            st.caption(f"{result['latency_ms']:.1f} ms · {result['parameters'] / 1e6:.1f} M parameters · {precision}")
    label_names = next(iter(results.values()))["label_names"]
    comparable = {models[s]: playground.softened(r["logits"], 1.0) for s, r in results.items()
                  if r["label_names"] == label_names}
    ui.chart(figures.probability_bars(comparable, label_names), key="p_probs")


def softened_teacher(models: dict[str, str], results: dict[str, dict]) -> None:
    st.subheader("Softened teacher distribution")
    st.caption("In distillation the student learns from softmax(z / T) of the teacher's logits z: a higher "
               "temperature T spreads probability onto the other classes and exposes what the teacher thinks is "
               "similar.")
    teacher_spec = max(results, key=lambda s: results[s]["parameters"])
    c1, c2 = st.columns([1, 3])
    temperature = c1.slider("Temperature T", min_value=1.0, max_value=10.0, value=2.0, step=0.5, key="p_temperature")
    c1.caption(f"Teacher: {specs.spec_label(teacher_spec, ui.session_root())} (the largest selected model)")
    logits = results[teacher_spec]["logits"]
    softened = figures.probability_bars({"T = 1": playground.softened(logits, 1.0),
                                         f"T = {temperature:g}": playground.softened(logits, temperature)},
                                        results[teacher_spec]["label_names"])
    softened.update_layout(title=f"Teacher's probabilities at T = 1 and T = {temperature:g}")
    ui.chart(softened, key="p_softened", where=c2)


@st.fragment
def classify(models: dict[str, str], chosen: list[str], precision: str) -> None:
    """Text box, predictions and the softened distribution. A fragment: typing or moving the temperature reruns
    only this part, not the router and the model lists, which keeps the round trip short."""
    text = st.text_area("Text", key="p_text", height=100, help="Press Ctrl+Enter (or click outside) to classify.")
    if not chosen:
        st.info("Pick at least one model.", icon=":material/info:")
        return
    if not text.strip():
        st.info("Enter some text to classify.", icon=":material/info:")
        return
    results = predict_all(models, chosen, precision, text)
    if results:
        answers(models, results, precision)
        softened_teacher(models, results)


def render() -> None:
    root = ui.prologue("Playground", CAPTION)
    models, chosen, precision = pick_models(root)
    sample_picker(root)
    classify(models, chosen, precision)


render()

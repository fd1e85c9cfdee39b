"""Benchmark: CPU latency and throughput of teachers and students, speed-up, and the speed/accuracy frontier."""
from __future__ import annotations

import os

import streamlit as st

from distill_core import app_support as app
from distill_core import figures, hosting, hub, inference
from distill_core.errors import UserError

if "kd_routed" not in st.session_state:  # opened without the router (a fresh server): go through it
    st.switch_page("streamlit_app.py", query_params={**st.query_params.to_dict(), "page": "benchmark"})

ROOT = hosting.session_root(st.session_state, st.query_params)  # hosted: this visitor's own runs
MAX_CELLS = 48  # measured in the page's own process: keep a run of the page under a minute or two


def legend_below(fig):
    """Half-width charts: a legend above the plot wraps into the title, so put it under the x axis."""
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}, margin={"t": 50, "b": 40})
    return fig


st.title("Benchmark")
st.caption("Latency and throughput on this server's CPU with synthetic inputs of exactly batch × length tokens: "
           "warm-up passes first, then the median (p50) and p95 of repeated timed passes.")

catalog = hosting.with_gallery(lambda r: app.model_catalog(r, include_bundled=True, hub_ok=hub.hub_reachable()), ROOT)
if not catalog:
    st.info("No models to measure yet: finish a run on the Train page.", icon=":material/info:")
    st.stop()
specs = st.multiselect("Models", list(catalog), default=app.default_pair(ROOT, catalog), key="b_models",
                       format_func=catalog.get, help="Finished runs, their teachers, local models and bundled bases "
                                                     "(weights do not change speed, so untrained heads are fine).")
c1, c2, c3, c4 = st.columns(4)
batch_sizes = c1.multiselect("Batch sizes", [1, 2, 4, 8, 16, 32, 64, 128], default=[1, 8], key="b_batch")
seq_lens = c2.multiselect("Sequence lengths (tokens)", [16, 32, 64, 128, 150, 256, 512], default=[64], key="b_seq")
precisions = c3.multiselect("Precision", ["fp32", "bf16", "int8"], default=["fp32"], key="b_precision",
                            help="bf16: autocast; int8: dynamic quantisation of the linear layers.")
threads = c4.number_input("Threads (0 = default)", min_value=0, max_value=os.cpu_count() or 1, value=0,
                          key="b_threads", help="torch threads during the measurement; recorded in every row.")
c1, c2, _ = st.columns([1, 1, 2])
repeats = c1.number_input("Timed repeats", min_value=2, max_value=100, value=5, key="b_repeats")
warmup = c2.number_input("Warm-up passes", min_value=0, max_value=20, value=2, key="b_warmup")

cells = len(specs) * len(batch_sizes) * len(seq_lens) * len(precisions)
st.caption(f"{cells} measurement(s) of {repeats + warmup} forward passes each.")
if cells > MAX_CELLS:
    st.warning(f"{cells} measurements is too many for the page (limit {MAX_CELLS}); use fewer models, batch sizes, "
               "lengths or precisions, or the CLI: python -m distill_core benchmark …", icon=":material/warning:")
if st.button("Run benchmark", type="primary", icon=":material/speed:", disabled=not cells or cells > MAX_CELLS):
    bar = st.progress(0.0, text="loading models…")
    done = [0]

    def on_event(event: dict) -> None:
        if event.get("kind") == "bench":
            done[0] += 1
            bar.progress(min(done[0] / max(cells, 1), 1.0), text=f"measured {done[0]} / {cells}")

    try:
        rows = inference.benchmark_specs(specs, batch_sizes=sorted(batch_sizes), seq_lens=sorted(seq_lens),
                                         precisions=precisions, threads=threads or None, warmup=int(warmup),
                                         repeats=int(repeats), on_event=on_event)
    except UserError as exc:
        bar.empty()
        st.error(str(exc), icon=":material/error:")
    else:
        bar.empty()
        app.save_bench_rows(rows, {s: d for s in specs if (d := app.run_dir_of_spec(ROOT, s)) is not None})
        st.session_state["b_result"] = {"rows": rows, "labels": {s: app.spec_label(s, ROOT) for s in specs}}

result = st.session_state.get("b_result")
if not result:
    st.info("Choose models and settings, then run the benchmark. Small settings take a few seconds.",
            icon=":material/info:")
    st.stop()

labels = result["labels"]
rows = [{**row, "model": labels.get(row["model"], row["model"])} for row in result["rows"]]
models_measured = list(dict.fromkeys(row["model"] for row in rows))
largest = max(rows, key=lambda r: r.get("parameters") or 0)["model"]
baseline = st.selectbox("Speed-up baseline", models_measured, index=models_measured.index(largest),
                        key="b_baseline", help="Usually the teacher: bars show how many times faster each model is.")
# Lines over batch size unless only the length varies.
x_axis = "seq_len" if len({r["batch_size"] for r in rows}) == 1 < len({r["seq_len"] for r in rows}) else "batch_size"
latency = legend_below(figures.latency_chart(rows, x=x_axis))
throughput = legend_below(figures.throughput_chart(rows, x=x_axis))
speedup = legend_below(figures.speedup_bars(rows, baseline))
points = app.speed_accuracy_points(ROOT, result["rows"], labels)
scatter = legend_below(figures.speed_accuracy_scatter(points))
app.fit_percent_axis(scatter, pad=0.01)  # models often differ by tenths of a percent
c1, c2 = st.columns(2)
c1.plotly_chart(latency, key="b_latency")
c2.plotly_chart(throughput, key="b_throughput")
c1, c2 = st.columns(2)
c1.plotly_chart(speedup, key="b_speedup")
c2.plotly_chart(scatter, key="b_scatter")
if not points:
    c2.caption("Test accuracy comes from finished runs; measure a run's model to place it here.")

table = [{k: row.get(k) for k in ("model", "precision", "batch_size", "seq_len", "threads", "latency_ms_p50",
                                  "latency_ms_p95", "samples_per_s", "parameters", "size_mb")} for row in rows]
st.dataframe(table, hide_index=True, column_config={
    "latency_ms_p50": st.column_config.NumberColumn("p50 (ms)", format="%.1f"),
    "latency_ms_p95": st.column_config.NumberColumn("p95 (ms)", format="%.1f"),
    "samples_per_s": st.column_config.NumberColumn("samples/s", format="%.1f"),
    "parameters": st.column_config.NumberColumn("parameters", format="compact"),
    "size_mb": st.column_config.NumberColumn("size (MB)", format="%.1f"),
})
c1, c2, _ = st.columns([1, 1, 2])
c1.download_button("Download CSV", app.rows_to_csv(rows), file_name="kd-benchmark.csv", mime="text/csv",
                   icon=":material/download:", on_click="ignore")
notes = [f"Speed-up baseline: {baseline}. Synthetic inputs; p50/p95 over the timed passes after warm-up."]
# A callable: the ~4 MB page (plotly.js inlined) is built only when someone clicks, not on every rerun.
c2.download_button("Download HTML report", lambda: app.html_report("KD Studio benchmark", [latency, throughput,
                                                                                           speedup, scatter],
                                                                   table, notes),
                   file_name="kd-benchmark.html", mime="text/html", icon=":material/description:",
                   on_click="ignore")

"""Benchmark: CPU latency and throughput of teachers and students, speed-up, and the speed/accuracy frontier."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import figures, hosting, inference, specs
from distill_core.app import catalog, reports
from distill_core.errors import UserError

CAPTION = ("Latency and throughput on this server's CPU with synthetic inputs of exactly batch × length tokens: "
           "warm-up passes first, then the median (p50) and p95 of repeated timed passes.")
MAX_CELLS = 48  # measured in the page's own process: keep a run of the page under a minute or two
TABLE_KEYS = ("model", "precision", "batch_size", "seq_len", "threads", "latency_ms_p50", "latency_ms_p95",
              "samples_per_s", "parameters", "size_mb")
TABLE_COLUMNS = {
    "latency_ms_p50": st.column_config.NumberColumn("p50 (ms)", format="%.1f"),
    "latency_ms_p95": st.column_config.NumberColumn("p95 (ms)", format="%.1f"),
    "samples_per_s": st.column_config.NumberColumn("samples/s", format="%.1f"),
    "parameters": st.column_config.NumberColumn("parameters", format="compact"),
    "size_mb": st.column_config.NumberColumn("size (MB)", format="%.1f"),
}


@dataclass
class Grid:
    """What to measure: every model at every batch size, length and precision."""
    specs: list[str]
    batch_sizes: list[int]
    seq_lens: list[int]
    precisions: list[str]
    threads: int
    repeats: int
    warmup: int

    @property
    def cells(self) -> int:
        return len(self.specs) * len(self.batch_sizes) * len(self.seq_lens) * len(self.precisions)


def legend_below(fig):
    """Half-width charts: a legend above the plot wraps into the title, so put it under the x axis."""
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}, margin={"t": 50, "b": 40})
    return fig


def settings(root: Path) -> Grid:
    """The models and the grid to measure, as chosen in the widgets."""
    models = hosting.with_gallery(
        lambda r: catalog.model_catalog(r, include_bundled=True, hub_ok=ui.online()), root)
    if not models:
        ui.nothing_yet("No models to measure yet: finish a run on the Train page.", link_to_train=False)
    chosen = st.multiselect("Models", list(models), default=catalog.default_pair(root, models), key="b_models",
                            format_func=models.get, help="Finished runs, their teachers, local models and bundled "
                                                         "bases (weights do not change speed, so untrained heads are "
                                                         "fine).")
    c1, c2, c3, c4 = st.columns(4)
    batch_sizes = c1.multiselect("Batch sizes", [1, 2, 4, 8, 16, 32, 64, 128], default=[1, 32], key="b_batch")
    seq_lens = c2.multiselect("Sequence lengths (tokens)", [16, 32, 64, 128, 150, 256, 512], default=[64],
                              key="b_seq")
    precisions = c3.multiselect("Precision", ["fp32", "bf16", "int8"], default=["fp32"], key="b_precision",
                                help="bf16: autocast; int8: dynamic quantisation of the linear layers.")
    threads = c4.number_input("Threads (0 = default)", min_value=0, max_value=os.cpu_count() or 1, value=0,
                              key="b_threads", help="torch threads during the measurement; recorded in every row.")
    c1, c2, _ = st.columns([1, 1, 2])
    repeats = c1.number_input("Timed repeats", min_value=2, max_value=100, value=5, key="b_repeats")
    warmup = c2.number_input("Warm-up passes", min_value=0, max_value=20, value=2, key="b_warmup")
    return Grid(chosen, batch_sizes, seq_lens, precisions, int(threads), int(repeats), int(warmup))


def measure(root: Path, grid: Grid) -> None:
    """Run the benchmark in this process; rows go to the session and to each measured run's bench.json."""
    bar = st.progress(0.0, text="loading models…")
    done = [0]

    def on_event(event: dict) -> None:
        if event.get("kind") == "bench":
            done[0] += 1
            bar.progress(min(done[0] / max(grid.cells, 1), 1.0), text=f"measured {done[0]} / {grid.cells}")

    try:
        rows = inference.benchmark_specs(grid.specs, batch_sizes=sorted(grid.batch_sizes),
                                         seq_lens=sorted(grid.seq_lens), precisions=grid.precisions,
                                         threads=grid.threads or None, warmup=grid.warmup,
                                         repeats=grid.repeats, on_event=on_event)
    except UserError as exc:
        bar.empty()
        ui.show_error(exc)
        return
    bar.empty()
    reports.save_bench_rows(rows, {s: d for s in grid.specs if (d := catalog.run_dir_of_spec(root, s)) is not None})
    st.session_state["b_result"] = {"rows": rows, "labels": {s: specs.spec_label(s, root) for s in grid.specs}}


def charts(root: Path, result: dict, rows: list[dict], baseline: str) -> list:
    """Latency, throughput, speed-up and speed/accuracy, two by two; returns them for the HTML report."""
    # Lines over batch size unless only the length varies.
    x_axis = "seq_len" if len({r["batch_size"] for r in rows}) == 1 < len({r["seq_len"] for r in rows}) \
        else "batch_size"
    latency = legend_below(figures.latency_chart(rows, x=x_axis))
    throughput = legend_below(figures.throughput_chart(rows, x=x_axis))
    speedup = legend_below(figures.speedup_bars(rows, baseline))
    points = reports.speed_accuracy_points(root, result["rows"], result["labels"])
    scatter = figures.fit_percent_axis(legend_below(figures.speed_accuracy_scatter(points)),
                                       pad=0.01)  # models often differ by tenths of a percent
    c1, c2 = st.columns(2)
    c1.plotly_chart(latency, key="b_latency")
    c2.plotly_chart(throughput, key="b_throughput")
    c1, c2 = st.columns(2)
    c1.plotly_chart(speedup, key="b_speedup")
    c2.plotly_chart(scatter, key="b_scatter")
    if not points:
        c2.caption("Test accuracy comes from finished runs; measure a run's model to place it here.")
    return [latency, throughput, speedup, scatter]


def results(root: Path, result: dict) -> None:
    labels = result["labels"]
    rows = [{**row, "model": labels.get(row["model"], row["model"])} for row in result["rows"]]
    measured = list(dict.fromkeys(row["model"] for row in rows))
    largest = max(rows, key=lambda r: r.get("parameters") or 0)["model"]
    baseline = st.selectbox("Speed-up baseline", measured, index=measured.index(largest), key="b_baseline",
                            help="Usually the teacher: bars show how many times faster each model is.")
    figs = charts(root, result, rows, baseline)
    table = [{k: row.get(k) for k in TABLE_KEYS} for row in rows]
    st.dataframe(table, hide_index=True, column_config=TABLE_COLUMNS)
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button("Download CSV", reports.rows_to_csv(rows), file_name="kd-benchmark.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    notes = [f"Speed-up baseline: {baseline}. Synthetic inputs; p50/p95 over the timed passes after warm-up."]
    # A callable: the ~4 MB page (plotly.js inlined) is built only when someone clicks, not on every rerun.
    c2.download_button("Download HTML report", lambda: reports.html_report("KD Studio benchmark", figs, table, notes),
                       file_name="kd-benchmark.html", mime="text/html", icon=":material/description:",
                       on_click="ignore")


def render() -> None:
    root = ui.prologue("Benchmark", CAPTION)
    grid = settings(root)
    st.caption(f"{grid.cells} measurement(s) of {grid.repeats + grid.warmup} forward passes each.")
    if grid.cells > MAX_CELLS:
        st.warning(f"{grid.cells} measurements is too many for the page (limit {MAX_CELLS}); use fewer models, "
                   "batch sizes, lengths or precisions, or the CLI: python -m distill_core benchmark …",
                   icon=":material/warning:")
    if st.button("Run benchmark", type="primary", icon=":material/speed:",
                 disabled=not grid.cells or grid.cells > MAX_CELLS):
        measure(root, grid)
    result = st.session_state.get("b_result")
    if not result:
        ui.nothing_yet("Choose models and settings, then run the benchmark. Small settings take a few seconds.",
                       link_to_train=False)
    results(root, result)


render()

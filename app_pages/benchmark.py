"""Benchmark: CPU latency and throughput of teachers and students, paired speed-ups, and the speed/accuracy frontier.

The page never times anything itself: "Run benchmark" starts a separate process (distill_core.bench_jobs) that
measures exactly as `python -m distill_core benchmark` does, and the page reads its progress and result from the
runs folder, so a reload shows the last result again and the server's other work does not skew the numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import bench_jobs, bench_stats, figures, figures_speed, hosting, specs
from distill_core.app import catalog, reports
from distill_core.errors import UserError
from distill_core.precision import PRECISION_HELP, PRECISIONS

CAPTION = ("Latency and throughput on this server's CPU with synthetic inputs of exactly batch × length tokens, "
           "measured in a separate process: warm-up passes first, then the models take turns (A B, B A, ...) so "
           "that a change of load hits them alike; median, quartiles and p95 of the timed passes.")
POLL_S = 2.0
TABLE_KEYS = ("model", "precision", "batch_size", "seq_len", "threads", "latency_ms_p50", "latency_ms_p25",
              "latency_ms_p75", "latency_ms_p95", "samples_per_s", "repeats", "parameters", "size_mb")
TABLE_COLUMNS = {
    "batch_size": st.column_config.NumberColumn("batch"),
    "seq_len": st.column_config.NumberColumn("length"),
    "latency_ms_p50": st.column_config.NumberColumn("p50 (ms)", format="%.1f"),
    "latency_ms_p25": st.column_config.NumberColumn("p25 (ms)", format="%.1f"),
    "latency_ms_p75": st.column_config.NumberColumn("p75 (ms)", format="%.1f"),
    "latency_ms_p95": st.column_config.NumberColumn("p95 (ms)", format="%.1f"),
    "samples_per_s": st.column_config.NumberColumn("samples/s", format="%.1f"),
    "repeats": st.column_config.NumberColumn("passes"),
    "parameters": st.column_config.NumberColumn("parameters", format="compact"),
    "size_mb": st.column_config.NumberColumn("size (MB)", format="%.1f"),
}
SPEEDUP_COLUMNS = {
    "batch_size": st.column_config.NumberColumn("batch"),
    "seq_len": st.column_config.NumberColumn("length"),
    "speedup": st.column_config.NumberColumn("speed-up (median)", format="%.2f×"),
    "speedup_p25": st.column_config.NumberColumn("p25", format="%.2f×"),
    "speedup_p75": st.column_config.NumberColumn("p75", format="%.2f×"),
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


def settings(models: dict[str, str], root: Path) -> Grid:
    """The models and the grid to measure, as chosen in the widgets."""
    chosen = st.multiselect("Models", list(models), default=catalog.default_pair(root, models), key="b_models",
                            format_func=models.get, help="Finished runs, their teachers, local models and bundled "
                                                         "bases (weights do not change speed, so untrained heads are "
                                                         "fine).")
    c1, c2, c3, c4 = st.columns(4)
    batch_sizes = c1.multiselect("Batch sizes", [1, 2, 4, 8, 16, 32, 64, 128], default=[1, 32], key="b_batch")
    seq_lens = c2.multiselect("Sequence lengths (tokens)", [16, 32, 64, 128, 150, 256, 512], default=[64],
                              key="b_seq")
    precisions = c3.multiselect("Precision", list(PRECISIONS), default=["fp32"], key="b_precision",
                                help="  \n".join(f"{p}: {PRECISION_HELP[p]}." for p in PRECISIONS))
    threads = c4.number_input("Threads (0 = default)", min_value=0, max_value=os.cpu_count() or 1, value=0,
                              key="b_threads", help="torch threads during the measurement; recorded in every row.")
    c1, c2, _ = st.columns([1, 1, 2])
    most = bench_jobs.HOSTED_MAX_REPEATS if hosting.is_hosted() else 100
    repeats = c1.number_input("Timed repeats", min_value=10, max_value=most, value=20, key="b_repeats",
                              help="timed passes per model per measurement; 20 or more make the spread known.")
    warmup = c2.number_input("Warm-up passes", min_value=0, max_value=20, value=3, key="b_warmup")
    return Grid(chosen, batch_sizes, seq_lens, precisions, int(threads), int(repeats), int(warmup))


def start(root: Path, grid: Grid, models: dict[str, str]) -> None:
    """Start the measurement in its own process; its rows also go to each measured run's bench.json."""
    request = bench_jobs.Request(
        specs=grid.specs, batch_sizes=grid.batch_sizes, seq_lens=grid.seq_lens, precisions=grid.precisions,
        threads=grid.threads or None, warmup=grid.warmup, repeats=grid.repeats,
        labels={s: specs.spec_label(s, root) for s in grid.specs},
        run_dirs={s: str(d) for s in grid.specs if (d := catalog.run_dir_of_spec(root, s)) is not None})
    try:
        bench_jobs.start(root, request, allowed_specs=list(models))
    except UserError as exc:
        ui.show_error(exc)
        return
    st.rerun()


@st.fragment(run_every=POLL_S)
def progress_panel(root: Path) -> None:
    """The running benchmark's progress, read from its files every POLL_S; the whole page reruns when it ends."""
    job = bench_jobs.latest(root)
    if not job or job["state"] != "running":
        st.rerun()  # it ended: draw its result (or its error) with the whole page
        return
    total = max(job["total"], 1)
    st.progress(min(job["done"] / total, 1.0),
                text=f"Measuring in a separate process (started {job['started']}): {job['done']} / {total} "
                     "model × setting cells done. You can leave this page; the result stays.")
    if st.button("Stop", icon=":material/stop:", key="b_stop"):
        bench_jobs.stop(root)
        st.rerun()


def ended(job: dict | None) -> None:
    """Say how the last benchmark ended when it did not finish."""
    if job and job["state"] == "failed":
        ui.show_error(f"The benchmark started at {job['started']} failed: {job['error']}")
    elif job and job["state"] == "cancelled":
        st.info(f"The benchmark started at {job['started']} was stopped.", icon=":material/stop_circle:")


def charts(root: Path, result: dict, rows: list[dict], baseline: str) -> list:
    """Latency, throughput, speed-up and speed/accuracy, two by two; returns them for the HTML report."""
    # Lines over batch size unless only the length varies.
    x_axis = "seq_len" if len({r["batch_size"] for r in rows}) == 1 < len({r["seq_len"] for r in rows}) \
        else "batch_size"
    latency = legend_below(figures_speed.latency_chart(rows, x=x_axis))
    throughput = legend_below(figures_speed.throughput_chart(rows, x=x_axis))
    speedup = legend_below(figures_speed.speedup_bars(rows, baseline))
    points = reports.speed_accuracy_points(root, result["rows"], result.get("labels", {}))
    scatter = figures.fit_percent_axis(legend_below(figures_speed.speed_accuracy_scatter(points)),
                                       pad=0.01)  # models often differ by tenths of a percent
    c1, c2 = st.columns(2)
    ui.chart(latency, key="b_latency", where=c1)
    ui.chart(throughput, key="b_throughput", where=c2)
    c1, c2 = st.columns(2)
    ui.chart(speedup, key="b_speedup", where=c1)
    ui.chart(scatter, key="b_scatter", where=c2)
    if not points:
        c2.caption("Test accuracy comes from finished runs; measure a run's model to place it here.")
    return [latency, throughput, speedup, scatter]


def headline(speedups: list[dict]) -> None:
    """The paired speed-ups, in the words the CLI prints, and as a table."""
    if not speedups:
        return
    st.markdown("\n".join(f"- **{line}**" for line in bench_stats.headline(speedups).splitlines()))
    st.dataframe([{k: s[k] for k in ("model", "baseline", "precision", "batch_size", "seq_len", "speedup",
                                     "speedup_p25", "speedup_p75", "rounds")} for s in speedups],
                 hide_index=True, column_config=SPEEDUP_COLUMNS)


def warnings(found: list[dict], labels: dict[str, str]) -> None:
    """A busy machine in its own box; wide spreads in one box listing the measurements, by the models' labels."""
    for warning in (w for w in found if w.get("kind") != "spread"):
        st.warning(warning["message"], icon=":material/warning:")
    spread = [w for w in found if w.get("kind") == "spread"]
    if spread:
        lines = [f"- {labels.get(w['model'], w['model'])} at {w['precision']}, batch {w['batch_size']}, length "
                 f"{w['seq_len']}: IQR {w['iqr_share']:.0%} of the median, p95 {w['p95_over_p50']:.1f}× the median"
                 for w in spread]
        st.warning(f"Timings spread widely in {len(spread)} measurement(s) (limits: IQR "
                   f"{bench_stats.MAX_IQR_RATIO:.0%} of the median, p95 {bench_stats.MAX_P95_RATIO}× the median): "
                   "something else was using the CPU. Treat the latencies as rough; the paired speed-ups hold "
                   "better, or measure again on a quiet machine.\n\n" + "\n".join(lines), icon=":material/warning:")


def results(root: Path, result: dict) -> None:
    labels = result.get("labels", {})
    rows = [{**row, "model": labels.get(row["model"], row["model"])} for row in result["rows"]]
    measured = list(dict.fromkeys(row["model"] for row in rows))
    largest = bench_stats.default_baseline(rows) or measured[0]
    st.subheader("Last result")
    warnings(result.get("warnings", []), labels)
    baseline = st.selectbox("Speed-up baseline", measured, index=measured.index(largest), key="b_baseline",
                            help="Usually the teacher. The speed-up is paired: the models took turns, and each "
                                 "round's ratio of medians counts; the median ratio and its quartiles are shown.")
    speedups = bench_stats.paired_speedups(rows, baseline)
    headline(speedups)
    figs = charts(root, result, rows, baseline)
    table = [{k: row.get(k) for k in TABLE_KEYS} for row in rows]
    st.dataframe(table, hide_index=True, column_config=TABLE_COLUMNS)
    machine = bench_stats.machine_line(result.get("machine") or {})
    st.caption(f"Measured on {machine}.")
    c1, c2, _ = st.columns([1, 1, 2])
    export = reports.bench_export_rows(result, labels)
    c1.download_button("Download CSV", reports.rows_to_csv(export), file_name="kd-benchmark.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    notes = [f"Speed-up baseline: {baseline}. Synthetic inputs; models interleaved; p50, quartiles and p95 over "
             "the timed passes after warm-up.", *bench_stats.headline(speedups).splitlines(),
             f"Machine: {machine}.", *(f"Warning: {w['message']}" for w in result.get("warnings", []))]
    # A callable: the ~4 MB page (plotly.js inlined) is built only when someone clicks, not on every rerun.
    c2.download_button("Download HTML report", lambda: reports.html_report("KD Studio benchmark", figs, export, notes),
                       file_name="kd-benchmark.html", mime="text/html", icon=":material/description:",
                       on_click="ignore")


def stored_results(rows: list[dict]) -> None:
    """What was measured when the chosen models were built (each run's bench.json), until a benchmark runs here:
    a first visit after the showcase sees its numbers without measuring again."""
    st.subheader("Measured when these models were built")
    st.caption("Kept with each run (its bench.json; Compare's speed-ups come from the same rows). Run the benchmark "
               "to measure the chosen models again, side by side, with paired speed-ups and charts.")
    st.dataframe([{k: row.get(k) for k in TABLE_KEYS} for row in rows], hide_index=True,
                 column_config=TABLE_COLUMNS)
    machines = sorted({row["machine"] for row in rows if isinstance(row.get("machine"), str)})
    if machines:
        st.caption("Measured on " + " | ".join(machines) + ".")


def render() -> None:
    root = ui.prologue("Benchmark", CAPTION)
    models = hosting.with_gallery(
        lambda r: catalog.model_catalog(r, include_bundled=True, hub_ok=ui.online()), root)
    if not models:
        ui.nothing_yet("No models to measure yet: finish a run on the Train page.", link_to_train=False)
    grid = settings(models, root)
    job = bench_jobs.latest(root)
    running = bool(job and job["state"] == "running")
    limit = bench_jobs.HOSTED_MAX_CELLS if hosting.is_hosted() else bench_jobs.MAX_CELLS
    st.caption(f"{grid.cells} measurement(s) of {grid.warmup} warm-up and at least {grid.repeats} timed passes "
               "per model each.")
    if grid.cells > limit:
        st.warning(f"{grid.cells} measurements is too many here (limit {limit}); use fewer models, batch sizes, "
                   "lengths or precisions, or the CLI: python -m distill_core benchmark …", icon=":material/warning:")
    if st.button("Run benchmark", type="primary", icon=":material/speed:",
                 disabled=running or not grid.cells or grid.cells > limit,
                 help="One benchmark at a time; this one is running." if running else None):
        start(root, grid, models)
    if running:
        progress_panel(root)
    else:
        ended(job)
    result = bench_jobs.last_result(root)
    if not result:
        stored = reports.stored_bench_rows({spec: models[spec] for spec in grid.specs if spec in models})
        if stored and not running:
            stored_results(stored)
        elif not running:
            ui.nothing_yet("Choose models and settings, then run the benchmark. Small settings take a few seconds.",
                           link_to_train=False)
        return
    results(root, result)


render()

"""What a benchmark's timings say: latency summaries, paired speed-ups with their spread, and warnings.

Pure functions over plain numbers and row dicts (no torch, no I/O), shared by the engine that measures
(``bench.py``), the CLI that prints, the page that draws and the reports that export, so every face quotes the
same numbers.

Why paired ratios: on a shared machine the load changes while a benchmark runs. Measured one after the other, a
teacher timed while a training worker ran and a student timed after it had stopped gave a "7.9x" speed-up where
physics allows ~2x. ``bench.benchmark_models`` therefore alternates the models in rounds (A B, B A, A B ...)
and keeps each model's median per round; the speed-up of a round is the ratio of two medians timed seconds
apart under the same load, and the speed-up quoted is the median of those ratios, with their IQR as its spread.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# A cell whose timings spread this much is flagged: IQR over median, and p95 over median.
MAX_IQR_RATIO = 0.15
MAX_P95_RATIO = 1.5
# Load (1-minute average) from other processes, as a share of the usable cores, above which the machine is
# called busy: with half the cores taken, a multi-threaded forward pass waits on descheduled threads.
BUSY_LOAD_SHARE = 0.5


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """Median (p50), quartiles, p95, min, mean and std (ms) of one model's timed passes in one cell."""
    values = np.asarray(latencies_ms, dtype=float)
    if values.size == 0:
        raise ValueError("latency_summary needs at least one timing")
    p25, p50, p75, p95 = (float(v) for v in np.percentile(values, [25, 50, 75, 95]))
    return {
        "latency_ms_p50": p50,
        "latency_ms_p25": p25,
        "latency_ms_p75": p75,
        "latency_ms_p95": p95,
        "latency_ms_min": float(values.min()),
        "latency_ms_mean": float(values.mean()),
        "latency_ms_std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
    }


def cell_of(row: Mapping[str, Any]) -> tuple:
    """The setting a row was measured at: rows of the same cell are comparable."""
    return row.get("precision"), row.get("batch_size"), row.get("seq_len")


def default_baseline(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The model speed-ups are quoted against: the largest (usually the teacher); ties go to the first."""
    best: tuple[float, str] | None = None
    for row in rows:
        parameters = row.get("parameters") or 0
        if best is None or parameters > best[0]:
            best = (parameters, str(row.get("model")))
    return best[1] if best else None


def paired_speedups(rows: Sequence[Mapping[str, Any]], baseline: str | None = None) -> list[dict[str, Any]]:
    """How many times faster each model is than ``baseline``, per cell, from the rounds they were timed in.

    Each round's ratio is baseline median / model median of that round (``round_ms``: one median per round, in
    the same order for every model of a cell). Returns one dict per (model, cell) other than the baseline:
    model, baseline, precision, batch_size, seq_len, speedup (median ratio), speedup_p25, speedup_p75, rounds.
    Rows without rounds (an old bench.json) fall back to the ratio of throughputs, with no spread
    (rounds 0).
    """
    baseline = baseline or default_baseline(rows)
    base = {cell_of(r): r for r in rows if r.get("model") == baseline}
    out: list[dict[str, Any]] = []
    for row in rows:
        reference = base.get(cell_of(row))
        if row.get("model") == baseline or reference is None:
            continue
        precision, batch_size, seq_len = cell_of(row)
        ratios = _round_ratios(reference.get("round_ms"), row.get("round_ms"))
        if ratios:
            p25, p50, p75 = (float(v) for v in np.percentile(ratios, [25, 50, 75]))
        elif _positive(reference.get("samples_per_s")) and _positive(row.get("samples_per_s")):
            p25 = p50 = p75 = row["samples_per_s"] / reference["samples_per_s"]
        else:
            continue
        out.append({"model": row.get("model"), "baseline": baseline, "precision": precision,
                    "batch_size": batch_size, "seq_len": seq_len, "speedup": p50, "speedup_p25": p25,
                    "speedup_p75": p75, "rounds": len(ratios)})
    return out


def _round_ratios(base_ms: Any, model_ms: Any) -> list[float]:
    if not isinstance(base_ms, list) or not isinstance(model_ms, list) or len(base_ms) != len(model_ms):
        return []
    return [b / m for b, m in zip(base_ms, model_ms, strict=True) if _positive(b) and _positive(m)]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def spread_warnings(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A warning per (model, cell) whose timings spread widely: IQR/median or p95/median over the limits."""
    warnings = []
    for row in rows:
        p50, p25, p75, p95 = (_number(row.get(k)) for k in ("latency_ms_p50", "latency_ms_p25", "latency_ms_p75",
                                                             "latency_ms_p95"))
        if p50 is None or p50 <= 0:
            continue
        iqr_share = (p75 - p25) / p50 if p75 is not None and p25 is not None else 0.0
        tail = p95 / p50 if p95 is not None else 1.0
        if iqr_share > MAX_IQR_RATIO or tail > MAX_P95_RATIO:
            precision, batch_size, seq_len = cell_of(row)
            warnings.append({
                "kind": "spread", "model": row.get("model"), "precision": precision, "batch_size": batch_size,
                "seq_len": seq_len, "iqr_share": iqr_share, "p95_over_p50": tail,
                "message": (f"{row.get('model')} at {precision}, batch {batch_size}, length {seq_len}: timings "
                            f"spread widely (IQR {iqr_share:.0%} of the median, p95 {tail:.1f}x the median; "
                            f"limits {MAX_IQR_RATIO:.0%} and {MAX_P95_RATIO}x): something else was using the CPU, "
                            "so treat these numbers as rough and measure again on a quiet machine"),
            })
    return warnings


def load_warning(load_before: Sequence[float] | None, load_after: Sequence[float] | None,
                 usable_cores: int | None, threads: int) -> dict[str, Any] | None:
    """A warning when other processes kept the CPU busy around the measurement, else None.

    The 1-minute load average before the benchmark is all other processes'; the one after includes the
    benchmark's own ``threads`` at most, so that much is taken off it. Either above BUSY_LOAD_SHARE of the
    usable cores means the machine was busy.
    """
    cores = usable_cores or 1
    before = float(load_before[0]) if load_before else 0.0
    after = float(load_after[0]) - min(threads, cores) if load_after else 0.0
    others = max(before, after)
    if others <= BUSY_LOAD_SHARE * cores:
        return None
    return {"kind": "busy", "load_before": before, "others_load": others, "usable_cores": cores,
            "message": (f"the machine was busy: a load average of {others:.1f} from other processes on "
                        f"{cores} usable core(s) (1-minute average: {before:.1f} before, "
                        f"{float(load_after[0]) if load_after else 0.0:.1f} after, this benchmark's "
                        f"{threads} thread(s) included). Latencies are slower than on an idle machine and "
                        "vary; the paired speed-ups are the numbers to quote")}


def headline(speedups: Sequence[Mapping[str, Any]]) -> str:
    """One line per paired speed-up, as the CLI prints it and the page shows it."""
    return "\n".join(
        f"{s['model']} is {s['speedup']:.2f}x as fast as {s['baseline']} (IQR {s['speedup_p25']:.2f}-"
        f"{s['speedup_p75']:.2f}x over {s['rounds']} rounds) at {s['precision']}, batch {s['batch_size']}, "
        f"length {s['seq_len']}" for s in speedups)


def machine_line(machine: Mapping[str, Any]) -> str:
    """The machine facts under a result: CPU, cores, threads, torch, date and load."""
    load = machine.get("load_before") or [None]
    load_after = machine.get("load_after") or [None]
    return (f"{machine.get('cpu_model', 'unknown CPU')} · {machine.get('usable_cores')} usable core(s) · "
            f"{machine.get('threads', machine.get('torch_threads'))} torch thread(s) · torch "
            f"{machine.get('torch_version')} · {machine.get('date')} · load average "
            f"{_fmt(load[0])} before, {_fmt(load_after[0])} after")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "unknown"

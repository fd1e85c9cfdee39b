"""The table and number formatting every BENCHMARKS.md section shares (report.py and its section modules)."""
from __future__ import annotations

from typing import Any

Row = list[Any]


def table(head: list[str], rows: list[Row]) -> str:
    def cell(v: Any) -> str:
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def f(v: float | None, digits: int = 1) -> str | None:
    return None if v is None else f"{v:,.{digits}f}"


def pct(v: float | None, digits: int = 1) -> str | None:
    return None if v is None else f"{100 * v:.{digits}f}%"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def provenance(result: dict[str, Any]) -> str:
    m = result["machine"]
    load = result.get("load_average_at_start"), result.get("load_average_at_end")
    load_text = ""
    if all(load):
        load_text = f"; 1-min load average {load[0][0]:.1f} at start, {load[1][0]:.1f} at end"
    return (f"Reproduce: `{result['command']}` — measured {m['date']} on {m['cpu_model']} "
            f"({m['usable_cores']} usable cores, torch {m['torch_version']}, {m['torch_threads']} torch threads by "
            f"default{load_text}).")


# ----------------------------------------------------------------------------------------------------------------
# sections

"""A run as the live panel shows it: status, progress and ETA, curves, evaluation, the worker's last words."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import runs, storage


@dataclass
class LiveView:
    status: dict
    config: dict
    step_rows: list[dict]
    epoch_rows: list[dict]
    step: int | None
    total_steps: int | None
    eta_s: float | None
    evaluation: dict | None

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        if self.step and self.total_steps:
            return min(self.step / self.total_steps, 1.0)
        return 0.0


def _eta_s(step_rows: list[dict]) -> float | None:
    """Seconds left at the step rate between the first and the last step point (both carry wall times)."""
    if len(step_rows) < 2:
        return None
    first, last = step_rows[0], step_rows[-1]
    step, total = last.get("step"), last.get("total_steps")
    times = (first.get("time"), last.get("time"))
    if not (isinstance(step, int) and isinstance(total, int) and all(isinstance(t, (int, float)) for t in times)
            and step > first.get("step", 0)):
        return None
    rate = (step - first["step"]) / max(last["time"] - first["time"], 1e-6)
    return (total - step) / rate if rate > 0 else None


def live_view(run_dir: Path) -> LiveView:
    """Everything the live panel draws, read from the store (cheap: a few small files)."""
    run_dir = Path(run_dir)
    rows = runs.read_metrics(run_dir)
    step_rows = [r for r in rows if r.get("kind") == "step"]
    epoch_rows = [r for r in rows if r.get("kind") == "epoch"]
    last = step_rows[-1] if step_rows else {}
    config = storage.read_json(run_dir / runs.CONFIG_FILE, {})
    evaluation = storage.read_json(runs.eval_path(run_dir))
    return LiveView(status=runs.read_status(run_dir), config=config if isinstance(config, dict) else {},
                    step_rows=step_rows, epoch_rows=epoch_rows, step=last.get("step"),
                    total_steps=last.get("total_steps"), eta_s=_eta_s(step_rows),
                    evaluation=evaluation if isinstance(evaluation, dict) else None)


def worker_log_tail(run_dir: Path, lines: int = 15) -> str:
    try:
        text = runs.log_path(run_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_evaluation(root: Path, name: str) -> dict | None:
    value = storage.read_json(runs.eval_path(runs.resolve_run_dir(root, name)))
    return value if isinstance(value, dict) else None


def run_epoch_rows(root: Path, name: str) -> list[dict]:
    return [r for r in runs.read_metrics(runs.resolve_run_dir(root, name)) if r.get("kind") == "epoch"]

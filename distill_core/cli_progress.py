"""The CLI's progress display: engine events -> tqdm bars with an ETA on stderr (stdout carries only the JSON
result)."""
from __future__ import annotations

import sys
from typing import Any, ClassVar


class ProgressPrinter:
    """Turns engine events into tqdm bars with an ETA (on stderr, so stdout stays machine-readable): one line per
    phase (progress.PHASES: preparing, tokenising, teacher logits, training, validation, saving, test evaluation)
    and a bar for each phase that counts."""

    COUNTED: ClassVar[dict[str, str]] = {"teacher_progress": "teacher logits", "eval_progress": "test evaluation",
                                         "valid_progress": "validation", "predict_progress": "predict"}

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: Any = None  # the open tqdm bar
        self.bar_name: str | None = None

    def _bar(self, name: str, total: int | None, unit: str):
        from tqdm.auto import tqdm

        if self.bar_name != name:
            self.close()
            self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True,
                            disable=self.quiet)
            self.bar_name = name
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.bar_name = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "start":
            self._bar("training", event["total_steps"], "step")
        elif kind == "step":
            bar = self._bar("training", event["total_steps"], "step")
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}", samples_s=f"{event['samples_per_s']:.1f}")
        elif kind == "epoch":
            if self.bar is not None and not self.quiet:
                # tqdm.write prints to stdout unless told otherwise; stdout carries only the JSON result.
                self.bar.write(f"epoch {event['epoch']}: training_loss {event['training_loss']:.4f} "
                               f"training_accuracy {event['training_accuracy']:.4f} valid_loss "
                               f"{event['valid_loss']:.4f} valid_accuracy {event['valid_accuracy']:.4f} "
                               f"({event['seconds']:.0f} s)", file=sys.stderr)
        elif kind in self.COUNTED:
            bar = self._bar(self.COUNTED[kind], event["total"], "ex")
            bar.update(event["done"] - bar.n)
        elif kind == "bench":
            bar = self._bar("benchmark", event.get("total_cells", 0) or None, "cell")
            bar.update(1)
        elif kind in ("phase", "note", "early_stop") and not self.quiet:
            if kind == "phase" and self.bar_name is not None:
                self.close()
            message = event.get("phase") or event.get("message") or f"early stop after epoch {event['epoch']}"
            if kind == "phase" and event.get("epoch") and event.get("epochs"):
                message += f" · epoch {event['epoch']} / {event['epochs']}"
            print(f"[kd] {message}", file=sys.stderr)

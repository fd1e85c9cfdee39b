"""The showcase: a finished teacher and two distilled students, built from what ships with KD Studio.

``python -m distill_core showcase`` (and the dashboard's "Build the showcase" button, which starts that command as
a background process) fine-tunes the bundled MiniLM (``bundled:minilm-l6``) on the embedded AG News sample
(``ag_news_sample``), distils it into students with a half and a third of its layers, evaluates all three on the
sample's 1,000 test rows (``eval.json``, as every run) and benchmarks them at batch 1 and 32, fp32 and int8
(``bench.json``), so Compare, Benchmark and Playground have a real trade-off to show on a first visit. Seeded and
deterministic; the students reuse the teacher-logit cache. Nothing is downloaded.

The runs are named ``showcase-*`` and marked ``"showcase": true`` in their status and provenance: read-only
(``runs.delete_run`` refuses them). Locally they go into the runs folder; in hosted mode into the store's gallery
(``hosting.gallery_root``), where every visitor sees them. A second build with a complete showcase does nothing.
Progress leaves as events (``on_event``) and, for the dashboard, in ``.showcase.json`` beside the runs.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hosting, jobs, processes, runs, storage
from .config import DataConfig, TrainConfig
from .errors import UserError

EventHandler = Callable[[dict[str, Any]], None]

DATA = "ag_news_sample"
BASE = "bundled:minilm-l6"
TEACHER = "showcase-teacher"
STUDENTS = (("showcase-student-l3", "truncate:3"),   # 3 of 6 layers: half the teacher's encoder compute
            ("showcase-student-l2", "truncate:2"))   # 2 of 6 layers: a third
RUN_NAMES = (TEACHER, *(name for name, _ in STUDENTS))
MARK = "showcase"                  # status.json and provenance key of a showcase run
PROGRESS_FILE = ".showcase.json"   # beside the runs: the build's state for the dashboard
LOG_FILE = ".showcase.log"         # the background build's stdout and stderr
LOCK_FILE = ".showcase.lock"       # one build at a time per store
RECIPE_ENV = "KD_SHOWCASE_RECIPE"  # the recipe the dashboard's button builds (tests: smoke)
STAGE_WEIGHTS = (0.45, 0.25, 0.18, 0.12)  # share of the build's time per stage (measured), for the progress bar


@dataclass(frozen=True)
class Recipe:
    name: str
    teacher_epochs: int
    student_epochs: int
    teacher_lr: float
    student_lr: float
    batch_size: int = 32
    max_length: int = 128
    valid_fraction: float = 0.1        # 400 of the 4,000 train rows pick the best epoch
    train_samples: int | None = None
    eval_samples: int | None = None    # None: all 1,000 test rows
    max_steps: int | None = None
    # auto: bf16 autocast where the CPU has AMX / AVX512-BF16 (measured faster there at equal accuracy), fp32 on
    # CPUs that would only emulate bf16 (measured slower)
    mixed_precision: str = "auto"
    bench_seq_len: int = 64            # AG News rows average ~54 tokens
    bench_warmup: int = 3
    bench_repeats: int = 10


RECIPES = {
    # Measured (docs): 3 epochs each gave teacher 0.914; 2 each keep the build near 10 minutes on 2 shared cores.
    "full": Recipe("full", teacher_epochs=2, student_epochs=2, teacher_lr=1e-4, student_lr=1e-4),
    # The same code path at toy size, for tests and the Dockerfile-command test: a few steps, tiny benchmark.
    "smoke": Recipe("smoke", teacher_epochs=1, student_epochs=1, teacher_lr=1e-4, student_lr=1e-4,
                    train_samples=48, eval_samples=24, max_steps=2, bench_seq_len=16, bench_warmup=1,
                    bench_repeats=2),
}


def get_recipe(name: str | None = None) -> Recipe:
    name = name or os.environ.get(RECIPE_ENV) or "full"
    if name not in RECIPES:
        raise UserError(f"unknown showcase recipe {name!r}: use one of {', '.join(RECIPES)}")
    return RECIPES[name]


def showcase_root(store: Path | None = None) -> Path:
    """Where the showcase lives: the runs folder, or in hosted mode the store's gallery."""
    base = Path(store) if store is not None else runs.runs_root()
    if hosting.is_hosted():
        return hosting.gallery_root(hosting.store_base(base))
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def is_showcase_run(run_dir: Path) -> bool:
    return bool(runs.read_status(run_dir).get(MARK))


def _run_complete(run_dir: Path) -> bool:
    return (runs.read_status(run_dir).get("state") == "done" and runs.eval_path(run_dir).is_file()
            and (run_dir / runs.BENCH_FILE).is_file())


def is_complete(root: Path) -> bool:
    """Whether ``root`` holds the whole showcase: every run done, evaluated and benchmarked."""
    return all(_run_complete(Path(root) / name) for name in RUN_NAMES)


def configs(root: Path, recipe: Recipe) -> list[tuple[str, TrainConfig, str]]:
    """(run name, config, what it does) of each training stage, in order."""
    data = DataConfig(source=DATA, valid_fraction=recipe.valid_fraction, train_samples=recipe.train_samples,
                      eval_samples=recipe.eval_samples, max_length=recipe.max_length)
    common: dict[str, Any] = {"data": data, "batch_size": recipe.batch_size, "optimizer": "adamw", "patience": None,
                              "seed": 42, "log_every_steps": 10, "max_steps": recipe.max_steps,
                              "mixed_precision": recipe.mixed_precision}
    teacher = TrainConfig(mode="finetune", student=BASE, epochs=recipe.teacher_epochs, lr=recipe.teacher_lr,
                          dropout=None, attention_dropout=None, extra={"stage": "teacher", MARK: True}, **common)
    stages = [(TEACHER, teacher, f"fine-tuning the teacher ({BASE})")]
    for name, spec in STUDENTS:
        student = TrainConfig(mode="distill", student=spec, teacher=str(Path(root) / TEACHER),
                              epochs=recipe.student_epochs, lr=recipe.student_lr, dropout=0.1, temperature=2.0,
                              alpha=0.5, extra={MARK: True}, **common)
        stages.append((name, student, f"distilling the student {spec}"))
    return stages


def model_specs(root: Path) -> list[str]:
    """The showcase's model specs (teacher first) as the pickers list them, from ``root`` or, in hosted mode,
    the gallery; empty when no complete showcase is there."""
    folders = [Path(root)]
    if hosting.is_hosted():
        folders.append(hosting.gallery_root(hosting.store_base(root)))
    for folder in folders:
        if is_complete(folder):
            return [str(folder / name) for name in RUN_NAMES]
    return []


# ---------------------------------------------------------------- progress: events and the dashboard's file
class Progress:
    """Relays engine events and keeps ``.showcase.json`` current (throttled) for the dashboard."""

    def __init__(self, root: Path, recipe: str, on_event: EventHandler):
        self.path, self.on_event = Path(root) / PROGRESS_FILE, on_event
        self.state: dict[str, Any] = {"state": "running", "recipe": recipe, "pid": os.getpid(),
                                      "pid_start": _pid_start(os.getpid()), "started_at": time.time(),
                                      "stage": 0, "stages": len(RUN_NAMES) + 1, "label": "starting"}
        self._written = 0.0
        self.write(force=True)

    def write(self, force: bool = False, **fields: Any) -> None:
        self.state.update(fields, updated_at=time.time())
        if force or time.time() - self._written > 0.5:
            storage.write_json_atomic(self.path, self.state)
            self._written = time.time()

    def stage(self, index: int, label: str) -> None:
        self.on_event({"kind": "phase", "phase": f"showcase {index}/{self.state['stages']}: {label}"})
        self.write(force=True, stage=index, label=label, step=0, total_steps=None, phase=label)

    def __call__(self, event: dict[str, Any]) -> None:
        self.on_event(event)
        kind = event.get("kind")
        if kind in ("start", "step"):
            self.write(step=event.get("step", 0), total_steps=event.get("total_steps"))
        elif kind == "phase":
            self.write(phase=event.get("phase"))
        elif kind == "bench":
            self.write(step=self.state.get("step", 0) + 1, total_steps=event.get("total_cells"))


def _pid_start(pid: int) -> int | None:
    return processes.process_start_time(pid)


# ---------------------------------------------------------------- the build
def _train_stage(root: Path, name: str, config: TrainConfig, progress: Progress) -> None:
    from . import preflight, train

    run_dir = root / name
    if run_dir.is_dir() and runs.read_status(run_dir).get("state") == "done" and runs.eval_path(run_dir).is_file():
        return  # finished by an earlier, interrupted build
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a showcase run an interrupted build left unfinished: start it again
    preflight.check_run(config)
    prepared = train.prepare(config, on_event=progress)
    record = train.run_record(prepared)
    record["provenance"][MARK] = True
    run_dir = runs.create_run(root, name, record, **{MARK: True})
    result = train.execute(prepared, run_dir, on_event=progress)  # in the config's precision
    if result["state"] != "done":
        raise UserError(f"showcase run {name!r} ended {result['state']}: see {run_dir}")
    # A finished, read-only run is never resumed: its optimizer state (3x the model) would only fill the image.
    shutil.rmtree(run_dir / runs.CHECKPOINT_DIR, ignore_errors=True)


def _bench_stage(root: Path, recipe: Recipe, progress: Progress) -> None:
    from .app.reports import save_bench_rows
    from .inference import benchmark_specs

    run_dirs = {str(root / name): root / name for name in RUN_NAMES}
    rows = benchmark_specs(list(run_dirs), batch_sizes=(1, 32), seq_lens=(recipe.bench_seq_len,),
                           precisions=("fp32", "int8"), warmup=recipe.bench_warmup, repeats=recipe.bench_repeats,
                           on_event=progress)
    save_bench_rows(rows, run_dirs)


def build(store: Path | None = None, recipe: str | None = None, *,
          on_event: EventHandler = lambda _: None) -> dict[str, Any]:
    """Build the showcase into the store (see the module docstring); a complete one is left as it is."""
    chosen = get_recipe(recipe)
    root = showcase_root(store)
    names = [str(root / name) for name in RUN_NAMES]
    if is_complete(root):
        on_event({"kind": "note", "message": f"the showcase is already built in {root}: nothing to do"})
        return {"built": False, "root": str(root), "runs": names, "message": "already built"}
    with storage.file_lock(root / LOCK_FILE):  # a second build waits here, then finds the showcase complete
        if is_complete(root):
            return {"built": False, "root": str(root), "runs": names, "message": "already built"}
        started = time.time()
        progress = Progress(root, chosen.name, on_event)
        try:
            for index, (name, config, label) in enumerate(configs(root, chosen), start=1):
                progress.stage(index, label)
                _train_stage(root, name, config, progress)
            progress.stage(len(RUN_NAMES) + 1, "benchmarking the three models (batch 1 and 32, fp32 and int8)")
            _bench_stage(root, chosen, progress)
        except BaseException as exc:
            progress.write(force=True, state="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        seconds = time.time() - started
        progress.write(force=True, state="done", seconds=seconds, label="done")
    return {"built": True, "root": str(root), "runs": names, "recipe": chosen.name, "seconds": round(seconds, 1),
            "accuracy": {name: _accuracy(root / name) for name in RUN_NAMES}}


def _accuracy(run_dir: Path) -> float | None:
    evaluation = storage.read_json(runs.eval_path(run_dir), {})
    student = evaluation.get("student") if isinstance(evaluation, dict) else None
    return student.get("accuracy") if isinstance(student, dict) else None


# ---------------------------------------------------------------- the dashboard's background build
def progress_view(root: Path) -> dict[str, Any]:
    """The build's state for a page: state (none|running|done|failed), stage i/N, label, fraction, error."""
    root = Path(root)
    if is_complete(root):
        return {"state": "done", "fraction": 1.0, "stage": len(STAGE_WEIGHTS), "stages": len(STAGE_WEIGHTS)}
    saved = storage.read_json(root / PROGRESS_FILE, None)
    if not isinstance(saved, dict):
        return {"state": "none", "fraction": 0.0}
    view = dict(saved)
    if view.get("state") == "running" and not processes.pid_alive(view.get("pid"), view.get("pid_start")):
        view.update(state="failed", error=view.get("error") or "the build process ended unexpectedly: see "
                                                                f"{root / LOG_FILE}")
    stage = int(view.get("stage") or 0)
    done_share = sum(STAGE_WEIGHTS[:max(stage - 1, 0)])
    step, total = view.get("step") or 0, view.get("total_steps") or 0
    within = min(step / total, 1.0) if total else 0.0
    current = STAGE_WEIGHTS[stage - 1] if 0 < stage <= len(STAGE_WEIGHTS) else 0.0
    view["fraction"] = min(done_share + current * within, 1.0)
    return view


def start_background(store: Path | None = None, recipe: str | None = None) -> int:
    """Start ``python -m distill_core showcase`` as its own process (it survives the page); returns its pid."""
    chosen = get_recipe(recipe)
    root = showcase_root(store)
    if progress_view(root).get("state") in ("running", "done"):
        raise UserError("the showcase is already being built or is built: nothing to start")
    argv = [sys.executable, "-m", "distill_core", "showcase", "--runs-dir", str(root), "--recipe", chosen.name]
    pid = jobs.spawn_detached(argv, root / LOG_FILE)
    storage.write_json_atomic(root / PROGRESS_FILE, {"state": "running", "recipe": chosen.name, "pid": pid,
                                                     "pid_start": processes.process_start_time(pid), "stage": 0,
                                                     "stages": len(RUN_NAMES) + 1, "label": "starting",
                                                     "started_at": time.time()})
    return pid


def reap() -> None:
    """Collect finished build processes this server started (so they do not linger as zombies)."""
    jobs.reap_children()

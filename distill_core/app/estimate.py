"""How long a run will take, told before Start and used for the live ETA of phases not measured yet.

Calibrated on this machine, in this order (the estimate always says which was used):
1. past runs in the store: the per-phase cost of finished runs (their `phase_end` rows: seconds per example of
   tokenising, teacher logits, training, validation and test evaluation; seconds per save; the fixed start-up of
   "preparing"), from runs of the same shape (student and teacher layers x hidden) when there are some, else
   from runs of other shapes scaled by layers x hidden^2;
2. a probe: a few seconds timing a forward + backward of the student and a forward of each model on a synthetic
   batch of the config's batch size (architecture from config.json, random weights: no download, never a Hub
   model that is not cached), cached per shape, batch and length;
3. a reference throughput measured once on the development VM, scaled by layers x hidden^2.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import progress, runs, specs, storage
from ..config import TrainConfig
from ..errors import UserError
from ..objective import needs_teacher_forward
from . import probe

# Training throughput measured for all-MiniLM-L6-v2 (6 layers x 384 hidden) at batch 32 on AG News on the
# 2-core development VM: ~26 samples/s. Cost per sample scales roughly with layers * hidden^2 (the dense
# layers dominate at these lengths); inference is ~3x cheaper than a training step (no backward pass).
REF_SAMPLES_PER_S, REF_LAYERS, REF_HIDDEN = 26.0, 6, 384
MAX_SAMPLES_PER_S = 600.0          # tiny models are bound by per-batch overheads, not by FLOPs
# Start-up before the first phase when no past run measured it: a dashboard worker's "preparing" (spawn, imports,
# data and models loaded) took 6-7 s here, a foreground CLI distillation ~9 s outside its phases (BENCHMARKS.md 11).
STARTUP_S = 8.0
SAVE_S = 1.0                       # writing a small model and its checkpoint
TOKENISE_S_PER_ROW = 2e-4
LONG_RUN_S = 3 * 3600              # an estimate over this gets a warning before Start
UNKNOWN_SHAPE = (12, 768)          # assume BERT-base, the pessimistic common case


def train_samples_per_s(shape: tuple[int, int] | None) -> float:
    """Reference training throughput on this class of CPU for a model of (layers, hidden)."""
    layers, hidden = shape or UNKNOWN_SHAPE
    rate = REF_SAMPLES_PER_S * (REF_LAYERS * REF_HIDDEN ** 2) / max(layers * hidden ** 2, 1)
    return min(rate, MAX_SAMPLES_PER_S)


def split_sizes(config: TrainConfig, train_rows: int | None, test_rows: int | None) -> tuple[int, int, int] | None:
    """(train, validation, test) rows a config will use, from the source's row counts."""
    if train_rows is None:
        return None
    data = config.data
    if test_rows is None:  # a single file: the test split is carved first
        test_rows = round(train_rows * data.test_fraction)
        train_rows -= test_rows
    valid = round(train_rows * data.valid_fraction)
    train = train_rows - valid
    if data.train_samples:
        train = min(train, data.train_samples)
    if data.eval_samples:
        valid, test_rows = min(valid, data.eval_samples), min(test_rows, data.eval_samples)
    return train, valid, test_rows


# ----------------------------------------------------------------------------------------------------------------
# unit costs: what a plan multiplies by the run's counts

@dataclass(frozen=True)
class Costs:
    """Seconds per unit of each phase on this machine for one run shape."""
    preparing_s: float
    tokenise_s_per_row: float
    teacher_s_per_example: float
    train_s_per_example: float
    infer_s_per_example: float     # validation (student forward, in the training precision)
    saving_s: float                # per epoch
    test_s_per_example: float      # test evaluation: the saved student in fp32 (+ the teacher's test pass)


def _flops(shape: tuple[int, int] | None) -> float:
    layers, hidden = shape or UNKNOWN_SHAPE
    return float(max(layers * hidden ** 2, 1))


def reference_costs(config: TrainConfig) -> Costs:
    """Costs from the reference throughput, scaled to the config's shapes (an unknown teacher counts as BERT-base)."""
    student, teacher = shapes_of(config)
    train_rate = train_samples_per_s(student)
    teacher_s = 1 / (3 * train_samples_per_s(teacher))
    test_teacher_s = teacher_s if config.mode == "distill" and config.teacher else 0.0
    return Costs(preparing_s=STARTUP_S, tokenise_s_per_row=TOKENISE_S_PER_ROW, teacher_s_per_example=teacher_s,
                 train_s_per_example=1 / train_rate, infer_s_per_example=1 / (3 * train_rate), saving_s=SAVE_S,
                 test_s_per_example=1 / (3 * train_rate) + test_teacher_s)


def spec_shape(spec: str | None, teacher: str | None = None) -> tuple[int, int] | None:
    """specs.model_shape, also for a run folder whose model is not trained yet (a pipeline's teacher stage while
    it runs): the shape of the model that run trains."""
    try:
        parsed = specs.parse_spec(spec) if spec else None
    except UserError:
        return None
    if parsed is not None and parsed.kind == "truncate":
        base = spec_shape(teacher)
        return (parsed.layers, base[1]) if base else None
    shape = specs.model_shape(spec, teacher)
    if shape is None and spec and (Path(spec) / runs.CONFIG_FILE).is_file():
        record = storage.read_json(Path(spec) / runs.CONFIG_FILE, {})
        if isinstance(record, dict) and isinstance(record.get("student"), str):
            return spec_shape(record["student"], record.get("teacher"))
    return shape


def shapes_of(config: TrainConfig) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(student, teacher) shapes of a config; a fine-tune has no teacher to run (a truncate:N base reads one)."""
    student = spec_shape(config.student, config.teacher)
    teacher = spec_shape(config.teacher) if config.mode == "distill" and config.teacher else None
    return student, teacher


# ----------------------------------------------------------------------------------------------------------------
# 1. past runs

@dataclass(frozen=True)
class PastRun:
    """The measured unit costs of one finished run (None where it did not measure that phase)."""
    name: str
    mode: str
    student: tuple[int, int] | None
    teacher: tuple[int, int] | None
    per_unit: dict[str, float]
    precision: str | None = None   # what its student trained in ("no" = fp32, "bf16", "fp16"); None: not recorded


def _shape(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if isinstance(value, list) and len(value) == 2 \
        and all(isinstance(v, int) for v in value) else None


def _start_gap(run_dir: Path, status: dict) -> float:
    """Seconds between Start (or the end of the stage it waited on) and the worker saying it runs."""
    started, begun = status.get("started_at"), status.get("created_at")
    after = status.get("depends_on")
    if isinstance(after, str):
        begun = runs.read_status(run_dir.parent / after).get("finished_at") if (run_dir.parent / after).is_dir() \
            else None
    if isinstance(started, (int, float)) and isinstance(begun, (int, float)):
        return max(started - begun, 0.0)
    return 0.0


def past_run(run_dir: Path) -> PastRun | None:
    """A finished run's unit costs from its phase_end rows; None for a run that did not record them."""
    status = runs.read_status(run_dir)
    config = storage.read_json(run_dir / runs.CONFIG_FILE, {})
    if status.get("state") != "done" or not isinstance(config, dict):
        return None
    totals: dict[str, list[float]] = {}
    for row in runs.read_metrics(run_dir):
        if row.get("kind") == "phase_end" and isinstance(row.get("seconds"), (int, float)):
            seconds_count = totals.setdefault(str(row.get("phase")), [0.0, 0.0, 0.0])
            seconds_count[0] += row["seconds"] / contention(row.get("load_1m"))  # as on an uncrowded machine
            seconds_count[1] += row.get("count") or 0
            seconds_count[2] += 1
    if "training" not in totals:
        return None
    per_unit: dict[str, float] = {}
    if "preparing" in totals:  # a foreground CLI run loads its models before its folder exists: not measured
        per_unit["preparing_s"] = totals["preparing"][0] + _start_gap(run_dir, status)
    # A run with layer terms ran its teacher in every training step: its training time is not a student's alone.
    layer_terms = config.get("mode") == "distill" and any(
        isinstance(config.get(weight), (int, float)) and config[weight] > 0
        for weight in ("hidden_weight", "attention_weight", "cosine_weight"))
    for phase, key in (("tokenising", "tokenise_s_per_row"), ("teacher_logits", "teacher_s_per_example"),
                       ("training", "train_s_per_example"), ("validation", "infer_s_per_example"),
                       ("test_evaluation", "test_s_per_example")):
        seconds, count, _ = totals.get(phase, (0.0, 0.0, 0.0))
        if count and not (phase == "training" and layer_terms):
            per_unit[key] = seconds / count
    if "saving" in totals:
        per_unit["saving_s"] = totals["saving"][0] / totals["saving"][2]
    recorded = status.get("shape")
    shape: dict = recorded if isinstance(recorded, dict) else {}
    provenance = config.get("provenance")
    precision = provenance.get("mixed_precision") if isinstance(provenance, dict) else None
    return PastRun(run_dir.name, str(config.get("mode")), _shape(shape.get("student")), _shape(shape.get("teacher")),
                   per_unit, precision if isinstance(precision, str) else None)


def contention(load: Any, cores: int | None = None) -> float:
    """How many times slower CPU work ran than on an uncrowded machine, from the 1-minute load average: runnable
    threads per usable core, at least 1 (a run's own threads fill the cores without slowing it). Unknown: 1."""
    if not isinstance(load, (int, float)) or load <= 0:
        return 1.0
    return max(1.0, load / (cores or progress.usable_cores()))


def contention_now() -> float:
    """The crowding a run meets now, by the same rule as a past run's phases (so an uncrowded machine and a
    machine that has just finished a run both count 1; the 1-minute average lags a run's own threads)."""
    from ..progress import load_1m

    return contention(load_1m())


def scaled(costs: Costs, factor: float) -> Costs:
    return Costs(**{name: value * factor for name, value in vars(costs).items()})


# which model's shape decides the cost of each unit
_DECIDED_BY = {"preparing_s": "both", "tokenise_s_per_row": None, "teacher_s_per_example": "teacher",
               "train_s_per_example": "student", "infer_s_per_example": "student", "saving_s": "student",
               "test_s_per_example": "both"}  # taken only from runs of the same pair (costs_from_past)
# the units that run in the training precision (the student's steps and validation: bf16 autocast ran them
# ~1.5-2x faster than fp32 on an AVX512-BF16 CPU; the teacher's pass over the training rows, bf16 where the CPU has
# native bf16: ~2x); the test scoring is fp32 in every run
_BY_PRECISION = ("train_s_per_example", "infer_s_per_example", "teacher_s_per_example")


def _same_precision(key: str, rows: list[PastRun], precision: str | None) -> list[PastRun]:
    """The runs that trained in ``precision`` when some did and ``key`` depends on it; else all of them."""
    if key not in _BY_PRECISION or precision is None:
        return rows
    return [p for p in rows if p.precision == precision] or rows


def _calibrated(key: str, past: list[PastRun], mode: str, student, teacher, precision: str | None = None
                ) -> float | None:
    """The median cost of ``key`` over runs of the same precision (where it matters) and shape, else over those
    runs scaled by layers x hidden^2."""
    by = _DECIDED_BY[key]
    rows = _same_precision(key, [p for p in past if key in p.per_unit], precision)
    if not rows:
        return None
    if by is None:
        return statistics.median(p.per_unit[key] for p in rows)
    if by == "both":
        same = [p.per_unit[key] for p in rows if (p.mode, p.student, p.teacher) == (mode, student, teacher)]
        return statistics.median(same or [p.per_unit[key] for p in rows])
    target = student if by == "student" else teacher
    same = [p.per_unit[key] for p in rows if getattr(p, by) == target]
    if same:
        return statistics.median(same)
    return statistics.median(p.per_unit[key] * _flops(target) / _flops(getattr(p, by)) for p in rows)


def past_runs(root: Path | None, exclude: Iterable[str] = ()) -> list[PastRun]:
    if root is None or not Path(root).is_dir():
        return []
    skip = set(exclude)
    found = []
    for run_dir in runs.iter_run_dirs(Path(root)):
        if run_dir.name in skip:
            continue
        try:
            run = past_run(run_dir)
        except (OSError, ValueError, TypeError):
            continue
        if run is not None:
            found.append(run)
    return found


@dataclass(frozen=True)
class Calibration:
    """Costs from past runs, and what they rest on (said next to the estimate)."""
    costs: Costs
    runs_used: int
    same_shape: bool
    other_precision: str | None   # the precision the training cost was measured in, when not this run's


def run_precision(config: TrainConfig) -> str:
    """What ``config`` will train in on this machine ("no" = fp32), by the rule the run itself applies."""
    from .. import hardware

    return hardware.training_precision(config.mixed_precision).resolved


def costs_from_past(config: TrainConfig, past: list[PastRun]) -> Calibration | None:
    """Costs from past runs; None when none measured training."""
    student, teacher = shapes_of(config)
    precision = run_precision(config)
    fallback = reference_costs(config)
    values = {key: _calibrated(key, past, config.mode, student, teacher, precision) for key in _DECIDED_BY}
    if values["train_s_per_example"] is None:
        return None
    same = [p for p in past if p.student == student and (config.mode != "distill" or p.teacher == teacher)]
    costs = Costs(**{key: value if value is not None else getattr(fallback, key) for key, value in values.items()})
    exact = [p for p in past if (p.mode, p.student, p.teacher) == (config.mode, student, teacher)]
    if not any("test_s_per_example" in p.per_unit for p in exact):
        # The test scoring of other pairs (a fine-tune has no teacher pass in it) does not scale to this one:
        # validation's cost, plus the teacher's pass for a distillation (both may be bf16: a lower bound).
        teacher_s = costs.teacher_s_per_example if config.mode == "distill" and config.teacher else 0.0
        costs = replace(costs, test_s_per_example=costs.infer_s_per_example + teacher_s)
    trained = {p.precision for p in past if "train_s_per_example" in p.per_unit}
    other = None if precision in trained else ", ".join(sorted(_precision_name(t) for t in trained))
    return Calibration(costs, len(same) or len(past), bool(same), other)


def _precision_name(precision: str | None) -> str:
    return {"no": "fp32", None: "an unrecorded precision"}.get(precision, str(precision))


# ----------------------------------------------------------------------------------------------------------------
# 2. the probe (distill_core.app.probe times the models)

def probe_costs(config: TrainConfig, *, cached_only: bool = False) -> tuple[Costs, float] | None:
    """(costs, seconds the probe took) of this config's models on this machine; None when it cannot probe
    (a model not available locally, or any failure: the estimate then falls back, it never fails). With
    ``cached_only`` nothing new is timed (the page: its probes run in the background, see app.probe)."""
    jobs = probe.jobs_for(config)
    if jobs is None:
        return None
    try:
        timings = [probe.timed(job, cached_only=cached_only) if job else probe.Timing(0.0, 0.0) for job in jobs]
    except Exception:  # a probe is a nicety: fall back to the reference, never fail
        return None
    if any(timing is None for timing in timings):
        return None
    train, infer, test, teacher, teacher_test = (t for t in timings if t is not None)
    # the optimiser's update is paid once per batch: spread over the run's batch size, not the probe's
    train_s = train.per_example + train.per_step / max(config.batch_size, 1)
    costs = Costs(preparing_s=STARTUP_S, tokenise_s_per_row=TOKENISE_S_PER_ROW,
                  teacher_s_per_example=teacher.per_example, train_s_per_example=train_s,
                  infer_s_per_example=infer.per_example, saving_s=SAVE_S,
                  test_s_per_example=test.per_example + teacher_test.per_example)
    # a job met twice (an fp32 run's test scoring is its validation's) was timed once
    probe_s = sum({job.key(): t.probe_s for job, t in zip(jobs, timings, strict=True) if job and t}.values())
    return costs, probe_s


def probe_in_background(configs: list[TrainConfig]) -> bool:
    """Start timing these configs' models in a background process (see app.probe); True while it runs."""
    wanted = [job for config in configs for job in (probe.jobs_for(config) or ()) if job is not None]
    return probe.start_background(wanted)


# ----------------------------------------------------------------------------------------------------------------
# plans and estimates

def plan(config: TrainConfig, sizes: tuple[int, int, int], costs: Costs, *, teacher_logits: bool = True
         ) -> progress.Plan:
    """Per-phase seconds of a run of ``config`` over (train, validation, test) rows at ``costs``."""
    train, valid, test = sizes
    examples = train * config.epochs
    if config.max_steps:
        examples = min(examples, config.max_steps * config.batch_size)
    epochs = config.epochs if not config.max_steps else max(min(config.epochs, math.ceil(examples / max(train, 1))),
                                                            1)
    distilling = config.mode == "distill" and bool(config.teacher)
    # Intermediate-layer terms run the teacher on every training batch as well (objective.needs_teacher_forward).
    teacher_per_step = costs.teacher_s_per_example if distilling and needs_teacher_forward(config) else 0.0
    seconds = {"preparing": costs.preparing_s, "tokenising": (train + valid + test) * costs.tokenise_s_per_row,
               "teacher_logits": train * costs.teacher_s_per_example if distilling and teacher_logits else 0.0,
               "training": examples * (costs.train_s_per_example + teacher_per_step),
               "validation": valid * epochs * costs.infer_s_per_example,
               "saving": epochs * costs.saving_s,
               "test_evaluation": test * costs.test_s_per_example}
    return progress.Plan(seconds, epochs)


@dataclass(frozen=True)
class Estimate:
    """The time a run (or a pipeline: its stages summed) will take, and where the numbers came from."""
    seconds: float
    phases: dict[str, float]
    source: str            # "past runs" | "probe" | "reference"
    explanation: str       # said next to the number
    stages: tuple[float, ...] = ()

    @property
    def long(self) -> bool:
        return self.seconds > LONG_RUN_S

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "phases": {k: round(v, 1) for k, v in self.phases.items()},
                "source": self.source, "explanation": self.explanation,
                "stages": [round(s, 1) for s in self.stages]}


def costs_for(config: TrainConfig, root: Path | None, *, allow_probe: bool, exclude: Iterable[str] = (),
              past: list[PastRun] | None = None) -> tuple[Costs, str, str]:
    """(costs, source, explanation) by the rule in the module docstring."""
    past = past_runs(root, exclude) if past is None else past
    found = costs_from_past(config, past)
    if found is not None:
        used = found.runs_used
        runs_word = "run" if used == 1 else "runs"
        how = f"from {used} past {runs_word} of this shape" if found.same_shape else \
            f"from {used} past {runs_word} of other shapes, scaled by layers × hidden²"
        if found.other_precision:
            how += (f" (trained in {found.other_precision}; this run trains in "
                    f"{_precision_name(run_precision(config))}, so its training time may differ)")
        crowding = contention_now()
        if crowding > 1.1:
            how += f", × {crowding:.1f} for the load other work puts on the CPUs now"
        return scaled(found.costs, crowding), "past runs", f"{how} on this machine"
    probed = probe_costs(config, cached_only=not allow_probe)
    if probed is not None:
        seconds = max(round(probed[1]), 1)
        timed_in = " (the student in bf16, as this run trains)" if probe.student_precision(config) == "bf16" else ""
        return probed[0], "probe", f"from a {seconds}-second probe of these models on this machine{timed_in}"
    return reference_costs(config), "reference", \
        "from a reference throughput: no past runs, probe unavailable"


def estimate_job(distill: TrainConfig, teacher: TrainConfig | None, sizes: tuple[int, int, int],
                 root: Path | None, *, allow_probe: bool = True, exclude: Iterable[str] = ()) -> Estimate:
    """The estimate of a run, or of a pipeline (teacher fine-tune, then distillation) with its stages summed."""
    past = past_runs(root, exclude)
    stages = [teacher, distill] if teacher is not None else [distill]
    phases: dict[str, float] = {}
    totals, sources = [], []
    for config in stages:
        costs, source, explanation = costs_for(config, root, allow_probe=allow_probe, past=past)
        stage_plan = plan(config, sizes, costs)
        totals.append(stage_plan.total)
        sources.append((source, explanation))
        for phase, seconds in stage_plan.seconds.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    # the weakest source of the stages is the one to tell
    order = ["reference", "probe", "past runs"]
    source, explanation = min(sources, key=lambda s: order.index(s[0]))
    if needs_teacher_forward(distill):
        explanation += "; the teacher runs on every batch (intermediate layers)"
    return Estimate(sum(totals), phases, source, explanation, tuple(totals))


def run_plan(config: TrainConfig, sizes: tuple[int, int, int], root: Path, exclude: Iterable[str]) -> progress.Plan:
    """The plan the live ETA uses for phases it has not measured yet (never probes: it runs in the page)."""
    costs, _, _ = costs_for(config, root, allow_probe=False, exclude=exclude)
    return plan(config, sizes, costs)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"

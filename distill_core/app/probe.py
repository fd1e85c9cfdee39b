"""The estimate's probe: a few seconds timing the chosen models on this machine, cached per architecture.

A forward + backward of the student and a forward of each model, on a synthetic batch, with random weights built
from the model's config.json (no download; a Hub model counts only when it is in the local cache). Results are
kept per (architecture, batch, length, threads) in ``cache_root()/estimate_probe.json``.

The Train page never probes in its own process (a probe under load took up to a minute, and the Streamlit server
serves every visitor): it starts :func:`start_background`, shows the estimate from what is known meanwhile, and
picks the probe's result up when it lands. The CLI's ``estimate`` probes in its own process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .. import processes, specs, storage, teacher_cache
from ..progress import usable_cores

if TYPE_CHECKING:
    from ..config import TrainConfig

PROBE_FILE = "estimate_probe.json"
# Part of every cache key: timings from an older probe are not reused (2: the update timed as the fused AdamW
# that runs now train with, 6x cheaper than the loop before).
PROBE_VERSION = 2
PROBE_BATCH = 16  # rows per probed batch: per-example cost at this size, so that a probe takes seconds
RETRY_AFTER_S = 3600  # a probe that failed is not started again for the same models before this
PROBE_ENV = "KD_ESTIMATE_PROBE"  # "0": never start a background probe (the test suite's default)


@dataclass(frozen=True)
class Job:
    """One model to time: its config.json, the batch and length, whether a backward pass is included, and the
    precision it runs in ("no" = fp32, or "bf16": autocast, as Accelerate runs the student's forward)."""
    raw: dict
    batch: int
    length: int
    backward: bool
    precision: str = "no"

    def key(self) -> str:
        return "|".join(str(x) for x in (sorted(self.raw.items()), self.batch, self.length, self.backward,
                                         usable_cores(), self.precision, PROBE_VERSION))


def model_config(spec: str | None, teacher: str | None) -> dict | None:
    """config.json of a model spec, from local files only (a Hub model counts when it is in the local cache)."""
    if not spec:
        return None
    parsed = specs.parse_spec(spec)
    if parsed.kind == "truncate":
        base = model_config(teacher, None)
        return {**base, "num_hidden_layers": parsed.layers} if base else None
    if parsed.kind == "config":
        base = model_config(teacher, None) or {"model_type": "bert", "vocab_size": 30522}
        return {"model_type": "bert", "vocab_size": base.get("vocab_size", 30522), "hidden_size": parsed.hidden,
                "num_hidden_layers": parsed.layers, "num_attention_heads": parsed.hidden // 64,
                "intermediate_size": 4 * parsed.hidden}
    found = specs.read_model_config(spec)
    if found is None and parsed.kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(spec, "config.json")
        except Exception:  # any trouble reading the cache means: no probe
            path = None
        found = storage.read_json(Path(path)) if isinstance(path, str) else None
    return found if isinstance(found, dict) and found.get("model_type") else None


class Jobs(NamedTuple):
    """What to time for one config: the student's training step and validation (in the training precision), its
    test scoring (the saved model, fp32), the teacher's pass over the training rows (in its precision,
    teacher_cache.pass_precision) and over the test split (fp32); the teacher's are None for a fine-tune."""
    train: Job
    infer: Job
    test: Job
    teacher: Job | None
    teacher_test: Job | None


def jobs_for(config: TrainConfig) -> Jobs | None:
    """The Jobs to time for ``config``; None when a model's architecture is not available locally."""
    student_raw = model_config(config.student, config.teacher)
    teacher_raw = model_config(config.teacher, None) if config.mode == "distill" and config.teacher else None
    if student_raw is None or (config.mode == "distill" and config.teacher and teacher_raw is None):
        return None
    length = typical_length(config)
    infer_batch = min(config.eval_batch_size, PROBE_BATCH)
    precision = student_precision(config)
    teacher_pass = "bf16" if teacher_cache.pass_precision(config) == "bf16" else "no"
    # The test scoring (the saved student, the teacher's test pass) runs in fp32 whatever the training precision.
    return Jobs(Job(student_raw, min(config.batch_size, PROBE_BATCH), length, True, precision),
                Job(student_raw, infer_batch, length, False, precision),
                Job(student_raw, infer_batch, length, False),
                Job(teacher_raw, infer_batch, length, False, teacher_pass) if teacher_raw else None,
                Job(teacher_raw, infer_batch, length, False) if teacher_raw else None)


def student_precision(config: TrainConfig) -> str:
    """The precision the run will train (and validate) its student in on this machine, as the probe can time
    it: bf16 autocast where ``auto`` resolves to it (a CPU with AVX512-BF16/AMX: ~1.5x faster steps, so an
    fp32 probe would overstate the run), else fp32. The probe runs on the CPU, so on a CUDA machine it times
    fp32 (its figure is the CPU's, not the GPU's, either way)."""
    from .. import hardware

    if hardware.detect().device != "cpu":
        return "no"
    return "bf16" if hardware.training_precision(config.mixed_precision).resolved == "bf16" else "no"


def typical_length(config: TrainConfig) -> int:
    """Tokens of a typical padded batch: news-sized texts (~60 tokens), never above max_length."""
    return max(min(config.data.max_length, 64), 8)


def _time_it(fn, repeats: int, budget_s: float) -> float:
    fn()  # warm-up: first calls allocate
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Timing(NamedTuple):
    """A probed model: seconds per example of its forward (+ backward), seconds per optimiser update (clip +
    AdamW step over every weight, paid once per batch whatever its size; 0 for inference), and how long the
    probe took."""
    per_example: float
    probe_s: float
    per_step: float = 0.0


def _probe_model(raw: dict, batch: int, length: int, *, backward: bool, precision: str = "no"
                 ) -> tuple[float, float]:
    """(seconds of one forward (+ backward), seconds of one optimiser update or 0) of a randomly initialised
    model of that architecture, the forward under bf16 autocast when ``precision`` is "bf16" (the backward and
    the update outside it, as in training)."""
    import torch

    model, inputs = _random_model(raw, batch, length)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    if not backward:
        model.eval()

        def forward() -> None:
            with torch.inference_mode(), autocast():
                model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return _time_it(forward, 2, 2.0), 0.0
    model.train()

    def forward_backward() -> None:
        with autocast():
            loss = model(**inputs).loss
        loss.backward()
    return _time_training(model, forward_backward)


def _random_model(raw: dict, batch: int, length: int):
    """A sequence classifier of that config.json with random weights, and a synthetic batch for it."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "id2label", "label2id",
                                                         "_name_or_path", "transformers_version")}
    config = AutoConfig.for_model(raw["model_type"], **fields, num_labels=4)
    model = AutoModelForSequenceClassification.from_config(config)
    vocab = int(getattr(config, "vocab_size", 1000))
    ids = torch.randint(5, max(vocab - 1, 6), (batch, length))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                   "labels": torch.zeros(batch, dtype=torch.long)}


def _time_training(model, forward_backward) -> tuple[float, float]:
    """(seconds of ``forward_backward``, seconds of the update after it: clip + AdamW step, as
    train._optimizer_and_schedule builds the optimiser), timed apart because the update is paid once per batch
    whatever the batch size, and the probe's batch is smaller than a run's."""
    import torch

    from ..train import FUSED_UPDATE

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=FUSED_UPDATE)
    updates: list[float] = []

    def update() -> None:
        forward_backward()  # gradients to update with; only the update below is timed
        start = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        updates.append(time.perf_counter() - start)

    update()  # warm-up: the optimiser's state is allocated on its first step
    updates.clear()
    seconds = _time_it(lambda: (forward_backward(), model.zero_grad(set_to_none=True)), 2, 3.0)
    for _ in range(2):
        update()
    return seconds, statistics.median(updates)


def timed(job: Job, *, cached_only: bool = False) -> Timing | None:
    """A model's Timing, from the probe cache or timed now."""
    key = job.key()
    cache = storage.read_json(_probe_path(), {})
    cache = cache if isinstance(cache, dict) else {}
    if isinstance(cache.get(key), list):
        return Timing(*(float(value) for value in cache[key][:3]))
    if cached_only:
        return None
    start = time.perf_counter()
    seconds, per_step = _probe_model(job.raw, job.batch, job.length, backward=job.backward,
                                     precision=job.precision)
    found = Timing(seconds / job.batch, time.perf_counter() - start, per_step)
    cache[key] = list(found)
    with contextlib.suppress(OSError):  # an unwritable cache only means probing again next time
        _probe_path().parent.mkdir(parents=True, exist_ok=True)
        storage.write_json_atomic(_probe_path(), cache)
    return found


def _probe_path() -> Path:
    from ..batching import cache_root

    return cache_root() / PROBE_FILE




def pending(jobs: list[Job]) -> list[Job]:
    """The jobs whose result is not cached yet."""
    cache = storage.read_json(_probe_path(), {})
    cache = cache if isinstance(cache, dict) else {}
    return [job for job in jobs if not isinstance(cache.get(job.key()), list)]


def start_background(jobs: list[Job]) -> bool:
    """Time ``jobs`` in a detached process (``python -m distill_core probe``) unless all are cached; True while
    a probe for them is (or now is) under way; False when there is nothing to time, probes are off, or the last
    probe of these models failed within the hour. One process per set of jobs, however many visitors ask."""
    from .. import jobs as job_processes

    todo = pending(jobs)
    if not todo or os.environ.get(PROBE_ENV, "1") == "0":
        return False
    digest = hashlib.sha256(json.dumps([asdict(j) for j in todo], sort_keys=True).encode()).hexdigest()[:16]
    folder = _probe_path().parent / "estimate_probes"
    folder.mkdir(parents=True, exist_ok=True)
    request, marker = folder / f"{digest}.json", folder / f"{digest}.pid"
    with storage.file_lock(folder / f"{digest}.lock"):
        started = storage.read_json(marker, {})
        if isinstance(started, dict) and started.get("pid"):
            if processes.pid_alive(started.get("pid"), started.get("start_time")):
                return True
            if time.time() - float(started.get("at", 0)) < RETRY_AFTER_S:
                return False  # it ended without timing them all (see its .log): no retry loop
        storage.write_json_atomic(request, [asdict(j) for j in todo])
        pid = job_processes.spawn_detached([sys.executable, "-m", "distill_core", "probe", "--request", str(request)],
                                           folder / f"{digest}.log")
        spawned = {"pid": pid, "start_time": processes.process_start_time(pid), "at": time.time()}
        storage.write_json_atomic(marker, spawned)
    return True


def run_request(path: Path) -> dict:
    """The body of ``python -m distill_core probe --request FILE``: time each job of the file (cached)."""
    loaded = storage.read_json(Path(path), [])
    jobs = [Job(**item) for item in loaded] if isinstance(loaded, list) else []
    results = [timed(job) for job in jobs]
    return {"timed": len([r for r in results if r is not None]), "jobs": len(jobs)}

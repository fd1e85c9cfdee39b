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
from typing import TYPE_CHECKING

from .. import processes, specs, storage
from ..progress import usable_cores

if TYPE_CHECKING:
    from ..config import TrainConfig

PROBE_FILE = "estimate_probe.json"
PROBE_BATCH = 16  # rows per probed batch: per-example cost at this size, so that a probe takes seconds
RETRY_AFTER_S = 3600  # a probe that failed is not started again for the same models before this
PROBE_ENV = "KD_ESTIMATE_PROBE"  # "0": never start a background probe (the test suite's default)


@dataclass(frozen=True)
class Job:
    """One model to time: its config.json, the batch and length, and whether a backward pass is included."""
    raw: dict
    batch: int
    length: int
    backward: bool

    def key(self) -> str:
        return "|".join(str(x) for x in (sorted(self.raw.items()), self.batch, self.length, self.backward,
                                         usable_cores()))


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


def jobs_for(config: TrainConfig) -> tuple[Job, Job, Job | None] | None:
    """(student training step, student inference, teacher inference or None) to time for ``config``; None when
    a model's architecture is not available locally."""
    student_raw = model_config(config.student, config.teacher)
    teacher_raw = model_config(config.teacher, None) if config.mode == "distill" and config.teacher else None
    if student_raw is None or (config.mode == "distill" and config.teacher and teacher_raw is None):
        return None
    length = typical_length(config)
    infer_batch = min(config.eval_batch_size, PROBE_BATCH)
    return (Job(student_raw, min(config.batch_size, PROBE_BATCH), length, True),
            Job(student_raw, infer_batch, length, False),
            Job(teacher_raw, infer_batch, length, False) if teacher_raw else None)


def typical_length(config: TrainConfig) -> int:
    """Tokens of a typical padded batch: news-sized texts (~60 tokens), never above max_length."""
    return max(min(config.data.max_length, 64), 8)


def _time_it(fn, repeats: int, budget_s: float) -> float:
    import time

    fn()  # warm-up: first calls allocate
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _probe_model(raw: dict, batch: int, length: int, *, backward: bool) -> float:
    """Seconds of one forward (+ backward) of a randomly initialised model of that architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "id2label", "label2id",
                                                         "_name_or_path", "transformers_version")}
    config = AutoConfig.for_model(raw["model_type"], **fields, num_labels=4)
    model = AutoModelForSequenceClassification.from_config(config)
    vocab = int(getattr(config, "vocab_size", 1000))
    ids = torch.randint(5, max(vocab - 1, 6), (batch, length))
    mask = torch.ones_like(ids)
    labels = torch.zeros(batch, dtype=torch.long)
    if backward:
        model.train()

        def step() -> None:
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            model.zero_grad(set_to_none=True)
        return _time_it(step, 2, 3.0)
    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)
    return _time_it(forward, 2, 2.0)


def timed(job: Job, *, cached_only: bool = False) -> tuple[float, float] | None:
    """(seconds per example, seconds the probe took) of one model, from the probe cache or timed now."""
    import time

    raw, batch, length, backward = job.raw, job.batch, job.length, job.backward
    key = job.key()
    cache = storage.read_json(_probe_path(), {})
    cache = cache if isinstance(cache, dict) else {}
    if isinstance(cache.get(key), list):
        return float(cache[key][0]), float(cache[key][1])
    if cached_only:
        return None
    start = time.perf_counter()
    per_example = _probe_model(raw, batch, length, backward=backward) / batch
    cache[key] = [per_example, time.perf_counter() - start]
    with contextlib.suppress(OSError):  # an unwritable cache only means probing again next time
        _probe_path().parent.mkdir(parents=True, exist_ok=True)
        storage.write_json_atomic(_probe_path(), cache)
    return per_example, cache[key][1]


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

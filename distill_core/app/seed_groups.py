"""Several seeds of one setting, told as one result: mean ± standard deviation over the seeds.

A single seed's accuracy moves by tenths of a point from run to run, so a difference between two settings means
something only next to that spread. Runs are one setting when their config.json agree on everything but the seed
(and the free-form notes and provenance, which name the run and when it was made); a pipeline's teacher stage
was fine-tuned with the run's own seed, so it counts as the same teacher when its own settings agree.

`setting_key` and `group_rows` are pure: Compare's table and its speed/accuracy chart both read them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import runs, storage

# config.json keys that tell seeds of one setting apart, and nothing else.
SEED_ONLY_KEYS = frozenset({"seed", "extra", "provenance"})
# Row values averaged over the seeds, each with its spread in `<key>_std`; the others are the first run's (a
# setting's seeds share their spec, size and parameter count).
SPREAD_KEYS = ("test_accuracy", "macro_f1", "agreement", "ece", "latency_ms_b1", "latency_ms_p95_b1",
               "samples_per_s_b1", "latency_ms_b32", "latency_ms_p95_b32", "samples_per_s_b32")


def setting_key(config: Mapping[str, Any], teacher_setting: str | None = None) -> str:
    """One string per setting: the config without the seed-only keys (JSON, keys sorted). ``teacher_setting``
    replaces the teacher's spec when the teacher is a pipeline stage trained for this run."""
    kept = {key: value for key, value in config.items() if key not in SEED_ONLY_KEYS}
    if teacher_setting is not None:
        kept["teacher"] = {"pipeline_teacher_stage": teacher_setting}
    return json.dumps(kept, sort_keys=True, default=str)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator: the seeds are a sample of all seeds);
    a single value has spread 0."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _group_name(members: Sequence[str]) -> str:
    names = [m.removeprefix("run ") for m in members]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]}, {names[1]}, … {names[-1]}"
    return f"runs {shown} ({len(names)} seeds)"


def _merged(members: Sequence[dict[str, Any]], seeds: Sequence[Any]) -> dict[str, Any]:
    first = members[0]
    merged = {**first, "model": _group_name([m["model"] for m in members]), "runs": [m["model"] for m in members],
              "seeds": list(seeds), "n_seeds": len(members)}
    for key in SPREAD_KEYS:
        values = [m[key] for m in members if _is_number(m.get(key))]
        merged[key], merged[f"{key}_std"] = mean_std(values) if values else (None, None)
    for key in ("baseline", "n_test", "role", "spec"):  # kept only where every seed agrees
        if len({json.dumps(m.get(key), default=str) for m in members}) > 1:
            merged[key] = None
    return merged


def group_rows(rows: Sequence[dict[str, Any]], settings: Mapping[str, tuple[str, Any]]) -> list[dict[str, Any]]:
    """Compare's rows with the runs of one setting merged into one row, at the first one's place.

    ``settings`` maps a row's ``model`` ("run NAME") to (setting key, seed); rows not in it (teachers that are
    not selected runs) and settings with a single run stay as they are. A merged row holds the mean of each
    SPREAD_KEYS value with its sample standard deviation in ``<key>_std``, ``runs``, ``seeds`` and ``n_seeds``;
    a row pointing at a merged teacher (``baseline``) is pointed at the merged row."""
    members: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["model"] in settings:
            members.setdefault(settings[row["model"]][0], []).append(row)
    merged_name: dict[str, str] = {}
    result = []
    for row in rows:
        key = settings[row["model"]][0] if row["model"] in settings else None
        group = members.get(key, []) if key is not None else []
        seeds = [settings[m["model"]][1] for m in group]
        if len(group) < 2 or len(set(map(str, seeds))) < len(seeds):  # repeats of one seed are not a spread
            result.append(dict(row))
        elif group[0] is row:
            merged = _merged(group, seeds)
            merged_name.update({m["model"]: merged["model"] for m in group})
            result.append(merged)
    for row in result:
        if row.get("baseline") in merged_name:
            row["baseline"] = merged_name[row["baseline"]]
    return result


def run_settings(root: Path, run_names: Sequence[str]) -> dict[str, tuple[str, Any]]:
    """"run NAME" -> (setting key, seed) of each selected run, read from its config.json."""
    root = Path(root).resolve()
    settings = {}
    for name in dict.fromkeys(run_names):
        config = storage.read_json(runs.resolve_run_dir(root, name) / runs.CONFIG_FILE, {}) or {}
        settings[f"run {name}"] = (setting_key(config, _teacher_stage_setting(root, config)), config.get("seed"))
    return settings


def _teacher_stage_setting(root: Path, config: Mapping[str, Any]) -> str | None:
    """The setting of a pipeline's teacher stage (a run of this store made for this run, with its seed)."""
    from .catalog import run_dir_of_spec

    teacher = config.get("teacher")
    run_dir = run_dir_of_spec(root, teacher) if isinstance(teacher, str) and teacher else None
    if run_dir is None:
        return None
    teacher_config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
    extra = teacher_config.get("extra") or {}
    return setting_key(teacher_config) if isinstance(extra, dict) and extra.get("stage") == "teacher" else None


def spread_text(mean: float, std: float, kind: str, formats: Mapping[str, Any]) -> str:
    """"77.5 ± 3.5%" for a share, "12.3 ± 0.4" for the rest: the spread in the mean's own unit."""
    if kind == "percent":
        return f"{mean * 100:.1f} ± {std * 100:.1f}%"
    return f"{formats[kind](mean)} ± {formats[kind](std)}"

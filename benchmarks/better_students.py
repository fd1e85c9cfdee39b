"""Issue 12's measured table: which distillation method gives the best small student, over seeds, on all 7,600
AG News test rows.

    python benchmarks/better_students.py run --teacher runs/teacher --runs runs/students [--workers 2]
    python benchmarks/better_students.py report --teacher runs/teacher --runs runs/students
        # -> benchmarks/results/better_students.json and the markdown table the README shows

`run` trains every row of PLAN that is missing in --runs (each seed its own `distill` run; each student's T x alpha grid
through `sweep`; the best cell's other seeds once the grid is done), with the exact CLI a user types. With
`--workers 2` two runs train at once with one torch thread each, which on this 2-core machine gets more runs per
hour than one run with two threads. The teacher: `python -m distill_core finetune --data ../shared/data/ag_news
--model bundled:minilm-l6 --out runs/teacher --epochs 2 --lr 1e-4 --batch-size 32 --max-length 128`.
`report` reads the run folders only: test accuracy mean +- sample std over seeds, % of the teacher, wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import AG_NEWS, REPO, header, write_result

SEEDS = (1, 2, 3)
# Flags every run shares: the data, the sequence limit and the teacher's batch size; dropout 0.1 and no early
# stopping so every seed trains the same number of steps.
COMMON = ["--max-length", "128", "--batch-size", "32", "--dropout", "0.1", "--patience", "0"]
T2 = ["--student", "truncate:2", "--epochs", "2", "--lr", "1e-4"]
# A fresh student (no pretrained weights): 4 layers x 256 wide, 4 heads; 0.30 of the teacher's encoder compute.
FRESH = ["--student", "config:L4-H256", "--epochs", "3", "--lr", "5e-4"]
KD = ["--alpha", "0.5", "--temperature", "2"]
LOW_LABEL = ["--train-samples", "1000"]
SWEEP_GRID = ["--temperatures", "2", "4", "--alphas", "0.1", "0.5"]


@dataclass(frozen=True)
class Row:
    key: str        # run names are KEY-sSEED
    student: str
    method: str
    flags: tuple[str, ...]


PLAN = (
    Row("t2-labels", "truncate:2", "labels only (alpha 1)", (*T2, "--alpha", "1")),
    Row("t2-kd", "truncate:2", "logits KD (seed: T 2, alpha 0.5)", (*T2, *KD)),
    Row("t2-layers", "truncate:2", "logits KD + hidden MSE 1 + attention KL 1",
        (*T2, *KD, "--hidden-weight", "1", "--attention-weight", "1")),
    # Issue 11's lean settings (less memory, faster steps), at full size: what they cost in accuracy.
    Row("t2-frozen", "truncate:2", "logits KD, word embeddings frozen", (*T2, *KD, "--freeze-embeddings")),
    Row("t2-lean", "truncate:2", "logits KD, word embeddings frozen, attention dropout 0",
        (*T2, *KD, "--freeze-embeddings", "--attention-dropout", "0")),
    Row("cf-labels", "config:L4-H256", "labels only (alpha 1)", (*FRESH, "--alpha", "1")),
    Row("cf-kd", "config:L4-H256", "logits KD (seed: T 2, alpha 0.5)", (*FRESH, *KD)),
    # Attention dropout 0 measured free for truncate:2 (t2-frozen vs t2-lean); this checks the fresh student before
    # it becomes the default for every student.
    Row("cf-attn0", "config:L4-H256", "logits KD, attention dropout 0", (*FRESH, *KD, "--attention-dropout", "0")),
    Row("cf-layers", "config:L4-H256", "logits KD + hidden MSE 1 (projected 256 -> 384)",
        (*FRESH, *KD, "--hidden-weight", "1")),
    Row("ll-labels", "truncate:2", "1,000 labelled rows, labels only", (*T2, *LOW_LABEL, "--alpha", "1")),
    Row("ll-kd", "truncate:2", "1,000 labelled rows, logits KD", (*T2, *LOW_LABEL, *KD)),
    Row("ll-transfer", "truncate:2", "1,000 labelled rows + the other 7,080 as transfer text, logits KD",
        (*T2, *LOW_LABEL, "--transfer", "rest", *KD)),
    # The low-label regime again from a weaker start: a fresh student has no pretrained layers to fall back on.
    Row("cf-ll-labels", "config:L4-H256", "1,000 labelled rows, labels only", (*FRESH, *LOW_LABEL, "--alpha", "1")),
    Row("cf-ll-kd", "config:L4-H256", "1,000 labelled rows, logits KD", (*FRESH, *LOW_LABEL, *KD)),
    Row("cf-ll-transfer", "config:L4-H256", "1,000 labelled rows + the other 7,080 as transfer text, logits KD",
        (*FRESH, *LOW_LABEL, "--transfer", "rest", *KD)),
)
# Each student's T x alpha grid (seed 1): group --sweep-name for truncate:2, --sweep-name + "-cf" for the fresh
# student; its best cell by validation accuracy gets seeds 2 and 3 as KEY-best (t2-best, cf-best).
SWEPT = {"t2": ("truncate:2", T2, "t2-layers"), "cf": ("config:L4-H256", FRESH, "cf-layers")}  # row shown before
# Each grid's T 2, alpha 0.5 cell is its student's seed setting at seed 1: that run is not trained twice.
# (Before the fresh student had its grid, runs of cf-kd trained seed 1 on its own as cf-kd-s1; it is used when
# there and the grid is not.)
SHARED_WITH_SWEEP = {("t2-kd", 1): "t2", ("cf-kd", 1): "cf"}
SHARED_CELL = "T2-a0.5-s1"


def distill_argv(data: str, teacher: Path, out: Path, flags: list[str] | tuple[str, ...], command: str = "distill"):
    return [sys.executable, "-m", "distill_core", command, "--data", data, "--teacher", str(teacher), "--out", str(out),
            *COMMON, "--quiet", *flags]


def sweep_summary(runs_dir: Path, name: str) -> dict[str, Any] | None:
    """The grid's sweep.summary (cells and best setting), or None before the sweep has started."""
    if not (runs_dir / name / "group.json").is_file():
        return None
    sys.path.insert(0, str(REPO))
    from distill_core import sweep

    return sweep.summary(sweep.read_group(runs_dir, name))


def best_cell(runs_dir: Path, name: str) -> dict[str, Any] | None:
    """The grid's best setting once every cell is done (chosen on the whole grid, never on part of it)."""
    result = sweep_summary(runs_dir, name)
    return result["best"] if result and all(c["state"] == "done" for c in result["cells"]) else None


def run_path(args: argparse.Namespace, key: str, seed: int) -> Path:
    """Where a row's seed trained: its own run, or for the seed setting's seed 1 the sweep's matching cell."""
    own = args.runs / f"{key}-s{seed}"
    if (key, seed) in SHARED_WITH_SWEEP:
        cell = args.runs / f"{sweep_group(args, SHARED_WITH_SWEEP[key, seed])}-{SHARED_CELL}"
        return own if (own / "eval.json").is_file() and not (cell / "eval.json").is_file() else cell
    return own


def best_seed_path(args: argparse.Namespace, key: str, seed: int, cell: dict[str, Any]) -> Path:
    """Where the grid's best setting trained seed ``seed``: KEY-best-sSEED, or the seed setting's own run when the
    best cell is the seed setting (T 2, alpha 0.5) and that run exists."""
    own = args.runs / f"{key}-best-s{seed}"
    seed_setting = args.runs / f"{key}-kd-s{seed}"
    if (cell["T"], cell["alpha"]) == (2.0, 0.5) and (seed_setting / "eval.json").is_file():
        return seed_setting
    return own


def sweep_group(args: argparse.Namespace, key: str) -> str:
    return args.sweep_name if key == "t2" else f"{args.sweep_name}-{key}"


def jobs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, argv) of every run still missing, in the order worth having first."""
    todo: list[tuple[str, list[str]]] = []
    for key, (_, flags, _) in SWEPT.items():
        group = sweep_group(args, key)
        if not (args.runs / group / "group.json").is_file():
            todo.append((group, distill_argv(args.data, args.teacher, args.runs / group,
                                             [*flags, *SWEEP_GRID, "--seeds", "1"], command="sweep")))
    for row in PLAN:
        for seed in SEEDS:
            path = run_path(args, row.key, seed)
            if path.name == f"{row.key}-s{seed}" and not (path / "eval.json").is_file():  # not the sweep's cell
                todo.append((path.name, distill_argv(args.data, args.teacher, path, [*row.flags, "--seed", str(seed)])))
    return todo


def run(args: argparse.Namespace) -> int:
    args.runs.mkdir(parents=True, exist_ok=True)
    queue, lock = jobs(args), threading.Lock()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.workers > 1:
        env["OMP_NUM_THREADS"] = "1"

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                name, argv = queue.pop(0)
            print(f"[students] {name}: {' '.join(argv[1:])}", file=sys.stderr)
            with open(args.runs / f"{name}.log", "w", encoding="utf-8") as log:
                subprocess.run(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key, (_, student_flags, _) in SWEPT.items():  # each grid's best setting, repeated over the other seeds
        cell = best_cell(args.runs, sweep_group(args, key))
        for seed in SEEDS[1:] if cell is not None else ():
            path = best_seed_path(args, key, seed, cell)
            if not (path / "eval.json").is_file():
                flags = [*student_flags, "--temperature", str(cell["T"]), "--alpha", str(cell["alpha"]),
                         "--seed", str(seed)]
                subprocess.run(distill_argv(args.data, args.teacher, path, flags), env=env, cwd=REPO, check=False)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# report: from the run folders only

def run_record(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's test accuracy (all test rows), the teacher's, and its wall time; None if not finished."""
    if not (run_dir / "eval.json").is_file():
        return None
    report = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    return {"run": run_dir.name, "seed": config["seed"], "test_accuracy": report["student"]["accuracy"],
            "test_rows": report["student"].get("support", None) or status.get("sizes", {}).get("test"),
            "teacher_test_accuracy": report.get("teacher", {}).get("accuracy"),
            "wall_s": status.get("wall_s"), "train_rows": status.get("sizes", {}).get("train"),
            "threads": config.get("provenance", {}).get("torch_threads")}


def summarise(key: str, student: str, method: str, records: list[dict[str, Any]], command: str) -> dict[str, Any]:
    accs = [r["test_accuracy"] for r in records]
    walls = [r["wall_s"] for r in records if r["wall_s"]]
    return {"key": key, "student": student, "method": method, "seeds": [r["seed"] for r in records],
            "mean": statistics.fmean(accs) if accs else None,
            "std": statistics.stdev(accs) if len(accs) > 1 else None,
            "min": min(accs, default=None), "max": max(accs, default=None),
            "wall_s_mean": statistics.fmean(walls) if walls else None, "runs": records, "command": command}


def rows_measured(args: argparse.Namespace) -> list[dict[str, Any]]:
    def records(key: str) -> list[dict[str, Any]]:
        found = [run_record(run_path(args, key, seed)) for seed in SEEDS]
        return [r for r in found if r is not None]

    def command(flags) -> str:
        return "python -m distill_core distill --data DATA --teacher TEACHER --out runs/NAME " + " ".join(
            [*COMMON, *flags, "--seed", "S"])

    out = [summarise(row.key, row.student, row.method, records(row.key), command(row.flags)) for row in PLAN]
    for key, (student, student_flags, shown_after) in SWEPT.items():
        cell = best_cell(args.runs, sweep_group(args, key))
        if cell is None:
            continue
        first = run_record(Path(cell["run"]))
        best = [r for r in [first, *(run_record(best_seed_path(args, key, s, cell)) for s in SEEDS[1:])] if r]
        flags = [*student_flags, "--temperature", str(cell["T"]), "--alpha", str(cell["alpha"])]
        at = next(i for i, row in enumerate(out) if row["key"] == shown_after) + 1
        out.insert(at, summarise(f"{key}-best", student, f"best cell of the T x alpha sweep (T {cell['T']:g}, "
                                 f"alpha {cell['alpha']:g}; chosen on validation)", best, command(flags)))
    return out


def sweep_cells(args: argparse.Namespace, key: str = "t2") -> list[dict[str, Any]]:
    result = sweep_summary(args.runs, sweep_group(args, key))
    return [{k: c[k] for k in ("T", "alpha", "seed", "state", "valid_accuracy", "test_accuracy")}
            for c in (result["cells"] if result else [])]


def teacher_record(teacher: Path) -> dict[str, Any]:
    status = json.loads((teacher / "status.json").read_text(encoding="utf-8"))
    return {"run": teacher.name, "test_accuracy": status.get("test_accuracy"), "wall_s": status.get("wall_s")}


def pts(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    teacher = result["teacher"]["test_accuracy"]
    lines = ["| student | method | seeds | test accuracy % (mean ± std) | % of teacher | min to max | wall / run |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        if not row["seeds"]:
            lines.append(f"| `{row['student']}` | {row['method']} | 0 | not run | — | — | — |")
            continue
        mean, std = row["mean"], row["std"]
        spread = f" ± {100 * std:.2f}" if std is not None else ""
        of_teacher = f"{100 * mean / teacher:.1f}%" if mean is not None and teacher else "—"
        threads = sorted({r["threads"] for r in row["runs"] if r["threads"]})
        wall = "—" if not row["wall_s_mean"] else f"{row['wall_s_mean'] / 60:.1f} min" + (
            f" ({'/'.join(map(str, threads))} thr.)" if threads else "")
        lines.append(f"| `{row['student']}` | {row['method']} | {len(row['seeds'])} | {pts(mean)}{spread} | "
                     f"{of_teacher} | {pts(row['min'])} to {pts(row['max'])} | {wall} |")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> int:
    result = header("better_students")
    rows = [row for row in rows_measured(args) if not args.keys or row["key"] in args.keys]
    result.update({"teacher": teacher_record(args.teacher), "rows": rows,
                   "sweep": sweep_cells(args) if not args.keys or "t2-best" in args.keys else [],
                   "sweep_cf": sweep_cells(args, "cf") if not args.keys or "cf-best" in args.keys else [],
                   "common_flags": COMMON})
    write_result(args.name, result)
    print(markdown(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--teacher", type=Path, required=True, help="the fine-tuned teacher's run folder")
    parser.add_argument("--runs", type=Path, required=True, help="folder of the students' runs")
    parser.add_argument("--data", default=str(AG_NEWS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sweep-name", default="sw", help="the T x alpha grid's group in --runs")
    parser.add_argument("--name", default="better_students", help="results/<name>.json")
    parser.add_argument("--keys", nargs="+", default=None, metavar="KEY",
                        help="report: only these rows (e.g. cf-kd cf-best), for a re-measurement against another "
                             "teacher; default every row")
    args = parser.parse_args()
    args.teacher, args.runs = args.teacher.resolve(), args.runs.resolve()
    return run(args) if args.action == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())

"""Command-line front end: `python -m distill_core <command>`; the same functions the dashboard calls.

Bad input ends in one line `error: ...` on stderr and exit status 2; results are printed as JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import malloc_choice
from .cli_args import build_parser, config_from_args, data_config_from_args, teacher_stage_from_args
from .cli_progress import ProgressPrinter
from .cli_runs import cmd_delete, cmd_list, cmd_rename, run_location
from .errors import UserError

if TYPE_CHECKING:
    from .train import Prepared

EXIT_USAGE = 2


# ----------------------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------------------
# commands

def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs, storage
    from .config import load_train_config
    from .train import make_accelerator, prepare, run_record

    if getattr(args, "config", None):
        config = load_train_config(args.config)
        out = args.out or args.config.parent
    else:
        config = config_from_args(args)
        out = Path(args.out)
    config.validate()
    out = _out_folder(args.out) if getattr(args, "out", None) else Path(out)
    root, name = out.parent, out.name
    name = runs.sanitize_run_name(name)
    existing_config = getattr(args, "config", None) and Path(args.config).resolve().parent == out.resolve()
    # A file there (not only a non-empty folder) is refused: iterdir() on a file raised NotADirectoryError.
    if out.exists() and not existing_config and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"run folder {out} already exists: choose another --out or delete it")
    progress = ProgressPrinter(getattr(args, "quiet", False))
    accelerator = make_accelerator(config.mixed_precision)
    # Every process has checked --out before any creates it (no race under accelerate launch / torchrun).
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        progress.quiet = True
    prepared = prepare(config, on_event=progress)  # every bad-input check happens before the folder exists
    if accelerator.is_main_process:
        if existing_config:
            storage.write_json_atomic(out / runs.CONFIG_FILE, run_record(prepared))
        else:
            runs.create_run(root, name, run_record(prepared))
    accelerator.wait_for_everyone()
    return _execute(prepared, out, progress, accelerator=accelerator)


def _execute(prepared: Prepared, run_dir: Path, progress: ProgressPrinter, **options: Any) -> dict[str, Any]:
    """train.execute with the bars of ``progress`` (closed however the run ends) -> the run's summary."""
    from .train import execute

    try:
        result = execute(prepared, run_dir, on_event=progress, **options)
    finally:
        progress.close()
    return _run_summary(run_dir, result)


def _cmd_estimate(args: argparse.Namespace) -> dict[str, Any]:
    """The Train page's estimate before Start, for the same flags as distill (and pipeline's --base)."""
    from . import pipeline, runs
    from .app import datasets, estimate
    from .presets import get_preset

    preset = get_preset(args.preset) if args.preset else None
    as_pipeline = bool(args.base) or bool(preset and preset.teacher_stage)
    # config_from_args reads the command line as the distill or pipeline command it mirrors
    mirrored = argparse.Namespace(**{**vars(args), "command": "pipeline" if as_pipeline else "distill",
                                     "out": args.out or "estimate"})
    distill_config = config_from_args(mirrored)
    distill_config.validate()
    teacher_config = None
    if as_pipeline:
        stage = teacher_stage_from_args(mirrored)
        teacher_config = pipeline.teacher_stage_config(distill_config, stage.base, epochs=stage.epochs, lr=stage.lr)
    sizes = estimate.split_sizes(distill_config, *datasets.estimate_rows(distill_config.data.source))
    if sizes is None:
        raise UserError(f"--data {distill_config.data.source!r}: its number of rows is unknown, so no estimate")
    root = args.runs_dir or runs.runs_root()
    told = estimate.estimate_job(distill_config, teacher_config, sizes, root, allow_probe=not args.no_probe)
    return {**told.as_dict(), "sizes": dict(zip(("train", "validation", "test"), sizes, strict=True)),
            "long": told.long}


def _cmd_worker(args: argparse.Namespace) -> dict[str, Any]:
    """A run folder created by the dashboard or `pipeline --background` (config.json + status queued) -> trained
    in this process; then what waits on it starts."""
    from .pipeline import run_worker

    return run_worker(args.run_dir, resume=args.resume)


def _out_folder(out: str) -> Path:
    """--out as a run folder whose parent is the runs folder. runs/../../etc/x would write wherever the '..'
    lead (the name check alone sees only the last part), so '..' is refused."""
    if ".." in Path(out).parts:
        raise UserError(f"--out {out!r} contains '..': give the run folder as runs/NAME or an absolute path")
    return Path(out)


def _cmd_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from . import pipeline, runs

    distill_config = config_from_args(args)
    distill_config.validate()
    stage = teacher_stage_from_args(args)  # --base etc., or the --preset's teacher stage
    teacher_config = pipeline.teacher_stage_config(distill_config, stage.base, epochs=stage.epochs, lr=stage.lr)
    out = _out_folder(args.out)
    root, name = out.parent, runs.sanitize_run_name(out.name)
    if args.background:
        started = pipeline.start_pipeline(root, name, teacher_config, distill_config, created_by="cli")
        return {**started.as_dict(), "teacher_run": str(started.runs[0]), "distill_run": str(started.runs[1])}
    progress = ProgressPrinter(args.quiet)
    try:
        results = pipeline.run_pipeline_here(root, name, teacher_config, distill_config, on_event=progress)
    finally:
        progress.close()
    teacher_name, distill_name = pipeline.stage_names(name)
    # A teacher stage that did not finish leaves one result: the distill stage never ran (hence strict=False).
    stages = [_run_summary(root.resolve() / run_name, result)
              for run_name, result in zip((teacher_name, distill_name), results, strict=False)]
    return {"runs": stages, "state": stages[-1]["state"] if len(stages) == 2 else "cancelled"}


def _cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from . import sweep
    from .cli_args import DATA_FLAGS, KD_FLAGS, MODEL_FLAGS, TRAIN_FLAGS
    from .presets import get_preset

    base = config_from_args(args)
    if base.teacher is None and args.preset and get_preset(args.preset).teacher:
        base = replace(base, teacher=get_preset(args.preset).teacher)  # as distill --preset takes it
    names = {field: flag for flag, field in {**DATA_FLAGS, **TRAIN_FLAGS, **KD_FLAGS, **MODEL_FLAGS}.items()}
    names |= sweep.CLI_NAMES
    plan = sweep.SweepConfig(base, tuple(args.temperatures), tuple(args.alphas), tuple(args.seeds or ()),
                             tuple(args.methods or ()))
    out = _out_folder(args.out)
    root, name = out.parent, out.name
    if args.background:
        group = sweep.start_sweep(root, name, plan, names=names, created_by="cli")
        return {**group.as_dict(), "cells": len(group.cells), "follow": str(group.run_dirs[0])}
    progress = ProgressPrinter(args.quiet)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("kind") == "note":
            progress.close()  # a new cell: its bars start afresh
        progress(event)

    try:
        group = sweep.run_sweep_here(root, name, plan, names=names, on_event=on_event)
    finally:
        progress.close()
    return sweep.summary(group)


def _run_summary(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """What finetune, distill, resume and pipeline print for a run: state, epochs, accuracies."""
    summary = {"run": str(run_dir), "state": result["state"], "epochs_done": result["epochs_done"],
               "best_valid_accuracy": result["best_valid_accuracy"]}
    if result["eval"]:
        summary["test_accuracy"] = result["eval"]["student"]["accuracy"]
        if "teacher" in result["eval"]:
            summary["teacher_test_accuracy"] = result["eval"]["teacher"]["accuracy"]
            summary["agreement"] = result["eval"]["student"].get("agreement")
    return summary


def _cmd_resume(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs
    from .checkpoints import read_checkpoint_state
    from .config import load_train_config
    from .train import prepare

    if args.background:
        return _cmd_resume_background(args)
    run_dir = args.run
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json): see `python -m distill_core list`")
    status = runs.read_status(run_dir)
    if status.get("state") in ("running", "queued"):
        raise UserError(f"run {run_dir} is {status['state']} (pid {status.get('pid')}): stop it before resuming")
    if status.get("state") == "done":
        raise UserError(f"run {run_dir} has already finished")
    if read_checkpoint_state(run_dir) is None:
        raise UserError(f"run {run_dir} has no checkpoint (it stopped before its first epoch ended): start a new "
                        "run instead")
    config = load_train_config(run_dir / runs.CONFIG_FILE)
    progress = ProgressPrinter(args.quiet)
    prepared = prepare(config, on_event=progress)
    runs.clear_stop(run_dir)
    return _execute(prepared, run_dir, progress, resume=True)


def _cmd_resume_background(args: argparse.Namespace) -> dict[str, Any]:
    from . import manage

    root, name = run_location(args.run)
    return manage.resume_in_background(root, name).as_dict()


# Data flags that shape the splits a training run carves; a test file scored in full has no use for them.
SPLIT_FLAGS = {"valid_fraction": "--valid-fraction", "train_samples": "--train-samples",
               "test_fraction": "--test-fraction", "eval_samples": "--eval-samples"}


def _file_scored_in_full(args: argparse.Namespace) -> Path | None:
    """evaluate's rule: a local test file is scored in full, every row: the file given, or a folder's test.*
    (with or without a train file). The seeded splits of a training run are scored instead only when asked for:
    --split train/validation, --eval-samples, or --test-fraction on a single file. None: load_data's splits."""
    from .data import resolve_local
    from .test_sets import file_to_score, only_test_file

    local = resolve_local(args.data)
    if local is None:
        return None  # a Hub dataset: its own test split
    split = args.split or "test"
    given = [flag for dest, flag in SPLIT_FLAGS.items() if getattr(args, dest, None) is not None]
    file = file_to_score(local)
    if only_test_file(local):
        if split != "test" or given:
            flag = "--split" if split != "test" else given[0]
            raise UserError(f"{flag}: {local} holds only a test file ({file.name if file else 'test'}), which "
                            f"evaluate scores in full: drop {flag} (splits need a train file)")
        return file
    if file is None or split != "test" or {"--eval-samples", "--test-fraction"} & set(given):
        return None
    if given:
        raise UserError(f"{given[0]} shapes the splits of a training run: evaluate scores every row of {file}: "
                        f"drop {given[0]}")
    return file


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .inference import evaluate_spec
    from .test_sets import load_test_set, score_test_set

    data_config = data_config_from_args(args)
    data_config.validate()
    whole_file = _file_scored_in_full(args)
    progress = ProgressPrinter(args.quiet)
    try:
        if whole_file is not None:
            test_set = load_test_set(whole_file, data_config.text_column, data_config.label_column)
            report = score_test_set(args.model, test_set, reference=args.reference, precision=args.precision,
                                    max_length=data_config.max_length, batch_size=args.batch_size,
                                    on_event=progress)
        else:
            report = evaluate_spec(args.model, data_config, split=args.split or "test", reference=args.reference,
                                   seed=args.seed, precision=args.precision, batch_size=args.batch_size,
                                   on_event=progress)
    finally:
        progress.close()
    if args.out:
        from .storage import write_json_atomic

        write_json_atomic(args.out, report)
    return report


def _cmd_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from . import bench_stats
    from .inference import measure_specs

    result = measure_specs(args.model, batch_sizes=args.batch_sizes, seq_lens=args.seq_lens,
                           precisions=args.precision, threads=args.threads, warmup=args.warmup,
                           repeats=args.repeats, baseline=args.baseline, on_event=ProgressPrinter(args.quiet))
    # The summary a person reads, on stderr (stdout carries only the JSON): the paired speed-ups, then warnings.
    if result["speedups"]:
        print(bench_stats.headline(result["speedups"]), file=sys.stderr)
    print(f"machine: {bench_stats.machine_line(result['machine'])}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"warning: {warning['message']}", file=sys.stderr)
    if args.out:
        from .storage import write_json_atomic

        write_json_atomic(args.out, result)
    return result


def _cmd_probe(args: argparse.Namespace) -> dict[str, Any]:
    from .app import probe

    return probe.run_request(args.request)


def _cmd_bench_job(args: argparse.Namespace) -> dict[str, Any]:
    from . import bench_jobs

    return bench_jobs.run_job(args.job_dir)


def _cmd_push(args: argparse.Namespace) -> dict[str, Any]:
    from . import hub

    url = hub.push_run(args.run, args.repo_id, private=args.private)
    return {"url": url}


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from .export import export_model

    return export_model(args.model, args.out, args.precision)


def _cmd_showcase(args: argparse.Namespace) -> dict[str, Any]:
    from . import showcase

    progress = ProgressPrinter(args.quiet)
    try:
        return showcase.build(args.runs_dir, args.recipe, on_event=progress)
    finally:
        progress.close()


def _cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from . import report

    root, names = report.locate_runs(args.run)
    return report.write_report(root, names, args.out, price_per_hour=args.price_per_hour)


COMMANDS = {"finetune": _cmd_train, "distill": _cmd_train, "pipeline": _cmd_pipeline, "estimate": _cmd_estimate,
            "sweep": _cmd_sweep,
            "evaluate": _cmd_evaluate,
            "benchmark": _cmd_benchmark, "bench-job": _cmd_bench_job, "probe": _cmd_probe, "push": _cmd_push,
            "worker": _cmd_worker,
            "resume": _cmd_resume,
            "list": cmd_list, "export": _cmd_export, "report": _cmd_report, "showcase": _cmd_showcase,
            "delete": cmd_delete, "rename": cmd_rename}


def _quiet_libraries() -> None:
    """Our own bars carry the progress; the libraries' per-step bars and load reports only add noise."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("list", "delete", "rename"):
        _quiet_libraries()
    try:
        malloc_choice.check(args.command)  # the process chose its malloc at start; a bad KD_MALLOC stops here
        result = COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2, default=str))
    return 0


def entry() -> None:
    """The `kd-studio` console script (pyproject.toml): the same as `python -m distill_core`."""
    malloc_choice.reexec_with_chosen_malloc()
    sys.exit(main())

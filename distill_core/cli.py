"""Command-line front end: `python -m distill_core <command>`; the same functions the dashboard calls.

Bad input ends in one line `error: ...` on stderr and exit status 2; results are printed as JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import DataConfig, TrainConfig
from .errors import UserError

EXIT_USAGE = 2


# ----------------------------------------------------------------------------------------------------------------
# progress: events -> tqdm bars

class ProgressPrinter:
    """Turns engine events into tqdm bars with an ETA (on stderr, so stdout stays machine-readable)."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar, self.bar_name = quiet, None, None

    def _bar(self, name: str, total: int, unit: str):
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
        elif kind in ("teacher_progress", "eval_progress", "predict_progress"):
            bar = self._bar(kind.replace("_progress", ""), event["total"], "ex")
            bar.update(event["done"] - bar.n)
        elif kind == "bench":
            bar = self._bar("benchmark", event.get("total_cells", 0) or None, "cell")
            bar.update(1)
        elif kind in ("phase", "note", "early_stop") and not self.quiet:
            if kind == "phase" and self.bar_name == "training":
                self.close()
            message = event.get("phase") or event.get("message") or f"early stop after epoch {event['epoch']}"
            print(f"[kd] {message}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------------
# arguments

def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Hub dataset id, folder with train/test files, or a file")
    parser.add_argument("--text-column", default="text", help="text column; join several with + (title+body)")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--valid-fraction", type=float, default=0.2)
    parser.add_argument("--train-samples", type=int, default=None, help="stratified subsample of train")
    parser.add_argument("--eval-samples", type=int, default=None, help="stratified subsample of valid/test")
    parser.add_argument("--max-length", type=int, default=150, help="truncation limit (padding is dynamic)")


def _add_train_args(parser: argparse.ArgumentParser, mode: str) -> None:
    _add_data_args(parser)
    parser.add_argument("--out", required=True, help="run folder to create, e.g. runs/my-run")
    defaults = TrainConfig(mode=mode, data=DataConfig(source="x"), student="x")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate (default {defaults.lr}; the seed recipe)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=["adamw", "adam"], default=defaults.optimizer,
                        help="adamw: warm-up + linear decay; adam: the seed's constant-rate Adam")
    parser.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--dropout", type=float, default=None,
                        help="student dropout override (distill default 0.3, as in the seed)")
    parser.add_argument("--patience", type=int, default=defaults.patience, help="early-stopping patience; 0 = off")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--log-every", type=int, default=defaults.log_every_steps, help="steps between step events")
    parser.add_argument("--no-teacher-cache", action="store_true", help="recompute teacher logits")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None,
                        help="autocast for training (accelerate); default: accelerate's config")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill_core", description="KD Studio: knowledge distillation "
                                     "of transformer text classifiers")
    commands = parser.add_subparsers(dest="command", required=True)

    finetune = commands.add_parser("finetune", help="fine-tune a model on labels (e.g. to make a teacher)")
    finetune.add_argument("--model", required=True, help="model spec: Hub id, folder, bundled:minilm-l6")
    _add_train_args(finetune, "finetune")

    distill = commands.add_parser("distill", help="distil a teacher into a student")
    distill.add_argument("--teacher", help="fine-tuned teacher spec")
    distill.add_argument("--student", help="student spec: Hub id, folder, truncate:N, config:L<n>-H<h>")
    distill.add_argument("--temperature", type=float, default=2.0)
    distill.add_argument("--alpha", type=float, default=0.5, help="weight of the label loss; 1 = labels only")
    distill.add_argument("--loss", choices=["kl", "mse"], default="kl", help="KD term")
    distill.add_argument("--config", type=Path, help="run a config.json (other options are then ignored)")
    _add_train_args(distill, "distill")
    for action in distill._actions:  # --config replaces the required options
        if action.dest in ("data", "out"):
            action.required = False

    evaluate = commands.add_parser("evaluate", help="test metrics of a model")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--reference", help="a second model spec (e.g. the teacher) to measure agreement with")
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="test")
    evaluate.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--seed", type=int, default=42, help="seed of the validation split")
    evaluate.add_argument("--out", type=Path, help="write the metrics JSON here")
    evaluate.add_argument("--quiet", action="store_true")
    _add_data_args(evaluate)

    bench = commands.add_parser("benchmark", help="CPU latency and throughput")
    bench.add_argument("--model", action="append", required=True, help="model spec (repeat for several)")
    bench.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    bench.add_argument("--seq-lens", type=int, nargs="+", default=[32, 64, 150])
    bench.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "int8"], default=["fp32"])
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--repeats", type=int, default=10)
    bench.add_argument("--out", type=Path)
    bench.add_argument("--quiet", action="store_true")

    push = commands.add_parser("push", help="upload a finished run's model with a model card")
    push.add_argument("--run", required=True, type=Path)
    push.add_argument("--repo-id", required=True, help="USER/NAME on the Hugging Face Hub")
    push.add_argument("--private", action="store_true")

    resume = commands.add_parser("resume", help="continue an interrupted or cancelled run from its last epoch")
    resume.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/NAME")
    resume.add_argument("--quiet", action="store_true")

    export = commands.add_parser("export", help="save a trained model at fp32, bf16 or int8 for serving")
    export.add_argument("--model", required=True, help="trained model: run folder, model folder or Hub id")
    export.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="bf16",
                        help="bf16: bfloat16 safetensors; int8: fp32 weights + a hint to quantize at load time")
    export.add_argument("--out", required=True, type=Path, help="new (or empty) folder to write")

    worker = commands.add_parser("worker", help="(internal) run a queued run folder; used by the dashboard")
    worker.add_argument("--run-dir", required=True, type=Path)

    listing = commands.add_parser("list", help="list runs in the run store")
    listing.add_argument("--runs-dir", type=Path, default=None)
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = DataConfig(source=args.data, text_column=args.text_column, label_column=args.label_column,
                      valid_fraction=args.valid_fraction, train_samples=args.train_samples,
                      eval_samples=args.eval_samples, max_length=args.max_length)
    common = dict(data=data, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                  warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed,
                  patience=args.patience or None, eval_batch_size=args.eval_batch_size, max_steps=args.max_steps,
                  log_every_steps=args.log_every, teacher_cache=not args.no_teacher_cache)
    if args.lr is not None:
        common["lr"] = args.lr
    if args.command == "finetune":
        return TrainConfig(mode="finetune", student=args.model, dropout=args.dropout, **common)
    if not args.teacher or not args.student:
        raise UserError("distill needs --teacher and --student (or --config runs/NAME/config.json)")
    return TrainConfig(mode="distill", student=args.student, teacher=args.teacher, temperature=args.temperature,
                       alpha=args.alpha, kd_loss=args.loss, dropout=0.3 if args.dropout is None else args.dropout,
                       **common)


# ----------------------------------------------------------------------------------------------------------------
# commands

def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs
    from .config import load_train_config
    from .train import execute, make_accelerator, prepare, run_record

    if getattr(args, "config", None):
        config = load_train_config(args.config)
        out = args.out or args.config.parent
    else:
        config = _config_from_args(args)
        out = Path(args.out)
    config.validate()
    out = Path(out)
    if getattr(args, "out", None) and ".." in Path(args.out).parts:
        # runs/../../etc/x would write wherever the '..' lead; the name check alone sees only the last part.
        raise UserError(f"--out {args.out!r} contains '..': give the run folder as runs/NAME or an absolute path")
    root, name = out.parent, out.name
    name = runs.sanitize_run_name(name)
    existing_config = getattr(args, "config", None) and Path(args.config).resolve().parent == out.resolve()
    # A file there (not only a non-empty folder) is refused: iterdir() on a file raised NotADirectoryError.
    if out.exists() and not existing_config and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"run folder {out} already exists: choose another --out or delete it")
    progress = ProgressPrinter(getattr(args, "quiet", False))
    accelerator = make_accelerator(getattr(args, "mixed_precision", None))
    # Every process has checked --out before any creates it (no race under accelerate launch / torchrun).
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        progress.quiet = True
    prepared = prepare(config, on_event=progress)  # every bad-input check happens before the folder exists
    if accelerator.is_main_process:
        if existing_config:
            runs.write_json_atomic(out / "config.json", run_record(prepared))
        else:
            runs.create_run(root, name, run_record(prepared))
    accelerator.wait_for_everyone()
    try:
        result = execute(prepared, out, accelerator=accelerator, on_event=progress)
    finally:
        progress.close()
    summary = {"run": str(out), "state": result["state"], "epochs_done": result["epochs_done"],
               "best_valid_accuracy": result["best_valid_accuracy"]}
    if result["eval"]:
        summary["test_accuracy"] = result["eval"]["student"]["accuracy"]
        if "teacher" in result["eval"]:
            summary["teacher_test_accuracy"] = result["eval"]["teacher"]["accuracy"]
            summary["agreement"] = result["eval"]["student"].get("agreement")
    return summary


def _cmd_worker(args: argparse.Namespace) -> dict[str, Any]:
    """A run folder created by the dashboard (config.json + status queued) -> trained in this process."""
    from . import jobs, runs
    from .config import load_train_config
    from .train import execute, prepare

    run_dir = args.run_dir
    try:
        config = load_train_config(run_dir / "config.json")
        runs.set_status(run_dir, "running", pid=__import__("os").getpid(), phase="preparing")
        prepared = prepare(config)
        result = execute(prepared, run_dir)
    except UserError as exc:
        runs.set_status(run_dir, "failed", error=str(exc))
        raise
    except Exception as exc:
        # execute() has recorded failures of training itself; this catches the rest (e.g. a model that fails to
        # load with an unexpected error), which would otherwise read as 'interrupted' once this process is gone.
        if runs.read_status(run_dir).get("state") not in runs.TERMINAL_STATES:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {first_line}")
        raise
    finally:
        try:
            jobs.start_queued(run_dir.parent)  # hand the freed slot to the next queued run
        except Exception:  # the scheduler is best-effort here; the UI also starts queued runs on each poll
            pass
    return {"run": str(run_dir), "state": result["state"]}


def _cmd_resume(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs
    from .config import load_train_config
    from .train import execute, prepare, read_checkpoint_state

    run_dir = args.run
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json): see `python -m distill_core list`")
    status = runs.read_status(run_dir)
    if status.get("state") in ("running", "queued"):
        raise UserError(f"run {run_dir} is {status['state']} (pid {status.get('pid')}): stop it before resuming")
    if status.get("state") == "done":
        raise UserError(f"run {run_dir} has already finished")
    if read_checkpoint_state(run_dir) is None:
        raise UserError(f"run {run_dir} has no checkpoint (it stopped before its first epoch ended): start a new "
                        "run instead")
    config = load_train_config(run_dir / "config.json")
    progress = ProgressPrinter(args.quiet)
    prepared = prepare(config, on_event=progress)
    runs.clear_stop(run_dir)
    try:
        result = execute(prepared, run_dir, on_event=progress, resume=True)
    finally:
        progress.close()
    summary = {"run": str(run_dir), "state": result["state"], "epochs_done": result["epochs_done"],
               "best_valid_accuracy": result["best_valid_accuracy"]}
    if result["eval"]:
        summary["test_accuracy"] = result["eval"]["student"]["accuracy"]
    return summary


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .inference import evaluate_spec

    data = DataConfig(source=args.data, text_column=args.text_column, label_column=args.label_column,
                      valid_fraction=args.valid_fraction, train_samples=args.train_samples,
                      eval_samples=args.eval_samples, max_length=args.max_length)
    report = evaluate_spec(args.model, data, split=args.split, reference=args.reference, seed=args.seed,
                           precision=args.precision, batch_size=args.batch_size,
                           on_event=ProgressPrinter(args.quiet))
    if args.out:
        from .runs import write_json_atomic

        write_json_atomic(args.out, report)
    return report


def _cmd_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from .inference import benchmark_specs

    rows = benchmark_specs(args.model, batch_sizes=args.batch_sizes, seq_lens=args.seq_lens,
                           precisions=args.precision, threads=args.threads, warmup=args.warmup,
                           repeats=args.repeats, on_event=ProgressPrinter(args.quiet))
    if args.out:
        from .runs import write_json_atomic

        write_json_atomic(args.out, {"rows": rows})
    return {"rows": rows}


def _cmd_push(args: argparse.Namespace) -> dict[str, Any]:
    from . import hub

    url = hub.push_run(args.run, args.repo_id, private=args.private)
    return {"url": url}


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from .export import export_model

    return export_model(args.model, args.out, args.precision)


def _cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    from . import runs

    return {"runs": runs.list_runs(args.runs_dir or runs.runs_root())}


COMMANDS = {"finetune": _cmd_train, "distill": _cmd_train, "evaluate": _cmd_evaluate,
            "benchmark": _cmd_benchmark, "push": _cmd_push, "worker": _cmd_worker, "resume": _cmd_resume, "list": _cmd_list,
            "export": _cmd_export}


def _quiet_libraries() -> None:
    """Our own bars carry the progress; the libraries' per-step bars and load reports only add noise."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("list",):
        _quiet_libraries()
    try:
        result = COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2, default=str))
    return 0

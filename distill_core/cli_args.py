"""The arguments of `python -m distill_core`: the parser, and the config a finetune / distill / pipeline command
line stands for.

A flag that sets a config field takes its help from that field (config.help_for), so `--help` and the dashboard
widget say the same words. Such flags default to None: "given on the command line" is "not None", which lets
``--preset`` fill exactly the settings the user left out (explicit flags > preset > config defaults).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from .config import KD_LOSS_NAMES, MIXED_PRECISIONS, OPTIMIZERS, DataConfig, TrainConfig, config_field, help_for
from .errors import UserError
from .presets import PRESETS, Preset, TeacherStage, get_preset

PRECISIONS = ["fp32", "bf16", "int8", "ort-fp32", "ort-int8"]  # ort-*: ONNX Runtime (onnx_serving.py)
# flag -> the config field it sets; the flag's dest is its name with dashes as underscores.
DATA_FLAGS = {"--data": "source", "--text-column": "text_column", "--label-column": "label_column",
              "--valid-fraction": "valid_fraction", "--test-fraction": "test_fraction",
              "--train-samples": "train_samples", "--eval-samples": "eval_samples", "--max-length": "max_length",
              "--transfer": "transfer", "--transfer-samples": "transfer_samples"}
TRAIN_FLAGS = {"--epochs": "epochs", "--lr": "lr", "--batch-size": "batch_size", "--optimizer": "optimizer",
               "--warmup-ratio": "warmup_ratio", "--weight-decay": "weight_decay", "--dropout": "dropout",
               "--attention-dropout": "attention_dropout",
               "--freeze-embeddings": "freeze_embeddings",
               "--patience": "patience", "--seed": "seed", "--eval-batch-size": "eval_batch_size",
               "--pad-to-multiple-of": "pad_to_multiple_of",
               "--max-steps": "max_steps", "--log-every": "log_every_steps", "--teacher-cache": "teacher_cache",
               "--mixed-precision": "mixed_precision"}
KD_FLAGS = {"--temperature": "temperature", "--alpha": "alpha", "--loss": "kd_loss",
            "--hidden-weight": "hidden_weight", "--attention-weight": "attention_weight",
            "--cosine-weight": "cosine_weight", "--layer-map": "layer_map"}
MODEL_FLAGS = {"--model": "student", "--student": "student", "--teacher": "teacher"}
FIELD_OF_DEST = {flag[2:].replace("-", "_"): name
                 for flag, name in {**DATA_FLAGS, **TRAIN_FLAGS, **KD_FLAGS, **MODEL_FLAGS}.items()}
DATA_FIELDS = frozenset(DATA_FLAGS.values())
# Optional counts the dashboard and the CLI take as 0 = unset (None in the config, where 0 is refused).
ZERO_IS_UNSET = frozenset({"train_samples", "eval_samples", "patience", "max_steps", "transfer_samples",
                           "pad_to_multiple_of"})
CHOICES = {"optimizer": OPTIMIZERS, "kd_loss": KD_LOSS_NAMES, "mixed_precision": MIXED_PRECISIONS}
# Settings a fine-tune leaves at the model's own (None) unless its command line sets them.
MODELS_OWN_IN_A_FINETUNE = ("dropout", "attention_dropout")
# What a pipeline's teacher fine-tune uses when neither the command line nor a preset says.
TEACHER_STAGE_DEFAULTS = TeacherStage(base="", epochs=3, lr=5e-5)
_TYPES = {"int": int, "float": float, "str": str}


# ----------------------------------------------------------------------------------------------------------------
# flags

def _add_field_flag(parser: argparse.ArgumentParser, flag: str, name: str, *, required: bool = False,
                    default_text: str | None = None) -> None:
    """A flag that sets config field ``name``: the field's type, choices and help, plus the default it gets."""
    spec = config_field(name)
    kind = str(spec.type).removesuffix(" | None")
    if default_text is None and spec.default not in (None, dataclasses.MISSING):
        default_text = str(spec.default)
    elif default_text is None and spec.default is None and name in ZERO_IS_UNSET:
        default_text = "0"
    text = help_for(name) + (f" Default: {default_text}." if default_text else "")
    kwargs: dict[str, Any] = {"default": None, "required": required, "help": text.replace("%", "%%")}
    if kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction  # --teacher-cache / --no-teacher-cache
    else:
        kwargs["type"] = _TYPES[kind]
    if name in CHOICES:
        kwargs["choices"] = list(CHOICES[name])
    parser.add_argument(flag, **kwargs)


def _add_data_args(parser: argparse.ArgumentParser, *, data_required: bool) -> None:
    for flag, name in DATA_FLAGS.items():
        _add_field_flag(parser, flag, name, required=data_required and name == "source")


def _add_train_args(parser: argparse.ArgumentParser, command: str) -> None:
    _add_data_args(parser, data_required=command == "finetune")
    parser.add_argument("--out", required=command != "distill", help="run folder to create, e.g. runs/my-run")
    for flag, name in TRAIN_FLAGS.items():
        # A fine-tune keeps the model's own dropout unless told (a teacher is trained as its authors did).
        own = command == "finetune" and name in MODELS_OWN_IN_A_FINETUNE
        shown = "the model's own" if own else None
        _add_field_flag(parser, flag, name, default_text=shown)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (results still go to stdout)")


def _add_kd_args(parser: argparse.ArgumentParser) -> None:
    for flag, name in KD_FLAGS.items():
        _add_field_flag(parser, flag, name)


def _add_preset_arg(parser: argparse.ArgumentParser, command: str) -> None:
    lines = [f"{name!r}: {preset.summary}" + (" (pipeline only)" if preset.teacher_stage and command == "distill"
                                              else " (loss settings only)" if preset.kind == "method" else "")
             for name, preset in PRESETS.items()]
    parser.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                        help=("a named recipe that sets every option not given on this command line; "
                              + "; ".join(lines)).replace("%", "%%"))


def _add_train_commands(commands: Any) -> None:
    finetune = commands.add_parser("finetune", help="fine-tune a model on labels (e.g. to make a teacher)")
    _add_field_flag(finetune, "--model", "student", required=True)
    _add_train_args(finetune, "finetune")

    distill = commands.add_parser("distill", help="distil a teacher into a student")
    _add_preset_arg(distill, "distill")
    _add_field_flag(distill, "--teacher", "teacher")
    _add_field_flag(distill, "--student", "student")
    _add_kd_args(distill)
    distill.add_argument("--config", type=Path, help="run a config.json (other options are then ignored)")
    _add_train_args(distill, "distill")

    pipeline = commands.add_parser("pipeline", help="fine-tune a teacher from a base model, then distil it (two "
                                   "runs: OUT-teacher, then OUT)")
    _add_preset_arg(pipeline, "pipeline")
    pipeline.add_argument("--base", help="base model to fine-tune into the teacher, e.g. bundled:minilm-l6")
    _add_field_flag(pipeline, "--student", "student")
    pipeline.add_argument("--teacher-epochs", type=int, default=None,
                          help=f"epochs of the teacher fine-tune. Default: {TEACHER_STAGE_DEFAULTS.epochs}.")
    pipeline.add_argument("--teacher-lr", type=float, default=None,
                          help=f"peak learning rate of the teacher fine-tune. Default: {TEACHER_STAGE_DEFAULTS.lr}.")
    pipeline.add_argument("--background", action="store_true", help="queue both stages in background workers (as "
                          "the Train page does) and return at once with JSON naming both run folders")
    _add_kd_args(pipeline)
    _add_train_args(pipeline, "pipeline")


def _add_estimate_command(commands: Any) -> None:
    estimate = commands.add_parser("estimate", help="how long a distill run (or, with --base, a pipeline) would "
                                   "take on this machine, calibrated on past runs or a short probe; JSON on stdout")
    _add_preset_arg(estimate, "pipeline")
    _add_field_flag(estimate, "--teacher", "teacher")
    _add_field_flag(estimate, "--student", "student")
    estimate.add_argument("--base", help="estimate a pipeline: the base model fine-tuned into the teacher first")
    estimate.add_argument("--teacher-epochs", type=int, default=None, help="epochs of a pipeline's teacher fine-tune")
    estimate.add_argument("--teacher-lr", type=float, default=None, help="learning rate of a pipeline's teacher "
                          "fine-tune (does not change the estimate; accepted so a pipeline command line fits)")
    estimate.add_argument("--runs-dir", type=Path, default=None, help="the run store whose past runs calibrate the "
                          "estimate. Default: $KD_RUNS_DIR or ./runs.")
    estimate.add_argument("--no-probe", action="store_true", help="never time the models (past runs or the "
                          "reference throughput only)")
    _add_kd_args(estimate)
    _add_train_args(estimate, "distill")


def _add_sweep_command(commands: Any) -> None:
    from .sweep import MAX_CELLS, METHODS

    sweep = commands.add_parser("sweep", help="distil one student per cell of a temperature x alpha grid (x seeds, "
                                "x methods): runs OUT-T2-a0.5-s42 ..., one at a time, sharing the teacher's cached "
                                f"logits; at most {MAX_CELLS} cells; JSON with one entry per cell and the best")
    _add_preset_arg(sweep, "distill")
    _add_field_flag(sweep, "--teacher", "teacher")
    _add_field_flag(sweep, "--student", "student")
    sweep.add_argument("--temperatures", type=float, nargs="+", required=True, metavar="T",
                       help="the temperatures to try, e.g. 1 2 4")
    sweep.add_argument("--alphas", type=float, nargs="+", required=True, metavar="A",
                       help="the alphas (weight of the label loss) to try, e.g. 0.1 0.5 0.9")
    sweep.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                       help="seeds to repeat every setting with (mean and spread per setting). Default: --seed.")
    sweep.add_argument("--methods", nargs="+", choices=list(METHODS), default=None, metavar="M",
                       help="loss terms to try besides T and alpha, each a method preset's: "
                            + ", ".join(f"{short} ({name})" for short, name in METHODS.items())
                            + ". Default: the loss options given (--loss ...).")
    for flag, name in KD_FLAGS.items():
        if name not in ("temperature", "alpha"):  # swept: --temperatures, --alphas
            _add_field_flag(sweep, flag, name)
    sweep.add_argument("--background", action="store_true", help="queue the cells in background workers (as the "
                       "dashboard does; one at a time) and return at once with JSON naming the group and its runs")
    _add_train_args(sweep, "sweep")


def _add_model_commands(commands: Any) -> None:
    evaluate = commands.add_parser("evaluate", help="test metrics of a model")
    evaluate.add_argument("--model", required=True, help="model to score: run folder, model folder or Hub id")
    evaluate.add_argument("--reference", help="a second model spec (e.g. the teacher) to measure agreement with")
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default=None,
                          help="which split to score. A local test file (the file given, or a folder's test.*) is "
                               "scored in full, every row; train, validation (and --eval-samples, or "
                               "--test-fraction on a single file) score the seeded splits a training run carves. "
                               "Default: test.")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="fp32",
                          help="weights used for inference (ort-*: ONNX Runtime; --reference runs at the same "
                               "precision). Default: %(default)s.")
    evaluate.add_argument("--batch-size", type=int, default=128, help="inference batch size. Default: %(default)s.")
    evaluate.add_argument("--seed", type=int, default=42,
                          help="seed of the validation split (use the run's seed). Default: %(default)s.")
    evaluate.add_argument("--out", type=Path, help="write the metrics JSON here")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars (results still go to stdout)")
    _add_data_args(evaluate, data_required=True)

    bench = commands.add_parser("benchmark", help="CPU latency and throughput")
    bench.add_argument("--model", action="append", required=True, help="model spec (repeat for several)")
    bench.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64],
                       help="batch sizes to time. Default: %(default)s.")
    bench.add_argument("--seq-lens", type=int, nargs="+", default=[32, 64, 150],
                       help="sequence lengths in tokens to time. Default: %(default)s.")
    bench.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"],
                       help="weight precisions to time (ort-fp32, ort-int8: ONNX Runtime, exported once per "
                            "model and cached, timed exactly like PyTorch). Default: %(default)s.")
    bench.add_argument("--threads", type=int, default=None, help="torch threads while timing. Default: torch's own.")
    bench.add_argument("--warmup", type=int, default=3, help="untimed calls per cell first. Default: %(default)s.")
    bench.add_argument("--repeats", type=int, default=20,
                       help="timed calls per model per cell, the models taking turns. Default: %(default)s.")
    bench.add_argument("--baseline", default=None,
                       help="the --model speed-ups are quoted against. Default: the largest model.")
    bench.add_argument("--out", type=Path, help="write the result (rows, speed-ups, machine, warnings) as JSON here")
    bench.add_argument("--quiet", action="store_true", help="no progress bars (results still go to stdout)")
    probe = commands.add_parser("probe", help="(internal) time models for the Train page's estimate; used by the "
                                "dashboard")
    probe.add_argument("--request", required=True, type=Path, help="the probe request (a JSON list of models)")
    bench_job = commands.add_parser("bench-job", help="(internal) run the Benchmark page's request; used by the "
                                                      "dashboard")
    bench_job.add_argument("--job-dir", required=True, type=Path, help="the job folder (request.json)")

    export = commands.add_parser("export", help="save a trained model at fp32, bf16 or int8 for serving, or as "
                                 "model.onnx for ONNX Runtime (ort-fp32, ort-int8)")
    export.add_argument("--model", required=True, help="trained model: run folder, model folder or Hub id")
    export.add_argument("--precision", choices=PRECISIONS, default="bf16",
                        help="bf16: bfloat16 safetensors; int8: fp32 weights + a hint to quantize at load time; "
                             "ort-fp32 / ort-int8: model.onnx (int8: dynamically quantized) + tokenizer + a README "
                             "saying how to run it with onnxruntime. Default: %(default)s.")
    export.add_argument("--out", required=True, type=Path, help="new (or empty) folder to write")


def _add_run_commands(commands: Any) -> None:
    push = commands.add_parser("push", help="upload a finished run's model with a model card")
    push.add_argument("--run", required=True, type=Path, help="the finished run folder, e.g. runs/NAME")
    push.add_argument("--repo-id", required=True, help="USER/NAME on the Hugging Face Hub")
    push.add_argument("--private", action="store_true", help="create the Hub repository as private")

    resume = commands.add_parser("resume", help="continue an interrupted or cancelled run from its last epoch")
    resume.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/NAME")
    resume.add_argument("--quiet", action="store_true", help="no progress bars (results still go to stdout)")
    resume.add_argument("--background", action="store_true", help="continue in a background worker (as the Runs "
                        "page does) and return at once with JSON naming the run and its worker's pid")

    delete = commands.add_parser("delete", help="delete finished runs (never a queued or running one: stop it "
                                 "first; never a showcase run)")
    delete.add_argument("--run", action="append", required=True, type=Path,
                        help="a run folder, e.g. runs/NAME, or a run name in $KD_RUNS_DIR (repeat for several)")
    delete.add_argument("--yes", action="store_true", help="delete without asking")

    rename = commands.add_parser("rename", help="rename a run that is not queued or running (runs that name it as "
                                 "their teacher are updated)")
    rename.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/NAME")
    rename.add_argument("--to", required=True, help="the new name: 1-64 of A-Z a-z 0-9 . _ -")

    worker = commands.add_parser("worker", help="(internal) run a queued run folder; used by the dashboard")
    worker.add_argument("--run-dir", required=True, type=Path, help="the queued run folder (config.json + status)")
    worker.add_argument("--resume", action="store_true", help="continue from the run's last completed epoch")

    listing = commands.add_parser("list", help="list runs in the run store")
    listing.add_argument("--runs-dir", type=Path, default=None,
                         help="the run store to list. Default: $KD_RUNS_DIR or ./runs.")

    showcase = commands.add_parser("showcase", help="build the showcase: a fine-tuned teacher and two distilled "
                                   "students from the bundled model and the embedded AG News sample (read-only runs)")
    showcase.add_argument("--runs-dir", type=Path, default=None,
                          help="the run store. Default: $KD_RUNS_DIR or ./runs (hosted mode: its gallery/).")
    showcase.add_argument("--recipe", choices=["full", "smoke"], default=None,
                          help="full (the measured recipe; default, or $KD_SHOWCASE_RECIPE) or smoke (a few steps)")
    showcase.add_argument("--quiet", action="store_true", help="no progress bars (results still go to stdout)")


def _add_report_command(commands: Any) -> None:
    from .report import DEFAULT_PRICE_PER_HOUR

    report = commands.add_parser("report", help="the stakeholder report: one self-contained HTML page comparing "
                                 "finished runs (a distillation run brings its teacher)")
    report.add_argument("--run", action="append", type=Path, default=[],
                        help="a finished run folder, e.g. runs/NAME, or a run name in $KD_RUNS_DIR (repeat for "
                             "several; all in one runs folder)")
    report.add_argument("--out", type=Path, default=Path("report.html"),
                        help="the HTML file to write. Default: %(default)s.")
    report.add_argument("--price-per-hour", type=float, default=DEFAULT_PRICE_PER_HOUR,
                        help="USD per hour of one CPU machine, for the cost per million predictions. "
                             "Default: %(default)s.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill_core", description="KD Studio: knowledge distillation "
                                     "of transformer text classifiers")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_commands(commands)
    _add_estimate_command(commands)
    _add_sweep_command(commands)
    _add_model_commands(commands)
    _add_run_commands(commands)
    _add_report_command(commands)
    return parser


# ----------------------------------------------------------------------------------------------------------------
# command line -> config

def _given(args: argparse.Namespace, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """The config fields set on the command line (flags left at None were not given)."""
    values = {}
    for dest, name in FIELD_OF_DEST.items():
        value = getattr(args, dest, None)
        if value is not None and (fields is None or name in fields):
            values[name] = None if (name in ZERO_IS_UNSET and value == 0) else value
    return values


def _preset(args: argparse.Namespace) -> Preset | None:
    """The --preset of a distill or pipeline command line, refused where it cannot apply."""
    name = getattr(args, "preset", None)
    if name is None:
        return None
    preset = get_preset(name)
    if args.command == "distill" and preset.teacher_stage is not None:
        raise UserError(f"preset {name!r} fine-tunes its own teacher first: run `python -m distill_core pipeline "
                        f"--preset {name!r} --data DATA --out runs/NAME` instead of distill")
    return preset


def _preset_values(preset: Preset, command: str) -> dict[str, Any]:
    values = {**preset.data, **preset.train}
    if preset.student:  # a method preset keeps the --student given
        values["student"] = preset.student
    if preset.data_source:
        values["source"] = preset.data_source
    if preset.teacher and command == "distill":  # a pipeline's teacher is made from --base
        values["teacher"] = preset.teacher
    return values


def teacher_stage_from_args(args: argparse.Namespace) -> TeacherStage:
    """How a pipeline command line makes its teacher: --base, --teacher-epochs, --teacher-lr, else the preset's
    teacher stage, else the defaults. UserError when no base model is named."""
    preset = _preset(args)
    stage = preset.teacher_stage if preset and preset.teacher_stage else TEACHER_STAGE_DEFAULTS
    base = args.base or stage.base
    if not base:
        hint = (f" (preset {preset.name!r} has a ready teacher: use `distill --preset {preset.name!r}`)"
                if preset else "")
        raise UserError(f"pipeline needs --base MODEL, the base model fine-tuned into the teacher, e.g. "
                        f"bundled:minilm-l6{hint}")
    epochs = stage.epochs if args.teacher_epochs is None else args.teacher_epochs
    return TeacherStage(base=base, epochs=epochs, lr=stage.lr if args.teacher_lr is None else args.teacher_lr)


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    """The DataConfig of a command line's data flags (evaluate; the training commands go through
    config_from_args)."""
    return DataConfig(**_given(args, DATA_FIELDS))


def _require(args: argparse.Namespace, values: dict[str, Any], preset: Preset | None) -> None:
    """The options argparse cannot require because a preset may supply them."""
    via = " (or --preset NAME, or --config runs/NAME/config.json)" if args.command == "distill" else ""
    if not values.get("source"):
        named = f" (preset {preset.name!r} names no dataset)" if preset else ""
        raise UserError(f"--data is required{named}: give a Hub dataset id, a folder with train/test files, or a "
                        "file")
    if not values.get("student"):
        raise UserError(f"{args.command} needs --student SPEC, e.g. truncate:3{via}")
    if args.command == "distill" and not values.get("teacher"):
        raise UserError(f"distill needs --teacher SPEC, a fine-tuned classifier{via}")
    if args.command == "distill" and not args.out:
        raise UserError("distill needs --out runs/NAME (or --config runs/NAME/config.json)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a finetune, distill or pipeline command line: the flags given, then --preset for the
    rest, then the config defaults. Not validated (the caller does)."""
    preset = _preset(args)
    values = _preset_values(preset, args.command) if preset else {}
    if args.command == "finetune":  # the model's own dropout unless --dropout / --attention-dropout say otherwise
        values.update(dict.fromkeys(MODELS_OWN_IN_A_FINETUNE))
    values.update(_given(args))
    if args.command == "pipeline":
        values["teacher"] = teacher_stage_from_args(args).base  # the teacher stage replaces it with its run
    _require(args, values, preset)
    data = DataConfig(**{name: values.pop(name) for name in DATA_FIELDS if name in values})
    mode = "finetune" if args.command == "finetune" else "distill"
    return TrainConfig(mode=mode, data=data, extra={"preset": preset.name} if preset else {}, **values)

"""BASELINE -- NOT PRODUCT CODE. The widely used Hugging Face `Trainer` knowledge-distillation recipe.

What a practitioner who does not use KD Studio writes (the `DistillationTrainer` of the HF blog posts and course
notebooks), in a faithful and competent version, so KD Studio is measured against a fair peer:

- a `Trainer` subclass whose `compute_loss` runs the teacher under `no_grad` on every training batch and returns
  `alpha * CE + (1 - alpha) * T^2 * KL(teacher || student)` (KL with reduction="batchmean", as in Hinton et al.);
- `DataCollatorWithPadding` (dynamic padding) and `train_sampling_strategy="group_by_length"` (the Trainer's
  `LengthGroupedSampler`; in transformers < 5 this was `group_by_length=True`): what a competent user turns on
  for short texts, and the same idea as KD Studio's length-grouped batches;
- AdamW `optim="adamw_torch_fused"` (the Trainer's default for torch >= 2.8; it runs on CPU), weight decay 0.01
  off biases and LayerNorm, linear warm-up over 10% of the steps then linear decay: KD Studio's defaults;
- validation once per epoch (`eval_strategy="epoch"`), no checkpoint during training, one `save_model` at the
  end, no reporting integrations;
- `--precision bf16` = `TrainingArguments(bf16=True, use_cpu=True)`: CPU autocast around forward and loss, the
  teacher's forward included (the Trainer wraps `compute_loss` in its autocast context).

One choice favours the peer: during evaluation `compute_loss` skips the teacher (the usual recipe runs it on the
validation batches too, only to report a KD loss nobody reads); `--teacher-in-eval` restores that.

Data, teacher and student are those of `python -m distill_core distill`: the rows come from
`distill_core.data.load_data` with the same DataConfig and seed (so the same 2,000 training rows and the same
validation rows), the student from `distill_core.models.build_student` (`truncate:3` of the teacher: identical
initial weights), so the only differences are the training loop and what it keeps.

    python benchmarks/trainer_recipe.py --teacher /tmp/m12runs/teacher --data ../shared/data/ag_news \\
        --train-samples 2000 --eval-samples 2000 --precision fp32 --out /tmp/trainer_fp32.json
"""
from __future__ import annotations

import time

PROCESS_T0 = time.perf_counter()  # before the heavy imports: they are part of "to a saved model"

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BASELINE: the Hugging Face Trainer KD recipe, for comparison")
    parser.add_argument("--teacher", required=True, help="teacher: a run folder or a save_pretrained folder")
    parser.add_argument("--student", default="truncate:3", help="student spec, built as distill_core builds it")
    parser.add_argument("--data", required=True, help="data source, as `distill_core distill --data`")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=2000, help="validation rows (0 = all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64, help="KD Studio's default")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of CE; 1 - alpha weights the KD term")
    parser.add_argument("--dropout", type=float, default=0.3, help="student hidden dropout (KD Studio's default)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--optim", default="adamw_torch_fused", help="TrainingArguments.optim")
    parser.add_argument("--no-group-by-length", action="store_true", help="plain random batches")
    parser.add_argument("--teacher-in-eval", action="store_true", help="run the teacher on validation batches too")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (smoke runs)")
    parser.add_argument("--save-dir", type=Path, default=None, help="where the model is saved (default: a temp dir)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)
    problems = [f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
                for name in ("epochs", "batch_size", "eval_batch_size", "max_length", "threads", "train_samples")
                if getattr(args, name) < 1]
    if not 0 <= args.alpha <= 1:
        problems.append(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.temperature <= 0:
        problems.append(f"--temperature must be > 0, got {args.temperature}")
    if problems:
        parser.error("; ".join(problems))
    return args


def make_trainer_class():
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """`Trainer` with the KD loss; the teacher is a frozen fp32 model in eval mode, run on every batch."""

        def __init__(self, *args, teacher, temperature: float, alpha: float, teacher_in_eval: bool, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher.eval()
            self.temperature, self.alpha, self.teacher_in_eval = temperature, alpha, teacher_in_eval
            # Where the time goes, for BENCHMARKS.md's phase table. On a CPU every op is synchronous, so the wall
            # clock around a call is the call's cost; two perf_counter reads per batch cost microseconds.
            self.seconds = {"teacher": 0.0, "validation": 0.0}

        def evaluate(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self.seconds["validation"] += time.perf_counter() - start

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)  # labels in inputs: outputs.loss is the CE term
            if not model.training and not self.teacher_in_eval:
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            start = time.perf_counter()
            with torch.no_grad():
                teacher_logits = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            if model.training:
                self.seconds["teacher"] += time.perf_counter() - start
            t = self.temperature
            kd = F.kl_div(F.log_softmax(outputs.logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1),
                          reduction="batchmean") * t**2
            loss = self.alpha * outputs.loss + (1 - self.alpha) * kd
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import numpy as np
    import torch
    import transformers
    from transformers import DataCollatorWithPadding, TrainingArguments

    from distill_core.config import DataConfig
    from distill_core.data import load_data
    from distill_core.models import build_student, load_classifier

    torch.set_num_threads(args.threads)
    marks: dict[str, float] = {"imports_done": time.perf_counter() - PROCESS_T0}
    data = load_data(DataConfig(source=args.data, train_samples=args.train_samples,
                                eval_samples=args.eval_samples or None, max_length=args.max_length), args.seed)
    teacher, tokenizer = load_classifier(args.teacher, data.label_names, require_trained=True)
    student = build_student(args.student, teacher, data.label_names, dropout=args.dropout)
    with torch.no_grad():  # a checksum of the initial weights: equal across runs means identical students
        initial_fingerprint = float(sum(p.double().sum() for p in student.parameters()))
    marks["models_loaded"] = time.perf_counter() - PROCESS_T0

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

    columns = ["example_id", "text"]
    train_set = data.splits["train"].map(tokenize, batched=True, remove_columns=columns)
    valid_set = data.splits["validation"].map(tokenize, batched=True, remove_columns=columns)
    marks["tokenised"] = time.perf_counter() - PROCESS_T0

    save_dir = args.save_dir or Path(tempfile.mkdtemp(prefix="kd-trainer-recipe-"))
    training_args = TrainingArguments(
        output_dir=str(save_dir), use_cpu=True, bf16=args.precision == "bf16",
        num_train_epochs=args.epochs, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio, lr_scheduler_type="linear", optim=args.optim, seed=args.seed,
        data_seed=args.seed,
        train_sampling_strategy="random" if args.no_group_by_length else "group_by_length",
        eval_strategy="epoch", save_strategy="no", logging_strategy="epoch", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0,
    )

    def accuracy(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}

    trainer = make_trainer_class()(
        model=student, args=training_args, train_dataset=train_set, eval_dataset=valid_set,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer, compute_metrics=accuracy,
        teacher=teacher, temperature=args.temperature, alpha=args.alpha, teacher_in_eval=args.teacher_in_eval,
    )
    train_start = time.perf_counter()
    output = trainer.train()
    marks["trained"] = time.perf_counter() - PROCESS_T0
    trainer.save_model(str(save_dir / "model"))
    marks["saved"] = time.perf_counter() - PROCESS_T0

    train_seconds = marks["trained"] - (train_start - PROCESS_T0)  # trainer.train(): epochs + evaluations
    phases = {  # the same names as KD Studio's phase timer, so BENCHMARKS.md can set them side by side
        "tokenising": marks["tokenised"] - marks["models_loaded"],
        "teacher_logits": trainer.seconds["teacher"],  # the teacher's forward on every training batch
        "training": train_seconds - trainer.seconds["teacher"] - trainer.seconds["validation"],
        "validation": trainer.seconds["validation"],
        "saving": marks["saved"] - marks["trained"],
    }
    history = trainer.state.log_history
    valid_per_epoch = [row["eval_accuracy"] for row in history if "eval_accuracy" in row]
    return {
        "recipe": "HF Trainer KD recipe (benchmarks/trainer_recipe.py)",
        "precision": args.precision,
        "optim": training_args.optim.value if hasattr(training_args.optim, "value") else str(training_args.optim),
        "train_sampling_strategy": training_args.train_sampling_strategy,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_train": len(train_set), "n_valid": len(valid_set),
        "student_initial_weight_sum": initial_fingerprint,
        "valid_accuracy_per_epoch": valid_per_epoch,
        "valid_accuracy": valid_per_epoch[-1] if valid_per_epoch else None,
        "train_seconds": train_seconds,
        "phases_s": {name: round(seconds, 1) for name, seconds in phases.items()},
        "train_runtime_reported": output.metrics.get("train_runtime"),
        "global_steps": trainer.state.global_step,
        "marks_s": marks,  # since this script's first line
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "saved_to": str(save_dir / "model"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from distill_core.errors import UserError

    try:
        result = run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"trainer recipe ({args.precision}): trained in {result['train_seconds']:.1f} s, saved at "
          f"{result['marks_s']['saved']:.1f} s, valid accuracy {result['valid_accuracy']}; wrote {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export (distill_core.export and `python -m distill_core export`) on the tiny teacher."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from distill_core import cli
from distill_core.errors import UserError
from distill_core.export import export_model, exported_precision, load_exported
from distill_core.inference import load_for_inference, predict_texts

TEXTS = ["The team won the championship match", "Shares of the bank fell after the merger talks"]
# bf16 keeps 8 bits of mantissa; through 2 tiny layers the logits move by ~1e-2 at most.
BF16_LOGITS_ATOL = 5e-2


def _stored_dtypes(folder) -> set[torch.dtype]:
    dtypes = set()
    for weights in folder.glob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            dtypes |= {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118 safe_open has keys() but no __iter__
    return dtypes


def test_bf16_export_stores_bf16_and_matches_fp32_logits(tiny_teacher_dir, tmp_path):
    out = tmp_path / "bf16"
    summary = export_model(tiny_teacher_dir, out, "bf16")

    assert summary["stored_dtype"] == "bfloat16"
    assert _stored_dtypes(out) == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["kd_studio_precision"] == "bf16"
    reference = predict_texts(load_for_inference(str(tiny_teacher_dir), "fp32"), TEXTS)["logits"]
    exported = load_exported(out)
    assert exported.precision == "bf16"
    assert next(exported.model.parameters()).dtype == torch.bfloat16
    logits = predict_texts(exported, TEXTS)["logits"]
    assert logits.dtype == reference.dtype
    assert abs(logits - reference).max() < BF16_LOGITS_ATOL


def test_bf16_export_is_about_half_the_fp32_size(tiny_teacher_dir, tmp_path):
    fp32 = export_model(tiny_teacher_dir, tmp_path / "fp32", "fp32")
    bf16 = export_model(tiny_teacher_dir, tmp_path / "bf16", "bf16")

    assert _stored_dtypes(tmp_path / "fp32") == {torch.float32}
    assert bf16["size_mb"] == pytest.approx(fp32["size_mb"] / 2, rel=0.05)


def test_int8_export_keeps_fp32_weights_and_quantizes_on_load(tiny_teacher_dir, tmp_path):
    out = tmp_path / "int8"
    export_model(tiny_teacher_dir, out, "int8")

    assert _stored_dtypes(out) == {torch.float32}
    assert exported_precision(out) == "int8"
    loaded = load_exported(out)
    assert loaded.precision == "int8"
    assert any("quantized" in type(m).__module__ for m in loaded.model.modules())


def test_exported_files_are_readable_by_others(tiny_teacher_dir, tmp_path):
    out = tmp_path / "shared"
    previous = os.umask(0o022)
    try:
        export_model(tiny_teacher_dir, out, "bf16")
    finally:
        os.umask(previous)
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in out.iterdir())


def test_refuses_a_non_empty_folder_and_leaves_it_alone(tiny_teacher_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(UserError, match="not empty"):
        export_model(tiny_teacher_dir, out, "bf16")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_empty_folder_is_used(tiny_teacher_dir, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    export_model(tiny_teacher_dir, out, "fp32")
    assert (out / "config.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--precision", "fp16"], "invalid choice"),
], ids=["unknown-precision"])
def test_cli_rejects_unknown_precision(tiny_teacher_dir, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--model", str(tiny_teacher_dir), "--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_model_is_one_line_error(tmp_path, capsys):
    code = cli.main(["export", "--model", "truncate:3", "--precision", "bf16", "--out", str(tmp_path / "x")])

    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_exports_and_prints_a_summary(tiny_teacher_dir, tmp_path, capsys):
    code = cli.main(["export", "--model", str(tiny_teacher_dir), "--precision", "bf16", "--out", str(tmp_path / "m")])

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["precision"] == "bf16" and (tmp_path / "m" / "model.safetensors").is_file()

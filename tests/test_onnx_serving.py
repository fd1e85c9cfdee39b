"""The ONNX Runtime backend (distill_core.onnx_serving, precisions ort-fp32 / ort-int8) on the tiny teacher.

One export per test session: the ONNX cache lives under KD_CACHE_DIR, which conftest points at one folder for the
whole session, so after the first test every other one reuses the exported graph (which is itself under test).
"""
from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from distill_core import cli
from distill_core.export import load_exported
from distill_core.inference import load_for_inference, predict_texts
from tests.conftest import make_rows

# 48 texts of 4-14 words, predicted as one padded batch (so padding is exercised), then a few one at a time.
TEXTS = [text for text, _ in make_rows(12, seed=7)]
# The same float32 arithmetic in another order (ORT fuses LayerNorm, GELU and attention): differences are a few
# float32 ulps of logits of order 1, measured 1e-8 here; 1e-4 is well above that and still far below anything
# that could change a prediction of a model whose logits differ in the second decimal.
FP32_LOGITS_ATOL = 1e-4
# Dynamic int8 rounds every weight to 1/255 of its column's range and every activation per batch: it may flip
# a prediction whose top two logits are close, and a random-weight tiny model has many such; a floor of 90% still
# fails on a broken quantization (wrong scales give near-chance agreement, 25% for 4 classes).
INT8_AGREEMENT_FLOOR = 0.90


@pytest.fixture(scope="module")
def fp32_logits(tiny_teacher_dir, one_torch_thread):
    return predict_texts(load_for_inference(str(tiny_teacher_dir), "fp32"), TEXTS)["logits"]


def test_ort_fp32_predicts_as_pytorch_fp32(tiny_teacher_dir, fp32_logits):
    served = load_for_inference(str(tiny_teacher_dir), "ort-fp32")
    logits = predict_texts(served, TEXTS)["logits"]

    assert logits.dtype == np.float32 and logits.shape == fp32_logits.shape
    np.testing.assert_array_equal(logits.argmax(-1), fp32_logits.argmax(-1))
    assert np.abs(logits - fp32_logits).max() < FP32_LOGITS_ATOL
    one_by_one = np.concatenate([predict_texts(served, [text])["logits"] for text in TEXTS[:4]])
    assert np.abs(one_by_one - fp32_logits[:4]).max() < FP32_LOGITS_ATOL  # other batch and sequence sizes


def test_ort_int8_agrees_with_fp32_and_is_smaller(tiny_teacher_dir, fp32_logits):
    fp32 = load_for_inference(str(tiny_teacher_dir), "ort-fp32")
    int8 = load_for_inference(str(tiny_teacher_dir), "ort-int8")
    logits = predict_texts(int8, TEXTS)["logits"]

    agreement = float((logits.argmax(-1) == fp32_logits.argmax(-1)).mean())
    assert agreement >= INT8_AGREEMENT_FLOOR
    assert not np.array_equal(logits, fp32_logits)  # it did quantize
    assert int8.model.size_mb < fp32.model.size_mb / 2  # int8 weights and embeddings: about a quarter


def test_a_second_use_reuses_the_cached_export(tiny_teacher_dir):
    first = load_for_inference(str(tiny_teacher_dir), "ort-fp32").model
    written = first.path.stat().st_mtime_ns
    second = load_for_inference(str(tiny_teacher_dir), "ort-fp32").model

    assert second.path == first.path and second.export_s == 0.0
    assert second.path.stat().st_mtime_ns == written


def test_export_cli_writes_a_model_onnx_that_runs_in_a_fresh_session(tiny_teacher_dir, tmp_path, capsys):
    out = tmp_path / "onnx"
    code = cli.main(["export", "--model", str(tiny_teacher_dir), "--precision", "ort-int8", "--out", str(out)])

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["precision"] == "ort-int8" and "model.onnx" in summary["files"]
    assert not list(out.glob("*.safetensors"))
    assert "onnxruntime" in (out / "README.md").read_text()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = load_exported(out)
    encoded = exported.tokenizer(TEXTS[:5], padding=True, return_tensors="np")
    feed = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
    (logits,) = session.run(["logits"], feed)
    assert exported.precision == "ort-int8" and exported.label_names[0] == "World"
    np.testing.assert_allclose(logits, predict_texts(exported, TEXTS[:5])["logits"], atol=1e-6)


def test_evaluate_and_benchmark_cli_accept_ort(tiny_teacher_dir, tiny_data_dir, tmp_path, capsys):
    scores = {}
    for precision in ("fp32", "ort-fp32"):
        out = tmp_path / f"eval-{precision}.json"
        assert cli.main(["evaluate", "--data", str(tiny_data_dir), "--model", str(tiny_teacher_dir),
                         "--precision", precision, "--out", str(out), "--quiet"]) == 0
        scores[precision] = json.loads(out.read_text())
    assert scores["ort-fp32"]["precision"] == "ort-fp32"
    assert scores["ort-fp32"]["accuracy"] == scores["fp32"]["accuracy"]

    bench_out = tmp_path / "bench.json"
    assert cli.main(["benchmark", "--model", str(tiny_teacher_dir), "--precision", "fp32", "ort-fp32", "ort-int8",
                     "--batch-sizes", "1", "--seq-lens", "8", "--warmup", "1", "--repeats", "2", "--threads", "1",
                     "--out", str(bench_out), "--quiet"]) == 0
    capsys.readouterr()
    rows = json.loads(bench_out.read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "ort-fp32", "ort-int8"]
    assert all(r["threads"] == 1 and r["repeats"] >= 2 and r["latency_ms_p50"] > 0 for r in rows)
    assert json.loads(bench_out.read_text())["machine"]["onnxruntime_version"] == onnxruntime.__version__
    assert rows[2]["size_mb"] < rows[1]["size_mb"] < rows[0]["size_mb"] * 1.2

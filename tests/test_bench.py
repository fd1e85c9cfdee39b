"""CPU benchmark (distill_core.bench) and precisions (distill_core.precision) on a real tiny BERT.

Never asserts a speed: the machine is shared."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distill_core.bench import (
    BenchSettings,
    benchmark_model,
    benchmark_models,
    forward_flops,
    matmul_peak_gflops,
)
from distill_core.bench_stats import headline, latency_summary, load_warning, paired_speedups, spread_warnings
from distill_core.errors import UserError
from distill_core.hardware import machine_info
from distill_core.precision import PRECISIONS, prepare_for_precision

ROW_KEYS = {
    "model", "precision", "batch_size", "seq_len", "threads", "latency_ms_p50", "latency_ms_p95",
    "latency_ms_mean", "latency_ms_std", "samples_per_s", "repeats", "warmup", "parameters", "size_mb",
    "torch_version", "gflops_per_s", "latency_ms_p25", "latency_ms_p75", "latency_ms_min", "rounds", "round_ms",
    "load_1m",
}
TINY_CONFIG = dict(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   num_labels=4)
SMALL_SETTINGS = BenchSettings(batch_sizes=(1, 2), seq_lens=(8,), precisions=PRECISIONS, warmup=1, repeats=3,
                               threads=1)


def _tiny_bert(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**{**TINY_CONFIG, **overrides})).eval()


def _random_inputs(batch_size: int = 16, seq_len: int = 8, vocab_size: int = 200) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
    }


@pytest.fixture(scope="module")
def tiny_bert() -> BertForSequenceClassification:
    return _tiny_bert()


@pytest.fixture(scope="module")
def bench_run(tiny_bert) -> tuple[list[dict], list[dict]]:
    events: list[dict] = []
    rows = benchmark_model(tiny_bert, name="tiny", settings=SMALL_SETTINGS, on_event=events.append)
    return rows, events


def test_one_row_per_cell_with_every_key(bench_run):
    rows, _ = bench_run
    assert [(r["precision"], r["batch_size"], r["seq_len"]) for r in rows] == [
        (p, b, 8) for p in PRECISIONS for b in (1, 2)
    ]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["model"] == "tiny"
        assert row["threads"] == 1
        # 3 timed passes, 2 per round: rounds of 2 until at least 3, so 2 rounds and 4 passes.
        assert row["repeats"] == 4 and row["rounds"] == 2 and len(row["round_ms"]) == 2 and row["warmup"] == 1
        assert row["torch_version"] == torch.__version__


def test_latency_statistics_are_consistent(bench_run):
    rows, _ = bench_run
    for row in rows:
        assert row["latency_ms_p95"] >= row["latency_ms_p75"] >= row["latency_ms_p50"] >= row["latency_ms_p25"]
        assert row["latency_ms_p25"] >= row["latency_ms_min"] > 0
        assert row["latency_ms_mean"] > 0 and row["latency_ms_std"] >= 0
        assert row["samples_per_s"] == pytest.approx(row["batch_size"] / (row["latency_ms_p50"] / 1e3))
        flops = forward_flops(BertConfig(**TINY_CONFIG), row["batch_size"], row["seq_len"])
        assert row["gflops_per_s"] == pytest.approx(flops / (row["latency_ms_p50"] / 1e3) / 1e9)


def test_parameters_are_those_of_the_fp32_model_for_every_precision(bench_run, tiny_bert):
    rows, _ = bench_run
    expected = sum(p.numel() for p in tiny_bert.parameters())
    assert {row["parameters"] for row in rows} == {expected}


def test_an_event_per_cell_for_a_progress_bar(bench_run):
    rows, events = bench_run
    assert [e["kind"] for e in events] == ["bench"] * len(rows)
    assert [e["cell"] for e in events] == list(range(1, len(rows) + 1))
    assert {e["cells"] for e in events} == {len(rows)}
    for event, row in zip(events, rows, strict=True):
        assert {k: event[k] for k in row} == row


def test_caller_model_is_left_as_it_was():
    model = _tiny_bert().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    benchmark_model(model, name="tiny", settings=BenchSettings(batch_sizes=(1,), seq_lens=(8,), precisions=PRECISIONS,
                                                                warmup=0, repeats=1, threads=1))
    assert model.training
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_threads_are_set_for_the_run_and_restored_afterwards(tiny_bert):
    original = torch.get_num_threads()
    seen: list[int] = []

    def record(event: dict) -> None:
        seen.append(torch.get_num_threads())

    try:
        torch.set_num_threads(2)
        settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), warmup=0, repeats=1, threads=1)
        rows = benchmark_model(tiny_bert, name="tiny", settings=settings, on_event=record)
        assert seen == [1] and rows[0]["threads"] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)


def test_threads_are_restored_when_the_run_fails(tiny_bert):
    original = torch.get_num_threads()

    def explode(event: dict) -> None:
        raise RuntimeError("cancelled")

    settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), warmup=0, repeats=1, threads=original + 1)
    with pytest.raises(RuntimeError, match="cancelled"):
        benchmark_model(tiny_bert, name="tiny", settings=settings, on_event=explode)
    assert torch.get_num_threads() == original


def test_default_threads_are_the_current_torch_setting(tiny_bert):
    settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), warmup=0, repeats=1)
    (row,) = benchmark_model(tiny_bert, name="tiny", settings=settings)
    assert row["threads"] == torch.get_num_threads()


def test_min_seconds_extends_the_timed_passes(tiny_bert):
    settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), warmup=0, repeats=1, threads=1, min_seconds=0.05)
    (row,) = benchmark_model(tiny_bert, name="tiny", settings=settings)
    assert row["repeats"] > 1
    assert row["latency_ms_mean"] * row["repeats"] >= 50.0 * (1 - 1e-9)


@pytest.mark.parametrize("precision", ["bf16", "int8"], ids=["bf16", "int8"])
def test_reduced_precision_logits_stay_close_to_fp32(precision):
    model = _tiny_bert()
    with torch.no_grad():
        # A random head gives logits of ~0.03 where any error bound is vacuous; scaling it spreads them over a
        # few units, like a trained head, so the bounds below mean something.
        model.classifier.weight.mul_(100)
    inputs = _random_inputs(batch_size=64)
    with torch.inference_mode():
        reference = model(**inputs).logits
        prepared, context = prepare_for_precision(model, precision)
        with context():
            logits = prepared(**inputs).logits
    assert prepared is not model
    assert logits.dtype == torch.float32
    assert (logits - reference).abs().max().item() < 0.25 * reference.std().item()
    top2 = reference.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.25  # where fp32 is nearly a tie, any precision may flip the argmax
    assert clear.sum().item() >= 32
    assert torch.equal(logits.argmax(-1)[clear], reference.argmax(-1)[clear])


def test_fp32_is_the_model_itself_in_eval_mode():
    model = _tiny_bert().train()
    prepared, context = prepare_for_precision(model, "fp32")
    assert prepared is model and not model.training
    with context():
        pass


def test_int8_is_smaller_when_linear_layers_dominate():
    # Few positions and a tiny vocabulary keep the embeddings small, so Linear weights are most of the model.
    model = _tiny_bert(vocab_size=50, hidden_size=128, num_hidden_layers=2, intermediate_size=512,
                       max_position_embeddings=16)
    settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), precisions=("fp32", "bf16", "int8"), warmup=0,
                             repeats=1, threads=1)
    size_mb = {row["precision"]: row["size_mb"] for row in benchmark_model(model, name="m", settings=settings)}
    fp32_bytes = sum(t.numel() * 4 for t in model.state_dict().values())
    assert size_mb["fp32"] == pytest.approx(fp32_bytes / 1e6, rel=0.02)  # safetensors adds only a JSON header
    assert size_mb["bf16"] < 0.6 * size_mb["fp32"]
    assert size_mb["int8"] < 0.5 * size_mb["fp32"]


def test_forward_flops_matches_a_hand_count():
    # B=2, L=8, H=32, I=64, one layer, 4 labels:
    #   projections + FFN  2*16*(4*32^2 + 2*32*64) = 32 * 8192 = 262144
    #   attention          4*2*8^2*32               = 16384
    #   pooler             2*2*32^2                 = 4096
    #   classifier         2*2*32*4                 = 512
    assert forward_flops(BertConfig(**TINY_CONFIG), 2, 8) == 283_136


def test_forward_flops_scales_with_layers_and_batch():
    one = forward_flops(BertConfig(**TINY_CONFIG), 1, 16)
    two_layers = forward_flops(BertConfig(**{**TINY_CONFIG, "num_hidden_layers": 2}), 1, 16)
    head = 2 * 32**2 + 2 * 32 * 4
    assert two_layers - head == pytest.approx(2 * (one - head))
    assert forward_flops(BertConfig(**TINY_CONFIG), 4, 16) == pytest.approx(4 * one)


@pytest.mark.parametrize(
    "settings, match",
    [
        (BenchSettings(precisions=("fp16",)), "unknown precision 'fp16'"),
        (BenchSettings(batch_sizes=(0,)), "batch_sizes must be positive"),
        (BenchSettings(seq_lens=()), "seq_lens is empty"),
        (BenchSettings(repeats=0), "repeats must be >= 1"),
        (BenchSettings(threads=0), "threads must be >= 1"),
    ],
    ids=["precision", "batch-size", "no-seq-lens", "repeats", "threads"],
)
def test_bad_settings_are_user_errors(tiny_bert, settings, match):
    with pytest.raises(UserError, match=match):
        benchmark_model(tiny_bert, name="tiny", settings=settings)


def test_sequence_longer_than_the_model_accepts_is_a_user_error():
    model = _tiny_bert(max_position_embeddings=16)
    with pytest.raises(UserError, match="at most 16 tokens"):
        benchmark_model(model, name="tiny", settings=BenchSettings(seq_lens=(32,)))


def test_matmul_peak_is_positive_and_restores_threads():
    original = torch.get_num_threads()
    assert matmul_peak_gflops(n=64, repeats=2, threads=1) > 0
    assert torch.get_num_threads() == original


def test_machine_info_describes_the_machine():
    info = machine_info()
    assert info["cpu_model"] and info["cpu_count"] >= 1 and info["usable_cores"] >= 1
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["torch_version"] == torch.__version__
    assert isinstance(info["cpu_flags"], list) and info["date"]


# ---- interleaving and what the timings say (bench_stats) ---------------------------------------------


def test_models_take_turns_in_rounds_after_their_warmup():
    models = {"a": _tiny_bert(), "b": _tiny_bert(num_hidden_layers=2)}
    calls: list[str] = []
    for name, model in models.items():
        model.register_forward_pre_hook(lambda module, args, name=name: calls.append(name))
    settings = BenchSettings(batch_sizes=(1,), seq_lens=(8,), warmup=1, repeats=4, round_passes=2, threads=1)
    result = benchmark_models(models, settings=settings)
    # warm-up a, b; round 1: a a b b; round 2 the other way round: b b a a (neither always runs second).
    assert calls == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a"]
    assert [(r["model"], r["rounds"], len(r["round_ms"])) for r in result["rows"]] == [("a", 2, 2), ("b", 2, 2)]
    assert {"cpu_model", "usable_cores", "threads", "torch_version", "date", "load_before", "load_after"} <= set(
        result["machine"])
    assert result["machine"]["threads"] == 1
    assert isinstance(result["warnings"], list)


def test_paired_speedup_is_the_median_of_per_round_ratios_with_its_quartiles():
    rows = [
        {"model": "teacher", "precision": "fp32", "batch_size": 1, "seq_len": 8, "parameters": 10,
         "round_ms": [20.0, 40.0, 22.0, 100.0, 18.0]},
        {"model": "student", "precision": "fp32", "batch_size": 1, "seq_len": 8, "parameters": 5,
         "round_ms": [10.0, 20.0, 11.0, 50.0, 10.0]},
    ]
    (speedup,) = paired_speedups(rows)  # the largest model is the baseline
    # Every round's ratio is ~2 although the load swung 5x between rounds; unpaired p50s would mislead.
    assert speedup["baseline"] == "teacher" and speedup["model"] == "student" and speedup["rounds"] == 5
    assert speedup["speedup"] == pytest.approx(2.0)
    assert speedup["speedup_p25"] == pytest.approx(2.0) and speedup["speedup_p75"] == pytest.approx(2.0)
    assert "student is 2.00x as fast as teacher (IQR 2.00-2.00x over 5 rounds)" in headline([speedup])


def test_rows_without_rounds_fall_back_to_the_throughput_ratio():
    rows = [{"model": "t", "precision": "fp32", "batch_size": 8, "seq_len": 8, "samples_per_s": 50.0},
            {"model": "s", "precision": "fp32", "batch_size": 8, "seq_len": 8, "samples_per_s": 150.0}]
    (speedup,) = paired_speedups(rows, "t")
    assert speedup["speedup"] == pytest.approx(3.0) and speedup["rounds"] == 0


@pytest.mark.parametrize(
    "latencies, flagged",
    [([10.0] * 18 + [11.0, 12.0], False),
     ([10.0, 10.0, 10.0, 10.0, 30.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0,
       10.0, 40.0], True),  # a tight middle but a tail: p95 over 1.5x the median
     ([10.0, 14.0, 8.0, 13.0, 9.0, 15.0, 7.0, 12.0], True)],  # a wide middle: IQR over 15% of the median
    ids=["tight", "long-tail", "wide-iqr"],
)
def test_spread_warning_flags_wide_timings(latencies, flagged):
    row = {"model": "m", "precision": "fp32", "batch_size": 1, "seq_len": 8, **latency_summary(latencies)}
    assert bool(spread_warnings([row])) is flagged


def test_busy_machine_warning_discounts_the_benchmarks_own_threads():
    assert load_warning([0.3], [2.2], usable_cores=2, threads=2) is None
    busy = load_warning([1.6], [3.0], usable_cores=2, threads=2)
    assert busy is not None and busy["kind"] == "busy" and "busy" in busy["message"]
    assert load_warning([], [], usable_cores=2, threads=1) is None  # no load average on this platform

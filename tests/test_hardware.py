"""Training precision: "auto" is bf16 autocast only where the hardware has native bf16, fp32 elsewhere, and a run
records which it used and why; fp16 without a CUDA GPU is refused before anything starts."""
from __future__ import annotations

import dataclasses
import json

import pytest
from runs_support import tiny_config, trained_run

from distill_core import allocator, cli, hardware, runs
from distill_core.config import SettingsError, TrainConfig
from distill_core.hardware import Hardware, resolve_precision

AVX2_ONLY = Hardware("cpu", cpu_flags=frozenset({"sse4_2", "avx2", "fma"}), cpu_capability="AVX2")
# avx512f without avx512_bf16 (Skylake/Ice Lake): oneDNN would still emulate bf16
AVX512_NO_BF16 = Hardware("cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512bw"}), cpu_capability="AVX512")
SAPPHIRE_RAPIDS = Hardware("cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
                           cpu_capability="AVX512")
ZEN4 = Hardware("cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}), cpu_capability="AVX512")


@pytest.mark.parametrize(("hw", "expected"), [
    (AVX2_ONLY, "no"), (AVX512_NO_BF16, "no"), (SAPPHIRE_RAPIDS, "bf16"), (ZEN4, "bf16"),
    (Hardware("cpu"), "no"),  # flags unknown (not Linux): stay on fp32
    (Hardware("cuda", cuda_bf16=True), "bf16"), (Hardware("cuda", cuda_bf16=False), "no"),
], ids=["avx2", "avx512-no-bf16", "amx", "avx512-bf16", "unknown-cpu", "cuda-bf16", "cuda-no-bf16"])
def test_auto_is_bf16_only_with_native_bf16(hw, expected):
    choice = resolve_precision("auto", hw)
    assert choice.resolved == expected
    assert choice.reason.startswith("bf16 autocast: auto" if expected == "bf16" else "fp32: auto")


def test_explicit_choices_are_kept_and_emulated_bf16_is_flagged():
    assert resolve_precision("no", SAPPHIRE_RAPIDS).resolved == "no"
    emulated = resolve_precision("bf16", AVX2_ONLY)
    assert emulated.resolved == "bf16" and "emulated" in emulated.reason
    assert "emulated" not in resolve_precision("bf16", SAPPHIRE_RAPIDS).reason
    assert resolve_precision("fp16", Hardware("cuda")).resolved == "fp16"


def test_cpu_flags_are_read_from_cpuinfo_text():
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nprocessor\t: 1\n"
    assert hardware.parse_cpu_flags(text) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert hardware.parse_cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert hardware.parse_cpu_flags("") == frozenset()


def test_cpu_model_is_the_first_processors_model_name():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t: avx2\n\n"
            "processor\t: 1\nmodel name\t: other\n")
    assert hardware.parse_cpu_model(text) == "AMD EPYC 9B14"
    assert hardware.parse_cpu_model("Features\t: fp asimd\n") == ""


@pytest.mark.skipif(hardware.cuda_available(), reason="fp16 is allowed where a CUDA GPU is present")
def test_fp16_on_cpu_is_refused_naming_the_flag(tiny_data_dir, tiny_teacher_dir, tmp_path, capsys):
    config = TrainConfig(mode="distill", data=tiny_config(tiny_data_dir, tiny_teacher_dir).data,
                         student="truncate:1", teacher=str(tiny_teacher_dir), mixed_precision="fp16")
    with pytest.raises(SettingsError) as caught:
        config.validate({"mixed_precision": "Mixed precision"})
    assert str(caught.value).startswith("Mixed precision fp16 needs a CUDA GPU")

    out = tmp_path / "runs" / "fp16"
    code = cli.main(["distill", "--data", str(tiny_data_dir), "--teacher", str(tiny_teacher_dir), "--student",
                     "truncate:1", "--out", str(out), "--mixed-precision", "fp16", "--quiet"])
    assert code != 0
    assert "--mixed-precision fp16 needs a CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("hw", "expected"), [(AVX2_ONLY, "no"), (SAPPHIRE_RAPIDS, "bf16")], ids=["no-bf16", "amx"])
def test_a_run_trains_in_and_records_the_resolved_precision(hw, expected, monkeypatch, tiny_data_dir,
                                                            tiny_teacher_dir, tmp_path, one_torch_thread):
    from distill_core import train

    monkeypatch.setattr(hardware, "detect", lambda: hw)
    used = []
    make = train.make_accelerator

    def spy(mixed_precision="auto"):
        accelerator = make(mixed_precision)
        used.append(str(accelerator.mixed_precision))
        return accelerator

    monkeypatch.setattr(train, "make_accelerator", spy)
    config = dataclasses.replace(tiny_config(tiny_data_dir, tiny_teacher_dir, epochs=1), max_steps=2)
    run_dir = trained_run(tmp_path / "runs", f"run-{expected}", config)

    assert config.mixed_precision == "auto"  # the default
    assert used == [expected]
    assert runs.read_status(run_dir)["state"] == "done"
    provenance = json.loads((run_dir / runs.CONFIG_FILE).read_text())["provenance"]
    assert provenance["mixed_precision_requested"] == "auto"
    assert provenance["mixed_precision"] == expected
    assert provenance["mixed_precision_reason"] == resolve_precision("auto", hw).reason
    # glibc's default unless KD_MALLOC_MMAP_THRESHOLD asks otherwise (allocator.py)
    recorded = runs.read_status(run_dir)["allocator"]
    assert recorded["malloc_mmap_threshold"] == (allocator.threshold_from_env() or None)
    # and the heap trims (between steps only if KD_MALLOC_TRIM_EVERY asks; after evaluation passes unless
    # KD_MALLOC_TRIM_AFTER_EVAL=0) wherever glibc has them
    glibc = recorded["malloc"] == "glibc"  # under a preloaded malloc (tcmalloc) the glibc trims are off
    assert recorded["malloc_trim_every_steps"] == (allocator.trim_every_from_env() if glibc else 0)
    assert recorded["malloc_trim_after_eval"] == (glibc and allocator.trim_after_eval_from_env())

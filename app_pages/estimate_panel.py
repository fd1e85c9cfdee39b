"""Train's time estimate before Start (its own module: how the estimate is made and told is one concern)."""
from __future__ import annotations

import streamlit as st

from distill_core.app import datasets, estimate
from distill_core.config import TrainConfig


def render(distill: TrainConfig, teacher: TrainConfig | None) -> None:
    sizes = estimate.split_sizes(distill, *datasets.estimate_rows(distill.data.source)) if distill.data.source \
        else None
    if not sizes:
        return
    seconds = estimate.estimate_seconds(distill, sizes)
    stages = f"distillation ~{estimate.format_duration(seconds)}"
    if teacher is not None:
        teacher_seconds = estimate.estimate_seconds(teacher, sizes)
        stages = f"teacher fine-tune ~{estimate.format_duration(teacher_seconds)} + {stages}"
        seconds += teacher_seconds
    st.info(f"**Estimated time: ~{estimate.format_duration(seconds)}** ({stages}) on {sizes[0]:,} training, "
            f"{sizes[1]:,} validation and {sizes[2]:,} test rows. This is an estimate from a measured CPU throughput "
            f"(~{estimate.REF_SAMPLES_PER_S:.0f} samples/s for MiniLM-L6 at batch 32, scaled by layers × hidden²); "
            "the live panel shows the real ETA.", icon=":material/schedule:")

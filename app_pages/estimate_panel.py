"""Train's time estimate before Start (its own module: how the estimate is made and told is one concern).

The page never times models in its own process: with no past run of this shape, a background probe
(distill_core.app.probe) times the chosen models while the estimate is told from a reference throughput, and
this panel (a fragment polling every 2 s meanwhile) picks the probe's result up when it lands.
"""
from __future__ import annotations

import streamlit as st

from app_pages import ui
from distill_core.app import datasets, estimate
from distill_core.config import TrainConfig

POLL_S = 2


def render(distill: TrainConfig, teacher: TrainConfig | None) -> None:
    sizes = estimate.split_sizes(distill, *datasets.estimate_rows(distill.data.source)) if distill.data.source \
        else None
    if not sizes:
        return
    told = estimate.estimate_job(distill, teacher, sizes, ui.session_root(), allow_probe=False)
    probing = told.source == "reference" and estimate.probe_in_background([c for c in (teacher, distill) if c])
    st.fragment(run_every=POLL_S if probing else None)(tell)(distill, teacher, sizes, probing)


def tell(distill: TrainConfig, teacher: TrainConfig | None, sizes: tuple[int, int, int], probing: bool) -> None:
    told = estimate.estimate_job(distill, teacher, sizes, ui.session_root(), allow_probe=False)
    if probing and (told.source != "reference"
                    or not estimate.probe_in_background([c for c in (teacher, distill) if c])):
        st.rerun()  # the probe landed (or gave up): a full rerun tells the new estimate and stops the polling
    stages = f"distillation ~{estimate.format_duration(told.stages[-1])}"
    if teacher is not None:
        stages = f"teacher fine-tune ~{estimate.format_duration(told.stages[0])} + {stages}"
    source = told.explanation
    if probing:
        source = ("from a reference throughput for now: these models are being timed on this machine in the "
                  "background (a few seconds)")
    st.info(f"**Estimated time: ~{estimate.format_duration(told.seconds)}** ({stages}) on {sizes[0]:,} training, "
            f"{sizes[1]:,} validation and {sizes[2]:,} test rows, {source}. The live panel shows the "
            "real progress and ETA.", icon=":material/schedule:")
    if told.long:
        st.warning(f"This run would take about {estimate.format_duration(told.seconds)} on this machine: fewer "
                   "train samples, fewer epochs or a smaller model make it shorter.", icon=":material/timer:")

"""Train's "Sweep T × α" form: start a sweep from the settings above it (each cell is those settings with its own
temperature, α and seed), told beforehand how many cells it makes and how long they will take.

Its own module so the Train page embeds one call, :func:`sweep_section`; the rules live in distill_core.sweep.
"""
from __future__ import annotations

import time

import streamlit as st

from app_pages import ui
from distill_core import sweep
from distill_core.app import estimate, sweeps
from distill_core.config import TrainConfig
from distill_core.errors import UserError

SWEEPS_PAGE = "app_pages/sweeps.py"
LABELS = {"temperatures": "Temperatures", "alphas": "α values", "seeds": "Seeds", "methods": "Methods",
          "group": "Sweep name"}
# A cell's problems in this form's words: the swept fields are named by the list that sets them.
FORM_NAMES = {**LABELS, "temperature": LABELS["temperatures"], "alpha": LABELS["alphas"], "seed": LABELS["seeds"]}


def _inputs(base_config: TrainConfig | None) -> tuple[str, str, str, list[str], str]:
    st.session_state.setdefault("sw_seeds", str(base_config.seed) if base_config else "42")
    st.session_state.setdefault("sw_name", f"sweep-{time.strftime('%m%d-%H%M%S')}")
    left, middle, right = st.columns(3)
    temperatures = left.text_input(LABELS["temperatures"], value="1, 2, 4", key="sw_temperatures",
                                   help="The temperatures T to try, separated by commas.")
    alphas = middle.text_input(LABELS["alphas"], value="0.1, 0.5, 0.9", key="sw_alphas",
                               help="The α values (weight of the label loss) to try, separated by commas.")
    seeds = right.text_input(LABELS["seeds"], key="sw_seeds", help="Every setting runs once per seed: several seeds "
                             "give each setting a mean and a spread.")
    methods = st.multiselect(LABELS["methods"], list(sweep.METHODS), key="sw_methods",
                             format_func=lambda m: f"{m} ({sweep.METHODS[m]})", placeholder="The loss settings above",
                             help="Optional: also try these methods' loss terms (each a method preset's; T and α "
                                  "come from the lists above). Empty: the loss settings above.")
    name = st.text_input(LABELS["group"], key="sw_name", max_chars=40, help="Letters, digits, . _ - ; each cell's run "
                         "is named NAME-T2-a0.5-s42.")
    return temperatures, alphas, seeds, methods, name


def sweep_section(base_config: TrainConfig | None, problems: list[str]) -> None:
    """The form: T, α and seed lists, optional methods, a name, the number of cells with their estimated time, and
    Start sweep, which queues the cells in the background and opens the Sweeps page on the new sweep."""
    temperatures, alphas, seeds, methods, name = _inputs(base_config)
    if base_config is None or problems:
        st.info("Fix the settings above first: every cell of a sweep starts from them."
                + "".join(f"\n- {p}" for p in problems), icon=":material/grid_on:")
        return
    t_values, found = sweeps.parse_values(temperatures, LABELS["temperatures"])
    a_values, more = sweeps.parse_values(alphas, LABELS["alphas"])
    s_values, most = sweeps.parse_values(seeds, LABELS["seeds"], int)
    found += more + most
    plan = sweep.SweepConfig(base_config, t_values, a_values, s_values, tuple(methods))
    if not found:
        found = sweep.problems(plan, FORM_NAMES)
    if found:
        st.error(f"{len(found)} sweep setting{'s' if len(found) > 1 else ''} to fix:\n\n"
                 + "\n".join(f"- {p}" for p in found), icon=":material/error:")
    else:
        told = sweeps.sweep_estimate(plan, ui.session_root())
        when = f": estimated ~{estimate.format_duration(told.seconds)} ({told.explanation})" if told else ""
        st.info(f"**{plan.size()} cells**{when}.", icon=":material/schedule:")
    if not st.button("Start sweep", type="primary", key="sw_start", icon=":material/grid_on:") or found:
        return
    try:
        with st.spinner("Checking the data and models…"):
            group = sweep.start_sweep(ui.session_root(), name, plan, names=FORM_NAMES)
    except UserError as exc:
        ui.show_error(exc)
        return
    del st.session_state["sw_name"]  # a fresh default name for the next sweep
    st.switch_page(SWEEPS_PAGE, query_params={"sweep": group.name})

"""A finished prediction comparison on the page: agreement, failures per side, the
histogram of differences, the inputs that differ most, and latency side by side.

The numbers are rollout/predictions.py's `Comparison`; this module only draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from components.prediction_charts import differences_figure
from rollout.invoke import describe_status
from rollout.predictions import Comparison, LatencySummary


@dataclass(frozen=True)
class Result:
    comparison: Comparison
    baseline: str
    candidate: str
    source: str
    at: float
    problem: str | None = None  # why the summary was not recorded


def show_result(result: Result, deployments: list[str]) -> None:
    found = result.comparison
    when = datetime.fromtimestamp(result.at).strftime("%H:%M:%S")
    st.caption(
        f"**{result.baseline}** (baseline) vs **{result.candidate}** (candidate) · inputs: "
        f"{result.source} · {found.progress_text()} · numbers agree within "
        f"{found.tolerance.words()} · at {when}"
    )
    if found.cancelled:
        st.warning(f"Comparison {found.progress_text()}.", icon=":material/stop_circle:")
    for note in found.notes:
        st.error(note)
    rate, agreed, base_failed, cand_failed = st.columns(4)
    rate.metric(
        "Agreement",
        "–" if found.agreement is None else f"{100 * found.agreement:.1f}%",
        help="Inputs whose answers agree, of every input compared: an input either side "
        "failed does not agree.",
    )
    agreed.metric("Agreed", f"{found.agreed:,} of {found.compared:,}")
    base_failed.metric(f"{result.baseline} failed", f"{found.baseline_failed:,}")
    cand_failed.metric(f"{result.candidate} failed", f"{found.candidate_failed:,}")
    st.caption(
        f"{found.failed_text()}; both answered 200 on {found.both_ok:,}. "
        + _statuses("baseline", found.baseline_statuses)
        + _statuses("candidate", found.candidate_statuses)
        + (
            f"{found.skipped:,} mirrored request(s) skipped: their deployments are not "
            f"{result.baseline} and {result.candidate}."
            if found.skipped
            else ""
        )
    )
    if result.problem:
        st.caption(f":material/sync_problem: Not recorded in the store: {result.problem}")
    st.plotly_chart(
        differences_figure(
            found.differences,
            baseline=result.baseline,
            candidate=result.candidate,
            deployments=deployments,
            tolerance=found.tolerance,
            dropped=found.differences_dropped,
        ),
        key="predict_histogram",
    )
    _differing(found, result)
    st.markdown("**Latency** · each side's answers (no answer, no latency)")
    st.dataframe(
        pd.DataFrame(
            [
                _latency_row(f"{result.baseline} (baseline)", found.baseline_latency),
                _latency_row(f"{result.candidate} (candidate)", found.candidate_latency),
            ]
        ),
        hide_index=True,
        key="predict_latency",
    )


def _statuses(side: str, statuses: tuple[tuple[int, int], ...]) -> str:
    if not statuses:
        return ""
    words = ", ".join(f"{describe_status(code)} × {n}" for code, n in statuses)
    return f"The {side}'s failures: {words}. "


def _differing(found: Comparison, result: Result) -> None:
    if not found.top:
        if found.both_ok:
            st.success(f"Every input both answered agrees ({found.agreed:,}).")
        return
    st.markdown(
        f"**The inputs that differ most** · {len(found.top):,} of the {found.disagreed:,} that "
        "disagree: a different shape or label first, then the largest difference"
    )
    rows = [
        {
            "input": row.index,
            "kind": row.kind,
            "largest |difference|": None if row.largest is None else round(row.largest, 6),
            "where": ", ".join(p or "(the answer)" for p in row.paths),
            "request": row.input,
            f"baseline ({result.baseline})": row.baseline,
            f"candidate ({result.candidate})": row.candidate,
        }
        for row in found.top
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="predict_differing")


def _latency_row(label: str, latency: LatencySummary) -> dict[str, Any]:
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f} ms"

    return {
        "deployment": label,
        "answered": latency.answered,
        "P50": ms(latency.p50_ms),
        "P95": ms(latency.p95_ms),
        "max": ms(latency.max_ms),
    }

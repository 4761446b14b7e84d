"""Candidate vs baseline, next to the traffic controls: what each deployment served over a
window, the comparison in words and numbers, and the capacity check before live traffic moves.

Everything here reads Azure Monitor metrics only (rollout/metrics.py), kept with the
session's reads (components/loading.py), so a widget interaction waits neither on the
control plane nor on the metrics API; the deployments come from the page's session reads.
The statistics are rollout/compare.py's, the load estimate rollout/capacity.py's.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import streamlit as st

from components import loading
from rollout import history
from rollout.capacity import (
    CapacityCheck,
    capacity_latency_ms,
    check_capacity,
    peak_live_per_minute,
)
from rollout.compare import (
    DEFAULT_DEGRADATION,
    ErrorComparison,
    compare_errors,
    compare_latency,
    count_text,
    evidence_needed,
    percent_text,
    points_text,
)
from rollout.endpoints import EndpointView
from rollout.errors import RolloutError
from rollout.evidence import Evidence, evidence_from_metrics
from rollout.metrics import (
    EndpointMetrics,
    Window,
    default_granularity,
    endpoint_metrics,
    granularity_choices,
)
from rollout.workspace import Workspace

SINCE_CHANGE = 0  # the window choice "since the last traffic change"
WINDOWS = {
    SINCE_CHANGE: "Since the last traffic change",
    15 * 60: "Last 15 minutes",
    30 * 60: "Last 30 minutes",
    3600: "Last hour",
    4 * 3600: "Last 4 hours",
    86400: "Last day",
}
DEFAULT_SPAN_S = 30 * 60  # the window when no traffic change is in the audit log
CAPACITY_SPAN_S = 30 * 60  # the peak a capacity check plans for: the last half hour's


@dataclass(frozen=True)
class PanelKeys:
    scope: str

    @classmethod
    def of(cls, workspace: str, endpoint: str) -> PanelKeys:
        return cls(f"evidence:{workspace}:{endpoint}")

    @property
    def baseline(self) -> str:
        return f"{self.scope}:baseline"

    @property
    def candidate(self) -> str:
        return f"{self.scope}:candidate"

    @property
    def window(self) -> str:
        return f"{self.scope}:window"

    @property
    def degradation(self) -> str:
        return f"{self.scope}:degradation"


# --- plain choices (no Streamlit) ----------------------------------------------------------


def default_pair(endpoint: EndpointView) -> tuple[str, str] | None:
    """(baseline, candidate): the deployment with the most live traffic, and the mirror
    target, else the other one with the least live traffic. None with fewer than two."""
    names = [d.name for d in endpoint.deployments]
    if len(names) < 2:
        return None
    by_live = sorted(endpoint.deployments, key=lambda d: (-d.live, names.index(d.name)))
    baseline = by_live[0].name
    mirrored = [d.name for d in endpoint.deployments if d.mirror and d.name != baseline]
    if mirrored:
        return baseline, mirrored[0]
    rest = [d for d in by_live if d.name != baseline]
    return baseline, min(rest, key=lambda d: (d.live, names.index(d.name))).name


def last_traffic_change(changes: Sequence[history.Change]) -> float | None:
    """When the last traffic change that was applied took effect (seconds since the epoch)."""
    applied = [c.at for c in changes if c.action == "traffic" and c.outcome == "Succeeded"]
    return applied[-1] if applied else None


def window_of(start: float | None, end: datetime, *, sub_minute: bool) -> Window:
    """From `start` (else the last DEFAULT_SPAN_S) to `end`, with a grain that fits it.

    Monitor counts in whole buckets aligned to multiples of the grain, so a window from a
    traffic change starts at the first bucket after it: the bucket the change fell in holds
    requests from before it too. Until that bucket begins the window is one empty bucket.
    """
    begin = (
        datetime.fromtimestamp(start, UTC)
        if start is not None
        else end - timedelta(seconds=DEFAULT_SPAN_S)
    )
    span = max(end - begin, timedelta(seconds=1))
    choices = granularity_choices(span, sub_minute=sub_minute)
    if choices:
        grain = default_granularity(span, choices)
    else:  # shorter than three of the finest buckets
        grain = timedelta(seconds=10) if sub_minute else timedelta(minutes=1)
    if start is not None:
        step = grain.total_seconds()
        begin = datetime.fromtimestamp(math.ceil(start / step) * step, UTC)
        end = max(end, begin + grain)
    return Window(begin, end, grain)


# --- metrics, cached -----------------------------------------------------------------------


def _window_metrics(
    ws: Workspace, endpoint: str, deployments: tuple[str, ...], start: float | None, span_s: int
) -> EndpointMetrics:
    """The endpoint's metrics from `start` (or over the last `span_s`) until now."""
    now = datetime.now(UTC)
    if start is None:
        start = (now - timedelta(seconds=span_s)).timestamp()
    window = window_of(start, now, sub_minute=ws.kind == "emulator")
    return endpoint_metrics(ws, loading.metrics_client(ws), endpoint, deployments, window)


def _metrics_key(endpoint: EndpointView, start: float | None, span_s: int) -> tuple[str, ...]:
    names = tuple(d.name for d in endpoint.deployments)
    return ("metrics", endpoint.name.lower(), *names, str(start), str(span_s))


def prefetch_capacity(ws: Workspace, endpoint: EndpointView) -> None:
    """Start reading what the capacity check needs, so that the first slider move that adds
    load to a deployment does not wait for the metrics API."""
    names = tuple(d.name for d in endpoint.deployments)
    loading.reads(ws).start_cached(
        _metrics_key(endpoint, None, CAPACITY_SPAN_S),
        lambda: _window_metrics(ws, endpoint.name, names, None, CAPACITY_SPAN_S),
    )


def window_metrics(
    ws: Workspace, endpoint: EndpointView, *, start: float | None, span_s: int
) -> EndpointMetrics:
    """Kept with the session's other reads (rollout/reads.py): a slider move reruns from the
    last answer, which is read again in the background once it is older than the TTL; only
    opening the page, or a new window, waits for the metrics API."""
    names = tuple(d.name for d in endpoint.deployments)
    read = loading.reads(ws).cached(
        _metrics_key(endpoint, start, span_s),
        lambda: _window_metrics(ws, endpoint.name, names, start, span_s),
        wait=loading.page_opened(),
    )
    return read.value


def evidence_of(data: EndpointMetrics, deployments: Sequence[str]) -> dict[str, Evidence]:
    return {
        d: evidence_from_metrics(
            d,
            requests=data.requests,
            status=data.status,
            latency=data.latency,
            window=data.window,
        )
        for d in deployments
    }


# --- the comparison on the page ------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _rate(e: Evidence, errors: int) -> str:
    return "–" if not e.classified else percent_text(errors / e.classified)


def evidence_rows(
    evidence: Mapping[str, Evidence], *, mirror_dimension: bool
) -> list[dict[str, str]]:
    """One row per deployment: requests live and mirrored apart, error rates, percentiles."""
    rows = []
    for name, e in evidence.items():
        row = {"deployment": name, "requests": count_text(e.requests)}
        if mirror_dimension:
            row |= {"live": count_text(e.live), "mirrored": count_text(e.mirrored)}
        else:
            row |= {"live": "–", "mirrored": "not told apart"}
        row |= {
            "errors": _rate(e, e.errors),
            "4xx": _rate(e, e.errors_4xx),
            "5xx": _rate(e, e.errors_5xx),
            # 424: the model itself failed (counted in 4xx too); "–" where not split by code
            "model (424)": "–" if e.model_errors is None else _rate(e, e.model_errors),
            "P50": _ms(e.p50_ms),
            "P95": _ms(e.p95_ms),
            "P99": _ms(e.p99_ms),
        }
        rows.append(row)
    return rows


def _start_of_window(ws: Workspace, endpoint: str, choice: int) -> tuple[float | None, str]:
    """(start, words): the window's start (None: the last `choice` seconds) and its name."""
    if choice != SINCE_CHANGE:
        return None, WINDOWS[choice].lower()
    try:
        changes = history.list_changes(workspace=ws.key, endpoint=endpoint)
    except (sqlite3.Error, OSError, ValueError) as exc:
        return None, f"the last 30 minutes (the audit log could not be read: {exc})"
    at = last_traffic_change(changes)
    if at is None:
        return None, "the last 30 minutes (no traffic change made from this dashboard yet)"
    when = datetime.fromtimestamp(at).strftime("%H:%M:%S")
    return at, (
        f"since the last traffic change, at {when} ({(time.time() - at) / 60:.0f} min ago; "
        "from the first whole metrics bucket after it)"
    )


def comparison(ws: Workspace, endpoint: EndpointView) -> None:
    """Pick baseline, candidate and window; show each deployment's evidence and the verdict."""
    pair = default_pair(endpoint)
    st.markdown("**Candidate vs baseline**")
    if pair is None:
        st.caption("A comparison needs two deployments.")
        return
    keys = PanelKeys.of(ws.key, endpoint.name)
    names = [d.name for d in endpoint.deployments]
    state = st.session_state
    for key, default in ((keys.baseline, pair[0]), (keys.candidate, pair[1])):
        if state.get(key) not in names:
            state[key] = default
    base_col, cand_col, window_col = st.columns(3)
    baseline = base_col.selectbox("Baseline", names, key=keys.baseline)
    candidate = cand_col.selectbox("Candidate", names, key=keys.candidate)
    choice: int = window_col.selectbox(
        "Window", list(WINDOWS), format_func=lambda c: WINDOWS[c], key=keys.window
    )
    if baseline == candidate:
        st.warning("Pick two different deployments to compare.", icon=":material/compare_arrows:")
        return
    start, window_words = _start_of_window(ws, endpoint.name, int(choice))
    try:
        data = window_metrics(ws, endpoint, start=start, span_s=int(choice) or DEFAULT_SPAN_S)
    except RolloutError as exc:
        st.error(f"The metrics could not be read: {exc}", icon=":material/error:")
        return
    for problem in data.problems.values():
        st.error(problem, icon=":material/error:")
    evidence = evidence_of(data, names)
    st.caption(f"Requests {window_words}, from Azure Monitor metrics.")
    st.dataframe(
        evidence_rows(evidence, mirror_dimension=data.mirror_dimension),
        hide_index=True,
        key=f"{keys.scope}:table",
    )
    if not data.mirror_dimension:
        st.caption(
            "Mirrored requests are not told apart here (Azure Monitor has no such dimension): "
            "a mirror target's requests are its mirrored copies plus direct calls."
        )
    b, c = evidence[baseline], evidence[candidate]
    st.markdown(_errors_line("Errors", compare_errors(b, c)))
    if b.model_errors or c.model_errors:
        st.markdown(_errors_line("Model errors (424)", compare_errors(b, c, kind="model")))
    latency = compare_latency(b, c)
    st.markdown(
        f":material/speed: **Latency**: {latency.words}"
        + (f" · :gray[{latency.note}]" if latency.note else "")
    )
    words_col, size_col = st.columns([3, 1])
    points = size_col.number_input(
        "Degradation to detect (pp)",
        min_value=0.1,
        max_value=50.0,
        value=DEFAULT_DEGRADATION * 100,
        step=0.5,
        format="%.1f",
        key=keys.degradation,
        help="The smallest rise of the candidate's error rate over the baseline's, in "
        "percentage points, that the estimate of the requests still needed plans to detect.",
    )
    try:
        needed = evidence_needed(b, c, degradation=float(points) / 100)
    except ValueError as exc:
        words_col.warning(f"No estimate for {points:g} pp: {exc}", icon=":material/warning:")
    else:
        words_col.markdown(f":material/hourglass_top: **Evidence**: {needed.words}")


def _errors_line(title: str, errors: ErrorComparison) -> str:
    icon = {"higher": ":red[:material/trending_up:]", "lower": ":green[:material/trending_down:]"}
    line = f"{icon.get(errors.finding, ':material/balance:')} **{title}**: {errors.words}"
    if errors.difference is not None and errors.interval is not None:
        low, high = errors.interval
        line += (
            f" · difference {points_text(errors.difference)} "
            f"({errors.confidence:.0%} interval {points_text(low)} to {points_text(high)}, "
            f"{errors.test})"
        )
    return line


# --- capacity, before live traffic moves ---------------------------------------------------


def capacity_checks(
    ws: Workspace,
    endpoint: EndpointView,
    before: tuple[Mapping[str, int], Mapping[str, int]],
    after: tuple[Mapping[str, int], Mapping[str, int]],
) -> tuple[list[CapacityCheck], str]:
    """A capacity check for each deployment whose load (live + mirrored share) grows from
    `before` to `after`, each given as (live, mirror); and why there are none when the
    metrics could not be read."""

    def load(side: tuple[Mapping[str, int], Mapping[str, int]], name: str) -> int:
        live, mirror = side
        return int(live.get(name, 0)) + int(mirror.get(name, 0))

    growing = [d for d in endpoint.deployments if load(after, d.name) > load(before, d.name)]
    if not growing:
        return [], ""
    try:
        data = window_metrics(ws, endpoint, start=None, span_s=CAPACITY_SPAN_S)
    except RolloutError as exc:
        return [], f"capacity not checked: the metrics could not be read ({exc})"
    if "traffic" in data.problems:
        return [], f"capacity not checked: {data.problems['traffic']}"
    mirrored = [] if data.mirror_dimension else list(endpoint.mirror)
    peak = peak_live_per_minute(data.requests, exclude=mirrored)
    evidence = evidence_of(data, [d.name for d in endpoint.deployments])
    busiest = max(endpoint.deployments, key=lambda d: d.live)
    return [
        check_capacity(
            d,
            share=load(after, d.name),
            peak_per_minute=peak,
            latency_ms=capacity_latency_ms(evidence[d.name], evidence[busiest.name]),
        )
        for d in growing
    ], ""


def capacity_warnings(
    ws: Workspace,
    endpoint: EndpointView,
    before: tuple[Mapping[str, int], Mapping[str, int]],
    after: tuple[Mapping[str, int], Mapping[str, int]],
) -> list[str]:
    """The words of every check that is not 'ok' (overload or tight)."""
    checks, problem = capacity_checks(ws, endpoint, before, after)
    words = [c.words for c in checks if c.level in ("overload", "tight")]
    return [*words, problem] if problem else words


def show_capacity(warnings: Sequence[str]) -> None:
    for words in warnings:
        st.warning(words[:1].upper() + words[1:], icon=":material/speed:")

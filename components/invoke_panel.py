"""Sending test requests to an endpoint: one request, the same request to every deployment,
and a burst counted by serving deployment against the configured split.

Scoring goes through rollout.invoke (plain HTTPS, as any client would call the endpoint);
the key or token comes from rollout.endpoints.scoring_credential and is never shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from rollout.endpoints import EndpointView, mask, scoring_credential
from rollout.errors import RolloutError
from rollout.invoke import (
    ABSENT,
    AnswerDiff,
    BurstSummary,
    InvokeResult,
    burst,
    describe_status,
    diff_answers,
    invoke,
    invoke_each,
    parse_request,
    summarize_burst,
)
from rollout.workspace import Workspace

SAMPLE_REQUEST = Path(__file__).resolve().parent.parent / "examples" / "sample-request.json"
MAX_BURST = 2000
MAX_CONCURRENCY = 32
_COLUMNS_PER_ROW = 3
_MAX_DIFF_ROWS = 500
ROUTED = "(endpoint)"  # not a valid deployment name, so it cannot clash with one
_HIGHLIGHT = "background-color: rgba(255, 165, 0, 0.35)"


def sample_request() -> str:
    """The example request shipped in examples/, or an empty object when it is missing."""
    try:
        return SAMPLE_REQUEST.read_text()
    except OSError:
        return "{}"


def invoke_panel(ws: Workspace, endpoint: EndpointView) -> None:
    """The request editor and the three ways to send it."""
    text = st.text_area(
        "Request body (JSON)",
        value=sample_request(),
        height=100,
        key="invoke_request",
        help=f"Preloaded with examples/{SAMPLE_REQUEST.name}; checked as JSON before sending.",
    )
    if endpoint.live_total == 0:
        st.warning(
            f"No deployment of '{endpoint.name}' has live traffic: a request to the endpoint "
            "will get 404. Send to one deployment instead, or give one live traffic.",
            icon=":material/warning:",
        )
    one, each, many = st.tabs(["One request", "Every deployment", "Burst"])
    with one:
        _one_request(ws, endpoint, text or "")
    with each:
        _every_deployment(ws, endpoint, text or "")
    with many:
        _burst(ws, endpoint, text or "")


# --- shared pieces --------------------------------------------------------------------------


def _split(endpoint: EndpointView) -> str:
    live = ", ".join(f"{d} {p}%" for d, p in endpoint.traffic.items() if p)
    return live or "no live traffic"


def _target_picker(endpoint: EndpointView, label: str, key: str) -> str | None:
    """None for the endpoint (routed by its traffic), else one deployment (by header)."""
    options = [ROUTED, *(d.name for d in endpoint.deployments)]

    def describe(option: str) -> str:
        if option == ROUTED:
            return f"the endpoint, routed by its traffic ({_split(endpoint)})"
        return f"deployment '{option}' only (azureml-model-deployment header)"

    choice = st.selectbox(label, options, format_func=describe, key=f"{key}_{endpoint.name}")
    return None if choice in (None, ROUTED) else str(choice)


def _body(text: str) -> bytes | None:
    """The request as bytes, or None after saying why it is not valid JSON."""
    try:
        return parse_request(text)
    except RolloutError as exc:
        st.error(f"Nothing was sent: {exc}.", icon=":material/data_object:")
        return None


def _credential(ws: Workspace, endpoint: EndpointView) -> str | None:
    if not endpoint.scoring_uri:
        st.error(f"Endpoint '{endpoint.name}' has no scoring URI yet; wait until it is created.")
        return None
    try:
        return scoring_credential(ws, endpoint.name)
    except RolloutError as exc:
        st.error(f"Could not get a key or token to call '{endpoint.name}': {exc}")
        return None


def _state_key(kind: str, endpoint: EndpointView) -> str:
    return f"invoke_last_{kind}_{endpoint.name}"


# --- one request ----------------------------------------------------------------------------


def _one_request(ws: Workspace, endpoint: EndpointView, text: str) -> None:
    picker, button = st.columns([5, 1], vertical_alignment="bottom")
    with picker:
        target = _target_picker(endpoint, "Send to", "invoke_target")
    if button.button("Send", key="invoke_send", type="primary", icon=":material/send:"):
        st.session_state.pop(_state_key("one", endpoint), None)
        body = _body(text)
        credential = _credential(ws, endpoint) if body is not None else None
        if body is not None and credential is not None:
            with st.spinner("Waiting for the answer…"):
                result = invoke(ws, endpoint.scoring_uri, credential, body, deployment=target)
            st.session_state[_state_key("one", endpoint)] = (target, result, mask(credential))
    last = st.session_state.get(_state_key("one", endpoint))
    if last is not None:
        target, result, masked = last
        st.caption(
            f"Sent to {'the endpoint (routed)' if target is None else repr(target)} "
            f"with the endpoint's key {masked}."
        )
        _show_result(result)


def _show_result(result: InvokeResult) -> None:
    status, latency, served = st.columns(3)
    status.metric("Status", describe_status(result.status).split(" ", 1)[0])
    latency.metric("Latency", f"{result.latency_ms:.0f} ms")
    served.metric("Served by", result.served_by or "-")
    if result.error:
        st.error(f"The request did not reach the endpoint: {result.error}")
        return
    if not result.ok:
        st.error(describe_status(result.status))
    st.code(result.pretty_body(), language="json")


# --- every deployment -----------------------------------------------------------------------


def _every_deployment(ws: Workspace, endpoint: EndpointView, text: str) -> None:
    names = [d.name for d in endpoint.deployments]
    st.caption(
        "The same request to each deployment by its header; traffic rules do not apply, so a "
        "deployment at 0% answers too. The first deployment is the reference."
    )
    if st.button(
        "Send to every deployment",
        key="invoke_each",
        icon=":material/compare_arrows:",
        disabled=not names,
        help=None if names else "This endpoint has no deployments.",
    ):
        st.session_state.pop(_state_key("each", endpoint), None)
        body = _body(text)
        credential = _credential(ws, endpoint) if body is not None else None
        if body is not None and credential is not None:
            with st.spinner(f"Asking {len(names)} deployment(s)…"):
                answers = invoke_each(ws, endpoint.scoring_uri, credential, body, names)
            st.session_state[_state_key("each", endpoint)] = answers
    last: dict[str, InvokeResult] | None = st.session_state.get(_state_key("each", endpoint))
    if last:
        _show_comparison(last, diff_answers(last))


def _show_comparison(results: dict[str, InvokeResult], diff: AnswerDiff) -> None:
    reference = diff.reference
    differing = [d for d in diff.deployments[1:] if diff.differences(d)]
    if len(diff.deployments) < 2:
        st.info("Only one deployment: nothing to compare it with.")
    elif not differing:
        st.success(f"All {len(diff.deployments)} deployments gave the same answer.")
    else:
        st.warning(
            f"Answers differ from '{reference}': "
            + "; ".join(f"'{d}' in {len(diff.differences(d))} value(s)" for d in differing)
        )
    names = list(diff.deployments)
    for start in range(0, len(names), _COLUMNS_PER_ROW):
        row = names[start : start + _COLUMNS_PER_ROW]
        columns = st.columns(min(len(names), _COLUMNS_PER_ROW))
        for column, name in zip(columns, row, strict=False):
            with column.container(border=True):
                _answer_card(name, results[name], diff, reference)
    _diff_table(diff)


def _answer_card(name: str, result: InvokeResult, diff: AnswerDiff, reference: str | None) -> None:
    st.markdown(f"**{name}**")
    served = f" · served by {result.served_by}" if result.served_by else ""
    st.caption(f"{describe_status(result.status)} · {result.latency_ms:.0f} ms{served}")
    if name == reference:
        st.markdown(":blue-badge[reference]")
    else:
        paths = diff.differences(name)
        if paths:
            shown = ", ".join(f"`{p}`" for p in paths[:5]) + (" …" if len(paths) > 5 else "")
            st.markdown(f":orange-badge[differs from {reference}] {shown}")
        else:
            st.markdown(f":green-badge[same as {reference}]")
    if result.error:
        st.error(result.error)
    else:
        st.code(result.pretty_body(), language="json")


def _cell(value: Any) -> str:
    if value is ABSENT:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _diff_table(diff: AnswerDiff) -> None:
    if len(diff.deployments) < 2:
        return
    rows = diff.rows[:_MAX_DIFF_ROWS]
    frame = pd.DataFrame(
        [[_cell(v) for v in row.values] for row in rows],
        index=pd.Index([row.path for row in rows], name="value"),
        columns=list(diff.deployments),
    )
    marks = pd.DataFrame(
        [[_HIGHLIGHT if d else "" for d in row.differs] for row in rows],
        index=frame.index,
        columns=frame.columns,
    )
    st.markdown("**Values side by side** (highlighted: differs from the reference)")
    st.dataframe(frame.style.apply(lambda _: marks, axis=None), width="stretch")
    if len(diff.rows) > _MAX_DIFF_ROWS:
        hidden = sum(row.any_differs for row in diff.rows[_MAX_DIFF_ROWS:])
        st.caption(
            f"{len(diff.rows) - _MAX_DIFF_ROWS} more values not shown ({hidden} of them differ)."
        )


# --- burst ----------------------------------------------------------------------------------


def _burst(ws: Workspace, endpoint: EndpointView, text: str) -> None:
    count_col, concurrency_col, target_col = st.columns([1, 1, 3], vertical_alignment="bottom")
    count = count_col.number_input(
        "Requests", min_value=1, max_value=MAX_BURST, value=100, step=10, key="burst_count"
    )
    concurrency = concurrency_col.number_input(
        "Concurrency",
        min_value=1,
        max_value=MAX_CONCURRENCY,
        value=2,
        key="burst_concurrency",
        help="Requests in flight at once. A deployment answers 429 when more than "
        "2 × max_concurrent_requests_per_instance × instances are pending.",
    )
    with target_col:
        target = _target_picker(endpoint, "Burst to", "burst_target")
    if st.button("Start burst", key="invoke_burst", icon=":material/bolt:"):
        st.session_state.pop(_state_key("burst", endpoint), None)
        body = _body(text)
        credential = _credential(ws, endpoint) if body is not None else None
        if body is not None and credential is not None:
            summary = _run_burst(
                ws, endpoint, credential, body, int(count), int(concurrency), target
            )
            if summary is not None:
                st.session_state[_state_key("burst", endpoint)] = (target, summary)
    last = st.session_state.get(_state_key("burst", endpoint))
    if last is not None:
        _show_burst(*last)


def _run_burst(
    ws: Workspace,
    endpoint: EndpointView,
    credential: str,
    body: bytes,
    count: int,
    concurrency: int,
    target: str | None,
) -> BurstSummary | None:
    bar = st.progress(0.0, text=f"0 of {count} requests answered")
    step = max(1, count // 100)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            bar.progress(done / total, text=f"{done} of {total} requests answered")

    try:
        result = burst(
            ws,
            endpoint.scoring_uri,
            credential,
            body,
            count=count,
            concurrency=concurrency,
            deployment=target,
            on_progress=progress,
        )
    except RolloutError as exc:
        bar.empty()
        st.error(str(exc))
        return None
    bar.empty()
    expected = {d.name: d.live for d in endpoint.deployments} if target is None else {target: 100}
    return summarize_burst(result, expected)


def _show_burst(target: str | None, summary: BurstSummary) -> None:
    failed = summary.sent - dict(summary.statuses).get(200, 0)
    sent, p50, p95, errors = st.columns(4)
    sent.metric("Requests", summary.sent)
    p50.metric("p50 latency", "-" if summary.p50_ms is None else f"{summary.p50_ms:.0f} ms")
    p95.metric("p95 latency", "-" if summary.p95_ms is None else f"{summary.p95_ms:.0f} ms")
    errors.metric("Not 200", failed)
    where = "the endpoint, routed by its traffic" if target is None else f"'{target}' only"
    st.markdown(f"**Served by deployment** · burst to {where}")
    shares = pd.DataFrame(
        [
            {
                "deployment": row.deployment,
                "served": row.served,
                "served %": round(row.served_pct, 1),
                "configured %": row.expected_pct,
                "difference (points)": None
                if row.expected_pct is None
                else round(row.served_pct - row.expected_pct, 1),
            }
            for row in summary.shares
        ]
    )
    st.dataframe(shares, hide_index=True, width="stretch")
    notes = []
    if summary.unattributed:
        notes.append(
            f"{summary.unattributed} answer(s) named no serving deployment and are not counted."
        )
    if target is None:
        notes.append("Mirrored copies are not counted: their answers never reach the client.")
    if notes:
        st.caption(" ".join(notes))
    st.markdown("**Status codes**")
    statuses = pd.DataFrame(
        [
            {"status": code, "meaning": describe_status(code).split(" ", 1)[1], "count": n}
            for code, n in summary.statuses
        ]
    )
    st.dataframe(statuses, hide_index=True, width="stretch")
    if summary.errors:
        st.caption("Transport errors: " + ", ".join(f"{name} × {n}" for name, n in summary.errors))

"""Compare the baseline's and the candidate's predictions on the same inputs, on the Rollout
page: the sample request, an uploaded JSON Lines file, or the emulator's mirrored sample.

Sending runs on a background thread (rollout/prediction_run.py); a fragment shows its
progress every half second with a Cancel, and the page reruns once when it is over. The
comparison itself is rollout/predictions.py's. The last result is kept in session state per
endpoint; each finished one is recorded in the dashboard's store (rollout/plan_store.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

import streamlit as st

from components import evidence_panel
from components.invoke_panel import SAMPLE_REQUEST, sample_request
from components.prediction_result import Result, show_result
from rollout import plan_store
from rollout.endpoints import EndpointView, scoring_credential
from rollout.errors import RolloutError
from rollout.prediction_inputs import (
    MAX_INPUTS,
    Inputs,
    mirrored_unavailable,
    parse_jsonl,
    read_mirrored_pairs,
    sample_inputs,
)
from rollout.prediction_run import PredictionRun, in_flight_for
from rollout.predictions import Comparison, Tolerance, compare_pairs
from rollout.workspace import Workspace

log = logging.getLogger(__name__)

SOURCES = {
    "sample": "Sample request",
    "jsonl": "JSON Lines file",
    "mirrored": "Mirrored sample",
}
_TICK_S = 0.5


@dataclass(frozen=True)
class Running:
    run: PredictionRun
    baseline: str
    candidate: str
    source: str


def _keys(ws: Workspace, endpoint: str) -> tuple[str, str]:
    scope = f"predictions:{ws.key}:{endpoint.lower()}"
    return f"{scope}:running", f"{scope}:last"


def prediction_panel(
    ws: Workspace, endpoint: EndpointView, *, pair: tuple[str, str] | None = None
) -> None:
    """The comparison of `pair` (baseline, candidate), or of two deployments chosen here."""
    running_key, last_key = _keys(ws, endpoint.name)
    _collect(ws, endpoint, running_key, last_key)
    st.subheader("Predictions")
    chosen = _pair(endpoint, pair)
    if chosen is None:
        return
    baseline, candidate = chosen
    source = st.radio(
        "Inputs",
        list(SOURCES),
        format_func=SOURCES.__getitem__,
        key="predict_source",
        horizontal=True,
    )
    ready = _source_inputs(ws, str(source))
    tolerance = _tolerance()
    running = st.session_state.get(running_key)
    if st.button(
        f"Compare {baseline} and {candidate}",
        key="predict_compare",
        type="primary",
        icon=":material/compare_arrows:",
        disabled=ready is None or tolerance is None or running is not None,
    ):
        assert ready is not None and tolerance is not None
        _start(ws, endpoint, baseline, candidate, ready, tolerance, running_key, last_key)
    if st.session_state.get(running_key) is not None:
        st.fragment(_progress, run_every=_TICK_S)(running_key)
    last = st.session_state.get(last_key)
    if isinstance(last, Result):
        show_result(last, [d.name for d in endpoint.deployments])


# --- choices --------------------------------------------------------------------------------


def _pair(endpoint: EndpointView, pair: tuple[str, str] | None) -> tuple[str, str] | None:
    names = [d.name for d in endpoint.deployments]
    if pair is not None and all(name in names for name in pair):
        st.caption(
            f"The plan's baseline **{pair[0]}** and candidate **{pair[1]}**, each asked by "
            "the `azureml-model-deployment` header (traffic rules do not apply)."
        )
        return pair
    if pair is not None:
        st.caption(f"The plan's {' and '.join(pair)} are not both deployments of it any more.")
    default = evidence_panel.default_pair(endpoint)
    if default is None:
        st.info(
            f"A comparison needs two deployments; {endpoint.name} has {len(names)}.",
            icon=":material/info:",
        )
        return None
    left, right = st.columns(2)
    baseline = left.selectbox(
        "Baseline", names, index=names.index(default[0]), key="predict_baseline"
    )
    candidate = right.selectbox(
        "Candidate", names, index=names.index(default[1]), key="predict_candidate"
    )
    if baseline == candidate:
        st.caption("The same deployment on both sides: a check of the comparison itself.")
    return str(baseline), str(candidate)


Source = tuple[str, Inputs | int]  # (source name, inputs to send, or the mirrored sample size)


def _source_inputs(ws: Workspace, source: str) -> Source | None:
    """What Compare will use, or None after saying why it cannot."""
    if source == "sample":
        text = st.text_area(
            "Request body (JSON)",
            value=sample_request(),
            height=100,
            key="predict_sample",
            help=f"Preloaded with examples/{SAMPLE_REQUEST.name}, as on the Test page.",
        )
        try:
            return "sample request", sample_inputs(text or "")
        except RolloutError as exc:
            st.error(f"{_sentence(str(exc))}", icon=":material/data_object:")
            return None
    if source == "jsonl":
        return _uploaded()
    reason = mirrored_unavailable(ws)
    if reason is not None:
        st.info(reason, icon=":material/block:")
        return None
    top = st.number_input(
        "Newest mirrored requests",
        min_value=1,
        max_value=MAX_INPUTS,
        value=200,
        key="predict_top",
        help="The emulator keeps the requests it mirrored lately, with the live and the "
        "mirrored answer: they are compared as they are, nothing is sent again.",
    )
    return "mirrored sample", int(top)


def _uploaded() -> Source | None:
    uploaded = st.file_uploader(
        "Request bodies, one JSON document per line",
        type=["jsonl", "ndjson", "json", "txt"],
        key="predict_upload",
    )
    take_first = st.checkbox(
        f"Take the first {MAX_INPUTS:,} when the file has more",
        key="predict_take_first",
        help=f"Otherwise a file of more than {MAX_INPUTS:,} request bodies is refused.",
    )
    if uploaded is None:
        st.caption("Blank lines are skipped; every other line must be a JSON request body.")
        return None
    cache = st.session_state.setdefault("predict_parsed", {})
    key = (uploaded.file_id, take_first)
    if key not in cache:
        cache.clear()  # one file at a time: a new upload's text replaces the last one's
        try:
            cache[key] = parse_jsonl(uploaded.getvalue(), name=uploaded.name, take_first=take_first)
        except RolloutError as exc:
            cache[key] = str(exc)
    parsed = cache[key]
    if isinstance(parsed, str):
        st.error(f"Nothing will be sent: {parsed}.", icon=":material/data_object:")
        return None
    taken = f"the first {len(parsed.bodies):,} of {parsed.total:,}" if parsed.truncated else ""
    st.caption(f"{parsed.source}: {taken or f'{len(parsed.bodies):,}'} request bodies.")
    return parsed.source, parsed


def _tolerance() -> Tolerance | None:
    left, right = st.columns(2)
    absolute = left.number_input(
        "Absolute tolerance",
        min_value=0.0,
        value=1e-6,
        format="%g",
        key="predict_abs_tol",
        help="Two numbers agree when they are at most this far apart…",
    )
    relative = right.number_input(
        "Relative tolerance",
        min_value=0.0,
        value=1e-6,
        format="%g",
        key="predict_rel_tol",
        help="…or when their difference is at most this share of the larger one. Labels, "
        "strings, booleans and null must be equal; a missing key or a longer list disagrees.",
    )
    try:
        return Tolerance(float(absolute), float(relative))
    except RolloutError as exc:
        st.error(_sentence(str(exc)))
        return None


# --- running ----------------------------------------------------------------------------------


def _start(
    ws: Workspace,
    endpoint: EndpointView,
    baseline: str,
    candidate: str,
    ready: Source,
    tolerance: Tolerance,
    running_key: str,
    last_key: str,
) -> None:
    source, what = ready
    st.session_state.pop(last_key, None)
    if isinstance(what, int):
        try:
            with st.spinner("Reading the mirrored requests…"):
                sample = read_mirrored_pairs(ws, endpoint.name, baseline, candidate, top=what)
        except RolloutError as exc:
            st.error(f"The mirrored sample could not be read: {exc}")
            return
        notes = [] if sample.read else ["The emulator has mirrored no request lately."]
        found = compare_pairs(sample.pairs, tolerance, skipped=sample.skipped, notes=notes)
        st.session_state[last_key] = _record(ws, endpoint, baseline, candidate, source, found)
        return
    if not endpoint.scoring_uri:
        st.error(f"Endpoint '{endpoint.name}' has no scoring URI yet; wait until it is created.")
        return
    try:
        credential = scoring_credential(ws, endpoint.name)
    except RolloutError as exc:
        st.error(f"Could not get a key or token to call '{endpoint.name}': {exc}")
        return
    pair = [d for d in endpoint.deployments if d.name in (baseline, candidate)]
    run = PredictionRun(
        ws,
        endpoint.scoring_uri,
        credential,
        what,
        baseline=baseline,
        candidate=candidate,
        tolerance=tolerance,
        in_flight=in_flight_for(pair),
    ).start()
    st.session_state[running_key] = Running(run, baseline, candidate, source)
    st.rerun()  # the Compare button above was drawn before the run began: disable it


def _progress(running_key: str) -> None:
    running = st.session_state.get(running_key)
    if not isinstance(running, Running):
        return
    if running.run.finished:
        st.rerun(scope="app")  # the page collects the result and draws it
    done, total = running.run.progress
    words = "stopping after those in flight" if running.run.cancelled else "answered by both"
    st.progress(done / total, text=f"{done:,} of {total:,} inputs {words}")
    st.button(
        "Cancel",
        key="predict_cancel",
        icon=":material/stop:",
        on_click=running.run.cancel,
        disabled=running.run.cancelled,
        help="Send no more inputs; what has been answered is compared.",
    )


def _collect(ws: Workspace, endpoint: EndpointView, running_key: str, last_key: str) -> None:
    """A run that is over becomes the endpoint's last result (and a record in the store)."""
    running = st.session_state.get(running_key)
    if not isinstance(running, Running) or not running.run.finished:
        return
    found = running.run.comparison()
    st.session_state[last_key] = _record(
        ws, endpoint, running.baseline, running.candidate, running.source, found
    )
    st.session_state.pop(running_key, None)


def _record(
    ws: Workspace,
    endpoint: EndpointView,
    baseline: str,
    candidate: str,
    source: str,
    found: Comparison,
) -> Result:
    at = time.time()
    problem = None
    try:
        plan_store.record_comparison(
            plan_store.ComparisonRecord.of(
                found,
                workspace=ws.key,
                endpoint=endpoint.name,
                baseline=baseline,
                candidate=candidate,
                source=source,
                at=at,
            )
        )
    except (sqlite3.Error, OSError) as exc:
        log.warning("prediction comparison not recorded: %s", exc)
        problem = str(exc)
    return Result(found, baseline, candidate, source, at, problem)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")

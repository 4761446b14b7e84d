"""Generate steady traffic to an endpoint from the Metrics page, and watch it in the charts.

Requests are spaced evenly at the chosen rate (a burst would trip the 429 limit of a small
deployment), sent from a background thread so the page and its live charts keep
refreshing, and stop at the end of the duration or on Stop. They go through
rollout.invoke, as any client's would, carrying the endpoint's key and the sample request
in examples/. Generating traffic changes no configuration, so read-only mode allows it;
on Azure the requests are real (billed, logged, served and mirrored as configured), so the
user confirms them first.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import streamlit as st

from components.invoke_panel import SAMPLE_REQUEST, sample_request
from components.workspace import is_read_only
from rollout.endpoints import EndpointView, get_endpoint, scoring_credential
from rollout.errors import RolloutError
from rollout.invoke import InvokeResult, describe_status, parse_request, send
from rollout.workspace import Workspace

MIN_RATE, MAX_RATE = 1, 50  # requests per second
MIN_DURATION, MAX_DURATION = 5, 120  # seconds
MAX_WORKERS = 16
MAX_IN_FLIGHT = 2 * MAX_WORKERS  # beyond this the endpoint is too slow for the rate: skip
REQUEST_TIMEOUT_S = 30.0
ROUTED = "(endpoint)"  # not a valid deployment name, so it cannot clash with one

_RUN = "traffic_generator_run"
_PENDING = "traffic_generator_pending"
_POLLING = "traffic_generator_polling"
_PROBLEM = "traffic_generator_problem"
_KEPT = "traffic_generator_inputs"  # the inputs' values, kept while another page is shown
_RATE = "traffic_rate"
_DURATION = "traffic_duration"


# --- the generator (no Streamlit) -----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to send: `rate` requests per second for `duration` seconds, to the endpoint
    (routed by its traffic) or to one deployment by header."""

    endpoint: str
    rate: int
    duration: int
    deployment: str | None = None

    @property
    def total(self) -> int:
        return self.rate * self.duration

    def problems(self) -> list[str]:
        found = []
        if not MIN_RATE <= self.rate <= MAX_RATE:
            found.append(f"the rate is {MIN_RATE} to {MAX_RATE} requests per second")
        if not MIN_DURATION <= self.duration <= MAX_DURATION:
            found.append(f"the duration is {MIN_DURATION} to {MAX_DURATION} seconds")
        return found

    def target_words(self) -> str:
        if self.deployment is None:
            return f"endpoint '{self.endpoint}', routed by its traffic"
        return f"deployment '{self.deployment}' of '{self.endpoint}' only (by header)"


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run, safe to read while it goes on."""

    plan: Plan
    elapsed: float
    sent: int
    answered: int
    skipped: int
    statuses: dict[int, int]
    served: dict[str, int]
    done: bool
    stopped: bool
    error: str | None

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        return min(self.elapsed / self.plan.duration, 1.0) if self.plan.duration else 1.0


@dataclass
class TrafficRun:
    """Sends a plan's requests from a background thread; `progress()` reads it any time."""

    plan: Plan
    ws: Workspace
    scoring_uri: str
    credential: str
    body: bytes
    started: float = field(default=0.0, init=False)
    finished: float | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _sent: int = field(default=0, init=False)
    _skipped: int = field(default=0, init=False)
    _in_flight: int = field(default=0, init=False)
    _statuses: Counter[int] = field(default_factory=Counter, init=False)
    _served: Counter[str] = field(default_factory=Counter, init=False)
    _error: str | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> TrafficRun:
        self.started = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"traffic-{self.plan.endpoint}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once every request sent has been answered (or failed)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self.finished is None

    def progress(self) -> Progress:
        with self._lock:
            end = self.finished if self.finished is not None else time.monotonic()
            answered = sum(self._statuses.values())
            return Progress(
                plan=self.plan,
                elapsed=end - self.started if self.started else 0.0,
                sent=self._sent,
                answered=answered,
                skipped=self._skipped,
                statuses=dict(sorted(self._statuses.items())),
                served=dict(self._served.most_common()),
                done=self.finished is not None,
                stopped=self._stop.is_set(),
                error=self._error,
            )

    def _tally(self, future: Future[InvokeResult]) -> None:
        with self._lock:
            self._in_flight -= 1
            if future.cancelled():  # stopped before it was sent
                self._sent -= 1
                return
            error = future.exception()
            if error is not None:
                self._statuses[0] += 1
                self._error = self._error or f"{type(error).__name__}: {error}"
                return
            result = future.result()
            self._statuses[result.status] += 1
            if result.served_by:
                self._served[result.served_by] += 1

    def _run(self) -> None:
        plan = self.plan
        limits = httpx.Limits(max_connections=MAX_WORKERS, max_keepalive_connections=MAX_WORKERS)
        pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="traffic")
        try:
            with httpx.Client(verify=self.ws.verify, timeout=REQUEST_TIMEOUT_S, limits=limits) as c:
                for i in range(plan.total):
                    due = self.started + i / plan.rate
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                    with self._lock:
                        if self._in_flight >= MAX_IN_FLIGHT:
                            self._skipped += 1
                            continue
                        self._in_flight += 1
                        self._sent += 1
                    future = pool.submit(
                        send, c, self.scoring_uri, self.credential, self.body,
                        deployment=plan.deployment,
                    )  # fmt: skip
                    future.add_done_callback(self._tally)
                pool.shutdown(wait=True, cancel_futures=self._stop.is_set())
        except Exception as exc:  # noqa: BLE001 - a background thread: report, never raise
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                self.finished = time.monotonic()


def summary(progress: Progress) -> str:
    """The outcome of a run in words."""
    p = progress
    rate = p.sent / p.elapsed if p.elapsed else 0.0
    how = "Stopped after" if p.stopped else "Sent"
    text = f"{how} {p.sent:,} requests in {p.elapsed:.0f} s ({rate:.1f}/s)"
    statuses = ", ".join(f"{n:,} × {code}" for code, n in sorted(p.statuses.items()))
    text += f": {statuses}" if statuses else ": no answers"
    if p.served:
        text += "; answered by " + ", ".join(f"{name} {n:,}" for name, n in p.served.items())
    text += "."
    for code in sorted(p.statuses):
        if code == 429:
            text += (
                " 429: too many requests were pending on a deployment; scale it out or lower "
                "the rate."
            )
        elif code != 200:
            text += f" {describe_status(code)}."
    if p.skipped:
        text += (
            f" {p.skipped:,} requests were not sent because {MAX_IN_FLIGHT} were already "
            "waiting: the endpoint answers slower than the rate."
        )
    return text


# --- the panel -------------------------------------------------------------------------------


def _current() -> TrafficRun | None:
    run = st.session_state.get(_RUN)
    return run if isinstance(run, TrafficRun) else None


def _clear_pending() -> None:
    st.session_state.pop(_PENDING, None)


def _start(ws: Workspace, plan: Plan) -> str | None:
    """Start a run; the reason it could not start otherwise.

    The endpoint is read again: the page's copy may be seconds old, and its traffic decides
    whether requests to it can be served at all.
    """
    if plan.problems():
        return "; ".join(plan.problems())
    try:
        endpoint = get_endpoint(ws, plan.endpoint)
        if not endpoint.scoring_uri:
            return f"endpoint '{endpoint.name}' has no scoring URI yet; wait until it is created"
        if plan.deployment is None and endpoint.live_total == 0:
            return (
                f"no deployment of '{endpoint.name}' has live traffic, so requests to the "
                "endpoint would get 404: send to one deployment, or give one live traffic"
            )
        body = parse_request(sample_request())
        credential = scoring_credential(ws, endpoint.name)
    except RolloutError as exc:
        return str(exc)
    st.session_state[_RUN] = TrafficRun(plan, ws, endpoint.scoring_uri, credential, body).start()
    st.session_state[_POLLING] = True
    return None


def _plan(endpoint: str) -> Plan:
    """The plan the inputs describe (read from session state, so callbacks can use it)."""
    state = st.session_state
    target = state.get(f"traffic_target_{endpoint}", ROUTED)
    return Plan(
        endpoint,
        int(state.get(_RATE, 5)),
        int(state.get(_DURATION, 60)),
        None if target in (None, ROUTED) else str(target),
    )


def _on_start(ws: Workspace, endpoint: str) -> None:
    """Start before the page is drawn, so that it shows Stop at once (confirm on Azure)."""
    plan = _plan(endpoint)
    if ws.kind == "azure":
        st.session_state[_PENDING] = plan
        return
    problem = _start(ws, plan)
    if problem:
        st.session_state[_PROBLEM] = problem


def _restore_inputs(endpoint: EndpointView, run: TrafficRun | None) -> None:
    """Give the inputs back what they showed before the page was left.

    Streamlit forgets a widget's value when a run does not draw it (another page), so on
    coming back they would show their defaults beside a run of another plan. The choices
    are kept under a key of our own; while a run goes on, the inputs show its plan.
    """
    state = st.session_state
    kept: dict[str, object] = state.setdefault(_KEPT, {_RATE: 5, _DURATION: 60})
    target = f"traffic_target_{endpoint.name}"
    if run is not None and run.running:
        kept.update({_RATE: run.plan.rate, _DURATION: run.plan.duration})
        if run.plan.endpoint == endpoint.name:
            kept[target] = run.plan.deployment or ROUTED
    names = {d.name for d in endpoint.deployments}
    for key, value in kept.items():
        if key.startswith("traffic_target_") and value not in (ROUTED, *names):
            continue
        if key not in state or (run is not None and run.running):
            state[key] = value


def _keep_inputs(endpoint: EndpointView) -> None:
    state = st.session_state
    kept: dict[str, object] = state.setdefault(_KEPT, {})
    for key in (_RATE, _DURATION, f"traffic_target_{endpoint.name}"):
        if key in state:
            kept[key] = state[key]


def traffic_generator(ws: Workspace, endpoint: EndpointView) -> None:
    """Rate, duration and target; Start (confirmed on Azure) or Stop; progress and outcome."""
    run = _current()
    running = run is not None and run.running
    _restore_inputs(endpoint, run)
    rate_col, duration_col, target_col = st.columns([1, 1, 2])
    rate_col.number_input(
        "Requests per second",
        min_value=MIN_RATE,
        max_value=MAX_RATE,
        key=_RATE,
        disabled=running,
    )
    duration_col.number_input(
        "Duration (s)",
        min_value=MIN_DURATION,
        max_value=MAX_DURATION,
        step=5,
        key=_DURATION,
        disabled=running,
    )
    options = [ROUTED, *(d.name for d in endpoint.deployments)]
    target_col.selectbox(
        "Send to",
        options,
        format_func=lambda o: (
            "the endpoint, routed by its traffic (mirroring applies)"
            if o == ROUTED
            else f"deployment '{o}' only (header; never mirrored)"
        ),
        key=f"traffic_target_{endpoint.name}",
        disabled=running,
    )
    _keep_inputs(endpoint)
    plan = run.plan if running and run is not None else _plan(endpoint.name)
    start_col, note_col = st.columns([1, 4], vertical_alignment="center")
    if running and run is not None:
        start_col.button(
            "Stop", key="traffic_stop", icon=":material/stop:", on_click=run.stop, width="stretch"
        )
    else:
        start_col.button(
            "Start",
            key="traffic_start",
            icon=":material/play_arrow:",
            type="primary",
            width="stretch",
            on_click=_on_start,
            args=(ws, endpoint.name),
        )
    words = (
        f"{plan.total:,} requests ({plan.rate}/s for {plan.duration} s) with "
        f"examples/{SAMPLE_REQUEST.name}, spaced evenly."
    )
    if is_read_only():
        words += " Allowed in read-only mode: it changes no configuration."
    note_col.caption(words)
    problem = st.session_state.pop(_PROBLEM, None)
    if problem:
        st.error(f"No traffic was sent: {problem}.", icon=":material/block:")
    if run is not None:
        st.fragment(_progress, run_every=1.0 if running else None)()
    pending = st.session_state.get(_PENDING)
    if isinstance(pending, Plan) and ws.kind == "azure":
        if pending.endpoint == endpoint.name:
            _confirm(ws, pending)
        else:
            _clear_pending()


def _progress() -> None:
    run = _current()
    if run is None:
        return
    p = run.progress()
    if p.done:
        if p.error:
            st.error(f"Traffic generation failed: {p.error}", icon=":material/error:")
        (st.warning if p.ok < p.sent else st.success)(summary(p))
        if st.session_state.pop(_POLLING, False):
            st.rerun()  # the whole page: stop polling, re-enable the inputs
        return
    st.progress(
        p.fraction,
        text=f"{p.plan.target_words()}: {p.sent:,} of {p.plan.total:,} sent, "
        f"{p.ok:,} answered 200 · {p.elapsed:.0f} of {p.plan.duration} s",
    )


@st.dialog("Send real traffic to Azure?", on_dismiss=_clear_pending)
def _confirm(ws: Workspace, plan: Plan) -> None:
    st.markdown(
        f"This sends **{plan.total:,} requests** ({plan.rate} per second for {plan.duration} s) "
        f"to {plan.target_words()}, in workspace **{ws.workspace_name}** on Azure."
    )
    st.markdown(
        "They are real requests: billed like any other, written to the endpoint's metrics and "
        "logs, served by its deployments and, when sent to the endpoint, mirrored as "
        "configured. No configuration changes."
    )
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="traffic_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    if confirm.button("Send", key="traffic_confirm", type="primary", width="stretch"):
        problem = _start(ws, plan)
        if problem:
            st.error(f"No traffic was sent: {problem}.")
            return
        _clear_pending()
        st.rerun()

"""The dashboard's speed on a remote-like workspace: AppTest reruns and a real browser.

Two emulators (temporary state directories), one with 6 endpoints and one with 30: the
focus endpoint `my-endpoint` has the tutorial's blue (100%) and green (0%) from
examples/, every other endpoint one deployment of a tiny score.py. Each is measured with
the emulator's `--arm-latency-ms` at 0 and at 150 ms (the same state directory, restarted
with the other value; metrics latency follows it).

AppTest (streamlit.testing.v1, in this process; median and p90 of the repetitions after
one warm-up):
  (a) page open in a new session, per page: a new AppTest whose first, timed run opens
      the page (nothing read yet: a user's first visit);
  (b) page switch in a session: Endpoints -> Traffic and back (the mean of the two),
      within the reads' TTL (rollout/reads.py), and (b*) with everything read older than
      the TTL (the page reads again before it shows);
  (c) slider move on Traffic (green's live slider to a new value: 20, 40, 60, 80, 20...);
  (c*) the same with everything read older than the TTL (a user who paused: the rerun
      is served from memory while the data is read again in the background);
  (d) preset click on Traffic (90/10 and 50/50 in turn);
  (e) Metrics time-range change (the "metrics_span" selectbox, a new span each time).
Headless Chromium (Playwright, /usr/bin/chromium) on `streamlit run app.py` against the
6-endpoint workspace at 0 ms, time from the click until the page is rendered (the run
has ended, as the app's websocket says, and the DOM shows the result):
  (f) page switch via the sidebar navigation, per page;
  (g) Metrics opened via the sidebar until its four Plotly charts are drawn;
  (h) Traffic apply: preset 90/10, Apply..., then Confirm -> the new split's success
      message (and back to 100/0 the same way; both directions are samples).

    make bench                                  # bench.run, bench.bench_metrics, then this
    .venv/bin/python -m bench.dashboard [--quick] [--only appt|chromium]
                                        [--endpoints 6,30] [--latency 0,150] [--reps N]

Everything runs on 127.0.0.1 in a temporary folder; every emulator and streamlit process
it starts is stopped at the end, also on error, Ctrl-C or SIGTERM. Results:
bench/results/dashboard.json; bench/README.md explains them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

if __package__ in (None, ""):  # run as a file: python bench/dashboard.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import REPO, BenchError, free_port

log = logging.getLogger("bench.dashboard")

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "dashboard.json"
ENDPOINT = "my-endpoint"
PAGES = {
    "Endpoints": "app_pages/endpoints.py",
    "Traffic": "app_pages/traffic.py",
    "Test": "app_pages/test.py",
    "Deployments": "app_pages/deployments.py",
    "Metrics": "app_pages/metrics.py",
}
# app_pages/metrics.py's SPANS after its default (15 minutes), then back to it.
SPANS_S = [1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 900]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
APPTEST_TIMEOUT_S = 180.0
BROWSER_TIMEOUT_MS = 60_000
START_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 180.0

# Targets: (scenario prefix, what is compared, limit in ms).
TARGET_SAME_MS = 50.0  # slider move / preset at 150 ms within 50 ms of 0 ms
TARGET_OPEN_MS = 500.0  # page open at 150 ms at most 0.5 s more than at 0 ms
TARGET_SWITCH_MS = 500.0  # browser: page switch
TARGET_CHARTS_MS = 800.0  # browser: Metrics with its four charts
TARGET_APPLY_MS = 1500.0  # browser: Traffic apply, Confirm -> shown

_TINY_SCORE = '''"""A tiny scoring script for the dashboard benchmark: imports nothing heavy."""

import json


def init():
    pass


def run(raw_data):
    return {"ok": True, "bytes": len(raw_data or "")}
'''


class Deadline:
    """The whole benchmark's time bound: checked between measurements."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.at = time.monotonic() + minutes * 60

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise BenchError(f"over the time bound of {self.minutes:g} min before {what}")


# --- the emulators ------------------------------------------------------------------------


@dataclass
class Emulator:
    """`python -m emulator serve` on one state directory, restartable with another latency."""

    state_dir: Path
    endpoints: int
    latency_ms: int | None = None
    process: subprocess.Popen[bytes] | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    @property
    def ws_path(self) -> str:
        f = self.facts
        return (
            f"/subscriptions/{f['subscription_id']}/resourceGroups/{f['resource_group']}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{f['workspace_name']}"
        )

    @property
    def ws_key(self) -> str:
        """rollout.workspace.Workspace.key of this workspace (the editor's keys use it)."""
        f = self.facts
        return f"{f['subscription_id']}/{f['resource_group']}/{f['workspace_name']}"

    def start(self, latency_ms: int) -> None:
        from emulator import server

        self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "emulator", "serve", "--state-dir", str(self.state_dir)]
        command += ["--port", "0", "--arm-latency-ms", str(latency_ms)]
        env = dict(os.environ)
        env.pop("AZUREML_CURRENT_CLOUD", None)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"the emulator exited at start; see {self.log_path}")
            try:
                self.facts = server.status(self.state_dir, timeout=2.0).as_dict()
                break
            except server.NotRunning:
                if time.monotonic() > deadline:
                    raise BenchError(f"the emulator did not start; see {self.log_path}") from None
                time.sleep(0.2)
        self.latency_ms = latency_ms

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # serve stops its instances on SIGTERM
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.facts["arm_url"],
            verify=self.facts["ca_cert"],
            headers={"Authorization": f"Bearer {self.facts['token']}"},
            params={"api-version": "2023-04-01"},
            timeout=60.0,
            limits=httpx.Limits(max_connections=8),
            **kwargs,
        )

    def wait_ready(self) -> None:
        """Every deployment Succeeded and answering a scoring request sent to it by name."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        body = (EXAMPLES / "sample-request.json").read_bytes()
        with self.http() as arm, httpx.Client(verify=self.facts["ca_cert"], timeout=30) as plane:

            def ready(endpoint: dict[str, Any]) -> bool:
                name = endpoint["name"]
                uri = endpoint["properties"]["scoringUri"]
                deployments = arm.get(f"{self.ws_path}/onlineEndpoints/{name}/deployments")
                deployments.raise_for_status()
                values = deployments.json()["value"]
                if any(d["properties"]["provisioningState"] != "Succeeded" for d in values):
                    return False
                key = arm.post(f"{self.ws_path}/onlineEndpoints/{name}/listKeys")
                key.raise_for_status()
                auth = {"Authorization": f"Bearer {key.json()['primaryKey']}"}
                for d in values:
                    headers = auth | {"azureml-model-deployment": d["name"]}
                    if plane.post(uri, content=body, headers=headers).status_code != 200:
                        return False
                return True

            while True:
                listed = arm.get(f"{self.ws_path}/onlineEndpoints")
                listed.raise_for_status()
                endpoints = listed.json()["value"]
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(ready, endpoints))
                if len(endpoints) == self.endpoints and all(answers):
                    return
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{sum(answers)} of {self.endpoints} endpoints ready after "
                        f"{READY_TIMEOUT_S:.0f} s; see {self.log_path}"
                    )
                time.sleep(0.5)

    def send(self, count: int) -> None:
        """`count` routed scoring requests to my-endpoint, so the Metrics charts have data."""
        with self.http() as arm:
            key = arm.post(f"{self.ws_path}/onlineEndpoints/{ENDPOINT}/listKeys").json()
            uri = arm.get(f"{self.ws_path}/onlineEndpoints/{ENDPOINT}").json()["properties"][
                "scoringUri"
            ]
        body = (EXAMPLES / "sample-request.json").read_bytes()
        headers = {"Authorization": f"Bearer {key['primaryKey']}"}
        with httpx.Client(verify=self.facts["ca_cert"], timeout=30) as plane:
            for _ in range(count):
                plane.post(uri, content=body, headers=headers).raise_for_status()


def _yaml(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _example(example: str, folder: Path, **changes: Any) -> Path:
    """A copy of examples/{example}.yml with `changes` and absolute model/code/conda paths."""
    data = yaml.safe_load((EXAMPLES / f"{example}.yml").read_text())
    data.update(changes)
    if isinstance(data.get("model"), dict) and "path" in data["model"]:
        data["model"]["path"] = str(EXAMPLES / data["model"]["path"])
    if "code_configuration" in data:
        code = data["code_configuration"]["code"]
        data["code_configuration"]["code"] = str(EXAMPLES / code)
    if isinstance(data.get("environment"), dict) and "conda_file" in data["environment"]:
        data["environment"]["conda_file"] = str(EXAMPLES / data["environment"]["conda_file"])
    return _yaml(folder, f"{example}-{data.get('endpoint_name', data['name'])}", data)


def seed(emulator: Emulator, folder: Path) -> None:
    """my-endpoint (blue 100%, green 0%) and endpoints-1 others with one tiny deployment."""
    from emulator.apply import apply_file

    state = emulator.state_dir
    code, model = folder / "tiny-code", folder / "tiny-model"
    code.mkdir(exist_ok=True)
    (code / "score.py").write_text(_TINY_SCORE)
    model.mkdir(exist_ok=True)
    (model / "weights.txt").write_text("tiny\n")

    apply_file(state, _example("endpoint", folder, name=ENDPOINT), if_missing=True)
    blue = _example("blue-deployment", folder)
    apply_file(state, blue, all_traffic=True, if_missing=True)
    apply_file(state, _example("green-deployment", folder), if_missing=True)

    def other(index: int) -> None:
        name = f"bench-ep-{index:02d}"
        apply_file(state, _example("endpoint", folder, name=name), if_missing=True)
        deployment = _example(
            "blue-deployment",
            folder,
            endpoint_name=name,
            model={"name": "tiny-model", "path": str(model)},
            code_configuration={"code": str(code), "scoring_script": "score.py"},
        )
        apply_file(state, deployment, all_traffic=True, if_missing=True)

    others = range(1, emulator.endpoints)
    if others:
        other(others[0])  # registers the tiny assets once, before the parallel applies
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(other, others[1:]))


# --- statistics and results ---------------------------------------------------------------


def _summary(samples: list[float]) -> dict[str, Any]:
    if len(samples) > 1:
        p90 = statistics.quantiles(samples, n=10, method="inclusive")[8]
    else:
        p90 = samples[0]
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(p90, 1),
        "samples_ms": [round(s, 1) for s in samples],
    }


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- AppTest ------------------------------------------------------------------------------


def _apptest(reps: int, emulator: Emulator, home: Path, deadline: Deadline) -> dict[str, Any]:
    """Scenarios (a) to (e) on one workspace at its current latency; name -> summary."""
    import streamlit as st
    from streamlit.logger import set_log_level
    from streamlit.testing.v1 import AppTest

    from components.traffic_editor import EditorKeys

    os.environ["EMULATOR_STATE_DIR"] = str(emulator.state_dir)
    os.environ["BLUEGREEN_HOME"] = str(home)
    os.environ.pop("BLUEGREEN_READ_ONLY", None)
    set_log_level("error")  # see checked()
    # A restarted emulator: no client of the one before (cache_resource holds the MLClient).
    st.cache_resource.clear()
    st.cache_data.clear()
    keys = EditorKeys.of(emulator.ws_key, ENDPOINT)
    results: dict[str, Any] = {}

    def new_app(page: str | None = None) -> AppTest:
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=APPTEST_TIMEOUT_S)
        app.query_params["endpoint"] = ENDPOINT
        checked(app.run(), "the first run")
        if page is not None:
            checked(app.switch_page(page).run(), page)
        return app

    def checked(app: AppTest, what: str) -> AppTest:
        # Clearing caches and setting widgets outside a script run is what this benchmark
        # means to do: Streamlit's warnings about it are noise. Every run resets the level.
        set_log_level("error")
        if app.exception:
            raise BenchError(f"{what} raised: {app.exception[0].value}")
        return app

    def measure(name: str, action: Callable[[int], float]) -> None:
        deadline.check(f"AppTest {name}")
        samples = []
        for rep in range(reps + 1):
            took = action(rep)
            if rep:  # the first is the warm-up
                samples.append(took)
        results[name] = _summary(samples)
        log.info("  %-34s median %7.1f ms", name, results[name]["median_ms"])

    for title, page in PAGES.items():

        def open_page(rep: int, page: str = page) -> float:
            app = AppTest.from_file(str(REPO / "app.py"), default_timeout=APPTEST_TIMEOUT_S)
            app.query_params["endpoint"] = ENDPOINT
            app.switch_page(page)
            st.cache_data.clear()
            started = time.perf_counter()
            app.run()
            took = _ms(started)
            checked(app, page)
            return took

        measure(f"(a) open {title}", open_page)

    app = new_app()

    def switch(rep: int) -> float:
        started = time.perf_counter()
        checked(app.switch_page(PAGES["Traffic"]).run(), "Traffic")
        there = _ms(started)
        started = time.perf_counter()
        checked(app.switch_page(PAGES["Endpoints"]).run(), "Endpoints")
        return (there + _ms(started)) / 2

    measure("(b) switch in a session", switch)

    def switch_stale(rep: int) -> float:
        with _stale(app):
            return switch(rep)

    measure("(b*) switch, data older than the TTL", switch_stale)

    app = new_app(PAGES["Traffic"])

    def slider(rep: int, *, cold: bool = False) -> float:
        widget = app.slider(key=keys.live("green"))
        current = widget.value
        assert isinstance(current, int), f"green's slider holds {current!r}"
        widget.set_value(10 + (current + 10) % 80)
        with _stale(app) if cold else contextlib.nullcontext():
            started = time.perf_counter()
            checked(widget.run(), "a slider move")
            return _ms(started)

    measure("(c) slider move", slider)
    measure("(c*) slider move, data older than the TTL", lambda rep: slider(rep, cold=True))

    def preset(rep: int) -> float:
        button = app.button(key=keys.preset(1 + rep % 2))  # 90/10, 50/50
        button.click()
        started = time.perf_counter()
        checked(button.run(), "a preset click")
        return _ms(started)

    measure("(d) preset click", preset)

    app = new_app(PAGES["Metrics"])

    def span(rep: int) -> float:
        box = app.selectbox(key="metrics_span")
        box.set_value(SPANS_S[rep % len(SPANS_S)])
        started = time.perf_counter()
        checked(box.run(), "a time-range change")
        return _ms(started)

    measure("(e) metrics range change", span)
    return results


@contextlib.contextmanager
def _stale(app: Any) -> Iterator[None]:
    """Everything the session has read is made older than the TTL (as after a pause) just
    before the block."""
    # AppTest's session state has `in` and [] (no get).
    held = app.session_state["workspace_reads"] if "workspace_reads" in app.session_state else {}  # noqa: SIM401
    for reads in held.values():
        reads.age(reads.ttl + 1.0)
    yield


# --- Chromium -----------------------------------------------------------------------------


@contextlib.contextmanager
def _dashboard(emulator: Emulator, home: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free port, in a session of its own; yields its URL."""
    port = free_port()
    env = dict(os.environ) | {
        "EMULATOR_STATE_DIR": str(emulator.state_dir),
        "BLUEGREEN_HOME": str(home),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("BLUEGREEN_READ_ONLY", None)
    env.pop("AZUREML_CURRENT_CLOUD", None)  # a cloud registered in this process only
    command = [
        *(sys.executable, "-m", "streamlit", "run", "app.py"),
        *("--server.address", "127.0.0.1", "--server.port", str(port)),
        *("--server.headless", "true", "--server.fileWatcherType", "none"),
    ]
    log_path = home / "streamlit.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise BenchError(f"streamlit exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_stcore/health", timeout=5).text == "ok":
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"streamlit was not healthy in time; see {log_path}")
            time.sleep(0.25)
        yield url
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


# The page is rendered: the run has ended (script state notRunning), no skeleton, and what
# the action shows is there. Polled on every animation frame, so the time is the frame's.
_SETTLED = """
const app = document.querySelector('[data-testid="stApp"]');
const settled = app && app.getAttribute('data-test-script-state') === 'notRunning'
  && !document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]');
"""
_PAGE_SHOWN = (
    "([title, charts]) => {"
    + _SETTLED
    + """
  if (!settled) return false;
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  if (!h1 || h1.innerText.trim() !== title) return false;
  const plots = document.querySelectorAll('[data-testid="stMain"] [data-testid="stPlotlyChart"]');
  const drawn = [...plots].filter(c => c.querySelector('svg.main-svg')).length;
  return drawn >= charts;
}"""
)
_APPLIED = (
    "(text) => {"
    + _SETTLED
    + """
  if (!settled || document.querySelector('[role="dialog"]')) return false;
  return [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stAlert"]')]
    .some(a => a.innerText.includes(text));
}"""
)


def _chromium(reps: int, emulator: Emulator, home: Path, deadline: Deadline) -> dict[str, Any]:
    """Scenarios (f) to (h) in headless Chromium; name -> summary."""
    from playwright.sync_api import Page, ViewportSize, WebSocket, sync_playwright
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    from tests.e2e import harness

    results: dict[str, Any] = {}

    def full_run_ended(payload: str | bytes) -> bool:
        # A whole-script run, not a fragment's (Metrics refreshes its charts every 10 s).
        if isinstance(payload, str):
            return False
        message = ForwardMsg()
        try:
            message.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - any frame that is not a ForwardMsg is not the end
            return False
        return (
            message.WhichOneof("type") == "script_finished"
            and message.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY
        )

    sockets: list[WebSocket] = []

    def timed(page: Page, action: Callable[[], None], js: str, arg: Any) -> float:
        """From `action` until a whole run has ended after it and `js(arg)` holds."""
        socket = sockets[-1]
        started = time.perf_counter()
        with socket.expect_event(
            "framereceived", predicate=full_run_ended, timeout=BROWSER_TIMEOUT_MS
        ):
            action()
        page.wait_for_function(js, arg=arg, polling="raf", timeout=BROWSER_TIMEOUT_MS)
        return _ms(started)

    with _dashboard(emulator, home) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            viewport: ViewportSize = {"width": 1280, "height": 900}  # as the e2e tier's
            context = browser.new_context(viewport=viewport, base_url=url)
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            page = context.new_page()
            harness.watch_script_runs(page)
            page.on(
                "websocket",
                lambda ws: sockets.append(ws) if ws.url.endswith("/_stcore/stream") else None,
            )
            harness.open_app(page, f"/?endpoint={ENDPOINT}")
            nav = page.locator('[data-testid="stSidebarNavLink"]')

            # (f) and (g): every page in turn, from the one before it; Metrics until charts.
            switches: dict[str, list[float]] = {title: [] for title in PAGES}
            charts: list[float] = []
            order = [*list(PAGES)[1:], "Endpoints"]
            for rep in range(reps + 1):
                deadline.check("the browser's page switches")
                for title in order:
                    link = nav.filter(has_text=title)
                    shown = timed(page, link.click, _PAGE_SHOWN, [title, 0])
                    drawn = shown
                    if title == "Metrics":
                        started = time.perf_counter()
                        page.wait_for_function(
                            _PAGE_SHOWN, arg=[title, 4], polling="raf", timeout=BROWSER_TIMEOUT_MS
                        )
                        drawn = shown + _ms(started)
                    if rep:
                        switches[title].append(shown)
                        if title == "Metrics":
                            charts.append(drawn)
            for title, samples in switches.items():
                results[f"(f) switch to {title}"] = _summary(samples)
            results["(g) Metrics with 4 charts drawn"] = _summary(charts)

            # (h): 90/10 and back to 100/0, Confirm -> the success message of the new split.
            harness.go_to(page, "Traffic")
            main = harness.main(page)
            applies: list[float] = []
            steps = [
                ("90/10", "live blue 90%, green 10% · mirror none"),
                ("100/0", "live blue 100% · mirror none"),
            ]
            for rep in range(reps + 1):
                deadline.check("the browser's traffic applies")
                for preset, after in steps:
                    harness.click(page, harness.button(main, preset))
                    harness.click(page, harness.button(main, "Apply…"))
                    confirm = harness.button(harness.dialog(page), "Confirm")
                    message = f"Traffic of {ENDPOINT} is now {after}."
                    took = timed(page, confirm.click, _APPLIED, message)
                    if rep:
                        applies.append(took)
            results["(h) traffic apply, Confirm -> shown"] = _summary(applies)
            for name, summary in results.items():
                log.info("  %-36s median %7.1f ms", name, summary["median_ms"])
        finally:
            with contextlib.suppress(Exception):
                browser.close()
    return results


# --- the report ---------------------------------------------------------------------------


def _cell(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "–"
    return f"{summary['median_ms']:.0f} / {summary['p90_ms']:.0f}"


def apptest_table(results: dict[str, Any]) -> str:
    """scenario x endpoints x latency as a markdown table: median / p90 ms, and 150-0."""
    sizes = sorted({int(k) for k in results})
    latencies = sorted({int(lat) for per in results.values() for lat in per})
    scenarios: list[str] = []
    for per in results.values():
        for by_name in per.values():
            scenarios += [n for n in by_name if n not in scenarios]
    header = ["scenario (median / p90 ms)"]
    for n in sizes:
        header += [f"{n} ep, {lat} ms" for lat in latencies]
        if len(latencies) == 2:
            header.append(f"{n} ep, Δ median")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name in scenarios:
        row = [name]
        for n in sizes:
            cells = [results[str(n)].get(str(lat), {}).get(name) for lat in latencies]
            row += [_cell(c) for c in cells]
            if len(latencies) == 2:
                low, high = cells
                row.append(f"{high['median_ms'] - low['median_ms']:+.0f}" if low and high else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def chromium_table(results: dict[str, Any]) -> str:
    lines = ["| scenario (6 endpoints, 0 ms) | median ms | p90 ms |", "|---|---:|---:|"]
    for name, s in results.items():
        lines.append(f"| {name} | {s['median_ms']:.0f} | {s['p90_ms']:.0f} |")
    return "\n".join(lines)


def targets(apptest: dict[str, Any], browser: dict[str, Any]) -> list[tuple[bool, str]]:
    """Each target with its verdict, on medians."""
    verdicts: list[tuple[bool, str]] = []
    for n, per in sorted(apptest.items(), key=lambda kv: int(kv[0])):
        low, high = per.get("0"), per.get("150")
        if not (low and high):
            continue
        for name in low:
            if name.startswith(("(c) ", "(c*) ", "(d) ")):
                limit, what = TARGET_SAME_MS, "within 50 ms of 0 ms"
            elif name.startswith(("(a) ", "(b*) ")):
                limit, what = TARGET_OPEN_MS, "at most 500 ms more than at 0 ms"
            else:
                continue
            delta = high[name]["median_ms"] - low[name]["median_ms"]
            verdicts.append(
                (
                    delta <= limit,
                    f"{name}, {n} endpoints: 150 ms is {delta:+.0f} ms vs 0 ms "
                    f"({high[name]['median_ms']:.0f} vs {low[name]['median_ms']:.0f}); "
                    f"target {what}",
                )
            )
    for name, s in browser.items():
        if name.startswith("(f) "):
            # The target for the Metrics page is its own (four charts, 0.8 s).
            limit = TARGET_CHARTS_MS if name.endswith("Metrics") else TARGET_SWITCH_MS
        elif name.startswith("(g) "):
            limit = TARGET_CHARTS_MS
        else:
            limit = TARGET_APPLY_MS
        verdicts.append(
            (
                s["median_ms"] <= limit,
                f"browser {name}: {s['median_ms']:.0f} ms; target ≤ {limit:.0f}",
            )
        )
    return verdicts


def render(results: dict[str, Any]) -> str:
    parts = []
    if results["apptest"]:
        parts += ["AppTest (ms, median / p90):", apptest_table(results["apptest"]), ""]
    if results["chromium"]:
        parts += ["Headless Chromium:", chromium_table(results["chromium"]), ""]
    verdicts = targets(results["apptest"], results["chromium"])
    if verdicts:
        parts.append("Targets (medians):")
        parts += [f"  {'PASS' if ok else 'FAIL'}  {what}" for ok, what in verdicts]
        passed = sum(ok for ok, _ in verdicts)
        parts.append(f"  {passed} of {len(verdicts)} targets pass")
    return "\n".join(parts)


# --- the command line ---------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of integers, not {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"non-negative integers, not {text!r}")
    return values


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 repetitions, only the 6-endpoint workspace"
    )
    parser.add_argument("--only", choices=["appt", "chromium"], help="one half of the benchmark")
    parser.add_argument(
        "--endpoints", type=_ints, default=[6, 30], help="workspace sizes (default 6,30)"
    )
    parser.add_argument(
        "--latency", type=_ints, default=[0, 150], help="ARM+metrics latencies, ms (default 0,150)"
    )
    parser.add_argument(
        "--reps", type=int, help="repetitions after the warm-up (default 7; 5 in the browser)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=60.0, help="time bound of the whole run (default 60)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    args = parser.parse_args(argv)
    if args.quick:
        args.endpoints = [6]
    if any(n < 1 for n in args.endpoints):
        parser.error("--endpoints: every workspace has at least my-endpoint")
    if any(lat > 10_000 for lat in args.latency):
        parser.error("--latency: at most 10000 ms (the emulator's limit)")
    apptest_reps = args.reps or (3 if args.quick else 7)
    browser_reps = args.reps or (3 if args.quick else 5)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "azure", "streamlit"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    os.environ.pop("AZUREML_CURRENT_CLOUD", None)

    started = time.monotonic()
    deadline = Deadline(args.max_minutes)
    results: dict[str, Any] = {
        "apptest": {},
        "chromium": {},
        "options": {
            "endpoints": args.endpoints,
            "latency_ms": args.latency,
            "apptest_reps": apptest_reps,
            "browser_reps": browser_reps,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "git": _git_head(),
    }
    emulators: list[Emulator] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
            root = Path(tmp)
            for n in sorted(args.endpoints):
                emulator = Emulator(root / f"ws-{n}", endpoints=n)
                emulators.append(emulator)
                folder = root / f"assets-{n}"
                folder.mkdir()
                log.info("workspace of %d endpoints: seeding", n)
                t = time.monotonic()
                emulator.start(0)
                seed(emulator, folder)
                emulator.wait_ready()
                emulator.send(60)
                log.info("  seeded in %.0f s", time.monotonic() - t)
                per: dict[str, Any] = results["apptest"].setdefault(str(n), {})
                browser_here = args.only != "appt" and n == min(args.endpoints)
                wanted = set(args.latency) if args.only != "chromium" else set()
                for latency in sorted(wanted | ({0} if browser_here else set())):
                    if emulator.latency_ms != latency:
                        t = time.monotonic()
                        emulator.start(latency)
                        emulator.wait_ready()
                        log.info("  restarted at %d ms in %.0f s", latency, time.monotonic() - t)
                    home = root / f"home-{n}-{latency}"
                    home.mkdir()
                    if args.only != "chromium" and latency in args.latency:
                        log.info("AppTest: %d endpoints, %d ms", n, latency)
                        per[str(latency)] = _apptest(apptest_reps, emulator, home, deadline)
                    if browser_here and latency == 0:
                        log.info("Chromium: %d endpoints, 0 ms", n)
                        results["chromium"] = _chromium(browser_reps, emulator, home, deadline)
                        results["chromium_endpoints"] = n
                emulator.stop()
                if not per:
                    del results["apptest"][str(n)]
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    finally:
        for emulator in emulators:
            emulator.stop()
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.output.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    tmp_out.replace(args.output)
    print(render(results))
    print(f"\nraw results: {args.output} ({results['wall_time_s']:.0f} s in all)")
    return 0


def _git_head() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())

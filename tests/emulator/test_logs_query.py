"""The emulator's Log Analytics query API through azure-monitor-query's real LogsQueryClient:
the three online-endpoint tables over real requests and instance life cycles, the KQL
subset, and refusals that name what is not taken. Also rollout/logs.py on top of it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import CodeConfiguration
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient

from emulator.apply import register_local_assets
from rollout import logs
from rollout.errors import ServiceError
from rollout.workspace import StaticTokenCredential, Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint, wait_until

pytestmark = pytest.mark.emulator

ENDPOINT = "logs-query-ep"
HOUR = timedelta(hours=1)
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def seeded(emulator: RunningEmulator, workspace: Workspace, tmp_path_factory: Any) -> Workspace:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("logs-query"))
    ml = workspace.ml_client
    uri = ml.online_endpoints.get(ENDPOINT).scoring_uri
    key = ml.online_endpoints.get_keys(ENDPOINT).primary_key
    body = (REPO / "examples" / "sample-request.json").read_bytes()
    with httpx.Client(verify=workspace.verify, timeout=60) as http:
        for deployment in ("blue", "blue", "blue", "green", "green"):
            response = http.post(
                uri,
                content=body,
                headers={
                    "Authorization": f"Bearer {key}",
                    "Content-Type": "application/json",
                    "azureml-model-deployment": deployment,
                },
            )
            assert response.status_code == 200, response.text
        # One the endpoint refuses (bad key): it is in the traffic log too, with its 401.
        assert (
            http.post(uri, content=body, headers={"Authorization": "Bearer x"}).status_code == 401
        )
    return workspace


def _client(ws: Workspace) -> LogsQueryClient:
    return logs.logs_client(ws)


def _rows(ws: Workspace, query: str, span: timedelta | None = HOUR) -> list[dict[str, Any]]:
    result = _client(ws).query_workspace(ws.log_analytics_workspace_id, query, timespan=span)
    table = result.tables[0]
    return [dict(zip(table.columns, list(row), strict=True)) for row in table.rows]


def test_the_emulator_names_its_log_analytics_workspace(seeded: Workspace) -> None:
    assert seeded.log_analytics_workspace_id
    assert seeded.logs_url is not None and seeded.logs_url.endswith("/loganalytics")
    assert logs.logs_enabled(seeded)


def test_the_traffic_log_has_a_row_per_scoring_request(seeded: Workspace) -> None:
    query = (
        f'AmlOnlineEndpointTrafficLog | where EndpointName == "{ENDPOINT}" '
        "| project TimeGenerated, DeploymentName, ResponseCode, ModelStatusCode, TotalDurationMs, "
        "Method, Path, ResponseCodeReason | order by TimeGenerated asc"
    )
    rows = wait_until(lambda: (r := _rows(seeded, query)) and len(r) >= 6 and r, what="6 requests")
    assert [r["DeploymentName"] for r in rows if r["ResponseCode"] == 200] == [
        "blue",
        "blue",
        "blue",
        "green",
        "green",
    ]
    refused = [r for r in rows if r["ResponseCode"] == 401]
    assert len(refused) == 1 and refused[0]["ResponseCodeReason"] == "Unauthorized"
    ok = [r for r in rows if r["ResponseCode"] == 200]
    assert all(r["ModelStatusCode"] == 200 and r["Method"] == "POST" for r in ok)
    assert all(isinstance(r["TotalDurationMs"], int) and r["TotalDurationMs"] >= 0 for r in ok)
    times = [r["TimeGenerated"] for r in rows]
    assert times == sorted(times) and times[0].tzinfo is not None
    assert list(rows[0]) == [
        "TimeGenerated",
        "DeploymentName",
        "ResponseCode",
        "ModelStatusCode",
        "TotalDurationMs",
        "Method",
        "Path",
        "ResponseCodeReason",
    ]


def test_where_take_count_and_top_work_as_in_kql(seeded: Workspace) -> None:
    base = f'AmlOnlineEndpointTrafficLog | where EndpointName =~ "{ENDPOINT.upper()}"'
    wait_until(lambda: len(_rows(seeded, base)) >= 6, what="the traffic rows")
    count = _rows(seeded, f'{base} and DeploymentName in ("green") | count')
    assert count == [{"Count": 2}]
    assert len(_rows(seeded, f"{base} | take 2")) == 2
    top = _rows(seeded, f"{base} | top 1 by TotalDurationMs desc | project TotalDurationMs")
    every = [r["TotalDurationMs"] for r in _rows(seeded, base)]
    assert top == [{"TotalDurationMs": max(every)}]
    assert _rows(seeded, f"{base} and TimeGenerated < ago(1h) | count") == [{"Count": 0}]
    assert not _rows(seeded, f"{base} and not(ResponseCode >= 200) and ResponseCode != 401")


def test_the_event_log_has_each_instance_start_and_readiness(seeded: Workspace) -> None:
    rows = _rows(
        seeded,
        f'AmlOnlineEndpointEventLog | where _ResourceId endswith "/{ENDPOINT}" '
        "| order by TimeGenerated asc",
        timedelta(days=1),
    )
    by_deployment = {(r["DeploymentName"], r["Name"]) for r in rows}
    for deployment in ("blue", "green"):
        assert (deployment, "InstanceStarted") in by_deployment
        assert (deployment, "InstanceReady") in by_deployment
    ready = next(r for r in rows if r["Name"] == "InstanceReady")
    assert ready["InstanceId"] in ready["Message"]
    assert ready["_ResourceId"].lower() == seeded.resource_path(ENDPOINT).lower()


def test_a_killed_instance_and_a_failed_init_are_events(
    seeded: Workspace, emulator: RunningEmulator
) -> None:
    worker = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if (
            "emulator.worker" in (p.info["cmdline"] or [])
            and f"{ENDPOINT}-blue" in " ".join(p.info["cmdline"])
        )
        or (
            "emulator.worker" in (p.info["cmdline"] or [])
            and "--socket" in (p.info["cmdline"] or [])
            and _instance_of(p.info["cmdline"]).startswith("blue-")
            and str(emulator.state_dir) in " ".join(p.info["cmdline"])
            and _serves(p.info["cmdline"], seeded)
        )
    )
    instance = _instance_of(worker.cmdline())
    worker.kill()
    query = (
        "AmlOnlineEndpointEventLog | where InstanceId == "
        f'"{instance}" and Name == "InstanceRestarted" | project Message'
    )
    restarted = wait_until(lambda: _rows(seeded, query), what=f"{instance} restarted")
    assert f"(pid {worker.pid}) exited" in restarted[0]["Message"]

    deployment = load_online_deployment(str(REPO / "examples" / "blue-deployment.yml"))
    deployment.name, deployment.endpoint_name = "broken", ENDPOINT
    deployment.code_configuration = CodeConfiguration(
        code=str(FIXTURES / "init_fails"), scoring_script="score.py"
    )
    register_local_assets(emulator.state_dir, deployment)
    ml = seeded.ml_client
    with pytest.raises(Exception, match="init"):
        ml.online_deployments.begin_create_or_update(deployment).result()
    failed = _rows(
        seeded,
        'AmlOnlineEndpointEventLog | where DeploymentName == "broken" and Name == "InitFailed"',
        timedelta(days=1),
    )
    assert failed and "before it was ready" in failed[0]["Message"]
    console = _rows(
        seeded,
        'AmlOnlineEndpointConsoleLog | where DeploymentName == "broken" '
        '| where Message contains "missing"',
        timedelta(days=1),
    )
    assert console, "the failed instance's own output is in the console log"
    assert console[0]["ContainerName"] == "inference-server"
    events = logs.recent_events(seeded, ENDPOINT)
    assert {"InitFailed", "InstanceRestarted", "InstanceReady"} <= set(events["event"])
    ml.online_deployments.begin_delete("broken", ENDPOINT).result()


def _instance_of(cmdline: list[str]) -> str:
    return cmdline[cmdline.index("--instance-id") + 1] if "--instance-id" in cmdline else ""


def _serves(cmdline: list[str], ws: Workspace) -> bool:
    socket = cmdline[cmdline.index("--socket") + 1] if "--socket" in cmdline else ""
    return ENDPOINT in Path(socket).name


def test_the_console_log_has_what_score_py_printed(seeded: Workspace) -> None:
    rows = _rows(
        seeded,
        'AmlOnlineEndpointConsoleLog | where DeploymentName == "blue" and _ResourceId '
        f'endswith "/{ENDPOINT}" | where Message has "init" | project InstanceId, Message',
        timedelta(days=1),
    )
    assert any("init complete" in r["Message"] for r in rows)
    assert all(r["InstanceId"].startswith("blue-") for r in rows)


def test_rollout_logs_reads_recent_requests_newest_first(seeded: Workspace) -> None:
    (frame,) = wait_until(
        lambda: len(f := logs.recent_requests(seeded, ENDPOINT)) >= 6 and [f],
        what="recent requests",
    )
    assert list(frame.columns) == logs.REQUEST_COLUMNS
    assert frame["time"].is_monotonic_decreasing
    assert set(frame["deployment"].dropna()) >= {"blue", "green"}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("AmlOnlineEndpointTrafficLog | summarize count() by DeploymentName", "'summarize'"),
        ("AmlOnlineEndpointTrafficLog | extend x = 1", "'extend'"),
        ("AmlOnlineEndpointTrafficLog | where ResponseCode matches regex '5..'", "'matches'"),
        ("AmlOnlineEndpointTrafficLog | project Nope", "'Nope'"),
        ("AmlOnlineEndpointTrafficLog | where strlen(Path) > 1", "'strlen()'"),
        ("AzureActivity | take 1", "'AzureActivity'"),
        ("AmlOnlineEndpointTrafficLog | take 1; AzureActivity", "';'"),
    ],
)
def test_a_query_outside_the_subset_is_400_naming_the_part(
    seeded: Workspace, query: str, named: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        _client(seeded).query_workspace(seeded.log_analytics_workspace_id, query, timespan=HOUR)
    assert caught.value.status_code == 400
    assert named in str(caught.value.message)
    assert caught.value.error is not None and caught.value.error.code == "BadArgumentError"


def test_another_workspace_or_no_token_is_refused(seeded: Workspace) -> None:
    with pytest.raises(HttpResponseError) as caught:
        _client(seeded).query_workspace(
            "00000000-0000-0000-0000-000000000000", "AmlOnlineEndpointTrafficLog", timespan=HOUR
        )
    assert caught.value.status_code == 404
    stranger = LogsQueryClient(
        StaticTokenCredential("not-the-token"),
        endpoint=seeded.logs_url,
        connection_verify=seeded.verify,
    )
    with pytest.raises(HttpResponseError) as refused:
        stranger.query_workspace(
            seeded.log_analytics_workspace_id, "AmlOnlineEndpointTrafficLog", timespan=HOUR
        )
    assert refused.value.status_code == 401
    response = httpx.post(
        f"{seeded.logs_url}/v1/workspaces/{seeded.log_analytics_workspace_id}/query",
        content=json.dumps({"query": "AmlOnlineEndpointTrafficLog", "timespan": "yesterday"}),
        headers={"Authorization": f"Bearer {seeded.facts.token if seeded.facts else ''}"},
        verify=seeded.verify,
    )
    assert response.status_code == 400
    assert "'yesterday'" in response.text or '"yesterday"' in response.json()["error"]["message"]


def test_rollout_logs_names_the_workspace_when_a_query_fails(seeded: Workspace) -> None:
    from dataclasses import replace

    other = replace(seeded, log_analytics_workspace_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ServiceError, match="00000000-0000-0000-0000-000000000000"):
        logs.recent_events(other, ENDPOINT)

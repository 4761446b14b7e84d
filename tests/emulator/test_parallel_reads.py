"""Reading a workspace in parallel through one MLClient: correct answers, and few round trips.

Listing a workspace is one request for the endpoints and one per endpoint for its
deployments, the latter all at once on the read pool. azure-ai-ml's operations are shared by
those threads, so the answers are checked against the same reads made one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.ai.ml.entities import ManagedOnlineEndpoint

from rollout.endpoints import endpoint_view, get_endpoint, list_deployments, list_endpoints
from rollout.reads import WorkspaceReads
from rollout.workspace import Workspace
from tests.conftest import OwnEmulator, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

SEEDED = "parallel-ep"
EMPTY = [f"parallel-empty-{i}" for i in range(5)]
LATENCY_MS = 400


@pytest.fixture(scope="module")
def workspace_of_six(
    emulator: RunningEmulator, workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    seed_tutorial_endpoint(emulator, SEEDED, tmp_path_factory.mktemp("parallel"))
    for name in EMPTY:
        workspace.ml_client.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name=name, auth_mode="key")
        ).result()
    return workspace


def _one_at_a_time(ws: Workspace) -> dict[str, tuple[str, ...]]:
    ml = ws.ml_client
    return {
        e.name: tuple(sorted(d.name for d in ml.online_deployments.list(e.name)))
        for e in ml.online_endpoints.list()
    }


def test_listing_the_workspace_is_one_request_plus_one_per_endpoint(
    workspace_of_six: Workspace,
) -> None:
    ws = workspace_of_six
    before = ws.arm_calls.count.requests
    views = list_endpoints(ws)
    sent = ws.arm_calls.count.requests - before

    assert sent == 1 + len(views)
    assert {SEEDED, *EMPTY} <= {v.name for v in views}
    assert {v.name: tuple(d.name for d in v.deployments) for v in views} == _one_at_a_time(ws)
    seeded = next(v for v in views if v.name == SEEDED)
    assert {d.name: d.live for d in seeded.deployments} == {"blue": 100, "green": 0}


def test_many_threads_reading_through_one_client_get_the_right_answers(
    workspace_of_six: Workspace,
) -> None:
    ws = workspace_of_six
    expected = _one_at_a_time(ws)
    names = list(expected) * 6

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda n: (n, list_deployments(ws, n)), names))

    assert all(tuple(d.name for d in got) == expected[n] for n, got in answers)


def test_one_endpoint_read_fresh_matches_what_the_list_says(workspace_of_six: Workspace) -> None:
    ws = workspace_of_six
    listed = next(v for v in list_endpoints(ws) if v.name == SEEDED)
    assert get_endpoint(ws, SEEDED) == listed
    assert endpoint_view(listed.head, list_deployments(ws, SEEDED)) == listed


@pytest.fixture(scope="module")
def slow_workspace(
    emulator_factory: Callable[[str], RunningEmulator], tmp_path_factory: pytest.TempPathFactory
) -> OwnEmulator:
    """An emulator that answers every ARM request after LATENCY_MS, as Azure would from afar,
    with six endpoints (no deployments: nothing to start)."""
    running = emulator_factory("slow-arm")
    running.start(args=("--arm-latency-ms", str(LATENCY_MS)))
    own = OwnEmulator(running, running.workspace())
    for i in range(6):
        own.ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name=f"slow-{i}", auth_mode="key")
        ).result()
    return own


def test_the_deployments_of_all_endpoints_are_read_at_once(slow_workspace: OwnEmulator) -> None:
    ws = slow_workspace.workspace
    ws.arm_calls.reset_peak()

    views = WorkspaceReads(ws).all_endpoints(wait=True).value

    assert len(views) == 6
    # Six lists of deployments were on the wire together: each takes LATENCY_MS, so the
    # pool's threads all started theirs before the first answer came back.
    assert ws.arm_calls.count.peak == 6

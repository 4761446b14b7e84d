"""How many of each deployment's instances are ready, from Azure Monitor's DeploymentCapacity.

Azure's deployment read (ARM, `sku.capacity`) has the number of instances asked for, not how
many are up. Azure reports that in the DeploymentCapacity metric, split by its `State`
dimension; the number of instances in the ready state at the last sample is what the
deployment tables show as ready. The state's name is the emulator's "Running" (which
components/charts.py also treats as the healthy one); what Azure names it no source we
have settles (UNCONFIRMED), so a workspace that names it otherwise shows 0 ready.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from azure.monitor.querymetrics import MetricsClient

from rollout.endpoints import read_pool
from rollout.errors import RolloutError
from rollout.metrics import Window, deployment_capacity, deployment_resource_id
from rollout.workspace import Workspace

READY_STATE = "Running"
_SPAN_BUCKETS = 5  # how far back to look for a sample, in buckets
_TIMEOUT_S = 5.0  # a table waits this long at most for the metric, then shows "?"


def ready_counts(capacity: Any) -> dict[str, int]:
    """Per deployment, the instances in READY_STATE in the latest bucket that has a sample of
    it (DeploymentCapacity averages per bucket: rounded). A deployment without a sample in
    the frame is absent (unknown, not 0)."""
    if capacity is None or not len(capacity):
        return {}
    found: dict[str, int] = {}
    for deployment, rows in capacity.dropna(subset=["deployment"]).groupby("deployment"):
        latest = rows[rows["time"] == rows["time"].max()]
        ready = latest.loc[latest["state"] == READY_STATE, "value"].fillna(0).sum()
        found[str(deployment)] = round(float(ready))
    return found


def read_ready(
    ws: Workspace,
    client: MetricsClient,
    endpoints: Mapping[str, Sequence[str]],
    *,
    granularity: timedelta,
    timeout: float = _TIMEOUT_S,
) -> dict[str, dict[str, int] | None]:
    """Ready instances per deployment of each endpoint (one query per endpoint, at once);
    None for an endpoint whose metric could not be read."""
    window = Window.last(granularity * _SPAN_BUCKETS, granularity)

    def one(endpoint: str, deployments: Sequence[str]) -> dict[str, int] | None:
        ids = {d: deployment_resource_id(ws, endpoint, d) for d in deployments}
        try:
            return ready_counts(deployment_capacity(client, ids, window, timeout=timeout))
        except RolloutError:
            return None

    wanted = {e: list(d) for e, d in endpoints.items() if d}
    if not wanted:
        return {}
    # On the shared read pool (32 threads), so that a 30-endpoint workspace is one wave of
    # queries, not four (8 threads cost the Endpoints page +800 ms at 150 ms a call).
    pool = read_pool()
    futures = {e: pool.submit(one, e, d) for e, d in wanted.items()}
    return {e: f.result() for e, f in futures.items()}

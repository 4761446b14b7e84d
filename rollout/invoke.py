"""Scoring calls: to the endpoint (routed by its traffic) or to one deployment.

Plain HTTPS with httpx, as any client of the endpoint would call it: the bearer key
or token, the optional `azureml-model-deployment` header, and the response header of
the same name that says which deployment served the request.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import httpx

from rollout.errors import RolloutError
from rollout.workspace import Workspace

DEPLOYMENT_HEADER = "azureml-model-deployment"
MAX_BURST = 5_000
MAX_CONCURRENCY = 32


@dataclass(frozen=True)
class InvokeResult:
    status: int
    latency_ms: float
    served_by: str | None
    body: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def pretty_body(self) -> str:
        try:
            return json.dumps(json.loads(self.body), indent=2)
        except ValueError:
            return self.body


@dataclass
class BurstResult:
    sent: int = 0
    served: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def share(self, deployment: str) -> float:
        total = sum(self.served.values())
        return self.served[deployment] / total if total else 0.0


def parse_request(text: str) -> bytes:
    """The request body as bytes after checking it is JSON; raises RolloutError saying where."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise RolloutError(
            f"the request is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    return text.encode()


def _client(ws: Workspace, timeout: float) -> httpx.Client:
    return httpx.Client(verify=ws.verify, timeout=timeout)


def send(
    client: httpx.Client,
    scoring_uri: str,
    credential: str,
    body: bytes,
    *,
    deployment: str | None = None,
) -> InvokeResult:
    """One scoring request; transport failures come back as a result with status 0."""
    headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    started = time.perf_counter()
    try:
        response = client.post(scoring_uri, content=body, headers=headers)
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return InvokeResult(0, elapsed, None, "", error=f"{type(exc).__name__}: {exc}")
    elapsed = (time.perf_counter() - started) * 1000
    return InvokeResult(
        response.status_code, elapsed, response.headers.get(DEPLOYMENT_HEADER), response.text
    )


def invoke(
    ws: Workspace,
    scoring_uri: str,
    credential: str,
    body: bytes,
    *,
    deployment: str | None = None,
    timeout: float = 60.0,
) -> InvokeResult:
    with _client(ws, timeout) as client:
        return send(client, scoring_uri, credential, body, deployment=deployment)


def invoke_each(
    ws: Workspace,
    scoring_uri: str,
    credential: str,
    body: bytes,
    deployments: list[str],
    *,
    timeout: float = 60.0,
) -> dict[str, InvokeResult]:
    """The same request sent to every deployment (by header), for side-by-side comparison."""
    with _client(ws, timeout) as client:
        return {d: send(client, scoring_uri, credential, body, deployment=d) for d in deployments}


def burst(
    ws: Workspace,
    scoring_uri: str,
    credential: str,
    body: bytes,
    *,
    count: int,
    concurrency: int,
    deployment: str | None = None,
    timeout: float = 60.0,
    on_progress: Callable[[int, int], Any] | None = None,
) -> BurstResult:
    """`count` requests at `concurrency`, counted by serving deployment and status."""
    if not 1 <= count <= MAX_BURST:
        raise RolloutError(f"a burst is 1 to {MAX_BURST} requests, not {count}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise RolloutError(f"concurrency is 1 to {MAX_CONCURRENCY}, not {concurrency}")
    result = BurstResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(verify=ws.verify, timeout=timeout, limits=limits) as client,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
    ):
        futures = [
            pool.submit(send, client, scoring_uri, credential, body, deployment=deployment)
            for _ in range(count)
        ]
        for done in as_completed(futures):
            one = done.result()
            result.sent += 1
            result.statuses[one.status] += 1
            result.latencies_ms.append(one.latency_ms)
            if one.served_by:
                result.served[one.served_by] += 1
            if one.error:
                result.errors[one.error.split(":")[0]] += 1
            if on_progress is not None:
                on_progress(result.sent, count)
    return result


# Comparing answers and summarizing bursts: pure functions the Test page shows.


class _Absent:
    """A value one answer has at a path and another does not."""

    def __repr__(self) -> str:
        return "absent"


ABSENT = _Absent()

_STATUS_WORDS = {
    0: "no answer (the request did not reach the endpoint)",
    200: "OK",
    400: "bad request",
    401: "not authorized (wrong key or token)",
    403: "forbidden",
    404: "not found (or no deployment with positive weight)",
    408: "request timed out (request_timeout_ms)",
    424: "the model answered with an error",
    429: "too many pending requests (scale out or lower the concurrency)",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}


def describe_status(status: int) -> str:
    """An HTTP status of a scoring call in words, as the endpoint means it."""
    words = _STATUS_WORDS.get(status)
    if words is None:
        words = "server error" if status >= 500 else "error" if status >= 400 else "unexpected"
    return f"{status} {words}"


def flatten_json(value: Any, path: str = "") -> dict[str, Any]:
    """The leaf values of a parsed JSON document by path: `[0]`, `scores[1].label`.

    A scalar document has the single path `""`; an empty list or object is a leaf.
    """
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            leaves.update(flatten_json(item, f"{path}.{key}" if path else str(key)))
        return leaves
    if isinstance(value, list) and value:
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(flatten_json(item, f"{path}[{index}]"))
        return leaves
    return {path: value}


def _answer_leaves(result: InvokeResult) -> dict[str, Any]:
    leaves: dict[str, Any] = {"status": result.status}
    if result.error:
        leaves["error"] = result.error
        return leaves
    try:
        body = json.loads(result.body)
    except ValueError:
        leaves["body"] = result.body
        return leaves
    leaves.update(flatten_json(body, "body"))
    return leaves


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: Any, b: Any, *, rel_tol: float = 1e-9, abs_tol: float = 1e-12) -> bool:
    """Equal JSON values; numbers within a relative tolerance (1.0 and 1 are the same)."""
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return type(a) is type(b) and bool(a == b)


@dataclass(frozen=True)
class DiffRow:
    """One path of the answers: its value per deployment, and which differ from the first."""

    path: str
    values: tuple[Any, ...]
    differs: tuple[bool, ...]

    @property
    def any_differs(self) -> bool:
        return any(self.differs)


@dataclass(frozen=True)
class AnswerDiff:
    """The same request's answers side by side; the first deployment is the reference."""

    deployments: tuple[str, ...]
    rows: tuple[DiffRow, ...]

    @property
    def reference(self) -> str | None:
        return self.deployments[0] if self.deployments else None

    @property
    def all_same(self) -> bool:
        return not any(row.any_differs for row in self.rows)

    def differences(self, deployment: str) -> list[str]:
        """The paths where `deployment`'s answer differs from the reference's."""
        column = self.deployments.index(deployment)
        return [row.path for row in self.rows if row.differs[column]]


def diff_answers(results: Mapping[str, InvokeResult], *, rel_tol: float = 1e-9) -> AnswerDiff:
    """Compare answers to the same request by their status and parsed JSON leaves.

    Paths come in the order they first appear; a path one answer lacks is `ABSENT` there.
    """
    names = tuple(results)
    leaves = [_answer_leaves(results[name]) for name in names]
    paths: dict[str, None] = {}
    for answer in leaves:
        paths.update(dict.fromkeys(answer))
    rows = []
    for path in paths:
        values = tuple(answer.get(path, ABSENT) for answer in leaves)
        reference = values[0]
        differs = tuple(
            not (
                (value is ABSENT and reference is ABSENT)
                or (
                    value is not ABSENT
                    and reference is not ABSENT
                    and same_value(value, reference, rel_tol=rel_tol)
                )
            )
            for value in values
        )
        rows.append(DiffRow(path, values, differs))
    return AnswerDiff(names, tuple(rows))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The `pct` percentile (0-100) by linear interpolation, as numpy's default; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(max(pct, 0.0), 100.0) / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class ShareRow:
    """How many burst requests one deployment served, against its configured share."""

    deployment: str
    served: int
    served_pct: float
    expected_pct: int | None


@dataclass(frozen=True)
class BurstSummary:
    sent: int
    shares: tuple[ShareRow, ...]
    unattributed: int
    statuses: tuple[tuple[int, int], ...]
    p50_ms: float | None
    p95_ms: float | None
    errors: tuple[tuple[str, int], ...]


def summarize_burst(result: BurstResult, expected: Mapping[str, int] | None = None) -> BurstSummary:
    """Per-deployment counts against `expected` (percent of live traffic), statuses, p50/p95.

    Shares are of the answers that named a serving deployment; the rest are `unattributed`.
    Every deployment in `expected` gets a row, even one that served nothing.
    """
    expected = dict(expected or {})
    attributed = sum(result.served.values())
    names = list(expected) + sorted(n for n in result.served if n not in expected)
    shares = tuple(
        ShareRow(
            deployment=name,
            served=result.served[name],
            served_pct=100 * result.served[name] / attributed if attributed else 0.0,
            expected_pct=expected.get(name) if expected else None,
        )
        for name in names
    )
    return BurstSummary(
        sent=result.sent,
        shares=shares,
        unattributed=result.sent - attributed,
        statuses=tuple(sorted(result.statuses.items())),
        p50_ms=percentile(result.latencies_ms, 50),
        p95_ms=percentile(result.latencies_ms, 95),
        errors=tuple(result.errors.most_common()),
    )

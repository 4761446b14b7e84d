"""Will the target deployment cope with the traffic about to move to it?

Little's law: requests in flight = arrival rate × time in the system. The arrival rate is
the endpoint's peak live rate (the busiest bucket) times the share about to move; the time
is a P95 latency (Monitor gives percentiles, not the mean; P95 errs on the side of a
warning, and latency only grows under load). Azure serves
`instances × max_concurrent_requests_per_instance` requests at once and answers 429 "Too
many pending requests" when more than twice that are in flight (DESIGN.md), so the share
of requests refused is estimated with the M/M/c/K queue (Poisson arrivals, c servers,
room for K = 2c in the system): a model, but one that says how likely 429s are rather
than only whether the mean fits.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from rollout.endpoints import DeploymentView
from rollout.evidence import Evidence
from rollout.metrics import MIRROR
from rollout.rules import DEFAULT_MAX_CONCURRENT_REQUESTS, MAX_INSTANCES

Level = Literal["ok", "tight", "overload", "unknown"]

OVERLOAD_REFUSED = 0.01  # expect 429s when at least 1% of requests would be refused
# Warn ("tight") from 1 request in 200 refused: below that, on light traffic (0.06 in flight on
# one slot refuses 0.3% of Poisson arrivals), a warning would ask for instances on every move.
# The check still says the share in its words.
TIGHT_REFUSED = 0.005
NOTED_REFUSED = 0.001
TIGHT_UTILIZATION = 0.7
MIN_REQUESTS_FOR_LATENCY = 50


@dataclass(frozen=True)
class CapacityCheck:
    deployment: str
    instances: int
    max_concurrent: int
    share: int  # percent of the endpoint's live traffic the deployment is to receive
    peak_per_minute: float  # the endpoint's, before the share
    latency_ms: float | None
    in_flight: float | None  # requests in flight at peak (Little's law)
    refused: float | None  # estimated share of requests answered 429
    level: Level
    suggested_instances: int | None  # the fewest instances for level "ok", when not ok
    words: str

    @property
    def slots(self) -> int:
        """Requests served at once."""
        return self.instances * self.max_concurrent

    @property
    def limit(self) -> int:
        """In flight above this, Azure answers 429."""
        return 2 * self.slots


def refused_share(offered: float, slots: int) -> float:
    """The blocking probability of an M/M/c/K queue with c = `slots`, K = 2c and offered
    load `offered` (arrival rate × service time): the share of arrivals refused."""
    if slots < 1:
        raise ValueError(f"slots is {slots}; a deployment serves at least 1 request at once")
    if offered <= 0:
        return 0.0
    c, k = slots, 2 * slots
    log_a = math.log(offered)
    # log of a^n/n! for n <= c, a^n/(c! c^(n-c)) above: summed in log space (no overflow)
    logs = [n * log_a - math.lgamma(n + 1) for n in range(c + 1)]
    logs += [n * log_a - math.lgamma(c + 1) - (n - c) * math.log(c) for n in range(c + 1, k + 1)]
    top = max(logs)
    log_total = top + math.log(sum(math.exp(x - top) for x in logs))
    return math.exp(logs[-1] - log_total)


def _level(offered: float, slots: int) -> tuple[Level, float]:
    refused = refused_share(offered, slots)
    if refused >= OVERLOAD_REFUSED or offered > slots:
        return "overload", refused
    if refused >= TIGHT_REFUSED or offered > TIGHT_UTILIZATION * slots:
        return "tight", refused
    return "ok", refused


def _instances_text(n: int) -> str:
    return f"{n} instance" + ("" if n == 1 else "s")


def _share(x: float) -> str:
    return f"{x:.1%}" if x >= 0.001 else f"{x:.2%}"


def _about(x: float) -> str:
    return f"about {x:.0f}" if x >= 0.95 else f"about {x:.2g}"


def check_capacity(
    target: DeploymentView,
    *,
    share: int,
    peak_per_minute: float,
    latency_ms: float | None,
) -> CapacityCheck:
    """Whether `target` can take `share` percent of a peak of `peak_per_minute` requests.

    For a mirror step, `share` is the mirror percentage (plus any live share the target
    keeps): mirrored copies load it as much as live requests do.
    """
    instances = max(1, target.instance_count)
    concurrent = target.max_concurrent_requests or DEFAULT_MAX_CONCURRENT_REQUESTS
    slots = instances * concurrent
    rate_per_s = peak_per_minute * share / 100 / 60

    def answer(level: Level, words: str, **found: Any) -> CapacityCheck:
        return CapacityCheck(
            target.name, instances, concurrent, share, peak_per_minute, latency_ms,
            found.get("in_flight"), found.get("refused"), level,
            found.get("suggested"), words,
        )  # fmt: skip

    if latency_ms is None or peak_per_minute <= 0:
        return answer(
            "unknown",
            f"not enough traffic to estimate the load on {target.name}: "
            "no request rate or latency observed yet",
        )
    offered = rate_per_s * latency_ms / 1000
    level, refused = _level(offered, slots)
    has = f"{target.name} has {_instances_text(instances)}"
    if concurrent != 1:
        has += f" × {concurrent} concurrent requests"
    basis = f"{share}% of {peak_per_minute:,.0f} requests/min at peak × {latency_ms:,.0f} ms P95"
    said = f"{has} for {_about(offered)} requests in flight at peak"
    if level == "ok":
        note = f", bursts may get {_share(refused)} 429s" if refused >= NOTED_REFUSED else ""
        return answer(level, f"{said}; enough{note} ({basis})", in_flight=offered, refused=refused)
    suggested = next(
        (n for n in range(1, MAX_INSTANCES + 1) if _level(offered, n * concurrent)[0] == "ok"),
        MAX_INSTANCES,
    )
    if level == "tight":
        words = (
            f"{said}; close to its limit, bursts may get 429s (about {_share(refused)} of "
            f"requests) — consider {_instances_text(suggested)} ({basis})"
        )
    else:
        words = (
            f"{said}; expect 429s — scale {target.name} first, to "
            f"{_instances_text(suggested)} (about {_share(refused)} of requests refused; {basis})"
        )
    return answer(level, words, in_flight=offered, refused=refused, suggested=suggested)


def peak_live_per_minute(requests: Any, *, exclude: Collection[str] = ()) -> float:
    """The endpoint's busiest bucket, in live requests per minute, from a REQUEST_COLUMNS
    frame: mirrored copies left out, and so is every series of the deployments in
    `exclude` (name the mirror target where the service cannot tell mirrored copies apart).
    """
    if not len(requests):
        return 0.0
    skip = {d.lower() for d in exclude}
    rows = requests[
        (requests["traffic_type"] != MIRROR)
        & ~requests["deployment"].astype(str).str.lower().isin(skip)
    ]
    if not len(rows):
        return 0.0
    return float(rows.groupby("time")["value"].sum().max())


def capacity_latency_ms(candidate: Evidence, baseline: Evidence) -> float | None:
    """The P95 to plan with: the candidate's own once it has served enough requests,
    else the baseline's (the same model family serving the same requests)."""
    if candidate.p95_ms is not None and candidate.requests >= MIN_REQUESTS_FOR_LATENCY:
        return candidate.p95_ms
    return baseline.p95_ms if baseline.p95_ms is not None else candidate.p95_ms

"""Azure's rules for online endpoints, as pure functions.

The emulator uses these to refuse requests and the dashboard uses them to refuse a change
before sending it, so every message names the endpoint, the deployment and the value, and
says what to do. Each ``check_*`` function returns every violation it finds; an empty list
means the change is allowed. ``raise_for`` turns a non-empty list into a ``RuleViolation``.

Deployment names are compared case-insensitively, because azure-ai-ml lower-cases the keys
of ``traffic`` and ``mirror_traffic`` before it sends them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, TypeGuard

from rollout.errors import RuleViolation, Violation

__all__ = [
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "DEFAULT_REQUEST_TIMEOUT_MS",
    "MAX_DEPLOYMENTS_PER_ENDPOINT",
    "MAX_INSTANCES",
    "MAX_MIRROR_PERCENT",
    "MAX_NAME_LENGTH",
    "MAX_REQUEST_TIMEOUT_MS",
    "MAX_TRAFFIC_PERCENT",
    "MIN_INSTANCES",
    "MIN_NAME_LENGTH",
    "NAME_PATTERN",
    "TrafficPlan",
    "Violation",
    "check_delete_deployment",
    "check_instance_count",
    "check_name",
    "check_new_deployment",
    "check_request_timeout",
    "check_traffic",
    "live_deployments",
    "normalize_traffic",
    "raise_for",
]

NAME_PATTERN = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
MIN_NAME_LENGTH = 3
MAX_NAME_LENGTH = 32
MAX_TRAFFIC_PERCENT = 100
MAX_MIRROR_PERCENT = 50
MIN_INSTANCES = 1
MAX_INSTANCES = 50
MAX_DEPLOYMENTS_PER_ENDPOINT = 20
MAX_REQUEST_TIMEOUT_MS = 180_000
DEFAULT_REQUEST_TIMEOUT_MS = 5_000
DEFAULT_MAX_CONCURRENT_REQUESTS = 1

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_CHARS = _LETTERS | frozenset("0123456789-")


# --- names -------------------------------------------------------------------------------


def check_name(kind: Literal["endpoint", "deployment"], name: object) -> list[Violation]:
    """Check an endpoint or deployment name against Azure's rule.

    3 to 32 ASCII letters, digits and single dashes, starting with a letter and not ending
    with a dash: ``NAME_PATTERN`` plus the length and single-dash limits. Each problem is
    its own violation, so the message can say exactly what to fix.
    """
    if not isinstance(name, str):
        return [
            Violation(
                "InvalidName",
                f"the {kind} name must be text, got {name!r}; "
                f"use 3 to 32 letters, digits and single dashes, starting with a letter",
            )
        ]
    about = name if kind == "deployment" else None
    subject = f"{kind} name {name!r}"
    found: list[Violation] = []

    def refuse(message: str) -> None:
        found.append(Violation("InvalidName", f"{subject} {message}", about))

    if not MIN_NAME_LENGTH <= len(name) <= MAX_NAME_LENGTH:
        refuse(
            f"is {len(name)} characters long; "
            f"it must be {MIN_NAME_LENGTH} to {MAX_NAME_LENGTH} characters"
        )
    if name and name[0] not in _LETTERS:
        refuse(f"starts with {name[0]!r}; it must start with a letter (a-z or A-Z)")
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        refuse(f"contains {shown}; use only letters, digits and dashes")
    if "--" in name:
        refuse("contains '--'; dashes must be single, as in 'my-name'")
    if name.endswith("-"):
        refuse("ends with a dash; it must end with a letter or a digit")
    return found


# --- traffic -----------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python, but True is not a traffic percentage.
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: object) -> str:
    return str(value) if _is_int(value) else repr(value)


def _names(names: Collection[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


def _lookup(mapping: Mapping[str, object], deployment: str) -> int:
    """The integer weight of ``deployment`` in ``mapping``, case-insensitively; 0 if absent.

    When two keys differ only by case the last one wins, as in the SDK's lower-casing.
    """
    wanted = deployment.lower()
    weight = 0
    for key, value in mapping.items():
        if key.lower() == wanted:
            weight = value if _is_int(value) else 0
    return weight


def _duplicates(
    endpoint: str, what: str, mapping: Mapping[str, object], active: Collection[str]
) -> list[Violation]:
    """Refuse keys that name the same deployment twice, e.g. 'Blue' and 'blue'."""
    spellings: dict[str, list[str]] = {}
    for key in mapping:
        if key in active:
            spellings.setdefault(key.lower(), []).append(key)
    return [
        Violation(
            "DuplicateDeployment",
            f"{what} for endpoint {endpoint!r} names deployment {keys[0]!r} more than once "
            f"({_names(keys)}); deployment names are case-insensitive, so give it one value",
            keys[0],
        )
        for keys in spellings.values()
        if len(keys) > 1
    ]


def check_traffic(
    endpoint: str,
    deployments: Collection[str],
    traffic: Mapping[str, object],
    mirror: Mapping[str, object] | None = None,
    *,
    kubernetes: bool = False,
) -> list[Violation]:
    """Check an endpoint's live traffic and, when given, its mirror traffic.

    Live: whole numbers 0-100 for deployments of this endpoint, summing to exactly 100 or
    to 0 (traffic disabled); a deployment missing from the map has 0. Mirror: at most one
    deployment, a whole number up to 50, never a deployment with live traffic, and not on
    Kubernetes endpoints. Mirror entries of 0 are ignored, as the SDK drops them.
    """
    known = {d.lower(): d for d in deployments}
    found: list[Violation] = []

    def unknown(what: str, key: str) -> Violation:
        return Violation(
            "UnknownDeployment",
            f"{what} for endpoint {endpoint!r} names deployment {key!r}, which the endpoint "
            f"does not have; its deployments are: {_names(list(known.values()))}",
            key,
        )

    all_ints = True
    for key, value in traffic.items():
        if key.lower() not in known:
            found.append(unknown("traffic", key))
        if not _is_int(value):
            all_ints = False
            found.append(
                Violation(
                    "InvalidTrafficValue",
                    f"traffic for deployment {key!r} of endpoint {endpoint!r} is {_show(value)};"
                    f" it must be a whole number from 0 to {MAX_TRAFFIC_PERCENT}",
                    key,
                )
            )
        elif not 0 <= value <= MAX_TRAFFIC_PERCENT:
            found.append(
                Violation(
                    "InvalidTrafficValue",
                    f"traffic for deployment {key!r} of endpoint {endpoint!r} is {value}; "
                    f"it must be from 0 to {MAX_TRAFFIC_PERCENT}",
                    key,
                )
            )
    found += _duplicates(endpoint, "traffic", traffic, list(traffic))
    if all_ints:
        total = sum(value for value in traffic.values() if isinstance(value, int))
        if total not in (0, MAX_TRAFFIC_PERCENT):
            found.append(
                Violation(
                    "InvalidTrafficSum",
                    f"traffic for endpoint {endpoint!r} sums to {total}; "
                    f"it must be {MAX_TRAFFIC_PERCENT} (or 0 to disable traffic)",
                )
            )

    if mirror:
        found += _check_mirror(endpoint, known, traffic, mirror, kubernetes=kubernetes)
    return found


def _check_mirror(
    endpoint: str,
    known: Mapping[str, str],
    traffic: Mapping[str, object],
    mirror: Mapping[str, object],
    *,
    kubernetes: bool,
) -> list[Violation]:
    # The SDK drops 0 entries before sending, so {"green": 0} means "no mirror".
    targets = [key for key, value in mirror.items() if not (_is_int(value) and value == 0)]
    found: list[Violation] = []
    if kubernetes and targets:
        found.append(
            Violation(
                "MirrorOnKubernetes",
                f"endpoint {endpoint!r} is a Kubernetes online endpoint, which cannot mirror "
                f"traffic; set mirror traffic for {_names(targets)} to 0",
                targets[0] if len(targets) == 1 else None,
            )
        )
    distinct = {key.lower() for key in targets}
    if len(distinct) > 1:
        found.append(
            Violation(
                "MirrorTooManyTargets",
                f"mirror traffic for endpoint {endpoint!r} names {len(distinct)} deployments "
                f"({_names(targets)}); an endpoint can mirror to only one deployment",
            )
        )
    found += _duplicates(endpoint, "mirror traffic", mirror, targets)
    for key in targets:
        value = mirror[key]
        if key.lower() not in known:
            found.append(
                Violation(
                    "UnknownDeployment",
                    f"mirror traffic for endpoint {endpoint!r} names deployment {key!r}, which "
                    f"the endpoint does not have; its deployments are: "
                    f"{_names(list(known.values()))}",
                    key,
                )
            )
        if not _is_int(value) or value < 0:
            found.append(
                Violation(
                    "InvalidTrafficValue",
                    f"mirror traffic for deployment {key!r} of endpoint {endpoint!r} is "
                    f"{_show(value)}; it must be a whole number from 0 to {MAX_MIRROR_PERCENT}",
                    key,
                )
            )
        elif value > MAX_MIRROR_PERCENT:
            found.append(
                Violation(
                    "MirrorTooHigh",
                    f"mirror traffic for deployment {key!r} of endpoint {endpoint!r} is "
                    f"{value}; at most {MAX_MIRROR_PERCENT} percent of traffic can be mirrored",
                    key,
                )
            )
        live = _lookup(traffic, key)
        if live > 0:
            found.append(
                Violation(
                    "MirrorToLiveDeployment",
                    f"deployment {key!r} of endpoint {endpoint!r} has {live}% live traffic, so "
                    f"it cannot also receive mirror traffic; set its live traffic to 0 first, "
                    f"or mirror to a deployment without live traffic",
                    key,
                )
            )
    return found


def normalize_traffic(traffic: Mapping[str, int]) -> dict[str, int]:
    """The traffic map as azure-ai-ml sends it: keys lower-cased, 0 entries dropped."""
    # Same expression as azure.ai.ml's _strip_zeroes_from_traffic, so we agree on odd input.
    return {k.lower(): v for k, v in traffic.items() if v and int(v) != 0}


def live_deployments(traffic: Mapping[str, int]) -> list[str]:
    """Names of the deployments with live traffic above 0, in the map's order."""
    return [name for name, weight in traffic.items() if weight > 0]


# --- deployments -------------------------------------------------------------------------


def check_delete_deployment(
    endpoint: str, deployment: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
) -> list[Violation]:
    """Refuse to delete a deployment that still has live or mirror traffic."""
    found: list[Violation] = []
    live = _lookup(traffic, deployment)
    if live > 0:
        found.append(
            Violation(
                "DeleteLiveDeployment",
                f"deployment {deployment!r} of endpoint {endpoint!r} has {live}% live traffic; "
                f"set its traffic to 0 first (move it to another deployment), then delete it",
                deployment,
            )
        )
    mirrored = _lookup(mirror, deployment)
    if mirrored > 0:
        found.append(
            Violation(
                "DeleteMirrorTarget",
                f"deployment {deployment!r} of endpoint {endpoint!r} receives {mirrored}% "
                f"mirror traffic; set its mirror traffic to 0 first, then delete it",
                deployment,
            )
        )
    return found


def check_instance_count(endpoint: str, deployment: str, count: object) -> list[Violation]:
    """Check a deployment's instance count: a whole number from 1 to 50."""
    if _is_int(count) and MIN_INSTANCES <= count <= MAX_INSTANCES:
        return []
    return [
        Violation(
            "InvalidInstanceCount",
            f"instance count for deployment {deployment!r} of endpoint {endpoint!r} is "
            f"{_show(count)}; it must be a whole number from {MIN_INSTANCES} to {MAX_INSTANCES}",
            deployment,
        )
    ]


def check_new_deployment(endpoint: str, existing: Collection[str], name: str) -> list[Violation]:
    """Check a deployment about to be created or updated on ``endpoint``.

    The name must be valid, and an endpoint holds at most 20 deployments; updating a
    deployment that already exists does not count as a new one.
    """
    found = check_name("deployment", name)
    names = {d.lower() for d in existing}
    if name.lower() not in names and len(names) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
        found.append(
            Violation(
                "TooManyDeployments",
                f"endpoint {endpoint!r} already has {len(names)} deployments, the most "
                f"allowed is {MAX_DEPLOYMENTS_PER_ENDPOINT}; delete one before creating {name!r}",
                name,
            )
        )
    return found


def check_new_endpoint(existing: Collection[str], name: str) -> list[Violation]:
    """Check the name of an endpoint about to be created: valid, and not taken.

    Endpoint names are compared case-insensitively, as ARM compares resource names. (Azure
    also wants them unique within the region, which only the service can check.)
    """
    found = check_name("endpoint", name)
    if name.lower() in {e.lower() for e in existing}:
        found.append(
            Violation(
                "EndpointExists",
                f"endpoint {name!r} already exists in this workspace; choose another name "
                "(or add a deployment to it)",
            )
        )
    return found


def check_request_timeout(endpoint: str, deployment: str, timeout_ms: object) -> list[Violation]:
    """Check a deployment's request timeout: a whole number of milliseconds, 1 to 180000."""
    if _is_int(timeout_ms) and 1 <= timeout_ms <= MAX_REQUEST_TIMEOUT_MS:
        return []
    return [
        Violation(
            "InvalidRequestTimeout",
            f"request timeout for deployment {deployment!r} of endpoint {endpoint!r} is "
            f"{_show(timeout_ms)} ms; it must be a whole number of milliseconds from 1 to "
            f"{MAX_REQUEST_TIMEOUT_MS}",
            deployment,
        )
    ]


def raise_for(violations: Sequence[Violation]) -> None:
    """Raise ``RuleViolation`` carrying every violation, if there are any."""
    if violations:
        raise RuleViolation(violations)


# --- plans -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficPlan:
    """An endpoint's live and mirror traffic as the user is editing it.

    The maps are copied and made read-only, so a plan never changes under its holder.
    """

    endpoint: str
    deployments: tuple[str, ...]
    traffic: Mapping[str, int]
    mirror: Mapping[str, int] = field(default_factory=dict)
    kubernetes: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "deployments", tuple(self.deployments))
        object.__setattr__(self, "traffic", MappingProxyType(dict(self.traffic)))
        object.__setattr__(self, "mirror", MappingProxyType(dict(self.mirror)))

    def violations(self) -> list[Violation]:
        """Every rule this plan breaks; empty when Azure would accept it."""
        return check_traffic(
            self.endpoint, self.deployments, self.traffic, self.mirror, kubernetes=self.kubernetes
        )

    @property
    def total(self) -> int:
        """The sum of live traffic."""
        return sum(self.traffic.values())

    def is_valid(self) -> bool:
        return not self.violations()

    def rest_of(self, deployment: str) -> TrafficPlan:
        """A plan that gives ``deployment`` whatever the others leave of 100 (within 0-100).

        Mirror traffic is left as it is, so giving live traffic to the mirror target yields
        a plan that ``violations`` refuses until the mirror is cleared.
        """
        wanted = deployment.lower()
        others = sum(v for k, v in self.traffic.items() if k.lower() != wanted)
        share = min(max(MAX_TRAFFIC_PERCENT - others, 0), MAX_TRAFFIC_PERCENT)
        key = next((k for k in self.traffic if k.lower() == wanted), deployment)
        traffic = {k: v for k, v in self.traffic.items() if k.lower() != wanted or k == key}
        traffic[key] = share
        return replace(self, traffic=traffic)

    def changes_from(self, other: TrafficPlan) -> list[tuple[str, int, int, int, int]]:
        """``(deployment, live_before, live_after, mirror_before, mirror_after)`` for every
        deployment whose live or mirror traffic differs between ``other`` (before) and this
        plan (after), in this plan's deployment order."""
        names: dict[str, str] = {}
        for plan in (self, other):
            for name in (*plan.deployments, *plan.traffic, *plan.mirror):
                names.setdefault(name.lower(), name)
        changes: list[tuple[str, int, int, int, int]] = []
        for name in names.values():
            row = (
                name,
                _lookup(other.traffic, name),
                _lookup(self.traffic, name),
                _lookup(other.mirror, name),
                _lookup(self.mirror, name),
            )
            if row[1] != row[2] or row[3] != row[4]:
                changes.append(row)
        return changes

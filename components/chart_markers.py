"""Changes made from the dashboard (the audit log) as markers on the charts' time axes.

Each marker has a short label drawn beside its line and a detail shown on hover (when,
who, before and after, the reason). Markers close together on the axis share one label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from rollout.history import Change


@dataclass(frozen=True)
class Marker:
    """A change made from the dashboard, drawn at `at` (UTC) on every time axis."""

    at: datetime
    kind: str  # traffic, mirror, scale, delete or deploy
    label: str  # short, drawn beside the line
    detail: str  # when, who, before -> after, reason: shown on hover


def _shares(values: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (values or {}).items() if int(v)}


def _split_words(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}%" for k, v in sorted(values.items())) or "none"


def _local_text(at: datetime, tz: tzinfo | None) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _traffic_change(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[str, str, str] | None:
    """(kind, label, words) of a traffic change; None when it changed nothing."""
    live = _shares(before.get("traffic")), _shares(after.get("traffic"))
    mirror = _shares(before.get("mirror")), _shares(after.get("mirror"))
    parts, words = [], []
    if live[0] != live[1]:
        parts.append(f"live {_split_words(live[1])}")
        words.append(f"live {_split_words(live[0])} → {_split_words(live[1])}")
    if mirror[0] != mirror[1]:
        parts.append(f"mirror {_split_words(mirror[1])}".replace("none", "off"))
        words.append(f"mirror {_split_words(mirror[0])} → {_split_words(mirror[1])}")
    if not parts:
        return None
    kind = "traffic" if live[0] != live[1] else "mirror"
    return kind, " · ".join(parts), "; ".join(words)


def markers_from_changes(changes: Iterable[Change], *, tz: tzinfo | None = None) -> list[Marker]:
    """A marker per change that succeeded: traffic (live), mirror, scale or delete.

    A refused or failed change changed nothing, so it gets no marker.
    """
    markers = []
    for change in changes:
        if change.outcome != "Succeeded":
            continue
        at = datetime.fromtimestamp(change.at, UTC)
        before, after = change.before or {}, change.after or {}
        if change.action == "traffic":
            described = _traffic_change(before, after)
            if described is None:
                continue
            kind, label, words = described
        elif change.action == "scale":
            name = after.get("deployment") or before.get("deployment") or "?"
            count = after.get("instance_count")
            kind, label = "scale", f"{name} → {count} instance" + ("" if count == 1 else "s")
            words = f"scaled {name} from {before.get('instance_count')} to {count} instance(s)"
        elif change.action == "delete":
            name = before.get("deployment") or after.get("deployment") or "?"
            kind, label, words = "delete", f"deleted {name}", f"deleted deployment {name}"
        elif change.action == "create_deployment":
            name = after.get("deployment") or "?"
            kind, label, words = "deploy", f"deployed {name}", f"deployed {name} at 0% live"
        else:
            kind, label, words = change.action, change.action, change.action
        reason = f" — “{change.reason}”" if change.reason else ""
        detail = f"{_local_text(at, tz)} by {change.who}: {words}{reason}"
        markers.append(Marker(at, kind, label, detail))
    return markers


# Labels closer than this share of the time axis are drawn as one ("3 changes"): a label
# is about 14 px wide on a chart some 800 px wide, and a day's range puts an hour's changes
# on top of each other.
MARKER_GAP = 0.025


def cluster_markers(
    markers: Sequence[Marker], span: timedelta, *, gap: float = MARKER_GAP
) -> list[list[Marker]]:
    """Markers in time order, grouped while each is within `gap` × `span` of the group's
    first: each group gets one label."""
    groups: list[list[Marker]] = []
    reach = span * gap
    for marker in sorted(markers, key=lambda m: m.at):
        if groups and marker.at - groups[-1][0].at <= reach:
            groups[-1].append(marker)
        else:
            groups.append([marker])
    return groups


# --- shared pieces -------------------------------------------------------------------------

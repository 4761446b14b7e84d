"""An audit entry in words, for the History page and the review report: what it was, the
state before and after, and how long it took. Plain values, no Streamlit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollout.history import Change
from rollout.views import describe


@dataclass(frozen=True)
class EntryWords:
    what: str
    before: str
    after: str


def _instances(n: object) -> str:
    return f"{n} instance" + ("" if n == 1 else "s")


def _traffic(side: Mapping[str, Any]) -> str:
    return describe(dict(side.get("traffic") or {}), dict(side.get("mirror") or {}))


def _plain(side: Mapping[str, Any]) -> str:
    return json.dumps(dict(side), sort_keys=True) if side else ""


def entry_words(change: Change) -> EntryWords:
    b, a = change.before, change.after
    action = change.action
    undo = f" (undo of #{change.undo_of})" if change.undo_of is not None else ""
    if action == "traffic":
        return EntryWords("traffic" + undo, _traffic(b), _traffic(a))
    if action == "scale":
        return EntryWords(
            f"scale {a.get('deployment', '?')}{undo}",
            _instances(b.get("instance_count", "?")),
            _instances(a.get("instance_count", "?")),
        )
    if action == "create_deployment":
        deployments = ", ".join(b.get("deployments") or []) or "none"
        model = a.get("model", "?")
        return EntryWords(
            f"new deployment {a.get('deployment', '?')}",
            f"deployments: {deployments}",
            f"model {model}, {_instances(a.get('instance_count', '?'))}, 0% live",
        )
    if action == "delete":
        what = f"delete deployment {b.get('deployment', '?')}{undo}"
        if "model" in b:
            before = (
                f"model {b['model']}, {_instances(b.get('instance_count', '?'))}, "
                f"{b.get('live', 0)}% live"
            )
        else:
            before = f"deployment {b.get('deployment', '?')}"
        return EntryWords(what, before, "deleted" if a.get("deleted", True) else "not deleted")
    if action == "create_endpoint":
        return EntryWords(
            f"new endpoint {change.endpoint}", "none", f"auth {a.get('auth_mode', '?')}"
        )
    if action == "delete_endpoint":
        deployments = ", ".join(b.get("deployments") or []) or "no deployments"
        return EntryWords(
            f"delete endpoint {change.endpoint}", f"{deployments}; {_traffic(b)}", "deleted"
        )
    if action.startswith("plan "):
        verdicts = a.get("verdicts") or {}
        gates = ", ".join(f"{g}: {v}" for g, v in verdicts.items())
        after = str(a.get("step", "?")) + (f" (gates {gates})" if gates else "")
        return EntryWords(f"{action} #{a.get('plan', '?')}", str(b.get("step", "?")), after)
    return EntryWords(action + undo, _plain(b), _plain(a))


def took_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"

"""What the pages show, built from EndpointView: plain values, no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollout.endpoints import EndpointView

_SETTLED = {"Succeeded"}
_AUTH = {"key": "Key", "aml_token": "AML token", "aad_token": "Microsoft Entra token"}


def state_color(state: str) -> str:
    """green when settled, red when failed, orange for anything in between."""
    if state == "Failed":
        return "red"
    return "green" if state in _SETTLED else "orange"


def state_badge(state: str) -> str:
    """A state as a Streamlit markdown badge, coloured so that failures stand out."""
    return f":{state_color(state)}-badge[{state}]"


def describe(traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
    """'live blue 90%, green 10% · mirror none' (only positive shares are named)."""
    live = ", ".join(f"{k} {v}%" for k, v in traffic.items() if v) or "none (traffic disabled)"
    mirrored = ", ".join(f"{k} {v}%" for k, v in mirror.items() if v) or "none"
    return f"live {live} · mirror {mirrored}"


def split_text(values: dict[str, int]) -> str:
    shown = [f"{name} {share}%" for name, share in sorted(values.items()) if share]
    return " · ".join(shown) or "none"


def endpoint_facts(endpoint: EndpointView) -> dict[str, str]:
    return {
        "compute": endpoint.compute_label,
        "auth": _AUTH.get(endpoint.auth_mode.lower(), endpoint.auth_mode),
        "live": split_text(endpoint.traffic),
        "mirror": split_text(endpoint.mirror),
        "deployments": str(len(endpoint.deployments)),
    }


def ready_text(ready: int | None, total: int) -> str:
    """'1/2': instances ready of those asked for; '?/2' when readiness is not known."""
    return f"{'?' if ready is None else ready}/{total}"


def deployment_rows(
    endpoint: EndpointView, ready: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """One row per deployment, in the columns the Endpoints and Deployments pages show.

    `ready` (rollout.readiness) gives the instances up per deployment; a deployment it
    does not name shows '?' ready."""
    known = ready or {}
    return [
        {
            "deployment": d.name,
            "state": d.state,
            "model": d.model,
            "compute": endpoint.compute_label if d.compute_type == "Kubernetes" else "Managed",
            "instance type": d.instance_type,
            "ready": ready_text(known.get(d.name), d.instance_count),
            "instances": d.instance_count,
            "live %": d.live,
            "mirror %": d.mirror,
            "timeout ms": d.request_timeout_ms,
            "concurrent / instance": d.max_concurrent_requests,
        }
        for d in endpoint.deployments
    ]

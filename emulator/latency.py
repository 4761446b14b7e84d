"""Added latency: control-plane and metrics answers as slow as Azure's, to see the dashboard so.

`serve --arm-latency-ms N` delays every answer under /subscriptions/ (the ARM routes,
the workspace GET and LRO polls included) by N ms; `--metrics-latency-ms M` every
answer under /monitor/ (the Monitor metrics API). /health and the scoring data plane
are never delayed. The delay is an `asyncio.sleep` before the request is handled, so
concurrent requests wait side by side, as they would on a distant service.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_LATENCY_MS = 10_000
ARM_PREFIX = "/subscriptions/"
METRICS_PREFIX = "/monitor/"


def check_latency_ms(flag: str, value: int) -> int:
    """`value` when it is a valid latency for `flag`; ValueError naming both otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{flag} takes a whole number of milliseconds, not {value!r}")
    if not 0 <= value <= MAX_LATENCY_MS:
        raise ValueError(f"{flag} is {value}; give 0 to {MAX_LATENCY_MS} ms (0 = no delay)")
    return value


def delayed(app: ASGIApp, *, arm_ms: int, metrics_ms: int) -> ASGIApp:
    """`app` with ARM and metrics requests held `arm_ms` and `metrics_ms` before handling."""
    if arm_ms == 0 and metrics_ms == 0:
        return app
    arm_s, metrics_s = arm_ms / 1000, metrics_ms / 1000

    async def delay(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(ARM_PREFIX):
                if arm_s:
                    await asyncio.sleep(arm_s)
            elif path.startswith(METRICS_PREFIX) and metrics_s:
                await asyncio.sleep(metrics_s)
        await app(scope, receive, send)

    return delay

"""The ARM bearer token check shared by the control plane and the metrics API."""

from __future__ import annotations

import hmac

from starlette.requests import Request

UNAUTHORIZED = (
    "Authentication failed: the Authorization header must be 'Bearer <token>' with the token "
    "from `python -m emulator status --json`."
)


def has_arm_token(request: Request) -> bool:
    """Whether the request carries the state directory's ARM bearer token (constant time)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), request.app.state.arm_token.encode()
    )

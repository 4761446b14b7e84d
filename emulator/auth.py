"""The ARM bearer token of a state directory, and the check shared by the control plane
and the metrics API."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

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


def arm_token(state_dir: Path) -> str:
    """The ARM bearer token of a state directory, generated on first use."""
    path = state_dir / "arm-token"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()

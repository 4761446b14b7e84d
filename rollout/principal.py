"""Who makes a change, for the audit log: the Azure principal the token names, or the OS user.

On Azure the dashboard acts with the identity `DefaultAzureCredential` found (az login, a
managed identity, a service principal). Its ARM token is a JWT whose claims name it; the
claims are read, not verified (the token is ours, from our own credential; the name is a
label for the log, never a decision). On the emulator, or when the token names nobody, it
is the OS user running the dashboard.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

ARM_SCOPE = "https://management.azure.com/.default"
# The claims that name a person first, then an application's.
_PERSON = ("upn", "unique_name", "preferred_username", "email")


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified; {} when `token` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_of(claims: dict[str, Any]) -> str | None:
    """A person's sign-in name; else 'app <appid>' (a service principal or managed
    identity); else 'object <oid>'; None when the claims name nobody."""
    for claim in _PERSON:
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()
    app = claims.get("appid") or claims.get("azp")
    if isinstance(app, str) and app:
        return f"app {app}"
    oid = claims.get("oid")
    if isinstance(oid, str) and oid:
        return f"object {oid}"
    return None


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        return "unknown user"


def who(kind: str, credential: TokenCredential) -> str:
    """The name to write in the audit log for changes made with `credential`."""
    if kind != "azure":
        return os_user()
    try:
        token = credential.get_token(ARM_SCOPE).token
    except (AzureError, OSError, ValueError):
        return os_user()
    return principal_of(token_claims(token)) or os_user()

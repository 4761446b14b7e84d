"""Endpoint keys and tokens: listing, regenerating, issuing, and checking a scoring credential.

An endpoint with auth mode Key has a primary and a secondary key, made when it is created
and kept in the store. One with AMLToken gets tokens signed with the state directory's
secret (HMAC-SHA256 over the endpoint's name and the expiry), valid for a day; nothing
about an issued token is stored. One with AADToken takes a Microsoft Entra token, which
azure-ai-ml gets from its credential for the scope `https://ml.azure.com/.default`: the
emulator has no Entra ID, and its Entra token is its ARM token (the one of
`python -m emulator status --json`, which the dashboard's credential presents for every
scope). Each mode takes its own credential only, as in Azure: keys and AML tokens are
refused by an AADToken endpoint, the Entra token by the others. Credentials are compared
in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from emulator.endpoints import EndpointRoute, Endpoints
from emulator.errors import ApiError
from emulator.store import Doc, Store

TOKEN_LIFETIME_S = 24 * 3600


class Keys:
    """The credentials of every endpoint."""

    def __init__(
        self, store: Store, endpoints: Endpoints, *, token_secret: str, entra_token: str
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self._token_secret = token_secret
        self._entra_token = entra_token

    def list_keys(self, name: str) -> Doc:
        self.endpoints.stored(name)
        keys = self.store.get_keys(name)
        assert keys is not None
        return {"primaryKey": keys[0], "secondaryKey": keys[1]}

    def regenerate(self, name: str, body: Doc) -> None:
        self.endpoints.stored(name)
        key_type = str(body.get("keyType", "")).lower()
        if key_type not in ("primary", "secondary"):
            raise ApiError(
                400,
                "BadArgument",
                f"keyType must be 'Primary' or 'Secondary', got {body.get('keyType')!r}",
            )
        keys = self.store.get_keys(name) or ("", "")
        current = keys[0] if key_type == "primary" else keys[1]
        # azure-ai-ml sends the key's current value as keyValue; that must still regenerate.
        value = body.get("keyValue")
        if not value or value == current:
            value = secrets.token_urlsafe(32)
        self.store.set_key(name, key_type, str(value))
        route = self.endpoints.routes.get(name.lower())
        if route is not None:
            route.keys = self.store.get_keys(name) or ("", "")

    def issue_token(self, name: str) -> Doc:
        doc = self.endpoints.stored(name)
        if doc["properties"]["authMode"] == "AADToken":
            raise ApiError(
                400,
                "BadArgument",
                f"Endpoint '{name}' uses AADToken auth: score it with a Microsoft Entra token "
                "for https://ml.azure.com (on the emulator, the token of `python -m emulator "
                "status --json`); tokens are only issued for endpoints with auth_mode aml_token.",
            )
        if doc["properties"]["authMode"] != "AMLToken":
            raise ApiError(
                400,
                "BadArgument",
                f"Endpoint '{name}' uses {doc['properties']['authMode']} auth; tokens are only "
                "issued for endpoints with auth_mode aml_token. Use listKeys for keys.",
            )
        expiry = int(time.time()) + TOKEN_LIFETIME_S
        payload = f"{doc['name'].lower()}|{expiry}|{secrets.token_hex(8)}"
        signature = hmac.new(self._token_secret.encode(), payload.encode(), hashlib.sha256)
        token = base64.urlsafe_b64encode(payload.encode()).decode() + "." + signature.hexdigest()
        return {
            "accessToken": token,
            "expiryTimeUtc": expiry,
            "refreshAfterTimeUtc": expiry - TOKEN_LIFETIME_S // 2,
            "tokenType": "Bearer",
        }

    def authorize(self, route: EndpointRoute, presented: str) -> bool:
        """Whether a scoring credential is valid for the endpoint (constant-time compares)."""
        if route.auth_mode == "Key":
            keys = route.keys
            if not keys[0]:
                return False
            ok_primary = hmac.compare_digest(presented.encode(), keys[0].encode())
            ok_secondary = hmac.compare_digest(presented.encode(), keys[1].encode())
            return ok_primary or ok_secondary
        if route.auth_mode == "AMLToken":
            return self._verify_token(route.name, presented)
        if route.auth_mode == "AADToken":
            return hmac.compare_digest(presented.encode(), self._entra_token.encode())
        return False

    def _verify_token(self, endpoint: str, token: str) -> bool:
        encoded, _, signature = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        expected = hmac.new(self._token_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            return False
        name, _, rest = payload.partition("|")
        expiry = rest.partition("|")[0]
        return name == endpoint.lower() and expiry.isdigit() and int(expiry) > time.time()

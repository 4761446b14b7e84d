"""Checks of control-plane request bodies (size, nesting, types, values) before anything is stored.

azure-ai-ml sends well-formed bodies; a hand-written curl, a buggy client or a hostile one
may not. Whatever arrives, the answer is a 400 that names the resource, the field and the
value (shown shortened), and nothing is stored: no request may reach the background work
with a field of the wrong type, where it would fail after it was accepted. Azure's rules
for traffic, names and instance counts stay in `rollout.rules`; this module is about shape.
The bounded read of a body (`read_limited`) is shared with the scoring path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from emulator.errors import ApiError

Doc = dict[str, Any]

# ARM refuses request bodies over 4 MB.
MAX_BODY_BYTES = 4 * 2**20
MAX_JSON_DEPTH = 32
# Azure's tag limits (ARM): 50 tags, names up to 512 characters, values up to 256.
MAX_TAGS = 50
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
# UNCONFIRMED: no source gives Azure ML's limit on descriptions; 1024 characters (as in
# many Azure resource providers) keeps a description a description.
MAX_DESCRIPTION = 1024
MAX_PROPERTIES = 100
MAX_PROPERTY_VALUE = 4096
MAX_ENV_VARS = 256
MAX_ENV_NAME = 256
MAX_ENV_VALUE = 32 * 1024
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_PROBE_THRESHOLD = 10_000
_MAX_SHOWN = 60
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_ENV_NAME = re.compile(r"^[^=\x00]+$")
# Azure ML asset names: a letter or digit first, then letters, digits, '-', '_' and '.'
# (UNCONFIRMED past that; the REST specs give no pattern). Versions likewise, so neither
# can be '.', '..' or hold a path separator.
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
ASSET_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENABLED = ("Enabled", "Disabled")


def show(value: object) -> str:
    """A value as an error message may quote it: repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def bad(message: str) -> ApiError:
    return ApiError(400, "BadArgument", message)


# the body as a whole


class TooLarge(Exception):
    """A request body over its limit; `size` is what was declared or read so far."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the request body has more than {size} bytes")
        self.size = size


async def read_limited(request: Request, limit: int) -> bytes:
    """A request's body, read no further than `limit` bytes (TooLarge past it).

    Both planes use it: the control plane with ARM's 4 MiB, scoring with --max-body-mb.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Doc:
    """A request body as a JSON object; 413 when too large, 400 when not a bounded object."""
    if len(raw) > MAX_BODY_BYTES:
        raise too_large(len(raw))
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "The request body must be a JSON object.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    return body


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        "RequestEntityTooLarge",
        f"The request body is {size:,} bytes; the control plane accepts at most "
        f"{MAX_BODY_BYTES:,} bytes (4 MiB), as Azure Resource Manager does.",
    )


def _too_deep() -> ApiError:
    return ApiError(
        400,
        "BadRequest",
        f"The request body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep.",
    )


def _depth(value: object) -> int:
    """How deeply a parsed JSON value nests (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = list(item)
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


# fields


def parse_duration_ms(value: object, *, what: str) -> int:
    """Milliseconds in an ISO-8601 duration such as 'PT5S' or 'PT0.5S' (at most one day)."""
    match = _DURATION.match(value) if isinstance(value, str) and len(value) <= 32 else None
    if match is None or value in ("P", "PT") or str(value).endswith("T"):
        raise bad(f"{what} must be an ISO-8601 duration such as 'PT5S', got {show(value)}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = (
        parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
    ) + parts.get("s", 0)
    if not math.isfinite(seconds) or seconds * 1000 > MAX_DURATION_MS:
        raise bad(f"{what} is {show(value)}; durations here are at most one day (P1D)")
    return round(seconds * 1000)


class Fields:
    """Typed access to one JSON object of a request, naming `what` in every refusal."""

    def __init__(self, values: object, *, what: str, field: str = "") -> None:
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise bad(f"{field or 'the body'} of {what} must be an object, got {show(values)}")
        self.values: Doc = values
        self.what = what
        self.prefix = f"{field}." if field else ""

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def present(self, key: str) -> bool:
        return self.values.get(key) is not None

    def obj(self, key: str) -> Fields:
        return Fields(self.values.get(key), what=self.what, field=self._name(key))

    def string(
        self,
        key: str,
        *,
        max_len: int = 1024,
        choices: tuple[str, ...] | None = None,
        required: bool = False,
    ) -> str | None:
        value = self.values.get(key)
        if value is None:
            if required:
                raise bad(f"{self._name(key)} of {self.what} is required")
            return None
        value = self._text(self._name(key), value, max_len)
        if choices is not None and value.lower() not in (c.lower() for c in choices):
            raise bad(
                f"{self._name(key)} of {self.what} is {show(value)}; it must be one of "
                + ", ".join(choices)
            )
        return value

    def integer(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not (minimum <= value <= maximum)
        ):
            raise bad(
                f"{self._name(key)} of {self.what} is {show(value)}; it must be a whole number "
                f"from {minimum} to {maximum:,}"
            )
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.values.get(key)
        if value is not None and not isinstance(value, bool):
            raise bad(f"{self._name(key)} of {self.what} must be true or false, got {show(value)}")
        return value

    def duration_ms(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        return parse_duration_ms(value, what=f"{self._name(key)} of {self.what}")

    def string_map(
        self,
        key: str,
        *,
        max_items: int,
        max_key: int,
        max_value: int,
        key_pattern: re.Pattern[str] | None = None,
        key_rule: str = "",
    ) -> dict[str, str]:
        """An object of string values (tags, properties, environment variables)."""
        value = self.values.get(key)
        name = self._name(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad(f"{name} of {self.what} must be an object of strings, got {show(value)}")
        if len(value) > max_items:
            raise bad(f"{name} of {self.what} has {len(value)} entries; at most {max_items}")
        for k, v in value.items():
            if not k or len(k) > max_key or (key_pattern and not key_pattern.match(k)):
                rule = key_rule or f"1 to {max_key} characters"
                raise bad(f"{name} of {self.what}: the name {show(k)} is not valid ({rule})")
            self._text(f"{name}[{k!r}]", v, max_value)
        return dict(value)

    def _text(self, label: str, value: object, max_len: int) -> str:
        """A string of at most `max_len` characters, without NUL."""
        if not isinstance(value, str):
            raise bad(f"{label} of {self.what} must be a string, got {show(value)}")
        if len(value) > max_len:
            raise bad(
                f"{label} of {self.what} is {len(value):,} characters long; "
                f"at most {max_len:,} are allowed"
            )
        if "\x00" in value:
            raise bad(f"{label} of {self.what} contains a NUL character")
        return value


def _tags(body: Fields) -> None:
    body.string_map("tags", max_items=MAX_TAGS, max_key=MAX_TAG_NAME, max_value=MAX_TAG_VALUE)


def _common(body: Fields) -> None:
    """The envelope every tracked resource shares."""
    body.string("location", max_len=64)
    body.string("kind", max_len=64)
    _tags(body)
    body.obj("identity").string("type", max_len=64)


def _properties(props: Fields) -> None:
    props.string("description", max_len=MAX_DESCRIPTION)
    props.string_map(
        "properties", max_items=MAX_PROPERTIES, max_key=256, max_value=MAX_PROPERTY_VALUE
    )


# resources


def check_endpoint(name: str, body: Mapping[str, Any]) -> None:
    """The shape of an endpoint PUT (or of a PATCH merged into the stored endpoint)."""
    what = f"endpoint '{name}'"
    envelope = Fields(dict(body), what=what)
    _common(envelope)
    props = envelope.obj("properties")
    _properties(props)
    props.string("authMode", max_len=32)
    props.string("publicNetworkAccess", max_len=16, choices=_ENABLED)
    props.string("compute", max_len=1024)
    for key in ("traffic", "mirrorTraffic"):
        # Values are checked by rollout.rules.check_traffic, which names each one.
        if props.present(key) and not isinstance(props.values[key], dict):
            value = props.values[key]
            raise bad(f"properties.{key} of {what} must be an object, got {show(value)}")


def check_deployment(endpoint: str, name: str, body: Mapping[str, Any]) -> None:
    """The shape of a deployment PUT (or of a PATCH merged into the stored deployment)."""
    what = f"deployment '{name}' of endpoint '{endpoint}'"
    envelope = Fields(dict(body), what=what)
    _common(envelope)
    sku = envelope.obj("sku")
    sku.string("name", max_len=64)
    sku.string("tier", max_len=64)
    if sku.present("capacity"):
        # Azure's 1-50 rule and its message live in rollout.rules.check_instance_count.
        capacity = sku.values["capacity"]
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise bad(f"sku.capacity of {what} must be a whole number, got {show(capacity)}")
    props = envelope.obj("properties")
    _properties(props)
    props.string("model", max_len=1024)
    props.string("environmentId", max_len=1024)
    props.string("instanceType", max_len=64)
    props.string("endpointComputeType", max_len=32)
    props.string("egressPublicNetworkAccess", max_len=16, choices=_ENABLED)
    props.boolean("appInsightsEnabled")
    code = props.obj("codeConfiguration")
    code.string("codeId", max_len=1024)
    code.string("scoringScript", max_len=1024)
    props.obj("scaleSettings").string("scaleType", max_len=32)
    props.string_map(
        "environmentVariables",
        max_items=MAX_ENV_VARS,
        max_key=MAX_ENV_NAME,
        max_value=MAX_ENV_VALUE,
        key_pattern=_ENV_NAME,
        key_rule="a name is 1 to 256 characters, without '=' or NUL",
    )
    request = props.obj("requestSettings")
    request.duration_ms("requestTimeout")
    request.duration_ms("maxQueueWait")
    request.integer("maxConcurrentRequestsPerInstance", minimum=1, maximum=1000)
    for probe_name in ("livenessProbe", "readinessProbe"):
        check_probe(props.obj(probe_name))


def check_probe(probe: Fields) -> None:
    """Azure's probe settings: period and timeout at least 1 s, thresholds at least 1."""
    probe.duration_ms("initialDelay")
    for key in ("period", "timeout"):
        ms = probe.duration_ms(key)
        if ms is not None and ms < 1000:
            raise bad(
                f"{probe.prefix}{key} of {probe.what} is {show(probe.values[key])}; "
                "it must be at least 1 second (PT1S)"
            )
    for key in ("successThreshold", "failureThreshold"):
        probe.integer(key, minimum=1, maximum=MAX_PROBE_THRESHOLD)


def check_asset_id(kind: str, name: str, version: str) -> None:
    """An asset's name and version, before either is used in a path or stored."""
    singular = kind[:-1]
    if not ASSET_NAME.match(name):
        raise bad(
            f"{singular} name {show(name)} is not valid: it must start with a letter or digit "
            "and hold only letters, digits, '-', '_' and '.', at most 255 characters"
        )
    if not ASSET_VERSION.match(version):
        raise bad(
            f"version {show(version)} of {singular} '{name}' is not valid: it must start with "
            "a letter or digit and hold only letters, digits, '-', '_' and '.', at most 64 "
            "characters"
        )


def check_asset(kind: str, name: str, body: Mapping[str, Any]) -> Fields:
    """An asset version body (model, code or environment); returns its properties."""
    what = f"{kind[:-1]} '{name}'"
    envelope = Fields(dict(body), what=what)
    props = envelope.obj("properties")
    _properties(props)
    _tags(props)
    for key in ("modelUri", "codeUri", "modelType", "image"):
        props.string(key, max_len=4096)
    props.string("condaFile", max_len=MAX_BODY_BYTES)
    return props

"""What a scoring script's run() is given: azmlinfsrv's calling convention, read off run().

Undecorated, run() gets the body as text (a GET's query string as JSON); with
inference-schema's `@input_schema`, the parsed, named arguments (which the decorator
converts to numpy, pandas or standard types itself); with `@rawhttp`, the Flask request.
A `request_headers` parameter gets the request's headers. run() must take one argument
for its input and no `*args`, `**kwargs` or positional-only parameters.
"""

from __future__ import annotations

import inspect
import json
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_RAWHTTP_MODULES = (
    "azureml_inference_server_http.api.aml_request",
    "azureml.contrib.services.aml_request",
)
_JSON = "application/json"


class ScriptError(Exception):
    """The scoring script cannot be served (azmlinfsrv refuses it at start)."""


@dataclass(frozen=True)
class Call:
    """One HTTP request as the instance received it (header names in lower case)."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class BadInput(Exception):
    status = 400


class Unsupported(BadInput):
    status = 415


class NoInput(Exception):
    """OPTIONS on a script that is not @rawhttp: azmlinfsrv answers 200 with no body."""


Parser = Callable[[Call], dict[str, Any]]


def calling_convention(run: Callable[..., Any]) -> tuple[Parser, bool, str]:
    """How run() is called: the parser of its arguments, whether it takes the headers."""
    params = list(inspect.signature(run).parameters.values())
    if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
    takes_headers = any(p.name == "request_headers" for p in params)
    params = [p for p in params if p.name != "request_headers"]
    if not params:
        if takes_headers:
            raise ScriptError('run() needs to accept an argument other than "request_headers".')
        raise ScriptError("run() needs to accept an argument for input data.")
    first = params[0].name
    raw = any(getattr(sys.modules.get(m), "_rawHttpRequested", False) for m in _RAWHTTP_MODULES)
    schema_util = inference_schema()
    schema = schema_util is not None and schema_util.is_schema_decorated(run)
    if raw and schema:
        raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
    if raw:
        return (
            (lambda call: {first: _flask_request(call)}),
            takes_headers,
            "the Flask request (@rawhttp)",
        )
    if schema:
        names = ", ".join(p.name for p in params)
        return _schema_parser(params), takes_headers, f"inference-schema arguments ({names})"
    return _text_parser(first), takes_headers, "the request body as text"


def inference_schema() -> Any:
    """inference_schema.schema_util, when the script imported inference-schema."""
    if "inference_schema" not in sys.modules:
        return None
    import inference_schema.schema_util as schema_util  # type: ignore[import-not-found]

    return schema_util


def _text_parser(name: str) -> Parser:
    def parse(call: Call) -> dict[str, Any]:
        if call.method == "GET":
            return {name: json.dumps(_query_input(call.query))}
        if call.method != "POST":
            raise NoInput
        try:
            return {name: str(call.body, "utf-8")}
        except UnicodeDecodeError as exc:
            raise BadInput(f"Input cannot be decoded as UTF-8: {exc}") from None

    return parse


def _schema_parser(params: list[inspect.Parameter]) -> Parser:
    def parse(call: Call) -> dict[str, Any]:
        if call.method == "GET":
            body = _query_input(call.query)
        elif call.method != "POST":
            raise NoInput
        else:
            if not _is_json(call.header("content-type")):
                raise Unsupported("Expects Content-Type to be application/json")
            try:
                body = json.loads(call.body)
            except json.JSONDecodeError as exc:
                if call.body:
                    raise BadInput(f"POST body could not be decoded as JSON: {exc}") from None
                raise BadInput("POST body is empty. Expecting a JSON dictionary.") from None
            if not isinstance(body, dict):
                raise BadInput("POST body should be a JSON dictionary.")
        arguments: dict[str, Any] = {}
        for param in params:
            value = body.get(param.name, param.default)
            if value is inspect.Parameter.empty:
                raise BadInput(f"A value is not provided for the {param.name!r} parameter.")
            arguments[param.name] = value
        return arguments

    return parse


def _flask_request(call: Call) -> Any:
    """The request as Flask's Request: what a @rawhttp run() is given on Azure."""
    import flask  # type: ignore[import-not-found]  # the script's environment has it
    from werkzeug.test import EnvironBuilder  # type: ignore[import-not-found]

    headers = [(k, v) for k, v in call.headers if k not in ("content-length",)]
    builder = EnvironBuilder(
        path=call.path, method=call.method, headers=headers, data=call.body, query_string=call.query
    )
    try:
        return flask.Request(builder.get_environ())
    finally:
        builder.close()


def query_values(query: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    return values


def _query_input(query: str) -> dict[str, Any]:
    """Query parameters as azmlinfsrv reads them: JSON values, a repeated one as a list."""
    parsed: dict[str, Any] = {}
    for key, values in query_values(query).items():
        items = [_json_or_text(v) for v in values]
        parsed[key] = items[0] if len(items) == 1 else items
    return parsed


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _is_json(content_type: str | None) -> bool:
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime == _JSON or (mime.startswith("application/") and mime.endswith("+json"))


def request_headers(call: Call) -> dict[str, str]:
    """The headers as Flask's `dict(request.headers)`: names title-cased."""
    return {name.title(): value for name, value in call.headers}

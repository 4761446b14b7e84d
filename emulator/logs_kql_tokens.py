"""The words of the emulator's KQL subset: tokens, quoted strings, timespans and datetimes.

emulator/logs_kql.py parses and runs queries from these; a character this subset does not
take is a token of kind "other", refused where the parser meets it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from emulator.store import parse_utc

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<timespan>\d+(?:\.\d+)?(?:ms|d|h|m|s)\b)
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<op>==|!=|=~|!~|<=|>=|<|>|!in\b|\(|\)|,|\|)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class KqlError(ValueError):
    """A query the emulator does not run; the message names the part it does not take."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokens(query: str) -> list[Token]:
    """The query's tokens; a character KQL has but this subset does not is a token of kind
    "other", refused where the parser meets it (so the error names the operator first)."""
    found: list[Token] = []
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup
        if kind is not None:
            found.append(Token(kind, match.group(kind), match.start(kind)))
    return found


def timespan_seconds(text: str) -> float:
    number = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)", text)
    if number is None:
        raise KqlError(f"'{text}' is not a timespan such as 30m or 1h")
    return float(number.group(1)) * _UNITS[number.group(2)]


def unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def datetime_literal(text: str) -> dt.datetime:
    try:
        return parse_utc(text)
    except ValueError:
        raise KqlError(f"datetime({text}) is not an ISO 8601 time") from None

"""The part of KQL (Kusto Query Language) the emulator's Logs query API runs.

A query is a table name and a pipeline of these operators, applied in order:

    Table
    | where <condition>          and, or, not(...), parentheses; == != =~ !~ < <= > >=,
                                 in (...), !in (...), contains, has, startswith, endswith
    | project Col, Col, ...
    | order by Col [asc|desc], ...   (sort by is the same; desc is the default, as in KQL)
    | take N    (limit N)
    | top N by Col [asc|desc]
    | count

Operands are columns, strings ('..' or ".."), numbers, true/false, ago(<timespan>),
now(), and datetime('<ISO 8601>') (quoted); timespans are numbers with d, h, m, s or ms (1h, 30m).
Anything else is refused with a `KqlError` that names the part not taken, so a query
never silently means something else here than on Log Analytics.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from emulator.logs_kql_tokens import (
    KqlError,
    Token,
    datetime_literal,
    timespan_seconds,
    tokens,
    unquote,
)

__all__ = ["Column", "KqlError", "Plan", "Row", "parse", "timespan_seconds", "tokens"]

Row = dict[str, Any]
Column = tuple[str, str]  # (name, Log Analytics type)

OPERATORS = ("where", "project", "order by", "sort by", "take", "limit", "top", "count")
_COMPARISONS = ("==", "!=", "=~", "!~", "<=", ">=", "<", ">")
_WORD_COMPARISONS = ("contains", "has", "startswith", "endswith", "in", "!in")
# --- the plan -------------------------------------------------------------------------------

Condition = Callable[[Row], bool]
Value = Callable[[Row], Any]


@dataclass
class Plan:
    """A parsed query: the table, and the pipeline over its rows."""

    table: str
    steps: list[Callable[[list[Row], list[Column]], tuple[list[Row], list[Column]]]]

    def run(self, rows: list[Row], columns: list[Column]) -> tuple[list[Row], list[Column]]:
        for step in self.steps:
            rows, columns = step(rows, columns)
        return rows, columns


class _Parser:
    def __init__(self, query: str, columns: Callable[[str], list[Column]], now: dt.datetime):
        self.query = query
        self.tokens = tokens(query)
        self.index = 0
        self.columns_of = columns
        self.now = now
        self.known: set[str] = set()

    # token helpers

    def peek(self, offset: int = 0) -> Token | None:
        at = self.index + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise KqlError(f"the query ends too early: '{self.query.strip()}'")
        self.index += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.take()
        if token.text.lower() != text:
            raise KqlError(f"expected '{text}' at position {token.at}, found '{token.text}'")
        return token

    def at_text(self, text: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.text == text

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "name" and token.text.lower() in words

    # the query

    def parse(self) -> Plan:
        first = self.take()
        if first.kind != "name":
            raise KqlError(f"a query starts with a table name, not '{first.text}'")
        columns = self.columns_of(first.text)
        self.known = {name for name, _ in columns}
        plan = Plan(first.text, [])
        while self.peek() is not None:
            bar = self.take()
            if bar.text != "|":
                raise KqlError(f"expected '|' at position {bar.at}, found '{bar.text}'")
            plan.steps.append(self.operator())
        return plan

    def operator(self) -> Callable[[list[Row], list[Column]], tuple[list[Row], list[Column]]]:
        word = self.take()
        name = word.text.lower()
        if name in ("order", "sort"):
            self.expect("by")
            keys = self.sort_keys()
            return lambda rows, cols: (_sorted(rows, keys), cols)
        if name == "where":
            condition = self.condition()
            return lambda rows, cols: ([r for r in rows if condition(r)], cols)
        if name == "project":
            wanted = self.column_list()
            self.known = set(wanted)
            return lambda rows, cols: (
                [{c: r.get(c) for c in wanted} for r in rows],
                [c for w in wanted for c in cols if c[0] == w],
            )
        if name in ("take", "limit"):
            n = self.count_literal(name)
            return lambda rows, cols: (rows[:n], cols)
        if name == "top":
            n = self.count_literal(name)
            self.expect("by")
            keys = self.sort_keys()
            return lambda rows, cols: (_sorted(rows, keys)[:n], cols)
        if name == "count":
            self.known = {"Count"}
            return lambda rows, cols: ([{"Count": len(rows)}], [("Count", "long")])
        raise KqlError(
            f"the emulator's Logs API does not take the operator '{word.text}' (position "
            f"{word.at}); it takes {', '.join(OPERATORS)}"
        )

    def count_literal(self, operator: str) -> int:
        token = self.take()
        if token.kind != "number" or "." in token.text:
            raise KqlError(f"'{operator}' needs a whole number, found '{token.text}'")
        return int(token.text)

    def column(self) -> str:
        token = self.take()
        if token.kind != "name":
            raise KqlError(f"expected a column at position {token.at}, found '{token.text}'")
        if token.text not in self.known:
            raise KqlError(
                f"'{token.text}' (position {token.at}) is not a column here; the columns are "
                + ", ".join(sorted(self.known))
            )
        return token.text

    def column_list(self) -> list[str]:
        names = [self.column()]
        while self.at_text(","):
            self.take()
            names.append(self.column())
        return names

    def sort_keys(self) -> list[tuple[str, bool]]:
        keys: list[tuple[str, bool]] = []
        while True:
            name = self.column()
            descending = True
            if self.at_word("asc", "desc"):
                descending = self.take().text.lower() == "desc"
            keys.append((name, descending))
            if not self.at_text(","):
                return keys
            self.take()

    # conditions

    def condition(self) -> Condition:
        left = self.conjunction()
        while self.at_word("or"):
            self.take()
            left = _either(left, self.conjunction())
        return left

    def conjunction(self) -> Condition:
        left = self.term()
        while self.at_word("and"):
            self.take()
            left = _both(left, self.term())
        return left

    def term(self) -> Condition:
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        if self.at_word("not") and self.at_text("(", 1):
            self.take()
            self.take()
            inner = self.condition()
            self.expect(")")
            return lambda r: not inner(r)
        left = self.operand()
        op = self.take()
        text = op.text.lower()
        if text in ("in", "!in"):
            values = self.value_list()
            if text == "in":
                return lambda r: left(r) in values
            return lambda r: left(r) not in values
        if text not in _COMPARISONS and text not in _WORD_COMPARISONS:
            raise KqlError(
                f"the emulator's Logs API does not take '{op.text}' (position {op.at}) in a "
                f"condition; it takes {', '.join(_COMPARISONS + _WORD_COMPARISONS)}"
            )
        right = self.operand()
        return _compare(text, left, right)

    def value_list(self) -> list[Any]:
        self.expect("(")
        values = [self.operand()({})]
        while self.at_text(","):
            self.take()
            values.append(self.operand()({}))
        self.expect(")")
        return values

    def operand(self) -> Value:
        token = self.take()
        if token.kind == "string":
            text = unquote(token.text)
            return lambda r: text
        if token.kind == "number":
            number = float(token.text) if "." in token.text else int(token.text)
            return lambda r: number
        if token.kind == "timespan":
            span = dt.timedelta(seconds=timespan_seconds(token.text))
            return lambda r: span
        if token.kind == "name":
            word = token.text
            if self.at_text("("):
                return self.function(token)
            if word in ("true", "false"):
                flag = word == "true"
                return lambda r: flag
            self.index -= 1
            name = self.column()
            return lambda r: r.get(name)
        raise KqlError(f"expected a value at position {token.at}, found '{token.text}'")

    def function(self, token: Token) -> Value:
        name = token.text.lower()
        self.expect("(")
        if name == "now":
            self.expect(")")
            now = self.now
            return lambda r: now
        if name == "ago":
            span = self.take()
            if span.kind != "timespan":
                raise KqlError(f"ago() takes a timespan such as 1h, found '{span.text}'")
            self.expect(")")
            at = self.now - dt.timedelta(seconds=timespan_seconds(span.text))
            return lambda r: at
        if name == "datetime":
            literal = self.take()
            if literal.kind != "string":
                raise KqlError(
                    f"datetime() takes a quoted ISO 8601 time here, such as "
                    f"datetime('2026-12-01T10:00:00Z'), found '{literal.text}'"
                )
            self.expect(")")
            at = datetime_literal(unquote(literal.text))
            return lambda r: at
        raise KqlError(
            f"the emulator's Logs API does not take the function '{token.text}()' (position "
            f"{token.at}); it takes ago(), now() and datetime()"
        )


def parse(query: str, columns: Callable[[str], list[Column]], *, now: dt.datetime) -> Plan:
    """The plan of `query`; `columns(table)` gives a table's columns or raises KqlError."""
    if not query.strip():
        raise KqlError("the query is empty")
    return _Parser(query, columns, now).parse()


# --- evaluation -----------------------------------------------------------------------------


def _either(a: Condition, b: Condition) -> Condition:
    return lambda row: a(row) or b(row)


def _both(a: Condition, b: Condition) -> Condition:
    return lambda row: a(row) and b(row)


def _compare(op: str, left: Value, right: Value) -> Condition:
    def text(value: Any) -> str:
        return "" if value is None else str(value)

    tests: dict[str, Callable[[Any, Any], bool]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "=~": lambda a, b: text(a).lower() == text(b).lower(),
        "!~": lambda a, b: text(a).lower() != text(b).lower(),
        "contains": lambda a, b: text(b).lower() in text(a).lower(),
        "has": lambda a, b: text(b).lower() in re.split(r"\W+", text(a).lower()),
        "startswith": lambda a, b: text(a).lower().startswith(text(b).lower()),
        "endswith": lambda a, b: text(a).lower().endswith(text(b).lower()),
    }
    if op in tests:
        test = tests[op]
        return lambda r: test(left(r), right(r))
    order: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    check = order[op]

    def ordered(row: Row) -> bool:
        a, b = left(row), right(row)
        if a is None or b is None:
            return False
        try:
            return check(a, b)
        except TypeError:
            raise KqlError(
                f"'{op}' cannot compare {type(a).__name__} with {type(b).__name__}"
            ) from None

    return ordered


def _sorted(rows: Sequence[Row], keys: list[tuple[str, bool]]) -> list[Row]:
    ordered = list(rows)
    for name, descending in reversed(keys):
        present = [r for r in ordered if r.get(name) is not None]
        missing = [r for r in ordered if r.get(name) is None]
        present.sort(key=lambda r: r[name], reverse=descending)
        # KQL puts nulls first in ascending order and last in descending order.
        ordered = present + missing if descending else missing + present
    return ordered

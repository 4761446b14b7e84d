"""The emulator's KQL subset (emulator/logs_kql.py): what it runs, and what it refuses by name."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from emulator.logs_api import parse_timespan
from emulator.logs_kql import Column, KqlError, parse, timespan_seconds

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
COLUMNS: list[Column] = [
    ("TimeGenerated", "datetime"),
    ("DeploymentName", "string"),
    ("ResponseCode", "int"),
    ("Message", "string"),
]
ROWS: list[dict[str, Any]] = [
    {"TimeGenerated": NOW - dt.timedelta(minutes=90), "DeploymentName": "blue",
     "ResponseCode": 200, "Message": "Model loaded"},
    {"TimeGenerated": NOW - dt.timedelta(minutes=30), "DeploymentName": "green",
     "ResponseCode": 500, "Message": "Traceback: boom"},
    {"TimeGenerated": NOW - dt.timedelta(minutes=10), "DeploymentName": "blue",
     "ResponseCode": 429, "Message": None},
    {"TimeGenerated": NOW - dt.timedelta(minutes=1), "DeploymentName": "Green",
     "ResponseCode": 200, "Message": "init complete"},
]  # fmt: skip


def _columns(table: str) -> list[Column]:
    if table != "T":
        raise KqlError(f"'{table}' is not a table")
    return COLUMNS


def run(query: str) -> list[dict[str, Any]]:
    rows, _ = parse(query, _columns, now=NOW).run([dict(r) for r in ROWS], list(COLUMNS))
    return rows


def codes(query: str) -> list[int]:
    return [r["ResponseCode"] for r in run(query)]


def test_where_compares_strings_numbers_and_times() -> None:
    assert codes('T | where DeploymentName == "blue"') == [200, 429]
    assert codes("T | where DeploymentName =~ 'GREEN'") == [500, 200]
    assert codes('T | where DeploymentName !~ "green"') == [200, 429]
    assert codes("T | where ResponseCode >= 429") == [500, 429]
    assert codes("T | where TimeGenerated > ago(1h)") == [500, 429, 200]
    assert codes("T | where TimeGenerated >= datetime('2026-12-02T11:45:00Z')") == [429, 200]


def test_and_or_not_and_parentheses_group_as_in_kql() -> None:
    blue = 'T | where DeploymentName == "blue"'
    assert codes(f"{blue} and ResponseCode == 200 or ResponseCode == 500") == [200, 500]
    assert codes(f"{blue} and (ResponseCode == 200 or ResponseCode == 500)") == [200]
    assert codes("T | where not(ResponseCode == 200)") == [500, 429]
    assert codes("T | where ResponseCode in (429, 500)") == [500, 429]
    assert codes("T | where ResponseCode !in (429, 500)") == [200, 200]


def test_string_operators_ignore_case_and_skip_nulls() -> None:
    assert codes('T | where Message contains "BOOM"') == [500]
    assert codes('T | where Message has "init"') == [200]
    assert codes('T | where Message has "ini"') == []
    assert codes('T | where Message startswith "model"') == [200]
    assert codes('T | where Message endswith "complete"') == [200]


def test_project_order_take_top_and_count() -> None:
    rows, columns = parse("T | project ResponseCode, DeploymentName", _columns, now=NOW).run(
        [dict(r) for r in ROWS], list(COLUMNS)
    )
    assert columns == [("ResponseCode", "int"), ("DeploymentName", "string")]
    assert list(rows[0]) == ["ResponseCode", "DeploymentName"]
    assert codes("T | order by ResponseCode asc") == [200, 200, 429, 500]
    assert codes("T | sort by ResponseCode") == [500, 429, 200, 200]  # desc by default
    assert codes("T | order by DeploymentName asc, TimeGenerated desc") == [200, 429, 200, 500]
    assert codes("T | take 2") == [200, 500]
    assert codes("T | limit 1") == [200]
    assert codes("T | top 2 by TimeGenerated") == [200, 429]
    assert run("T | where ResponseCode == 200 | count") == [{"Count": 2}]
    # Nulls sort first ascending, last descending.
    assert run("T | order by Message asc")[0]["Message"] is None
    assert run("T | order by Message desc")[-1]["Message"] is None


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("T | summarize count() by DeploymentName", "'summarize'"),
        ("T | extend x = 1", "'extend'"),
        ("T | where ResponseCode matches regex '5..'", "'matches'"),
        ("T | where strlen(Message) > 3", "'strlen()'"),
        ("T | project Nope", "'Nope'"),
        ("T | project ResponseCode | where DeploymentName == 'blue'", "'DeploymentName'"),
        ("Other | take 1", "'Other'"),
        ("T | take 1.5", "'1.5'"),
        ("T | take 1; T", "';'"),
        ("T | where ResponseCode ==", "ends too early"),
        ("T | where TimeGenerated > ago(soon)", "'soon'"),
        ("T | where TimeGenerated > datetime(2026-12-01)", "quoted"),
        ("T | where TimeGenerated < now() - 1h", "'-'"),
        ("", "empty"),
    ],
)
def test_what_is_not_taken_is_refused_by_name(query: str, named: str) -> None:
    with pytest.raises(KqlError, match=re.escape(named)):
        run(query)


def test_comparing_a_time_with_a_number_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(KqlError, match="cannot compare"):
        run("T | where TimeGenerated > 5")


def test_timespans_and_the_request_timespan() -> None:
    assert timespan_seconds("90s") == 90
    assert timespan_seconds("1.5h") == 5400
    assert timespan_seconds("250ms") == 0.25
    now = NOW.timestamp()
    assert parse_timespan("PT3600.0S", now) == (now - 3600, now)
    assert parse_timespan("P1DT2H", now) == (now - 93600, now)
    start, end = parse_timespan("2026-12-02T10:00:00Z/2026-12-02T11:00:00Z", now)
    assert end - start == 3600
    start, end = parse_timespan("2026-12-02T10:00:00.000Z/PT30M", now)
    assert end - start == 1800
    assert parse_timespan(None, now) == (0.0, now)

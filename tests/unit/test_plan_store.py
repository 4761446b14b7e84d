"""Promotion plans in the dashboard's SQLite store (rollout/plan_store.py), in a temporary
$BLUEGREEN_HOME."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from rollout import history, plan_store
from rollout.errors import Conflict, NotFound
from rollout.evidence import Evidence
from rollout.gates import Gates
from rollout.promotion import Plan, Step, abort, promote, start

WS = "sub/rg/ws"
T0 = 1_800_000_000.0
BLUE = Evidence("blue", minutes=15, live=10_000, classified=10_000, errors_5xx=30, p95_ms=100.0)
GREEN = Evidence("green", minutes=15, live=1_000, classified=1_000, errors_5xx=3, p95_ms=110.0)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def new_plan(endpoint: str = "my-endpoint") -> Plan:
    return Plan(endpoint, "blue", "green", workspace=WS)


def test_a_saved_plan_is_read_back_as_it_was(home: Path) -> None:
    steps = (Step("mirror", 20, 3.0, Gates(0.02, 1.2, 75)), Step("live", 100), Step("retire"))
    saved = plan_store.save_plan(Plan("my-endpoint", "blue", "green", steps, workspace=WS))
    assert (saved.id, saved.version) == (1, 1)
    assert (home / "history.db").exists()
    assert plan_store.get_plan(1) == saved
    assert plan_store.active_plan(WS, "my-endpoint") == saved


def test_a_plan_survives_a_restart_with_its_verdicts(home: Path) -> None:
    p = plan_store.save_plan(new_plan())
    p = plan_store.save_plan(start(p, now=T0))
    p = replace(p, steps=tuple(replace(s, min_minutes=0.0) for s in p.steps))
    p = plan_store.save_plan(promote(p, baseline=BLUE, candidate=GREEN, now=T0 + 60))
    # a new process: nothing but the file is shared
    again = plan_store.active_plan(WS, "MY-ENDPOINT")
    assert again == p
    assert again is not None and again.current == 1
    assert again.transitions[-1].verdicts == p.transitions[-1].verdicts
    assert again.transitions[-1].verdicts[0].gate == "minimum time"


def test_every_transition_is_an_audit_entry(home: Path) -> None:
    p = plan_store.save_plan(new_plan())
    p = plan_store.save_plan(start(p, now=T0, who="ana"))
    plan_store.save_plan(abort(p, now=T0 + 60, reason="429s on green", who="ana"))
    changes = history.list_changes(workspace=WS, endpoint="my-endpoint")
    assert [(c.action, c.who, c.reason) for c in changes] == [
        ("plan start", "ana", ""),
        ("plan abort", "ana", "429s on green"),
    ]
    assert changes[0].after["step"] == "mirror 10%"


def test_a_second_open_plan_for_an_endpoint_is_refused() -> None:
    plan_store.save_plan(new_plan())
    with pytest.raises(Conflict, match="'my-endpoint' already has an open promotion plan"):
        plan_store.save_plan(new_plan())
    assert plan_store.save_plan(new_plan("other-endpoint")).id == 2


def test_a_new_plan_may_follow_a_closed_one() -> None:
    first = plan_store.save_plan(new_plan())
    plan_store.save_plan(abort(first, now=T0))
    second = plan_store.save_plan(new_plan())
    assert plan_store.active_plan(WS, "my-endpoint") == second
    assert [p.state for p in plan_store.list_plans(WS, "my-endpoint")] == ["aborted", "ready"]


def test_two_sessions_saving_the_same_version_cannot_both_win() -> None:
    read = plan_store.save_plan(new_plan())
    plan_store.save_plan(start(read, now=T0))  # the first session
    with pytest.raises(Conflict, match="changed in another session \\(you have version 1"):
        plan_store.save_plan(abort(read, now=T0))  # the second, from the same read
    stored = plan_store.get_plan(read.id or 0)
    assert (stored.state, stored.version) == ("running", 2)


def test_a_missing_plan_is_not_found() -> None:
    with pytest.raises(NotFound, match="promotion plan 7 does not exist"):
        plan_store.get_plan(7)
    assert plan_store.active_plan(WS, "my-endpoint") is None
    assert plan_store.list_plans(WS, "my-endpoint") == []


def test_plans_share_the_audit_logs_file_in_their_own_table(home: Path) -> None:
    history.record(workspace=WS, endpoint="my-endpoint", action="traffic", before={}, after={})
    plan_store.save_plan(new_plan())
    with sqlite3.connect(home / "history.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"changes", "plans"} <= tables

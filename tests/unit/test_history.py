"""The audit log's store (rollout/history.py), what an entry says in words
(history_words.py), who made it (principal.py), and changes noticed as made outside the
dashboard (drift.py)."""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rollout import drift, history
from rollout.endpoints import DeploymentView, EndpointView
from rollout.history_words import entry_words, took_text
from rollout.principal import principal_of, token_claims

WS = "sub/rg/ws"


def _view(
    traffic: dict[str, int], mirror: dict[str, int] | None = None, **counts: int
) -> EndpointView:
    names = counts or {"blue": 1, "green": 1}
    deployments = tuple(
        DeploymentView(n, "Succeeded", f"{n}-model:1", "Standard_DS3_v2", c, traffic.get(n, 0),
                       (mirror or {}).get(n, 0), 5000, 1)
        for n, c in names.items()
    )  # fmt: skip
    return EndpointView(
        "my-endpoint", "Succeeded", "key", "https://x/score", traffic, mirror or {}, deployments
    )


# --- the store ----------------------------------------------------------------------------


def test_an_entry_comes_back_with_its_id_duration_and_undo(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    first = history.record(
        workspace=WS, endpoint="my-endpoint", action="traffic", before={}, after={},
        who="ana", duration_s=2.5, path=db,
    )  # fmt: skip
    second = history.record(
        workspace=WS, endpoint="my-endpoint", action="traffic", before={}, after={},
        who="ana", undo_of=first.id, path=db,
    )  # fmt: skip
    assert first.id is not None and second.id == first.id + 1
    (got,) = [c for c in history.list_changes(workspace=WS, endpoint=None, path=db) if c.undo_of]
    assert got == second
    assert history.get_change(first.id, path=db) == first
    assert history.get_change(999, path=db) is None


def test_changes_list_newest_first_across_endpoints_with_a_limit(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    for endpoint in ("a-ep", "b-ep", "a-ep"):
        history.record(
            workspace=WS, endpoint=endpoint, action="scale", before={}, after={}, path=db
        )
    history.record(workspace="other", endpoint="a-ep", action="scale", before={}, after={}, path=db)
    every = history.list_changes(workspace=WS, endpoint=None, newest_first=True, path=db)
    assert [c.endpoint for c in every] == ["a-ep", "b-ep", "a-ep"]
    assert [c.id for c in every] == sorted((c.id for c in every), reverse=True)  # type: ignore[misc]
    assert len(history.list_changes(workspace=WS, endpoint=None, limit=2, path=db)) == 2
    assert len(history.list_changes(workspace=WS, endpoint="a-ep", path=db)) == 2
    assert history.endpoints_changed(workspace=WS, path=db) == ["a-ep", "b-ep"]


def test_a_log_from_the_first_version_gains_the_new_columns_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.db"
    with closing(sqlite3.connect(db)) as old, old:
        old.executescript(
            "CREATE TABLE changes (id INTEGER PRIMARY KEY, at REAL NOT NULL, who TEXT NOT NULL,"
            " workspace TEXT NOT NULL, endpoint TEXT NOT NULL, action TEXT NOT NULL,"
            " before TEXT NOT NULL, after TEXT NOT NULL, reason TEXT NOT NULL,"
            " outcome TEXT NOT NULL);"
        )
        old.execute(
            "INSERT INTO changes(at, who, workspace, endpoint, action, before, after, reason,"
            " outcome) VALUES (1.0, 'bo', ?, 'ep', 'traffic', '{}', '{}', 'why', 'Succeeded')",
            (WS,),
        )
    (kept,) = history.list_changes(workspace=WS, endpoint="ep", path=db)
    assert (kept.who, kept.reason, kept.duration_s, kept.undo_of) == ("bo", "why", None, None)
    added = history.record(
        workspace=WS, endpoint="ep", action="traffic", before={}, after={}, duration_s=1.0, path=db
    )
    assert history.get_change(added.id or 0, path=db) == added


# --- in words -----------------------------------------------------------------------------


def _change(action: str, before: dict[str, object], after: dict[str, object]) -> history.Change:
    return history.Change(1.0, "ana", WS, "my-endpoint", action, before, after, "", "Succeeded")


def test_entries_in_words() -> None:
    traffic = entry_words(
        _change("traffic", {"traffic": {"blue": 100}, "mirror": {}},
                {"traffic": {"blue": 90, "green": 10}, "mirror": {"green": 0}})
    )  # fmt: skip
    assert traffic.before == "live blue 100% · mirror none"
    assert traffic.after == "live blue 90%, green 10% · mirror none"
    scale = entry_words(
        _change("scale", {"deployment": "green", "instance_count": 1},
                {"deployment": "green", "instance_count": 3})
    )  # fmt: skip
    assert (scale.what, scale.before, scale.after) == ("scale green", "1 instance", "3 instances")
    plan = entry_words(
        _change("plan promote", {"plan": 4, "step": "mirror 10%"},
                {"plan": 4, "step": "live 10%", "verdicts": {"errors": "pass"}})
    )  # fmt: skip
    assert (plan.what, plan.after) == ("plan promote #4", "live 10% (gates errors: pass)")
    assert took_text(None) == "–" and took_text(3.21) == "3.2 s" and took_text(300) == "5.0 min"


# --- who ----------------------------------------------------------------------------------


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{body}.signature"


@pytest.mark.parametrize(
    ("claims", "who"),
    [
        ({"upn": "ana@contoso.com", "appid": "x"}, "ana@contoso.com"),
        ({"unique_name": "live.com#bo@example.com"}, "live.com#bo@example.com"),
        ({"appid": "1234-abcd", "oid": "o-1"}, "app 1234-abcd"),
        ({"oid": "o-1"}, "object o-1"),
        ({}, None),
    ],
)
def test_the_principal_is_the_tokens_person_else_its_application(
    claims: dict[str, object], who: str | None
) -> None:
    assert principal_of(token_claims(_jwt(claims))) == who


def test_a_token_that_is_not_a_jwt_names_nobody() -> None:
    assert token_claims("opaque-emulator-token") == {}
    assert token_claims("a.!!!.c") == {}


# --- outside the dashboard ----------------------------------------------------------------


def test_a_difference_without_an_entry_between_is_an_outside_change(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    assert drift.observe(WS, _view({"blue": 100}), now=1000.0, path=db) is None  # first sight
    assert drift.observe(WS, _view({"blue": 100}), now=1030.0, path=db) is None  # same
    found = drift.observe(WS, _view({"blue": 90, "green": 10}), now=1200.0, path=db)
    assert found is not None
    assert (found.since, found.at, found.parts) == (1000.0, 1200.0, ["traffic"])
    assert found.before.traffic == {"blue": 100}
    assert "traffic of my-endpoint changed outside the dashboard between" in found.words()
    (listed,) = drift.outside_changes(workspace=WS, endpoint="my-endpoint", path=db)
    assert listed == found


def test_a_difference_with_an_entry_of_the_dashboard_between_is_not(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    drift.observe(WS, _view({"blue": 100}), now=1000.0, path=db)
    history.record(
        workspace=WS, endpoint="my-endpoint", action="traffic", before={}, after={}, path=db
    )  # at time.time(), after 1000
    assert drift.observe(WS, _view({"blue": 90, "green": 10}), now=2e9, path=db) is None
    assert drift.outside_changes(workspace=WS, endpoint=None, path=db) == []


def test_the_last_sighting_moves_on_at_most_once_a_minute_and_bounds_the_window(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.db"
    drift.observe(WS, _view({"blue": 100}), now=1000.0, path=db)
    drift.observe(WS, _view({"blue": 100}), now=1100.0, path=db)  # a minute on: seen moves
    found = drift.observe(WS, _view({"blue": 100}, blue=2, green=1), now=1500.0, path=db)
    assert found is not None
    assert (found.since, found.parts) == (1100.0, ["instances"])

"""The pure parts of the comparison panel and the plan view: default pairs, windows from a
traffic change, the step editor's rows and the timeline's statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.evidence_panel import default_pair, last_traffic_change, window_of
from components.plan_view import step_status, steps_frame, steps_from_frame
from rollout import history, promotion
from rollout.endpoints import DeploymentView, EndpointView
from rollout.gates import Gates
from rollout.promotion import DEFAULT_STEPS, Plan, Step


def _endpoint(live: dict[str, int], mirror: dict[str, int] | None = None) -> EndpointView:
    mirror = mirror or {}
    deployments = tuple(
        DeploymentView(n, "Succeeded", "m:1", "Standard_DS3_v2", 1, v, mirror.get(n, 0), 5000, 1)
        for n, v in live.items()
    )
    return EndpointView(
        "my-ep", "Succeeded", "key", "https://x/score", dict(live), dict(mirror), deployments
    )


def test_the_baseline_is_the_busiest_and_the_candidate_the_mirror_target() -> None:
    assert default_pair(_endpoint({"blue": 100, "green": 0})) == ("blue", "green")
    assert default_pair(_endpoint({"blue": 10, "green": 90})) == ("green", "blue")
    three = _endpoint({"a": 60, "b": 40, "c": 0}, {"b": 0})
    assert default_pair(three) == ("a", "c")  # the least live traffic
    mirrored = _endpoint({"a": 100, "b": 0, "c": 0}, {"b": 10})
    assert default_pair(mirrored) == ("a", "b")
    assert default_pair(_endpoint({"blue": 100})) is None


def test_the_last_applied_traffic_change_starts_the_window() -> None:
    def change(at: float, action: str = "traffic", outcome: str = "Succeeded") -> history.Change:
        return history.Change(at, "me", "ws", "ep", action, {}, {}, "", outcome)

    changes = [change(10), change(20), change(30, outcome="Failed: no"), change(40, "scale")]
    assert last_traffic_change(changes) == 20
    assert last_traffic_change([]) is None


def test_a_window_from_a_change_starts_at_the_first_whole_bucket_after_it() -> None:
    end = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    change = datetime(2026, 1, 1, 12, 5, 3, tzinfo=UTC).timestamp()
    window = window_of(change, end, sub_minute=True)
    assert window.granularity == timedelta(seconds=10)
    assert window.start == datetime(2026, 1, 1, 12, 5, 10, tzinfo=UTC)
    assert window.end == end

    just_now = (end - timedelta(seconds=2)).timestamp()
    early = window_of(just_now, end, sub_minute=True)
    assert early.start > datetime.fromtimestamp(just_now, UTC)
    assert early.end - early.start == early.granularity  # one bucket, empty so far

    default = window_of(None, end, sub_minute=False)
    assert default.start == end - timedelta(minutes=30)
    assert default.granularity >= timedelta(minutes=1)


def test_the_step_editor_round_trips_the_default_steps() -> None:
    assert steps_from_frame(steps_frame(DEFAULT_STEPS)) == DEFAULT_STEPS


def test_blank_cells_take_the_defaults_and_blank_rows_are_skipped() -> None:
    frame = steps_frame((Step("live", 100, 5.0, Gates(0.02, 2.0, 50)), Step("retire")))
    frame.loc[2] = [None] * len(frame.columns)
    frame.loc[0, "max_p95_ratio"] = float("nan")
    steps = steps_from_frame(frame)
    assert steps == (Step("live", 100, 5.0, Gates(0.02, 1.5, 50)), Step("retire", 0, 10.0))


@pytest.mark.parametrize(
    ("state", "current", "expected"),
    [
        ("ready", -1, ["next", "next", "next"]),
        ("running", 1, ["done", "current", "next"]),
        ("aborted", 1, ["done", "aborted", "skipped"]),
        ("retired", 2, ["done", "done", "done"]),
    ],
)
def test_the_timeline_marks_done_current_and_next(
    state: promotion.PlanState, current: int, expected: list[str]
) -> None:
    steps = (Step("mirror", 10), Step("live", 100), Step("retire"))
    plan = Plan("my-ep", "blue", "green", steps, state=state, current=current)
    assert [step_status(plan, i) for i in range(3)] == expected

"""The Metrics page's figure builders: series, labels, mirror styling, markers, words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import pytest

from components import charts
from components.split import NAMED_COLORS, PALETTE, color_for, split_figure
from rollout import metrics
from rollout.history import Change

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WINDOW = metrics.Window(T0, T0 + timedelta(minutes=15), timedelta(minutes=1))
BLUE_GREEN = ("blue", "green")


def _requests(rows: list[tuple[int, str, str, float]]) -> pd.DataFrame:
    """(minute, deployment, traffic_type, count) rows as rollout.metrics makes them (PT1M)."""
    frame = pd.DataFrame(
        [
            {
                "time": T0 + timedelta(minutes=m),
                "deployment": d,
                "traffic_type": t,
                "metric": metrics.REQUESTS,
                "count": n,
                "value": n,
            }
            for m, d, t, n in rows
        ],
        columns=metrics.REQUEST_COLUMNS,
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _status(rows: list[tuple[int, str, str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "time": T0 + timedelta(minutes=m),
                "deployment": d,
                "traffic_type": t,
                "status_class": s,
                "metric": metrics.REQUESTS,
                "count": n,
                "value": n,
            }
            for m, d, t, s, n in rows
        ],
        columns=metrics.STATUS_COLUMNS,
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _latency(rows: list[tuple[int, str, str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {"time": T0 + timedelta(minutes=m), "deployment": d, "traffic_type": t,
             "metric": p, "value": v}
            for m, d, t, p, v in rows
        ],
        columns=metrics.LATENCY_COLUMNS,
    )  # fmt: skip
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _traces(fig: go.Figure) -> dict[str, Any]:
    return {trace.name: trace for trace in fig.data}


def _texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def _subtitle(fig: go.Figure) -> str:
    return str(fig.layout.title.subtitle.text or "")


def _change(
    minute: float,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    outcome: str = "Succeeded",
    reason: str = "",
) -> Change:
    at = (T0 + timedelta(minutes=minute)).timestamp()
    return Change(at, "ana", "ws", "my-endpoint", action, before, after, reason, outcome)


# --- requests --------------------------------------------------------------------------------


def test_live_and_mirrored_requests_are_separate_series_and_the_mirror_is_dashed() -> None:
    frame = _requests(
        [(0, "blue", "live", 90), (1, "blue", "live", 60), (0, "green", "mirror", 9),
         (1, "green", "mirror", 6)]
    )  # fmt: skip
    fig = charts.requests_figure(frame, deployments=BLUE_GREEN, window=WINDOW, tz=UTC)
    traces = _traces(fig)
    assert set(traces) == {"blue", "green (mirror)"}
    assert traces["blue"].line.dash is None
    assert traces["green (mirror)"].line.dash == charts.MIRROR_DASH
    assert list(traces["blue"].y) == [90, 60]
    assert traces["blue"].line.color == color_for("blue")
    assert traces["green (mirror)"].line.color == color_for("green")
    assert "150 requests and 15 mirrored copies." in _subtitle(fig)
    assert not [t for t in _texts(fig) if "No requests" in t]


def test_direct_calls_to_the_mirror_target_stay_solid_beside_its_mirrored_copies() -> None:
    frame = _requests([(0, "blue", "live", 90), (0, "green", "mirror", 9), (0, "green", "live", 4)])
    traces = _traces(charts.requests_figure(frame, deployments=BLUE_GREEN, tz=UTC))
    assert set(traces) == {"blue", "green", "green (mirror)"}
    assert traces["green"].line.dash is None


def test_on_azure_the_mirror_target_is_labelled_mirrored_plus_direct() -> None:
    frame = _requests([(0, "blue", metrics.ALL, 90), (0, "green", metrics.ALL, 13)])
    fig = charts.requests_figure(
        frame, deployments=BLUE_GREEN, mirror_targets=("green",), window=WINDOW, tz=UTC
    )
    traces = _traces(fig)
    assert set(traces) == {"blue", "green (mirrored + direct)"}
    assert traces["green (mirrored + direct)"].line.dash == charts.MIRROR_DASH
    assert traces["blue"].line.dash is None
    assert "103 requests (mirrored copies included)." in _subtitle(fig)
    assert "cannot tell them apart" in _subtitle(fig)


def test_no_requests_is_said_in_words_on_a_drawn_chart() -> None:
    empty = _requests([])
    fig = charts.requests_figure(empty, deployments=BLUE_GREEN, window=WINDOW, tz=UTC)
    assert list(fig.data) == []
    assert "No requests in this window" in _texts(fig)
    start, end = fig.layout.xaxis.range
    assert pd.Timestamp(start) == pd.Timestamp(WINDOW.start.replace(tzinfo=None))
    assert pd.Timestamp(end) == pd.Timestamp(WINDOW.end.replace(tzinfo=None))
    fig.to_json()  # a whole figure, that plotly can serialize


def test_buckets_with_zero_requests_only_are_no_requests() -> None:
    fig = charts.requests_figure(_requests([(0, "blue", "live", 0)]), tz=UTC)
    assert list(fig.data) == []
    assert "No requests in this window" in _texts(fig)


def test_dropped_mirror_copies_are_told_in_words() -> None:
    frame = _requests([(0, "blue", "live", 90), (0, "green", "mirror", 5)])
    dropped = frame.iloc[:0].drop(columns="traffic_type")
    fig = charts.requests_figure(frame, tz=UTC, dropped=dropped)
    assert "dropped" not in _subtitle(fig)
    dropped = pd.DataFrame(
        [{"time": T0, "deployment": "green", "metric": metrics.MIRROR_DROPPED, "count": 4.0,
          "value": 4.0}],
        columns=metrics.DROPPED_COLUMNS,
    )  # fmt: skip
    fig = charts.requests_figure(frame, tz=UTC, dropped=dropped)
    assert "Mirror copies dropped: green 4 (the mirror target had no room" in _subtitle(fig)


def test_a_deployment_without_requests_is_named() -> None:
    frame = _requests([(0, "blue", "live", 30)])
    fig = charts.requests_figure(frame, deployments=("blue", "green", "red"), tz=UTC)
    assert set(_traces(fig)) == {"blue"}
    assert "No requests for green, red in this window." in _subtitle(fig)


# --- latency ---------------------------------------------------------------------------------


def test_latency_has_one_panel_per_percentile_and_one_series_per_deployment() -> None:
    rows = [
        (0, d, t, p, v)
        for d, t, base in (("blue", "live", 10.0), ("green", "mirror", 30.0))
        for p, v in (("P50", base), ("P95", base * 2), ("P99", base * 3))
    ]
    fig = charts.latency_figure(_latency(rows), deployments=BLUE_GREEN, window=WINDOW, tz=UTC)
    assert [a.text for a in fig.layout.annotations[:3]] == ["P50", "P95", "P99"]
    assert len(fig.data) == 6
    by_panel = {(t.name, t.xaxis): t for t in fig.data}
    assert list(by_panel[("blue", "x")].y) == [10.0]
    assert list(by_panel[("blue", "x2")].y) == [20.0]
    assert list(by_panel[("green (mirror)", "x3")].y) == [90.0]
    assert by_panel[("green (mirror)", "x")].line.dash == charts.MIRROR_DASH
    assert [t.showlegend for t in fig.data if t.name == "blue"].count(True) == 1


def test_a_latency_line_breaks_where_there_was_no_data() -> None:
    rows = [(m, "blue", "live", "P50", 5.0) for m in (0, 1, 2, 8, 9)]
    fig = charts.latency_figure(_latency(rows), window=WINDOW, tz=UTC)
    p50 = next(t for t in fig.data if t.xaxis == "x")
    values = list(p50.y)
    assert len(values) == 6
    assert pd.isna(values[3])  # the line stops after minute 2 and starts again at 8
    assert pd.Timestamp(p50.x[3]) == pd.Timestamp(datetime(2026, 1, 5, 12, 3))


def test_no_latency_is_said_in_words() -> None:
    fig = charts.latency_figure(_latency([]), deployments=BLUE_GREEN, tz=UTC)
    assert list(fig.data) == []
    assert any(t.startswith("No latency in this window") for t in _texts(fig))


# --- errors ----------------------------------------------------------------------------------


def test_errors_are_stacked_by_deployment_and_status_class_with_a_summary() -> None:
    frame = _status(
        [(0, "blue", "live", "2xx", 100), (0, "blue", "live", "4xx", 2),
         (1, "green", "mirror", "5xx", 6), (1, "green", "mirror", "2xx", 40)]
    )  # fmt: skip
    fig = charts.errors_figure(frame, deployments=BLUE_GREEN, tz=UTC)
    traces = _traces(fig)
    assert set(traces) == {"blue 4xx", "green (mirror) 5xx"}
    assert fig.layout.barmode == "stack"
    assert traces["green (mirror) 5xx"].marker.opacity < traces["blue 4xx"].marker.opacity
    assert traces["green (mirror) 5xx"].marker.pattern.shape == "x"
    assert _subtitle(fig) == ("8 of 148 requests failed (5.4%): green (mirror) 5xx 6, blue 4xx 2.")


def test_all_2xx_says_there_are_no_errors() -> None:
    fig = charts.errors_figure(_status([(0, "blue", "live", "2xx", 150)]), tz=UTC)
    assert list(fig.data) == []
    assert "No errors in this window: all 150 requests answered 2xx" in _texts(fig)


def test_no_requests_is_not_called_no_errors() -> None:
    fig = charts.errors_figure(_status([]), tz=UTC)
    assert "No requests in this window" in _texts(fig)


# --- instances -------------------------------------------------------------------------------


def test_instances_show_cpu_and_memory_per_instance_and_capacity_per_deployment() -> None:
    usage = pd.DataFrame(
        [
            {"time": T0, "deployment": "blue", "instance": "blue-0", "metric": metrics.CPU,
             "value": 40.0},
            {"time": T0, "deployment": "blue", "instance": "blue-0", "metric": metrics.MEMORY,
             "value": 12.0},
        ],
        columns=metrics.INSTANCE_COLUMNS,
    )  # fmt: skip
    capacity = pd.DataFrame(
        [{"time": T0 + timedelta(minutes=m), "deployment": "blue", "state": "Running",
          "metric": metrics.CAPACITY, "value": v} for m, v in ((0, 1.0), (1, 3.0))],
        columns=metrics.CAPACITY_COLUMNS,
    )  # fmt: skip
    fig = charts.instances_figure(usage, capacity, deployments=BLUE_GREEN, window=WINDOW, tz=UTC)
    cpu = [t for t in fig.data if t.yaxis == "y"]
    memory = [t for t in fig.data if t.yaxis == "y2"]
    instances = [t for t in fig.data if t.yaxis == "y3"]
    assert [t.name for t in cpu] == ["blue · blue-0"]
    assert list(memory[0].y) == [12.0]
    assert [t.name for t in instances] == ["blue instances"]
    assert instances[0].line.shape == "hv"
    assert instances[0].stackgroup  # deployments stack up to the endpoint's instances
    assert list(instances[0].y) == [1.0, 3.0]
    assert "No CPU or memory data for green in this window." in _subtitle(fig)


def test_instances_not_running_at_the_last_sample_are_named() -> None:
    capacity = pd.DataFrame(
        [{"time": T0 + timedelta(minutes=m), "deployment": d, "state": s,
          "metric": metrics.CAPACITY, "value": 1.0}
         for m, d, s in ((0, "green", "Running"), (1, "green", "Starting"),
                         (1, "blue", "Running"))],
        columns=metrics.CAPACITY_COLUMNS,
    )  # fmt: skip
    fig = charts.instances_figure(
        pd.DataFrame(columns=metrics.INSTANCE_COLUMNS), capacity, deployments=BLUE_GREEN, tz=UTC
    )
    assert "Not running at the last sample: green 1 Starting." in _subtitle(fig)


def test_no_instance_metrics_is_said_in_words() -> None:
    fig = charts.instances_figure(
        pd.DataFrame(columns=metrics.INSTANCE_COLUMNS),
        pd.DataFrame(columns=metrics.CAPACITY_COLUMNS),
        deployments=BLUE_GREEN,
        tz=UTC,
    )
    assert list(fig.data) == []
    assert "No instance metrics in this window" in _texts(fig)


# --- markers ---------------------------------------------------------------------------------


def test_changes_become_markers_saying_what_changed() -> None:
    changes = [
        _change(1, "traffic", {"traffic": {"blue": 100, "green": 0}, "mirror": {}},
                {"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 10}}),
        _change(2, "traffic", {"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 10}},
                {"traffic": {"blue": 90, "green": 10}, "mirror": {}}, reason="canary"),
        _change(3, "scale", {"deployment": "green", "instance_count": 1},
                {"deployment": "green", "instance_count": 3}),
        _change(4, "delete", {"deployment": "blue"}, {"deployment": "blue", "deleted": True}),
    ]  # fmt: skip
    markers = charts.markers_from_changes(changes, tz=UTC)
    assert [(m.kind, m.label) for m in markers] == [
        ("mirror", "mirror green 10%"),
        ("traffic", "live blue 90%, green 10% · mirror off"),
        ("scale", "green → 3 instances"),
        ("delete", "deleted blue"),
    ]
    assert markers[0].at == T0 + timedelta(minutes=1)
    assert markers[1].detail == (
        "2026-01-05 12:02:00 by ana: live blue 100% → blue 90%, green 10%; "
        "mirror green 10% → none — “canary”"
    )


def test_a_deployment_created_from_the_dashboard_is_a_marker() -> None:
    changes = [
        _change(1, "create_deployment", {"deployments": ["blue"]},
                {"deployment": "green", "model": "model-2:1", "live": 0}),
    ]  # fmt: skip
    [marker] = charts.markers_from_changes(changes, tz=UTC)
    assert (marker.kind, marker.label) == ("deploy", "deployed green")
    assert marker.detail.endswith("deployed green at 0% live")


def test_refused_changes_and_no_op_changes_get_no_marker() -> None:
    same = {"traffic": {"blue": 100}, "mirror": {}}
    changes = [
        _change(1, "traffic", same, {"traffic": {"blue": 90, "green": 10}, "mirror": {}},
                outcome="Failed: the traffic of 'my-endpoint' changed"),
        _change(2, "traffic", same, {"traffic": {"blue": 100, "green": 0}, "mirror": {}}),
    ]  # fmt: skip
    assert charts.markers_from_changes(changes, tz=UTC) == []


@pytest.mark.parametrize("builder", ["requests", "latency", "errors", "instances"])
def test_markers_are_vertical_lines_with_a_label_on_every_chart(builder: str) -> None:
    markers = [
        charts.Marker(T0 + timedelta(minutes=5), "mirror", "mirror green 10%", "12:05 by ana"),
        charts.Marker(T0 - timedelta(hours=1), "traffic", "outside", "before the window"),
    ]
    frame = _requests([(0, "blue", "live", 10)])
    figures = {
        "requests": lambda: charts.requests_figure(frame, markers=markers, window=WINDOW, tz=UTC),
        "latency": lambda: charts.latency_figure(
            _latency([(0, "blue", "live", "P50", 5.0)]), markers=markers, window=WINDOW, tz=UTC
        ),
        "errors": lambda: charts.errors_figure(
            _status([(0, "blue", "live", "2xx", 5)]), markers=markers, window=WINDOW, tz=UTC
        ),
        "instances": lambda: charts.instances_figure(
            pd.DataFrame(columns=metrics.INSTANCE_COLUMNS),
            pd.DataFrame(columns=metrics.CAPACITY_COLUMNS),
            markers=markers,
            window=WINDOW,
            tz=UTC,
        ),
    }
    fig = figures[builder]()
    lines = [s for s in fig.layout.shapes if s.name == "marker:mirror"]
    panels = 3 if builder == "latency" else 1  # one line per panel side by side
    assert len(lines) == panels
    assert len({line.xref for line in lines}) == panels
    for line in lines:
        assert pd.Timestamp(line.x0) == pd.Timestamp(datetime(2026, 1, 5, 12, 5))
        assert line.yref == "paper"
    labels = [a for a in fig.layout.annotations if a.name == "marker:mirror"]
    assert [(a.text, a.hovertext) for a in labels] == [("mirror green 10%", "12:05 by ana")]
    assert not [a for a in fig.layout.annotations if a.text == "outside"]
    fig.to_json()


def test_series_labels() -> None:
    assert charts.series_label("green", metrics.MIRROR) == "green (mirror)"
    assert charts.series_label("green", metrics.LIVE, mirror_targets=["green"]) == "green"
    assert charts.series_label("green", metrics.ALL, mirror_targets=["green"]) == (
        "green (mirrored + direct)"
    )
    assert charts.series_label("blue", metrics.ALL, mirror_targets=["green"]) == "blue"


# --- colours follow the deployment -----------------------------------------------------------


def test_green_keeps_its_colour_after_blue_is_deleted() -> None:
    both = charts.requests_figure(
        _requests([(0, "blue", "live", 90), (0, "green", "live", 10)]),
        deployments=BLUE_GREEN,
        tz=UTC,
    )
    alone = charts.requests_figure(
        _requests([(0, "green", "live", 100)]), deployments=("green",), tz=UTC
    )
    assert _traces(alone)["green"].line.color == _traces(both)["green"].line.color
    assert _traces(both)["green"].line.color != _traces(both)["blue"].line.color


def test_split_bar_colours_follow_the_name_not_what_else_is_present() -> None:
    def colours(traffic: dict[str, int]) -> dict[str, str]:
        return {t.name: t.marker.color for t in split_figure(traffic, {}).data}

    assert colours({"green": 100})["green"] == colours({"blue": 0, "green": 100})["green"]
    assert colours({"a-model": 100})["a-model"] == colours({"zed": 50, "a-model": 50})["a-model"]


def test_tutorial_names_get_their_own_colours() -> None:
    assert color_for("blue") == NAMED_COLORS["blue"]
    assert color_for("green") == NAMED_COLORS["green"]
    assert color_for("Green") == NAMED_COLORS["green"]
    assert color_for("candidate") in PALETTE
    assert color_for("candidate") == color_for("candidate")
    # another name never takes the tutorial's blue or green, so it stands apart beside them
    others = {color_for(name) for name in ("blue-v2", "green-v2", "candidate", "a", "zed")}
    assert not others & {NAMED_COLORS["blue"], NAMED_COLORS["green"]}


def test_a_plan_over_100_percent_is_drawn_whole_with_the_100_mark() -> None:
    fig = split_figure({"blue": 100, "green": 10}, {})
    assert list(fig.layout.xaxis.range) == [0, 110]
    assert [t.x[0] for t in fig.data] == [100, 10]
    assert [shape.x0 for shape in fig.layout.shapes] == [100]
    assert any("plan 110%" in a.text for a in fig.layout.annotations)


def test_a_plan_of_100_percent_has_the_plain_scale_and_no_mark() -> None:
    fig = split_figure({"blue": 90, "green": 10}, {})
    assert list(fig.layout.xaxis.range) == [0, 100]
    assert not fig.layout.shapes


# --- the bucket still being counted ------------------------------------------------------------


def test_the_unfinished_last_bucket_is_dotted_and_said_so_not_drawn_as_a_drop() -> None:
    frame = _requests([(0, "blue", "live", 60), (1, "blue", "live", 60), (2, "blue", "live", 9)])
    read_at = T0 + timedelta(minutes=2, seconds=9)  # 9 s into the third minute
    fig = charts.requests_figure(frame, deployments=("blue",), window=WINDOW, read_at=read_at)
    finished = [t for t in fig.data if t.name == "blue"]
    partial = [t for t in fig.data if t.name == "blue (so far)"]
    assert [list(t.y) for t in finished] == [[60, 60]]
    assert finished[0].line.dash is None
    assert [list(t.y) for t in partial] == [[60, 9]]
    assert partial[0].line.dash == charts.UNFINISHED_DASH
    assert partial[0].line.color == finished[0].line.color
    assert not partial[0].showlegend
    assert "The last bucket (from " in _subtitle(fig) and "is not over" in _subtitle(fig)


def test_a_bucket_over_before_the_read_is_drawn_whole() -> None:
    frame = _requests([(0, "blue", "live", 60), (1, "blue", "live", 60)])
    read_at = T0 + timedelta(minutes=2)
    fig = charts.requests_figure(frame, deployments=("blue",), window=WINDOW, read_at=read_at)
    assert [(t.name, list(t.y)) for t in fig.data if t.name and "blue" in t.name] == [
        ("blue", [60, 60])
    ]
    assert "not over" not in _subtitle(fig)


def test_changes_close_together_share_one_label_that_lists_them_all() -> None:
    day = metrics.Window(T0, T0 + timedelta(days=1), timedelta(minutes=5))
    markers = [
        charts.Marker(T0 + timedelta(hours=2), "mirror", "mirror green 10%", "by ana: mirror"),
        charts.Marker(
            T0 + timedelta(hours=2, minutes=20), "traffic", "live 90/10", "by ana: 90/10"
        ),
        charts.Marker(T0 + timedelta(hours=2, minutes=30), "traffic", "live 50/50", "by bo: 50/50"),
        charts.Marker(T0 + timedelta(hours=9), "scale", "green → 2", "by bo: scaled"),
    ]
    fig = charts.requests_figure(
        _requests([(0, "blue", "live", 10)]), markers=markers, window=day, tz=UTC
    )
    labels = [a for a in fig.layout.annotations if a.name and a.name.startswith("marker:")]
    assert [a.text for a in labels] == ["3 changes", "green → 2"]
    assert labels[0].hovertext == "by ana: mirror<br>by ana: 90/10<br>by bo: 50/50"
    assert labels[0].name == "marker:changes"
    assert len([s for s in fig.layout.shapes if s.name.startswith("marker:")]) == 4  # every line


def test_on_a_short_range_the_same_changes_keep_their_own_labels() -> None:
    markers = [
        charts.Marker(T0 + timedelta(minutes=2), "mirror", "mirror green 10%", "a"),
        charts.Marker(T0 + timedelta(minutes=6), "traffic", "live 90/10", "b"),
    ]
    groups = charts.cluster_markers(markers, WINDOW.end - WINDOW.start)
    assert [len(g) for g in groups] == [1, 1]
    assert [len(g) for g in charts.cluster_markers(markers, timedelta(days=1))] == [2]

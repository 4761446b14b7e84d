"""The traffic change's plain values (rollout/traffic_change.py) and the editor's presets:
states, presets, the rollback source, the change table."""

from __future__ import annotations

from components.traffic_editor import presets
from rollout.endpoints import DeploymentView, EndpointView
from rollout.history import Change
from rollout.traffic_change import TrafficState, change_rows, rollback_source
from rollout.views import describe


def _view(traffic: dict[str, int], mirror: dict[str, int], names: list[str]) -> EndpointView:
    deployments = tuple(
        DeploymentView(n, "Succeeded", "model-1:1", "Standard_DS3_v2", 1, 0, 0, 5000, 1)
        for n in names
    )
    return EndpointView("my-endpoint", "Succeeded", "key", "", traffic, mirror, deployments)


def _change(at: float, outcome: str, before: dict[str, int], action: str = "traffic") -> Change:
    return Change(
        at, "ana", "ws", "my-endpoint", action, {"traffic": before, "mirror": {}}, {}, "", outcome
    )


def test_a_deployment_missing_from_the_traffic_map_has_0() -> None:
    state = TrafficState.of(_view({"blue": 100}, {}, ["blue", "green"]))
    assert state.traffic == {"blue": 100, "green": 0}
    assert state.mirror == {}


def test_lower_cased_keys_from_the_sdk_match_deployment_names() -> None:
    state = TrafficState.of(_view({"blue": 90, "green": 10}, {"green": 0}, ["Blue", "green"]))
    assert state.traffic == {"Blue": 90, "green": 10}
    assert state.mirror == {}


def test_a_recorded_state_keeps_only_positive_shares_of_deployments_gone_since() -> None:
    side = {"traffic": {"blue": 100, "old": 0}, "mirror": {"green": 10}}
    state = TrafficState.from_record("my-endpoint", ["blue", "green"], side)
    assert state.traffic == {"blue": 100, "green": 0}
    assert state.mirror == {"green": 10}

    gone = TrafficState.from_record("my-endpoint", ["blue"], {"traffic": {"old": 100}})
    assert gone.traffic == {"blue": 0, "old": 100}
    assert [v.code for v in gone.plan().violations()] == ["UnknownDeployment"]


def test_states_compare_by_traffic_not_by_how_zeros_are_spelled() -> None:
    a = TrafficState.build("e", ["blue", "green"], {"blue": 100}, {"green": 0})
    b = TrafficState.build("e", ["blue", "green"], {"BLUE": 100, "green": 0}, {})
    assert a.same_traffic(b)
    assert not a.same_traffic(
        TrafficState.build("e", ["blue", "green"], {"blue": 100}, {"green": 5})
    )


def test_two_deployments_get_the_rollout_presets() -> None:
    found = presets(["blue", "green"])
    assert [label for label, _ in found] == ["100/0", "90/10", "50/50", "0/100"]
    assert found[1][1] == {"blue": 90, "green": 10}


def test_other_counts_get_all_to_one_presets() -> None:
    assert presets(["blue"]) == [("All to blue", {"blue": 100}), ("Disable traffic", {"blue": 0})]
    three = presets(["a", "b", "c"])
    assert [label for label, _ in three] == ["All to a", "All to b", "All to c"]
    assert three[2][1] == {"a": 0, "b": 0, "c": 100}


def test_roll_back_uses_the_last_applied_traffic_change() -> None:
    changes = [
        _change(1, "Succeeded", {"blue": 100}),
        _change(2, "Succeeded", {"blue": 90, "green": 10}),
        _change(3, "Failed: the traffic of 'my-endpoint' changed", {"blue": 50}),
        _change(4, "Succeeded", {"blue": 1}, action="scale"),
    ]
    source = rollback_source(changes)
    assert source is not None
    assert source.before["traffic"] == {"blue": 90, "green": 10}
    assert rollback_source([]) is None
    assert rollback_source(changes[2:]) is None


def test_change_rows_show_before_and_after_of_what_changes() -> None:
    before = TrafficState.build("e", ["blue", "green"], {"blue": 100}, {"green": 10})
    after = TrafficState.build("e", ["blue", "green"], {"blue": 90, "green": 10}, {})
    assert change_rows(before, after) == [
        {"deployment": "blue", "live": "100% → 90%", "mirror": "0% (unchanged)"},
        {"deployment": "green", "live": "0% → 10%", "mirror": "10% → 0%"},
    ]
    assert change_rows(before, before) == []


def test_describe_names_only_positive_shares() -> None:
    assert describe({"blue": 90, "green": 10}, {}) == "live blue 90%, green 10% · mirror none"
    assert describe({"blue": 0}, {"green": 20}) == "live none (traffic disabled) · mirror green 20%"

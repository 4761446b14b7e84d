"""The emulator's mirror sample: joining the two answers, the bound, the size limit, clearing."""

from __future__ import annotations

from datetime import UTC, datetime

from emulator.mirror_sample import MAX_BODY_BYTES, Answer, Entry, MirrorSample


def _both(sample: MirrorSample, request: bytes, *, live_first: bool = True) -> None:
    pending = sample.begin("ep", request)
    assert pending is not None
    sides = [
        lambda: pending.live("blue", 200, 1.5, b'{"live": 1}'),
        lambda: pending.mirror("green", 200, 2.5, b'{"mirror": 1}'),
    ]
    for side in sides if live_first else reversed(sides):
        side()


def test_an_entry_is_kept_only_once_both_answers_are_known_live_first() -> None:
    sample = MirrorSample(10)
    pending = sample.begin("ep", b"req")
    assert pending is not None
    pending.live("blue", 200, 1.0, b"a")
    assert sample.entries("ep") == []
    pending.mirror("green", 424, 2.0, memoryview(b"b"))
    [entry] = sample.entries("ep")
    assert (entry.live.deployment, entry.live.status, entry.live.body) == ("blue", 200, b"a")
    assert (entry.mirror.deployment, entry.mirror.status, entry.mirror.body) == (
        "green",
        424,
        b"b",
    )
    assert entry.request == b"req"


def test_an_entry_is_kept_only_once_both_answers_are_known_mirror_first() -> None:
    sample = MirrorSample(10)
    pending = sample.begin("ep", b"req")
    assert pending is not None
    pending.mirror("green", 200, 2.0, b"b")
    assert sample.entries("ep") == []
    pending.live("blue", 429, 1.0, b"busy")
    [entry] = sample.entries("ep")
    assert entry.live.status == 429 and entry.mirror.body == b"b"


def test_the_buffer_keeps_the_newest_n_newest_first() -> None:
    sample = MirrorSample(3)
    for i in range(7):
        _both(sample, str(i).encode(), live_first=i % 2 == 0)
    assert [e.request for e in sample.entries("ep")] == [b"6", b"5", b"4"]
    assert [e.request for e in sample.entries("ep", 2)] == [b"6", b"5"]
    assert sample.entries("EP", 0) == []  # endpoint names are case-insensitive


def test_a_capacity_of_zero_keeps_nothing_and_begins_no_entry() -> None:
    sample = MirrorSample(0)
    assert sample.begin("ep", b"req") is None
    assert sample.entries("ep") == [] and sample.skipped("ep") == 0


def test_a_body_over_64_kib_is_skipped_and_counted() -> None:
    sample = MirrorSample(5)
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert sample.begin("ep", big) is None
    for side in ("live", "mirror"):
        pending = sample.begin("ep", b"req")
        assert pending is not None
        pending.live("blue", 200, 1.0, big if side == "live" else b"ok")
        pending.mirror("green", 200, 1.0, big if side == "mirror" else b"ok")
    exactly = b"x" * MAX_BODY_BYTES
    pending = sample.begin("ep", exactly)
    assert pending is not None
    pending.live("blue", 200, 1.0, exactly)
    pending.mirror("green", 200, 1.0, exactly)
    assert sample.skipped("ep") == 3
    assert [e.request for e in sample.entries("ep")] == [exactly]


def test_clearing_an_endpoint_drops_its_entries_and_those_still_in_flight() -> None:
    sample = MirrorSample(5)
    _both(sample, b"before")
    in_flight = sample.begin("ep", b"in flight")
    assert in_flight is not None
    in_flight.live("blue", 200, 1.0, b"a")
    sample.clear("ep")
    assert sample.entries("ep") == [] and sample.skipped("ep") == 0
    # An endpoint of the same name, created again, starts empty: the late answer is dropped.
    _both(sample, b"after")
    in_flight.mirror("green", 200, 1.0, b"b")
    assert [e.request for e in sample.entries("ep")] == [b"after"]


def test_an_entry_as_json_has_the_route_shape() -> None:
    sample = MirrorSample(5)
    _both(sample, "é".encode() + b"\xff")
    [entry] = sample.entries("ep")
    doc = entry.as_json()
    assert doc["request"] == "é\ufffd"
    assert doc["live"] == {
        "deployment": "blue",
        "statusCode": 200,
        "latencyMs": 1.5,
        "response": '{"live": 1}',
    }
    assert isinstance(doc["mirror"], dict) and doc["mirror"]["deployment"] == "green"


def test_the_time_is_utc_with_milliseconds_and_a_z() -> None:
    moment = datetime(2026, 12, 2, 3, 0, 0, 123456, tzinfo=UTC)
    answer = Answer("blue", 200, 12.34, b"[1]")
    assert Entry(moment, b"{}", answer, answer).as_json()["time"] == "2026-12-02T03:00:00.123Z"

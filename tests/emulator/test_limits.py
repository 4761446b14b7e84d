"""The emulator's own bounds: what a heavy score.py can make it hold in memory or on disk.

The emulator of this module relays answers up to 8 MiB, rotates deployment logs at
256 KiB and restarts an instance over 1 GiB of memory; its deployments run
tests/emulator/fixtures/bounds/score.py, which answers, logs and allocates as asked.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from emulator.requestlog_schema import DROPPED
from tests.conftest import RunningEmulator
from tests.emulator.test_data_plane import Plane, _workers, wait_until

ENDPOINT = "bounds-ep"
MIB = 2**20


@pytest.fixture(scope="module")
def plane(emulator_factory: Callable[[str], RunningEmulator], examples: Path) -> Iterator[Plane]:
    running = emulator_factory("bounds")
    running.start(
        args=(
            "--max-response-mb",
            "8",
            "--instance-log-mb",
            "0.25",
            "--instance-memory-mb",
            "1024",
        )
    )
    p = Plane(running, examples)
    p.endpoint(ENDPOINT)
    p.deploy(ENDPOINT, "blue", code="bounds")
    p.deploy(ENDPOINT, "green", code="bounds")
    p.traffic(ENDPOINT, {"blue": 100})
    yield p
    p.http.close()
    running.stop()


class _PeakRss:
    """The highest resident memory of a process while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.before = self.peak = self._process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.after = self._process.memory_info().rss


def _emulator_pid(plane: Plane) -> int:
    assert plane.emulator.process is not None
    return plane.emulator.process.pid


def test_an_answer_over_the_response_limit_is_502_and_never_held_in_memory(plane: Plane) -> None:
    with _PeakRss(_emulator_pid(plane)) as rss:
        for _ in range(6):
            response = plane.score(ENDPOINT, {"answer_mb": 200})
            assert response.status_code == 502, response.text
            message = response.json()["message"]
            assert "200.0 MiB, over the response limit of 8 MiB" in message
            assert response.headers["azureml-model-deployment"] == "blue"
    print(f"emulator RSS {rss.before / MIB:.0f} -> peak {rss.peak / MIB:.0f} MiB")
    assert rss.peak - rss.before < 300 * MIB
    # The limit is on the answer, not on the instance: the next answer under it is served.
    response = plane.score(ENDPOINT, {"answer_mb": 4})
    assert response.status_code == 200
    assert len(response.content) == 4 * MIB


def test_a_mirrored_answer_over_the_limit_is_dropped_unread(plane: Plane) -> None:
    plane.traffic(ENDPOINT, {"blue": 100}, {"green": 50})
    try:
        since = time.time()
        with _PeakRss(_emulator_pid(plane)) as rss:
            for _ in range(8):
                # blue answers 1 KiB to the client; green, the mirror, 200 MiB to no one.
                response = plane.score(ENDPOINT, {"answer_mb": {"green": 200}})
                assert response.status_code == 200
                assert response.headers["azureml-model-deployment"] == "blue"

            def mirrored() -> list[tuple[object, ...]]:
                return [r for r in plane.records(ENDPOINT, since) if r[1] == 1]

            deadline = time.monotonic() + 20
            while len(mirrored()) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert len(mirrored()) == 4
        statuses = {r[2] for r in mirrored()}
        # 0 is a copy dropped because green was still busy with the previous one.
        assert 502 in statuses and statuses <= {502, DROPPED}
        print(f"emulator RSS {rss.before / MIB:.0f} -> peak {rss.peak / MIB:.0f} MiB")
        assert rss.peak - rss.before < 300 * MIB
    finally:
        plane.traffic(ENDPOINT, {"blue": 100})


def test_a_chatty_score_py_leaves_rotated_logs_of_bounded_size(plane: Plane) -> None:
    for _ in range(6):
        response = plane.score(ENDPOINT, {"log_lines": 2000, "line_kb": 1}, deployment="green")
        assert response.status_code == 200
    # One line of 1 MiB is cut to 16 KiB, with a note of what was dropped.
    assert plane.score(ENDPOINT, {"log_lines": 1, "line_kb": 1024}, deployment="green").is_success
    folder = plane.emulator.state_dir / "logs" / ENDPOINT

    def files() -> list[Path]:
        return sorted(folder.glob("green.log*"))

    def cut_line_written() -> bool:
        return any(b"more bytes of this line dropped" in f.read_bytes() for f in files())

    deadline = time.monotonic() + 20
    while not cut_line_written() and time.monotonic() < deadline:
        time.sleep(0.2)
    sizes = {f.name: f.stat().st_size for f in files()}
    print(f"green's log files after ~12 MiB of output: {sizes}")
    assert set(sizes) <= {"green.log", *(f"green.log.{n}" for n in range(1, 5))}
    assert len(sizes) == 5
    # Each file is at most its limit plus one batch of whole lines (64 KiB + one line).
    assert all(size <= 256 * 1024 + 100 * 1024 for size in sizes.values())
    assert cut_line_written()
    lines = [line for f in files() for line in f.read_bytes().splitlines()]
    assert max(len(line) for line in lines) < 16 * 1024 + 100
    # getLogs still reads the end of the log, across a rotation.
    tail = plane.ml.online_deployments.get_logs("green", ENDPOINT, lines=30)
    assert "line 1999" in tail or "more bytes of this line dropped" in tail
    assert len(tail.splitlines()) == 30


def test_an_instance_over_its_memory_limit_is_restarted_and_says_so_in_the_log(
    plane: Plane,
) -> None:
    (before,) = _workers(plane, ENDPOINT, "blue")
    # It keeps 1.5 GiB and sleeps: the emulator kills it before it answers.
    response = plane.score(ENDPOINT, {"hold_mb": 1536, "sleep": 4}, deployment="blue")
    assert response.status_code in (502, 503), response.text
    after = wait_until(
        lambda: [p for p in _workers(plane, ENDPOINT, "blue") if p.pid != before.pid],
        what="a new blue instance",
    )
    assert len(after) == 1
    tail = plane.ml.online_deployments.get_logs("blue", ENDPOINT, lines=200)
    assert re.search(r"instance blue-\S+ used \d+ MiB, over its limit of 1024 MiB; restarted", tail)
    assert wait_until(lambda: plane.score(ENDPOINT, {}).status_code == 200, what="blue serving")

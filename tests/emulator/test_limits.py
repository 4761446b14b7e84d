"""The emulator's own bounds: what a heavy score.py can make it hold in memory or on disk.

The emulator of this module relays answers up to 8 MiB; its deployments run
tests/emulator/fixtures/bounds/score.py, which answers as big as asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from emulator.requestlog import DROPPED
from tests.conftest import RunningEmulator
from tests.emulator.test_data_plane import Plane

ENDPOINT = "bounds-ep"
MIB = 2**20


@pytest.fixture(scope="module")
def plane(emulator_factory: Callable[[str], RunningEmulator], examples: Path) -> Iterator[Plane]:
    running = emulator_factory("bounds")
    running.start(args=("--max-response-mb", "8"))
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

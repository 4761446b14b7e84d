"""A prediction comparison running in the background: every input to both deployments.

Each input goes to the baseline and to the candidate by the `azureml-model-deployment`
header (rollout.invoke.send), at most MAX_IN_FLIGHT inputs at once (fewer on a deployment
that would answer 429: `in_flight_for`), on a thread of its own, so that a page can show
progress and offer Cancel while it runs. Cancel stops sending more inputs and keeps what
finished. Nothing is raised out of the thread: a
request that fails is an answer with its status (0 when none came back), and an error of
the run itself is kept in `error`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from rollout.endpoints import DeploymentView
from rollout.errors import RolloutError
from rollout.invoke import InvokeResult, send
from rollout.prediction_inputs import MAX_INPUTS, Inputs
from rollout.predictions import Answer, Comparison, Pair, Tolerance, compare_pairs
from rollout.workspace import Workspace

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4
RETRIES_ON_429 = 3
_BACKOFF_S = 0.1


def in_flight_for(deployments: Sequence[DeploymentView]) -> int:
    """Inputs in flight for comparing `deployments`: half the smaller one's pending limit
    (2 × max_concurrent_requests_per_instance × instances, beyond which it answers 429), so
    that live traffic keeps the other half; between 1 and MAX_IN_FLIGHT. Each input's two
    requests go one after the other, so each input has one request in flight at a time."""
    limits = [2 * (d.max_concurrent_requests or 1) * max(d.instance_count, 1) for d in deployments]
    return max(1, min(MAX_IN_FLIGHT, min(limits, default=2) // 2))


def _answer(result: InvokeResult) -> Answer:
    return Answer(result.status, result.latency_ms, result.body, result.error)


class PredictionRun:
    """Send `inputs` to `baseline` and `candidate` of the endpoint at `scoring_uri`.

    `start()` returns at once; `progress` says how far it is, `finished` whether it is
    over (done, cancelled or failed), `comparison()` compares what has finished so far.
    """

    def __init__(
        self,
        ws: Workspace,
        scoring_uri: str,
        credential: str,
        inputs: Inputs,
        *,
        baseline: str,
        candidate: str,
        tolerance: Tolerance | None = None,
        in_flight: int = MAX_IN_FLIGHT,
        timeout: float = 60.0,
    ) -> None:
        if not 1 <= len(inputs.bodies) <= MAX_INPUTS:
            raise RolloutError(
                f"a comparison takes 1 to {MAX_INPUTS:,} inputs, not {len(inputs.bodies):,}"
            )
        if not 1 <= in_flight <= MAX_IN_FLIGHT:
            raise RolloutError(f"inputs in flight are 1 to {MAX_IN_FLIGHT}, not {in_flight}")
        self.ws = ws
        self.scoring_uri = scoring_uri
        self.inputs = inputs
        self.baseline = baseline
        self.candidate = candidate
        self.tolerance = tolerance or Tolerance()
        self._credential = credential
        self._in_flight = in_flight
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pairs: dict[int, Pair] = {}
        self._cancel = threading.Event()
        self._over = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def total(self) -> int:
        return len(self.inputs.bodies)

    @property
    def progress(self) -> tuple[int, int]:
        """(inputs answered by both sides, inputs to compare)."""
        with self._lock:
            return len(self._pairs), self.total

    @property
    def finished(self) -> bool:
        return self._over.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def start(self) -> PredictionRun:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"predictions-{self.baseline}-{self.candidate}", daemon=True
            )
            self._thread.start()
        return self

    def cancel(self) -> None:
        """Send no more inputs; those in flight finish and are kept."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the run is over after waiting up to `timeout` seconds."""
        return self._over.wait(timeout)

    def comparison(self) -> Comparison:
        """The comparison of the inputs answered so far, in their order in the source."""
        with self._lock:
            pairs = [self._pairs[i] for i in sorted(self._pairs)]
        done = len(pairs)
        notes = [f"The run stopped: {self.error}"] if self.error else []
        return compare_pairs(
            pairs,
            self.tolerance,
            planned=self.total,
            cancelled=self.cancelled and done < self.total,
            notes=notes,
        )

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._send_all()
        except Exception as exc:  # kept for the page, never raised out of the thread
            log.exception("prediction run %s vs %s failed", self.baseline, self.candidate)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._over.set()

    def _send_all(self) -> None:
        slots = threading.Semaphore(self._in_flight)
        limits = httpx.Limits(
            max_connections=2 * self._in_flight, max_keepalive_connections=2 * self._in_flight
        )
        futures: list[Future[None]] = []
        with (
            httpx.Client(verify=self.ws.verify, timeout=self._timeout, limits=limits) as client,
            ThreadPoolExecutor(self._in_flight, thread_name_prefix="predictions") as pool,
        ):
            for position, body in enumerate(self.inputs.bodies):
                slots.acquire()
                if self._cancel.is_set():
                    slots.release()
                    break
                future = pool.submit(self._one, client, position, body)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
        # Leaving the pool waited for the inputs in flight; _one catches its own errors.
        for future in futures:
            if (problem := future.exception()) is not None:
                log.error("an input of the prediction run failed: %s", problem)

    def _one(self, client: httpx.Client, position: int, body: str) -> None:
        content = body.encode()
        # Alternate which side is asked first, so that neither always gets a warmer server.
        sides = [("baseline", self.baseline), ("candidate", self.candidate)]
        if position % 2:
            sides.reverse()
        answers: dict[str, Answer] = {}  # by side: baseline and candidate may be one deployment
        for side, name in sides:
            try:
                answers[side] = _answer(self._send(client, content, name))
            except Exception as exc:  # noqa: BLE001 - one request's failure, not the run's
                answers[side] = Answer(0, 0.0, "", f"{type(exc).__name__}: {exc}")
        pair = Pair(self.inputs.indexes[position], body, answers["baseline"], answers["candidate"])
        with self._lock:
            self._pairs[position] = pair

    def _send(self, client: httpx.Client, content: bytes, deployment: str) -> InvokeResult:
        """One request; a 429 (too many pending requests: live traffic shares the deployment)
        is sent again after a pause, a few times, before it counts as the answer."""
        for attempt in range(RETRIES_ON_429 + 1):
            result = send(
                client, self.scoring_uri, self._credential, content, deployment=deployment
            )
            if result.status != 429 or attempt == RETRIES_ON_429 or self._cancel.is_set():
                break
            time.sleep(_BACKOFF_S * 2**attempt)
        return result


def bodies_of(inputs: Sequence[str]) -> Inputs:
    """Bodies given in code (tests, the sample request) as Inputs numbered from 1."""
    return Inputs(tuple(inputs), tuple(range(1, len(inputs) + 1)), "inputs", len(inputs))

"""Long-running ARM operations: their records, the background work behind them, restarts.

A PUT or DELETE that Azure answers with `Azure-AsyncOperation` gets an operation here:
`new` stores it InProgress, the work runs in the background (`spawn`) and `finish` ends
it Succeeded or Failed with the reason. Every operation ends: work that fails ends its
operations Failed, and on start the operations a crash left InProgress are handed to the
endpoints and deployments they stand for (`Interrupted`), which run the work again under
the same id (`resume`) or end them saying why.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence

from emulator.errors import ApiError
from emulator.store import Doc, Store, utc_now

log = logging.getLogger(__name__)


class Operations:
    """The operation records in the store and the background tasks that end them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def new(self, kind: str, target: str) -> str:
        op_id = str(uuid.uuid4())
        self.store.put_operation(
            op_id,
            {
                "id": op_id,
                "name": op_id,
                "kind": kind,
                "target": target,
                "status": "InProgress",
                "startTime": utc_now(),
            },
        )
        return op_id

    def finish(self, op_id: str | None, error: str | None = None) -> None:
        if op_id is None:
            return
        doc = self.store.get_operation(op_id)
        if doc is None:
            return
        doc["status"] = "Failed" if error else "Succeeded"
        doc["endTime"] = utc_now()
        if error:
            doc["error"] = {"code": "DeploymentFailed", "message": error}
        self.store.put_operation(op_id, doc)

    def get(self, op_id: str) -> Doc:
        doc = self.store.get_operation(op_id)
        if doc is None:
            raise ApiError(404, "NotFound", f"Operation '{op_id}' not found.")
        return doc

    def spawn(self, coro: Awaitable[None], ops: Sequence[str] = ()) -> None:
        """Run `coro` in the background; `ops` that it leaves unfinished by failing end Failed."""

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("background operation failed")
                for op_id in ops:
                    doc = self.store.get_operation(op_id)
                    if doc is not None and doc["status"] == "InProgress":
                        self.finish(op_id, f"the emulator failed: {exc}")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self, job: Callable[[str | None], Awaitable[None]], ops: list[str]) -> None:
        """Run interrupted work again under its operation id; duplicate ids end the same way."""

        async def run() -> None:
            await job(ops[0] if ops else None)
            first = self.store.get_operation(ops[0]) if ops else None
            error = ((first or {}).get("error") or {}).get("message")
            for op_id in ops[1:]:
                self.finish(op_id, error)

        self.spawn(run(), ops)

    def end_interrupted(self, ops: list[str], reason: str) -> None:
        for op_id in ops:
            self.finish(op_id, f"interrupted by an emulator restart; {reason}")

    def end_orphans(self, interrupted: Interrupted) -> None:
        """End the operations no endpoint or deployment took: their target is gone."""
        for (kind, target), ops in interrupted.rest():
            if kind in ("endpoint-delete", "deployment-delete"):
                for op_id in ops:  # deleted before the crash, only the operation was left
                    self.finish(op_id)
            else:
                self.end_interrupted(ops, f"'{target}' no longer exists")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Interrupted:
    """The operations a crash left InProgress, by kind and target, until someone takes them."""

    def __init__(self, ops: Iterable[Doc]) -> None:
        self._ops: dict[tuple[str, str], list[str]] = {}
        for op in ops:
            key = (str(op.get("kind")), str(op.get("target")).lower())
            self._ops.setdefault(key, []).append(op["id"])

    def take(self, kind: str, target: str) -> list[str]:
        return self._ops.pop((kind, target.lower()), [])

    def rest(self) -> list[tuple[tuple[str, str], list[str]]]:
        return list(self._ops.items())

"""Where the inputs of a prediction comparison come from: the sample request, a JSON Lines
file (one request body per line), or the emulator's sample of recently mirrored requests.

The first two give request bodies to send to both deployments (rollout/prediction_run.py);
the mirrored sample already holds both answers, so it gives pairs to compare as they are.
At most MAX_INPUTS inputs: a larger file is refused with its count, unless the caller
asks to take the first MAX_INPUTS (then only those lines are checked).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rollout.errors import RolloutError
from rollout.invoke import parse_request
from rollout.mirrored import MirroredAnswer, MirroredRequest, read_mirrored
from rollout.predictions import Answer, Pair
from rollout.workspace import Workspace

MAX_INPUTS = 1_000


@dataclass(frozen=True)
class Inputs:
    """Request bodies to send, each with its place in the source (a line number)."""

    bodies: tuple[str, ...]
    indexes: tuple[int, ...]
    source: str  # "sample request", "file.jsonl", ...
    total: int  # inputs the source had (more than len(bodies) when the first 1,000 were taken)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.bodies)


def sample_inputs(text: str) -> Inputs:
    """The sample request as one input; RolloutError when it is not JSON."""
    return Inputs((parse_request(text).decode(),), (1,), "sample request", 1)


def parse_jsonl(data: str | bytes, *, name: str = "the file", take_first: bool = False) -> Inputs:
    """One request body per line, blank lines skipped.

    A line that is not JSON is refused with its number and the JSON error. More than
    MAX_INPUTS bodies are refused with the count, or with `take_first` the first
    MAX_INPUTS are taken (and the lines after them are not read).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RolloutError(
                f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
            ) from None
    lines = [(number, line) for number, line in enumerate(data.splitlines(), 1) if line.strip()]
    if not lines:
        raise RolloutError(f"{name} has no request bodies (every line is blank)")
    if len(lines) > MAX_INPUTS and not take_first:
        raise RolloutError(
            f"{name} has {len(lines):,} request bodies; at most {MAX_INPUTS:,} are compared: "
            f"take the first {MAX_INPUTS:,}, or split the file"
        )
    taken = lines[:MAX_INPUTS]
    for number, line in taken:
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            raise RolloutError(
                f"line {number} of {name} is not JSON: {exc.msg} at column {exc.colno}"
            ) from None
    return Inputs(
        tuple(line.strip() for _, line in taken),
        tuple(number for number, _ in taken),
        name,
        len(lines),
    )


# --- the emulator's mirrored sample -------------------------------------------------------


@dataclass(frozen=True)
class MirroredSample:
    pairs: tuple[Pair, ...]
    skipped: int  # entries whose two deployments are not the two compared
    read: int


def _answer(a: MirroredAnswer) -> Answer:
    return Answer(a.status, a.latency_ms, a.body)


def mirrored_pairs(
    entries: Sequence[MirroredRequest], baseline: str, candidate: str
) -> MirroredSample:
    """Each mirrored request whose live and mirror deployments are `baseline` and
    `candidate` (either way round) as a pair; the others are counted as skipped.
    Deployment names compare case-insensitively, as Azure treats them."""
    wanted = (baseline.lower(), candidate.lower())
    pairs: list[Pair] = []
    skipped = 0
    for position, entry in enumerate(entries, 1):
        sides = (entry.live.deployment.lower(), entry.mirror.deployment.lower())
        if sides == wanted:
            base, cand = entry.live, entry.mirror
        elif sides == wanted[::-1]:
            base, cand = entry.mirror, entry.live
        else:
            skipped += 1
            continue
        pairs.append(Pair(position, entry.body, _answer(base), _answer(cand)))
    return MirroredSample(tuple(pairs), skipped, len(entries))


def mirrored_unavailable(ws: Workspace) -> str | None:
    """Why `ws` has no mirrored sample to compare, or None when it has one."""
    if ws.kind == "emulator":
        return None
    return (
        "Only the local emulator keeps the requests it mirrored with both answers; on Azure "
        "a mirrored answer never reaches the client, so the dashboard has none to compare. "
        "Compare on the sample request or on a JSON Lines file of requests instead."
    )


def read_mirrored_pairs(
    ws: Workspace, endpoint: str, baseline: str, candidate: str, *, top: int = 200
) -> MirroredSample:
    """The newest `top` (≤ MAX_INPUTS) requests the emulator mirrored, as pairs."""
    if not 1 <= top <= MAX_INPUTS:
        raise RolloutError(f"the mirrored sample is 1 to {MAX_INPUTS:,} requests, not {top}")
    return mirrored_pairs(read_mirrored(ws, endpoint, top=top), baseline, candidate)

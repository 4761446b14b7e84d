"""Baseline vs candidate on the same inputs: do their predictions agree? (pure, no I/O)

Each input's two answers are compared leaf by leaf (rollout.invoke.flatten_json): strings,
labels, booleans and null exactly; numbers within a `Tolerance` (absolute or relative, as
`math.isclose`: equal when |c − b| ≤ max(absolute, relative × max(|b|, |c|))). A path one
answer has and the other lacks (a missing key, a longer list) or a different type is a
disagreement. An input agrees only when both sides answered 200 and every leaf is equal:
an answer that failed (not 200, or no answer) never counts as agreement, and the agreement
rate is over every input compared, so failures lower it; they are counted apart per side.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rollout.errors import RolloutError
from rollout.invoke import flatten_json, percentile

TOP_ROWS = 20  # the rows that differ most, kept for the table
MAX_DIFFERENCES = 100_000  # numeric differences kept for the histogram
_PATHS_SHOWN = 5
Kind = Literal["structure", "value", "numeric"]
_RANK = {"structure": 2, "value": 1, "numeric": 0}


@dataclass(frozen=True)
class Tolerance:
    """How far apart two numbers may be and still agree: within `absolute`, or within
    `relative` times the larger of the two magnitudes (either suffices)."""

    absolute: float = 1e-6
    relative: float = 1e-6

    def __post_init__(self) -> None:
        for name, value in (("absolute", self.absolute), ("relative", self.relative)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RolloutError(f"the {name} tolerance must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise RolloutError(
                    f"the {name} tolerance must be a finite number ≥ 0, not {value!r}"
                )

    def equal(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=self.relative, abs_tol=self.absolute)

    def words(self) -> str:
        return f"absolute {self.absolute:g} or relative {self.relative:g}"


@dataclass(frozen=True)
class Answer:
    """One deployment's answer to one input: status 0 when no answer came back."""

    status: int
    latency_ms: float
    body: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True)
class Pair:
    """The same input and both sides' answers to it; `index` is its place in the source
    (a JSON Lines file's line number, a mirrored request's position)."""

    index: int
    input: str
    baseline: Answer
    candidate: Answer


@dataclass(frozen=True)
class DifferingRow:
    """An input whose answers disagree: how (kind), by how much, where, and both answers."""

    index: int
    input: str
    baseline: str
    candidate: str
    kind: Kind  # structure (missing path, list length), value (string, type) or numeric
    largest: float | None  # the largest |candidate − baseline| of its numeric leaves
    paths: tuple[str, ...]  # where they differ (the first few)


@dataclass(frozen=True)
class LatencySummary:
    answered: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class Comparison:
    compared: int
    both_ok: int
    agreed: int
    baseline_failed: int
    candidate_failed: int
    tolerance: Tolerance
    differences: tuple[float, ...]  # candidate − baseline, per numeric leaf both have
    top: tuple[DifferingRow, ...]
    baseline_latency: LatencySummary
    candidate_latency: LatencySummary
    baseline_statuses: tuple[tuple[int, int], ...] = ()  # (status, count) of the failures
    candidate_statuses: tuple[tuple[int, int], ...] = ()
    planned: int = 0  # inputs the run meant to compare
    cancelled: bool = False
    skipped: int = 0  # inputs left out by the source (mirrored to other deployments)
    differences_dropped: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def agreement(self) -> float | None:
        """Agreed inputs of every input compared (a failed answer counts against), or None."""
        return self.agreed / self.compared if self.compared else None

    @property
    def disagreed(self) -> int:
        return self.both_ok - self.agreed

    def failed_text(self) -> str:
        return (
            f"baseline failed {self.baseline_failed:,}, candidate failed "
            f"{self.candidate_failed:,} of {self.compared:,}"
        )

    def progress_text(self) -> str:
        """'compared 200 inputs', or 'cancelled after 312 of 1,000'."""
        if self.cancelled:
            return f"cancelled after {self.compared:,} of {self.planned:,}"
        return f"compared {self.compared:,} input" + ("" if self.compared == 1 else "s")


# --- one pair -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _leaves(body: str) -> dict[str, Any]:
    """The answer's leaves by path; a body that is not JSON is one string leaf."""
    try:
        return flatten_json(json.loads(body))
    except ValueError:
        return {"": body}


@dataclass(frozen=True)
class PairVerdict:
    agrees: bool
    kind: Kind | None
    differences: tuple[float, ...]
    largest: float | None
    paths: tuple[str, ...]


def compare_bodies(baseline: str, candidate: str, tolerance: Tolerance) -> PairVerdict:
    """Two answers' bodies leaf by leaf (both sides answered 200)."""
    left, right = _leaves(baseline), _leaves(candidate)
    differences: list[float] = []
    largest: float | None = None
    kind: Kind | None = None
    paths: list[str] = []
    for path in dict.fromkeys([*left, *right]):
        if path not in left or path not in right:
            kind = _worse(kind, "structure")
            paths.append(path)
            continue
        b, c = left[path], right[path]
        if _is_number(b) and _is_number(c):
            diff = float(c) - float(b)
            if math.isfinite(diff):
                differences.append(diff)
            if not tolerance.equal(float(b), float(c)):
                kind = _worse(kind, "numeric")
                paths.append(path)
                size = abs(diff) if not math.isnan(diff) else math.inf
                largest = size if largest is None else max(largest, size)
        elif type(b) is not type(c) or b != c:
            # An empty list or object against a value is a different shape, not a value.
            shape = isinstance(b, list | dict) or isinstance(c, list | dict)
            kind = _worse(kind, "structure" if shape else "value")
            paths.append(path)
    return PairVerdict(kind is None, kind, tuple(differences), largest, tuple(paths))


def _worse(kind: Kind | None, other: Kind) -> Kind:
    return other if kind is None or _RANK[other] > _RANK[kind] else kind


# --- many pairs ---------------------------------------------------------------------------


def latency_summary(answers: Iterable[Answer]) -> LatencySummary:
    """P50, P95 and max over the answers that came back (any status; not status 0)."""
    values = [a.latency_ms for a in answers if a.status != 0]
    return LatencySummary(
        len(values), percentile(values, 50), percentile(values, 95), max(values, default=None)
    )


def _severity(row: DifferingRow) -> tuple[int, float]:
    # A different shape or label ranks above any numeric difference; then the largest.
    return (_RANK[row.kind], row.largest or 0.0)


def compare_pairs(
    pairs: Sequence[Pair],
    tolerance: Tolerance | None = None,
    *,
    planned: int | None = None,
    cancelled: bool = False,
    skipped: int = 0,
    top: int = TOP_ROWS,
    notes: Sequence[str] = (),
) -> Comparison:
    """The comparison of every pair: counts, agreement, differences, worst rows, latency."""
    tolerance = tolerance or Tolerance()
    both_ok = agreed = 0
    differences: list[float] = []
    dropped = 0
    rows: list[DifferingRow] = []
    failed: dict[str, Counter[int]] = {"baseline": Counter(), "candidate": Counter()}
    for pair in pairs:
        if not pair.baseline.ok:
            failed["baseline"][pair.baseline.status] += 1
        if not pair.candidate.ok:
            failed["candidate"][pair.candidate.status] += 1
        if not (pair.baseline.ok and pair.candidate.ok):
            continue
        both_ok += 1
        verdict = compare_bodies(pair.baseline.body, pair.candidate.body, tolerance)
        room = MAX_DIFFERENCES - len(differences)
        differences.extend(verdict.differences[:room])
        dropped += max(0, len(verdict.differences) - room)
        if verdict.agrees:
            agreed += 1
            continue
        assert verdict.kind is not None
        rows.append(
            DifferingRow(
                pair.index,
                pair.input,
                pair.baseline.body,
                pair.candidate.body,
                verdict.kind,
                verdict.largest,
                verdict.paths[:_PATHS_SHOWN],
            )
        )
    rows.sort(key=_severity, reverse=True)
    return Comparison(
        compared=len(pairs),
        both_ok=both_ok,
        agreed=agreed,
        baseline_failed=sum(failed["baseline"].values()),
        candidate_failed=sum(failed["candidate"].values()),
        tolerance=tolerance,
        differences=tuple(differences),
        top=tuple(rows[:top]),
        baseline_latency=latency_summary(p.baseline for p in pairs),
        candidate_latency=latency_summary(p.candidate for p in pairs),
        baseline_statuses=tuple(sorted(failed["baseline"].items())),
        candidate_statuses=tuple(sorted(failed["candidate"].items())),
        planned=len(pairs) if planned is None else planned,
        cancelled=cancelled,
        skipped=skipped,
        differences_dropped=dropped,
        notes=tuple(notes),
    )

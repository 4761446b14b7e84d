"""A promotion step's gates and their verdicts, each with the numbers behind it.

A gate's status is "pass", "fail" or "not enough evidence". Nothing that depends on the
evidence passes below the step's minimum sample: with too few requests the answer is
"not enough evidence", whatever the numbers look like (a 0% error rate over 12 requests
says little). The error gate compares the observed difference of error rates with its
limit; its words carry the test's p-value and the requests behind it (compare.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rollout.compare import compare_errors, compare_latency, count_text, points_text
from rollout.evidence import Evidence

Status = Literal["pass", "fail", "not enough evidence"]


@dataclass(frozen=True)
class Gates:
    """What the candidate must show before the step is left."""

    max_error_increase: float = 0.01  # candidate − baseline error rate: 0.01 is 1 pp
    max_p95_ratio: float = 1.5  # candidate P95 / baseline P95
    min_requests: int = 200  # served by the candidate (and the baseline) in the step


@dataclass(frozen=True)
class Verdict:
    """One gate's answer with the numbers behind it."""

    gate: str
    status: Status
    value: float | None
    threshold: float
    words: str


def evaluate_gates(
    g: Gates,
    baseline: Evidence,
    candidate: Evidence,
    *,
    min_minutes: float,
    minutes_in_step: float,
) -> tuple[Verdict, ...]:
    """Minimum time, minimum requests, error-rate increase and P95 ratio, in that order."""
    need = g.min_requests
    verdicts = [
        Verdict(
            "minimum time",
            "pass" if minutes_in_step >= min_minutes else "not enough evidence",
            minutes_in_step,
            min_minutes,
            f"{minutes_in_step:.1f} of {min_minutes:g} min in this step",
        ),
        Verdict(
            "minimum requests",
            "pass" if candidate.requests >= need else "not enough evidence",
            float(candidate.requests),
            float(need),
            f"{count_text(candidate.requests)} of {count_text(need)} {candidate.deployment} "
            "requests",
        ),
    ]
    short = [e for e in (candidate, baseline) if e.requests < need or e.classified < need]
    few = "; ".join(f"{e.deployment} has {count_text(e.requests)}" for e in short)
    errors = compare_errors(baseline, candidate, min_requests=max(need, 1))
    limit = f"{points_text(g.max_error_increase)}"
    if short or errors.difference is None:
        verdicts.append(
            Verdict("error-rate increase", "not enough evidence", None, g.max_error_increase,
                    f"needs {count_text(need)} requests each ({few}); limit {limit}")
        )  # fmt: skip
    else:
        ok = errors.difference <= g.max_error_increase
        verdicts.append(
            Verdict("error-rate increase", "pass" if ok else "fail", errors.difference,
                    g.max_error_increase,
                    f"{points_text(errors.difference)} {'≤' if ok else '>'} {limit}: "
                    f"{errors.words}")
        )  # fmt: skip
    latency = compare_latency(baseline, candidate, min_requests=max(need, 1))
    if short or latency.p95_ratio is None:
        why = f"needs {count_text(need)} requests each ({few})" if short else latency.note
        verdicts.append(
            Verdict("P95 ratio", "not enough evidence", latency.p95_ratio, g.max_p95_ratio,
                    f"{why}; limit {g.max_p95_ratio:.2f}×")
        )  # fmt: skip
    else:
        ok = latency.p95_ratio <= g.max_p95_ratio
        verdicts.append(
            Verdict("P95 ratio", "pass" if ok else "fail", latency.p95_ratio, g.max_p95_ratio,
                    f"{latency.p95_ratio:.2f}× {'≤' if ok else '>'} {g.max_p95_ratio:.2f}×: "
                    f"{latency.words}")
        )  # fmt: skip
    return tuple(verdicts)


def overall(verdicts: Sequence[Verdict]) -> Status:
    """fail if any gate fails, else not enough evidence if any lacks it, else pass."""
    statuses = {v.status for v in verdicts}
    if "fail" in statuses:
        return "fail"
    return "not enough evidence" if "not enough evidence" in statuses else "pass"


def verdict_texts(v: Verdict) -> tuple[str, str]:
    """(value, limit) of a verdict in the gate's own unit: '12.0 min', '1,204', '+0.9 pp',
    '1.20×'; '–' where there is no value."""

    def fmt(x: float | None) -> str:
        if x is None:
            return "–"
        if v.gate == "minimum time":
            return f"{x:.1f} min"
        if v.gate == "minimum requests":
            return count_text(int(x))
        if v.gate == "error-rate increase":
            return points_text(x)
        return f"{x:.2f}×"

    return fmt(v.value), fmt(v.threshold)

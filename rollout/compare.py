"""Baseline vs candidate: is the candidate's error rate different, how much slower is it,
and how much more traffic would it take to tell.

Pure functions of two `Evidence` (evidence.py), each answer in numbers and in the words the
dashboard shows next to the traffic controls. Error rates are compared with a two-sided
two-proportion test: the pooled z-test when every expected cell count is at least 5,
Fisher's exact test otherwise; below `MIN_REQUESTS_FOR_TEST` requests on either side the
answer says so instead of giving a p-value. Intervals: Wilson for each rate, Newcombe's
hybrid score interval (his method 10) for the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats  # type: ignore[import-untyped]

from rollout.evidence import Evidence

ErrorKind = Literal["all", "4xx", "5xx", "model"]
Finding = Literal["higher", "lower", "no difference", "too few requests"]

MIN_REQUESTS_FOR_TEST = 30
MIN_REQUESTS_FOR_LATENCY = 50
MIN_EXPECTED_FOR_Z = 5.0
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
DEFAULT_DEGRADATION = 0.01  # +1 percentage point of errors

_KIND_WORDS = {
    "all": "error rate",
    "4xx": "4xx rate",
    "5xx": "5xx rate",
    "model": "model-error rate",
}


# --- words ----------------------------------------------------------------------------------


def count_text(n: int) -> str:
    """1,204"""
    return f"{n:,}"


def percent_text(rate: float) -> str:
    """2.1%; a small non-zero rate keeps two significant digits (0.042%), never '0.0%'."""
    pct = 100.0 * rate
    if pct == 0:
        return "0%"
    return f"{pct:.2g}%" if pct < 0.1 else f"{pct:.1f}%"


def points_text(difference: float) -> str:
    """+0.9 pp: a difference of rates in percentage points, with its sign."""
    return f"{100.0 * difference:+.1f} pp"


def p_text(p: float) -> str:
    """p < 0.001, p = 0.043, p = 0.61"""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


# --- intervals ------------------------------------------------------------------------------


def wilson_interval(errors: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for errors / n; (0, 1) when n is 0 (nothing is known)."""
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = errors / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    candidate: tuple[int, int], baseline: tuple[int, int], *, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's interval for candidate rate − baseline rate, each given as (errors, n)."""
    (e1, n1), (e2, n2) = candidate, baseline
    p1 = e1 / n1 if n1 else 0.0
    p2 = e2 / n2 if n2 else 0.0
    l1, u1 = wilson_interval(e1, n1, confidence=confidence)
    l2, u2 = wilson_interval(e2, n2, confidence=confidence)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


# --- error rates ----------------------------------------------------------------------------


def errors_of(evidence: Evidence, kind: ErrorKind) -> int | None:
    """The errors of one kind; None for model errors the frames did not count."""
    if kind == "4xx":
        return evidence.errors_4xx
    if kind == "5xx":
        return evidence.errors_5xx
    if kind == "model":
        return evidence.model_errors
    return evidence.errors


@dataclass(frozen=True)
class ErrorComparison:
    """Candidate vs baseline error rate: the test, the intervals and the sentence."""

    kind: ErrorKind
    baseline: str
    candidate: str
    baseline_errors: int
    baseline_requests: int
    candidate_errors: int
    candidate_requests: int
    finding: Finding
    p_value: float | None  # None below the minimum sample
    test: str  # "z-test", "Fisher's exact test", or "" without a p-value
    difference: float | None  # candidate rate − baseline rate
    interval: tuple[float, float] | None  # Newcombe, for the difference
    confidence: float
    words: str

    @property
    def baseline_rate(self) -> float | None:
        return self.baseline_errors / self.baseline_requests if self.baseline_requests else None

    @property
    def candidate_rate(self) -> float | None:
        return self.candidate_errors / self.candidate_requests if self.candidate_requests else None


def two_proportion_p(candidate: tuple[int, int], baseline: tuple[int, int]) -> tuple[float, str]:
    """Two-sided p-value for equal error rates, each side as (errors, n), and the test used."""
    (e1, n1), (e2, n2) = candidate, baseline
    pooled = (e1 + e2) / (n1 + n2)
    if pooled in (0.0, 1.0):  # nothing differs: every request alike on both sides
        return 1.0, "z-test"
    expected = min(n * r for n in (n1, n2) for r in (pooled, 1 - pooled))
    if expected < MIN_EXPECTED_FOR_Z:
        table = [[e1, n1 - e1], [e2, n2 - e2]]
        return float(stats.fisher_exact(table, alternative="two-sided").pvalue), (
            "Fisher's exact test"
        )
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (e1 / n1 - e2 / n2) / se
    return float(min(1.0, 2 * stats.norm.sf(abs(z)))), "z-test"


def compare_errors(
    baseline: Evidence,
    candidate: Evidence,
    *,
    kind: ErrorKind = "all",
    alpha: float = DEFAULT_ALPHA,
    min_requests: int = MIN_REQUESTS_FOR_TEST,
) -> ErrorComparison:
    """Is the candidate's error rate (of `kind`) different from the baseline's?"""
    be, ce = errors_of(baseline, kind), errors_of(candidate, kind)
    bn, cn = baseline.classified, candidate.classified
    what = _KIND_WORDS[kind]

    def answer(
        finding: Finding,
        words: str,
        p: float | None = None,
        test: str = "",
        difference: float | None = None,
        interval: tuple[float, float] | None = None,
    ) -> ErrorComparison:
        return ErrorComparison(
            kind=kind,
            baseline=baseline.deployment,
            candidate=candidate.deployment,
            baseline_errors=be or 0,
            baseline_requests=bn,
            candidate_errors=ce or 0,
            candidate_requests=cn,
            finding=finding,
            p_value=p,
            test=test,
            difference=difference,
            interval=interval,
            confidence=1 - alpha,
            words=words,
        )

    if be is None or ce is None:
        return answer(
            "too few requests",
            f"model errors (424) are not counted by this query; no {what} to compare",
        )
    if min(bn, cn) < min_requests:
        return answer(
            "too few requests",
            f"too few requests to compare {what}s: {candidate.deployment} has "
            f"{count_text(cn)}, {baseline.deployment} {count_text(bn)}; "
            f"at least {count_text(min_requests)} each are needed",
        )
    p, test = two_proportion_p((ce, cn), (be, bn))
    rate_c, rate_b = ce / cn, be / bn
    interval = newcombe_interval((ce, cn), (be, bn), confidence=1 - alpha)
    if p < alpha and rate_c != rate_b:
        finding: Finding = "higher" if rate_c > rate_b else "lower"
        words = (
            f"{candidate.deployment}'s {what} is {finding}: {percent_text(rate_c)} vs "
            f"{percent_text(rate_b)} ({p_text(p)})"
        )
    else:
        finding = "no difference"
        words = (
            f"no evidence of a difference ({p_text(p)}, {count_text(cn)} vs "
            f"{count_text(bn)} requests)"
        )
    return answer(finding, words, p, test, rate_c - rate_b, interval)


# --- latency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyComparison:
    """Candidate / baseline latency at P50 and P95; `enough` is False below the sample."""

    baseline: str
    candidate: str
    p50_ratio: float | None
    p95_ratio: float | None
    enough: bool
    words: str
    note: str  # why the ratio is missing or noisy; empty when it is neither


def _ratio(candidate: float | None, baseline: float | None) -> float | None:
    if candidate is None or baseline is None or baseline <= 0:
        return None
    return candidate / baseline


def compare_latency(
    baseline: Evidence, candidate: Evidence, *, min_requests: int = MIN_REQUESTS_FOR_LATENCY
) -> LatencyComparison:
    """The candidate's P95 and P50 latency as multiples of the baseline's."""
    p95 = _ratio(candidate.p95_ms, baseline.p95_ms)
    p50 = _ratio(candidate.p50_ms, baseline.p50_ms)
    short = [e for e in (candidate, baseline) if e.requests < min_requests]
    note = ""
    if short:
        note = (
            "too few requests for a steady percentile: "
            + ", ".join(f"{e.deployment} has {count_text(e.requests)}" for e in short)
            + f" (at least {count_text(min_requests)} wanted)"
        )
    if p95 is None:
        words = f"no latency to compare for {candidate.deployment} and {baseline.deployment}"
        return LatencyComparison(
            baseline.deployment,
            candidate.deployment,
            p50,
            p95,
            False,
            words,
            note or "a deployment has no latency samples",
        )
    words = (
        f"{candidate.deployment}'s P95 is {p95:.2f}× {baseline.deployment}'s "
        f"({candidate.p95_ms:,.0f} ms vs {baseline.p95_ms:,.0f} ms)"
    )
    if p50 is not None:
        words += f"; P50 {p50:.2f}×"
    return LatencyComparison(
        baseline.deployment, candidate.deployment, p50, p95, not short, words, note
    )


# --- how much more evidence -----------------------------------------------------------------


def requests_needed(
    baseline_rate: float,
    degradation: float,
    *,
    ratio: float = 1.0,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> tuple[int, int]:
    """(candidate, baseline) requests a two-sided two-proportion test at `alpha` needs to
    see an error rate `degradation` above `baseline_rate` with probability `power`.

    The normal-approximation formula for unequal groups (Fleiss), `ratio` being baseline
    requests per candidate request; no continuity correction.
    """
    if degradation <= 0:
        raise ValueError(f"degradation is {degradation}; it must be above 0")
    if ratio <= 0:
        raise ValueError(f"ratio is {ratio}; it must be above 0")
    p_b = min(max(baseline_rate, 0.0), 1.0)
    p_c = min(p_b + degradation, 1.0)
    delta = p_c - p_b
    if delta <= 0:
        raise ValueError(f"a baseline error rate of {p_b} leaves no room for {degradation} more")
    k = ratio
    pooled = (p_c + k * p_b) / (1 + k)
    z_a = float(stats.norm.ppf(1 - alpha / 2))
    z_b = float(stats.norm.ppf(power))
    root = z_a * math.sqrt(pooled * (1 - pooled) * (1 + 1 / k)) + z_b * math.sqrt(
        p_c * (1 - p_c) + p_b * (1 - p_b) / k
    )
    n_c = math.ceil(root * root / (delta * delta))
    return n_c, math.ceil(k * n_c)


@dataclass(frozen=True)
class EvidenceNeeded:
    """How many more requests (and minutes at the current rates) a test would need."""

    degradation: float
    alpha: float
    power: float
    candidate_needed: int
    baseline_needed: int
    candidate_more: int
    baseline_more: int
    minutes: float | None  # None when a side that needs more gets no traffic
    words: str


def evidence_needed(
    baseline: Evidence,
    candidate: Evidence,
    *,
    degradation: float = DEFAULT_DEGRADATION,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> EvidenceNeeded:
    """What it takes to detect the candidate's error rate `degradation` above the baseline's,
    with traffic keeps splitting as it does now (the observed request ratio)."""
    ratio = (
        baseline.requests / candidate.requests if baseline.requests and candidate.requests else 1.0
    )
    rate = baseline.error_rate or 0.0
    n_c, n_b = requests_needed(rate, degradation, ratio=ratio, alpha=alpha, power=power)
    more_c = max(0, n_c - candidate.classified)
    more_b = max(0, n_b - baseline.classified)
    waits: list[float | None] = []
    for more, e in ((more_c, candidate), (more_b, baseline)):
        if more:
            waits.append(more / e.per_minute if e.per_minute > 0 else None)
    minutes = None if None in waits else max([w for w in waits if w is not None], default=0.0)
    target = f"{points_text(degradation)} of errors (alpha {alpha:g}, power {power:g})"
    if not more_c and not more_b:
        words = f"enough requests to detect {target}"
    else:
        parts = []
        if more_c:
            parts.append(f"{count_text(more_c)} more {candidate.deployment} requests")
        if more_b:
            parts.append(f"{count_text(more_b)} more {baseline.deployment} requests")
        when = (
            f"about {math.ceil(minutes):,} min at the current rate"
            if minutes is not None
            else "no end at the current rate: a side gets no traffic"
        )
        words = f"{' and '.join(parts)} ({when}) to detect {target}"
    return EvidenceNeeded(degradation, alpha, power, n_c, n_b, more_c, more_b, minutes, words)

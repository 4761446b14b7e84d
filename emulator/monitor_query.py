"""The query of a metrics getBatch call, parsed and checked as Azure checks it.

Query parameters starttime, endtime (ISO 8601), interval (PT10S, emulator only, to
P1D), metricnames, aggregation, top, orderby, filter and rollupby; each refusal is a
`MetricsError` in Azure's shape with a message that names the value.

Filters as Azure takes them: `dim eq 'v'` terms joined by `and`, with `or` only between
values of one dimension; `'*'` splits by that dimension; every dimension the filter
names splits the series unless `rollupby` names it. `top` (default 10) and `orderby`
(e.g. `total desc`, default: the first aggregation, descending) pick among the split
series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.monitor_catalog import NAMESPACES, MetricDef
from emulator.store import parse_utc

MAX_POINTS = 20_000
DEFAULT_TOP = 10
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
INTERVALS = {
    "PT10S": 10,
    "PT1M": 60,
    "PT5M": 300,
    "PT15M": 900,
    "PT30M": 1800,
    "PT1H": 3600,
    "PT6H": 21600,
    "PT12H": 43200,
    "P1D": 86400,
}
_AGGREGATION_ALIASES = {"sum": "total", "avg": "average", "min": "minimum", "max": "maximum"}
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$", re.IGNORECASE
)
_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|([A-Za-z_][A-Za-z0-9_.]*))")


class MetricsError(Exception):
    """An error the metrics API returns in Azure's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> MetricsError:
    return MetricsError(400, "BadRequest", message)


# filters


@dataclass(frozen=True)
class Term:
    dimension: str  # lower-case
    op: str  # eq | ne
    value: str  # lower-case; '*' for every value


@dataclass
class Filter:
    """Conjunction of groups; each group is `or` over terms of one dimension."""

    groups: list[list[Term]] = field(default_factory=list)

    @property
    def dimensions(self) -> list[str]:
        return [g[0].dimension for g in self.groups]

    def matches(self, dims: Mapping[str, str]) -> bool:
        for group in self.groups:
            value = dims.get(group[0].dimension, "").lower()
            if not any((t.value == "*" or t.value == value) == (t.op == "eq") for t in group):
                return False
        return True


def parse_filter(text: str | None) -> Filter:
    """Azure's metric filter: `a eq 'x' and b eq 'y' or b eq 'z' and c eq '*'`."""
    if not text or not text.strip():
        return Filter()
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise bad_request(f"The filter '{text}' is not valid near '{text[position:][:20]}'.")
        position = match.end()
        if match.group(1) or match.group(2):
            continue  # grouping brackets: the grammar below already fixes the grouping
        if match.group(3) is not None:
            tokens.append(("value", match.group(3).replace("''", "'")))
        else:
            tokens.append(("word", match.group(4)))
    groups: list[list[Term]] = []
    joiner = "and"
    index = 0
    while index < len(tokens):
        chunk = tokens[index : index + 3]
        if (
            len(chunk) < 3
            or chunk[0][0] != "word"
            or chunk[1][0] != "word"
            or chunk[1][1].lower() not in ("eq", "ne")
            or chunk[2][0] != "value"
        ):
            raise bad_request(
                f"The filter '{text}' is not valid: expected \"<dimension> eq '<value>'\" "
                "terms joined by 'and' or 'or'."
            )
        term = Term(chunk[0][1].lower(), chunk[1][1].lower(), chunk[2][1].lower())
        if joiner == "and":
            groups.append([term])
        elif term.dimension != groups[-1][0].dimension:
            raise bad_request(
                f"The filter '{text}' is not valid: the 'or' operator cannot separate two "
                f"different dimensions ('{groups[-1][0].dimension}' and '{term.dimension}')."
            )
        else:
            groups[-1].append(term)
        index += 3
        if index < len(tokens):
            word = tokens[index]
            if word[0] != "word" or word[1].lower() not in ("and", "or"):
                raise bad_request(f"The filter '{text}' is not valid near '{word[1]}'.")
            joiner = word[1].lower()
            index += 1
            if index == len(tokens):
                raise bad_request(f"The filter '{text}' ends with '{joiner}'.")
    return Filter(groups)


# the query


@dataclass
class Query:
    namespace: str
    metrics: list[MetricDef]
    start: float
    end: float
    interval: int
    interval_text: str
    aggregations: list[str]
    filter: Filter
    split: list[str]  # lower-case dimension names the series are split by
    top: int
    order_by: str
    descending: bool
    # Buckets are whole intervals aligned to multiples of the interval since the epoch.
    first_bucket: int = field(init=False)
    buckets: int = field(init=False)
    stop: int = field(init=False)

    def __post_init__(self) -> None:
        self.first_bucket = int(self.start // self.interval * self.interval)
        self.buckets = max(1, math.ceil((self.end - self.first_bucket) / self.interval))
        self.stop = self.first_bucket + self.buckets * self.interval


def _parse_time(value: str, name: str) -> float:
    try:
        return parse_utc(value).timestamp()
    except ValueError:
        raise bad_request(
            f"{name} '{value}' is not a valid ISO 8601 time such as 2024-05-01T10:00:00Z."
        ) from None


def _parse_interval(value: str | None) -> tuple[int, str]:
    text = (value or "PT1M").strip()
    match = _DURATION.match(text)
    seconds = None
    if match is not None and text.upper() not in ("P", "PT"):
        parts = {k: int(v) for k, v in match.groupdict().items() if v}
        seconds = (
            parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    names = {s: n for n, s in INTERVALS.items()}
    if seconds not in names:
        raise bad_request(
            f"Invalid interval '{text}'. Supported intervals: PT10S (emulator only), "
            + ", ".join(n for n in INTERVALS if n != "PT10S")
            + "."
        )
    assert seconds is not None
    return seconds, names[seconds]


def parse_query(params: Mapping[str, str], namespace_key: str, *, now: float) -> Query:
    """Validate the query string of a getBatch call (names lower-case)."""
    namespace, catalog = NAMESPACES[namespace_key]
    names = [n.strip() for n in (params.get("metricnames") or "").split(",") if n.strip()]
    if not names:
        raise bad_request("metricnames is required: the names of the metrics to retrieve.")
    metrics: list[MetricDef] = []
    for name in names:
        metric = catalog.get(name.lower())
        if metric is None:
            raise bad_request(
                f"Failed to find metric configuration for provider: "
                f"Microsoft.MachineLearningServices, resource type: {namespace}, metric: "
                f"{name}. Valid metrics: {', '.join(m.name for m in catalog.values())}"
            )
        if metric not in metrics:
            metrics.append(metric)
    start_text, end_text = params.get("starttime"), params.get("endtime")
    end = _parse_time(end_text, "endtime") if end_text else now
    start = _parse_time(start_text, "starttime") if start_text else end - 3600
    if start >= end:
        raise bad_request(f"starttime '{start_text}' must be before endtime '{end_text or 'now'}'.")
    interval, interval_text = _parse_interval(params.get("interval"))
    aggregations: list[str] = []
    for raw in (params.get("aggregation") or "average").split(","):
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name not in AGGREGATIONS:
            raise bad_request(
                f"Invalid aggregation '{raw.strip()}'. Valid aggregations: Average, Minimum, "
                "Maximum, Total, Count."
            )
        if name not in aggregations:
            aggregations.append(name)
    aggregations = aggregations or ["average"]
    flt = parse_filter(params.get("filter"))
    rollup = {d.strip().lower() for d in (params.get("rollupby") or "").split(",") if d.strip()}
    for metric in metrics:
        known = {d.lower() for d in metric.dimensions}
        for dimension in [*flt.dimensions, *rollup]:
            if dimension not in known:
                allowed = ", ".join(metric.dimensions) or "none"
                raise bad_request(
                    f"Dimension '{dimension}' is not valid for metric '{metric.name}'. Valid "
                    f"dimensions: {allowed}."
                )
    split = [d for d in dict.fromkeys(flt.dimensions) if d not in rollup]
    top_text = params.get("top")
    try:
        top = int(top_text) if top_text else DEFAULT_TOP
    except ValueError:
        raise bad_request(f"top '{top_text}' must be a positive integer.") from None
    if top < 1:
        raise bad_request(f"top '{top_text}' must be a positive integer.")
    order_text = (params.get("orderby") or "").strip()
    order_by, descending = aggregations[0], True
    if order_text:
        words = order_text.lower().split()
        name = _AGGREGATION_ALIASES.get(words[0], words[0])
        if name not in AGGREGATIONS or len(words) > 2 or words[1:] not in ([], ["asc"], ["desc"]):
            raise bad_request(
                f"orderby '{order_text}' is not valid: use an aggregation and a direction, "
                "such as 'total desc' or 'maximum asc'."
            )
        order_by, descending = name, words[1:] != ["asc"]
    query = Query(
        namespace=namespace,
        metrics=metrics,
        start=start,
        end=end,
        interval=interval,
        interval_text=interval_text,
        aggregations=aggregations,
        filter=flt,
        split=split,
        top=top,
        order_by=order_by,
        descending=descending,
    )
    if query.buckets > MAX_POINTS:
        raise bad_request(
            f"The timespan holds {query.buckets} intervals of {interval_text}; at most "
            f"{MAX_POINTS} are allowed. Use a shorter timespan or a longer interval."
        )
    return query


@dataclass(frozen=True)
class Resource:
    """One resource of a batch: its id as asked, and its endpoint's and deployment's names."""

    id: str
    endpoint: str
    deployment: str | None

"""A deployment's log tail as lines: filtered by a case-insensitive substring, counted.

Pure functions for the Deployments page's log box (components/log_view.py).
"""

from __future__ import annotations

from dataclasses import dataclass

LINE_CHOICES = (100, 500, 2000)


@dataclass(frozen=True)
class LogLines:
    """The lines that match a filter (all of them without one), and how many were read."""

    lines: tuple[str, ...]
    total: int
    query: str

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def summary(self) -> str:
        """'12 of 500 lines match "error"', or '500 lines' without a filter."""
        noun = "line" if self.total == 1 else "lines"
        if not self.query:
            return f"{self.total} {noun}"
        verb = "matches" if self.total == 1 else "match"
        return f'{len(self.lines)} of {self.total} {noun} {verb} "{self.query}"'


def split_lines(text: str) -> list[str]:
    """The lines of a log tail; a trailing newline adds no empty line."""
    return text.rstrip("\n").splitlines() if text.strip("\n") else []


def filter_lines(text: str, query: str) -> LogLines:
    """The lines of `text` containing `query` as typed, ignoring case (all of them for an
    empty or blank query)."""
    lines = split_lines(text)
    wanted = query if query.strip() else ""
    needle = wanted.casefold()
    kept = [line for line in lines if needle in line.casefold()] if wanted else lines
    return LogLines(tuple(kept), len(lines), wanted)

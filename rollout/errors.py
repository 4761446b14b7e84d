"""The errors rollout/ raises: one root type, a few meaningful subclasses.

``Violation`` lives here rather than in ``rules.py`` so that ``RuleViolation`` can carry
violations without an import cycle; ``rules.py`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One broken rule, in a form both the emulator and the dashboard can show.

    ``code`` is an Azure-style error code (``"InvalidTrafficSum"``), ``message`` says what
    is wrong and what to do, ``deployment`` names the deployment it concerns, when one does.
    """

    code: str
    message: str
    deployment: str | None = None


class RolloutError(Exception):
    """Root of every error rollout/ raises."""


class RuleViolation(RolloutError):
    """A change that Azure would refuse; ``violations`` lists every rule it breaks."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__("; ".join(v.message for v in self.violations))

    def __reduce__(self) -> tuple[type[RuleViolation], tuple[tuple[Violation, ...]]]:
        # Exception pickles as cls(*self.args), and args holds the joined message, not
        # the violations; rebuild from the violations instead.
        return (type(self), (self.violations,))


class NotFound(RolloutError):
    """The endpoint, deployment or other resource does not exist."""


class Conflict(RolloutError):
    """The resource is busy (an operation is in progress) or already exists."""


class ServiceError(RolloutError):
    """The service (Azure or the emulator) failed or refused; carries its message verbatim."""

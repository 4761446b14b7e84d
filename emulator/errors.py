"""The one error type of the emulator's REST API, in Azure's shape.

Every refusal, from the control plane's body checks to the rules of `rollout.rules`,
is an `ApiError`: a status, an Azure error code and a message a person can act on.
"""

from __future__ import annotations

from typing import Any

from rollout.errors import Violation


class ApiError(Exception):
    """An error the REST API returns in Azure's shape."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    @classmethod
    def from_violations(cls, violations: list[Violation]) -> ApiError:
        details = [
            {"code": v.code, "message": v.message, "target": v.deployment} for v in violations
        ]
        return cls(400, "BadArgument", "; ".join(v.message for v in violations), details)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def bad_argument(message: str) -> ApiError:
    return ApiError(400, "BadArgument", message)


def check_rules(violations: list[Violation]) -> None:
    """Refuse the request (400, every violation named) when a rule of `rollout.rules` broke."""
    if violations:
        raise ApiError.from_violations(violations)

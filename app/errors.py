"""Domain errors carry the documented code, HTTP status and human message.

The API has one handler that turns any of these into the one JSON error body; workers
store them on the operation so a replay answers with exactly the same error.
"""

from __future__ import annotations

import uuid
from typing import Any


class DomainError(Exception):
    def __init__(
        self,
        code: str,
        detail: str,
        status: int = 400,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.extra = extra or {}
        # Response headers that belong to the error (Retry-After, RateLimit-*); not stored.
        self.headers = headers or {}

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "type": self.code,
            "detail": self.detail,
            "status": self.status,
        }
        body.update(self.extra)
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DomainError:
        extra = {k: v for k, v in body.items() if k not in ("code", "type", "detail", "status")}
        return cls(body["code"], body["detail"], int(body["status"]), extra=extra)


class NotFound(DomainError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail, 404)


class Conflict(DomainError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail, 409)


def parse_uuid(value: str, not_found: NotFound) -> uuid.UUID:
    """A path id; anything that is not a UUID names nothing."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found from None

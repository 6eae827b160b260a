"""Records the events layer hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WILDCARD = "*"
STANDARD, LOCAL = "standard", "local"  # endpoint kinds; LOCAL: a `permgate listen` session


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    app_id: str
    url: str
    mode: str
    enabled_events: tuple[str, ...]
    secret_hint: str
    created_at: datetime
    created_by: str
    removed_at: datetime | None = None
    kind: str = STANDARD
    failing_since: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    expires_at: datetime | None = None

    def subscribes(self, event_type: str) -> bool:
        return WILDCARD in self.enabled_events or event_type in self.enabled_events

    @property
    def status(self) -> str:
        """removed | disabled | expired (an abandoned listen session) | enabled."""
        if self.removed_at is not None:
            return "removed"
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            return "expired"
        return "enabled"

    def receives(self, now: datetime) -> bool:
        """Does it get new events now? Not when removed, disabled or abandoned."""
        return (self.removed_at is None and self.disabled_at is None
                and (self.expires_at is None or self.expires_at > now))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.endpoint_id, "object": "webhook_endpoint", "app_id": self.app_id,
            "url": self.url, "mode": self.mode, "enabled_events": list(self.enabled_events),
            "secret_hint": self.secret_hint, "created_at": self.created_at.isoformat(),
            "created_by": self.created_by, "status": self.status, "kind": self.kind,
            "failing_since": _iso(self.failing_since), "disabled_at": _iso(self.disabled_at),
            "disabled_reason": self.disabled_reason, "expires_at": _iso(self.expires_at),
        }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    """An endpoint just created or rotated: the only time its secret is shown."""

    endpoint: Endpoint
    secret: str

    def as_json(self) -> dict[str, Any]:
        return {**self.endpoint.as_json(), "secret": self.secret}


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    duplicate: bool
    deliveries: int


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: int
    event_id: str
    event_type: str
    endpoint_id: str
    app_id: str
    account: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_http_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id, "event_id": self.event_id,
            "event_type": self.event_type, "endpoint_id": self.endpoint_id,
            "app_id": self.app_id, "account": self.account, "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat()
            if self.status == "pending" else None,
            "last_http_status": self.last_http_status, "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }

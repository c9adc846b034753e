"""The gateway's exceptions and the error shape clients receive."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Root of every error the gateway reports to a client."""

    code = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def as_ack(self) -> dict[str, Any]:
        """``{"ok": false, "error": {...}}``: the shape of every rejected Socket.IO call."""
        return {"ok": False, "error": {"code": self.code, "message": self.message, **self.extra}}


class InvalidPayload(GatewayError):
    code = "invalid_payload"


class NotIdentified(GatewayError):
    code = "not_identified"


class RateLimited(GatewayError):
    code = "rate_limited"


class Unavailable(GatewayError):
    code = "unavailable"


class Forbidden(GatewayError):
    code = "forbidden"


class NotFoundError(GatewayError):
    code = "not_found"


class InvalidToken(GatewayError):
    code = "invalid_token"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"

"""Who a visitor is: an unguessable uid, optionally signed by the project's own backend.

A visitor has no login; its uid is its only credential, so it must be a UUID
(the widget makes a random v4 and keeps it in localStorage). A project with
identity verification also wants ``visitorSignature``: the hex HMAC-SHA256 of
the uid under the project's secret, computed by the site's backend, so only
visitors the site vouches for can speak as a uid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

from gateway.errors import GatewayError, InvalidPayload

SECRET_BYTES = 32  # random bytes of a project's identity secret
SIGNATURE_LENGTH = 64  # hex characters of an HMAC-SHA256


class IdentityRequired(GatewayError):
    code = "identity_required"


class InvalidSignature(GatewayError):
    code = "invalid_signature"


def visitor_uid(value: Any) -> str:
    """An RFC 4122 UUID in its canonical lowercase form; anything else is refused."""
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidPayload("visitorUid must be a UUID string")
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        raise InvalidPayload(
            "visitorUid must be a UUID, such as crypto.randomUUID() makes"
        ) from None
    if parsed.variant != uuid.RFC_4122:
        raise InvalidPayload("visitorUid must be an RFC 4122 UUID")
    return str(parsed)


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def sign(secret: str, uid: str) -> str:
    """What the site's backend computes: hex HMAC-SHA256(secret, visitorUid)."""
    return hmac.new(secret.encode(), uid.encode(), hashlib.sha256).hexdigest()


def verify(*, secret: str | None, uid: str | None, signature: Any) -> None:
    """Raise unless ``signature`` is the project's signature of ``uid``."""
    if uid is None:
        raise IdentityRequired(
            "this project verifies identities: connect with auth {visitorUid, visitorSignature}"
        )
    if signature is None:
        raise IdentityRequired("this project verifies identities: visitorSignature is required")
    if secret is None:
        raise InvalidSignature("this project has no identity secret yet")
    if not isinstance(signature, str) or len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature("visitorSignature must be 64 hex characters")
    # Bytes, so non-ASCII input compares (and fails) instead of raising.
    expected = sign(secret, uid).encode()
    if not hmac.compare_digest(expected, signature.strip().lower().encode()):
        raise InvalidSignature("visitorSignature does not match visitorUid")

"""Signed agent tokens: ``<payload>.<signature>``, both base64url, HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from gateway.errors import InvalidToken
from parley.settings import Secret

TOKEN_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies the tokens dashboards present when they connect."""

    def __init__(self, *, secret: Secret, ttl: int) -> None:
        self._key = hashlib.sha256(b"parley-agent-token:" + secret.reveal().encode()).digest()
        self._ttl = ttl

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, agent_id: int, *, version: int = 0, now: float | None = None) -> str:
        """``version`` is the agent's token version: bumping it in the database revokes."""
        issued = int(time.time() if now is None else now)
        body = {
            "v": TOKEN_VERSION,
            "sub": agent_id,
            "iat": issued,
            "exp": issued + self._ttl,
            "tv": version,
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: object, *, now: float | None = None) -> int:
        """Return the agent id, or raise :class:`InvalidToken` saying why."""
        # Tokens are base64url: ASCII. compare_digest raises TypeError on non-ASCII str.
        if (
            not isinstance(token, str)
            or not token.isascii()
            or token.count(".") != 1
            or len(token) > 1024
        ):
            raise InvalidToken("token is malformed")
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidToken("token signature is invalid")
        try:
            body = json.loads(_unb64(payload))
            agent_id, expires = int(body["sub"]), int(body["exp"])
        except (ValueError, KeyError, TypeError):
            raise InvalidToken("token is malformed") from None
        if expires < (time.time() if now is None else now):
            raise InvalidToken("token has expired")
        return agent_id

    def verify_agent(self, token: object, *, now: float | None = None) -> tuple[int, int]:
        """``(agent id, token version)``; the caller compares the version with the agent's."""
        agent_id = self.verify(token, now=now)
        assert isinstance(token, str)
        try:
            version = json.loads(_unb64(token.split(".")[0])).get("tv", 0)
        except (ValueError, AttributeError):
            raise InvalidToken("token is malformed") from None
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidToken("token is malformed")
        return agent_id, version

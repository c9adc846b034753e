from __future__ import annotations

import pytest

from gateway.errors import InvalidToken
from gateway.tokens import TokenSigner
from parley.settings import Secret


def test_round_trip_and_expiry() -> None:
    signer = TokenSigner(secret=Secret("k"), ttl=100)
    token = signer.issue(42, now=1000)
    assert signer.verify(token, now=1050) == 42
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=1101)


@pytest.mark.parametrize("token", [None, 5, "", "a.b.c", "a" * 2000, "e30.AAAA"])
def test_malformed_tokens(token: object) -> None:
    with pytest.raises(InvalidToken):
        TokenSigner(secret=Secret("k"), ttl=100).verify(token)


def test_secret_never_shows() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)


@pytest.mark.parametrize("token", ["a.ÿ", "ÿ.a", "a.\ud800", "\ud800.a", "a.\x00"])
def test_non_ascii_tokens_are_invalid_not_a_crash(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenSigner(secret=Secret("k"), ttl=100).verify(token)

"""docker/compose.yaml: no shared default secret, nothing published beyond localhost by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
BIND = "${PARLEY_BIND:-127.0.0.1}:"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded["services"]


def test_the_secret_must_be_set() -> None:
    for name, service in services().items():
        secret = (service.get("environment") or {}).get("PARLEY_SECRET")
        if secret is not None:
            assert secret.startswith("${PARLEY_SECRET:?"), (name, secret)
    assert "not-a-secret" not in COMPOSE.read_text()


def test_published_ports_bind_to_localhost_unless_told_otherwise() -> None:
    published = [
        (name, port) for name, service in services().items() for port in service.get("ports", [])
    ]
    assert published, "compose publishes the gateways"
    for name, port in published:
        assert isinstance(port, str) and port.startswith(BIND), (name, port)

"""The ``parley`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.tokens import TokenSigner
from parley.embedded import free_port
from parley.settings import Settings
from tests.services import ServiceSet, settings_env


def parley(settings: Settings | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "KAFKA_"))
    }
    if settings is not None:
        base.update(settings_env(settings))
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "parley.cli", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_project_and_agent_create_print_json(settings: Settings) -> None:
    created = parley(
        settings, "project", "create", "--name", "Acme", "--origin", "https://a.example/"
    )
    assert created.returncode == 0, created.stderr
    project = json.loads(created.stdout)
    assert project["name"] == "Acme" and project["origins"] == ["https://a.example"]

    agent = json.loads(
        parley(
            settings, "agent", "create", "--project", str(project["id"]), "--email", "a@b.c"
        ).stdout
    )
    assert agent["token"].count(".") == 1
    second = parley(settings, "project", "create", "--name", "Beta")
    other = json.loads(second.stdout)["id"]
    again = json.loads(
        parley(settings, "agent", "create", "--project", str(other), "--email", "a@b.c").stdout
    )
    assert again["id"] == agent["id"]  # one agent, two projects


def test_agent_for_an_unknown_project_is_one_sentence(settings: Settings) -> None:
    result = parley(settings, "agent", "create", "--project", "4242", "--email", "a@b.c")
    assert result.returncode == 1
    assert result.stderr.strip() == "parley: project 4242 does not exist"


async def test_migrate_creates_the_database(settings: Settings, services: ServiceSet) -> None:
    name = f"parley_cli_{free_port()}"
    try:
        result = parley(settings, "migrate", DATABASE_URL=services.database_url(name))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"migrated": True}
    finally:
        await services.drop_database(name)


def test_unreachable_database_stops_the_start_with_one_sentence(tmp_path: Path) -> None:
    port = free_port()
    result = parley(
        None,
        "run",
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/parley",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        PARLEY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("parley: PostgreSQL at 127.0.0.1")
    assert "cannot be reached" in last


def test_missing_url_for_a_process_is_one_sentence(tmp_path: Path) -> None:
    result = parley(None, "relay", PARLEY_DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_identity_verification_commands(settings: Settings) -> None:
    created = _json(
        parley(settings, "project", "create", "--name", "V", "--require-identity-verification")
    )
    assert created["identityVerification"] is True
    project = str(created["id"])
    shown = _json(parley(settings, "project", "secret", "--project", project))
    assert len(shown["secret"]) == 64 and shown["rotated"] is False
    assert (
        _json(parley(settings, "project", "secret", "--project", project))["secret"]
        == (shown["secret"])
    )
    rotated = _json(parley(settings, "project", "secret", "--project", project, "--rotate"))
    assert rotated["rotated"] is True and rotated["secret"] != shown["secret"]
    off = parley(
        settings, "project", "update", "--project", project, "--no-require-identity-verification"
    )
    assert _json(off)["identityVerification"] is False
    plain = _json(parley(settings, "project", "create", "--name", "P"))
    assert plain["identityVerification"] is False
    on = parley(
        settings,
        "project",
        "update",
        "--project",
        str(plain["id"]),
        "--require-identity-verification",
    )
    assert _json(on)["identityVerification"] is True
    missing = parley(settings, "project", "secret", "--project", "4242")
    assert missing.returncode == 1 and "4242 does not exist" in missing.stderr


async def test_agent_revoke_remove_and_token(settings: Settings) -> None:
    project = str(_json(parley(settings, "project", "create", "--name", "A"))["id"])
    agent = _json(parley(settings, "agent", "create", "--project", project, "--email", "a@b.c"))
    agent_id = str(agent["id"])
    signer = TokenSigner(secret=settings.secret, ttl=settings.token_ttl)
    assert signer.verify_agent(agent["token"]) == (agent["id"], 0)

    revoked = _json(parley(settings, "agent", "revoke", "--agent", agent_id))
    assert revoked["revoked"] is True and revoked["tokenVersion"] == 1
    assert revoked["gatewaysNotified"] == 0  # published; no gateway runs in this test
    fresh = _json(parley(settings, "agent", "token", "--agent", agent_id))
    assert signer.verify_agent(fresh["token"]) == (agent["id"], 1)

    removed = _json(parley(settings, "agent", "remove", "--project", project, "--agent", agent_id))
    assert removed["removed"] is True
    again = _json(parley(settings, "agent", "remove", "--project", project, "--agent", agent_id))
    assert again["removed"] is False
    unknown = parley(settings, "agent", "revoke", "--agent", "4242")
    assert unknown.returncode == 1 and "agent 4242 does not exist" in unknown.stderr

"""A second terminal finds the services of a running ``make run`` through its state file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parley.run_state import RunState, env_with_run_state, remove, state_path
from parley.settings import Settings


def write_state(data_dir: Path, settings: Settings, *, pid: int) -> Path:
    assert settings.database_url and settings.redis_url and settings.kafka_bootstrap_servers
    return RunState(
        pid=pid,
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        gateway_url="http://127.0.0.1:8000",
    ).write(data_dir)


def dead_pid() -> int:
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(process.stdout)


def parley(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "KAFKA_"))
    }
    base.update(PARLEY_DATA_DIR=str(data_dir), PARLEY_SECRET="test-secret-" + "x" * 32, **env)
    return subprocess.run(
        [sys.executable, "-m", "parley.cli", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unset_urls_come_from_a_live_run(tmp_path: Path, settings: Settings) -> None:
    path = write_state(tmp_path, settings, pid=os.getpid())
    env, used = env_with_run_state({"PARLEY_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://x"})
    assert used == path
    assert env["DATABASE_URL"] == settings.database_url
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == settings.kafka_bootstrap_servers
    assert env["REDIS_URL"] == "redis://x", "a URL that is set wins over the state file"


def test_a_state_file_is_not_read_when_every_url_is_set(tmp_path: Path, settings: Settings) -> None:
    write_state(tmp_path, settings, pid=os.getpid())
    given = {
        "PARLEY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://a/b",
        "REDIS_URL": "redis://c",
        "KAFKA_BOOTSTRAP_SERVERS": "d:9092",
    }
    assert env_with_run_state(given) == (given, None)


def test_a_dead_runs_state_file_is_ignored(tmp_path: Path, settings: Settings) -> None:
    write_state(tmp_path, settings, pid=dead_pid())
    env, used = env_with_run_state({"PARLEY_DATA_DIR": str(tmp_path)})
    assert used is None and "DATABASE_URL" not in env


def test_a_broken_or_missing_state_file_is_ignored(tmp_path: Path) -> None:
    assert env_with_run_state({"PARLEY_DATA_DIR": str(tmp_path)})[1] is None
    state_path(tmp_path).write_text("{not json")
    assert env_with_run_state({"PARLEY_DATA_DIR": str(tmp_path)})[1] is None
    remove(tmp_path)
    remove(tmp_path)  # removing twice is fine: a clean stop may race a crash cleanup
    assert not state_path(tmp_path).exists()


def test_the_state_file_is_private(tmp_path: Path, settings: Settings) -> None:
    path = write_state(tmp_path, settings, pid=os.getpid())
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text())["database_url"] == settings.database_url


def test_the_cli_uses_a_running_make_run_and_says_so(tmp_path: Path, settings: Settings) -> None:
    path = write_state(tmp_path, settings, pid=os.getpid())
    created = parley(tmp_path, "project", "create", "--name", "From a second terminal")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "From a second terminal"
    notes = [line for line in created.stderr.splitlines() if line.startswith("parley:")]
    assert notes == [f"parley: using the services of `make run` listed in {path}"]


def test_without_a_run_the_cli_still_asks_for_the_url(tmp_path: Path, settings: Settings) -> None:
    write_state(tmp_path, settings, pid=dead_pid())
    result = parley(tmp_path, "project", "create", "--name", "Nope")
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
    assert "using the services" not in result.stderr

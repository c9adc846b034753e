"""The state file of a running ``parley run``: how a second terminal finds its services.

``parley run`` writes ``<data dir>/run.json`` once its services answer and removes
it on a clean stop. Other ``parley`` commands read it for every service URL the
environment leaves unset, so ``parley project create`` works next to ``make run``.
A file left by a ``parley run`` that died (its pid is gone) is ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

from parley.settings import DEFAULT_DATA_DIR

STATE_FILE = "run.json"
# The environment variables the state file may fill in, and the keys it stores them under.
URL_VARIABLES = {
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunState:
    pid: int
    database_url: str
    redis_url: str
    kafka_bootstrap_servers: str
    gateway_url: str
    pids: dict[str, int] = dataclasses.field(default_factory=dict)

    def write(self, data_dir: Path) -> Path:
        path = state_path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        # The URLs carry no password for embedded services, but a configured one may.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(dataclasses.asdict(self), handle, indent=2)
        temporary.replace(path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> RunState | None:
        """The state of a live ``parley run``, or None."""
        try:
            data = json.loads(state_path(data_dir).read_text())
            state = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if pid_alive(state.pid) else None


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def remove(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(data_dir).unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def env_with_run_state(env: Mapping[str, str]) -> tuple[dict[str, str], Path | None]:
    """``env`` with the unset service URLs taken from a live ``parley run``.

    Returns the environment and the state file used, or None when none was.
    """
    merged = dict(env)
    missing = [name for name in URL_VARIABLES if not env.get(name)]
    if not missing:
        return merged, None
    data_dir = Path(env.get("PARLEY_DATA_DIR") or DEFAULT_DATA_DIR)
    state = RunState.read(data_dir)
    if state is None:
        return merged, None
    for name in missing:
        merged[name] = getattr(state, URL_VARIABLES[name])
    return merged, state_path(data_dir)

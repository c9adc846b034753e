"""Who is on the other end of each socket this gateway holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator


@dataclasses.dataclass(kw_only=True, slots=True)
class VisitorClient:
    project_id: int
    # Empty until bound (at connect from auth, or by the first identify); never changes after.
    visitor_uid: str
    identified: bool = False
    address: str = ""  # the client address, for the new-visitors-per-address limit
    last_context_url: str | None = None  # the page last stored, so repeats are not rewritten


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class AgentClient:
    agent_id: int
    display_name: str
    token_version: int = 0  # the version of the token this socket connected with


Client = VisitorClient | AgentClient


class ClientRegistry:
    """sid → client, local to this gateway process."""

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}

    def add(self, sid: str, client: Client) -> None:
        self._clients[sid] = client

    def remove(self, sid: str) -> Client | None:
        return self._clients.pop(sid, None)

    def get(self, sid: str) -> Client | None:
        return self._clients.get(sid)

    def agents(self) -> Iterator[tuple[str, AgentClient]]:
        """A snapshot of the dashboards' sockets, safe to iterate across awaits."""
        return iter([(sid, c) for sid, c in self._clients.items() if isinstance(c, AgentClient)])

    def __len__(self) -> int:
        return len(self._clients)

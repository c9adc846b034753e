"""Who is on the other end of each socket this gateway holds."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(kw_only=True)
class VisitorClient:
    project_id: int
    visitor_uid: str
    identified: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentClient:
    agent_id: int
    display_name: str


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

    def __len__(self) -> int:
        return len(self._clients)
